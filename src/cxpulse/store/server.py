"""A ClickHouse server store over HTTP (clickhouse-connect), running the same SQL as the embedded one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError

from cxpulse.store.base import StoreError, compact_rows, parse_arrow_rows, parse_compact_rows


class ServerStore:
    def __init__(self, url: str, database: str = "cxpulse") -> None:
        try:
            # No session: readings send their family queries concurrently, and a server refuses a second
            # query in a session that is busy.
            self._client = clickhouse_connect.get_client(
                dsn=url, database="default", autogenerate_session_id=False
            )
        except ClickHouseError as exc:
            raise StoreError(f"cannot connect to ClickHouse at {url}: {exc}") from exc
        self.database = database

    def execute(self, sql: str) -> None:
        try:
            self._client.command(sql)
        except ClickHouseError as exc:
            raise StoreError(str(exc)) from exc

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return parse_compact_rows(self._read(sql, "JSONCompactEachRow", params))

    def array_rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return parse_arrow_rows(self._read(sql, "ArrowStream", params))

    def _read(self, sql: str, fmt: str, params: Mapping[str, Any] | None) -> bytes:
        try:
            data: bytes = self._client.raw_query(sql, parameters=dict(params or {}), fmt=fmt)
        except ClickHouseError as exc:
            raise StoreError(str(exc)) from exc
        return data

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        try:
            columns, block = compact_rows(rows)
            self._client.raw_insert(
                f"{self.database}.{table}", column_names=columns, insert_block=block, fmt="JSONCompactEachRow"
            )
        except ClickHouseError as exc:
            raise StoreError(str(exc)) from exc

    def close(self) -> None:
        self._client.close()
