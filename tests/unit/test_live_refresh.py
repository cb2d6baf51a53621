"""`refresh_on_change` (the KPI gauges' cache) and the `InstrumentedStore` seam, with fakes."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from cxpulse.live.feed import ChangeFeed
from cxpulse.live.pacing import Pacer
from cxpulse.live.refresh import refresh_on_change
from cxpulse.store.instrumented import InstrumentedStore


class Calls:
    def __init__(self, fail_first: bool = False) -> None:
        self.at: list[float] = []
        self.threads: set[int] = set()
        self.fail_first = fail_first

    def __call__(self) -> None:
        self.at.append(time.monotonic())
        self.threads.add(threading.get_ident())
        if self.fail_first and len(self.at) == 1:
            raise RuntimeError("store down")


async def _run(feed: ChangeFeed, calls: Calls, seconds: float, **kwargs: float) -> None:
    task = asyncio.create_task(refresh_on_change(feed, calls, **kwargs))
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_refreshes_at_start_then_only_on_change_at_most_once_a_second() -> None:
    feed, calls = ChangeFeed(), Calls()

    async def go() -> None:
        task = asyncio.create_task(refresh_on_change(feed, calls, min_interval_s=1.0, every_s=60))
        await asyncio.sleep(0.5)
        assert len(calls.at) == 1  # at start; nothing changed since
        for _ in range(20):  # a burst of commits
            feed.notify()
        await asyncio.sleep(2.0)
        assert len(calls.at) == 2  # one refresh for the whole burst, a second after the first
        assert calls.at[1] - calls.at[0] >= 1.0
        await asyncio.sleep(1.0)
        assert len(calls.at) == 2  # quiet: no refresh
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
    assert threading.get_ident() not in calls.threads  # never on the event loop's thread


def test_refreshes_on_its_heartbeat_without_changes() -> None:
    feed, calls = ChangeFeed(), Calls()
    asyncio.run(_run(feed, calls, 1.8, min_interval_s=0.1, every_s=0.5))
    assert 3 <= len(calls.at) <= 5  # at 0, 0.5, 1.0, 1.5 s: readings "as of now" move as the window slides


def test_a_failing_refresh_is_retried_at_the_next_change() -> None:
    feed, calls = ChangeFeed(), Calls(fail_first=True)

    async def go() -> None:
        task = asyncio.create_task(refresh_on_change(feed, calls, min_interval_s=0.1, every_s=60))
        await asyncio.sleep(0.3)
        feed.notify()
        await asyncio.sleep(1.0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
    assert len(calls.at) == 2


class FakeStore:
    database = "db"

    def __init__(self) -> None:
        self.inserted: list[tuple[str, int]] = []

    def execute(self, sql: str) -> None:
        pass

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        if "boom" in sql:
            raise RuntimeError("bad query")
        return [[1]]

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        self.inserted.append((table, len(rows)))

    def close(self) -> None:
        pass


def test_the_instrumented_store_reports_inserts_and_queries_and_delegates() -> None:
    inner = FakeStore()
    inserts: list[tuple[str, int, float]] = []
    queries: list[float] = []
    store = InstrumentedStore(
        inner, on_insert=lambda t, rows, s: inserts.append((t, len(rows), s)), on_query=queries.append
    )
    assert store.rows("SELECT 1") == [[1]]
    store.insert("events", [{"a": 1}, {"a": 2}])
    assert inner.inserted == [("events", 2)]
    assert [(t, n) for t, n, _ in inserts] == [("events", 2)] and inserts[0][2] >= 0
    assert len(queries) == 1
    with pytest.raises(RuntimeError):
        store.rows("boom")
    assert len(queries) == 1  # a failed query reports nothing
    store.database = "other"
    assert inner.database == "other" and store.database == "other"


# --- pacing -----------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_pacer_reads_at_most_once_per_interval_while_reads_are_quick() -> None:
    clock = Clock()
    pacer = Pacer(1.0, share=0.25, clock=clock)
    assert pacer.pause() == 0  # the first read starts at once
    pacer.started()
    clock.now += 0.05
    pacer.ended()
    assert pacer.pause() == pytest.approx(0.95)  # the interval, counted from the start of the read
    clock.now += 2
    assert pacer.pause() == 0


def _read(pacer: Pacer, clock: Clock, seconds: float) -> None:
    clock.now += pacer.pause()
    pacer.started()
    clock.now += seconds
    pacer.ended()


def test_the_pacer_keeps_slow_reads_to_a_share_of_a_thread() -> None:
    clock = Clock()
    pacer = Pacer(1.0, share=0.25, clock=clock)
    _read(pacer, clock, 2.0)  # readings slowed down by load
    _read(pacer, clock, 3.0)
    assert pacer.pause() == pytest.approx(6.0)  # busy 2 s (the shorter of the last two) of every 8 s
    with pytest.raises(ValueError):
        Pacer(1.0, share=0)


def test_one_slow_read_does_not_hold_the_next_one_back() -> None:
    clock = Clock()
    pacer = Pacer(1.0, share=0.25, clock=clock)
    _read(pacer, clock, 2.5)  # the cold first read after a start
    assert pacer.pause() == 0  # only the interval, long past
    _read(pacer, clock, 0.1)
    assert pacer.pause() == pytest.approx(0.9)  # quick again: the interval alone
    _read(pacer, clock, 2.5)  # one moment of contention among quick reads
    assert pacer.pause() == pytest.approx(0.3)  # 0.1 × 3 after it ended


def test_slow_refreshes_are_spaced_out_under_a_stream_of_changes() -> None:
    feed = ChangeFeed()
    starts: list[float] = []

    def slow() -> None:
        starts.append(time.monotonic())
        time.sleep(0.3)

    async def go() -> None:
        task = asyncio.create_task(refresh_on_change(feed, slow, min_interval_s=0.1, every_s=60))
        for _ in range(60):  # commits all the time
            feed.notify()
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) >= 3
    # from the second slow read on: the read, then three times its length idle (share 0.25)
    assert min(gaps[1:]) >= 0.3 + 3 * 0.3 - 0.05
