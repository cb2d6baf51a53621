"""The query side: pulse, breakdown and series readings (SPEC §3) from the store's KPI statistics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from cxpulse.domain.metrics import (
    METRICS,
    Dimension,
    Filters,
    Metric,
    Reading,
    empty_stats,
    reading,
    spans_for,
    stat_spans,
)
from cxpulse.domain.windows import Span
from cxpulse.store.base import Store
from cxpulse.store.kpi_queries import NO_GROUP, span_stats

MAX_SERIES_POINTS = 5_000


class QueryError(ValueError):
    """A request the reader cannot answer as asked (unknown metric, too many points …): a 4xx."""


def metric_by_id(metric_id: str) -> Metric:
    try:
        return METRICS[metric_id]
    except KeyError:
        raise QueryError(f"unknown metric {metric_id!r}; known: {', '.join(METRICS)}") from None


class PulseReader:
    def __init__(self, store: Store) -> None:
        self.store = store

    def pulse(
        self, metric_ids: Sequence[str], window_ms: int, at_ms: int, filters: Filters
    ) -> dict[str, Reading]:
        metrics = [metric_by_id(m) for m in metric_ids]
        return {
            m.id: self._readings(m, [spans_for(m, at_ms, window_ms)], filters)[NO_GROUP][0] for m in metrics
        }

    def breakdown(
        self, metric_id: str, by: Dimension, window_ms: int, at_ms: int, filters: Filters
    ) -> dict[str, Reading]:
        metric = metric_by_id(metric_id)
        current, previous = spans_for(metric, at_ms, window_ms)
        spans = stat_spans(metric, current, previous)
        stats = span_stats(self.store, metric, spans, filters, by)
        empty = empty_stats(metric)
        seen_at = (0, 2) if metric.id == "stickiness" else (0,)
        return {
            group: reading(metric, per_span)
            for group, per_span in sorted(stats.items())
            if any(per_span[i] != empty for i in seen_at)
        }

    def series(
        self, metric_id: str, from_ms: int, to_ms: int, step_ms: int, filters: Filters
    ) -> list[dict[str, Any]]:
        metric = metric_by_id(metric_id)
        if to_ms <= from_ms:
            raise QueryError("'to' must be later than 'from'")
        count = math.ceil((to_ms - from_ms) / step_ms)
        if count > MAX_SERIES_POINTS:
            raise QueryError(
                f"the series would have {count} points; at most {MAX_SERIES_POINTS} per request "
                "(use a larger step or a shorter range)"
            )
        ends = [from_ms + (i + 1) * step_ms for i in range(count)]
        pairs = [spans_for(metric, end, step_ms) for end in ends]
        readings = self._readings(metric, pairs, filters)[NO_GROUP]
        return [{"start": end - step_ms, "end": end, **r} for end, r in zip(ends, readings, strict=True)]

    def _readings(
        self, metric: Metric, pairs: Sequence[tuple[Span, Span]], filters: Filters
    ) -> dict[str, list[Reading]]:
        """Readings for several (current, previous) pairs from a single store query."""
        needed = [stat_spans(metric, cur, prev) for cur, prev in pairs]
        distinct = list(dict.fromkeys(s for spans in needed for s in spans))
        index = {s: i for i, s in enumerate(distinct)}
        stats = span_stats(self.store, metric, distinct, filters)
        return {
            group: [reading(metric, [per_span[index[s]] for s in spans]) for spans in needed]
            for group, per_span in stats.items()
        }
