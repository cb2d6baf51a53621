"""The change feed for a process that does not write: poll a write marker, notify when it moved.

Used by `cxpulse api` when the workers write straight to a ClickHouse server (no loader in the API process
to call `feed.notify()`): one marker query per interval for the whole process, then the hub and the KPI
gauges react as they do to a local commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from cxpulse.live.feed import ChangeFeed

log = logging.getLogger("cxpulse.live")


async def poll_changes(
    marker: Callable[[], object], feed: ChangeFeed, stop: asyncio.Event, *, every_s: float = 0.5
) -> None:
    """Call the blocking `marker()` in a worker thread every `every_s` until `stop`; `feed.notify()` each
    time its value differs from the last one (a failing read is logged and skipped)."""
    last: object = None
    while not stop.is_set():
        try:
            current = await asyncio.to_thread(marker)
        except Exception:
            log.exception("reading the store's write marker failed; trying again")
        else:
            if last is not None and current != last:
                feed.notify()
            last = current
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
