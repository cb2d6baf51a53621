"""The metric registry (SPEC §2): each KPI defined once — id, family, unit, direction, the SQL of its
sufficient statistics, the spans it reads and how its reading is built.

A store computes each metric's *sufficient statistics* for a list of event-time spans (one query per
family, see `store.kpi_queries`); `reading()` turns the statistics of a window and of the window before it
into the public reading: value, n, ci, previous, delta, significant and the metric's extras. Everything
else — the store, the reader, the API, alerts, the dashboard — reads `METRICS`. Pure code: the SQL is data
here (ClickHouse expressions over the family's rows), run by the store adapter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cxpulse.domain import stats
from cxpulse.domain.windows import DAY_MS, Span

Stats = tuple[Any, ...]
Reading = dict[str, Any]
Builder = Callable[[Sequence[Stats]], Reading]
SpanRule = Callable[[Span, Span], list[Span]]


class Family(StrEnum):
    """How a metric's statistics are gathered (one store query shape per family)."""

    SURVEY = "survey"
    REFERRAL = "referral"
    ACTIVE = "active"
    CASES = "cases"
    TRIALS = "trials"
    SUBSCRIPTIONS = "subscriptions"


class Direction(StrEnum):
    """Which way is good news: alerts and the dashboard read it (a falling CES is an improvement)."""

    HIGHER_IS_BETTER = "higher"
    LOWER_IS_BETTER = "lower"


class Dimension(StrEnum):
    TOUCHPOINT = "touchpoint"
    CHANNEL = "channel"
    SEGMENT = "segment"


@dataclass(frozen=True, slots=True)
class Filters:
    touchpoint: str | None = None
    channel: str | None = None
    segment: str | None = None

    def items(self) -> list[tuple[str, str]]:
        return [
            (k, v)
            for k, v in (
                ("touchpoint", self.touchpoint),
                ("channel", self.channel),
                ("segment", self.segment),
            )
            if v is not None
        ]

    def to_dict(self) -> dict[str, str]:
        return dict(self.items())


def _current_and_previous(current: Span, previous: Span) -> list[Span]:
    return [current, previous]


@dataclass(frozen=True, slots=True)
class Metric:
    """One KPI. `statistics` are ClickHouse aggregate expressions over the family's rows, in the order
    `build` reads them; `{c}` in them stands for `condition` (which of the family's rows are this
    metric's), and `w` for the row's weight (see `WEIGHT`). `build` gets the statistics of each span that
    `spans(current, previous)` lists."""

    id: str
    family: Family
    unit: str
    direction: Direction
    description: str
    statistics: tuple[str, ...]
    #: The statistics of a span with no data (what a store returns for a span it found nothing in).
    empty: Stats
    build: Builder
    condition: str = "1"
    extras: tuple[str, ...] = ()
    #: Fixed trailing window (dau/wau/mau/stickiness ignore the requested window).
    fixed_window_ms: int | None = None
    spans: SpanRule = field(default=_current_and_previous)


def _pct(x: int, n: int) -> float | None:
    return None if n == 0 else 100 * x / n


def _nps(cur: Stats, prev: Stats) -> Reading:
    (p, d, n), (pp, pd, pn) = cur, prev
    return {
        "value": None if n == 0 else 100 * (p - d) / n,
        "n": n,
        "ci": stats.nps_interval(p, d, n),
        "previous": {"value": None if pn == 0 else 100 * (pp - pd) / pn, "n": pn},
        "significant": stats.nps_change_significant((p, d, n), (pp, pd, pn)),
        "promoters": p,
        "detractors": d,
        "passives": n - p - d,
    }


def _proportion(cur: Stats, prev: Stats) -> Reading:
    (x, n), (px, pn) = cur, prev
    return {
        "value": _pct(x, n),
        "n": n,
        "ci": stats.wilson_interval(x, n),
        "previous": {"value": _pct(px, pn), "n": pn},
        "significant": stats.proportions_significant((x, n), (px, pn)),
    }


def _ces(cur: Stats, prev: Stats) -> Reading:
    (mean, var, n, easy), (pmean, pvar, pn, _) = cur, prev
    return {
        "value": mean if n else None,
        "n": n,
        "ci": stats.t_interval(mean, var, n) if n else None,
        "previous": {"value": pmean if pn else None, "n": pn},
        "significant": stats.welch_significant((mean, var, n), (pmean, pvar, pn)),
        "easy_pct": _pct(easy, n),
    }


def _resolution(cur: Stats, prev: Stats) -> Reading:
    values, pvalues = stats.net_sample(*cur), stats.net_sample(*prev)
    return {
        "value": stats.median(values),
        "n": len(values),
        "ci": stats.median_interval(values),
        "previous": {"value": stats.median(pvalues), "n": len(pvalues)},
        "significant": stats.rank_sum_significant_sorted(values, pvalues),
        "mean_s": float(values.sum()) / len(values) if len(values) else None,
        "p90_s": stats.nearest_rank(values, 0.9),
    }


def _count(cur: Stats, prev: Stats) -> Reading:
    (x,), (px,) = cur, prev
    return {
        "value": x if x else None,
        "n": x,
        "ci": None,
        "previous": {"value": px if px else None, "n": px},
        "significant": None,
    }


def _pair(build: Callable[[Stats, Stats], Reading]) -> Builder:
    """A builder of the usual shape: the current window's statistics and the previous window's."""

    def from_spans(span_stats: Sequence[Stats]) -> Reading:
        return build(span_stats[0], span_stats[1])

    return from_spans


def _share(index: int) -> Builder:
    """A proportion read from statistics (x_1, …, n): `index` picks the numerator."""

    def build(cur: Stats, prev: Stats) -> Reading:
        return _proportion((cur[index], cur[-1]), (prev[index], prev[-1]))

    return _pair(build)


def _stickiness(span_stats: Sequence[Stats]) -> Reading:
    (dau,), (pdau,), (mau,), (pmau,) = span_stats
    out = _proportion((dau, mau), (pdau, pmau))
    out["dau"], out["mau"] = dau, mau
    return out


MONTH_MS = 30 * DAY_MS


def _with_months(current: Span, previous: Span) -> list[Span]:
    """Stickiness also needs MAU: the 30 days ending with each of its two days."""
    return [
        current,
        previous,
        Span.ending_at(current.end_ms, MONTH_MS),
        Span.ending_at(previous.end_ms, MONTH_MS),
    ]


_FAR = "9223372036854775807"
#: The end of the span a row is counted in (bound by the store's grid query).
SPAN_END = "({origin:Int64} + (idx + 1) * {step:Int64})"
#: Statistics are weighted sums: `w` is a row's weight — 1 for a stored event or fact, the count of a
#: rollup row, the sign (+1 / −1) of a signed fact row — so raw rows and rollups give the same numbers.
WEIGHT = "w"
_DURATION_S = "greatest(0, resolved_ms - first_ms) / 1000.0"
_DISTINCT = ("uniqExact(customer_key)",)
#: The subscriptions family's per-customer flags: s0 active at the span start, e1 at its end, churned.
_SUBSCRIBERS = ("sumIf(w, s0 AND churned)", "sumIf(w, s0 AND e1)", "sumIf(w, s0)")
_HIGHER, _LOWER = Direction.HIGHER_IS_BETTER, Direction.LOWER_IS_BETTER


def _active(metric_id: str, description: str, fixed_days: int | None) -> Metric:
    return Metric(
        metric_id,
        Family.ACTIVE,
        "customers",
        _HIGHER,
        description,
        _DISTINCT,
        (0,),
        _pair(_count),
        fixed_window_ms=fixed_days * DAY_MS if fixed_days else None,
    )


METRICS: dict[str, Metric] = {
    m.id: m
    for m in (
        Metric(
            "nps",
            Family.SURVEY,
            "score",
            _HIGHER,
            "Net Promoter Score: % promoters (9–10) − % detractors (0–6)",
            ("sumIf(w, score >= 9 AND {c})", "sumIf(w, score <= 6 AND {c})", "sumIf(w, {c})"),
            (0, 0, 0),
            _pair(_nps),
            condition="survey = 'nps'",
            extras=("promoters", "detractors", "passives"),
        ),
        Metric(
            "csat",
            Family.SURVEY,
            "%",
            _HIGHER,
            "% satisfied answers (top-two box)",
            ("sumIf(w, score >= if(scale = 7, 6, 4) AND {c})", "sumIf(w, {c})"),
            (0, 0),
            _pair(_proportion),
            condition="survey = 'csat'",
        ),
        Metric(
            "ces",
            Family.SURVEY,
            "score",
            _LOWER,
            "mean Customer Effort Score, 1 = very easy … 7 = very difficult",
            (
                "ifNotFinite(sumIf(w * score, {c}) / sumIf(w, {c}), 0)",
                "ifNotFinite((sumIf(w * score * score, {c}) - pow(sumIf(w * score, {c}), 2) / sumIf(w, {c}))"
                " / (sumIf(w, {c}) - 1), 0)",
                "sumIf(w, {c})",
                "sumIf(w, score <= 3 AND {c})",
            ),
            (0.0, 0.0, 0, 0),
            _pair(_ces),
            condition="survey = 'ces'",
            extras=("easy_pct",),
        ),
        Metric(
            "fcr",
            Family.CASES,
            "%",
            _HIGHER,
            "% of resolved cases resolved on first contact",
            (f"sumIf(w, contacts <= 1 AND ifNull(recontact_ms, {_FAR}) >= {SPAN_END})", "sum(w)"),
            (0, 0),
            _pair(_proportion),
        ),
        Metric(
            "resolution_time",
            Family.CASES,
            "s",
            _LOWER,
            "median seconds from a case's first event to its resolution",
            (
                f"arraySort(groupArrayIf({_DURATION_S}, w > 0))",
                f"arraySort(groupArrayIf({_DURATION_S}, w < 0))",
            ),
            ([], []),
            _pair(_resolution),
            extras=("mean_s", "p90_s"),
        ),
        _active("active_customers", "distinct customers with any event in the window", None),
        _active("dau", "distinct customers active in the trailing day", 1),
        _active("wau", "distinct customers active in the trailing 7 days", 7),
        _active("mau", "distinct customers active in the trailing 30 days", 30),
        Metric(
            "stickiness",
            Family.ACTIVE,
            "%",
            _HIGHER,
            "100 × dau / mau",
            _DISTINCT,
            (0,),
            _stickiness,
            extras=("dau", "mau"),
            fixed_window_ms=DAY_MS,
            spans=_with_months,
        ),
        Metric(
            "churn",
            Family.SUBSCRIPTIONS,
            "%",
            _LOWER,
            "% of subscribers at window start who cancelled in the window",
            _SUBSCRIBERS,
            (0, 0, 0),
            _share(0),
        ),
        Metric(
            "retention",
            Family.SUBSCRIPTIONS,
            "%",
            _HIGHER,
            "% of subscribers at window start still active at its end",
            _SUBSCRIBERS,
            (0, 0, 0),
            _share(1),
        ),
        Metric(
            "trial_conversion",
            Family.TRIALS,
            "%",
            _HIGHER,
            "% of trials ending in the window that converted",
            ("sumIf(w, converted = 1)", "sum(w)"),
            (0, 0),
            _pair(_proportion),
        ),
        Metric(
            "referral_rate",
            Family.REFERRAL,
            "%",
            _HIGHER,
            "% of purchases that came from a referral",
            ("sumIf(w, referral = 1)", "sum(w)"),
            (0, 0),
            _pair(_proportion),
        ),
    )
}


class UnknownMetric(ValueError):
    """A metric id that is not in the registry (the API answers 400 or 404, naming the known ones)."""

    def __init__(self, metric_id: str) -> None:
        super().__init__(f"unknown metric {metric_id!r}; known: {', '.join(METRICS)}")
        self.metric_id = metric_id


def metric_by_id(metric_id: str) -> Metric:
    try:
        return METRICS[metric_id]
    except KeyError:
        raise UnknownMetric(metric_id) from None


def spans_for(metric: Metric, at_ms: int, window_ms: int) -> tuple[Span, Span]:
    """The (current, previous) spans a reading compares; fixed-window metrics ignore `window_ms`."""
    current = Span.ending_at(at_ms, metric.fixed_window_ms or window_ms)
    return current, current.before()


def stat_spans(metric: Metric, current: Span, previous: Span) -> list[Span]:
    """The spans whose statistics the store must compute for one reading."""
    return metric.spans(current, previous)


def reading(metric: Metric, span_stats: Sequence[Stats]) -> Reading:
    """Build the public reading from the statistics of `stat_spans(...)`, in the same order."""
    out = metric.build(span_stats)
    value, previous = out["value"], out["previous"]["value"]
    out["delta"] = None if value is None or previous is None else value - previous
    if out["ci"] is not None:
        out["ci"] = list(out["ci"])
    return out


def empty_stats(metric: Metric) -> Stats:
    return metric.empty
