"""The metric-rule state machine (SPEC §4): ok → pending → firing → ok, and no_data.

A rule's state is a few timestamps, not a history; `evaluate` takes the previous state, the reading as
of `now_ms` and returns the next state plus the transition, if any. Only transitions are recorded and
notified, so a state that holds never notifies twice. Hysteresis is an input, not more state: a firing
rule is judged against `recover`, any other against the firing threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal

from cxpulse.domain.alerts.ids import notification_id
from cxpulse.domain.alerts.rules.metric import THRESHOLD_OPS, MetricRule, Op

Reading = Mapping[str, Any]
Notify = Literal["firing", "resolved"]


class AlertState(StrEnum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"
    NO_DATA = "no_data"


class Verdict(StrEnum):
    """What one reading says about a rule's condition."""

    HOLDS = "holds"
    CLEAR = "clear"
    NO_DATA = "no_data"


@dataclass(frozen=True, slots=True)
class RuleState:
    """Persisted per rule. `active_since_ms`: the condition has held at every evaluation since then
    (pending and firing); `keep_firing_since_ms`: a firing rule's condition first stopped holding."""

    state: AlertState = AlertState.OK
    since_ms: int | None = None
    active_since_ms: int | None = None
    keep_firing_since_ms: int | None = None
    last_eval_ms: int | None = None
    last_value: float | None = None
    last_reading: Reading | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "state": str(self.state),
            "since_ms": self.since_ms,
            "active_since_ms": self.active_since_ms,
            "keep_firing_since_ms": self.keep_firing_since_ms,
            "last_eval_ms": self.last_eval_ms,
            "last_value": self.last_value,
            "last_reading": None if self.last_reading is None else dict(self.last_reading),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RuleState:
        return cls(
            state=AlertState(data["state"]),
            since_ms=data.get("since_ms"),
            active_since_ms=data.get("active_since_ms"),
            keep_firing_since_ms=data.get("keep_firing_since_ms"),
            last_eval_ms=data.get("last_eval_ms"),
            last_value=data.get("last_value"),
            last_reading=data.get("last_reading"),
        )


@dataclass(frozen=True, slots=True)
class Transition:
    rule_id: str
    from_state: AlertState
    to_state: AlertState
    at_ms: int
    reading: Reading | None
    notify: Notify | None

    @property
    def notification_id(self) -> str | None:
        """The id of the message this transition sends (None when it sends none)."""
        return None if self.notify is None else notification_id(self.rule_id, f"{self.notify}@{self.at_ms}")

    def to_json(self) -> dict[str, Any]:
        """As `GET /v1/alerts/transitions` lists it (`at` in epoch ms; the route formats it)."""
        return {
            "rule_id": self.rule_id,
            "from": str(self.from_state),
            "to": str(self.to_state),
            "at_ms": self.at_ms,
            "reading": None if self.reading is None else dict(self.reading),
            "notify": self.notify,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Transition:
        return cls(
            data["rule_id"],
            AlertState(data["from"]),
            AlertState(data["to"]),
            int(data["at_ms"]),
            data.get("reading"),
            data.get("notify"),
        )


def judge(rule: MetricRule, reading: Reading, *, firing: bool) -> Verdict:
    """Whether the condition holds. A firing rule is held to `recover` (and needs no significance or
    confidence to stay firing); any other rule must pass the firing threshold."""
    value, n = reading.get("value"), reading.get("n") or 0
    if value is None or n < rule.min_samples:
        return Verdict.NO_DATA
    op, held = rule.op, False
    if op in THRESHOLD_OPS:
        if firing:
            held = value < rule.recover_limit if op is Op.BELOW else value > rule.recover_limit
        else:
            x = value
            if rule.confidence:
                ci = reading.get("ci")
                if not ci:
                    return Verdict.CLEAR
                x = ci[1] if op is Op.BELOW else ci[0]
            held = x < rule.limit if op is Op.BELOW else x > rule.limit
        return Verdict.HOLDS if held else Verdict.CLEAR
    previous = reading.get("previous") or {}
    base, base_n = previous.get("value"), previous.get("n") or 0
    if base is None or base_n < rule.min_samples:
        return Verdict.NO_DATA
    change = value - base if op is Op.INCREASE else base - value
    if firing:
        held = change >= rule.recover_limit
    else:
        significant = reading.get("significant") is True or not rule.condition.require_significant
        held = change >= rule.limit and significant
    return Verdict.HOLDS if held else Verdict.CLEAR


def evaluate(
    rule: MetricRule, state: RuleState, reading: Reading, now_ms: int
) -> tuple[RuleState, Transition | None]:
    """The next state of `rule` given the reading as of `now_ms` (whose `previous` is the rule's baseline)."""
    current = replace(state, last_eval_ms=now_ms, last_value=reading.get("value"), last_reading=reading)
    if not rule.enabled:
        nxt = _enter(current, AlertState.OK, now_ms, active_since_ms=None, keep_firing_since_ms=None)
    else:
        verdict = judge(rule, reading, firing=state.state is AlertState.FIRING)
        nxt = _STEP[verdict](rule, current, now_ms)
    if nxt.state is state.state:
        return nxt, None
    notify: Notify | None = None
    if nxt.state is AlertState.FIRING:
        notify = "firing"
    elif state.state is AlertState.FIRING:
        notify = "resolved"
    return nxt, Transition(rule.id, state.state, nxt.state, now_ms, reading, notify)


def _enter(state: RuleState, to: AlertState, now_ms: int, **changes: Any) -> RuleState:
    since = state.since_ms if to is state.state else now_ms
    return replace(state, state=to, since_ms=since, **changes)


def _holds(rule: MetricRule, state: RuleState, now_ms: int) -> RuleState:
    if state.state is AlertState.FIRING:
        return replace(state, keep_firing_since_ms=None)
    if state.state is AlertState.PENDING:
        assert state.active_since_ms is not None
        if now_ms - state.active_since_ms >= rule.for_ms:
            return _enter(state, AlertState.FIRING, now_ms)
        return state
    to = AlertState.FIRING if rule.for_ms == 0 else AlertState.PENDING
    return _enter(state, to, now_ms, active_since_ms=now_ms, keep_firing_since_ms=None)


def _clear(rule: MetricRule, state: RuleState, now_ms: int) -> RuleState:
    if state.state is AlertState.FIRING and not _keep_firing_over(rule, state, now_ms):
        return replace(state, keep_firing_since_ms=_first(state.keep_firing_since_ms, now_ms))
    return _enter(state, AlertState.OK, now_ms, active_since_ms=None, keep_firing_since_ms=None)


def _no_data(rule: MetricRule, state: RuleState, now_ms: int) -> RuleState:
    """Too few samples never fire; a firing rule keeps firing (a quiet hour is not a recovery) unless
    `keep_firing_for` is set and has run out since the condition last held."""
    if state.state is AlertState.FIRING and (
        rule.keep_firing_for_ms == 0 or not _keep_firing_over(rule, state, now_ms)
    ):
        kept = _first(state.keep_firing_since_ms, now_ms) if rule.keep_firing_for_ms else None
        return replace(state, keep_firing_since_ms=kept)
    return _enter(state, AlertState.NO_DATA, now_ms, active_since_ms=None, keep_firing_since_ms=None)


def _keep_firing_over(rule: MetricRule, state: RuleState, now_ms: int) -> bool:
    """Whether a firing rule whose condition no longer holds may stop firing at `now_ms`."""
    return now_ms - _first(state.keep_firing_since_ms, now_ms) >= rule.keep_firing_for_ms


def _first(started_ms: int | None, now_ms: int) -> int:
    return now_ms if started_ms is None else started_ms


_STEP = {Verdict.HOLDS: _holds, Verdict.CLEAR: _clear, Verdict.NO_DATA: _no_data}
