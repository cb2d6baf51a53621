"""One golden test per KPI (SPEC §2) through the real engine: validate → embedded processor → chDB → reader.

Plus the cross-cutting rules: empty windows, `previous`/`delta`, the `at` semantics, filters by the event
that defines the item, breakdowns, series and duplicates.

Decisions where SPEC §2 leaves room (chosen as users would expect):
- `previous` is the reading *as of* `at − window` (the value the pulse showed then, and the previous point
  of a series), so a re-contact after `at − window` does not rewrite the previous window's FCR.
- A re-contact exactly 7 days after the resolution still counts ("within 7 days" is inclusive).
- A subscriber whose cancel falls exactly at the window start is active at the start (the cancel is not
  "before t") and churns in the window; a start exactly at the window start is not a subscriber at start.
- dau/wau/mau report `value: null` (not 0) for an empty trailing window, like every other metric.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from cxpulse.domain.events import Event
from cxpulse.domain.metrics import METRICS, Dimension, Filters, Reading
from cxpulse.reading import PulseReader
from services.embedded import EmbeddedRuntime
from tests.conftest import T0, event, ms
from tests.conftest import validated as validated_at

SEC = 1000
HOUR = 3_600_000
DAY = 86_400_000
AT = ms(T0)
NOW = AT + 30 * DAY  # validation clock: lets tests send events after AT (late arrivals of the future)

Item = dict[str, Any]


def validated(items: list[Item]) -> list[Event]:
    return validated_at(items, NOW)


def ingest(runtime: EmbeddedRuntime, items: list[Item]) -> None:
    runtime.processor.process(validated(items))


def read(
    runtime: EmbeddedRuntime, metric: str, window: int = 7 * DAY, at: int = AT, **filters: str
) -> Reading:
    return PulseReader(runtime.store).pulse([metric], window, at, Filters(**filters))[metric]


def values(runtime: EmbeddedRuntime, metric: str, **kwargs: Any) -> tuple[Any, Any, Any]:
    """(value, n, previous value) of a reading."""
    r = read(runtime, metric, **kwargs)
    return r["value"], r["n"], r["previous"]["value"]


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal readings (floats up to summation order)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and not isinstance(a, bool):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-9), where
    else:
        assert a == b, where


def surveys(prefix: str, survey: str, scores: list[int], t: int, **fields: Any) -> list[Item]:
    return [
        event(f"{prefix}{i}", "survey_answer", t + i, f"{prefix}c{i}", survey=survey, score=s, **fields)
        for i, s in enumerate(scores)
    ]


# --- surveys ------------------------------------------------------------------------------------------------


def test_nps(runtime: EmbeddedRuntime) -> None:
    items = surveys("n", "nps", [10, 9, 9, 8, 7, 6, 3, 10, 0, 9], AT - DAY)  # SPEC §5: NPS 20
    items += surveys("p", "nps", [10, 6], AT - 8 * DAY)  # previous window: NPS 0
    items += [
        event("edge-lo", "survey_answer", AT - 7 * DAY, survey="nps", score=9),  # at − window: included
        event("edge-hi", "survey_answer", AT, survey="nps", score=0),  # at: does not exist yet
        event("other", "survey_answer", AT - DAY, survey="csat", score=1),  # another survey
        event("login", "login", AT - DAY),
    ]
    ingest(runtime, items)
    r = read(runtime, "nps")
    # 11 answers: 6 promoters, 3 detractors → 100 × 3/11
    assert (r["value"], r["n"], r["promoters"], r["detractors"], r["passives"]) == (
        pytest.approx(300 / 11),
        11,
        6,
        3,
        2,
    )
    assert r["previous"] == {"value": 0.0, "n": 2}
    assert r["delta"] == pytest.approx(300 / 11)
    assert r["significant"] is False
    lo, hi = r["ci"]
    assert lo < r["value"] < hi
    # exactly the SPEC example with the edge answers out of the window
    r = read(runtime, "nps", window=2 * DAY)
    assert (r["value"], r["n"], r["promoters"], r["detractors"]) == (20.0, 10, 5, 3)
    assert r["ci"] == pytest.approx([-34.032478, 74.032478], abs=1e-5)


def test_csat_1_to_5_and_1_to_7(runtime: EmbeddedRuntime) -> None:
    items = surveys("a", "csat", [5, 4, 3, 5, 1], AT - DAY)  # 3 of 5 satisfied (SPEC §5)
    items += surveys("b", "csat", [7, 6, 5, 4, 1], AT - DAY, scale="1-7")  # top-two box 6–7: 2 of 5
    items += surveys("c", "csat", [5, 5], AT - 9 * DAY, scale="1-5")
    ingest(runtime, items)
    r = read(runtime, "csat")
    assert (r["value"], r["n"]) == (50.0, 10)
    assert r["ci"] == pytest.approx([23.659309, 76.340691], abs=1e-5)  # Wilson 5/10
    assert r["previous"] == {"value": 100.0, "n": 2}
    assert r["delta"] == -50.0
    assert r["significant"] is False  # pooled 7/12, z = −1.309
    # the 1–7 scale alone, in a day of its own: 2 of 3 in the top-two box
    ingest(runtime, surveys("d", "csat", [7, 6, 5], AT - 20 * DAY, scale="1-7"))
    assert values(runtime, "csat", at=AT - 19 * DAY, window=DAY) == (pytest.approx(200 / 3), 3, None)


def test_ces(runtime: EmbeddedRuntime) -> None:
    ingest(
        runtime, surveys("e", "ces", [1, 2, 2, 5, 7], AT - DAY) + surveys("f", "ces", [4, 6], AT - 10 * DAY)
    )
    r = read(runtime, "ces")
    assert (r["value"], r["n"], r["easy_pct"]) == (pytest.approx(3.4), 5, 60.0)
    assert r["ci"] == pytest.approx([0.283448, 6.516552], abs=1e-5)  # t interval, s² = 6.3
    assert r["previous"] == {"value": 5.0, "n": 2}
    assert r["delta"] == pytest.approx(-1.6)
    assert r["significant"] is False
    # a single answer: a mean but no interval
    r = read(runtime, "ces", window=DAY, at=AT - 10 * DAY + 1)
    assert (r["value"], r["n"], r["ci"]) == (4.0, 1, None)


# --- support cases ------------------------------------------------------------------------------------------


def case(cid: str, contacts: list[int], resolved: list[int], customer: str = "c1", **dims: Any) -> list[Item]:
    out = [
        event(f"{customer}-{cid}-c{i}", "support_contact", t, customer, case_id=cid)
        for i, t in enumerate(contacts)
    ]
    out += [
        event(f"{customer}-{cid}-r{i}", "support_resolved", t, customer, case_id=cid, **dims)
        for i, t in enumerate(resolved)
    ]
    return out


def test_fcr(runtime: EmbeddedRuntime) -> None:
    t = AT - 5 * DAY
    items = case("A", [t], [t + SEC])  # one contact → FCR
    items += case("B", [t, t + 500], [t + SEC])  # two contacts
    items += case("C", [t, t + SEC + 2 * DAY], [t + SEC])  # re-contacted 2 days later
    items += case("D", [], [t])  # no contact counts as one contact → FCR
    items += case("E", [AT - 20 * DAY, AT - 12 * DAY + 1], [AT - 20 * DAY])  # re-contact after 8 days → FCR
    items += case("F", [AT - 40 * DAY, AT - 40 * DAY + HOUR], [AT - 39 * DAY])  # previous window: 2 contacts
    items += case("G", [t], [])  # never resolved: not counted
    items += case("A", [t], [t + SEC], customer="c2")  # same case id, other customer: its own case
    ingest(runtime, items)
    r = read(runtime, "fcr", window=30 * DAY)
    assert (r["value"], r["n"]) == (pytest.approx(400 / 6), 6)  # A, c2/A, D, E of A, B, C, D, E, c2/A
    assert r["ci"] == pytest.approx([29.999332, 90.322859], abs=1e-5)  # Wilson 4/6
    assert r["previous"] == {"value": 0.0, "n": 1}
    assert r["delta"] == pytest.approx(400 / 6)
    # the late contact of A from before its resolution turns it into not-first-contact
    ingest(runtime, [event("late", "support_contact", t - HOUR, "c1", case_id="A")])
    assert values(runtime, "fcr", window=30 * DAY)[:2] == (50.0, 6)
    # a re-contact exactly 7 days after the resolution counts (inclusive), one ms later does not
    ingest(runtime, case("H", [AT - 25 * DAY], [AT - 25 * DAY]) + case("I", [AT - 25 * DAY], [AT - 25 * DAY]))
    ingest(
        runtime,
        [
            event("h-re", "support_contact", AT - 18 * DAY, "c1", case_id="H"),
            event("i-re", "support_contact", AT - 18 * DAY + 1, "c1", case_id="I"),
        ],
    )
    assert values(runtime, "fcr", window=30 * DAY)[:2] == (pytest.approx(400 / 8), 8)


def test_fcr_recontact_as_of_at(runtime: EmbeddedRuntime) -> None:
    t = AT - 5 * DAY
    ingest(runtime, [*case("C", [t], [t]), event("re", "support_contact", t + 2 * DAY, case_id="C")])
    assert values(runtime, "fcr", at=t + 2 * DAY)[:2] == (100.0, 1)  # re-contact at `at`: not yet
    assert values(runtime, "fcr", at=t + 2 * DAY + 1)[:2] == (0.0, 1)
    # previous = the reading as of at − window: C resolved in the previous window counts as it did then
    r = read(runtime, "fcr", window=2 * DAY, at=t + 5 * DAY // 2)
    assert (r["value"], r["previous"]) == (None, {"value": 100.0, "n": 1})


def test_resolution_time(runtime: EmbeddedRuntime) -> None:
    t = AT - 3 * DAY
    items = case("a", [t], [t + 10 * SEC])
    items += case(
        "b", [t, t + 5 * SEC], [t + 20 * SEC, t + 99 * SEC]
    )  # from the first contact, first resolution
    items += case("c", [t + 60 * SEC], [t + 90 * SEC])
    items += case("d", [t], [t + 60 * SEC])
    items += case("e", [t], [t + 100 * SEC])
    items += case("f", [t + 50 * SEC], [t])  # contact after the resolution: negative → 0
    items += case("g", [AT - 10 * DAY], [AT - 10 * DAY + 50 * SEC])  # previous window
    items += case("h", [t], [])  # unresolved
    ingest(runtime, items)
    r = read(runtime, "resolution_time")
    # durations [0, 10, 20, 30, 60, 100]
    assert (r["value"], r["n"]) == (25.0, 6)  # even count: (20 + 30) / 2
    assert r["mean_s"] == pytest.approx(220 / 6)
    assert r["p90_s"] == 100.0  # ⌈5.4⌉ = 6th
    assert r["ci"] == [0.0, 100.0]  # n = 6: ranks 1 and 6
    assert r["previous"] == {"value": 50.0, "n": 1}
    assert r["delta"] == -25.0
    assert r["significant"] is False
    r = read(runtime, "resolution_time", window=DAY, at=AT - 10 * DAY + HOUR)
    assert (r["value"], r["n"], r["mean_s"], r["p90_s"], r["ci"]) == (50.0, 1, 50.0, 50.0, None)


# --- active customers ---------------------------------------------------------------------------------------


def test_active_customers(runtime: EmbeddedRuntime) -> None:
    items = [event(f"l{i}", "login", AT - DAY - i * HOUR, "c1") for i in range(3)]
    items += [
        event("p", "purchase", AT - 2 * DAY, "c2"),
        event("s", "survey_answer", AT - 3 * DAY, "c3", survey="nps", score=3),
        event("at", "login", AT, "c4"),  # at `at`: not yet
        event("lo", "subscription_cancel", AT - 7 * DAY, "c5"),  # at − window: in
        event("prev", "login", AT - 7 * DAY - 1, "c6"),  # previous window
    ]
    ingest(runtime, items)
    r = read(runtime, "active_customers")
    assert r == {
        "value": 4,
        "n": 4,
        "ci": None,
        "previous": {"value": 1, "n": 1},
        "delta": 3,
        "significant": None,
    }


def test_dau_wau_mau_stickiness(runtime: EmbeddedRuntime) -> None:
    ingest(
        runtime,
        [
            event("a1", "login", AT - HOUR, "a"),
            event("a2", "login", AT - 25 * HOUR, "a"),
            event("b", "login", AT - 3 * DAY, "b"),
            event("c", "login", AT - 20 * DAY, "c"),
            event("d", "login", AT - 40 * DAY, "d"),
            event("e", "login", AT, "e"),  # not yet
        ],
    )
    for window in (HOUR, 7 * DAY, 90 * DAY):  # the requested window is ignored
        assert values(runtime, "dau", window=window) == (1, 1, 1)
        assert values(runtime, "wau", window=window) == (2, 2, None)  # nobody in [at − 14d, at − 7d)
        assert values(runtime, "mau", window=window) == (3, 3, 1)  # previous: d
        r = read(runtime, "stickiness", window=window)
        assert (r["value"], r["n"], r["dau"], r["mau"]) == (pytest.approx(100 / 3), 3, 1, 3)
        # previous: dau(at − 1d) = 1 (a at −25h), mau(at − 1d) = a, b, c
        assert r["previous"] == {"value": pytest.approx(100 / 3), "n": 3}
        assert r["delta"] == pytest.approx(0.0)
        assert r["ci"] == pytest.approx([6.149194, 79.234040], abs=1e-5)  # Wilson 1/3


# --- subscriptions ------------------------------------------------------------------------------------------


def test_churn_and_retention(runtime: EmbeddedRuntime) -> None:
    w0 = AT - 30 * DAY
    items = [event(f"s{i}", "subscription_start", AT - 40 * DAY, f"c{i}") for i in range(10)]
    items += [
        event("x0", "subscription_cancel", AT - 20 * DAY, "c0"),  # churned
        event("x1", "subscription_cancel", AT - 20 * DAY, "c1"),  # churned and back: retained too
        event("r1", "subscription_start", AT - 10 * DAY, "c1"),
        event("x2", "subscription_cancel", AT, "c2"),  # at `at`: not yet → retained
        event("x3", "subscription_cancel", w0, "c3"),  # at the window start: active then, churns in it
        event("sx", "subscription_start", w0, "x"),  # starts at the window start: not a subscriber then
        event("sy", "subscription_start", AT - 50 * DAY, "y"),
        event("xy", "subscription_cancel", AT - 45 * DAY, "y"),  # gone before the window
        event("sz", "subscription_start", AT - 5 * DAY, "z"),  # new
        event("sw", "subscription_start", AT - 70 * DAY, "w"),
        event("xw", "subscription_cancel", AT - 35 * DAY, "w"),  # previous window: 1 of 1 churned
        event("xq", "subscription_cancel", AT - 20 * DAY, "q"),  # a cancel without subscription
    ]
    ingest(runtime, items)
    churn, retention = read(runtime, "churn", window=30 * DAY), read(runtime, "retention", window=30 * DAY)
    assert (churn["value"], churn["n"]) == (30.0, 10)  # c0, c1, c3
    assert (retention["value"], retention["n"]) == (80.0, 10)  # all but c0, c3
    assert churn["previous"] == {"value": 100.0, "n": 1}
    assert retention["previous"] == {"value": 0.0, "n": 1}
    assert (churn["delta"], retention["delta"]) == (-70.0, 80.0)
    assert churn["ci"] == pytest.approx([10.779127, 60.322185], abs=1e-5)  # Wilson 3/10
    # later the cancel at `AT` counts in the next window
    # (S at −29d: c0–c9 but c3, plus x; churned c0, c1 and c2)
    assert values(runtime, "churn", window=30 * DAY, at=AT + DAY)[:2] == (30.0, 10)


# --- trials -------------------------------------------------------------------------------------------------


def test_trial_conversion(runtime: EmbeddedRuntime) -> None:
    items = [
        event("t1", "trial_start", AT - 10 * DAY, "c1"),  # 14 days, purchase at −3d: converted in window
        event("p1", "purchase", AT - 3 * DAY, "c1"),
        event("t2", "trial_start", AT - 12 * DAY, "c2", trial_days=7),  # expires at −5d: in window
        event("p2", "purchase", AT - 13 * DAY, "c2"),  # before its start: no conversion
        event("t3", "trial_start", AT - 2 * DAY, "c3"),  # still running: not counted
        event("t4", "trial_start", AT - 20 * DAY, "c4", trial_days=10),
        event("s4", "subscription_start", AT - 12 * DAY, "c4"),  # converted in the previous window
        event("t5", "trial_start", AT - 3 * DAY, "c5"),
        event("p5", "purchase", AT + DAY, "c5"),  # converts after `at`: still running as of AT
    ]
    ingest(runtime, items)
    r = read(runtime, "trial_conversion")
    assert (r["value"], r["n"]) == (50.0, 2)
    assert r["previous"] == {"value": 100.0, "n": 1}
    assert r["delta"] == -50.0
    assert r["ci"] == pytest.approx([9.453120, 90.546880], abs=1e-5)  # Wilson 1/2
    # later, [AT − 2d, AT + 5d) holds t5, converted at AT + 1d
    assert values(runtime, "trial_conversion", at=AT + 5 * DAY)[:2] == (100.0, 1)


# --- referrals ----------------------------------------------------------------------------------------------


def test_referral_rate(runtime: EmbeddedRuntime) -> None:
    ingest(
        runtime,
        [
            event("p1", "purchase", AT - DAY, "c1", amount=10, currency="EUR"),
            event("p2", "purchase", AT - DAY, "c2", referral=True),
            event("p3", "purchase", AT - DAY, "c3", referrer_id="c1"),
            event("p4", "purchase", AT - DAY, "c4", referral=False, referrer_id="c2"),  # present ⇒ referral
            event("p5", "purchase", AT - DAY, "c5", referral=False),
            event("p6", "purchase", AT - 8 * DAY, "c6", referral=True),
            event("l", "login", AT - DAY, "c7"),
        ],
    )
    r = read(runtime, "referral_rate")
    assert (r["value"], r["n"]) == (60.0, 5)
    assert r["previous"] == {"value": 100.0, "n": 1}
    assert r["delta"] == -40.0
    assert r["significant"] is False


# --- cross-cutting rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", list(METRICS))
def test_empty_windows_give_null(runtime: EmbeddedRuntime, metric: str) -> None:
    # data long before the window (no subscriptions: a subscriber from then would still be one now)
    old = [i for i in rich_events(seed=1, end=AT - 100 * DAY) if not i["type"].startswith("subscription")]
    ingest(runtime, old)
    r = read(runtime, metric)
    assert r["value"] is None
    assert (r["n"], r["ci"], r["delta"], r["significant"]) == (0, None, None, None)
    assert r["previous"] == {"value": None, "n": 0}


def test_filters_select_by_the_defining_event(runtime: EmbeddedRuntime) -> None:
    t = AT - 2 * DAY
    items = [
        # surveys: the answer's own dims
        event("n1", "survey_answer", t, "c1", survey="nps", score=10, channel="web", segment="pro"),
        event("n2", "survey_answer", t, "c2", survey="nps", score=0, channel="email", touchpoint="checkout"),
        # referral: the purchase's dims
        event("p1", "purchase", t, "c1", referral=True, channel="web"),
        event("p2", "purchase", t, "c2", channel="store"),
        # fcr: the first resolution's dims (not the contact's, nor a later resolution's)
        event("k1", "support_contact", t, "c1", case_id="K", channel="phone"),
        event("k2", "support_resolved", t + SEC, "c1", case_id="K", channel="chat", segment="pro"),
        event("k3", "support_resolved", t + 2 * SEC, "c1", case_id="K", channel="email"),
        # trials: the trial_start's dims (not the converting purchase's)
        event("t1", "trial_start", AT - 5 * DAY, "c3", trial_days=2, segment="pro", channel="web"),
        event("t1p", "purchase", AT - 4 * DAY, "c3", segment="free", channel="store"),
        # churn: the latest subscription_start before the window start
        event("a1", "subscription_start", AT - 45 * DAY, "s1", segment="free"),
        event("a2", "subscription_start", AT - 35 * DAY, "s1", segment="pro"),
        event("b1", "subscription_start", AT - 45 * DAY, "s2", segment="pro"),
        event("b2", "subscription_start", AT - 10 * DAY, "s2", segment="free"),  # after the window start
        event("bx", "subscription_cancel", AT - 5 * DAY, "s2", segment="free"),
        event("c1s", "subscription_start", AT - 45 * DAY, "s3", segment="free"),
    ]
    ingest(runtime, items)
    assert values(runtime, "nps", channel="web") == (100.0, 1, None)
    assert values(runtime, "nps", channel="email") == (-100.0, 1, None)
    assert values(runtime, "nps", touchpoint="survey") == (100.0, 1, None)  # the default touchpoint
    assert values(runtime, "nps", touchpoint="checkout", channel="web") == (None, 0, None)
    assert values(runtime, "referral_rate", channel="web") == (100.0, 1, None)
    assert values(runtime, "referral_rate", channel="store") == (0.0, 2, None)  # p2 and t1p
    assert values(runtime, "referral_rate", touchpoint="checkout") == (pytest.approx(100 / 3), 3, None)
    assert values(runtime, "fcr", channel="chat") == (100.0, 1, None)
    assert values(runtime, "fcr", channel="chat", segment="pro", touchpoint="support") == (100.0, 1, None)
    assert values(runtime, "fcr", channel="phone") == (None, 0, None)
    assert values(runtime, "fcr", channel="email") == (None, 0, None)
    assert values(runtime, "resolution_time", channel="chat")[:2] == (1.0, 1)
    assert values(runtime, "trial_conversion", segment="pro") == (100.0, 1, None)
    assert values(runtime, "trial_conversion", segment="free") == (None, 0, None)
    assert values(runtime, "churn", window=30 * DAY, segment="pro") == (50.0, 2, None)  # s1, s2 (cancelled)
    assert values(runtime, "retention", window=30 * DAY, segment="pro") == (50.0, 2, None)
    assert values(runtime, "churn", window=30 * DAY, segment="free") == (0.0, 1, None)  # s3
    # active customers: any event's dims
    assert values(runtime, "active_customers", channel="web") == (2, 2, None)  # c1 (n1, p1), c3 (t1)
    assert values(runtime, "active_customers", segment="pro") == (2, 2, None)  # c1 (n1, k2), c3 (t1)
    # c3 (t1p), s2 (b2, bx); before: s1 (a1), s3 (c1s)
    assert values(runtime, "active_customers", window=30 * DAY, segment="free") == (2, 2, 2)
    assert values(runtime, "mau", channel="chat") == (1, 1, None)


def rich_events(seed: int, end: int = AT + 3 * DAY, days: int = 45) -> list[Item]:
    """A deterministic mix of every event type over `days` days before `end`, with varied dimensions."""
    rng = random.Random(seed)
    items: list[Item] = []

    def when() -> int:
        return end - rng.randrange(days * DAY)

    def dims() -> dict[str, str]:
        return {
            "channel": rng.choice(["web", "mobile", "phone"]),
            "segment": rng.choice(["free", "pro"]),
            **({"touchpoint": rng.choice(["website", "app"])} if rng.random() < 0.3 else {}),
        }

    for c in range(12):
        cust = f"c{c}"
        for i in range(rng.randrange(1, 5)):
            items.append(event(f"{cust}-l{i}", "login", when(), cust, **dims()))
        for i in range(rng.randrange(0, 4)):
            kind = rng.choice(["nps", "csat", "csat7", "ces"])
            if kind == "nps":
                extra: dict[str, Any] = {"survey": "nps", "score": rng.randrange(11)}
            elif kind == "csat":
                extra = {"survey": "csat", "score": rng.randrange(1, 6)}
            elif kind == "csat7":
                extra = {"survey": "csat", "score": rng.randrange(1, 8), "scale": "1-7"}
            else:
                extra = {"survey": "ces", "score": rng.randrange(1, 8)}
            items.append(event(f"{cust}-s{i}", "survey_answer", when(), cust, **extra, **dims()))
        for i in range(rng.randrange(0, 3)):
            extra = rng.choice([{}, {"referral": True}, {"referrer_id": "c0"}])
            items.append(event(f"{cust}-p{i}", "purchase", when(), cust, **extra, **dims()))
        for i in range(rng.randrange(0, 3)):
            t = when()
            for j in range(rng.randrange(0, 3)):
                items.append(
                    event(
                        f"{cust}-k{i}c{j}",
                        "support_contact",
                        t + j * rng.randrange(DAY),
                        cust,
                        case_id=f"K{i}",
                    )
                )
            if rng.random() < 0.8:
                items.append(
                    event(
                        f"{cust}-k{i}r",
                        "support_resolved",
                        t + rng.randrange(2 * DAY),
                        cust,
                        case_id=f"K{i}",
                        **dims(),
                    )
                )
        if rng.random() < 0.5:
            items.append(
                event(f"{cust}-t", "trial_start", when(), cust, trial_days=rng.randrange(1, 15), **dims())
            )
        for i in range(rng.randrange(0, 3)):
            items.append(event(f"{cust}-ss{i}", "subscription_start", when(), cust, **dims()))
        for i in range(rng.randrange(0, 2)):
            items.append(event(f"{cust}-sx{i}", "subscription_cancel", when(), cust, **dims()))
    return items


WINDOWS = [DAY, 7 * DAY, 30 * DAY]


def all_readings(runtime: EmbeddedRuntime, at: int) -> dict[str, dict[str, Reading]]:
    reader = PulseReader(runtime.store)
    return {f"{w}": reader.pulse(list(METRICS), w, at, Filters()) for w in WINDOWS}


def test_previous_is_the_reading_at_at_minus_window(runtime: EmbeddedRuntime) -> None:
    ingest(runtime, rich_events(seed=2))
    reader = PulseReader(runtime.store)
    for window in WINDOWS:
        now = reader.pulse(list(METRICS), window, AT, Filters())
        for metric, r in now.items():
            fixed = METRICS[metric].fixed_window_ms or window
            before = reader.pulse([metric], window, AT - fixed, Filters())[metric]
            assert r["previous"] == {"value": before["value"], "n": before["n"]}, metric
            if r["value"] is not None and before["value"] is not None:
                assert r["delta"] == pytest.approx(r["value"] - before["value"]), metric
            else:
                assert r["delta"] is None, metric


def test_a_past_reading_never_changes_when_later_events_arrive(runtime: EmbeddedRuntime) -> None:
    at = AT - 3 * DAY
    items = rich_events(seed=3)
    early = [i for i in items if validated([i])[0].occurred_ms < at]
    late = [i for i in items if validated([i])[0].occurred_ms >= at]
    assert early and late
    ingest(runtime, early)
    before = all_readings(runtime, at)
    assert sum(r["value"] is not None for rs in before.values() for r in rs.values()) >= 20
    ingest(runtime, late)
    assert_same(all_readings(runtime, at), before)
    # an event exactly at `at` does not exist for it either
    ingest(runtime, [event("edge", "survey_answer", at, "zz", survey="nps", score=0)])
    assert_same(all_readings(runtime, at), before)
    assert all_readings(runtime, at + 1) != before


@pytest.mark.parametrize("by", list(Dimension))
def test_breakdown_groups_equal_filtered_pulse(runtime: EmbeddedRuntime, by: Dimension) -> None:
    ingest(runtime, rich_events(seed=4))
    reader = PulseReader(runtime.store)
    checked = 0
    for window in (7 * DAY, 30 * DAY):
        for metric in METRICS:
            groups = reader.breakdown(metric, by, window, AT, Filters())
            for group, r in groups.items():
                filtered = reader.pulse([metric], window, AT, Filters(**{by.value: group}))[metric]
                assert_same(r, filtered, f"{metric}/{group}")
                assert r["n"] or r["value"] is not None
                checked += 1
            # every group value seen in the window has a reading; no other value has data
            for value in (
                "web",
                "mobile",
                "phone",
                "free",
                "pro",
                "website",
                "app",
                "unknown",
                "survey",
                "checkout",
                "support",
                "usage",
                "onboarding",
                "subscription",
                "nope",
            ):
                if value not in groups:
                    filtered = reader.pulse([metric], window, AT, Filters(**{by.value: value}))[metric]
                    assert filtered["value"] is None, (metric, value)
    assert checked > 40


def test_breakdown_with_a_filter(runtime: EmbeddedRuntime) -> None:
    ingest(runtime, rich_events(seed=5))
    reader = PulseReader(runtime.store)
    for metric in METRICS:
        groups = reader.breakdown(metric, Dimension.SEGMENT, 30 * DAY, AT, Filters(channel="web"))
        for group, r in groups.items():
            filtered = reader.pulse([metric], 30 * DAY, AT, Filters(channel="web", segment=group))[metric]
            assert_same(r, filtered, f"{metric}/{group}")


@pytest.mark.parametrize("step", [DAY, 7 * DAY])
def test_series_buckets_equal_pulse_readings(runtime: EmbeddedRuntime, step: int) -> None:
    ingest(runtime, rich_events(seed=6))
    reader = PulseReader(runtime.store)
    start = AT - 28 * DAY
    for metric in METRICS:
        points = reader.series(metric, start, AT, step, Filters(segment="pro"))
        assert [p["end"] for p in points] == [start + (i + 1) * step for i in range(28 * DAY // step)]
        for p in points:
            assert p["end"] - p["start"] == step
            expected = reader.pulse([metric], step, p["end"], Filters(segment="pro"))[metric]
            assert_same({k: v for k, v in p.items() if k not in ("start", "end")}, expected, metric)


def test_duplicates_count_once(runtime: EmbeddedRuntime) -> None:
    items = rich_events(seed=7, end=AT)
    ingest(runtime, items)
    once = all_readings(runtime, AT)
    # the same events again: in one batch twice, then each one alone, then as a batch
    events = validated(items)
    result = runtime.processor.process(events + events)
    assert (result.accepted, result.duplicates) == (0, 2 * len(events))
    for e in events[:20]:
        runtime.processor.process([e])
    runtime.processor.process(events)
    assert_same(all_readings(runtime, AT), once)


def test_duplicate_id_first_accepted_wins(runtime: EmbeddedRuntime) -> None:
    first = event("n1", "survey_answer", AT - DAY, "c1", survey="nps", score=10)
    second = event("n1", "survey_answer", AT - DAY, "c1", survey="nps", score=0)
    ingest(runtime, [first, second])  # same batch
    ingest(runtime, [second])  # later batch
    assert values(runtime, "nps") == (100.0, 1, None)
    r1 = event("r1", "support_resolved", AT - DAY, "c1", case_id="A")
    ingest(runtime, [r1, {**r1, "case_id": "B"}])
    assert values(runtime, "fcr")[:2] == (100.0, 1)


# --- a direct reading of SPEC §2 as an oracle ------------------------------------------------------------


def spec_reading(
    events: list[Event], metric: str, window: int, at: int, flt: dict[str, str]
) -> tuple[Any, int]:
    """(value, n) of `metric` computed naively from the raw events, straight from the SPEC §2 wording."""
    first: dict[str, Event] = {}
    for e in events:
        first.setdefault(e.event_id, e)
    seen = [e for e in first.values() if e.occurred_ms < at]  # as of `at`
    lo = at - (METRICS[metric].fixed_window_ms or window)

    def inw(t: int) -> bool:
        return lo <= t < at

    def dims_ok(e: Event) -> bool:
        return all(getattr(e, k) == v for k, v in flt.items())

    def pct(x: int, n: int) -> tuple[float | None, int]:
        return (100 * x / n if n else None), n

    def active(since: int) -> int:
        return len({e.customer_id for e in seen if e.occurred_ms >= since and dims_ok(e)})

    if metric in ("nps", "csat", "ces"):
        xs = [e for e in seen if e.survey == metric and inw(e.occurred_ms) and dims_ok(e)]
        scores = [e.score or 0 for e in xs]
        if metric == "nps":
            return pct(sum(s >= 9 for s in scores) - sum(s <= 6 for s in scores), len(xs))
        if metric == "csat":
            return pct(sum((e.score or 0) >= (6 if e.scale == 7 else 4) for e in xs), len(xs))
        return (sum(scores) / len(xs) if xs else None), len(xs)
    if metric == "referral_rate":
        xs = [e for e in seen if e.type == "purchase" and inw(e.occurred_ms) and dims_ok(e)]
        return pct(sum(e.referral for e in xs), len(xs))
    if metric in ("active_customers", "dau", "wau", "mau"):
        n = active(lo)
        return (n or None), n
    if metric == "stickiness":
        return pct(active(at - DAY), active(at - 30 * DAY))
    if metric in ("fcr", "resolution_time"):
        cases: dict[tuple[str, str], list[Event]] = {}
        for e in seen:
            if e.type in ("support_contact", "support_resolved"):
                cases.setdefault((e.customer_id, e.case_id), []).append(e)
        durations, first_contact = [], 0
        for evs in cases.values():
            resolutions = sorted(
                (e for e in evs if e.type == "support_resolved"), key=lambda e: (e.occurred_ms, e.event_id)
            )
            if not resolutions or not inw(resolutions[0].occurred_ms) or not dims_ok(resolutions[0]):
                continue
            r = resolutions[0].occurred_ms
            contacts = [e.occurred_ms for e in evs if e.type == "support_contact"]
            first_contact += sum(c <= r for c in contacts) <= 1 and not any(
                r < c <= r + 7 * DAY for c in contacts
            )
            durations.append(max(0, r - min([r, *contacts])) / 1000)
        if metric == "fcr":
            return pct(first_contact, len(durations))
        d, n = sorted(durations), len(durations)
        return (None if not n else d[n // 2] if n % 2 else (d[n // 2 - 1] + d[n // 2]) / 2), n
    if metric == "trial_conversion":
        converted = outcomes = 0
        for t in seen:
            if t.type != "trial_start" or not dims_ok(t):
                continue
            end = t.occurred_ms + t.trial_days * DAY
            conversions = [
                e.occurred_ms
                for e in seen
                if e.customer_id == t.customer_id
                and e.type in ("purchase", "subscription_start")
                and t.occurred_ms <= e.occurred_ms <= end
            ]
            if inw(min(conversions, default=end)):
                outcomes += 1
                converted += bool(conversions)
        return pct(converted, outcomes)

    def subscribed(cid: str, t: int) -> Event | None:
        """The customer's latest start before t, unless a cancel follows it before t."""
        starts = [
            e for e in seen if e.customer_id == cid and e.type == "subscription_start" and e.occurred_ms < t
        ]
        if not starts:
            return None
        s = max(starts, key=lambda e: (e.occurred_ms, e.event_id))
        cancelled = any(
            e.customer_id == cid and e.type == "subscription_cancel" and s.occurred_ms <= e.occurred_ms < t
            for e in seen
        )
        return None if cancelled else s

    at_start = [
        c for c in {e.customer_id for e in seen} if (s := subscribed(c, lo)) is not None and dims_ok(s)
    ]
    if metric == "churn":
        cancels = {e.customer_id for e in seen if e.type == "subscription_cancel" and inw(e.occurred_ms)}
        return pct(sum(c in cancels for c in at_start), len(at_start))
    return pct(sum(subscribed(c, at) is not None for c in at_start), len(at_start))


@pytest.mark.parametrize("seed", [8, 9])
def test_engine_matches_a_direct_reading_of_the_spec(runtime: EmbeddedRuntime, seed: int) -> None:
    events = validated(rich_events(seed=seed))
    runtime.processor.process(events)
    reader = PulseReader(runtime.store)
    compared = 0
    for at in (AT - 10 * DAY, AT + 2 * DAY):
        for window in (DAY, 30 * DAY):
            for flt in ({}, {"segment": "pro"}, {"channel": "web"}):
                for metric, r in reader.pulse(list(METRICS), window, at, Filters(**flt)).items():
                    value, n = spec_reading(events, metric, window, at, flt)
                    assert r["n"] == n, (metric, at, window, flt)
                    assert r["value"] == (None if value is None else pytest.approx(value)), (
                        metric,
                        at,
                        window,
                        flt,
                    )
                    compared += value is not None
    assert compared > 100
