"""Versioned schema changes: numbered SQL files under `schemas/clickhouse/migrations/`, each applied once.

`NNN_name.sql` files run in number order; each applied version is recorded in `{db}.schema_migrations`, so
opening a store applies only what it has not seen. Statements use `CREATE … IF NOT EXISTS` where they can,
so a migration interrupted half-way is safe to run again.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from cxpulse.schema_files import schema_file
from cxpulse.store.base import Store

_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path

    def statements(self, database: str) -> list[str]:
        """The file's statements with the database name filled in (comment lines dropped)."""
        lines = self.path.read_text().splitlines()
        text = "\n".join(line for line in lines if not line.lstrip().startswith("--"))
        return [
            s.strip().rstrip(";").replace("{db}", database) for s in text.split(";\n") if s.strip().strip(";")
        ]


def migrations(directory: Path | None = None) -> list[Migration]:
    """Every migration file, in version order; a misnamed file or a repeated number is an error."""
    found: dict[int, Migration] = {}
    for path in sorted((directory or schema_file("clickhouse", "migrations")).glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} is not named NNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise ValueError(
                f"two migrations numbered {version:03d}: {found[version].path.name}, {path.name}"
            )
        found[version] = Migration(version, match.group(2), path)
    return [found[v] for v in sorted(found)]


def applied_versions(store: Store) -> set[int]:
    rows = store.rows("SELECT version FROM {db:Identifier}.schema_migrations", {"db": store.database})
    return {int(r[0]) for r in rows}


def apply_migrations(store: Store, directory: Path | None = None) -> list[int]:
    """Apply the migrations the store has not recorded yet; returns the versions applied now."""
    db = store.database
    store.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    store.execute(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
        "(version UInt32, name String, applied_ms Int64) ENGINE = MergeTree ORDER BY version"
    )
    done = applied_versions(store)
    applied = []
    for migration in migrations(directory):
        if migration.version in done:
            continue
        for statement in migration.statements(db):
            store.execute(statement)
        store.insert(
            "schema_migrations",
            [{"version": migration.version, "name": migration.name, "applied_ms": int(time.time() * 1000)}],
        )
        applied.append(migration.version)
    return applied
