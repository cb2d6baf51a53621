"""Keeping the rollups (migration 003): event rollups caught up by batch, signed fact rows, the read mode.

The single writer of a store (the embedded processor) calls `Rollups.catch_up` when it flushes: new
customers get their dense numbers, then each rollup table gets `INSERT … SELECT … GROUP BY` of the events
of the batches it does not cover yet, every row stamped with the last batch covered (`upto`). Each insert
is one block, so a table covers a batch entirely or not at all; a crash between tables only leaves a table
further behind, and readings take what a table does not cover from `events` (`rollup_reads`).

Facts are written as signed rows: when a fact changes, its previous row is written again with sign −1
next to the new one (+1), in one insert. The writer knows the previous row (its keyed state remembers what
it last flushed); after a crash, `net_facts` tells what the table holds for the customers being replayed.

Readers use the rollups unless a distributed writer has stored rows (`mark_distributed`): those rows are
neither numbered nor rolled up, so such stores are read with the raw SQL, as before.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from cxpulse.domain.state import CASES, SUBSCRIPTIONS, TRIALS, FactRow
from cxpulse.domain.windows import DAY_MS
from cxpulse.store.base import Store, StoreError

HOUR_MS = 3_600_000
COUNTS_TABLE = "event_counts_1d"
ACTIVE_TABLES = ("active_dims_1h", "active_dims_1d", "active_1h", "active_1d")

#: fact table → (signed table, its content columns): the signed row of a fact is its content + sign.
SIGNED_FACTS: dict[str, tuple[str, tuple[str, ...]]] = {
    CASES: (
        "case_facts",
        (
            "resolved_ms", "customer_id", "case_id", "first_ms", "contacts", "recontact_ms",
            "touchpoint", "channel", "segment",
        ),
    ),
    TRIALS: (
        "trial_facts",
        (
            "outcome_ms", "customer_id", "trial_id", "started_ms", "converted",
            "touchpoint", "channel", "segment",
        ),
    ),
    SUBSCRIPTIONS: (
        "subscription_facts",
        (
            "started_ms", "customer_id", "start_id", "next_start_ms", "cancel_ms",
            "touchpoint", "channel", "segment",
        ),
    ),
}  # fmt: skip

#: How long a reader trusts its last look at the store's flags (a distributed writer in another process).
MODE_TTL_S = 1.0


def content(table: str, row: FactRow) -> FactRow:
    """The part of a fact row that the signed table holds (no version)."""
    return {c: row[c] for c in SIGNED_FACTS[table][1]}


class Rollups:
    """The rollup writes of one store; only its single writer uses it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.database

    # -- event rollups ------------------------------------------------------------------------------------
    def watermarks(self) -> dict[str, int]:
        """The last batch each rollup table covers."""
        tables = (COUNTS_TABLE, *ACTIVE_TABLES)
        sql = " UNION ALL ".join(f"SELECT '{t}', max(upto) FROM {self.db}.{t}" for t in tables)
        return {name: int(upto) for name, upto in self.store.rows(sql)}

    def catch_up(self, upto: int) -> None:
        """Roll up the events of batches up to `upto` that the tables do not cover yet."""
        marks = self.watermarks()
        behind = {t: w for t, w in marks.items() if w < upto}
        if not behind:
            return
        active = {t: w for t, w in behind.items() if t in ACTIVE_TABLES}
        if active:
            self._number_customers(min(active.values()), upto)
        if COUNTS_TABLE in behind:
            self._roll_counts(behind[COUNTS_TABLE], upto)
        for after in sorted(set(active.values())):
            self._roll_active([t for t, w in active.items() if w == after], after, upto)

    def _batches(self, after: int, upto: int) -> str:
        return f"batch_seq > {int(after)} AND batch_seq <= {int(upto)}"

    def _number_customers(self, after: int, upto: int) -> None:
        """Give every customer of these batches without a number the next free ones."""
        self.store.execute(
            f"INSERT INTO {self.db}.customer_numbers (customer_key, num) "
            f"SELECT customer_key, toUInt32(base + row_number() OVER (ORDER BY customer_key)) FROM ("
            f" SELECT DISTINCT customer_key FROM {self.db}.events WHERE {self._batches(after, upto)}"
            f" AND joinGet('{self.db}.customer_number_index', 'num', customer_key) = 0"
            f") AS fresh CROSS JOIN (SELECT max(num) AS base FROM {self.db}.customer_numbers) AS taken"
        )

    def _roll_counts(self, after: int, upto: int) -> None:
        self.store.execute(
            f"INSERT INTO {self.db}.{COUNTS_TABLE} SELECT intDiv(occurred_ms, {DAY_MS}) * {DAY_MS} AS bucket,"
            " type, survey, touchpoint, channel, segment, scale, ifNull(score, 0) AS score, referral,"
            f" count() AS n, toUInt64({int(upto)}) AS upto FROM {self.db}.events"
            f" WHERE type IN ('survey_answer', 'purchase') AND {self._batches(after, upto)}"
            " GROUP BY bucket, type, survey, touchpoint, channel, segment, scale, score, referral"
        )

    def _roll_active(self, tables: Sequence[str], after: int, upto: int) -> None:
        """Hourly bitmaps per dimensions from the events once, then every requested table from those."""
        scratch = f"{self.db}.active_scratch"
        self.store.execute(f"DROP TABLE IF EXISTS {scratch}")
        self.store.execute(
            f"CREATE TABLE {scratch} ENGINE = Memory AS SELECT intDiv(occurred_ms, {HOUR_MS}) * {HOUR_MS}"
            " AS bucket, touchpoint, channel, segment,"
            f" groupBitmapState(joinGet('{self.db}.customer_number_index', 'num', customer_key)) AS customers"
            f" FROM {self.db}.events WHERE {self._batches(after, upto)}"
            " GROUP BY bucket, touchpoint, channel, segment"
        )
        try:
            for table in tables:
                day = "_1d" in table
                bucket = f"intDiv(bucket, {DAY_MS}) * {DAY_MS}" if day else "bucket"
                dims = ", touchpoint, channel, segment" if "dims" in table else ""
                self.store.execute(
                    f"INSERT INTO {self.db}.{table} SELECT {bucket} AS b{dims},"
                    f" groupBitmapMergeState(customers), toUInt64({int(upto)}) FROM {scratch}"
                    f" GROUP BY b{dims}"
                )
        finally:
            self.store.execute(f"DROP TABLE IF EXISTS {scratch}")

    # -- signed facts -------------------------------------------------------------------------------------
    def write_facts(self, changes: Iterable[tuple[str, FactRow | None, FactRow | None]]) -> None:
        """Per `(fact table, previous content, new content)`: −1 for the previous, +1 for the new."""
        rows: dict[str, list[dict[str, Any]]] = {}
        for table, old, new in changes:
            out = rows.setdefault(table, [])
            if old is not None:
                out.append({**old, "sign": -1})
            if new is not None:
                out.append({**new, "sign": 1})
        for table, signed in rows.items():
            self.store.insert(SIGNED_FACTS[table][0], signed)

    def net_facts(self, customer_ids: Sequence[str]) -> list[tuple[str, FactRow, int]]:
        """What the signed tables hold for these customers: (fact table, content, net sign ≠ 0)."""
        if not customer_ids:
            return []
        out: list[tuple[str, FactRow, int]] = []
        for table, (signed, columns) in SIGNED_FACTS.items():
            cols = ", ".join(columns)
            rows = self.store.rows(
                f"SELECT {cols}, sum(sign) AS s FROM {{db:Identifier}}.{signed} "
                f"WHERE customer_id IN {{ids:Array(String)}} GROUP BY {cols} HAVING s != 0",
                {"db": self.db, "ids": list(customer_ids)},
            )
            out += [(table, dict(zip(columns, r[:-1], strict=True)), int(r[-1])) for r in rows]
        return out


# -- the read mode ------------------------------------------------------------------------------------------
_modes: weakref.WeakKeyDictionary[Any, tuple[bool, float]] = weakref.WeakKeyDictionary()
_modes_lock = threading.Lock()


def rollups_readable(store: Store) -> bool:
    """Whether readings may come from the rollups: not once a distributed writer stored rows."""
    now = time.monotonic()
    with _modes_lock:
        known = _modes.get(store)
    if known is not None and (not known[0] or now - known[1] < MODE_TTL_S):
        return known[0]  # "no" is final: a store that had distributed writes keeps them
    try:
        rows = store.rows(
            "SELECT max(value) FROM {db:Identifier}.rollup_state WHERE name = 'distributed'",
            {"db": store.database},
        )
        readable = not (rows and rows[0][0])
    except StoreError:  # not migrated (yet): the raw SQL reads it
        return False
    with _modes_lock:
        _modes[store] = (readable, now)
    return readable


def mark_distributed(store: Store) -> None:
    """Record that rows not numbered nor rolled up are stored: from now on readers use the raw SQL."""
    store.insert("rollup_state", [{"name": "distributed", "value": 1}])
    with _modes_lock:
        _modes[store] = (False, time.monotonic())


def read_raw(store: Store) -> None:
    """Read this store object with the raw SQL from now on (the reference path: tests, benchmarks).

    Pass a separate object wrapping the same store to keep another reader on the rollups."""
    with _modes_lock:
        _modes[store] = (False, time.monotonic())
