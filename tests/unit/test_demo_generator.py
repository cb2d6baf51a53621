"""The demo generator: valid, varied events whose scores follow the customers' experience."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from statistics import mean
from typing import Any

import pytest

from cxpulse.demo.generator import TOUCHPOINTS, DemoGenerator
from cxpulse.domain.events import Event
from cxpulse.domain.validation import parse_timestamp_ms, validate_event

Item = dict[str, Any]
START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


class TickingClock:
    """Each read is 50 ms after the previous one."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=50)
        return self.now


def generate(n: int, incident: str | None = None, seed: int = 7) -> list[Item]:
    return DemoGenerator(500, seed=seed, incident=incident, clock=TickingClock()).take(n)


def nps(scores: list[int]) -> float:
    return 100 * (sum(s >= 9 for s in scores) - sum(s <= 6 for s in scores)) / len(scores)


def surveys(items: list[Item], survey: str) -> Iterator[Item]:
    return (e for e in items if e["type"] == "survey_answer" and e["survey"] == survey)


def nps_by_touchpoint(items: list[Item]) -> dict[str, float]:
    scores: dict[str, list[int]] = defaultdict(list)
    for e in surveys(items, "nps"):
        scores[e["touchpoint"]].append(e["score"])
    return {tp: nps(s) for tp, s in scores.items()}


def csat(items: list[Item], touchpoint: str) -> float:
    answers = [e for e in surveys(items, "csat") if e["touchpoint"] == touchpoint]
    return 100 * mean(int(e["score"]) >= (6 if e.get("scale") == "1-7" else 4) for e in answers)


def cases(items: list[Item]) -> dict[tuple[str, str], list[Item]]:
    out: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for e in items:
        if e["type"] in ("support_contact", "support_resolved"):
            out[e["customer_id"], e["case_id"]].append(e)
    return out


def first_contact(case: list[Item]) -> bool:
    """SPEC §2 within one short stream: at most one contact, none after the resolution."""
    contacts: int = sum(e["type"] == "support_contact" for e in case)
    return contacts < 2


def fcr(items: list[Item]) -> float:
    resolved = [c for c in cases(items).values() if any(e["type"] == "support_resolved" for e in c)]
    return 100 * mean(first_contact(c) for c in resolved)


def test_ten_thousand_events_are_valid_unique_and_stamped_by_the_clock() -> None:
    clock = TickingClock()
    items = DemoGenerator(500, seed=1, clock=clock).take(10_000)
    now_ms = parse_timestamp_ms(clock().isoformat())
    for item in items:
        result = validate_event(item, now_ms, 400)
        assert isinstance(result, Event), (item, result)
    assert len({e["event_id"] for e in items}) == len(items)
    stamps = [parse_timestamp_ms(e["occurred_at"]) for e in items]
    assert stamps == sorted(stamps)
    assert stamps[0] > parse_timestamp_ms(START.isoformat())
    assert stamps[-1] < now_ms


def test_the_stream_covers_the_journey() -> None:
    items = generate(10_000)
    types = Counter(e["type"] for e in items)
    assert set(types) == {
        "login",
        "purchase",
        "support_contact",
        "support_resolved",
        "trial_start",
        "subscription_start",
        "subscription_cancel",
        "survey_answer",
    }
    assert {e["touchpoint"] for e in items if e["type"] == "survey_answer"} == set(TOUCHPOINTS)
    assert {e["survey"] for e in items if e["type"] == "survey_answer"} == {"nps", "csat", "ces"}
    assert any("comment" in e for e in items)
    customers = {e["customer_id"] for e in items}
    assert 300 < len(customers) <= 500
    assert len({e["segment"] for e in items}) > 4 and len({e["channel"] for e in items}) > 3
    referrals = [e for e in items if "referrer_id" in e]
    assert referrals and all(e["referrer_id"] != e["customer_id"] for e in referrals)
    assert {e["referrer_id"] for e in referrals} <= {f"cust-{i:05d}" for i in range(500)}
    by_case = cases(items).values()
    assert any(first_contact(c) for c in by_case) and not all(first_contact(c) for c in by_case)


def test_a_seed_gives_the_same_stream() -> None:
    assert generate(2000, seed=3) == generate(2000, seed=3)
    assert generate(2000, seed=3) != generate(2000, seed=4)


def test_an_incident_sinks_nps_and_csat_at_its_touchpoint_and_fcr() -> None:
    normal, incident = generate(20_000), generate(20_000, incident="checkout")
    before, during = nps_by_touchpoint(normal), nps_by_touchpoint(incident)
    assert during["checkout"] < before["checkout"] - 60
    assert during["checkout"] < min(v for tp, v in during.items() if tp != "checkout") - 40
    assert csat(incident, "checkout") < csat(normal, "checkout") - 40
    assert fcr(incident) < fcr(normal) - 20


def test_a_support_incident_makes_fcr_collapse() -> None:
    assert fcr(generate(10_000, incident="support")) < 30 < 70 < fcr(generate(10_000))


def test_a_bad_support_case_lowers_the_customers_later_scores() -> None:
    items = generate(30_000)
    bad_since: dict[str, int] = {}
    for (customer, _), case in cases(items).items():
        if not first_contact(case):
            start = items.index(case[0])
            bad_since[customer] = min(start, bad_since.get(customer, start))
    after_bad: list[int] = []
    others: list[int] = []
    for i, e in enumerate(items):
        if e["type"] == "survey_answer" and e["survey"] == "nps":
            (after_bad if bad_since.get(e["customer_id"], len(items)) < i else others).append(e["score"])
    assert len(after_bad) > 50
    assert mean(after_bad) < mean(others) - 0.5


def test_the_incident_must_be_a_touchpoint() -> None:
    with pytest.raises(ValueError, match="incident must be one of"):
        DemoGenerator(incident="payments")
