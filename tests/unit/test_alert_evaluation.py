"""The rule state machine as golden tables: readings over time → state after each evaluation and the
notification it sends (SPEC §4). Readings of the confidence / significance tables are real readings built
by the metrics module from raw statistics."""

from __future__ import annotations

import random
from typing import Any

import pytest

from cxpulse.domain.alerts.evaluation import AlertState, RuleState, Transition, evaluate
from cxpulse.domain.alerts.rules.metric import MetricRule
from cxpulse.domain.alerts.rules.rule import parse_rule
from cxpulse.domain.metrics import METRICS as KPIS
from cxpulse.domain.metrics import Direction
from cxpulse.domain.metrics import reading as kpi_reading

DIRECTIONS = {
    "nps": Direction.HIGHER_IS_BETTER,
    "ces": Direction.LOWER_IS_BETTER,
    "resolution_time": Direction.LOWER_IS_BETTER,
}
T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z
OK, PENDING, FIRING, NO_DATA = "ok", "pending", "firing", "no_data"
Row = tuple[int, dict[str, Any], str, str | None]  # (seconds after T0, reading, state after, notification)


def rule(**fields: Any) -> MetricRule:
    data: dict[str, Any] = {"name": "r", "metric": "nps", "condition": {"op": "below", "threshold": 20}}
    data.update(fields)
    parsed = parse_rule(data, metrics=DIRECTIONS, rule_id="rule-1")
    assert isinstance(parsed, MetricRule)
    return parsed


def r(value: float | None, n: int = 100, **extra: Any) -> dict[str, Any]:
    """A reading with what the state machine looks at (ci, previous, significant when given)."""
    return {"value": value, "n": n, "ci": None, "previous": {"value": None, "n": 0}, "delta": None} | extra


def nps(promoters: int, detractors: int, n: int, prev: tuple[int, int, int] = (0, 0, 0)) -> dict[str, Any]:
    """A real NPS reading (CI and significance computed as the API computes them)."""
    return kpi_reading(KPIS["nps"], [(promoters, detractors, n), prev])


def run(rule: MetricRule, table: list[Row], state: RuleState | None = None) -> list[Transition]:
    """Evaluate the table row by row, checking the state and notification after each row."""
    state = state or RuleState()
    transitions = []
    for seconds, reading, expected_state, expected_notify in table:
        state, transition = evaluate(rule, state, reading, T0 + seconds * 1000)
        got_notify = transition.notify if transition else None
        assert (str(state.state), got_notify) == (expected_state, expected_notify), f"at t={seconds}s"
        if transition:
            assert transition.from_state != transition.to_state
            transitions.append(transition)
    return transitions


def test_for_holds_pending_until_the_condition_held_that_long() -> None:
    table: list[Row] = [
        (0, r(30), OK, None),
        (10, r(15), PENDING, None),  # holds from t=10
        (200, r(19), PENDING, None),
        (309, r(10), PENDING, None),  # 299 s
        (310, r(10), FIRING, "firing"),  # 300 s: fires
        (320, r(5), FIRING, None),  # never repeated while firing
        (900, r(12), FIRING, None),
        (910, r(20), OK, "resolved"),  # ≥ threshold (the default recover)
        (920, r(21), OK, None),
    ]
    transitions = run(rule(), table)
    assert [(t.from_state, t.to_state) for t in transitions] == [
        (AlertState.OK, AlertState.PENDING),
        (AlertState.PENDING, AlertState.FIRING),
        (AlertState.FIRING, AlertState.OK),
    ]
    assert transitions[1].at_ms == T0 + 310_000 and transitions[1].reading == r(10)


def test_a_break_while_pending_restarts_the_for_clock() -> None:
    table: list[Row] = [
        (0, r(10), PENDING, None),
        (200, r(25), OK, None),  # the condition must hold at every evaluation
        (240, r(10), PENDING, None),
        (500, r(10), PENDING, None),  # 300 s since t=0, but only 260 s since t=240
        (540, r(10), FIRING, "firing"),
    ]
    run(rule(), table)


def test_for_zero_fires_at_the_first_evaluation_that_holds() -> None:
    table: list[Row] = [
        (0, r(25), OK, None),
        (10, r(19.9), FIRING, "firing"),
        (20, r(35), OK, "resolved"),
    ]
    run(rule(**{"for": "0s"}), table)


def test_keep_firing_for_starts_when_the_condition_fails_and_clears_when_it_holds() -> None:
    table: list[Row] = [
        (0, r(10), FIRING, "firing"),
        (100, r(30), FIRING, None),  # fails: the 120 s clock starts
        (150, r(10), FIRING, None),  # holds again: clock cleared
        (200, r(30), FIRING, None),  # fails: clock restarts at 200
        (300, r(30), FIRING, None),  # 100 s
        (320, r(30), OK, "resolved"),  # 120 s
    ]
    run(rule(**{"for": "0s", "keep_firing_for": "2m"}), table)


def test_hysteresis_a_value_hovering_between_threshold_and_recover_does_not_flap() -> None:
    hovering = [19, 21, 19.5, 24, 19.9, 24.9, 22]
    table: list[Row] = [(0, r(30), OK, None), (10, r(15), FIRING, "firing")]
    table += [(20 + 10 * i, r(v), FIRING, None) for i, v in enumerate(hovering)]
    table += [
        (200, r(25), OK, "resolved"),  # resolves only at ≥ recover
        (210, r(22), OK, None),  # between again: a resolved rule needs < threshold to fire
        (220, r(24.9), OK, None),
        (230, r(19.9), FIRING, "firing"),
    ]
    assert len(run(rule(recover=25, **{"for": "0s"}), table)) == 3

    # The same values without `recover` page on every crossing — what hysteresis is for.
    plain = rule(**{"for": "0s"})
    state, notifications = RuleState(), 0
    for i, v in enumerate(hovering):
        state, transition = evaluate(plain, state, r(v), T0 + i * 10_000)
        notifications += transition is not None and transition.notify is not None
    assert notifications == 6  # fire, resolve, fire, resolve, fire, resolve


def test_hysteresis_is_mirrored_for_above() -> None:
    table: list[Row] = [
        (0, r(80), FIRING, "firing"),  # above 70
        (10, r(69), FIRING, None),  # not yet ≤ recover 60
        (20, r(60.5), FIRING, None),
        (30, r(60), OK, "resolved"),
        (40, r(65), OK, None),
    ]
    run(rule(condition={"op": "above", "threshold": 70}, recover=60, **{"for": "0s"}), table)


def test_too_few_samples_never_fire_and_show_no_data() -> None:
    table: list[Row] = [
        (0, r(-80, n=29), NO_DATA, None),  # terrible, but 29 < min_samples
        (10, r(None, n=0), NO_DATA, None),  # an empty window
        (20, r(25, n=30), OK, None),
        (30, r(10, n=10), NO_DATA, None),
        (40, r(10, n=30), FIRING, "firing"),
        (50, r(10, n=5), FIRING, None),  # a firing rule stays firing on thin data
        (5000, r(None, n=0), FIRING, None),  # … however long (keep_firing_for is 0: no limit)
        (5010, r(30, n=31), OK, "resolved"),  # until a reading with enough samples recovers
    ]
    run(rule(**{"for": "0s"}), table)


def test_no_data_ends_a_firing_rule_once_keep_firing_for_has_run_out() -> None:
    table: list[Row] = [
        (0, r(10), FIRING, "firing"),
        (60, r(10, n=3), FIRING, None),  # no data: clock starts at 60
        (120, r(12), FIRING, None),  # holds: clock cleared
        (180, r(None, n=0), FIRING, None),  # clock restarts at 180
        (479, r(None, n=0), FIRING, None),
        (480, r(None, n=0), NO_DATA, "resolved"),  # 5 min since the condition last held
        (490, r(10), FIRING, "firing"),  # for 0s
    ]
    run(rule(**{"for": "0s", "keep_firing_for": "5m"}), table)


def test_no_data_interrupts_pending() -> None:
    table: list[Row] = [
        (0, r(10), PENDING, None),
        (100, r(10, n=2), NO_DATA, None),
        (200, r(10), PENDING, None),
        (499, r(10), PENDING, None),
        (500, r(10), FIRING, "firing"),
    ]
    run(rule(), table)


def test_confidence_a_small_sample_whose_interval_straddles_the_threshold_does_not_fire() -> None:
    small, large = nps(8, 6, 40), nps(80, 60, 400)  # both NPS 5, far below 20
    assert small["value"] == large["value"] == 5
    assert small["ci"][0] < 20 < small["ci"][1] and large["ci"][1] < 20
    table: list[Row] = [
        (0, small, OK, None),
        (10, large, FIRING, "firing"),
        (20, nps(100, 20, 400), OK, "resolved"),
    ]
    run(rule(confidence=True, **{"for": "0s"}), table)
    # Without confidence the point value alone pages on the small sample.
    run(rule(**{"for": "0s"}), [(0, small, FIRING, "firing")])


def test_a_decrease_must_be_significant_unless_told_otherwise() -> None:
    noisy = nps(30, 20, 100, prev=(50, 20, 100))  # 30 → 10: a drop of 20, not significant at n = 100
    real = nps(120, 80, 400, prev=(200, 80, 400))  # the same drop on 400 answers: significant
    assert noisy["delta"] == real["delta"] == -20
    assert noisy["significant"] is False and real["significant"] is True
    table: list[Row] = [
        (0, noisy, OK, None),
        (10, real, FIRING, "firing"),
        (20, nps(200, 80, 400, prev=(200, 80, 400)), OK, "resolved"),
    ]
    condition = {"op": "decrease", "by": 10}
    run(rule(condition=condition, **{"for": "0s"}), table)
    lenient = rule(condition={**condition, "require_significant": False}, **{"for": "0s"})
    run(lenient, [(0, noisy, FIRING, "firing")])
    # Too small a drop never fires, significant or not.
    run(rule(condition={"op": "decrease", "by": 25}, **{"for": "0s"}), [(0, real, OK, None)])


def test_a_change_needs_enough_samples_on_both_sides() -> None:
    thin_baseline = r(10, n=100, previous={"value": 60, "n": 12}, significant=True)
    table: list[Row] = [(0, thin_baseline, NO_DATA, None)]
    run(rule(condition={"op": "decrease", "by": 10}, **{"for": "0s"}), table)


def test_change_hysteresis_holds_a_firing_decrease_until_it_shrinks_below_recover() -> None:
    def drop(size: float, significant: bool = True) -> dict[str, Any]:
        return r(50 - size, previous={"value": 50, "n": 100}, significant=significant)

    table: list[Row] = [
        (0, drop(12), FIRING, "firing"),
        (10, drop(8, significant=False), FIRING, None),  # staying needs neither by nor significance
        (20, drop(4.5, significant=False), FIRING, None),
        (30, drop(3.9), OK, "resolved"),  # < recover 4
        (40, drop(9), OK, None),
    ]
    run(rule(condition={"op": "decrease", "by": 10}, recover=4, **{"for": "0s"}), table)


def test_worsen_on_a_lower_is_better_metric_fires_on_an_increase() -> None:
    ces = rule(metric="ces", condition={"op": "worsen", "by": 0.5}, **{"for": "0s"})
    harder = kpi_reading(KPIS["ces"], [(4.0, 1.0, 100, 20), (3.2, 1.0, 100, 40)])  # effort up 0.8
    easier = kpi_reading(KPIS["ces"], [(2.5, 1.0, 100, 70), (3.2, 1.0, 100, 40)])  # effort down 0.7
    assert harder["significant"] and easier["significant"]
    run(ces, [(0, easier, OK, None), (10, harder, FIRING, "firing"), (20, easier, OK, "resolved")])
    assert ces.change == "worse"
    improving = rule(metric="ces", condition={"op": "improve", "by": 0.5}, **{"for": "0s"})
    run(improving, [(0, harder, OK, None), (10, easier, FIRING, "firing")])
    assert improving.change == "better"


def test_disabling_a_firing_rule_resolves_it() -> None:
    firing, _ = evaluate(rule(**{"for": "0s"}), RuleState(), r(10), T0)
    assert firing.state is AlertState.FIRING
    state, transition = evaluate(rule(enabled=False), firing, r(10), T0 + 10_000)
    assert state.state is AlertState.OK and transition is not None and transition.notify == "resolved"


def test_state_survives_a_restart_through_json() -> None:
    """Persist after every evaluation, reload: pending keeps its clock, firing does not re-notify."""
    slow = rule()
    state, _ = evaluate(slow, RuleState(), r(10), T0)
    assert state.state is AlertState.PENDING and state.since_ms == T0
    reloaded = RuleState.from_json(state.to_json())
    assert reloaded == state
    state, transition = evaluate(slow, reloaded, r(10), T0 + 300_000)
    assert transition is not None and transition.notify == "firing"
    state, transition = evaluate(slow, RuleState.from_json(state.to_json()), r(10), T0 + 310_000)
    assert state.state is AlertState.FIRING and transition is None
    assert state.active_since_ms == T0 and state.since_ms == T0 + 300_000 and state.last_value == 10


def test_transitions_serialize_and_have_stable_notification_ids() -> None:
    _, transition = evaluate(rule(**{"for": "0s"}), RuleState(), r(10), T0)
    assert transition is not None
    assert Transition.from_json(transition.to_json()) == transition
    assert transition.to_json()["from"] == "ok" and transition.to_json()["to"] == "firing"
    _, again = evaluate(rule(**{"for": "0s"}), RuleState(), r(10), T0)
    assert again is not None and again.notification_id == transition.notification_id
    _, other = evaluate(rule(**{"for": "0s"}), RuleState(), r(10), T0 + 1)
    assert other is not None and other.notification_id != transition.notification_id
    _, silent = evaluate(rule(), RuleState(), r(10), T0)
    assert silent is not None and silent.notify is None and silent.notification_id is None


@pytest.mark.parametrize("kff", ["0s", "1m"])
def test_a_state_that_holds_never_notifies_twice(kff: str) -> None:
    """Whatever the readings, notifications alternate firing / resolved, starting with firing."""
    rng = random.Random(7)
    subject = rule(recover=25, keep_firing_for=kff, **{"for": "10s"})
    state, sent = RuleState(), []
    for i in range(2000):
        reading = r(rng.choice([None, 5, 15, 19, 21, 24, 26, 40]), n=rng.choice([0, 10, 100, 100, 100]))
        state, transition = evaluate(subject, state, reading, T0 + i * 10_000)
        if transition and transition.notify:
            sent.append(transition.notify)
    assert len(sent) > 10
    assert sent == ["firing", "resolved"] * (len(sent) // 2) + ["firing"] * (len(sent) % 2)
