"""The KPI SQL over rollups: the same statistics as `kpi_queries`' raw SQL, read from days, not events.

Each event family's query is one `UNION ALL` of rows, then one `GROUP BY` that computes the registry's
(weighted) statistics, at the snapshot of a `View` (rollups cover batches ≤ watermark, events exist up to
the last stored batch):

- rollup rows of the whole buckets inside each span (`pieces.split`), weighted by their count, from the
  smallest set of dimensions that holds the reading's filters and breakdown;
- raw events of the partial edges (at most five minutes at each end for active customers, a day otherwise)
  — weight 1;
- only when a rollup lags (batches stored but not rolled up): the events of those batches that fall in its
  buckets, so a lagging rollup, or a late event not yet rolled up, never changes a reading.

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
from cxpulse.domain.windows import Grid, Span
from cxpulse.store.base import Store
from cxpulse.store.pieces import Range, padded, split, where_ranges
from cxpulse.store.rollups import COUNTS_TABLES, active_levels, dims_mask, dims_set
from cxpulse.store.snapshot import View

#: Grids with more spans than this are read raw (each rollup row is matched against every span).
MAX_SPANS = 64

#: The rollup tables the counts families read, coarsest first (the active family's depend on the dimension
#: set a reading needs: `rollups.active_levels`).
COUNTS_LEVELS = tuple((size, table) for table, size in COUNTS_TABLES.items())

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

    def index(self, column: str, per_span: Sequence[Sequence[Range]], grid: Grid | None) -> tuple[str, str]:
        """How a row finds its span(s): `(select expression, array join)`. In a tumbling grid each row of
        a span's ranges is in that span alone, found by arithmetic; otherwise `arrayFilter` lists the
        spans whose `per_span` ranges hold `column`'s value."""
        if grid is not None and grid.length_ms == grid.step_ms:
            origin = grid.first_end_ms - grid.step_ms
            return f"intDiv({column} - {origin}, {grid.step_ms}) AS idx", ""
        width = max(1, max(len(r) for r in per_span))
        rows = padded(per_span, width)
        arrays = []
        for j in range(width):
            arrays.append(self.bind([r[j][0] for r in rows], "Array(Int64)"))
            arrays.append(self.bind([r[j][1] for r in rows], "Array(Int64)"))
        args = ", ".join(f"a{j}, b{j}" for j in range(width))
        cond = " OR ".join(f"({column} >= a{j} AND {column} < b{j})" for j in range(width))
        n = self.bind(len(per_span), "UInt32")
        return (
            "idx",
            f" ARRAY JOIN arrayFilter((i, {args}) -> {cond}, range({n}), {', '.join(arrays)}) AS idx",
        )


def _where(column: str, ranges: Sequence[Range]) -> str:
    """A WHERE condition holding `column` to the union of `ranges` (integers, inlined)."""
    parts = [f"({column} >= {lo} AND {column} < {hi})" for lo, hi in where_ranges(ranges)]
    return "(" + " OR ".join(parts) + ")" if parts else "0"


def _all(per_span: Sequence[Sequence[Range]]) -> list[Range]:
    return [r for ranges in per_span for r in ranges]


def _dims(filters: Filters, by: Dimension | None) -> int:
    """The smallest stored dimension set a reading can use."""
    return dims_set(dims_mask([name for name, _ in filters.items()] + ([by.value] if by else [])))


def counts_stats(
    store: Store,
    view: View,
    metrics: Sequence[Metric],
    spans: Sequence[Span],
    filters: Filters,
    by: Dimension | None,
    grid: Grid | None = None,
) -> list[list[Any]]:
    """Rows `(idx, g, *statistics)` of survey or purchase metrics (one family) for each span (`grid`, when
    the spans are one, lets rows find theirs by arithmetic)."""
    q = _Query(store)
    family = metrics[0].family
    where = f"type = {q.bind(_EVENT_TYPE[family], 'String')}"
    if len(metrics) == 1 and family == Family.SURVEY:
        where += f" AND {metrics[0].condition}"  # one survey: narrow the scan by the sort key
    where += q.filters(filters)
    group = by.value if by else "''"
    pieces = split(spans, [size for size, _ in COUNTS_LEVELS])
    columns = f"{group} AS g, survey, scale, referral"

    def raw(per_span: Sequence[Sequence[Range]], batches: str) -> str:
        idx, join = q.index("occurred_ms", per_span, grid)
        return (
            f"SELECT {idx}, {columns}, ifNull(score, 0) AS score, toUInt64(1) AS w FROM {q.db}.events{join} "
            f"WHERE {where} AND {batches} AND {_where('occurred_ms', _all(per_span))}"
        )

    branches = []
    for (_, table), per_span in zip(COUNTS_LEVELS, pieces.levels, strict=True):
        if not _all(per_span):
            continue
        idx, join = q.index("bucket", per_span, grid)
        branches.append(
            f"SELECT {idx}, {columns}, score, n AS w FROM {q.db}.{table}{join} "
            f"WHERE {where} AND dims = {_dims(filters, by)} AND {_where('bucket', _all(per_span))}"
        )
        if view.watermark < view.stored:  # batches stored but not rolled up yet
            branches.append(raw(per_span, f"batch_seq > {view.watermark} AND batch_seq <= {view.stored}"))
    if _all(pieces.raw):
        branches.append(raw(pieces.raw, f"batch_seq <= {view.stored}"))
    if not branches:
        return []
    stats = ", ".join(e.replace("{c}", m.condition) for m in metrics for e in m.statistics)
    sql = f"SELECT idx, g, {stats} FROM ({' UNION ALL '.join(branches)}) GROUP BY idx, g"
    return store.rows(sql, q.params)


def active_stats(
    store: Store,
    view: View,
    spans: Sequence[Span],
    filters: Filters,
    by: Dimension | None,
    grid: Grid | None = None,
) -> list[list[Any]]:
    """Rows `(idx, g, distinct customers)` for each span with any activity."""
    q = _Query(store)
    dims = q.filters(filters)
    group = by.value if by else "''"
    dims_rows = _dims(filters, by)
    levels = active_levels(dims_rows)
    pieces = split(spans, [size for size, _ in levels])

    def raw(per_span: Sequence[Sequence[Range]], batches: str) -> str:
        idx, join = q.index("occurred_ms", per_span, grid)
        return (
            f"SELECT {idx}, {group} AS g, customer_key FROM {q.db}.events{join} "
            f"WHERE {batches} AND {_where('occurred_ms', _all(per_span))}{dims}"
        )

    branches = []
    unrolled = []
    for (_, table), per_span in zip(levels, pieces.levels, strict=True):
        if not _all(per_span):
            continue
        idx, join = q.index("bucket", per_span, grid)
        branches.append(
            f"SELECT {idx}, {group} AS g, customers, toUInt64(0) AS extra FROM {q.db}.{table}{join} "
            f"WHERE dims = {dims_rows} AND {_where('bucket', _all(per_span))}{dims}"
        )
        if view.watermark < view.stored:  # batches stored but not rolled up yet
            unrolled.append(raw(per_span, f"batch_seq > {view.watermark} AND batch_seq <= {view.stored}"))
    if _all(pieces.raw):
        unrolled.append(raw(pieces.raw, f"batch_seq <= {view.stored}"))
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
