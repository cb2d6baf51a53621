"""The embedded processor: one writer that turns validated events into stored events, state and facts.

Each batch goes through the shared `batch.step` (dedup against the store's ids, fold into keyed state),
then: insert events (the durable point: a 202 may be sent after this) → facts and keyed state behind.
A flush upserts the changed facts, then the changed state together with the checkpoint. After a crash
anywhere past the events insert, `recover()` replays the batches after the last checkpoint; the step is
idempotent, so replaying is safe.

Close-the-loop: `responses` (a callable: the current response rules) is passed to every step; the step's
notifications go to `outbox` right after the events insert, before the batch is acknowledged — so a 202
means the notification is in the outbox, and `on_notify` (wake the dispatcher) is called. The cooldown it
changed in the keyed state is written behind like any state. Recovery also replays the answers after the
checkpoint through the same matching, which restores the cooldowns and re-adds any notification (the
outbox ignores a known id).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from cxpulse.domain.alerts.rules import ResponseRule
from cxpulse.domain.events import Event, EventType
from cxpulse.domain.state import CustomerState, FactRow
from cxpulse.notify.outbox import Notification, Outbox
from cxpulse.pipeline.batch import Delivery, FactKey, PublishResult, Step, close_loop, fold, step
from cxpulse.store.repository import Repository

ResponseRules = Callable[[], Sequence[ResponseRule]]


def _no_rules() -> Sequence[ResponseRule]:
    return ()


#: Recovery replays about this many events at a time (bounded memory after a large import).
REPLAY_PART_SIZE = 200_000

log = logging.getLogger("cxpulse.processor")


class Processor:
    """Single writer of the embedded store. Events are inserted synchronously (that is the commit). Facts
    and keyed state are written with them when the writer is idle, and behind them — coalesced per key, at
    least every `flush_interval_s` — while more batches are queued; recovery replays whatever the last
    flush did not cover. `on_commit` (if set) is called after every batch that stored events, and
    `on_types` with the event types it stored (the alert evaluator re-reads only what they change);
    `responses`, `outbox` and `on_notify`: close-the-loop (see the module docstring)."""

    def __init__(
        self,
        repo: Repository,
        *,
        flush_interval_s: float = 0.5,
        flush_max_facts: int = 50_000,
        on_commit: Callable[[], None] | None = None,
        on_types: Callable[[set[str]], None] | None = None,
        responses: ResponseRules = _no_rules,
        outbox: Outbox | None = None,
        on_notify: Callable[[], None] | None = None,
    ) -> None:
        self.repo = repo
        self.responses = responses
        self.outbox = outbox
        self.on_notify = on_notify
        self.states: dict[str, CustomerState] = {}
        self.flush_interval_s = flush_interval_s
        self.flush_max_facts = flush_max_facts
        self.on_commit = on_commit
        self.on_types = on_types
        self._seq = 0
        self._flushed_seq = 0
        self._pending_facts: dict[FactKey, FactRow] = {}
        self._pending_states: set[str] = set()
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        #: The in-memory state folded events whose insert failed: rebuild it from the store before use.
        self._stale = False

    def recover(self, *, part_size: int = REPLAY_PART_SIZE) -> int:
        """Load keyed state and replay batches written after the last checkpoint; returns events replayed.

        The replay goes through disjoint sets of customers of about `part_size` events each, writing their
        facts and state as it goes, and moves the checkpoint only at the end.
        """
        with self._lock:
            return self._recover(part_size)

    def _recover(self, part_size: int = REPLAY_PART_SIZE) -> int:
        """`recover` with the lock held; what is pending is derived again from the store."""
        self._pending_facts.clear()
        self._pending_states.clear()
        self.states = self.repo.load_states()
        checkpoint = self._flushed_seq = self.repo.checkpoint()
        self._seq = self.repo.last_batch_seq()
        rules = self._rules()
        total = self.repo.count_stateful_after(checkpoint, answers=bool(rules))
        parts = max(1, -(-total // part_size))
        for part in range(parts):
            events = self.repo.stateful_events_after(checkpoint, part, parts, answers=bool(rules))
            replayed = Step()  # already stored: only their effect on the keyed state is redone
            for event, received_ms in events:
                fold(event, self.states, replayed)
                if event.type == EventType.SURVEY_ANSWER:
                    close_loop(event, received_ms, self.states, rules, replayed, again=True)
            self._notify(replayed.notifications, now_ms=int(time.time() * 1000))
            self._keep(replayed)
            self._flush(checkpoint=checkpoint if part < parts - 1 else self._seq)
        self._stale = False
        return total

    def process(self, events: Sequence[Event], received_ms: Sequence[int] | None = None) -> PublishResult:
        """Store `events` exactly once and update everything derived from them. `received_ms`: when each
        was received (`run --kafka`: the Kafka message times), stored with it; default now."""
        return self.process_many([events], received_ms=None if received_ms is None else [received_ms])[0]

    def process_many(
        self,
        batches: Sequence[Sequence[Event]],
        *,
        flush: bool = True,
        received_ms: Sequence[Sequence[int]] | None = None,
    ) -> list[PublishResult]:
        """Process several requests' batches in one write (group commit); one result per batch.

        `flush=False` (more work is queued) lets facts and state wait for a later batch.
        """
        with self._lock:
            self._fresh()
            now_ms = int(time.time() * 1000)
            times = received_ms or [[now_ms] * len(batch) for batch in batches]
            deliveries = [
                Delivery(e, t)
                for batch, batch_times in zip(batches, times, strict=True)
                for e, t in zip(batch, batch_times, strict=True)
            ]
            existing = self.repo.existing_ids(list({d.event.event_id: None for d in deliveries}))
            done = step(
                deliveries,
                dict.fromkeys(existing),
                self.states,
                batch_seq=self._seq + 1,
                responses=self._rules(),
            )
            if done.rows:
                try:
                    self.repo.insert_events(done.rows)
                    self._notify(done.notifications, now_ms)  # before the 202, like the events
                except BaseException:
                    # not acknowledged — but `step` already folded these events (and their close-the-loop
                    # cooldowns) into the keyed state: rebuild it from the store before anything else uses
                    # or saves it (a replay re-adds stored answers' notifications, idempotently)
                    self._stale = True
                    raise
                self._seq += 1
                self._keep(done)
            if (
                flush
                or len(self._pending_facts) >= self.flush_max_facts
                or time.monotonic() - self._last_flush >= self.flush_interval_s
            ):
                try:
                    self._flush()
                except Exception as exc:  # the events are stored (acknowledged): facts wait for a later flush
                    log.error("writing facts and state behind the events failed (retried later): %s", exc)
            results = [done.result_of(batch) for batch in batches]
        if done.rows and self.on_types is not None:
            self.on_types({row["type"] for row in done.rows})
        if done.rows and self.on_commit is not None:
            self.on_commit()
        return results

    def _rules(self) -> Sequence[ResponseRule]:
        return self.responses() if self.outbox is not None else ()

    def _notify(self, notifications: Sequence[Notification], now_ms: int) -> None:
        """Put close-the-loop notifications in the outbox and wake the dispatcher."""
        wanted = [n for n in notifications if n.targets]
        if not wanted or self.outbox is None:
            return
        if self.outbox.add_many(wanted, now_ms) and self.on_notify is not None:
            self.on_notify()

    def flush(self) -> None:
        """Write pending facts and state now (at shutdown, and before reads)."""
        with self._lock:
            self._fresh()
            self._flush()

    def _fresh(self) -> None:
        """After a failed insert: reload the state from the store and replay what it holds past the last
        checkpoint (what was acknowledged), dropping what the failed batch folded in."""
        if self._stale:
            log.warning("rebuilding keyed state from the store after a failed insert")
            self._recover()

    def _keep(self, done: Step) -> None:
        """The step's facts and changed states become pending (written by the next flush)."""
        self._pending_facts.update(done.facts)
        self._pending_states |= done.changed

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
