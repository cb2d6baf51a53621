"""`cxpulse.domain.metrics.reading()` for every metric, from hand-made sufficient statistics."""

from __future__ import annotations

from typing import Any

import pytest

from cxpulse.domain.metrics import METRICS, empty_stats, reading, spans_for, stat_spans
from cxpulse.domain.windows import Span

DAY = 86_400_000

# (metric id, statistics per `stat_spans` span, expected subset of the reading). CIs are checked in
# test_stats.py; here only that the right interval is attached (values from the same formulas).
READINGS: list[tuple[str, list[Any], dict[str, Any]]] = [
    (
        "nps",
        [(5, 3, 10), (3, 3, 10)],  # SPEC §5 example vs NPS 0 before
        {
            "value": 20.0,
            "n": 10,
            "ci": [-34.032478, 74.032478],
            "previous": {"value": 0.0, "n": 10},
            "delta": 20.0,
            "significant": False,  # z = 0.2 / √(0.076 + 0.06) = 0.542
            "promoters": 5,
            "detractors": 3,
            "passives": 2,
        },
    ),
    (
        "nps",
        [(50, 30, 100), (30, 50, 100)],
        {"value": 20.0, "previous": {"value": -20.0, "n": 100}, "delta": 40.0, "significant": True},
    ),
    (
        "csat",
        [(3, 5), (2, 5)],  # SPEC §5: 3 of 5 satisfied
        {
            "value": 60.0,
            "n": 5,
            "ci": [23.072428, 88.237923],
            "previous": {"value": 40.0, "n": 5},
            "delta": 20.0,
            "significant": False,
        },
    ),
    (
        "ces",
        [(3.4, 6.3, 5, 3), (5.0, 2.0, 2, 0)],  # SPEC §5: [1, 2, 2, 5, 7] vs [4, 6]
        {
            "value": 3.4,
            "n": 5,
            "ci": [0.283448, 6.516552],
            "previous": {"value": 5.0, "n": 2},
            "delta": -1.6,
            "significant": False,
            "easy_pct": 60.0,
        },
    ),
    (
        "ces",
        [(2.0, 0.0, 1, 1), (0.0, 0.0, 0, 0)],  # one answer: no t interval, no previous
        {
            "value": 2.0,
            "n": 1,
            "ci": None,
            "previous": {"value": None, "n": 0},
            "delta": None,
            "significant": None,
            "easy_pct": 100.0,
        },
    ),
    (
        "fcr",
        [(1, 3), (2, 2)],  # SPEC §5: A only of A, B, C
        {
            "value": 100 / 3,
            "n": 3,
            "ci": [6.149194, 79.234040],
            "previous": {"value": 100.0, "n": 2},
            "delta": 100 / 3 - 100,
            "significant": False,
        },
    ),
    (
        "resolution_time",
        [([60.0, 10.0, 30.0, 20.0],), ([6.0, 4.0, 5.0],)],
        {
            "value": 25.0,  # even count: (20 + 30) / 2
            "n": 4,
            "ci": None,  # n ≤ 5: no order-statistic pair reaches 95%
            "previous": {"value": 5.0, "n": 3},
            "delta": 20.0,
            "significant": False,  # Mann–Whitney: 4 vs 3 complete separation, p = 2/35 = 0.057
            "mean_s": 30.0,
            "p90_s": 60.0,  # ⌈3.6⌉ = 4th smallest
        },
    ),
    (
        "resolution_time",
        [([float(v) for v in range(10, 0, -1)],), ([],)],
        {
            "value": 5.5,
            "n": 10,
            "ci": [2.0, 9.0],  # ranks 2 and 9 for n = 10
            "previous": {"value": None, "n": 0},
            "delta": None,
            "significant": None,
            "mean_s": 5.5,
            "p90_s": 9.0,  # ⌈9⌉ = 9th smallest
        },
    ),
    *[
        (
            count_id,
            [(7,), (4,)],
            {
                "value": 7,
                "n": 7,
                "ci": None,
                "previous": {"value": 4, "n": 4},
                "delta": 3,
                "significant": None,
            },
        )
        for count_id in ("active_customers", "dau", "wau", "mau")
    ],
    (
        "stickiness",
        [(3,), (2,), (5,), (4,)],  # dau 3 / mau 5, before 2 / 4
        {
            "value": 60.0,
            "n": 5,
            "ci": [23.072428, 88.237923],
            "previous": {"value": 50.0, "n": 4},
            "delta": 10.0,
            "significant": False,
            "dau": 3,
            "mau": 5,
        },
    ),
    (
        "stickiness",
        [(0,), (0,), (4,), (0,)],  # nobody today but active customers this month: 0, not None
        {"value": 0.0, "n": 4, "previous": {"value": None, "n": 0}, "delta": None, "dau": 0, "mau": 4},
    ),
    (
        "churn",
        [(5, 95, 100), (10, 90, 100)],  # SPEC §5: 5 of 100 cancel
        {
            "value": 5.0,
            "n": 100,
            "previous": {"value": 10.0, "n": 100},
            "delta": -5.0,
            "significant": False,  # pooled 0.075, z = −0.05 / 0.037249 = −1.342
        },
    ),
    (
        "retention",
        [(5, 95, 100), (10, 90, 100)],  # SPEC §5: (E − N) / S = 95 / 100
        {"value": 95.0, "n": 100, "previous": {"value": 90.0, "n": 100}, "delta": 5.0},
    ),
    (
        "trial_conversion",
        [(1, 4), (0, 0)],
        {
            "value": 25.0,
            "n": 4,
            "previous": {"value": None, "n": 0},
            "delta": None,
            "significant": None,
        },
    ),
    (
        "referral_rate",
        [(36, 100), (50, 100)],  # borderline two-proportion z = −1.9996 → significant
        {"value": 36.0, "n": 100, "previous": {"value": 50.0, "n": 100}, "delta": -14.0, "significant": True},
    ),
]


@pytest.mark.parametrize(("metric_id", "span_stats", "expected"), READINGS)
def test_reading(metric_id: str, span_stats: list[Any], expected: dict[str, Any]) -> None:
    got = reading(METRICS[metric_id], span_stats)
    for name, want in expected.items():
        if name == "ci" and want is not None:
            assert got["ci"] == pytest.approx(want, abs=1e-5)
            assert isinstance(got["ci"], list)  # JSON array
        elif isinstance(want, float):
            assert got[name] == pytest.approx(want), name
        elif name == "significant" or want is None:
            assert got[name] is want, name
        else:
            assert got[name] == want, name


def test_every_metric_is_covered() -> None:
    assert {m for m, _, _ in READINGS} == set(METRICS)


@pytest.mark.parametrize("metric_id", list(METRICS))
def test_empty_windows_give_none_never_zero(metric_id: str) -> None:
    metric = METRICS[metric_id]
    spans = stat_spans(metric, *spans_for(metric, 10 * DAY, DAY))
    got = reading(metric, [empty_stats(metric)] * len(spans))
    assert got["value"] is None
    assert got["previous"]["value"] is None
    assert got["delta"] is None
    assert got["ci"] is None
    assert got["significant"] is None
    assert got["n"] == 0


@pytest.mark.parametrize("metric_id", [m for m in METRICS if m not in ("stickiness",)])
def test_empty_previous_window_only(metric_id: str) -> None:
    metric = METRICS[metric_id]
    current = {
        "nps": (1, 0, 1),
        "csat": (1, 1),
        "ces": (2.0, 0.0, 1, 1),
        "fcr": (1, 1),
        "resolution_time": ([3.0],),
        "churn": (0, 1, 1),
        "retention": (0, 1, 1),
        "trial_conversion": (1, 1),
        "referral_rate": (0, 1),
    }.get(metric_id, (1,))
    got = reading(metric, [current, empty_stats(metric)])
    assert got["value"] is not None
    assert (got["previous"]["value"], got["delta"], got["significant"]) == (None, None, None)


EXTRAS_WHEN_EMPTY = [
    ("nps", {"promoters": 0, "detractors": 0, "passives": 0}),
    ("ces", {"easy_pct": None}),
    ("resolution_time", {"mean_s": None, "p90_s": None}),
    ("stickiness", {"dau": 0, "mau": 0}),
]


@pytest.mark.parametrize(("metric_id", "expected"), EXTRAS_WHEN_EMPTY)
def test_extras_of_empty_windows(metric_id: str, expected: dict[str, Any]) -> None:
    metric = METRICS[metric_id]
    n_spans = 4 if metric_id == "stickiness" else 2
    got = reading(metric, [empty_stats(metric)] * n_spans)
    assert {k: got[k] for k in expected} == expected


SPANS = [
    # (metric, at, window) -> (current, previous)
    (("nps", 10 * DAY, DAY), (Span(9 * DAY, 10 * DAY), Span(8 * DAY, 9 * DAY))),
    (("churn", 100 * DAY, 30 * DAY), (Span(70 * DAY, 100 * DAY), Span(40 * DAY, 70 * DAY))),
    # fixed windows ignore the requested one
    (("dau", 10 * DAY, 30 * DAY), (Span(9 * DAY, 10 * DAY), Span(8 * DAY, 9 * DAY))),
    (("wau", 20 * DAY, DAY), (Span(13 * DAY, 20 * DAY), Span(6 * DAY, 13 * DAY))),
    (("mau", 100 * DAY, DAY), (Span(70 * DAY, 100 * DAY), Span(40 * DAY, 70 * DAY))),
    (("stickiness", 100 * DAY, 7 * DAY), (Span(99 * DAY, 100 * DAY), Span(98 * DAY, 99 * DAY))),
]


@pytest.mark.parametrize(("args", "expected"), SPANS)
def test_spans_for(args: tuple[str, int, int], expected: tuple[Span, Span]) -> None:
    metric_id, at, window = args
    assert spans_for(METRICS[metric_id], at, window) == expected


def test_stickiness_needs_the_trailing_months_too() -> None:
    metric = METRICS["stickiness"]
    current, previous = spans_for(metric, 100 * DAY, DAY)
    assert stat_spans(metric, current, previous) == [
        Span(99 * DAY, 100 * DAY),
        Span(98 * DAY, 99 * DAY),
        Span(70 * DAY, 100 * DAY),
        Span(69 * DAY, 99 * DAY),
    ]
