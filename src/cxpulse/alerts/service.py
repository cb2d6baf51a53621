"""Alerting composed: the rules (store + an in-memory cache), the evaluator, the outbox and its dispatcher.

What the HTTP routes call (`create`, `replace`, `delete`, `get`, `rules_view`, `alerts`, `transitions`,
`notifications`), what the processing path asks (`response_rules()`, cached: the batch step matches every
answer against it, so it must cost nothing), and the background loops the serving process runs
(`loops()`: the evaluator and the dispatcher).

Hooks for the runtimes:
- `on_rules_changed`: callables run (with no argument) after a rule is created, replaced or deleted —
  e.g. the distributed runtime publishes the new response rules to its workers;
- `evaluator.listeners`: callables that get each transition (the app adds its SSE hub's `publish_alert`);
- `on_attempt`: callables that get each delivery attempt's outcome (`delivered`, `retry`, `failed`,
  `disable`; the app counts them as `cxpulse_notifications_total{result}`);
- `refresh()`: reload the rules from the store (a rule changed by another process);
- `wake_dispatcher()`: thread-safe; the processing path calls it after adding notifications.

Rule ids are `rule_<12 hex>` unless the client sends its own `id` (1–64 of `[A-Za-z0-9_.-]`) on create.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import orjson

from cxpulse.alerts.evaluator import Evaluator, public_transition, rule_summary, wall_clock_ms
from cxpulse.config import Settings
from cxpulse.domain.alerts.evaluation import AlertState, RuleState, Transition
from cxpulse.domain.alerts.payloads import iso_ms
from cxpulse.domain.alerts.rules.errors import RuleError
from cxpulse.domain.alerts.rules.metric import MetricRule
from cxpulse.domain.alerts.rules.response import ResponseRule
from cxpulse.domain.alerts.rules.rule import Rule, parse_rule, rule_to_json
from cxpulse.domain.alerts.rules.targets import mask_url
from cxpulse.domain.metrics import METRICS, Direction
from cxpulse.live.feed import ChangeFeed
from cxpulse.notify.dispatcher import Dispatcher, default_client
from cxpulse.notify.outbox import AttemptRecord, Delivery, Kind, StoreOutbox
from cxpulse.notify.schedule import Schedule
from cxpulse.notify.targets import target_policy
from cxpulse.reading import Reader
from cxpulse.store.alerts import AlertRepository
from cxpulse.store.base import Store

log = logging.getLogger("cxpulse.alerts")

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
_RULE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class UnknownRule(LookupError):
    """No rule has this id (HTTP 404)."""

    def __init__(self, rule_id: str) -> None:
        super().__init__(f"no alert rule with id {rule_id!r}")
        self.rule_id = rule_id


class RuleExists(ValueError):
    """A create named an id that is taken (HTTP 409)."""

    def __init__(self, rule_id: str) -> None:
        super().__init__(
            f"an alert rule with id {rule_id!r} exists; PUT /v1/alert-rules/{rule_id} replaces it"
        )
        self.rule_id = rule_id


def directions() -> dict[str, Direction]:
    """Each metric's direction, from the metric registry (what `worsen` / `improve` and `change` follow)."""
    return {m.id: m.direction for m in METRICS.values()}


class AlertService:
    def __init__(
        self,
        store: Store,
        reader: Reader,
        settings: Settings,
        *,
        feed: ChangeFeed | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        client_factory: Callable[[], httpx.AsyncClient] = default_client,
    ) -> None:
        self.settings = settings
        #: where notifications may go, applied to rules sent to the API (not to stored ones): SSRF
        self._targets = target_policy(settings)
        self.feed = feed
        self.clock = clock
        self.repo = AlertRepository(store)
        self.outbox = StoreOutbox(store)
        schedule = Schedule(base_s=settings.notify_retry_base_s, max_attempts=settings.notify_max_attempts)
        self.dispatcher = Dispatcher(
            self.outbox, client_factory, schedule, clock, attempt_timeout_s=settings.notify_timeout_s
        )
        self.evaluator = Evaluator(
            reader, self.repo, self.outbox, self.metric_rules, clock=clock, on_notify=self.wake_dispatcher
        )
        self.on_rules_changed: list[Callable[[], None]] = []
        self.on_attempt: list[Callable[[str], None]] = []
        self.dispatcher.on_attempt = self._attempted
        self._directions = directions()
        self._lock = threading.Lock()
        self._rules: dict[str, Rule] = {}
        self._responses: tuple[ResponseRule, ...] = ()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.refresh()

    # ------------------------------------------------------------------------------------ rule cache

    def refresh(self) -> None:
        """Load every rule from the store (a stored rule that no longer parses is skipped, and logged)."""
        loaded: dict[str, Rule] = {}
        for data in self.repo.rule_jsons():
            try:
                loaded[data["id"]] = parse_rule(data, metrics=self._directions, rule_id=data["id"])
            except RuleError as exc:
                log.error("stored alert rule %s is no longer valid and is skipped: %s", data.get("id"), exc)
        self._install(loaded)

    def _install(self, rules: dict[str, Rule]) -> None:
        with self._lock:
            self._rules = rules
            self._responses = tuple(r for r in rules.values() if isinstance(r, ResponseRule))

    def metric_rules(self) -> list[MetricRule]:
        return [r for r in self._rules.values() if isinstance(r, MetricRule)]

    def response_rules(self) -> tuple[ResponseRule, ...]:
        """The current response rules (a cached tuple: called for every processed batch)."""
        return self._responses

    # -------------------------------------------------------------------------------------- rule API

    def create(self, data: object) -> dict[str, Any]:
        data = _writable(data)
        rule_id = self._new_id(data)
        rule = parse_rule(data, metrics=self._directions, rule_id=rule_id, target_policy=self._targets)
        self.repo.put_rule(rule, self.clock())
        self._changed({**self._rules, rule.id: rule})
        return self._view(rule)

    def replace(self, rule_id: str, data: object) -> dict[str, Any]:
        previous = self._rule(rule_id)
        data = _writable(data)
        rule = parse_rule(
            data, metrics=self._directions, rule_id=rule_id, previous=previous, target_policy=self._targets
        )
        now = self.clock()
        self.repo.put_rule(rule, now)
        disabled = self.outbox.disabled_targets(rule_id)
        for target in rule.notify:  # an edited rule gets another chance at targets that answered 410
            if (rule_id, target.url) in disabled:
                self.outbox.enable_target(rule_id, target.url, now)
        if isinstance(rule, ResponseRule) and isinstance(previous, MetricRule):
            self._forget_state(rule_id)
        self._changed({**self._rules, rule.id: rule})
        return self._view(rule)

    def delete(self, rule_id: str) -> None:
        if not self.repo.delete_rule(rule_id, self.clock()):
            raise UnknownRule(rule_id)
        if isinstance(self._rules.get(rule_id), MetricRule):
            self._forget_state(rule_id)
        self._changed({k: v for k, v in self._rules.items() if k != rule_id})

    def get(self, rule_id: str) -> dict[str, Any]:
        return self._view(self._rule(rule_id))

    def rules_view(self) -> list[dict[str, Any]]:
        states = self._states()
        return [self._view(r, states) for r in self._rules.values()]

    def _rule(self, rule_id: str) -> Rule:
        rule = self._rules.get(rule_id)
        if rule is None:
            self.refresh()  # created by another process since?
            rule = self._rules.get(rule_id)
        if rule is None:
            raise UnknownRule(rule_id)
        return rule

    def _new_id(self, data: object) -> str:
        given = data.get("id") if isinstance(data, dict) else None
        if given is None:
            return f"rule_{uuid.uuid4().hex[:12]}"
        if not isinstance(given, str) or not _RULE_ID.match(given):
            raise RuleError([{"field": "id", "message": "must be 1–64 characters of A-Z, a-z, 0-9, _ . -"}])
        if self.repo.rule_json(given) is not None:
            raise RuleExists(given)
        return given

    def _changed(self, rules: dict[str, Rule]) -> None:
        self._install(rules)
        self.evaluator.wake()
        for hook in self.on_rules_changed:
            try:
                hook()
            except Exception:
                log.exception("on_rules_changed hook failed")

    def _forget_state(self, rule_id: str) -> None:
        self.evaluator.forget(rule_id)
        self.repo.delete_state(rule_id)

    def _view(self, rule: Rule, states: dict[str, RuleState] | None = None) -> dict[str, Any]:
        """The rule as the API shows it (secrets masked) with its current state (null for a response
        rule, which has none)."""
        state: str | None = None
        if isinstance(rule, MetricRule):
            state = str((states if states is not None else self._states()).get(rule.id, RuleState()).state)
        return {**rule_to_json(rule), "state": state}

    # ------------------------------------------------------------------------------- alerts and log

    def _states(self) -> dict[str, RuleState]:
        """The evaluator's states when it runs here, else the stored ones."""
        return self.evaluator.states() if self.evaluator.loaded() else self.repo.states()

    def alerts(self, state: AlertState | None = None) -> list[dict[str, Any]]:
        """The current state of every metric rule with its last reading, `since` and last evaluation."""
        states = self._states()
        out = []
        for rule in self.metric_rules():
            current = states.get(rule.id, RuleState())
            if state is not None and current.state is not state:
                continue
            out.append(
                {
                    "rule_id": rule.id,
                    "rule": rule_summary(rule),
                    "state": str(current.state),
                    "since": None if current.since_ms is None else iso_ms(current.since_ms),
                    "evaluated_at": None if current.last_eval_ms is None else iso_ms(current.last_eval_ms),
                    "reading": dict(current.last_reading) if current.last_reading else None,
                }
            )
        return out

    def alert_counts(self) -> dict[str, int]:
        """How many metric rules are in each state (for `cxpulse_alerts{state}`)."""
        states = self._states()
        counts = Counter(str(states.get(r.id, RuleState()).state) for r in self.metric_rules())
        return {str(s): counts.get(str(s), 0) for s in AlertState}

    def transitions(self, rule_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Every state change, newest first."""
        rules = self._rules
        out = []
        for t in self.repo.transitions(rule_id, limit):
            rule = rules.get(t.rule_id)
            if isinstance(rule, MetricRule):
                out.append(public_transition(rule, t))
            else:  # a deleted rule's history
                out.append(_orphan_transition(t))
        return out

    def notifications(
        self, rule_id: str | None = None, kind: Kind | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The newest notifications, each with its body, every target's status and every attempt."""
        rows = self.outbox.latest(rule_id, kind, limit)
        ids = list(dict.fromkeys(d.id for d in rows))
        attempts: dict[str, list[dict[str, Any]]] = {}
        if ids:
            for a in self.outbox.attempts(limit=100_000, ids=ids):
                attempts.setdefault(a.id, []).append(
                    {
                        "target_index": a.target_index,
                        "target": {"type": a.target_type, "url": _shown_url(a.target_type, a.url)},
                        "attempt": a.attempt,
                        "at": iso_ms(a.at_ms),
                        "duration_ms": a.duration_ms,
                        "outcome": a.outcome,
                        "status_code": a.status_code,
                        "error": a.error,
                        "next_attempt_at": None if a.next_attempt_ms is None else iso_ms(a.next_attempt_ms),
                    }
                )
        grouped: dict[str, list[Delivery]] = {}
        for d in rows:
            grouped.setdefault(d.id, []).append(d)
        return [
            {
                "id": nid,
                "rule_id": group[0].rule_id,
                "kind": group[0].kind,
                "created_at": iso_ms(group[0].created_ms),
                "payload": orjson.loads(group[0].body),
                "targets": [_target_status(d) for d in group],
                "attempts": attempts.get(nid, []),
            }
            for nid, group in grouped.items()
        ]

    def _attempted(self, record: AttemptRecord) -> None:
        for hook in self.on_attempt:
            hook(record.outcome)

    # ---------------------------------------------------------------------------------------- loops

    def loops(self) -> list[Loop]:
        """The background work of the process that evaluates and delivers (see `services.serving`)."""
        return [self.run_evaluator, self.run_dispatcher]

    async def run_evaluator(self, stop: asyncio.Event) -> None:
        await self.evaluator.run(stop, interval_s=self.settings.alert_interval_s, feed=self.feed)

    async def run_dispatcher(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        await self.dispatcher.run(stop)

    def wake_dispatcher(self) -> None:
        """Deliver now rather than at the next poll. Safe from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.dispatcher.wake)


def _target_status(d: Delivery) -> dict[str, Any]:
    return {
        "target_index": d.target_index,
        "target": {"type": d.target.type, "url": _shown_url(d.target.type, d.target.url)},
        "status": str(d.status),
        "attempts": d.attempts,
        "next_attempt_at": iso_ms(d.next_attempt_ms) if d.status == "pending" else None,
        "last_result": d.last_result,
    }


def _shown_url(target_type: str, url: str) -> str:
    """A Slack webhook URL is a credential: listed masked, like it is in the rule."""
    return mask_url(url) if target_type == "slack" else url


def _orphan_transition(t: Transition) -> dict[str, Any]:
    return {
        "rule_id": t.rule_id,
        "name": None,
        "metric": None,
        "severity": None,
        "from": str(t.from_state),
        "to": str(t.to_state),
        "at": iso_ms(t.at_ms),
        "notify": t.notify,
        "reading": dict(t.reading) if t.reading else None,
    }


def _writable(data: object) -> object:
    """The body without `state`, which GET shows but nobody writes (so GET → edit → PUT round-trips)."""
    if isinstance(data, dict) and "state" in data:
        return {k: v for k, v in data.items() if k != "state"}
    return data
