"""The embedded processor: one writer that turns validated events into stored events, state and facts.

Order per batch: drop duplicates (first accepted wins) → insert events (the durable point: a 202 may be
sent after this) → fold stateful events into keyed state → upsert the changed facts and state → write the
checkpoint. After a crash anywhere past the events insert, `recover()` replays the batches after the last
checkpoint; state application is idempotent, so replaying is safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from cxpulse.bus.base import PublishResult
from cxpulse.domain.events import Event
from cxpulse.domain.state import CustomerState, FactRow, apply, new_state
from cxpulse.pipeline.repository import Repository

CHECKPOINT = "embedded"


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
            checkpoint = self.repo.checkpoint(CHECKPOINT)
            self._seq = self.repo.last_batch_seq()
            replay = self.repo.stateful_events_after(checkpoint)
            self._fold([e for _, e in replay])
            if self._seq > checkpoint:
                self.repo.save_checkpoint(CHECKPOINT, self._seq)
            return len(replay)

    def process(self, events: Sequence[Event]) -> PublishResult:
        """Store `events` exactly once and update everything derived from them."""
        with self._lock:
            unique: dict[str, Event] = {}
            for event in events:
                unique.setdefault(event.event_id, event)
            existing = self.repo.existing_ids(list(unique))
            fresh = [e for eid, e in unique.items() if eid not in existing]
            if fresh:
                self._seq += 1
                self.repo.insert_events(fresh, int(time.time() * 1000), self._seq)
                self._fold(fresh)
                self.repo.save_checkpoint(CHECKPOINT, self._seq)
            return PublishResult(accepted=len(fresh), duplicates=len(events) - len(fresh))

    def _fold(self, events: Sequence[Event]) -> None:
        """Apply stateful events to keyed state; persist the facts and the states that changed."""
        facts: list[tuple[str, FactRow]] = []
        seq_before: dict[str, int] = {}
        for event in events:
            state = self.states.get(event.customer_id) or new_state()
            seq_before.setdefault(event.customer_id, state["seq"])
            facts += apply(state, event)
            if state["seq"]:
                self.states[event.customer_id] = state
        self.repo.upsert_facts(facts)
        self.repo.save_states(
            {
                cid: self.states[cid]
                for cid, seq in seq_before.items()
                if cid in self.states and self.states[cid]["seq"] != seq
            }
        )
