"""The metric-rule evaluator (SPEC §4): every enabled rule judged as of now, on a timer and on new events.

One evaluation (`Evaluator.evaluate`):

1. groups the enabled metric rules by what they read — (window, filters, baseline) — and makes ONE
   `Reader.pulse` call per group for all the group's metrics (200 rules over 20 groups are 20 reads);
2. steps each rule's state machine (`domain.alerts.evaluation.evaluate`) with its metric's reading;
3. writes, in this order: the alert notifications of the transitions to the outbox (first, so a crash
   after it re-sends rather than loses: at least once), the transitions, then the changed states;
4. tells `listeners` about each transition (the app's SSE hub publishes `event: alert`) and wakes the
   dispatcher (`on_notify`).

State is loaded from the store before the first evaluation and kept in memory after, so a restart resumes
every pending `for` clock and never re-notifies a firing rule. `run` evaluates every rule every
`interval_s` and, when a `ChangeFeed` is given, within `debounce_s` of a committed batch (so a `for: 0s`
rule fires seconds after the event that breaks it): then only the rules whose metric the batch's event
types can change (`touch(types)`; every rule when nobody said), and never busier than half the time (the
next event-triggered evaluation waits at least as long as the last one took), so many rules on a busy
store cannot starve ingest and reads.

Interface (the distributed runtime reuses it): `Evaluator(reader, repo, outbox, rules, …)`,
`evaluate(now_ms=None, metrics=None) -> list[Transition]`, `run(stop, interval_s=…, feed=…)`, `wake()`
(thread-safe: evaluate soon, e.g. after a rule changed), `touch(event_types)` (thread-safe: these types
were just stored), `forget(rule_id)`, `states()`, `listeners`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cxpulse.domain.alerts.evaluation import AlertState, RuleState, Transition, evaluate
from cxpulse.domain.alerts.payloads import alert_payload, iso_ms
from cxpulse.domain.alerts.rules.metric import THRESHOLD_OPS, MetricRule, condition_to_json
from cxpulse.domain.events import EventType
from cxpulse.domain.metrics import METRICS, Family, Filters
from cxpulse.live.feed import ChangeFeed
from cxpulse.notify.outbox import Notification, Outbox
from cxpulse.reading import Reader
from cxpulse.store.alerts import AlertRepository

log = logging.getLogger("cxpulse.alerts")

#: A transition as listeners get it (`public_transition`).
OnTransition = Callable[[dict[str, Any]], None]
#: At most one event-triggered evaluation per this many seconds (and at most this long after an event).
DEBOUNCE_S = 0.5


#: Which event types can change a family's readings (every event makes a customer active).
_FAMILY_EVENTS: dict[Family, frozenset[str]] = {
    Family.SURVEY: frozenset({EventType.SURVEY_ANSWER}),
    Family.REFERRAL: frozenset({EventType.PURCHASE}),
    Family.ACTIVE: frozenset(EventType),
    Family.CASES: frozenset({EventType.SUPPORT_CONTACT, EventType.SUPPORT_RESOLVED}),
    Family.TRIALS: frozenset({EventType.TRIAL_START, EventType.PURCHASE, EventType.SUBSCRIPTION_START}),
    Family.SUBSCRIPTIONS: frozenset({EventType.SUBSCRIPTION_START, EventType.SUBSCRIPTION_CANCEL}),
}


def metrics_changed_by(event_types: set[str]) -> set[str]:
    """The metric ids whose readings events of these types can change."""
    return {m.id for m in METRICS.values() if _FAMILY_EVENTS[m.family] & event_types}


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class ReadKey:
    """What a rule reads: rules with equal keys share one `Reader.pulse` call. `baseline_ms` is None for
    the window just before (and for threshold rules, which do not look at the previous reading)."""

    window_ms: int
    filters: tuple[tuple[str, str], ...]
    baseline_ms: int | None

    @classmethod
    def of(cls, rule: MetricRule) -> ReadKey:
        baseline = None if rule.op in THRESHOLD_OPS else rule.condition.baseline_ms
        return cls(rule.window_ms, tuple(sorted(rule.filters.items())), baseline)

    def filters_model(self) -> Filters:
        return Filters(**dict(self.filters))


def public_transition(rule: MetricRule, transition: Transition) -> dict[str, Any]:
    """A transition as the API lists it and the SSE stream sends it (`at` as RFC 3339)."""
    return {
        "rule_id": rule.id,
        "name": rule.name,
        "metric": rule.metric,
        "severity": rule.severity,
        "from": str(transition.from_state),
        "to": str(transition.to_state),
        "at": iso_ms(transition.at_ms),
        "notify": transition.notify,
        "reading": dict(transition.reading) if transition.reading else None,
    }


def _meaningful(state: RuleState) -> RuleState:
    """A state without its evaluation time: a state is written again only when more than that changed."""
    return replace(state, last_eval_ms=None)


class Evaluator:
    """Evaluates `rules()` (the current metric rules) against `reader`; the single writer of rule states."""

    def __init__(
        self,
        reader: Reader,
        repo: AlertRepository,
        outbox: Outbox,
        rules: Callable[[], Sequence[MetricRule]],
        *,
        clock: Callable[[], int] = wall_clock_ms,
        on_notify: Callable[[], None] | None = None,
    ) -> None:
        self.reader = reader
        self.repo = repo
        self.outbox = outbox
        self.rules = rules
        self.clock = clock
        self.on_notify = on_notify
        self.listeners: list[OnTransition] = []
        self.reads = 0  # reader calls made (for /metrics and the benchmark)
        self._states: dict[str, RuleState] | None = None
        self._saved: dict[str, RuleState] = {}
        self._lock = threading.Lock()  # one evaluation at a time
        self._state_lock = threading.Lock()  # short: the states dicts
        self._forgotten: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poke: asyncio.Event | None = None
        self._touched: set[str] = set()
        self._touch_lock = threading.Lock()

    # ------------------------------------------------------------------------------------- evaluation

    def evaluate(self, now_ms: int | None = None, metrics: set[str] | None = None) -> list[Transition]:
        """Evaluate every metric rule (or those on `metrics`) as of `now_ms` (default: the clock); returns
        the transitions. Evaluations run one at a time; `states()` and `forget()` never wait for one."""
        with self._lock:
            now = self.clock() if now_ms is None else now_ms
            with self._state_lock:
                states = dict(self._load())
                self._forgotten = set()
            nxt: dict[str, RuleState] = {}
            fired: list[tuple[MetricRule, Transition]] = []
            groups: dict[ReadKey, list[MetricRule]] = {}
            for rule in self.rules():
                if metrics is not None and rule.metric not in metrics:
                    continue
                if rule.enabled:
                    groups.setdefault(ReadKey.of(rule), []).append(rule)
                elif states.get(rule.id, RuleState()).state is not AlertState.OK:
                    self._step(rule, states, {}, now, nxt, fired)  # disabled: back to ok (resolved)
            for key, members in groups.items():
                ids = list(dict.fromkeys(r.metric for r in members))
                try:
                    readings = self.reader.pulse(
                        ids, key.window_ms, now, key.filters_model(), baseline_ms=key.baseline_ms
                    )
                except Exception:  # one failing read must not stop the other groups
                    log.exception("alert evaluation: reading %s for %s failed", ids, key)
                    continue
                finally:
                    self.reads += 1
                for rule in members:
                    self._step(rule, states, readings[rule.metric], now, nxt, fired)
            with self._state_lock:  # a rule deleted meanwhile keeps no state
                gone = self._forgotten
            fired = [(rule, t) for rule, t in fired if rule.id not in gone]
            self._write(fired, {rid: st for rid, st in nxt.items() if rid not in gone}, now)
            with self._state_lock:
                live = self._load()
                live.update({rid: st for rid, st in nxt.items() if rid not in self._forgotten})
        for rule, transition in fired:
            self._tell(rule, transition)
        return [t for _, t in fired]

    def states(self) -> dict[str, RuleState]:
        """The current state of every rule evaluated so far (loaded from the store at first use)."""
        with self._state_lock:
            return dict(self._load())

    def loaded(self) -> bool:
        return self._states is not None

    def forget(self, rule_id: str) -> None:
        """Drop a deleted rule's state (the caller deletes its stored state); an evaluation under way
        will not write it back."""
        with self._state_lock:
            if self._states is not None:
                self._states.pop(rule_id, None)
            self._saved.pop(rule_id, None)
            self._forgotten.add(rule_id)

    def _load(self) -> dict[str, RuleState]:
        """The states (loaded from the store the first time); call with `_state_lock` held."""
        if self._states is None:
            self._states = self.repo.states()
            self._saved = dict(self._states)
        return self._states

    @staticmethod
    def _step(
        rule: MetricRule,
        states: dict[str, RuleState],
        reading: dict[str, Any],
        now: int,
        nxt: dict[str, RuleState],
        fired: list[tuple[MetricRule, Transition]],
    ) -> None:
        state, transition = evaluate(rule, states.get(rule.id, RuleState()), reading, now)
        nxt[rule.id] = state
        if transition is not None:
            fired.append((rule, transition))

    def _write(self, fired: list[tuple[MetricRule, Transition]], nxt: dict[str, RuleState], now: int) -> None:
        """Outbox first, then the transitions, then the states: a crash in between re-sends (at least
        once); it never records a state change whose notification was not queued. The dispatcher is woken
        only once the states are written, so a delivery seen before a crash is one whose state change was
        stored (otherwise the restart would fire the rule again: a second notification)."""
        notifications = [
            Notification(t.notification_id, rule.id, "alert", alert_payload(rule, t), rule.notify)
            for rule, t in fired
            if t.notification_id is not None and rule.notify
        ]
        queued = bool(notifications) and self.outbox.add_many(notifications, now)
        if fired:
            self.repo.add_transitions([t for _, t in fired])
        with self._state_lock:
            saved = dict(self._saved)
        changed = {
            rid: s for rid, s in nxt.items() if rid not in saved or _meaningful(saved[rid]) != _meaningful(s)
        }
        self.repo.put_states(changed)
        with self._state_lock:
            self._saved.update({rid: st for rid, st in changed.items() if rid not in self._forgotten})
        if queued and self.on_notify is not None:
            self.on_notify()

    def _tell(self, rule: MetricRule, transition: Transition) -> None:
        body = public_transition(rule, transition)
        for listener in self.listeners:
            try:
                listener(body)
            except Exception:
                log.exception("alert transition listener failed")

    # ---------------------------------------------------------------------------------------- the loop

    def touch(self, event_types: set[str]) -> None:
        """Events of these types were just stored (the next event-triggered evaluation reads the rules they
        affect). Safe from any thread; call before the change feed's `notify`."""
        with self._touch_lock:
            self._touched |= event_types

    def _take_touched(self) -> set[str] | None:
        """The metrics the events since the last call affect; None (all) when nobody said."""
        with self._touch_lock:
            types, self._touched = self._touched, set()
        return metrics_changed_by(types) if types else None

    def wake(self) -> None:
        """Evaluate soon (a rule was added or changed). Safe from any thread."""
        loop, poke = self._loop, self._poke
        if loop is not None and poke is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(poke.set)

    async def run(
        self,
        stop: asyncio.Event,
        *,
        interval_s: float,
        feed: ChangeFeed | None = None,
        debounce_s: float = DEBOUNCE_S,
    ) -> None:
        """Evaluate every rule now and every `interval_s`; the rules new events affect within `debounce_s`
        of a change on `feed`; every rule soon after a `wake()`; until `stop` is set. A failed evaluation
        is logged and tried again at the next turn."""
        self._loop, self._poke = asyncio.get_running_loop(), asyncio.Event()
        poke = self._poke
        seen = feed.version if feed is not None else 0
        last_end, took, due = float("-inf"), 0.0, 0.0
        while not stop.is_set():
            now = time.monotonic()
            poked = poke.is_set()
            changed = poked or (feed is not None and feed.version > seen)
            ready_at = last_end + max(debounce_s, took)  # at most half the time busy
            if now >= due or (changed and now >= ready_at):
                full = now >= due or poked
                poke.clear()
                seen = feed.version if feed is not None else 0
                touched = self._take_touched()
                started = time.monotonic()
                try:
                    await asyncio.to_thread(self.evaluate, None, None if full else touched)
                except Exception:
                    log.exception("alert evaluation failed")
                last_end = time.monotonic()
                took = last_end - started
                if full:
                    due = last_end + interval_s
                continue
            timeout = (ready_at if changed else due) - now
            await _first_of(stop, poke, feed, seen, timeout, changed)


async def _first_of(
    stop: asyncio.Event,
    poke: asyncio.Event,
    feed: ChangeFeed | None,
    seen: int,
    timeout: float,
    changed: bool,
) -> None:
    """Wait up to `timeout` for `stop`, or (unless a change is already waiting out its debounce) for a
    poke or a new version on `feed`."""
    waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
    if not changed:
        waits.append(asyncio.ensure_future(poke.wait()))
        if feed is not None:
            waits.append(asyncio.ensure_future(feed.wait(seen, timeout)))
    try:
        await asyncio.wait(waits, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waits:
            waiter.cancel()


def rule_summary(rule: MetricRule) -> dict[str, Any]:
    """The rule as `GET /v1/alerts` shows it beside its state."""
    return {
        "id": rule.id,
        "name": rule.name,
        "metric": rule.metric,
        "window": rule.window,
        "filters": dict(rule.filters),
        "severity": rule.severity,
        "condition": condition_to_json(rule.condition),
        "enabled": rule.enabled,
    }
