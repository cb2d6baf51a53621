"""KPI definitions (SPEC §2): which statistics each metric needs and how a reading is built from them.

A store computes each metric's *sufficient statistics* for a list of event-time spans; `reading()` turns
the statistics of a window and of the window before it into the public reading: value, n, ci, previous,
delta, significant and the metric's extras. Pure code — the golden tests drive it directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cxpulse.domain import stats
from cxpulse.domain.windows import UNIT_MS, Span

Stats = tuple[Any, ...]
Reading = dict[str, Any]


class Family(StrEnum):
    """How a metric's statistics are gathered (one store query shape per family)."""

    SURVEY = "survey"
    REFERRAL = "referral"
    ACTIVE = "active"
    CASES = "cases"
    TRIALS = "trials"
    SUBSCRIPTIONS = "subscriptions"


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


@dataclass(frozen=True, slots=True)
class Metric:
    id: str
    family: Family
    description: str
    #: Fixed trailing window (dau/wau/mau/stickiness ignore the requested window).
    fixed_window_ms: int | None = None


METRICS: dict[str, Metric] = {
    m.id: m
    for m in (
        Metric("nps", Family.SURVEY, "Net Promoter Score: % promoters (9–10) − % detractors (0–6)"),
        Metric("csat", Family.SURVEY, "% satisfied answers (top-two box)"),
        Metric("ces", Family.SURVEY, "mean Customer Effort Score, 1 = very easy … 7 = very difficult"),
        Metric("fcr", Family.CASES, "% of resolved cases resolved on first contact"),
        Metric("resolution_time", Family.CASES, "median seconds from a case's first event to its resolution"),
        Metric("active_customers", Family.ACTIVE, "distinct customers with any event in the window"),
        Metric("dau", Family.ACTIVE, "distinct customers active in the trailing day", UNIT_MS["d"]),
        Metric("wau", Family.ACTIVE, "distinct customers active in the trailing 7 days", 7 * UNIT_MS["d"]),
        Metric("mau", Family.ACTIVE, "distinct customers active in the trailing 30 days", 30 * UNIT_MS["d"]),
        Metric("stickiness", Family.ACTIVE, "100 × dau / mau", UNIT_MS["d"]),
        Metric("churn", Family.SUBSCRIPTIONS, "% of subscribers at window start who cancelled in the window"),
        Metric("retention", Family.SUBSCRIPTIONS, "% of subscribers at window start still active at its end"),
        Metric("trial_conversion", Family.TRIALS, "% of trials ending in the window that converted"),
        Metric("referral_rate", Family.REFERRAL, "% of purchases that came from a referral"),
    )
}
MONTH_MS = 30 * UNIT_MS["d"]


def spans_for(metric: Metric, at_ms: int, window_ms: int) -> tuple[Span, Span]:
    """The (current, previous) spans a reading compares; fixed-window metrics ignore `window_ms`."""
    current = Span.ending_at(at_ms, metric.fixed_window_ms or window_ms)
    return current, current.before()


def stat_spans(metric: Metric, current: Span, previous: Span) -> list[Span]:
    """The spans whose statistics the store must compute for one reading (stickiness also needs MAU)."""
    if metric.id == "stickiness":
        return [
            current,
            previous,
            Span.ending_at(current.end_ms, MONTH_MS),
            Span.ending_at(previous.end_ms, MONTH_MS),
        ]
    return [current, previous]


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
    (values,), (pvalues,) = cur, prev
    values, pvalues = sorted(values), sorted(pvalues)
    return {
        "value": stats.median(values),
        "n": len(values),
        "ci": stats.median_interval(values),
        "previous": {"value": stats.median(pvalues), "n": len(pvalues)},
        "significant": stats.rank_sum_significant(values, pvalues),
        "mean_s": sum(values) / len(values) if values else None,
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


def _fcr_or_ratio(index: int) -> Callable[[Stats, Stats], Reading]:
    """A proportion read from statistics (x_1, …, n): `index` picks the numerator."""

    def build(cur: Stats, prev: Stats) -> Reading:
        return _proportion((cur[index], cur[-1]), (prev[index], prev[-1]))

    return build


_BUILDERS: dict[str, Callable[[Stats, Stats], Reading]] = {
    "nps": _nps,
    "csat": _proportion,
    "ces": _ces,
    "fcr": _proportion,
    "resolution_time": _resolution,
    "active_customers": _count,
    "dau": _count,
    "wau": _count,
    "mau": _count,
    "churn": _fcr_or_ratio(0),
    "retention": _fcr_or_ratio(1),
    "trial_conversion": _proportion,
    "referral_rate": _proportion,
}


def reading(metric: Metric, span_stats: Sequence[Stats]) -> Reading:
    """Build the public reading from the statistics of `stat_spans(...)`, in the same order."""
    if metric.id == "stickiness":
        (dau,), (pdau,), (mau,), (pmau,) = span_stats
        out = _proportion((dau, mau), (pdau, pmau))
        out["dau"], out["mau"] = dau, mau
    else:
        out = _BUILDERS[metric.id](span_stats[0], span_stats[1])
    value, previous = out["value"], out["previous"]["value"]
    out["delta"] = None if value is None or previous is None else value - previous
    if out["ci"] is not None:
        out["ci"] = list(out["ci"])
    return out


def empty_stats(metric: Metric) -> Stats:
    """The statistics of a span with no data (what a store returns for a span it found nothing in)."""
    return {
        "nps": (0, 0, 0),
        "csat": (0, 0),
        "ces": (0.0, 0.0, 0, 0),
        "fcr": (0, 0),
        "resolution_time": ([],),
        "churn": (0, 0, 0),
        "retention": (0, 0, 0),
        "trial_conversion": (0, 0),
        "referral_rate": (0, 0),
    }.get(metric.id, (0,))
