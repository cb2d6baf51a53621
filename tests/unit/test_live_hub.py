"""PulseHub and ChangeFeed: fan-out, throttling, heartbeats, resume and slow clients, with a fake reader."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import pytest

from cxpulse.domain.metrics import Filters
from cxpulse.live.feed import ChangeFeed
from cxpulse.live.hub import PulseHub, View

VIEW = View(("nps",), "24h", Filters())


class FakeReader:
    """`read(view)` returning the current `value`; counts its calls (the store queries)."""

    def __init__(self, value: float | None = 10.0) -> None:
        self.value = value
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, view: View) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
        return {
            "at": time.time(),
            "window": view.window,
            "filters": view.filters.to_dict(),
            "readings": {m: {"value": self.value} for m in view.metrics},
        }


def fields(frame: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in frame.decode().split("\r\n"):
        name, sep, value = line.partition(": ")
        if sep:
            out[name] = value
    return out


async def next_event(stream: AsyncGenerator[bytes, None], timeout: float) -> dict[str, str]:
    """The next frame that is an event (skips the `retry:` hint)."""
    while True:
        frame = fields(await asyncio.wait_for(anext(stream), timeout))
        if "event" in frame:
            return frame


def value_of(frame: dict[str, str]) -> Any:
    return json.loads(frame["data"])["readings"]["nps"]["value"]


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


def test_a_change_reaches_the_subscriber_within_a_second() -> None:
    async def go() -> None:
        reader, feed = FakeReader(), ChangeFeed()
        hub = PulseHub(reader, feed, heartbeat_s=60)
        stream = hub.subscribe(VIEW)
        first = await next_event(stream, 2)
        assert first["event"] == "pulse" and value_of(first) == 10.0
        await asyncio.sleep(1.0)  # past the once-a-second limit of the first read
        reader.value = 42.0
        started = time.monotonic()
        await asyncio.to_thread(feed.notify)  # the processor notifies from its worker thread
        second = await next_event(stream, 1.0)
        assert value_of(second) == 42.0
        assert time.monotonic() - started < 1.0
        assert int(second["id"]) > int(first["id"])
        await stream.aclose()

    run(go)


def test_a_burst_of_changes_costs_at_most_one_read_a_second() -> None:
    async def go() -> None:
        reader, feed = FakeReader(), ChangeFeed()
        hub = PulseHub(reader, feed, heartbeat_s=60)
        stream = hub.subscribe(VIEW)
        await next_event(stream, 2)
        started = time.monotonic()
        for i in range(20):
            reader.value = float(i)
            feed.notify()
            await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
        assert reader.calls <= 1 + elapsed / 1.0 + 1
        await stream.aclose()

    run(go)


def test_no_event_without_a_change() -> None:
    async def go() -> None:
        reader, feed = FakeReader(), ChangeFeed()
        hub = PulseHub(reader, feed, min_interval_s=0.1, heartbeat_s=60)
        stream = hub.subscribe(VIEW)
        await next_event(stream, 2)
        for _ in range(5):  # commits that do not move this view's readings
            feed.notify()
            await asyncio.sleep(0.2)
        assert reader.calls >= 3  # it did look
        with pytest.raises(TimeoutError):
            await next_event(stream, 0.5)
        await stream.aclose()

    run(go)


def test_heartbeats_repeat_the_pulse_when_nothing_changes() -> None:
    async def go() -> None:
        reader, feed = FakeReader(), ChangeFeed()
        hub = PulseHub(reader, feed, min_interval_s=0.1, heartbeat_s=0.5)
        stream = hub.subscribe(VIEW)
        first = await next_event(stream, 2)
        started = time.monotonic()
        beats = [await next_event(stream, 1.5) for _ in range(2)]
        assert [value_of(b) for b in beats] == [10.0, 10.0]
        assert 0.8 <= time.monotonic() - started < 2.0
        assert int(first["id"]) < int(beats[0]["id"]) < int(beats[1]["id"])
        await stream.aclose()

    run(go)


def test_last_event_id_resume_replays_missed_alerts_then_the_current_pulse_at_once() -> None:
    async def go() -> None:
        reader, feed = FakeReader(), ChangeFeed()
        hub = PulseHub(reader, feed, heartbeat_s=60)
        stream = hub.subscribe(VIEW)
        await next_event(stream, 2)
        hub.publish_alert({"rule_id": "r1", "from": "pending", "to": "firing"})
        seen = await next_event(stream, 1)
        assert seen["event"] == "alert"
        await stream.aclose()  # the client goes away …
        assert hub.subscribers == 0
        hub.publish_alert({"rule_id": "r2", "from": "ok", "to": "pending"})  # … and misses this one

        started = time.monotonic()
        resumed = hub.subscribe(VIEW, last_event_id=int(seen["id"]))
        missed = await next_event(resumed, 1)
        assert missed["event"] == "alert" and json.loads(missed["data"])["rule_id"] == "r2"
        current = await next_event(resumed, 1)
        assert current["event"] == "pulse" and value_of(current) == 10.0
        assert time.monotonic() - started < 0.5  # at once: no waiting for a change
        await resumed.aclose()

    run(go)


def test_alerts_reach_every_view_from_any_thread() -> None:
    async def go() -> None:
        hub = PulseHub(FakeReader(), ChangeFeed(), heartbeat_s=60)
        streams = [hub.subscribe(VIEW), hub.subscribe(View(("nps",), "1h", Filters(channel="web")))]
        for s in streams:
            await next_event(s, 2)
        await asyncio.to_thread(hub.publish_alert, {"rule_id": "r1", "to": "firing"})
        for s in streams:
            frame = await next_event(s, 1)
            assert frame["event"] == "alert"
            assert json.loads(frame["data"]) == {"rule_id": "r1", "to": "firing"}
            await s.aclose()

    run(go)


def test_hundred_subscribers_on_one_view_cost_one_read_per_change() -> None:
    async def go() -> None:
        reader, feed = FakeReader(), ChangeFeed()
        hub = PulseHub(reader, feed, min_interval_s=0.2, heartbeat_s=60)
        frames: list[list[bytes]] = [[] for _ in range(100)]

        async def consume(i: int) -> None:
            async for frame in hub.subscribe(VIEW):
                if b"event: pulse" in frame:
                    frames[i].append(frame)

        tasks = [asyncio.create_task(consume(i)) for i in range(100)]

        async def all_have(count: int) -> None:
            while not all(len(f) >= count for f in frames):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(all_have(1), 3)
        assert reader.calls == 1
        for change in range(1, 4):
            await asyncio.sleep(0.25)
            reader.value = 10.0 + change
            feed.notify()
            await asyncio.wait_for(all_have(1 + change), 3)
            assert reader.calls == 1 + change
        # encoded once: every subscriber holds the very same bytes object
        assert all(f[-1] is frames[0][-1] for f in frames)
        assert hub.subscribers == 100
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert hub.subscribers == 0

    run(go)


def test_a_slow_subscriber_is_dropped_and_the_others_go_on() -> None:
    async def go() -> None:
        reader, feed = FakeReader(), ChangeFeed()
        hub = PulseHub(reader, feed, min_interval_s=0.05, heartbeat_s=60, queue_size=3)
        slow, fast = hub.subscribe(VIEW), hub.subscribe(VIEW)
        await next_event(slow, 2)  # then it stops reading
        await next_event(fast, 2)
        for change in range(1, 7):
            reader.value = float(change)
            feed.notify()
            frame = await next_event(fast, 2)
            assert value_of(frame) == float(change)
        assert hub.dropped == 1
        assert hub.subscribers == 1
        with pytest.raises(StopAsyncIteration):  # its queue was emptied and closed, not kept
            await anext(slow)
        await fast.aclose()

    run(go)


def test_a_failing_read_is_retried_on_the_next_change() -> None:
    async def go() -> None:
        reader, feed = FakeReader(), ChangeFeed()
        failures = [RuntimeError("store down")]

        def flaky(view: View) -> dict[str, Any]:
            if failures:
                raise failures.pop()
            return reader(view)

        hub = PulseHub(flaky, feed, min_interval_s=0.05, heartbeat_s=60)
        got: list[dict[str, str]] = []

        async def consume() -> None:
            async for frame in hub.subscribe(VIEW):
                got.append(fields(frame))

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        assert [f for f in got if "event" in f] == []  # the first read failed: nothing to say
        feed.notify()
        await asyncio.sleep(0.3)
        assert [value_of(f) for f in got if "event" in f] == [10.0]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(go)


def test_feed_wait_returns_on_notify_from_another_thread_or_on_timeout() -> None:
    async def go() -> None:
        feed = ChangeFeed()
        assert await feed.wait(0, 0.05) == 0
        threading.Timer(0.1, feed.notify).start()
        started = time.monotonic()
        assert await feed.wait(0, 5) == 1
        assert time.monotonic() - started < 1
        assert await feed.wait(0, 5) == 1  # already past: no waiting

    run(go)
