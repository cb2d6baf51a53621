"""A cheap "has anything been written?" marker for a store that other processes write to.

`cxpulse api` over a ClickHouse server has no loader to tell it about commits (the workers write
directly), so it polls this marker instead: the highest block number of every table of the database, from
`system.parts`. Every insert takes a new block number and merges keep the highest, so the marker moves with
each write and only then — one small metadata query, however many clients watch.
"""

from __future__ import annotations

from cxpulse.store.base import Store

Marker = tuple[tuple[str, int], ...]


def write_marker(store: Store) -> Marker:
    rows = store.rows(
        "SELECT table, max(max_block_number) FROM system.parts "
        "WHERE database = {db:String} AND active GROUP BY table ORDER BY table",
        {"db": store.database},
    )
    return tuple((str(table), int(block)) for table, block in rows)
