"""The KPI SQL: sufficient statistics per span for a whole metric family in one query.

Two query shapes, both a single scan:

- **grid** (`grid_stats`): the spans of a `Grid` — a reading's current and previous window, or a series.
  A row's span is found by arithmetic on its time: in a tumbling grid each row falls in exactly one span,
  in a sliding grid (e.g. MAU at each point of an hourly series) in a contiguous range of them, expanded
  with `ARRAY JOIN range(…)`. Metrics of one family sharing a grid (nps, csat and ces; fcr and
  resolution_time) are computed together.
- **spans** (`active_span_stats`): distinct customers for an arbitrary list of spans — the active-customer
  metrics of a pulse (window, 1, 7 and 30 days, and their previous windows) in one pass: per customer a
  bit mask of the spans it was active in (one hash table), then a count per span.

Filter values and numbers are bound as query parameters; identifiers are fixed here.

When this process keeps the store's rollups (`snapshot.read_view`), the same statistics come from them
instead (`rollup_reads`: event families from day/hour buckets plus raw edges, fact families from the signed,
time-ordered fact tables); the raw SQL here stays the reference and the path of distributed stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cxpulse.domain.metrics import SPAN_END, Dimension, Family, Filters, Metric, Stats
from cxpulse.domain.windows import Grid, Span
from cxpulse.store import rollup_reads
from cxpulse.store.base import Store
from cxpulse.store.snapshot import View, read_view

NO_GROUP = ""
_FAR = "9223372036854775807"
_END = SPAN_END  # end of span `idx`
_START = f"({_END} - {{length:Int64}})"

#: Per family: the table, the time column placing a row in spans, the rows it reads and their weight.
_SOURCES: dict[Family, tuple[str, str, str, str]] = {
    Family.SURVEY: ("events", "occurred_ms", "type = 'survey_answer'", "toInt8(1)"),
    Family.REFERRAL: ("events", "occurred_ms", "type = 'purchase'", "toInt8(1)"),
    Family.ACTIVE: ("events", "occurred_ms", "1", "toInt8(1)"),
    Family.CASES: ("cases FINAL", "resolved_ms", "1", "toInt8(1)"),
    Family.TRIALS: ("trials FINAL", "outcome_ms", "1", "toInt8(1)"),
}
#: The fact families over the signed, time-ordered fact tables (a changed fact: its old row at −1).
_SIGNED_SOURCES: dict[Family, tuple[str, str, str, str]] = {
    Family.CASES: ("case_facts", "resolved_ms", "1", "sign"),
    Family.TRIALS: ("trial_facts", "outcome_ms", "1", "sign"),
}


def filter_sql(filters: Filters, params: dict[str, Any]) -> str:
    clauses = []
    for name, value in filters.items():
        params[f"f_{name}"] = value
        clauses.append(f" AND {name} = {{f_{name}:String}}")
    return "".join(clauses)


def _grid_query(
    metrics: Sequence[Metric],
    filters: Filters,
    group: str,
    grid: Grid,
    params: dict[str, Any],
    sources: dict[Family, tuple[str, str, str, str]] = _SOURCES,
) -> str:
    """Statistics per (span, group) for metrics of one family over the rows whose time falls in a span."""
    source, time_col, where, weight = sources[metrics[0].family]
    selects = _statistics(metrics)
    if len(metrics) == 1 and metrics[0].family == Family.SURVEY:
        where += f" AND {metrics[0].condition}"  # one survey: narrow the scan by the sort key
    if grid.length_ms == grid.step_ms:
        index, array_join = f"intDiv({time_col} - {{origin:Int64}}, {{step:Int64}}) AS idx", ""
    else:
        offset = f"{time_col} - {{origin:Int64}}"
        index = "idx"
        array_join = (
            f" ARRAY JOIN range(greatest(0, intDiv({offset}, {{step:Int64}})),"
            f" least({{count:Int64}}, intDiv({offset} + {{length:Int64}}, {{step:Int64}}))) AS idx"
        )
    return (
        f"WITH {weight} AS w SELECT {index}, {group} AS g, {', '.join(selects)} "
        f"FROM {{db:Identifier}}.{source}{array_join} "
        f"WHERE {where} AND {time_col} >= {{lo:Int64}} AND {time_col} < {{hi:Int64}}"
        f"{filter_sql(filters, params)} GROUP BY idx, g"
    )


def _statistics(metrics: Sequence[Metric]) -> list[str]:
    """The metrics' statistics, side by side, each with its row condition filled in."""
    return [e.replace("{c}", m.condition) for m in metrics for e in m.statistics]


def _subscriptions_query(
    metrics: Sequence[Metric], filters: Filters, group: str, params: dict[str, Any]
) -> str:
    """Subscribers at each span's start (S, by the dims of their active interval), still active at its end
    (retained) and cancelling inside it (churned) — the statistics of churn and retention alike. An
    interval is active at t for started < t <= its end, so one that ended before the first span's start
    is never read."""
    end = f"least(ifNull(next_start_ms, {_FAR}), ifNull(cancel_ms, {_FAR}))"
    at_start = f"started_ms < {_START} AND {_START} <= {end}"
    at_end = f"started_ms < {_END} AND {_END} <= {end}"
    dims = "1" + filter_sql(filters, params)
    first = "greatest(0, intDiv(started_ms - {origin:Int64}, {step:Int64}))"
    reach = f"least({end}, {{hi:Int64}}) - {{origin:Int64}} + {{length:Int64}}"
    last = f"least({{count:Int64}} - 1, intDiv({reach}, {{step:Int64}}) - 1)"
    return (
        f"WITH toInt8(1) AS w SELECT idx, g, {', '.join(_statistics(metrics))} FROM ("
        f" SELECT customer_id, idx, max({at_start} AND {dims}) AS s0, max({at_end}) AS e1,"
        f" max({at_start} AND {dims} AND ifNull(cancel_ms, {_FAR}) < {_END}) AS churned,"
        f" anyIf({group}, {at_start}) AS g"
        f" FROM {{db:Identifier}}.subscriptions FINAL ARRAY JOIN range({first}, {last} + 1) AS idx"
        f" WHERE started_ms < {{hi:Int64}} AND {end} >= {{lo:Int64}} GROUP BY customer_id, idx"
        ") WHERE s0 GROUP BY idx, g"
    )


def _subscribers_query(
    metrics: Sequence[Metric], filters: Filters, group: str, grid: Grid, params: dict[str, Any]
) -> str:
    """`_subscriptions_query` over the signed interval rows (`subscription_intervals`, migration 006): no
    grouping by customer — a customer's intervals never overlap, so the interval active at a span's start
    is the customer's, with its dimensions; cancelled inside the span; still a subscriber at its end through
    that interval or a later one."""
    at_start = f"started_ms < {_START} AND {_START} <= end_ms"
    at_end = (
        f"{_END} <= end_ms OR arrayExists((s, e) -> s < {_END} AND {_END} <= e, later_starts, later_ends)"
    )
    return (
        f"SELECT idx, g, {', '.join(_statistics(metrics))} FROM ("
        f" SELECT idx, sign AS w, {group} AS g, 1 AS s0, cancel_ms < {_END} AS churned, {at_end} AS e1"
        f" FROM {{db:Identifier}}.subscription_intervals ARRAY JOIN range({grid.count}) AS idx"
        f" WHERE started_ms < {{hi:Int64}} AND end_ms >= {{lo:Int64}}"
        f" AND {at_start}{filter_sql(filters, params)}"
        ") GROUP BY idx, g"
    )


def grid_stats(
    store: Store,
    metrics: Sequence[Metric],
    grid: Grid,
    filters: Filters | None = None,
    by: Dimension | None = None,
) -> dict[str, dict[str, list[Stats]]]:
    """Statistics for each span of `grid`, per metric id and group value (`NO_GROUP` when `by` is None).

    `metrics` must share a family (one query computes them all).
    """
    params: dict[str, Any] = {
        "db": store.database,
        "origin": grid.first_end_ms - grid.step_ms,
        "step": grid.step_ms,
        "count": grid.count,
        "length": grid.length_ms,
        "lo": grid.start_ms,
        "hi": grid.end_ms,
    }
    flt = filters or Filters()
    with read_view(store) as view:
        rows = _grid_rows(store, view, metrics, grid, flt, by, params)
    widths = [len(m.statistics) for m in metrics]
    offsets = [sum(widths[:i]) for i in range(len(metrics))]
    out: dict[str, dict[str, list[Stats]]] = {m.id: {} for m in metrics}
    for idx, g, *values in rows:
        if not 0 <= idx < grid.count:
            continue
        for metric, offset, width in zip(metrics, offsets, widths, strict=True):
            per_group = out[metric.id].setdefault(g, [metric.empty] * grid.count)
            per_group[idx] = tuple(values[offset : offset + width])
    for metric in metrics:
        if by is None:
            out[metric.id].setdefault(NO_GROUP, [metric.empty] * grid.count)
    return out


def _grid_rows(
    store: Store,
    view: View | None,
    metrics: Sequence[Metric],
    grid: Grid,
    filters: Filters,
    by: Dimension | None,
    params: dict[str, Any],
) -> list[list[Any]]:
    """The grid's statistics rows from the rollups when `view` allows, else from the raw SQL."""
    group = by.value if by else "''"
    family = metrics[0].family
    if view is not None and grid.count <= rollup_reads.MAX_SPANS:
        spans = rollup_reads.grid_spans(grid)
        if family in (Family.SURVEY, Family.REFERRAL):
            return rollup_reads.counts_stats(store, view, metrics, spans, filters, by, grid)
        if family == Family.ACTIVE:
            return rollup_reads.active_stats(store, view, spans, filters, by, grid)
    if view is not None and family in _SIGNED_SOURCES:
        return store.array_rows(_grid_query(metrics, filters, group, grid, params, _SIGNED_SOURCES), params)
    if view is not None and family == Family.SUBSCRIPTIONS and grid.count <= rollup_reads.MAX_SPANS:
        return store.rows(_subscribers_query(metrics, filters, group, grid, params), params)
    if family == Family.SUBSCRIPTIONS:
        return store.rows(_subscriptions_query(metrics, filters, group, params), params)
    return store.array_rows(_grid_query(metrics, filters, group, grid, params), params)


def active_span_stats(
    store: Store, spans: Sequence[Span], filters: Filters | None = None, by: Dimension | None = None
) -> dict[str, dict[Span, Stats]]:
    """Distinct customers with an event in each span, per group value (`NO_GROUP` when `by` is None), in
    one pass.

    One hash table keyed by customer (and group), holding a bit mask of the spans the customer was active
    in, then a count per bit — about twice as fast at 10M events as one `uniqExactIf` (one hash set) per
    span, whose sets outgrow the caches. At most 64 spans (a pulse needs 9).
    """
    if not 0 < len(spans) <= 64:
        raise ValueError(f"active_span_stats takes 1 to 64 spans, not {len(spans)}")
    with read_view(store) as view:
        if view is not None:
            out: dict[str, dict[Span, Stats]] = {}
            for idx, g, count in rollup_reads.active_stats(store, view, spans, filters or Filters(), by):
                out.setdefault(g, {span: (0,) for span in spans})[spans[idx]] = (count,)
            if by is None and NO_GROUP not in out:
                out[NO_GROUP] = {span: (0,) for span in spans}
            return out
    params: dict[str, Any] = {
        "db": store.database,
        "lo": min(s.start_ms for s in spans),
        "hi": max(s.end_ms for s in spans),
    }
    inside = []
    for i, span in enumerate(spans):
        params[f"s{i}"], params[f"e{i}"] = span.start_ms, span.end_ms
        inside.append(f"occurred_ms >= {{s{i}:Int64}} AND occurred_ms < {{e{i}:Int64}}")
    where = "occurred_ms >= {lo:Int64} AND occurred_ms < {hi:Int64}" + filter_sql(
        filters or Filters(), params
    )
    mask_type = next(f"UInt{w}" for w in (8, 16, 32, 64) if len(spans) <= w)
    mask = " + ".join(f"to{mask_type}({c}) * {1 << i}" for i, c in enumerate(inside))
    counts = [f"countIf(bitTest(m, {i}))" for i in range(len(spans))]
    group = by.value if by else "''"
    sql = (
        f"SELECT g, {', '.join(counts)} FROM (SELECT {group} AS g, groupBitOr(to{mask_type}({mask})) AS m"
        f" FROM {{db:Identifier}}.events WHERE {where} GROUP BY customer_key, g) GROUP BY g"
    )
    out = {
        g: {span: (count,) for span, count in zip(spans, row, strict=True)}
        for g, *row in store.rows(sql, params)
    }
    if by is None and NO_GROUP not in out:
        out[NO_GROUP] = {span: (0,) for span in spans}
    return out
