"""The KPI SQL over rollups: the same statistics as `kpi_queries`' raw SQL, read from days, not events.

Each event family's query is one `UNION ALL` of three kinds of rows, then one `GROUP BY` that computes the
registry's (weighted) statistics:

- rollup rows of the whole buckets inside each span (`pieces.split`), weighted by their count;
- raw events of the partial edges (at most an hour for active customers, a day otherwise) — weight 1;
- raw events of batches a rollup table does not cover yet (`batch_seq` above its `max(upto)`) that fall in
  its buckets, so a lagging rollup, or a late event not yet rolled up, never changes a reading.

Active customers are roaring bitmaps of dense customer numbers; raw rows find their number with
`joinGet` on the in-memory index, and a customer not numbered yet (only possible in batches not rolled up)
is counted apart by its key — it cannot be in any bitmap. Fact families read a time slice of the signed
fact tables (`w` = sign) with the raw query shapes of `kpi_queries`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from cxpulse.domain.metrics import Dimension, Family, Filters, Metric
from cxpulse.domain.windows import DAY_MS, Grid, Span
from cxpulse.store.base import Store
from cxpulse.store.pieces import Range, padded, split, where_ranges

HOUR_MS = 3_600_000
#: Grids with more spans than this are read raw (each rollup row is matched against every span).
MAX_SPANS = 64

COUNTS_LEVELS = ((DAY_MS, "event_counts_1d"),)
ACTIVE_LEVELS = ((DAY_MS, "active_1d"), (HOUR_MS, "active_1h"))
ACTIVE_DIM_LEVELS = ((DAY_MS, "active_dims_1d"), (HOUR_MS, "active_dims_1h"))

_EVENT_TYPE = {Family.SURVEY: "survey_answer", Family.REFERRAL: "purchase"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def grid_spans(grid: Grid) -> list[Span]:
    """The spans of a grid, in index order."""
    return [Span.ending_at(grid.first_end_ms + i * grid.step_ms, grid.length_ms) for i in range(grid.count)]


class _Query:
    """Bound parameters of one query, named as they are added."""

    def __init__(self, store: Store) -> None:
        if not _IDENTIFIER.match(store.database):
            raise ValueError(f"not a database name: {store.database!r}")
        self.db = store.database
        self.params: dict[str, Any] = {}

    def bind(self, value: Any, type_: str) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{type_}}}"

    def filters(self, filters: Filters) -> str:
        return "".join(f" AND {name} = {self.bind(value, 'String')}" for name, value in filters.items())

    def span_filter(self, column: str, per_span: Sequence[Sequence[Range]], extra: str = "") -> str:
        """`arrayFilter` over span indices: the spans whose `per_span` ranges hold `column`'s value."""
        width = max(1, max(len(r) for r in per_span))
        rows = padded(per_span, width)
        arrays = []
        for j in range(width):
            arrays.append(self.bind([r[j][0] for r in rows], "Array(Int64)"))
            arrays.append(self.bind([r[j][1] for r in rows], "Array(Int64)"))
        args = ", ".join(f"a{j}, b{j}" for j in range(width))
        cond = " OR ".join(f"({column} >= a{j} AND {column} < b{j})" for j in range(width))
        if extra:
            cond = f"({cond}) AND {extra}"
        n = self.bind(len(per_span), "UInt32")
        return f"arrayFilter((i, {args}) -> {cond}, range({n}), {', '.join(arrays)})"


def _where(column: str, ranges: Sequence[Range]) -> str:
    """A WHERE condition holding `column` to the union of `ranges` (integers, inlined)."""
    parts = [f"({column} >= {lo} AND {column} < {hi})" for lo, hi in where_ranges(ranges)]
    return "(" + " OR ".join(parts) + ")" if parts else "0"


def _all(per_span: Sequence[Sequence[Range]]) -> list[Range]:
    return [r for ranges in per_span for r in ranges]


def _watermark(q: _Query, table: str) -> str:
    """The last batch the rollup table covers, read in the same statement as its rows."""
    return f"(SELECT max(upto) FROM {q.db}.{table})"


def counts_stats(
    store: Store, metrics: Sequence[Metric], spans: Sequence[Span], filters: Filters, by: Dimension | None
) -> list[list[Any]]:
    """Rows `(idx, g, *statistics)` of survey or purchase metrics (one family) for each span."""
    q = _Query(store)
    family = metrics[0].family
    where = f"type = {q.bind(_EVENT_TYPE[family], 'String')}"
    if len(metrics) == 1 and family == Family.SURVEY:
        where += f" AND {metrics[0].condition}"  # one survey: narrow the scan by the sort key
    where += q.filters(filters)
    group = by.value if by else "''"
    pieces = split(spans, [size for size, _ in COUNTS_LEVELS])
    columns = "survey, scale, referral"
    branches = []
    for (_, table), per_span in zip(COUNTS_LEVELS, pieces.levels, strict=True):
        if not _all(per_span):
            continue
        branches.append(
            f"SELECT idx, {group} AS g, {columns}, score, n AS w FROM {q.db}.{table} "
            f"ARRAY JOIN {q.span_filter('bucket', per_span)} AS idx "
            f"WHERE {where} AND {_where('bucket', _all(per_span))}"
        )
        mark = _watermark(q, table)
        branches.append(
            f"SELECT idx, {group} AS g, {columns}, ifNull(score, 0) AS score, toUInt64(1) AS w "
            f"FROM {q.db}.events ARRAY JOIN {q.span_filter('occurred_ms', per_span)} AS idx "
            f"WHERE {where} AND batch_seq > {mark} AND {_where('occurred_ms', _all(per_span))}"
        )
    if _all(pieces.raw):
        branches.append(
            f"SELECT idx, {group} AS g, {columns}, ifNull(score, 0) AS score, toUInt64(1) AS w "
            f"FROM {q.db}.events ARRAY JOIN {q.span_filter('occurred_ms', pieces.raw)} AS idx "
            f"WHERE {where} AND {_where('occurred_ms', _all(pieces.raw))}"
        )
    if not branches:
        return []
    stats = ", ".join(e.replace("{c}", m.condition) for m in metrics for e in m.statistics)
    sql = f"SELECT idx, g, {stats} FROM ({' UNION ALL '.join(branches)}) GROUP BY idx, g"
    return store.rows(sql, q.params)


def active_stats(
    store: Store, spans: Sequence[Span], filters: Filters, by: Dimension | None
) -> list[list[Any]]:
    """Rows `(idx, g, distinct customers)` for each span with any activity."""
    q = _Query(store)
    dims = q.filters(filters)
    levels = ACTIVE_DIM_LEVELS if (dims or by) else ACTIVE_LEVELS
    group = by.value if by else "''"
    pieces = split(spans, [size for size, _ in levels])
    branches = []
    unrolled = []
    for (_, table), per_span in zip(levels, pieces.levels, strict=True):
        if not _all(per_span):
            continue
        branches.append(
            f"SELECT idx, {group} AS g, customers, toUInt64(0) AS extra FROM {q.db}.{table} "
            f"ARRAY JOIN {q.span_filter('bucket', per_span)} AS idx "
            f"WHERE {_where('bucket', _all(per_span))}{dims}"
        )
        mark = _watermark(q, table)
        unrolled.append(
            f"SELECT idx, {group} AS g, customer_key FROM {q.db}.events "
            f"ARRAY JOIN {q.span_filter('occurred_ms', per_span)} AS idx "
            f"WHERE batch_seq > {mark} AND {_where('occurred_ms', _all(per_span))}{dims}"
        )
    if _all(pieces.raw):
        unrolled.append(
            f"SELECT idx, {group} AS g, customer_key FROM {q.db}.events "
            f"ARRAY JOIN {q.span_filter('occurred_ms', pieces.raw)} AS idx "
            f"WHERE {_where('occurred_ms', _all(pieces.raw))}{dims}"
        )
    if unrolled:
        number = f"joinGet('{q.db}.customer_number_index', 'num', customer_key)"
        branches.append(
            "SELECT idx, g, groupBitmapStateIf(num, num > 0) AS customers, "
            "uniqExactIf(customer_key, num = 0) AS extra "
            f"FROM (SELECT idx, g, customer_key, {number} AS num FROM ({' UNION ALL '.join(unrolled)})) "
            "GROUP BY idx, g"
        )
    if not branches:
        return []
    sql = (
        f"SELECT idx, g, groupBitmapMerge(customers) + max(extra) FROM ({' UNION ALL '.join(branches)}) "
        "GROUP BY idx, g"
    )
    return store.rows(sql, q.params)
