"""The migration runner: numbered SQL files applied once each, in order, recorded in the store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cxpulse.store.chdb_store import ChdbStore
from cxpulse.store.migrations import applied_versions, apply_migrations, migrations


@pytest.fixture
def store(chdb_dir: Path) -> Iterator[ChdbStore]:
    s = ChdbStore(chdb_dir, database=f"m_{uuid.uuid4().hex[:12]}")
    yield s
    s.execute(f"DROP DATABASE IF EXISTS {s.database} SYNC")


def write(directory: Path, name: str, sql: str) -> None:
    (directory / name).write_text(sql)


def test_the_shipped_migrations_apply_once_and_are_recorded(store: ChdbStore) -> None:
    shipped = [m.version for m in migrations()]
    assert shipped[:2] == [1, 2] and shipped == sorted(shipped)
    assert apply_migrations(store) == shipped
    assert applied_versions(store) == set(shipped)
    assert apply_migrations(store) == []  # reopening applies nothing
    tables = {r[0] for r in store.rows("SHOW TABLES FROM {db:Identifier}", {"db": store.database})}
    assert {"events", "cases", "trials", "subscriptions", "customer_state", "alert_rules"} <= tables


def test_a_new_file_applies_only_itself(store: ChdbStore, tmp_path: Path) -> None:
    write(tmp_path, "001_first.sql", "CREATE TABLE IF NOT EXISTS {db}.a (x UInt8) ENGINE = Memory;\n")
    assert apply_migrations(store, tmp_path) == [1]
    write(
        tmp_path,
        "002_second.sql",
        "-- a comment line\nCREATE TABLE {db}.b (x UInt8) ENGINE = Memory;\nINSERT INTO {db}.b VALUES (7);\n",
    )
    assert apply_migrations(store, tmp_path) == [
        2
    ]  # 001 is not run again (002's CREATE has no IF NOT EXISTS)
    assert store.rows("SELECT x FROM {db:Identifier}.b", {"db": store.database}) == [[7]]
    assert apply_migrations(store, tmp_path) == []


@pytest.mark.parametrize(
    ("names", "message"),
    [(["1_bad.sql"], "NNN_name.sql"), (["001_a.sql", "001_b.sql"], "two migrations numbered 001")],
)
def test_misnamed_or_repeated_files_are_refused(tmp_path: Path, names: list[str], message: str) -> None:
    for name in names:
        write(tmp_path, name, "SELECT 1;\n")
    with pytest.raises(ValueError, match=message):
        migrations(tmp_path)
