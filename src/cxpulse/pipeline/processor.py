"""The embedded processor: one writer that turns validated events into stored events, state and facts.

Order per batch: drop duplicates (first accepted wins) → insert events (the durable point: a 202 may be
sent after this) → fold stateful events into keyed state. Behind that, a flush upserts the changed facts,
then the changed state together with the checkpoint. After a crash anywhere past the events insert,
`recover()` replays the batches after the last checkpoint; state application is idempotent, so replaying
is safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from cxpulse.bus.base import PublishResult
from cxpulse.domain.events import STATEFUL_TYPES, Event
from cxpulse.domain.state import FACT_ID, CustomerState, FactRow, apply, new_state
from cxpulse.pipeline.repository import Repository

#: Recovery replays about this many events at a time (bounded memory after a large import).
REPLAY_PART_SIZE = 200_000


class Processor:
    """Single writer of the embedded store. Events are inserted synchronously (that is the commit). Facts
    and keyed state are written with them when the writer is idle, and behind them — coalesced per key, at
    least every `flush_interval_s` — while more batches are queued; recovery replays whatever the last
    flush did not cover."""

    def __init__(
        self,
        repo: Repository,
        *,
        flush_interval_s: float = 0.5,
        flush_max_facts: int = 50_000,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.repo = repo
        self.on_commit = on_commit  # told after each committed batch (the live views' change feed)
        self.states: dict[str, CustomerState] = {}
        self.flush_interval_s = flush_interval_s
        self.flush_max_facts = flush_max_facts
        self._seq = 0
        self._flushed_seq = 0
        self._pending_facts: dict[tuple[str, str, str], FactRow] = {}
        self._pending_states: set[str] = set()
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()

    def recover(self, *, part_size: int = REPLAY_PART_SIZE) -> int:
        """Load keyed state and replay batches written after the last checkpoint; returns events replayed.

        The replay goes through disjoint sets of customers of about `part_size` events each, writing their
        facts and state as it goes, and moves the checkpoint only at the end.
        """
        with self._lock:
            self.states = self.repo.load_states()
            checkpoint = self._flushed_seq = self.repo.checkpoint()
            self._seq = self.repo.last_batch_seq()
            total = self.repo.count_stateful_after(checkpoint)
            parts = max(1, -(-total // part_size))
            for part in range(parts):
                self._fold(self.repo.stateful_events_after(checkpoint, part, parts))
                self._flush(checkpoint=checkpoint if part < parts - 1 else self._seq)
            return total

    def process(self, events: Sequence[Event]) -> PublishResult:
        """Store `events` exactly once and update everything derived from them."""
        return self.process_many([events])[0]

    def process_many(self, batches: Sequence[Sequence[Event]], *, flush: bool = True) -> list[PublishResult]:
        """Process several requests' batches in one write (group commit); one result per batch.

        `flush=False` (more work is queued) lets facts and state wait for a later batch.
        """
        with self._lock:
            first: dict[str, Event] = {}
            for batch in batches:
                for event in batch:
                    first.setdefault(event.event_id, event)
            existing = self.repo.existing_ids(list(first))
            fresh = [e for eid, e in first.items() if eid not in existing]
            if fresh:
                self._seq += 1
                self.repo.insert_events(fresh, int(time.time() * 1000), self._seq)
                self._fold(fresh)
                if self.on_commit is not None:
                    self.on_commit()
            if (
                flush
                or len(self._pending_facts) >= self.flush_max_facts
                or time.monotonic() - self._last_flush >= self.flush_interval_s
            ):
                self._flush()
            winners = {id(e) for e in fresh}
            results = []
            for batch in batches:
                accepted = sum(1 for e in batch if id(e) in winners)
                results.append(PublishResult(accepted=accepted, duplicates=len(batch) - accepted))
            return results

    def flush(self) -> None:
        """Write pending facts and state now (at shutdown)."""
        with self._lock:
            self._flush()

    def _fold(self, events: Sequence[Event]) -> None:
        """Apply stateful events to keyed state; the facts and states they change become pending."""
        for event in events:
            if event.type not in STATEFUL_TYPES:
                continue
            state = self.states.get(event.customer_id) or new_state()
            for table, row in apply(state, event):
                self._pending_facts[(table, row["customer_id"], row[FACT_ID[table]])] = row
            if state["seq"]:
                self.states[event.customer_id] = state
                self._pending_states.add(event.customer_id)

    def _flush(self, checkpoint: int | None = None) -> None:
        """Write pending facts and state, and the checkpoint (by default: every batch so far)."""
        checkpoint = self._seq if checkpoint is None else checkpoint
        self._last_flush = time.monotonic()
        if checkpoint == self._flushed_seq and not self._pending_facts and not self._pending_states:
            return
        self.repo.upsert_facts((table, row) for (table, _, _), row in self._pending_facts.items())
        self.repo.save_states({cid: self.states[cid] for cid in self._pending_states}, checkpoint=checkpoint)
        self._pending_facts.clear()
        self._pending_states.clear()
        self._flushed_seq = checkpoint
