"""Catching the event rollups up (migration 003): batch by batch, by the single writer of a store.

The single writer of a store (the embedded processor) calls `Rollups.catch_up` when it flushes, or a loop
beside ingest does: new customers get their dense numbers, then each rollup table gets
`INSERT … SELECT … GROUP BY GROUPING SETS` of the events of the batches it does not cover yet, every row
stamped with the last batch covered (`upto`). Each insert is one block (one part), so a table covers a
batch entirely or not at all. The watermark a catch-up moves is what readers snapshot
(`snapshot.read_view`); the tables and dimension sets defined here are what `rollup_reads` reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cxpulse.domain.windows import DAY_MS
from cxpulse.store.base import Store
from cxpulse.store.snapshot import writer_progress

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
#: The sets each active table keeps. Five-minute bitmaps by all three dimensions would be nearly one per
#: event (at 10M events 2.2M of the table's 2.5M rows, 4.6 customers each, and most of its writing cost):
#: a reading filtered by two or more dimensions takes its edges from the hour table and raw events instead.
ACTIVE_SETS = {"active_1d": DIM_SETS, "active_1h": DIM_SETS, "active_5m": (0, 4, 2, 1)}
#: A table whose bitmaps a catch-up merges from those it just wrote to a finer table with the same sets:
#: merging costs per bitmap merged, not per member (after a 10M-event import, the day bitmaps took 1.4 s
#: from the hours, 6 s from the events). Only the first catch-up of a process does (a recovery, a bulk
#: import): the small ones of each flush are cheaper from their events (80 against 124 ms, spread days).
MERGED_FROM = {"active_1d": "active_1h"}
#: The mask of the dimensions a row's grouping set holds (ClickHouse's grouping() sets a bit per column
#: *left out*, the first argument highest).
DIMS_OF_ROW = "toUInt8(7 - grouping(touchpoint, channel, segment))"
_SET_COLUMNS = {0: "", 4: ", touchpoint", 2: ", channel", 1: ", segment", 7: ", touchpoint, channel, segment"}


def grouping_sets(keys: str, sets: Sequence[int] = DIM_SETS) -> str:
    """GROUP BY the rollup keys with each of these sets of dimensions."""
    return "GROUPING SETS (" + ", ".join(f"({keys}{_SET_COLUMNS[s]})" for s in sets) + ")"


#: One block per insert (one part): a table covers a batch entirely or not at all.
ONE_BLOCK = "SETTINGS max_insert_threads = 1"
_ACTIVE_COLUMNS = "(dims, bucket, touchpoint, channel, segment, customers, upto)"


def dims_set(mask: int) -> int:
    """The smallest stored dimension set holding the dimensions of `mask`."""
    return next(s for s in DIM_SETS if s & mask == mask)


def active_levels(dims: int) -> list[tuple[int, str]]:
    """(bucket length, table) of the active tables that keep the dimension set `dims`, coarsest first."""
    return [(size, table) for table, size in ACTIVE_TABLES.items() if dims in ACTIVE_SETS[table]]


def dims_mask(names: Iterable[str]) -> int:
    bits = dict(DIM_BITS)
    return sum(bits[n] for n in set(names))


class Rollups:
    """The rollup catch-up of one store object; only its single writer uses it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.database
        self.progress = writer_progress(store)

    def stored(self, batch_seq: int) -> None:
        """Batches up to `batch_seq` are in `events` (readers may read them)."""
        with self.progress.moving:
            self.progress.stored = max(self.progress.stored, batch_seq)

    def watermarks(self) -> dict[str, int]:
        """The last batch each rollup table covers."""
        sql = " UNION ALL ".join(f"SELECT '{t}', max(upto) FROM {self.db}.{t}" for t in ROLLUP_TABLES)
        return {name: int(upto) for name, upto in self.store.rows(sql)}

    def catch_up(self, upto: int) -> None:
        """Roll up the events of batches up to `upto` that the tables do not cover yet (a flush's worth,
        or at recovery a bulk import). Safe beside the writer's inserts (it reads batches ≤ `upto` only)
        and from several threads."""
        self.stored(upto)
        with self.progress.catching:
            self._catch_up(upto)

    def _catch_up(self, upto: int) -> None:
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
                self._roll_active(tables, after, upto, merge=known is None)
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

    def _active_rows(self, table: str, after: int, upto: int) -> str:
        """`(dims, bucket, touchpoint, channel, segment, customers)` of `table` for the events of these
        batches."""
        size = ACTIVE_TABLES[table]
        number = f"joinGet('{self.db}.customer_number_index', 'num', customer_key)"
        return (
            f"SELECT {DIMS_OF_ROW} AS dims, b, touchpoint, channel, segment,"
            " groupBitmapState(num) AS customers"
            f" FROM (SELECT intDiv(occurred_ms, {size}) * {size} AS b, touchpoint, channel, segment,"
            f" {number} AS num FROM {self.db}.events WHERE {self._batches(after, upto)})"
            f" GROUP BY {grouping_sets('b', ACTIVE_SETS[table])}"
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

    def _roll_active(self, tables: Sequence[str], after: int, upto: int, merge: bool) -> None:
        """Each table's bitmaps of these batches, one statement per table: from the events, or — when
        `merge`, for a table rolled up with the finer one it merges from (`MERGED_FROM`) — from that
        table's rows of this catch-up (a row merged since with older ones of its bucket only adds members
        the bucket has)."""
        merged = {t: MERGED_FROM[t] for t in tables if merge and MERGED_FROM.get(t) in tables}
        for table in tables:
            if table not in merged:
                self.store.execute(
                    f"INSERT INTO {self.db}.{table} {_ACTIVE_COLUMNS} SELECT *, toUInt64({int(upto)})"
                    f" FROM ({self._active_rows(table, after, upto)}) {ONE_BLOCK}"
                )
        for table, source in merged.items():
            size = ACTIVE_TABLES[table]
            self.store.execute(
                f"INSERT INTO {self.db}.{table} {_ACTIVE_COLUMNS} SELECT dims,"
                f" intDiv(bucket, {size}) * {size} AS coarse, touchpoint, channel, segment,"
                f" groupBitmapMergeState(customers), toUInt64({int(upto)}) FROM {self.db}.{source}"
                f" WHERE upto = {int(upto)} GROUP BY dims, coarse, touchpoint, channel, segment {ONE_BLOCK}"
            )
