"""The read snapshot of a store's rollups: what its single writer knows, and how readers take it.

The writer of a store object (`rollups.Rollups`) keeps, per store object and in memory, the batch every
rollup table covers (the watermark) and the last batch stored. Readers in the same process (`read_view`)
read rollups only while the writer knows both, and take a consistent snapshot: rollup rows up to the
watermark, plus events of batches up to the last stored one from `events` — the partial edges of each span,
and whatever a lagging rollup does not cover yet. A reader-writer lock keeps a catch-up (several tables)
from happening in the middle of a query. Any other reader — another process, a store that distributed
writers fill (`mark_distributed`: rows neither numbered nor rolled up) — reads the raw SQL, as before.

Apart from the writes so that readers (`kpi_queries`) and the distributed path depend on this
coordination only, not on the SQL that keeps the rollups.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cxpulse.store.base import Store
from cxpulse.store.instrumented import InstrumentedStore


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
class Progress:
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
    #: The batch the outcome snapshot (`answer_outcomes`) is built up to; None: none readable yet.
    outcomes: int | None = None
    #: Held by outcome readers; the writer switches `outcomes` (then drops the old rows) holding it.
    outcomes_lock: ReadWriteLock = field(default_factory=ReadWriteLock)


_progress: weakref.WeakKeyDictionary[Any, Progress] = weakref.WeakKeyDictionary()
_progress_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class View:
    """A reader's snapshot: rollups cover batches ≤ `watermark`; events up to `stored` exist."""

    watermark: int
    stored: int


@contextlib.contextmanager
def read_view(store: Store) -> Iterator[View | None]:
    """The snapshot to read rollups at, held steady for the block; None: read the raw SQL."""
    with _view(store, lambda p: p.watermark, lambda p: p.lock) as view:
        yield view


@contextlib.contextmanager
def outcome_view(store: Store) -> Iterator[View | None]:
    """The outcome snapshot to read, held steady for the block (`watermark`: the batch it is built up to);
    None: read the raw SQL."""
    with _view(store, lambda p: p.outcomes, lambda p: p.outcomes_lock) as view:
        yield view


@contextlib.contextmanager
def _view(
    store: Store, covered: Callable[[Progress], int | None], lock: Callable[[Progress], ReadWriteLock]
) -> Iterator[View | None]:
    """What the writer's tables cover (`covered`), read under their `lock`; None when nothing is."""
    with _progress_lock:
        progress = _progress.get(_identity(store))
    if progress is None or covered(progress) is None or progress.distributed:
        yield None
        return
    with lock(progress).reading():
        upto = covered(progress)
        yield None if upto is None else View(upto, max(progress.stored, upto))


def rollups_readable(store: Store) -> bool:
    """Whether readings of this store object come from the rollups now."""
    with read_view(store) as view:
        return view is not None


def outcomes_readable(store: Store) -> bool:
    """Whether outcome readings of this store object can read the outcome snapshot now."""
    with outcome_view(store) as view:
        return view is not None


def writer_progress(store: Store) -> Progress:
    """The progress of this store object's writer, kept from its first use on (readers see it from then)."""
    with _progress_lock:
        return _progress.setdefault(_identity(store), Progress())


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
            _progress[self] = Progress(distributed=True)

    def execute(self, sql: str) -> None:
        self.store.execute(sql)

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return self.store.rows(sql, params)

    def array_rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return self.store.array_rows(sql, params)

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        self.store.insert(table, rows)

    def close(self) -> None:
        """The wrapped store stays open."""
