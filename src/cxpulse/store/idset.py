"""The event id set's refill in the background: a store serves readings while the ids load; the duplicate
check — and so every write — waits until they have."""

from __future__ import annotations

import threading
import weakref
from typing import Any

from cxpulse.store.base import Store, StoreError

_refills: weakref.WeakKeyDictionary[Any, _Refill] = weakref.WeakKeyDictionary()


class _Refill:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: Exception | None = None


def refill_in_background(store: Store, sql: str) -> None:
    """Run the refill statement in a thread; `wait_for_event_ids` blocks until it ends."""
    refill = _refills[store] = _Refill()

    def run() -> None:
        try:
            store.execute(sql)
        except Exception as exc:  # reported to every writer instead
            refill.error = exc
        finally:
            refill.done.set()

    threading.Thread(target=run, name="cxpulse-event-ids", daemon=True).start()


def wait_for_event_ids(store: Store) -> None:
    """Return once the store's id set is complete; a failed refill fails the caller (a write would
    otherwise miss duplicates)."""
    refill = _refills.get(store)
    if refill is None:
        return
    refill.done.wait()
    if refill.error is not None:
        raise StoreError(f"the event id set could not be loaded: {refill.error}")
