"""`Store.array_rows` on the real engine: the same rows as `rows`, numeric arrays as numpy arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cxpulse.store.chdb_store import ChdbStore


@pytest.fixture
def store(chdb_dir: Path) -> ChdbStore:
    return ChdbStore(chdb_dir)


def plain(rows: list[list[Any]]) -> list[list[Any]]:
    return [[v.tolist() if isinstance(v, np.ndarray) else v for v in row] for row in rows]


def test_scalars_strings_nulls_and_arrays_read_as_rows_does(store: ChdbStore) -> None:
    sql = (
        "SELECT number AS n, toInt64(number) - 2 AS i, toString(number) AS s, toLowCardinality('x') AS lc,"
        " if(number = 1, NULL, number * 1.5) AS maybe, arrayMap(x -> x / 4, range(number)) AS floats,"
        " range(number) AS ints, arrayMap(x -> toString(x), range(number)) AS strings"
        " FROM numbers({count:UInt64}) ORDER BY n"
    )
    fast, json = store.array_rows(sql, {"count": 4}), store.rows(sql, {"count": 4})
    assert plain(fast) == json
    assert json[3][5:] == [[0.0, 0.25, 0.5], [0, 1, 2], ["0", "1", "2"]]  # the query is not trivial
    floats, ints, strings = fast[3][5:]
    assert floats.dtype == np.float64 and ints.dtype == np.uint64 and isinstance(strings, list)
    assert fast[0][5].size == 0 and fast[1][3] == "x" and fast[1][4] is None


def test_a_result_of_many_blocks_and_large_arrays(store: ChdbStore) -> None:
    sql = (
        "SELECT number % 3 AS k, arraySort(groupArray(number / 7)) AS sample FROM"
        " (SELECT number FROM numbers(300000)) GROUP BY k ORDER BY k SETTINGS max_block_size = 1000"
    )
    fast = store.array_rows(sql)
    assert [row[0] for row in fast] == [0, 1, 2]
    for k, sample in fast:
        assert np.array_equal(sample, np.arange(k, 300000, 3) / 7)
    many = store.array_rows("SELECT number, [number] FROM numbers(50000) SETTINGS max_block_size = 999")
    assert len(many) == 50000 and all(int(a[0]) == n for n, a in many[::997])


def test_no_rows(store: ChdbStore) -> None:
    assert store.array_rows("SELECT number, [1.5] FROM numbers(0)") == []
