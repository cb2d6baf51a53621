"""The embedded store: the ClickHouse engine in-process (chDB), persisted under a data directory.

Only one process can open a chDB data directory. Within it, several sessions on the directory run
concurrently: one for writes (statements and inserts, serialized by a lock) and a pool of `read_sessions`
for reads (`rows`, `array_rows`; each query takes a free one) — so a reading never waits behind an insert,
a flush or a rollup catch-up, and the metric families of one reading run side by side on both cores.
"""

from __future__ import annotations

import fcntl
import queue
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chdb import session as chdb_session
from clickhouse_connect.driver.binding import bind_query

from cxpulse.store.base import StoreError, compact_rows, parse_arrow_rows, parse_compact_rows

#: Read sessions per store: a reading's family queries spend much of their time in per-query work that one
#: core does (planning, index analysis), so two at once use both cores (at 10M events a 30-day pulse of all
#: metrics: 325 ms one after another, 225 ms two at a time; three or six sessions gained nothing more).
READ_SESSIONS = 2


class ChdbStore:
    def __init__(
        self,
        data_dir: str | Path,
        database: str = "cxpulse",
        *,
        fsync: bool = False,
        read_sessions: int = READ_SESSIONS,
    ) -> None:
        path = Path(data_dir).resolve() / "chdb"
        path.mkdir(parents=True, exist_ok=True)
        self._readers: queue.LifoQueue[chdb_session.Session] = queue.LifoQueue()
        try:
            self._session = chdb_session.Session(str(path))
            for _ in range(max(1, read_sessions)):
                self._readers.put(chdb_session.Session(str(path)))
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
        self._read_sessions = self._readers.qsize()
        self._lock = threading.Lock()
        self._closed = False

    def execute(self, sql: str) -> None:
        self._query(sql, "CSV", None)

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return parse_compact_rows(self._read(sql, "JSONCompactEachRow", params))

    def array_rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return parse_arrow_rows(self._read(sql, "ArrowStream", params))

    def _read(self, sql: str, fmt: str, params: Mapping[str, Any] | None) -> bytes:
        session = self._free_reader()
        try:
            result = session.query(sql, fmt, params=_text_params(sql, params))
        except Exception as exc:
            raise StoreError(str(exc)) from exc
        finally:
            self._readers.put(session)
        data: bytes = result.bytes()
        return data

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        columns, block = compact_rows(rows)
        target = f"{self.database}.{table} ({', '.join(columns)})"
        sql = f"INSERT INTO {target}{self._insert_settings} FORMAT JSONCompactEachRow\n"
        self._query(sql + block.decode(), "CSV", None)

    def _free_reader(self) -> chdb_session.Session:
        """A free read session, waiting while all are busy; a closed store raises (as a closed session
        does) instead of making its reader wait for ever."""
        while not self._closed:
            try:
                return self._readers.get(timeout=0.1)
            except queue.Empty:
                continue
        raise StoreError("the store is closed")

    def close(self) -> None:
        with self._lock:
            if self._closed:  # a store wrapped twice is closed by each wrapper
                return
            self._closed = True
            for _ in range(self._read_sessions):  # each once it is free
                self._readers.get().close()
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
