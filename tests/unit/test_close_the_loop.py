"""Close-the-loop in the one batch step (SPEC §4): answers matched as they are accepted, the cooldown kept
in the keyed state and judged in event time, late answers never notify, and a duplicate, a redelivery or a
replay never yields a second, different notification."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from cxpulse.domain.alerts.responses import notification_id
from cxpulse.domain.alerts.rules.response import ResponseRule
from cxpulse.domain.alerts.rules.rule import parse_rule
from cxpulse.domain.events import Event
from cxpulse.domain.metrics import Direction
from cxpulse.domain.state import CustomerState, new_state
from cxpulse.pipeline.batch import Delivery, Step, step

NOW = 1_793_491_200_000
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
DIRECTIONS = {"nps": Direction.HIGHER_IS_BETTER}
HOOK = [{"type": "webhook", "url": "https://hooks.example/cx"}]


def rule(rule_id: str = "rr", **fields: Any) -> ResponseRule:
    parsed = parse_rule(
        {"type": "response", "name": "Call detractors", "survey": "nps", "notify": HOOK} | fields,
        metrics=DIRECTIONS,
        rule_id=rule_id,
    )
    assert isinstance(parsed, ResponseRule)
    return parsed


def answer(event_id: str, score: int, occurred_ms: int = NOW - MINUTE, **fields: Any) -> Event:
    base = Event(
        event_id=event_id,
        type="survey_answer",
        occurred_ms=occurred_ms,
        customer_id="c1",
        touchpoint="checkout",
        channel="web",
        segment="pro",
        survey="nps",
        score=score,
        scale=10,
        comment="Checkout kept failing",
    )
    return replace(base, **fields)


def run(
    events: list[Event],
    states: dict[str, CustomerState],
    rules: list[ResponseRule],
    *,
    known: dict[str, str | None] | None = None,
    received_ms: int = NOW,
    positions: list[str] | None = None,
) -> Step:
    deliveries = [
        Delivery(e, received_ms, None if positions is None else positions[i]) for i, e in enumerate(events)
    ]
    return step(deliveries, known or {}, states, batch_seq=1, responses=rules)


def test_a_matching_answer_notifies_with_the_facts_and_a_deterministic_id() -> None:
    states: dict[str, CustomerState] = {}
    done = run([answer("e1", 3)], states, [rule()])
    (n,) = done.notifications
    assert n.id == notification_id("rr", "e1") and n.rule_id == "rr" and n.kind == "response"
    assert n.targets == rule().notify
    assert n.body == {
        "kind": "response",
        "rule": {"id": "rr", "name": "Call detractors"},
        "event_id": "e1",
        "customer_id": "c1",
        "survey": "nps",
        "score": 3,
        "comment": "Checkout kept failing",
        "touchpoint": "checkout",
        "channel": "web",
        "segment": "pro",
        "occurred_at": "2026-10-31T23:59:00.000Z",
    }
    assert states["c1"]["notified"] == {"rr": NOW - MINUTE}
    assert done.changed == {"c1"}  # the runtime saves the cooldown like any state change
    assert orjson.loads(orjson.dumps(states["c1"])) == states["c1"]  # JSON-able, as keyed state must be


def test_answers_that_do_not_match_leave_no_trace() -> None:
    states: dict[str, CustomerState] = {}
    rules = [rule(filters={"touchpoint": "checkout"})]
    done = run(
        [
            answer("promoter", 9),
            answer("elsewhere", 2, touchpoint="support"),
            answer("csat", 1, survey="csat", scale=5),
        ],
        states,
        rules,
    )
    assert done.notifications == [] and states == {} and done.changed == set()
    assert run([answer("x", 2)], states, []).notifications == []  # no rules, no matching


def test_cooldown_holds_per_customer_and_rule_in_event_time() -> None:
    states: dict[str, CustomerState] = {}
    rules = [rule("weekly", cooldown="7d"), rule("always", cooldown="0s")]
    first = run([answer("e1", 2, NOW - 10 * HOUR)], states, rules)
    assert {n.rule_id for n in first.notifications} == {"weekly", "always"}
    # Processed much later than it occurred, but what counts is event time: 2 h after the last one.
    second = run([answer("e2", 1, NOW - 8 * HOUR)], states, rules, received_ms=NOW + 10 * HOUR)
    assert [n.rule_id for n in second.notifications] == ["always"]
    # Another customer has their own cooldown.
    other = run([answer("e3", 1, NOW - 8 * HOUR, customer_id="c2")], states, rules)
    assert {n.rule_id for n in other.notifications} == {"weekly", "always"}
    # An out-of-order earlier answer inside the cooldown is held back too (compared both ways).
    earlier = run([answer("e4", 0, NOW - 15 * HOUR)], states, rules)
    assert [n.rule_id for n in earlier.notifications] == ["always"]
    assert states["c1"]["notified"]["weekly"] == NOW - 10 * HOUR
    assert states["c1"]["notified"]["always"] == NOW - 8 * HOUR  # the latest notified answer


def test_the_cooldown_ends_after_its_length_in_event_time() -> None:
    states: dict[str, CustomerState] = {}
    rules = [rule(cooldown="1d")]
    assert len(run([answer("e1", 2, NOW - 2 * DAY)], states, rules, received_ms=NOW - 2 * DAY).notifications)
    later = run([answer("e2", 2, NOW - DAY)], states, rules, received_ms=NOW - DAY)
    assert [n.id for n in later.notifications] == [notification_id("rr", "e2")]
    assert states["c1"]["notified"]["rr"] == NOW - DAY


def test_an_answer_more_than_24h_late_never_notifies() -> None:
    states: dict[str, CustomerState] = {}
    late = answer("late", 0, NOW - 24 * HOUR - 1)
    assert run([late], states, [rule()]).notifications == []
    assert states == {}
    just_in_time = answer("ok", 0, NOW - 24 * HOUR)
    assert len(run([just_in_time], states, [rule()]).notifications) == 1


def test_lateness_is_judged_at_the_copy_received_time_so_a_replay_decides_the_same() -> None:
    """The same stored answer replayed days later (received_ms is stored with it) still notifies with the
    same id; judged by the clock at replay it would have been late."""
    rules = [rule()]
    event = answer("e1", 1, NOW - HOUR)
    first = run([event], {}, rules, received_ms=NOW)
    replay = run([event], {}, rules, received_ms=NOW)  # replay: same received_ms, fresh state
    assert [n.id for n in first.notifications] == [n.id for n in replay.notifications]
    assert run([event], {}, rules, received_ms=NOW + 3 * DAY).notifications == []


def test_a_duplicate_never_notifies_twice() -> None:
    states: dict[str, CustomerState] = {}
    rules = [rule(cooldown="0s")]  # no cooldown: only dedup stands between a duplicate and a second message
    first = run([answer("e1", 2), answer("e1", 2)], states, rules)  # twice in one batch
    assert len(first.notifications) == 1
    again = run([answer("e1", 2)], states, rules, known={"e1": None})  # a later duplicate (in-process)
    assert again.notifications == [] and again.rows == []
    moved = run([answer("e1", 2)], states, rules, known={"e1": "0:5"}, positions=["1:9"])  # elsewhere
    assert moved.notifications == []


def test_a_redelivery_emits_the_same_notification_again_and_nothing_else() -> None:
    """The same copy again (same Kafka position) after the state was saved but perhaps not the output:
    the notification comes again with the same id — the outbox ignores it if it landed — and the cooldown
    neither blocks it nor lets a second, different message out."""
    states: dict[str, CustomerState] = {}
    rules = [rule()]
    first = run([answer("e1", 2)], states, rules, positions=["0:5"])
    again = run([answer("e1", 2)], states, rules, known={"e1": "0:5"}, positions=["0:5"])
    assert [n.id for n in again.notifications] == [n.id for n in first.notifications]
    assert again.notifications[0].body == first.notifications[0].body
    other = run([answer("e2", 2)], states, rules, positions=["0:6"])  # a new answer within the cooldown
    assert other.notifications == []


def test_old_states_without_the_map_load_and_get_it_when_needed() -> None:
    saved = orjson.loads(orjson.dumps(new_state()))  # a state saved before close-the-loop existed
    states = {"c1": saved}
    done = run([answer("e1", 2)], states, [rule()])
    assert len(done.notifications) == 1
    assert states["c1"]["notified"] == {"rr": NOW - MINUTE} and states["c1"]["seq"] == 1
    assert "notified" not in new_state()  # customers never notified carry no map


def test_disabled_rules_and_several_rules_at_once() -> None:
    states: dict[str, CustomerState] = {}
    rules = [rule("a"), rule("b", scores=[0, 1, 2]), rule("off", enabled=False)]
    done = run([answer("e1", 2)], states, rules)
    assert sorted(n.rule_id for n in done.notifications) == ["a", "b"]
    assert len({n.id for n in done.notifications}) == 2  # one message per rule
