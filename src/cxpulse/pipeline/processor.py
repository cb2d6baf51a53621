"""The embedded processor: one writer that turns validated events into stored events, state and facts.

Order per batch: drop duplicates (first accepted wins) → insert events (the durable point: a 202 may be
sent after this) → fold stateful events into keyed state → upsert the changed facts, then the changed state
together with the checkpoint. After a crash anywhere past the events insert, `recover()` replays the
batches after the last checkpoint; state application is idempotent, so replaying is safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from cxpulse.bus.base import PublishResult
from cxpulse.domain.events import STATEFUL_TYPES, Event
from cxpulse.domain.state import CustomerState, FactRow, apply, new_state
from cxpulse.pipeline.repository import Repository


class Processor:
    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.states: dict[str, CustomerState] = {}
        self._seq = 0
        self._lock = threading.Lock()

    def recover(self) -> int:
        """Load keyed state and replay batches written after the last checkpoint; returns events replayed."""
        with self._lock:
            self.states = self.repo.load_states()
            checkpoint = self.repo.checkpoint()
            self._seq = self.repo.last_batch_seq()
            replay = self.repo.stateful_events_after(checkpoint)
            self._fold([e for _, e in replay], force_checkpoint=self._seq > checkpoint)
            return len(replay)

    def process(self, events: Sequence[Event]) -> PublishResult:
        """Store `events` exactly once and update everything derived from them."""
        return self.process_many([events])[0]

    def process_many(self, batches: Sequence[Sequence[Event]]) -> list[PublishResult]:
        """Process several requests' batches in one write (group commit); one result per batch."""
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
            winners = {id(e) for e in fresh}
            results = []
            for batch in batches:
                accepted = sum(1 for e in batch if id(e) in winners)
                results.append(PublishResult(accepted=accepted, duplicates=len(batch) - accepted))
            return results

    def _fold(self, events: Sequence[Event], *, force_checkpoint: bool = False) -> None:
        """Apply stateful events to keyed state; persist the facts, the changed states and the checkpoint."""
        facts: list[tuple[str, FactRow]] = []
        seq_before: dict[str, int] = {}
        for event in events:
            if event.type not in STATEFUL_TYPES:
                continue
            state = self.states.get(event.customer_id) or new_state()
            seq_before.setdefault(event.customer_id, state["seq"])
            facts += apply(state, event)
            if state["seq"]:
                self.states[event.customer_id] = state
        changed = {cid: self.states[cid] for cid, seq in seq_before.items() if self.states[cid]["seq"] != seq}
        if facts or changed or force_checkpoint:
            self.repo.upsert_facts(facts)
            self.repo.save_states(changed, checkpoint=self._seq)
