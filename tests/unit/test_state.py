"""The pure per-customer keyed-state fold `cxpulse.domain.state.apply` and the facts it derives."""

from __future__ import annotations

import copy
import itertools
import random
from typing import Any

import pytest

from cxpulse.domain.events import DEFAULT_TOUCHPOINT, Event
from cxpulse.domain.state import CASES, SUBSCRIPTIONS, TRIALS, apply, new_state

DAY = 86_400_000
T = 1_790_000_000_000  # an arbitrary epoch-ms origin

FactKey = tuple[str, str]


def ev(event_id: str, type_: str, at: int, customer: str = "c1", **fields: Any) -> Event:
    fields.setdefault("touchpoint", DEFAULT_TOUCHPOINT[type_])
    if type_ == "trial_start":
        fields.setdefault("trial_days", 14)
    return Event(event_id=event_id, type=type_, occurred_ms=at, customer_id=customer, **fields)


def key(table: str, row: dict[str, Any]) -> FactKey:
    return table, row[{CASES: "case_id", TRIALS: "trial_id", SUBSCRIPTIONS: "start_id"}[table]]


def fold(events: list[Event]) -> dict[FactKey, dict[str, Any]]:
    """Apply `events` to one fresh state; the last row emitted per fact key, without its version."""
    state = new_state()
    facts: dict[FactKey, dict[str, Any]] = {}
    for e in events:
        for table, row in apply(state, e):
            facts[key(table, row)] = {k: v for k, v in row.items() if k != "version"}
    return facts


def case_row(**fields: Any) -> dict[str, Any]:
    base = {
        "customer_id": "c1",
        "recontact_ms": None,
        "touchpoint": "support",
        "channel": "unknown",
        "segment": "unknown",
    }
    return {**base, **fields}


# --- cases --------------------------------------------------------------------------------------------------


def test_contact_alone_emits_nothing_resolution_emits_the_case() -> None:
    state = new_state()
    assert apply(state, ev("a1", "support_contact", T, case_id="A")) == []
    [(table, row)] = apply(state, ev("a2", "support_resolved", T + 60_000, case_id="A", channel="chat"))
    assert table == CASES
    assert row == {
        **case_row(case_id="A", first_ms=T, resolved_ms=T + 60_000, contacts=1, channel="chat"),
        "version": 2,
    }


CASE_TABLE = [
    # (events, expected case A fact)
    pytest.param(
        [ev("r", "support_resolved", T, case_id="A")],
        case_row(case_id="A", first_ms=T, resolved_ms=T, contacts=0),
        id="resolved-without-contact",
    ),
    pytest.param(
        [
            ev("c1", "support_contact", T, case_id="A"),
            ev("c2", "support_contact", T + 500, case_id="A"),
            ev("r", "support_resolved", T + 1000, case_id="A"),
        ],
        case_row(case_id="A", first_ms=T, resolved_ms=T + 1000, contacts=2),
        id="two-contacts",
    ),
    pytest.param(
        [
            ev("c1", "support_contact", T, case_id="A"),
            ev("r", "support_resolved", T + 1000, case_id="A"),
            ev("c2", "support_contact", T + 1000 + 2 * DAY, case_id="A"),
        ],
        case_row(case_id="A", first_ms=T, resolved_ms=T + 1000, contacts=1, recontact_ms=T + 1000 + 2 * DAY),
        id="recontact-within-7-days",
    ),
    pytest.param(
        [
            ev("c1", "support_contact", T, case_id="A"),
            ev("r", "support_resolved", T + 1000, case_id="A"),
            ev("c2", "support_contact", T + 1000 + 7 * DAY + 1, case_id="A"),
        ],
        case_row(case_id="A", first_ms=T, resolved_ms=T + 1000, contacts=1),
        id="recontact-after-7-days-does-not-count",
    ),
    pytest.param(
        [
            ev("c1", "support_contact", T, case_id="A"),
            ev("r", "support_resolved", T + 1000, case_id="A"),
            ev("c2", "support_contact", T + 1000 + 7 * DAY, case_id="A"),
        ],
        case_row(case_id="A", first_ms=T, resolved_ms=T + 1000, contacts=1, recontact_ms=T + 1000 + 7 * DAY),
        id="recontact-at-exactly-7-days-counts",
    ),
    pytest.param(
        [
            ev("c1", "support_contact", T, case_id="A"),
            ev("r1", "support_resolved", T + 1000, case_id="A", channel="phone"),
            ev("c2", "support_contact", T + 2000, case_id="A"),
            ev("r2", "support_resolved", T + 3000, case_id="A", channel="chat"),
        ],
        # resolved at the first resolution (its dims), c2 after it is a re-contact
        case_row(
            case_id="A", first_ms=T, resolved_ms=T + 1000, contacts=1, recontact_ms=T + 2000, channel="phone"
        ),
        id="first-resolution-wins",
    ),
    pytest.param(
        [
            ev("c1", "support_contact", T, case_id="A"),
            ev("c2", "support_contact", T + 1000, case_id="A"),
            ev("r", "support_resolved", T + 1000, case_id="A"),
        ],
        # a contact at the same instant as the resolution is "≤ resolution"
        case_row(case_id="A", first_ms=T, resolved_ms=T + 1000, contacts=2),
        id="tie-contact-at-resolution",
    ),
    pytest.param(
        [
            ev("rb", "support_resolved", T + 1000, case_id="A", channel="phone"),
            ev("ra", "support_resolved", T + 1000, case_id="A", channel="chat"),
        ],
        # two resolutions at the same instant: the smaller event_id decides the dims
        case_row(case_id="A", first_ms=T + 1000, resolved_ms=T + 1000, contacts=0, channel="chat"),
        id="tie-two-resolutions",
    ),
    pytest.param(
        [
            ev("r", "support_resolved", T, case_id="A"),
            ev("c1", "support_contact", T + 5000, case_id="A"),
        ],
        # contact after the resolution: first event is the resolution (duration 0), the contact re-contacts
        case_row(case_id="A", first_ms=T, resolved_ms=T, contacts=0, recontact_ms=T + 5000),
        id="contact-after-resolution",
    ),
]


@pytest.mark.parametrize(("events", "expected"), CASE_TABLE)
def test_case_facts(events: list[Event], expected: dict[str, Any]) -> None:
    assert fold(events) == {(CASES, "A"): expected}


def test_late_contact_turns_case_into_not_first_contact() -> None:
    state = new_state()
    apply(state, ev("c1", "support_contact", T, case_id="A"))
    [(_, first)] = apply(state, ev("r", "support_resolved", T + 1000, case_id="A"))
    assert first["contacts"] == 1
    # a contact from before the resolution arrives late: the case is re-emitted with two contacts
    [(_, late)] = apply(state, ev("c0", "support_contact", T - 1000, case_id="A"))
    assert (late["contacts"], late["first_ms"]) == (2, T - 1000)
    assert late["version"] > first["version"]
    # a late re-contact (within 7 days) is re-emitted too
    [(_, recontact)] = apply(state, ev("c3", "support_contact", T + DAY, case_id="A"))
    assert recontact["recontact_ms"] == T + DAY
    # an earlier re-contact replaces it; a later one changes nothing
    [(_, earlier)] = apply(state, ev("c4", "support_contact", T + 2000, case_id="A"))
    assert earlier["recontact_ms"] == T + 2000
    assert apply(state, ev("c5", "support_contact", T + 3 * DAY, case_id="A")) == []


def test_cases_are_keyed_by_case_id() -> None:
    facts = fold(
        [
            ev("a", "support_contact", T, case_id="A"),
            ev("b", "support_contact", T + 10, case_id="B"),
            ev("ra", "support_resolved", T + 20, case_id="A"),
            ev("rb", "support_resolved", T + 30, case_id="B"),
        ]
    )
    assert facts[(CASES, "A")]["contacts"] == facts[(CASES, "B")]["contacts"] == 1
    assert (facts[(CASES, "A")]["first_ms"], facts[(CASES, "B")]["first_ms"]) == (T, T + 10)


# --- trials -------------------------------------------------------------------------------------------------


def trial_row(**fields: Any) -> dict[str, Any]:
    base = {
        "customer_id": "c1",
        "trial_id": "t",
        "started_ms": T,
        "touchpoint": "onboarding",
        "channel": "unknown",
        "segment": "unknown",
    }
    return {**base, **fields}


TRIAL_TABLE = [
    pytest.param(
        [ev("t", "trial_start", T)],
        trial_row(outcome_ms=T + 14 * DAY, converted=0),
        id="expired-default-14-days",
    ),
    pytest.param(
        [ev("t", "trial_start", T, trial_days=7), ev("p", "purchase", T + 3 * DAY)],
        trial_row(outcome_ms=T + 3 * DAY, converted=1),
        id="converted-by-purchase",
    ),
    pytest.param(
        [ev("t", "trial_start", T, trial_days=7), ev("s", "subscription_start", T + DAY)],
        trial_row(outcome_ms=T + DAY, converted=1),
        id="converted-by-subscription",
    ),
    pytest.param(
        [ev("t", "trial_start", T, trial_days=7), ev("p", "purchase", T + 7 * DAY)],
        trial_row(outcome_ms=T + 7 * DAY, converted=1),
        id="converted-at-the-last-instant",
    ),
    pytest.param(
        [ev("t", "trial_start", T, trial_days=7), ev("p", "purchase", T + 7 * DAY + 1)],
        trial_row(outcome_ms=T + 7 * DAY, converted=0),
        id="purchase-after-the-end-expired",
    ),
    pytest.param(
        [ev("t", "trial_start", T, trial_days=7), ev("p", "purchase", T - 1)],
        trial_row(outcome_ms=T + 7 * DAY, converted=0),
        id="purchase-before-the-start-expired",
    ),
    pytest.param(
        [
            ev("t", "trial_start", T, trial_days=7),
            ev("p2", "purchase", T + 5 * DAY),
            ev("p1", "purchase", T + 2 * DAY),
        ],
        trial_row(outcome_ms=T + 2 * DAY, converted=1),
        id="first-conversion-wins",
    ),
    pytest.param(
        [ev("t", "trial_start", T, trial_days=7, segment="pro"), ev("p", "purchase", T, segment="free")],
        trial_row(outcome_ms=T, converted=1, segment="pro"),
        id="tie-purchase-at-start-converts-dims-of-trial",
    ),
]


@pytest.mark.parametrize(("events", "expected"), TRIAL_TABLE)
def test_trial_facts(events: list[Event], expected: dict[str, Any]) -> None:
    assert {k: v for k, v in fold(events).items() if k[0] == TRIALS} == {(TRIALS, "t"): expected}


def test_trial_converted_by_late_purchase() -> None:
    state = new_state()
    [(_, expired)] = apply(state, ev("t", "trial_start", T, trial_days=7))
    assert (expired["converted"], expired["outcome_ms"]) == (0, T + 7 * DAY)
    # a purchase inside the trial arrives after the expiry was emitted: the trial turns converted
    [(table, converted)] = apply(state, ev("p", "purchase", T + 2 * DAY))
    assert table == TRIALS
    assert (converted["converted"], converted["outcome_ms"]) == (1, T + 2 * DAY)
    assert converted["version"] > expired["version"]
    # a later purchase changes nothing
    assert apply(state, ev("p2", "purchase", T + 3 * DAY)) == []


def test_purchase_without_trial_emits_nothing_but_counts_later() -> None:
    state = new_state()
    assert apply(state, ev("p", "purchase", T + DAY)) == []
    [(_, row)] = apply(state, ev("t", "trial_start", T, trial_days=3))
    assert (row["converted"], row["outcome_ms"]) == (1, T + DAY)


# --- subscriptions ------------------------------------------------------------------------------------------


def sub_row(start_id: str, started: int, next_start: int | None, cancel: int | None) -> dict[str, Any]:
    return {
        "customer_id": "c1",
        "start_id": start_id,
        "started_ms": started,
        "next_start_ms": next_start,
        "cancel_ms": cancel,
        "touchpoint": "subscription",
        "channel": "unknown",
        "segment": "unknown",
    }


SUBSCRIPTION_TABLE = [
    pytest.param(
        [ev("s1", "subscription_start", T)],
        {"s1": sub_row("s1", T, None, None)},
        id="open",
    ),
    pytest.param(
        [ev("s1", "subscription_start", T), ev("x", "subscription_cancel", T + 5 * DAY)],
        {"s1": sub_row("s1", T, None, T + 5 * DAY)},
        id="cancelled",
    ),
    pytest.param(
        [
            ev("s1", "subscription_start", T),
            ev("x1", "subscription_cancel", T + DAY),
            ev("s2", "subscription_start", T + 3 * DAY),
            ev("x2", "subscription_cancel", T + 9 * DAY),
        ],
        {"s1": sub_row("s1", T, T + 3 * DAY, T + DAY), "s2": sub_row("s2", T + 3 * DAY, None, T + 9 * DAY)},
        id="cancel-restart-cancel",
    ),
    pytest.param(
        [ev("s1", "subscription_start", T), ev("s2", "subscription_start", T + DAY)],
        {"s1": sub_row("s1", T, T + DAY, None), "s2": sub_row("s2", T + DAY, None, None)},
        id="restart-without-cancel",
    ),
    pytest.param(
        [ev("x", "subscription_cancel", T - DAY), ev("s1", "subscription_start", T)],
        {"s1": sub_row("s1", T, None, None)},
        id="cancel-before-start-ignored",
    ),
    pytest.param(
        [ev("s1", "subscription_start", T), ev("x", "subscription_cancel", T)],
        # a cancel at the very instant of the start closes the (empty) interval
        {"s1": sub_row("s1", T, None, T)},
        id="tie-cancel-at-start",
    ),
    pytest.param(
        [ev("sb", "subscription_start", T), ev("sa", "subscription_start", T)],
        # two starts at the same instant: ordered by event_id, the first gets an empty interval
        {"sa": sub_row("sa", T, T, None), "sb": sub_row("sb", T, None, None)},
        id="tie-two-starts",
    ),
]


@pytest.mark.parametrize(("events", "expected"), SUBSCRIPTION_TABLE)
def test_subscription_facts(events: list[Event], expected: dict[str, dict[str, Any]]) -> None:
    facts = fold(events)
    assert {k[1]: v for k, v in facts.items() if k[0] == SUBSCRIPTIONS} == expected


def test_subscription_start_is_also_a_trial_conversion() -> None:
    state = new_state()
    apply(state, ev("t", "trial_start", T))
    changed = apply(state, ev("s", "subscription_start", T + DAY))
    assert sorted(table for table, _ in changed) == [SUBSCRIPTIONS, TRIALS]


def test_a_new_start_re_emits_the_previous_interval() -> None:
    state = new_state()
    apply(state, ev("s1", "subscription_start", T))
    changed = apply(state, ev("s2", "subscription_start", T + DAY))
    assert {row["start_id"]: row["next_start_ms"] for _, row in changed} == {"s1": T + DAY, "s2": None}


def test_stateless_types_emit_nothing() -> None:
    state = new_state()
    assert apply(state, ev("l", "login", T)) == []
    assert apply(state, ev("n", "survey_answer", T, survey="nps", score=9, scale=10)) == []
    assert state == new_state()


# --- idempotence and order independence -------------------------------------------------------------------

MIXED = [
    ev("c1", "support_contact", T, case_id="A"),
    ev("r1", "support_resolved", T + 1000, case_id="A", channel="chat"),
    ev("c2", "support_contact", T + 2 * DAY, case_id="A"),
    ev("t1", "trial_start", T - DAY, trial_days=5),
    ev("p1", "purchase", T + 2 * DAY, referral=True),
    ev("s1", "subscription_start", T + 3 * DAY, segment="pro"),
    ev("x1", "subscription_cancel", T + 10 * DAY),
    ev("s2", "subscription_start", T + 12 * DAY),
]


def test_idempotence_every_event_applied_twice() -> None:
    state = new_state()
    for e in MIXED:
        apply(state, e)
        snapshot = copy.deepcopy(state)
        assert apply(state, e) == [], e.event_id
        assert state == snapshot
    # and re-applying the whole history at the end changes nothing either
    snapshot = copy.deepcopy(state)
    assert [row for e in MIXED for row in apply(state, e)] == []
    assert state == snapshot


def test_all_permutations_give_the_same_final_facts() -> None:
    events = MIXED[:3] + MIXED[3:5]
    expected = fold(events)
    assert expected  # one case, one trial
    for perm in itertools.permutations(events):
        assert fold(list(perm)) == expected


def test_order_independence_of_final_facts() -> None:
    expected = fold(MIXED)
    assert set(expected) == {(CASES, "A"), (TRIALS, "t1"), (SUBSCRIPTIONS, "s1"), (SUBSCRIPTIONS, "s2")}
    assert expected[(TRIALS, "t1")]["converted"] == 1  # p1 at T + 2d ≤ T − 1d + 5d
    assert expected[(CASES, "A")]["recontact_ms"] == T + 2 * DAY
    assert expected[(SUBSCRIPTIONS, "s1")]["cancel_ms"] == T + 10 * DAY
    rng = random.Random(7)
    for _ in range(200):
        shuffled = MIXED[:]
        rng.shuffle(shuffled)
        # with repeats sprinkled in
        shuffled += rng.sample(MIXED, 3)
        assert fold(shuffled) == expected


def test_versions_increase_with_distinct_stateful_events() -> None:
    state = new_state()
    versions = [row["version"] for e in MIXED for _, row in apply(state, e)]
    assert versions == sorted(versions)
    # a subscription_start is both a conversion and a start: two steps each
    assert state["seq"] == len(MIXED) + 2
