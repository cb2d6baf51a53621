"""The KPI SQL: each metric family's sufficient statistics for a list of event-time spans, in one query.

Every query explodes each row into the indices of the spans that contain it (`ARRAY JOIN arrayFilter(…)`),
so a pulse (two spans), a breakdown (two spans, grouped by a dimension) and a series (many spans) all run
the same statement. Filter values and spans are bound as query parameters; identifiers are fixed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cxpulse.domain.metrics import Dimension, Family, Filters, Metric, Stats, empty_stats
from cxpulse.domain.windows import Span
from cxpulse.store.base import Store

NO_GROUP = ""
_FAR = "9223372036854775807"

_SURVEY_STATS = {
    "nps": "countIf(score >= 9), countIf(score <= 6), count()",
    "csat": "countIf(score >= if(scale = 7, 6, 4)), count()",
    "ces": "avg(score), ifNotFinite(varSamp(score), 0), count(), countIf(score <= 3)",
}


def _span_index(column: str) -> str:
    return f"arrayFilter(i -> {column} >= S[i].1 AND {column} < S[i].2, range(1, length(S) + 1))"


def _filter_sql(filters: Filters, params: dict[str, Any], prefix: str = "") -> str:
    clauses = []
    for name, value in filters.items():
        params[f"f_{name}"] = value
        clauses.append(f" AND {prefix}{name} = {{f_{name}:String}}")
    return "".join(clauses)


_WITH_SPANS = "WITH {spans:Array(Tuple(Int64, Int64))} AS S "


def _per_span(
    source: str, time_col: str, where: str, select: str, group: str, filters: Filters, params: dict[str, Any]
) -> str:
    """Statistics per (span, group) of the rows of `source` whose `time_col` falls in a span."""
    return (
        f"{_WITH_SPANS}SELECT idx, {group} AS g, {select} FROM {{db:Identifier}}.{source} "
        f"ARRAY JOIN {_span_index(time_col)} AS idx "
        f"WHERE {where} AND {time_col} >= {{lo:Int64}} AND {time_col} < {{hi:Int64}}"
        f"{_filter_sql(filters, params)} GROUP BY idx, g"
    )


def _family_query(metric: Metric, filters: Filters, group: str, params: dict[str, Any]) -> str:
    if metric.family == Family.SURVEY:
        params["survey"] = metric.id
        where = "type = 'survey_answer' AND survey = {survey:String}"
        return _per_span("events", "occurred_ms", where, _SURVEY_STATS[metric.id], group, filters, params)
    if metric.family == Family.REFERRAL:
        select = "countIf(referral = 1), count()"
        return _per_span("events", "occurred_ms", "type = 'purchase'", select, group, filters, params)
    if metric.family == Family.ACTIVE:
        return _per_span("events", "occurred_ms", "1", "uniqExact(customer_id)", group, filters, params)
    if metric.family == Family.CASES:
        if metric.id == "fcr":
            select = f"countIf(contacts <= 1 AND ifNull(recontact_ms, {_FAR}) >= S[idx].2), count()"
        else:
            select = "groupArray(greatest(0, resolved_ms - first_ms) / 1000.0)"
        return _per_span("cases FINAL", "resolved_ms", "1", select, group, filters, params)
    if metric.family == Family.TRIALS:
        select = "countIf(converted = 1), count()"
        return _per_span("trials FINAL", "outcome_ms", "1", select, group, filters, params)
    return _subscriptions_query(filters, group, params)


def _subscriptions_query(filters: Filters, group: str, params: dict[str, Any]) -> str:
    """Subscribers at each span's start (S, by the dims of their active interval), still active at its end
    (retained) and cancelling inside it (churned)."""
    end = f"least(ifNull(next_start_ms, {_FAR}), ifNull(cancel_ms, {_FAR}))"
    at_start = f"started_ms < S[idx].1 AND S[idx].1 <= {end}"
    at_end = f"started_ms < S[idx].2 AND S[idx].2 <= {end}"
    dims = "1" + _filter_sql(filters, params)
    return (
        f"{_WITH_SPANS}SELECT idx, g, countIf(s0 AND churned), countIf(s0 AND e1), countIf(s0) FROM ("
        f" SELECT customer_id, idx, max({at_start} AND {dims}) AS s0, max({at_end}) AS e1,"
        f" max({at_start} AND {dims} AND ifNull(cancel_ms, {_FAR}) < S[idx].2) AS churned,"
        f" anyIf({group}, {at_start}) AS g"
        " FROM {db:Identifier}.subscriptions FINAL ARRAY JOIN range(1, length(S) + 1) AS idx"
        " WHERE started_ms < {hi:Int64} GROUP BY customer_id, idx"
        ") WHERE s0 GROUP BY idx, g"
    )


def span_stats(
    store: Store,
    metric: Metric,
    spans: Sequence[Span],
    filters: Filters | None = None,
    by: Dimension | None = None,
) -> dict[str, list[Stats]]:
    """Statistics of `metric` for each span, keyed by group value (`NO_GROUP` when `by` is None)."""
    params: dict[str, Any] = {
        "db": store.database,
        "spans": [(s.start_ms, s.end_ms) for s in spans],
        "lo": min(s.start_ms for s in spans),
        "hi": max(s.end_ms for s in spans),
    }
    sql = _family_query(metric, filters or Filters(), by.value if by else "''", params)
    out: dict[str, list[Stats]] = {}
    for idx, g, *values in store.rows(sql, params):
        per_span = out.setdefault(g, [empty_stats(metric)] * len(spans))
        per_span[idx - 1] = tuple(values)
    if by is None and NO_GROUP not in out:
        out[NO_GROUP] = [empty_stats(metric)] * len(spans)
    return out
