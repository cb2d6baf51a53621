"""The embedded store: the ClickHouse engine in-process (chDB), persisted under a data directory.

Only one process can open a chDB data directory. Within it, two sessions on the directory run
concurrently: one for writes (statements and inserts) and one for reads (`rows`), each serialized by its
own lock — so a reading never waits behind an insert, a flush or a rollup catch-up, and both cores work.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chdb import session as chdb_session
from clickhouse_connect.driver.binding import bind_query

from cxpulse.store.base import StoreError, compact_rows, parse_arrow_rows, parse_compact_rows


class ChdbStore:
    def __init__(self, data_dir: str | Path, database: str = "cxpulse", *, fsync: bool = False) -> None:
        path = Path(data_dir).resolve() / "chdb"
        path.mkdir(parents=True, exist_ok=True)
        try:
            self._session = chdb_session.Session(str(path))
            self._read_session = chdb_session.Session(str(path))
        except Exception as exc:  # chDB raises plain RuntimeError, e.g. "Cannot lock file .../status"
            owner = _owner(path)
            if owner is not None:
                raise StoreError(
                    f"the chDB store at {path} is in use by another process ({owner}): only one process "
                    "can own a chDB data directory — stop it, use another --data-dir, or share a ClickHouse "
                    "server (CXPULSE_CLICKHOUSE_URL) between processes"
                ) from exc
            raise StoreError(f"cannot open the chDB store at {path}: {exc}") from exc
        self.database = database
        self._insert_settings = " SETTINGS fsync_after_insert = 1" if fsync else ""
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()

    def execute(self, sql: str) -> None:
        self._query(sql, "CSV", None)

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return parse_compact_rows(self._read(sql, "JSONCompactEachRow", params))

    def array_rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return parse_arrow_rows(self._read(sql, "ArrowStream", params))

    def _read(self, sql: str, fmt: str, params: Mapping[str, Any] | None) -> bytes:
        with self._read_lock:
            try:
                result = self._read_session.query(sql, fmt, params=_text_params(sql, params))
            except Exception as exc:
                raise StoreError(str(exc)) from exc
        data: bytes = result.bytes()
        return data

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        columns, block = compact_rows(rows)
        target = f"{self.database}.{table} ({', '.join(columns)})"
        sql = f"INSERT INTO {target}{self._insert_settings} FORMAT JSONCompactEachRow\n"
        self._query(sql + block.decode(), "CSV", None)

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._read_session.close()
            self._session.close()

    def _query(self, sql: str, fmt: str, params: Mapping[str, Any] | None) -> bytes:
        with self._lock:
            try:
                result = self._session.query(sql, fmt, params=_text_params(sql, params))
            except Exception as exc:
                raise StoreError(str(exc)) from exc
        data: bytes = result.bytes()
        return data


def _owner(path: Path) -> str | None:
    """Who holds the engine's lock on `path` (its `status` file, flock'ed by the owner), or None if free."""
    status = path / "status"
    try:
        with status.open("rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                first = f.read(200).decode(errors="replace").splitlines()
                return first[0].strip() if first else "unknown process"
            fcntl.flock(f, fcntl.LOCK_UN)
    except OSError:
        return None
    return None


def _text_params(sql: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """chDB takes parameters as text: format them exactly as clickhouse-connect does for a server."""
    if not params:
        return {}
    _, bound = bind_query(sql, dict(params))
    return {name.removeprefix("param_"): value for name, value in bound.items()}
