"""Close-the-loop response rules (SPEC §4): matching, cooldown in event time, deterministic ids, bodies."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from cxpulse.domain.alerts.evaluation import RuleState, evaluate
from cxpulse.domain.alerts.payloads import alert_payload, response_payload, slack_payload
from cxpulse.domain.alerts.responses import (
    LATE_MS,
    cooldown_allows,
    default_scores,
    notification_id,
    response_matches,
)
from cxpulse.domain.alerts.rules.metric import MetricRule
from cxpulse.domain.alerts.rules.response import ResponseRule
from cxpulse.domain.alerts.rules.rule import parse_rule
from cxpulse.domain.events import Event
from cxpulse.domain.metrics import Direction

DIRECTIONS = {"nps": Direction.HIGHER_IS_BETTER, "ces": Direction.LOWER_IS_BETTER}
NOW = 1_793_491_200_000
DAY = 86_400_000


def response_rule(**fields: Any) -> ResponseRule:
    rule = parse_rule(
        {"type": "response", "name": "Call detractors", "survey": "nps"} | fields,
        metrics=DIRECTIONS,
        rule_id="rr",
    )
    assert isinstance(rule, ResponseRule)
    return rule


def answer(score: int, survey: str = "nps", scale: int = 10, **fields: Any) -> Event:
    base = Event(
        event_id="e1",
        type="survey_answer",
        occurred_ms=NOW - 60_000,
        customer_id="c1",
        touchpoint="checkout",
        channel="web",
        segment="pro",
        survey=survey,
        score=score,
        scale=scale,
        comment="Too slow <again> & again",
    )
    return replace(base, **fields)


@pytest.mark.parametrize(
    ("survey", "scale", "expected"),
    [("nps", 10, set(range(7))), ("csat", 5, {1, 2}), ("csat", 7, {1, 2, 3}), ("ces", 7, {6, 7})],
)
def test_default_scores(survey: str, scale: int, expected: set[int]) -> None:
    assert default_scores(survey, scale) == expected


@pytest.mark.parametrize(("score", "matches"), [(0, True), (6, True), (7, False), (10, False)])
def test_nps_detractors_match_by_default(score: int, matches: bool) -> None:
    assert response_matches(response_rule(), answer(score), NOW) is matches


def test_csat_defaults_follow_the_answers_scale() -> None:
    rule = response_rule(survey="csat")
    assert response_matches(rule, answer(3, "csat", 7), NOW)
    assert not response_matches(rule, answer(3, "csat", 5), NOW)
    assert response_matches(rule, answer(2, "csat", 5), NOW)


def test_explicit_scores_filters_survey_type_and_enabled() -> None:
    rule = response_rule(scores=[9, 10], filters={"touchpoint": "checkout", "segment": "pro"})
    assert response_matches(rule, answer(10), NOW)
    assert not response_matches(rule, answer(3), NOW)
    assert not response_matches(rule, answer(10, segment="free"), NOW)
    assert not response_matches(rule, answer(10, channel="x", touchpoint="support"), NOW)
    assert not response_matches(rule, answer(10, survey="csat", scale=5), NOW)
    assert not response_matches(rule, replace(answer(10), type="purchase"), NOW)
    assert not response_matches(replace(rule, enabled=False), answer(10), NOW)


def test_an_answer_more_than_a_day_late_never_matches() -> None:
    rule = response_rule()
    assert response_matches(rule, answer(3, occurred_ms=NOW - LATE_MS), NOW)
    assert not response_matches(rule, answer(3, occurred_ms=NOW - LATE_MS - 1), NOW)
    assert LATE_MS == DAY


def test_cooldown_works_in_event_time_both_ways() -> None:
    week = 7 * DAY
    assert cooldown_allows(None, NOW, week)
    assert not cooldown_allows(NOW, NOW, week)  # the same answer replayed
    assert not cooldown_allows(NOW, NOW + 6 * DAY, week)
    assert cooldown_allows(NOW, NOW + week, week)
    assert not cooldown_allows(NOW, NOW - DAY, week)  # an earlier answer arriving late
    assert cooldown_allows(NOW, NOW, 0)


def test_replaying_a_stream_makes_the_same_decisions() -> None:
    """Cooldown decided per answer from the last notified answer, in event time: same input, same ids."""
    rule = response_rule(cooldown="2d")
    answers = [
        answer(s, event_id=f"e{i}", occurred_ms=NOW + i * DAY // 2)
        for i, s in enumerate([1, 2, 9, 0, 5, 3, 4, 6])
    ]

    def decide() -> list[str]:
        last: int | None = None
        sent = []
        for event in answers:
            if response_matches(rule, event, event.occurred_ms + 1000) and cooldown_allows(
                last, event.occurred_ms, rule.cooldown_ms
            ):
                last = event.occurred_ms
                sent.append(notification_id(rule.id, event.event_id))
        return sent

    first = decide()
    assert first == decide()
    assert first == [notification_id("rr", "e0"), notification_id("rr", "e4")]  # e0 at 0 d, e4 at 2 d


def test_notification_ids_are_deterministic_and_distinct() -> None:
    assert notification_id("r1", "e1") == notification_id("r1", "e1")
    assert len({notification_id("r1", "e1"), notification_id("r2", "e1"), notification_id("r1", "e2")}) == 3
    assert notification_id("r1", "e1").startswith("msg_")


def test_response_body_and_its_slack_message() -> None:
    body = response_payload(response_rule(), answer(3))
    assert body == {
        "kind": "response",
        "rule": {"id": "rr", "name": "Call detractors"},
        "event_id": "e1",
        "customer_id": "c1",
        "survey": "nps",
        "score": 3,
        "comment": "Too slow <again> & again",
        "touchpoint": "checkout",
        "channel": "web",
        "segment": "pro",
        "occurred_at": "2026-10-31T23:59:00.000Z",
    }
    slack = slack_payload(body)
    assert set(slack) == {"text", "blocks"}
    rendered = json.dumps(slack)
    for fact in (
        "c1",
        "NPS",
        "3",
        "checkout",
        "web",
        "pro",
        "Too slow &lt;again&gt; &amp; again",
        "2026-10-31T23:59:00.000Z",
    ):
        assert fact in rendered
    assert "<again>" not in rendered  # escaped for mrkdwn
    assert response_payload(response_rule(), answer(3, comment=""))["comment"] is None


def test_alert_body_and_its_slack_message() -> None:
    rule = parse_rule(
        {
            "name": "CES worse",
            "metric": "ces",
            "filters": {"channel": "web"},
            "condition": {"op": "worsen", "by": 0.5},
            "for": "0s",
        },
        metrics=DIRECTIONS,
        rule_id="m1",
    )
    assert isinstance(rule, MetricRule)
    reading = {
        "value": 4.0,
        "n": 120,
        "ci": [3.8, 4.2],
        "previous": {"value": 3.2, "n": 110},
        "delta": 0.8,
        "significant": True,
        "easy_pct": 20.0,
    }
    _, transition = evaluate(rule, RuleState(), reading, NOW)
    assert transition is not None
    body = alert_payload(rule, transition)
    assert body == {
        "kind": "alert",
        "status": "firing",
        "rule": {
            "id": "m1",
            "name": "CES worse",
            "metric": "ces",
            "window": "24h",
            "filters": {"channel": "web"},
            "severity": "warning",
            "condition": {"op": "worsen", "by": 0.5, "baseline": "previous", "require_significant": True},
        },
        "change": "worse",
        "reading": {
            "value": 4.0,
            "n": 120,
            "ci": [3.8, 4.2],
            "previous": {"value": 3.2, "n": 110},
            "delta": 0.8,
            "significant": True,
        },
        "at": "2026-11-01T00:00:00.000Z",
    }
    slack = slack_payload(body)
    text = slack["text"]
    for fact in ("FIRING", "CES worse", "ces", "4", "n 120", "24h", "worsen", "0.5"):
        assert fact in text
    rendered = json.dumps(slack["blocks"])
    for fact in ("3.2", "0.8", "worse", "[3.8, 4.2]", "channel=web", "2026-11-01T00:00:00.000Z"):
        assert fact in rendered
