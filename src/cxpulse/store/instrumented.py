"""A `Store` that reports its inserts and queries to callbacks: the seam where service metrics measure the
store without the store knowing about metrics (the callbacks are plain functions; `services/` wires them
to Prometheus instruments)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cxpulse.store.base import Store

#: `on_insert(table, rows, seconds)`: called after each insert returned (durable), with its duration.
OnInsert = Callable[[str, Sequence[Mapping[str, Any]], float], None]
#: `on_query(seconds)`: called after each `rows()` or `array_rows()` query returned.
OnQuery = Callable[[float], None]


class InstrumentedStore:
    """Delegates to `inner`; times `insert` and `rows`. A failed call reports nothing (it raised)."""

    def __init__(self, inner: Store, *, on_insert: OnInsert | None = None, on_query: OnQuery | None = None):
        self.inner = inner
        self.on_insert = on_insert
        self.on_query = on_query

    @property
    def database(self) -> str:
        return self.inner.database

    @database.setter
    def database(self, value: str) -> None:
        self.inner.database = value

    def execute(self, sql: str) -> None:
        self.inner.execute(sql)

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return self._timed(self.inner.rows, sql, params)

    def array_rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return self._timed(self.inner.array_rows, sql, params)

    def _timed(
        self,
        read: Callable[[str, Mapping[str, Any] | None], list[list[Any]]],
        sql: str,
        params: Mapping[str, Any] | None,
    ) -> list[list[Any]]:
        started = time.perf_counter()
        result = read(sql, params)
        if self.on_query is not None:
            self.on_query(time.perf_counter() - started)
        return result

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        started = time.perf_counter()
        self.inner.insert(table, rows)
        if self.on_insert is not None:
            self.on_insert(table, rows, time.perf_counter() - started)

    def close(self) -> None:
        self.inner.close()
