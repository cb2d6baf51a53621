"""`PulseReader`: pulse, breakdown and series readings (SPEC §3) from the store's KPI statistics."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from cxpulse.domain.metrics import (
    METRICS,
    Dimension,
    Family,
    Filters,
    Metric,
    Reading,
    Stats,
    metric_by_id,
    reading,
    spans_for,
    stat_spans,
)
from cxpulse.domain.outcomes import outcome_groups, survey_groups
from cxpulse.domain.windows import Grid, Span
from cxpulse.reading.base import MAX_SERIES_POINTS, QueryError
from cxpulse.reading.plan import plan_grids
from cxpulse.store.base import Store
from cxpulse.store.kpi_queries import NO_GROUP, active_span_stats, grid_stats
from cxpulse.store.outcome_queries import outcome_counts

T = TypeVar("T")

#: The threads a reading's family queries run on, shared by every reader: the store runs them side by side
#: as far as it can (`ChdbStore.READ_SESSIONS`; a ClickHouse server, as many as it is sent).
_FAMILIES = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cxpulse-family")


def _concurrently(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run the calls side by side; their results in order (the first failure is raised)."""
    if len(calls) <= 1:
        return [call() for call in calls]
    futures = [_FAMILIES.submit(call) for call in calls]
    return [f.result() for f in futures]


class PulseReader:
    """The `Reader` over a ClickHouse store: one query per metric family and grid, the families of a
    reading side by side."""

    def __init__(self, store: Store, *, before_read: Callable[[], None] | None = None) -> None:
        self.store = store
        self.before_read = before_read

    def pulse(
        self,
        metric_ids: Sequence[str],
        window_ms: int,
        at_ms: int,
        filters: Filters,
        baseline_ms: int | None = None,
    ) -> dict[str, Reading]:
        """Readings of several metrics: one query per metric family (per family and span length when
        compared with a `baseline_ms` span, see `Reader.pulse`)."""
        metrics = [metric_by_id(m) for m in metric_ids]
        self._settle()
        if baseline_ms is not None:
            return self._against_baseline(metrics, window_ms, at_ms, filters, baseline_ms)
        grouped = self._grouped(metrics, window_ms, at_ms, filters, None)
        return {m.id: grouped[m.id][NO_GROUP] for m in metrics}

    def journey(self, window_ms: int, at_ms: int, filters: Filters) -> dict[str, dict[str, Reading]]:
        """Every metric per touchpoint seen in the window, in journey order: one query per metric family
        with the touchpoint as a group, each reading equal to the pulse filtered by that touchpoint."""
        self._settle()
        metrics = list(METRICS.values())
        grouped = self._grouped(metrics, window_ms, at_ms, filters, Dimension.TOUCHPOINT)
        seen = {g for m in metrics for g, r in grouped[m.id].items() if _seen(r)}
        order = sorted(
            seen, key=lambda g: (JOURNEY_ORDER.index(g) if g in JOURNEY_ORDER else len(JOURNEY_ORDER), g)
        )
        return {
            g: {m.id: grouped[m.id].get(g) or _empty_reading(m, at_ms, window_ms) for m in metrics}
            for g in order
        }

    def _against_baseline(
        self, metrics: Sequence[Metric], window_ms: int, at_ms: int, filters: Filters, baseline_ms: int
    ) -> dict[str, Reading]:
        """Readings whose `previous` is the `baseline_ms` span ending at the window's start: the registry's
        spans and builders with that span in the previous window's place, each distinct span's statistics
        computed once per family (the active-customer family in one pass for all its spans)."""
        needed: dict[str, list[Span]] = {}
        for m in metrics:
            current, _ = spans_for(m, at_ms, window_ms)
            baseline = Span(current.start_ms - baseline_ms, current.start_ms)
            needed[m.id] = stat_spans(m, current, baseline)
        families: dict[Family, list[Metric]] = {}
        for m in metrics:
            families.setdefault(m.family, []).append(m)
        stats: dict[tuple[str, Span], Stats] = {}
        calls: list[Callable[[], dict[tuple[str, Span], Stats]]] = []
        for family, family_metrics in families.items():
            distinct = list(dict.fromkeys(s for m in family_metrics for s in needed[m.id]))
            if family == Family.ACTIVE:
                calls.append(partial(self._active_baseline, family_metrics, distinct, needed, filters))
                continue
            for span in distinct:
                calls.append(partial(self._span_baseline, family_metrics, span, needed, filters))
        for part in _concurrently(calls):
            stats.update(part)
        return {m.id: reading(m, [stats[(m.id, s)] for s in needed[m.id]]) for m in metrics}

    def _active_baseline(
        self,
        metrics: Sequence[Metric],
        spans: Sequence[Span],
        needed: dict[str, list[Span]],
        filters: Filters,
    ) -> dict[tuple[str, Span], Stats]:
        counts = active_span_stats(self.store, spans, filters)[NO_GROUP]
        return {(m.id, s): counts[s] for m in metrics for s in needed[m.id]}

    def _span_baseline(
        self, metrics: Sequence[Metric], span: Span, needed: dict[str, list[Span]], filters: Filters
    ) -> dict[tuple[str, Span], Stats]:
        length = span.end_ms - span.start_ms
        per_metric = grid_stats(self.store, metrics, Grid(span.end_ms, length, 1, length), filters)
        return {(m.id, span): per_metric[m.id][NO_GROUP][0] for m in metrics if span in needed[m.id]}

    def breakdown(
        self, metric_id: str, by: Dimension, window_ms: int, at_ms: int, filters: Filters
    ) -> dict[str, Reading]:
        metric = metric_by_id(metric_id)
        self._settle()
        groups = self._readings([metric], at_ms, None, 1, window_ms, filters, by)[metric.id]
        return {g: r[0] for g, r in sorted(groups.items()) if _seen(r[0])}

    def outcomes(
        self, survey: str, window_ms: int, horizon_ms: int, at_ms: int, filters: Filters
    ) -> dict[str, Any]:
        groups = survey_groups(survey)
        self._settle()
        return outcome_groups(
            groups, outcome_counts(self.store, groups, window_ms, horizon_ms, at_ms, filters)
        )

    def series(
        self, metric_id: str, from_ms: int, to_ms: int, step_ms: int, filters: Filters
    ) -> list[dict[str, Any]]:
        metric = metric_by_id(metric_id)
        if to_ms <= from_ms:
            raise QueryError("from", "'to' must be later than 'from'")
        count = math.ceil((to_ms - from_ms) / step_ms)
        if count > MAX_SERIES_POINTS:
            raise QueryError(
                "from",
                f"the series would have {count} points; at most {MAX_SERIES_POINTS} per request "
                "(use a larger step or a shorter range)",
            )
        first_end = from_ms + step_ms
        self._settle()
        readings = self._readings([metric], first_end, step_ms, count, step_ms, filters)[metric.id][NO_GROUP]
        return [
            {"start": first_end + i * step_ms - step_ms, "end": first_end + i * step_ms, **r}
            for i, r in enumerate(readings)
        ]

    def _grouped(
        self, metrics: Sequence[Metric], window_ms: int, at_ms: int, filters: Filters, by: Dimension | None
    ) -> dict[str, dict[str, Reading]]:
        """One reading per metric and group (`NO_GROUP` when `by` is None): the active-customer metrics in
        one pass over all their spans, every other family in one grid query."""
        out: dict[str, dict[str, Reading]] = {m.id: {} for m in metrics}
        families: dict[Family, list[Metric]] = {}
        for m in metrics:
            families.setdefault(m.family, []).append(m)
        calls = [
            partial(
                self._active_readings if family == Family.ACTIVE else self._family_readings,
                family_metrics,
                window_ms,
                at_ms,
                filters,
                by,
            )
            for family, family_metrics in families.items()
        ]
        for part in _concurrently(calls):
            for mid, groups in part.items():
                out[mid].update(groups)
        return out

    def _active_readings(
        self, metrics: Sequence[Metric], window_ms: int, at_ms: int, filters: Filters, by: Dimension | None
    ) -> dict[str, dict[str, Reading]]:
        """The active-customer metrics in one pass over all their spans."""
        out: dict[str, dict[str, Reading]] = {m.id: {} for m in metrics}
        needed = {m.id: stat_spans(m, *spans_for(m, at_ms, window_ms)) for m in metrics}
        distinct = list(dict.fromkeys(span for spans in needed.values() for span in spans))
        for group, stats in active_span_stats(self.store, distinct, filters, by).items():
            for mid, spans in needed.items():
                out[mid][group] = reading(METRICS[mid], [stats[s] for s in spans])
        return out

    def _family_readings(
        self, metrics: Sequence[Metric], window_ms: int, at_ms: int, filters: Filters, by: Dimension | None
    ) -> dict[str, dict[str, Reading]]:
        readings = self._readings(metrics, at_ms, None, 1, window_ms, filters, by)
        return {mid: {g: r[0] for g, r in groups.items()} for mid, groups in readings.items()}

    def _settle(self) -> None:
        if self.before_read is not None:
            self.before_read()

    def _readings(
        self,
        metrics: Sequence[Metric],
        first_end_ms: int,
        step_ms: int | None,
        count: int,
        window_ms: int,
        filters: Filters,
        by: Dimension | None = None,
    ) -> dict[str, dict[str, list[Reading]]]:
        """Readings at `first_end + i·step` (i < count) per metric and group, for metrics of one family
        whose readings need the same spans. A single reading (count 1) takes the step that lines its
        previous window up with its current one."""
        lead = metrics[0]
        if step_ms is None:
            current, previous = spans_for(lead, first_end_ms, window_ms)
            step_ms = current.end_ms - previous.end_ms
        plan = plan_grids(lead, first_end_ms, step_ms, count, window_ms)
        per_grid = [grid_stats(self.store, metrics, grid, filters, by) for grid in plan.grids]
        out: dict[str, dict[str, list[Reading]]] = {}
        for metric in metrics:
            empty = metric.empty
            groups = set().union(*(grid_out[metric.id] for grid_out in per_grid))
            out[metric.id] = {}
            for group in groups:
                stats = [
                    grid_out[metric.id].get(group) or [empty] * grid.count
                    for grid_out, grid in zip(per_grid, plan.grids, strict=True)
                ]
                out[metric.id][group] = [
                    reading(metric, [_stat(stats, slot, i) for slot in plan.slots]) for i in range(count)
                ]
        return out


def _stat(stats: list[list[Stats]], slot: tuple[int, int], i: int) -> Stats:
    grid, offset = slot
    return stats[grid][i + offset]


#: The journey's touchpoints in order (SPEC §7); others follow by name.
JOURNEY_ORDER = ("website", "checkout", "onboarding", "usage", "support", "subscription", "survey")


def _seen(r: Reading) -> bool:
    """A group is listed when its current window has data."""
    return bool(r["n"]) or r["value"] is not None


def _empty_reading(metric: Metric, at_ms: int, window_ms: int) -> Reading:
    return reading(metric, [metric.empty] * len(stat_spans(metric, *spans_for(metric, at_ms, window_ms))))
