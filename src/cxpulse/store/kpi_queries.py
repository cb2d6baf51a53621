"""The KPI SQL: each metric family's sufficient statistics for every span of a `Grid`, in one query.

A row's spans are found by arithmetic on its time (no per-span scan): in a tumbling grid each row falls in
exactly one span, in a sliding grid (e.g. MAU at each point of an hourly series) in a contiguous range of
them, expanded with `ARRAY JOIN range(…)`. So a pulse (current + previous window: a 2-point grid), a
breakdown (the same, grouped by a dimension) and a series run the same statement. Filter values and grid
numbers are bound as query parameters; identifiers are fixed here.
"""

from __future__ import annotations

from typing import Any

from cxpulse.domain.metrics import Dimension, Family, Filters, Metric, Stats, empty_stats
from cxpulse.domain.windows import Grid
from cxpulse.store.base import Store

NO_GROUP = ""
_FAR = "9223372036854775807"
_END = "({origin:Int64} + (idx + 1) * {step:Int64})"  # end of span `idx`
_START = f"({_END} - {{length:Int64}})"

_SURVEY_STATS = {
    "nps": "countIf(score >= 9), countIf(score <= 6), count()",
    "csat": "countIf(score >= if(scale = 7, 6, 4)), count()",
    "ces": "avg(score), ifNotFinite(varSamp(score), 0), count(), countIf(score <= 3)",
}


def _filter_sql(filters: Filters, params: dict[str, Any]) -> str:
    clauses = []
    for name, value in filters.items():
        params[f"f_{name}"] = value
        clauses.append(f" AND {name} = {{f_{name}:String}}")
    return "".join(clauses)


def _per_span(
    source: str,
    time_col: str,
    where: str,
    select: str,
    group: str,
    filters: Filters,
    grid: Grid,
    params: dict[str, Any],
) -> str:
    """Statistics per (span, group) of the rows of `source` whose `time_col` falls in a span of the grid."""
    if grid.length_ms == grid.step_ms:
        index, array_join = f"intDiv({time_col} - {{origin:Int64}}, {{step:Int64}}) AS idx", ""
    else:
        index = "idx"
        offset = f"{time_col} - {{origin:Int64}}"
        array_join = (
            f" ARRAY JOIN range(greatest(0, intDiv({offset}, {{step:Int64}})),"
            f" least({{count:Int64}}, intDiv({offset} + {{length:Int64}}, {{step:Int64}}))) AS idx"
        )
    return (
        f"SELECT {index}, {group} AS g, {select} FROM {{db:Identifier}}.{source}{array_join} "
        f"WHERE {where} AND {time_col} >= {{lo:Int64}} AND {time_col} < {{hi:Int64}}"
        f"{_filter_sql(filters, params)} GROUP BY idx, g"
    )


def _subscriptions_query(filters: Filters, group: str, params: dict[str, Any]) -> str:
    """Subscribers at each span's start (S, by the dims of their active interval), still active at its end
    (retained) and cancelling inside it (churned). An interval is active at t for started < t <= its end."""
    end = f"least(ifNull(next_start_ms, {_FAR}), ifNull(cancel_ms, {_FAR}))"
    at_start = f"started_ms < {_START} AND {_START} <= {end}"
    at_end = f"started_ms < {_END} AND {_END} <= {end}"
    dims = "1" + _filter_sql(filters, params)
    first = "greatest(0, intDiv(started_ms - {origin:Int64}, {step:Int64}))"
    reach = f"least({end}, {{hi:Int64}}) - {{origin:Int64}} + {{length:Int64}}"
    last = f"least({{count:Int64}} - 1, intDiv({reach}, {{step:Int64}}) - 1)"
    return (
        "SELECT idx, g, countIf(s0 AND churned), countIf(s0 AND e1), countIf(s0) FROM ("
        f" SELECT customer_id, idx, max({at_start} AND {dims}) AS s0, max({at_end}) AS e1,"
        f" max({at_start} AND {dims} AND ifNull(cancel_ms, {_FAR}) < {_END}) AS churned,"
        f" anyIf({group}, {at_start}) AS g"
        f" FROM {{db:Identifier}}.subscriptions FINAL ARRAY JOIN range({first}, {last} + 1) AS idx"
        " WHERE started_ms < {hi:Int64} GROUP BY customer_id, idx"
        ") WHERE s0 GROUP BY idx, g"
    )


def _family_query(metric: Metric, filters: Filters, group: str, grid: Grid, params: dict[str, Any]) -> str:
    def per_span(source: str, time_col: str, where: str, select: str) -> str:
        return _per_span(source, time_col, where, select, group, filters, grid, params)

    if metric.family == Family.SURVEY:
        params["survey"] = metric.id
        where = "type = 'survey_answer' AND survey = {survey:String}"
        return per_span("events", "occurred_ms", where, _SURVEY_STATS[metric.id])
    if metric.family == Family.REFERRAL:
        return per_span("events", "occurred_ms", "type = 'purchase'", "countIf(referral = 1), count()")
    if metric.family == Family.ACTIVE:
        return per_span("events", "occurred_ms", "1", "uniqExact(customer_key)")
    if metric.family == Family.CASES:
        if metric.id == "fcr":
            select = f"countIf(contacts <= 1 AND ifNull(recontact_ms, {_FAR}) >= {_END}), count()"
        else:
            select = "groupArray(greatest(0, resolved_ms - first_ms) / 1000.0)"
        return per_span("cases FINAL", "resolved_ms", "1", select)
    if metric.family == Family.TRIALS:
        return per_span("trials FINAL", "outcome_ms", "1", "countIf(converted = 1), count()")
    return _subscriptions_query(filters, group, params)


def grid_stats(
    store: Store,
    metric: Metric,
    grid: Grid,
    filters: Filters | None = None,
    by: Dimension | None = None,
) -> dict[str, list[Stats]]:
    """Statistics of `metric` for each span of `grid`, keyed by group value (`NO_GROUP` when `by` is None)."""
    params: dict[str, Any] = {
        "db": store.database,
        "origin": grid.first_end_ms - grid.step_ms,
        "step": grid.step_ms,
        "count": grid.count,
        "length": grid.length_ms,
        "lo": grid.start_ms,
        "hi": grid.end_ms,
    }
    sql = _family_query(metric, filters or Filters(), by.value if by else "''", grid, params)
    empty = empty_stats(metric)
    out: dict[str, list[Stats]] = {}
    for idx, g, *values in store.rows(sql, params):
        if 0 <= idx < grid.count:
            out.setdefault(g, [empty] * grid.count)[idx] = tuple(values)
    if by is None and NO_GROUP not in out:
        out[NO_GROUP] = [empty] * grid.count
    return out
