"""The embedded processor: one writer that turns validated events into stored events, state and facts.

Each batch goes through the shared `batch.step` (dedup against the store's ids, fold into keyed state),
then: insert events (the durable point: a 202 may be sent after this) → facts, rollups and keyed state
behind. A flush writes the changed facts (signed rows: the previous version retracted, then upserts),
catches the rollups up with the stored batches (unless a background loop does: `roll_in_flush`), then
writes the changed state together with the checkpoint. After a crash anywhere past the events insert,
`recover()` replays the batches after the last checkpoint; the step is idempotent, so replaying is safe,
and the signed fact rows of the replayed customers are reconciled with what the store holds. A large
replay (a bulk import) is derived in SQL instead (`store.bulk_state`).

Keyed state is loaded lazily: the states a batch needs are looked up by key before it is folded, kept in
memory while they may change, and dropped once saved when too many are held.

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
from typing import Any

from cxpulse.domain.alerts.rules.response import ResponseRule
from cxpulse.domain.events import STATEFUL_TYPES, Event, EventType
from cxpulse.domain.state import CASES, FACT_ID, SUBSCRIPTIONS, TRIALS, CustomerState, FactRow
from cxpulse.notify.outbox import Notification, Outbox
from cxpulse.pipeline.batch import Delivery, FactKey, PublishResult, Step, close_loop, fold, step
from cxpulse.store.bulk_state import BulkState, fold_bulk_state, is_bulk
from cxpulse.store.outcome_snapshot import OutcomeSnapshot
from cxpulse.store.repository import Repository
from cxpulse.store.rollups import Rollups
from cxpulse.store.signed_facts import SignedFacts, Subscriber, content, subscriber

#: Where a fact's holder lives in its customer's state; the processor notes in it (`flushed`) the content
#: it last wrote to the signed fact tables, which the next change retracts.
_HOLDERS = {CASES: "cases", TRIALS: "trials", SUBSCRIPTIONS: "starts"}
FLUSHED = "flushed"

ResponseRules = Callable[[], Sequence[ResponseRule]]


def _no_rules() -> Sequence[ResponseRule]:
    return ()


#: Recovery replays about this many events at a time (bounded memory after a large import).
REPLAY_PART_SIZE = 200_000
#: A recovery with more stateful events than this to replay derives state and facts in SQL, about
#: `BULK_PART_EVENTS` stateful events of whole customers at a time.
BULK_REPLAY_EVENTS = 100_000
BULK_PART_EVENTS = 1_500_000
#: Saved states beyond this many are dropped from memory after a flush (loaded again when needed).
MAX_CACHED_STATES = 100_000

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
        rollup_interval_s: float = 2.0,
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
        self.rollups = Rollups(repo.store)
        self.outcomes = OutcomeSnapshot(repo.store)
        self.signed_facts = SignedFacts(repo.store)
        self.states: dict[str, CustomerState] = {}
        self.flush_interval_s = flush_interval_s
        #: Rollups are caught up at most this often (readings take the batches they do not cover yet from
        #: `events`, so this only trades a little read work for fewer rollup statements) — by flushes, or,
        #: when `roll_in_flush` is off, by a background loop calling `roll_up` (a catch-up waits for the
        #: readings in progress, and ingest should not wait with it).
        self.rollup_interval_s = rollup_interval_s
        self.roll_in_flush = True
        self._last_rollup = time.monotonic()
        self.flush_max_facts = flush_max_facts
        self.on_commit = on_commit
        self.on_types = on_types
        self._seq = 0
        self._flushed_seq = 0
        self._pending_facts: dict[FactKey, FactRow] = {}
        self._pending_states: set[str] = set()
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        #: The in-memory state folded events whose insert failed, or a flush failed midway: rebuild it from
        #: the store (as a recovery does) before anything uses or saves it.
        self._stale = False

    def recover(
        self,
        *,
        part_size: int = REPLAY_PART_SIZE,
        bulk_threshold: int = BULK_REPLAY_EVENTS,
        roll_up: bool = True,
    ) -> int:
        """Replay batches written after the last checkpoint; returns the stateful events replayed.

        The replay goes through disjoint sets of customers of about `part_size` events each, writing their
        facts and state as it goes, and moves the checkpoint only at the end. Beyond `bulk_threshold`
        events, the customers concerned are derived in SQL from all their events instead. The rollups are
        caught up with the stored events first, unless `roll_up` is off (a loop will: readings meanwhile
        read the raw SQL).
        """
        with self._lock:
            return self._recover(part_size, bulk_threshold, roll_up)

    def _recover(
        self,
        part_size: int = REPLAY_PART_SIZE,
        bulk_threshold: int = BULK_REPLAY_EVENTS,
        roll_up: bool = True,
    ) -> int:
        """`recover` with the lock held; whatever was pending is derived again from the store."""
        self.states = {}
        self._pending_facts.clear()
        self._pending_states.clear()
        checkpoint = self._flushed_seq = self.repo.checkpoint()
        self._seq = self.repo.last_batch_seq()
        self.rollups.stored(self._seq)
        if roll_up:
            self.rollups.catch_up(self._seq)  # e.g. a bulk import: the events, rolled up
        rules = self._rules()
        total = self.repo.count_stateful_after(checkpoint)
        bulk = total > bulk_threshold
        if bulk:  # facts and states of the stateful events derived in SQL; answers replayed below
            BulkState(self.repo.store).derive(checkpoint, parts=max(1, -(-total // BULK_PART_EVENTS)))
        replays = self.repo.count_stateful_after(checkpoint, answers=bool(rules), stateful=not bulk)
        parts = max(1, -(-replays // part_size))
        for part in range(parts):
            events = self.repo.stateful_events_after(
                checkpoint, part, parts, answers=bool(rules), stateful=not bulk
            )
            self._load([e.customer_id for e, _ in events])
            replayed = Step()  # already stored: only their effect on the keyed state is redone
            for event, received_ms in events:
                fold(event, self.states, replayed)
                if event.type == EventType.SURVEY_ANSWER:
                    close_loop(event, received_ms, self.states, rules, replayed, again=True)
            self._notify(replayed.notifications, now_ms=int(time.time() * 1000))
            self._reconcile(sorted({e.customer_id for e, _ in events}))
            self._keep(replayed)
            self._flush(checkpoint=checkpoint if part < parts - 1 else self._seq)
        self._stale = False
        return total

    def _load(self, customer_ids: Sequence[str]) -> None:
        """Bring the saved states of these customers into memory (the others are new or already here)."""
        missing = [c for c in dict.fromkeys(customer_ids) if c not in self.states]
        saved = self.repo.load_states(missing)
        bulk = [cid for cid, state in saved.items() if is_bulk(state)]
        events = self.repo.bulk_events(bulk)
        for cid in bulk:  # a bulk derivation left their events to fold
            saved[cid] = fold_bulk_state(cid, saved[cid], events.get(cid, []))
        for cid, state in saved.items():
            for holder in _holders(state):
                holder.setdefault(FLUSHED, holder["emitted"])  # states saved before signed facts existed
            self.states[cid] = state

    def _reconcile(self, customer_ids: list[str]) -> None:
        """Bring the signed fact rows of replayed customers in line with their state.

        A flush interrupted after writing signed rows but before saving the state leaves rows the saved
        state does not know about; whatever the tables hold for these customers is compared with the
        facts their state now emits, and the difference written.
        """
        held: dict[tuple[str, str, str], list[tuple[Any, int]]] = {}
        for table, row, net in self.signed_facts.net_facts(customer_ids):
            held.setdefault((table, row["customer_id"], row[FACT_ID[table]]), []).append((row, net))
        for row, net in self.signed_facts.net_subscribers(customer_ids):
            held.setdefault((SUBSCRIPTIONS, row["customer_id"], ""), []).append((row, net))
        facts: list[tuple[str, FactRow | None, FactRow | None]] = []
        subscribers: list[tuple[Subscriber | None, Subscriber | None]] = []
        for cid in customer_ids:
            state = self.states.get(cid)
            if state is None:
                continue
            for table, key in _holder_keys(state):
                if table != SUBSCRIPTIONS:
                    emitted = state[_HOLDERS[table]][key]["emitted"]
                    want = None if emitted is None else content(table, {**emitted, "customer_id": cid})
                    facts += _differences(table, held.pop((table, cid, key), []), want)
            want_subscriber = _subscriber(state, cid, "emitted")
            subscribers += _differences("", held.pop((SUBSCRIPTIONS, cid, ""), []), want_subscriber)
            for holder in _holders(state):
                holder[FLUSHED] = holder["emitted"]
        for (table, _, _), rows in held.items():  # rows no state knows (cannot happen): retract them
            if table == SUBSCRIPTIONS:
                subscribers += _differences("", rows, None)
            else:
                facts += _differences(table, rows, None)
        self.signed_facts.write_facts(facts)
        self.signed_facts.write_subscribers(subscribers)

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
            rules = self._rules()
            self._load([d.event.customer_id for d in deliveries if _needs_state(d.event, rules)])
            done = step(
                deliveries, dict.fromkeys(existing), self.states, batch_seq=self._seq + 1, responses=rules
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
                self.rollups.stored(self._seq)
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
        """After a failed insert or flush: drop the in-memory state and replay what the store holds past
        the last checkpoint (what was acknowledged) — which also reconciles the signed fact rows a flush
        may have half written."""
        if self._stale:
            log.warning("rebuilding keyed state from the store after a failed write")
            self._recover()

    def roll_up(self) -> None:
        """Catch the rollups up with every batch stored so far (readings never need it: they read what the
        rollups do not cover from `events`). Does not hold up ingest: batches stored meanwhile wait for the
        next catch-up. The outcome snapshot is rebuilt after it when due."""
        self.rollups.catch_up(self._seq)
        self.outcomes.refresh(self._seq)
        self._last_rollup = time.monotonic()

    def _keep(self, done: Step) -> None:
        """The step's facts and changed states become pending (written by the next flush)."""
        self._pending_facts.update(done.facts)
        self._pending_states |= done.changed

    def _flush(self, checkpoint: int | None = None) -> None:
        """Write pending facts and state, and the checkpoint (by default: every batch so far). A failure
        midway may leave signed rows the state does not know it wrote: it is rebuilt before its next use."""
        try:
            self._write_behind(checkpoint)
        except BaseException:
            self._stale = True
            raise

    def _write_behind(self, checkpoint: int | None) -> None:
        checkpoint = self._seq if checkpoint is None else checkpoint
        self._last_flush = time.monotonic()
        if checkpoint == self._flushed_seq and not self._pending_facts and not self._pending_states:
            return
        changed = []
        for table, cid, fact_id in self._pending_facts:
            holder = self.states[cid][_HOLDERS[table]][fact_id]
            if holder.get(FLUSHED) != holder["emitted"]:
                changed.append((holder, table, cid))
        self.signed_facts.write_facts(
            (table, _signed(table, holder.get(FLUSHED), cid), _signed(table, holder["emitted"], cid))
            for holder, table, cid in changed
            if table != SUBSCRIPTIONS
        )
        subscribers = sorted({cid for _, table, cid in changed if table == SUBSCRIPTIONS})
        self.signed_facts.write_subscribers(
            (_subscriber(self.states[cid], cid, FLUSHED), _subscriber(self.states[cid], cid, "emitted"))
            for cid in subscribers
        )
        for holder, _, _ in changed:
            holder[FLUSHED] = holder["emitted"]
        self.repo.upsert_facts((table, row) for (table, _, _), row in self._pending_facts.items())
        if self.roll_in_flush and time.monotonic() - self._last_rollup >= self.rollup_interval_s:
            self.roll_up()
        saved = {cid: self.states[cid] for cid in self._pending_states}
        for state in saved.values():
            for holder in _holders(state):
                holder.setdefault(FLUSHED, None)  # a fact never emitted was never written either
        self.repo.save_states(saved, checkpoint=checkpoint)
        self._pending_facts.clear()
        self._pending_states.clear()
        self._flushed_seq = checkpoint
        if len(self.states) > MAX_CACHED_STATES:  # all saved now: memory holds only what batches need
            self.states.clear()


def _needs_state(event: Event, rules: Sequence[ResponseRule]) -> bool:
    """Whether folding `event` reads its customer's keyed state (close-the-loop keeps its cooldowns there)."""
    return event.type in STATEFUL_TYPES or (bool(rules) and event.type == EventType.SURVEY_ANSWER)


def _subscriber(state: CustomerState, customer_id: str, key: str) -> Subscriber | None:
    """The customer's subscriber row as flushed (`key` = FLUSHED) or as it is now ("emitted")."""
    return subscriber(customer_id, (h[key] for h in state["starts"].values() if h.get(key) is not None))


def _signed(table: str, fact: FactRow | None, customer_id: str) -> FactRow | None:
    return None if fact is None else content(table, {**fact, "customer_id": customer_id})


def _differences(table: str, held: list[tuple[Any, int]], want: Any) -> list[Any]:
    """The signed changes (table, retract, add) — or (retract, add) without a table — that leave exactly
    `want` once of what is `held` (rows with their net signs)."""
    out: list[Any] = []
    for row, net in held:
        extra = net - (1 if row == want else 0)
        out += [(row, None)] * max(0, extra) + [(None, row)] * max(0, -extra)
    if want is not None and all(row != want for row, _ in held):
        out.append((None, want))
    return [(table, *change) for change in out] if table else out


def _holders(state: CustomerState) -> list[dict[str, object]]:
    return [h for key in _HOLDERS.values() for h in state[key].values()]


def _holder_keys(state: CustomerState | None) -> list[tuple[str, str]]:
    """(fact table, fact id) of every fact holder in a customer's state."""
    if state is None:
        return []
    return [(table, key) for table, field in _HOLDERS.items() for key in state[field]]
