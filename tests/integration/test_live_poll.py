"""`cxpulse api` over a store other processes write to: the write marker moves with every insert (never with
a merge) and `poll_changes` turns that into change-feed notifications — on real chDB."""

from __future__ import annotations

import asyncio
import time
from functools import partial

from cxpulse.live.feed import ChangeFeed
from cxpulse.live.poll import poll_changes
from cxpulse.pipeline.output import Output, StoreWriter
from cxpulse.store.changes import write_marker
from services.embedded import EmbeddedRuntime
from tests.conftest import event, validated

MINUTE = 60_000


def _output(event_id: str) -> Output:
    now = int(time.time() * 1000)
    (ev,) = validated([event(event_id, "login", now - MINUTE, "c1")], now)
    return Output(events=[{**ev.to_row(), "received_ms": now, "batch_seq": 0}])


def test_the_marker_moves_with_writes_not_merges(runtime: EmbeddedRuntime) -> None:
    store = runtime.store
    before = write_marker(store)
    assert write_marker(store) == before
    StoreWriter(store).write([_output("e1")])
    after = write_marker(store)
    assert after != before
    store.execute(f"OPTIMIZE TABLE {store.database}.events FINAL")
    assert write_marker(store) == after


def test_polling_notifies_the_feed_once_per_write(runtime: EmbeddedRuntime) -> None:
    feed = ChangeFeed()
    writer = StoreWriter(runtime.store)

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(
            poll_changes(partial(write_marker, runtime.store), feed, stop, every_s=0.1)
        )
        await asyncio.sleep(0.5)
        assert feed.version == 0  # nothing written: nothing to say
        await asyncio.to_thread(writer.write, [_output("e2")])
        version = await feed.wait(0, 3.0)
        assert version == 1
        await asyncio.sleep(0.5)
        assert feed.version == 1
        stop.set()
        await asyncio.wait_for(task, 2)

    asyncio.run(go())
