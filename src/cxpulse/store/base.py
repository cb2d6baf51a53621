"""The store contract: run ClickHouse SQL, read rows, insert JSON rows. Backends own only transport."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson

DDL_PATH = Path(__file__).resolve().parents[3] / "schemas" / "clickhouse" / "tables.sql"


class StoreError(RuntimeError):
    """A store operation failed (the engine's message is kept)."""


class Store(Protocol):
    database: str

    def execute(self, sql: str) -> None:
        """Run a statement that returns nothing (DDL, SET)."""

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        """Run a query with `{name:Type}` parameters and return its rows as lists."""

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows (dicts keyed by column) into `database.table` in one block; durable on return."""

    def close(self) -> None:
        """Release the engine / connection."""


def ddl_statements(database: str) -> list[str]:
    """The schema's statements with the database name filled in."""
    path = DDL_PATH
    if not path.exists():  # installed from a wheel
        path = Path(__file__).resolve().parents[1] / "schemas" / "clickhouse" / "tables.sql"
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("--"))
    return [s.strip().replace("{db}", database) for s in text.split(";\n") if s.strip().strip(";")]


def migrate(store: Store) -> None:
    """Create the database and tables if missing (idempotent)."""
    for statement in ddl_statements(store.database):
        store.execute(statement.rstrip(";"))


def json_each_row(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Rows as a JSONEachRow block, the insert format both backends share."""
    return b"\n".join(orjson.dumps(r) for r in rows)


def parse_compact_rows(data: bytes) -> list[list[Any]]:
    """Decode a JSONCompactEachRow result."""
    return [orjson.loads(line) for line in data.splitlines() if line]
