"""Keeping the rollups (migration 003): event rollups caught up by batch, signed fact rows, the read view.

The single writer of a store (the embedded processor) calls `Rollups.catch_up` when it flushes: new
customers get their dense numbers, then each rollup table gets `INSERT … SELECT … GROUP BY GROUPING SETS`
of the events of the batches it does not cover yet, every row stamped with the last batch covered
(`upto`). Each insert is one block (one part), so a table covers a batch entirely or not at all.

The writer keeps, per store object and in memory, the batch every rollup table covers (the watermark) and
the last batch stored. Readers in the same process (`read_view`) read rollups only while the writer knows
both, and take a consistent snapshot: rollup rows up to the watermark, plus events of batches up to the
last stored one from `events` — the partial edges of each span, and whatever a lagging rollup does not
cover yet. A reader-writer lock keeps a catch-up (several tables) from happening in the middle of a query.
Any other reader — another process, a store that distributed writers fill (`mark_distributed`: rows
neither numbered nor rolled up) — reads the raw SQL, as before.

Facts are written as signed rows: when a fact changes, its previous row is written again with sign −1
next to the new one (+1), in one insert. The writer knows the previous row (its keyed state remembers what
it last flushed); after a crash, `net_facts` tells what the table holds for the customers being replayed.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cxpulse.domain.state import CASES, TRIALS, FactRow
from cxpulse.domain.windows import DAY_MS
from cxpulse.store.base import Store
from cxpulse.store.instrumented import InstrumentedStore

HOUR_MS = 3_600_000
FIVE_MINUTES_MS = 300_000
#: Each rollup table with the length of its buckets. Active customers per day, hour and five minutes
#: (distinct customers of a raw edge cost a number lookup per event); counts per day only (their raw edge is
#: a cheap sum, and five-minute counts by every dimension and score cost more to write than they save).
COUNTS_TABLES = {"event_counts_1d": DAY_MS}
ACTIVE_TABLES = {"active_1d": DAY_MS, "active_1h": HOUR_MS, "active_5m": FIVE_MINUTES_MS}
ROLLUP_TABLES = (*COUNTS_TABLES, *ACTIVE_TABLES)
#: The dimension sets rollups keep (`dims` masks: touchpoint 4, channel 2, segment 1), as GROUPING SETS.
DIM_BITS = (("touchpoint", 4), ("channel", 2), ("segment", 1))
DIM_SETS = (0, 4, 2, 1, 7)
#: The mask of the dimensions a row's grouping set holds (ClickHouse's grouping() sets a bit per column
#: *left out*, the first argument highest).
DIMS_OF_ROW = "toUInt8(7 - grouping(touchpoint, channel, segment))"


def grouping_sets(keys: str) -> str:
    """GROUP BY the rollup keys with each stored set of dimensions."""
    sets = ("", ", touchpoint", ", channel", ", segment", ", touchpoint, channel, segment")
    return "GROUPING SETS (" + ", ".join(f"({keys}{dims})" for dims in sets) + ")"


#: One block per insert (one part): a table covers a batch entirely or not at all.
ONE_BLOCK = "SETTINGS max_insert_threads = 1"

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
}  # fmt: skip

#: "No end" / "no cancel" in a subscriber row's intervals.
FAR = 9_223_372_036_854_775_807
#: A subscriber row: {"customer_id", and per interval, sorted by start: "started", "ends", …}.
Subscriber = dict[str, Any]
SUBSCRIBER_ARRAYS = ("started", "ends", "cancels", "touchpoints", "channels", "segments", "start_ids")


def content(table: str, row: FactRow) -> FactRow:
    """The part of a fact row that the signed table holds (no version)."""
    return {c: row[c] for c in SIGNED_FACTS[table][1]}


def subscriber(customer_id: str, intervals: Iterable[FactRow]) -> Subscriber | None:
    """A customer's subscriber row from its subscription interval facts (None without any)."""
    rows = sorted(
        (
            f["started_ms"],
            min(_far(f["next_start_ms"]), _far(f["cancel_ms"])),
            _far(f["cancel_ms"]),
            f["touchpoint"],
            f["channel"],
            f["segment"],
            f["start_id"],
        )
        for f in intervals
    )
    if not rows:
        return None
    columns = zip(*sorted(rows, key=lambda r: (r[0], r[6])), strict=True)
    return {
        "customer_id": customer_id,
        **{name: list(c) for name, c in zip(SUBSCRIBER_ARRAYS, columns, strict=True)},
    }


def _far(ms: int | None) -> int:
    return FAR if ms is None else ms


def dims_set(mask: int) -> int:
    """The smallest stored dimension set holding the dimensions of `mask`."""
    return next(s for s in DIM_SETS if s & mask == mask)


def dims_mask(names: Iterable[str]) -> int:
    bits = dict(DIM_BITS)
    return sum(bits[n] for n in set(names))


class ReadWriteLock:
    """Many readers or one writer (readers wait for a writer that is waiting, so it cannot starve)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._waiting_writers = 0

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


@dataclass
class _Progress:
    """What this process's writer of one store object knows."""

    lock: ReadWriteLock = field(default_factory=ReadWriteLock)
    #: The batch every rollup table covers; None when unknown or when the tables are out of step.
    watermark: int | None = None
    #: The last batch stored in `events`.
    stored: int = 0
    #: Rows nobody rolls up are stored (a distributed writer): readers use the raw SQL.
    distributed: bool = False
    #: One catch-up at a time (a background loop, a recovery), and `stored` only ever moves forward.
    catching: threading.Lock = field(default_factory=threading.Lock)
    moving: threading.Lock = field(default_factory=threading.Lock)


_progress: weakref.WeakKeyDictionary[Any, _Progress] = weakref.WeakKeyDictionary()
_progress_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class View:
    """A reader's snapshot: rollups cover batches ≤ `watermark`; events up to `stored` exist."""

    watermark: int
    stored: int


@contextlib.contextmanager
def read_view(store: Store) -> Iterator[View | None]:
    """The snapshot to read rollups at, held steady for the block; None: read the raw SQL."""
    with _progress_lock:
        progress = _progress.get(_identity(store))
    if progress is None or progress.watermark is None or progress.distributed:
        yield None
        return
    with progress.lock.reading():
        watermark = progress.watermark
        yield None if watermark is None else View(watermark, max(progress.stored, watermark))


def rollups_readable(store: Store) -> bool:
    """Whether readings of this store object come from the rollups now."""
    with read_view(store) as view:
        return view is not None


def _identity(store: Store) -> Any:
    """The store object the progress is kept for: instrumentation wrappers share their inner store's."""
    while isinstance(store, InstrumentedStore):
        store = store.inner
    return store


def mark_distributed(store: Store) -> None:
    """Record that rows not numbered nor rolled up are stored: from now on readers use the raw SQL."""
    store.insert("rollup_state", [{"name": "distributed", "value": 1}])
    with _progress_lock:
        progress = _progress.get(_identity(store))
    if progress is not None:
        progress.distributed = True


class RawSQL:
    """The same store, read with the raw SQL: the reference of tests and the baseline of benchmarks."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.database = store.database
        with _progress_lock:  # this object reads raw; another wrapping the same store can stay on rollups
            _progress[self] = _Progress(distributed=True)

    def execute(self, sql: str) -> None:
        self.store.execute(sql)

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return self.store.rows(sql, params)

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        self.store.insert(table, rows)

    def close(self) -> None:
        """The wrapped store stays open."""


class Rollups:
    """The rollup writes of one store object; only its single writer uses it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.database
        with _progress_lock:
            self.progress = _progress.setdefault(_identity(store), _Progress())

    def stored(self, batch_seq: int) -> None:
        """Batches up to `batch_seq` are in `events` (readers may read them)."""
        with self.progress.moving:
            self.progress.stored = max(self.progress.stored, batch_seq)

    # -- event rollups ------------------------------------------------------------------------------------
    def watermarks(self) -> dict[str, int]:
        """The last batch each rollup table covers."""
        sql = " UNION ALL ".join(f"SELECT '{t}', max(upto) FROM {self.db}.{t}" for t in ROLLUP_TABLES)
        return {name: int(upto) for name, upto in self.store.rows(sql)}

    def catch_up(self, upto: int, *, small: bool = True) -> None:
        """Roll up the events of batches up to `upto` that the tables do not cover yet. `small` (a flush's
        worth of batches) rolls each table straight from the events; otherwise (recovery, a bulk import)
        bitmaps are built once per hour and merged into the coarser sets, which costs far less then.
        Safe beside the writer's inserts (it reads batches ≤ `upto` only) and from several threads."""
        self.stored(upto)
        with self.progress.catching:
            self._catch_up(upto, small)

    def _catch_up(self, upto: int, small: bool) -> None:
        self._check_mode()
        known = self.progress.watermark
        if known is not None and known >= upto:
            return
        with self.progress.lock.writing():
            self.progress.watermark = None  # out of step until every table is done
            marks = dict.fromkeys(ROLLUP_TABLES, known) if known is not None else self.watermarks()
            behind = {t: w for t, w in marks.items() if w < upto}
            active = {t: w for t, w in behind.items() if t in ACTIVE_TABLES}
            if active:
                self._number_customers(min(active.values()), upto)
            for table in COUNTS_TABLES:
                if table in behind:
                    self._roll_counts(table, behind[table], upto)
            for after in sorted(set(active.values())):
                tables = [t for t, w in active.items() if w == after]
                if small:
                    self._roll_active_directly(tables, after, upto)
                else:
                    self._roll_active(tables, after, upto)
            self.progress.watermark = max(upto, *marks.values())

    def _check_mode(self) -> None:
        """Look at the store's distributed flag (a writer in another process sharing a ClickHouse server
        may set it) at every catch-up, by the writer: readings never pay for the look."""
        if self.progress.distributed:
            return
        rows = self.store.rows(
            "SELECT max(value) FROM {db:Identifier}.rollup_state WHERE name = 'distributed'", {"db": self.db}
        )
        self.progress.distributed = bool(rows and rows[0][0])

    def _roll_active_directly(self, tables: Sequence[str], after: int, upto: int) -> None:
        """Each table's bitmaps straight from the events of these batches (one statement per table)."""
        number = f"joinGet('{self.db}.customer_number_index', 'num', customer_key)"
        for table in tables:
            size = ACTIVE_TABLES[table]
            self.store.execute(
                f"INSERT INTO {self.db}.{table} (dims, bucket, touchpoint, channel, segment, customers, upto)"
                f" SELECT {DIMS_OF_ROW}, b, touchpoint, channel, segment, groupBitmapState(num),"
                f" toUInt64({int(upto)}) FROM (SELECT intDiv(occurred_ms, {size}) * {size} AS b, touchpoint,"
                f" channel, segment, {number} AS num FROM {self.db}.events"
                f" WHERE {self._batches(after, upto)})"
                f" GROUP BY {grouping_sets('b')} {ONE_BLOCK}"
            )

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

    def _roll_counts(self, table: str, after: int, upto: int) -> None:
        size = COUNTS_TABLES[table]
        self.store.execute(
            f"INSERT INTO {self.db}.{table} (type, survey, dims, bucket, touchpoint, channel, segment,"
            " scale, score, referral, n, upto)"
            f" SELECT type, survey, {DIMS_OF_ROW}, b, touchpoint, channel, segment, scale, score, referral,"
            f" count(), toUInt64({int(upto)}) FROM ("
            f"  SELECT intDiv(occurred_ms, {size}) * {size} AS b, type, survey, touchpoint, channel,"
            "  segment, scale, ifNull(score, 0) AS score, referral FROM "
            f"  {self.db}.events WHERE type IN ('survey_answer', 'purchase') AND {self._batches(after, upto)}"
            f") GROUP BY {grouping_sets('type, survey, scale, score, referral, b')} {ONE_BLOCK}"
        )

    def _roll_active(self, tables: Sequence[str], after: int, upto: int) -> None:
        """Bitmaps per bucket of the finest of `tables` and (touchpoint, channel, segment) from the events
        once; every coarser set and bucket merged from the smallest finer one (merging costs per bitmap
        merged, not per member)."""
        finest, singles, scratch = (f"{self.db}.active_scratch{i}" for i in range(3))
        number = f"joinGet('{self.db}.customer_number_index', 'num', customer_key)"
        size = min(ACTIVE_TABLES[t] for t in tables)
        for table in (finest, singles, scratch):
            self.store.execute(f"DROP TABLE IF EXISTS {table}")
        try:
            self.store.execute(
                f"CREATE TABLE {finest} ENGINE = Memory AS SELECT toUInt8(7) AS dims,"
                f" intDiv(occurred_ms, {size}) * {size} AS b, touchpoint, channel, segment,"
                f" groupBitmapState({number}) AS customers FROM {self.db}.events"
                f" WHERE {self._batches(after, upto)} GROUP BY b, touchpoint, channel, segment"
            )
            sets = []
            for name, bit in DIM_BITS:
                kept = ", ".join(d if d == name else f"'' AS {d}" for d, _ in DIM_BITS)
                sets.append(
                    f"SELECT toUInt8({bit}) AS dims, b, {kept},"
                    " groupBitmapMergeState(customers) AS customers"
                    f" FROM {finest} GROUP BY b, {name}"
                )
            self.store.execute(f"CREATE TABLE {singles} ENGINE = Memory AS {' UNION ALL '.join(sets)}")
            self.store.execute(
                f"CREATE TABLE {scratch} ENGINE = Memory AS SELECT * FROM {finest}"
                f" UNION ALL SELECT * FROM {singles}"
                f" UNION ALL SELECT toUInt8(0), b, '' AS touchpoint, '' AS channel, '' AS segment,"
                f" groupBitmapMergeState(customers) AS customers FROM {singles}"
                " WHERE dims = 2 GROUP BY b"
            )
            columns = "(dims, bucket, touchpoint, channel, segment, customers, upto)"
            for table in tables:
                bucket = ACTIVE_TABLES[table]
                if bucket == size:
                    self.store.execute(
                        f"INSERT INTO {self.db}.{table} {columns} SELECT dims, b, touchpoint, channel,"
                        f" segment, customers, toUInt64({int(upto)}) FROM {scratch} {ONE_BLOCK}"
                    )
                else:
                    self.store.execute(
                        f"INSERT INTO {self.db}.{table} {columns} SELECT dims,"
                        f" intDiv(b, {bucket}) * {bucket} AS coarse, touchpoint, channel, segment,"
                        f" groupBitmapMergeState(customers), toUInt64({int(upto)})"
                        f" FROM {scratch} GROUP BY dims, coarse, touchpoint, channel, segment {ONE_BLOCK}"
                    )
        finally:
            for table in (finest, singles, scratch):
                self.store.execute(f"DROP TABLE IF EXISTS {table}")

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

    def write_subscribers(self, changes: Iterable[tuple[Subscriber | None, Subscriber | None]]) -> None:
        """Per customer `(previous row, new row)`: −1 for the previous, +1 for the new, in one insert."""
        rows = [{**row, "sign": sign} for old, new in changes for row, sign in ((old, -1), (new, 1)) if row]
        self.store.insert("subscriber_facts", rows)

    def net_subscribers(self, customer_ids: Sequence[str]) -> list[tuple[Subscriber, int]]:
        """What subscriber_facts holds for these customers: (row, net sign ≠ 0)."""
        if not customer_ids:
            return []
        columns = ", ".join(SUBSCRIBER_ARRAYS)
        rows = self.store.rows(
            f"SELECT customer_id, {columns}, sum(sign) AS s FROM {{db:Identifier}}.subscriber_facts "
            f"WHERE customer_id IN {{ids:Array(String)}} GROUP BY customer_id, {columns} HAVING s != 0",
            {"db": self.db, "ids": list(customer_ids)},
        )
        return [
            ({"customer_id": r[0], **dict(zip(SUBSCRIBER_ARRAYS, r[1:-1], strict=True))}, int(r[-1]))
            for r in rows
        ]

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
