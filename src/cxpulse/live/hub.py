"""Fan-out of live pulse readings to Server-Sent Events subscribers.

The store is read once per change per distinct view, however many clients watch it: one task per view
waits on the `ChangeFeed`, reads (at most once per `min_interval_s`), and — only when the readings changed,
or as a heartbeat — encodes one SSE frame whose bytes go into every subscriber's bounded queue. A client
that falls `queue_size` frames behind is dropped (its browser reconnects) rather than buffered without
bound. Frames carry a rising id; a ring buffer of recent frames lets a reconnecting client (Last-Event-ID)
get the alerts it missed and the current pulse at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sse_starlette import ServerSentEvent

from cxpulse.domain.metrics import Filters
from cxpulse.live.feed import ChangeFeed
from cxpulse.live.pacing import Pacer

log = logging.getLogger("cxpulse.live")

#: Line separator of every frame (sse-starlette's default, so pings and frames match).
SEP = "\r\n"
#: How long a disconnected browser waits before reconnecting (the SSE `retry:` field).
RETRY_MS = 2_000


@dataclass(frozen=True, slots=True)
class View:
    """What a subscriber watches: the `/v1/pulse` parameters other than `at` (always now)."""

    metrics: tuple[str, ...]
    window: str
    filters: Filters = field(default_factory=Filters)


Reader = Callable[[View], dict[str, Any]]


def encode(event: str, event_id: int, body: dict[str, Any]) -> bytes:
    """One SSE frame, built once and shared by every subscriber (sse-starlette passes bytes through)."""
    data = orjson.dumps(body).decode()
    return ServerSentEvent(data, event=event, id=str(event_id), sep=SEP).encode()


class _Subscriber:
    """A bounded queue of frames; `None` tells the consumer it was dropped."""

    __slots__ = ("dropped", "queue")

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(size + 1)  # +1: room for the drop mark
        self.dropped = False

    def offer(self, frame: bytes, limit: int) -> bool:
        """Queue `frame`; False (and marked dropped) when the consumer is `limit` frames behind."""
        if self.queue.qsize() >= limit:
            self.drop()
            return False
        self.queue.put_nowait(frame)
        return True

    def drop(self) -> None:
        if self.dropped:
            return
        self.dropped = True
        while not self.queue.empty():  # it will never read them: free them now
            self.queue.get_nowait()
        self.queue.put_nowait(None)


@dataclass(eq=False)
class _ViewState:
    subscribers: set[_Subscriber] = field(default_factory=set)
    readings: Any = None
    frame: bytes | None = None
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True, slots=True)
class _Recent:
    id: int
    view: View | None  # None: an alert, for every view
    frame: bytes


class PulseHub:
    """Live readings for SSE subscribers. `read(view)` is the (blocking) `/v1/pulse` body for `view` as of
    now; it runs in a worker thread. Use it from one event loop."""

    def __init__(
        self,
        read: Reader,
        feed: ChangeFeed,
        *,
        min_interval_s: float = 1.0,
        heartbeat_s: float = 15.0,
        queue_size: int = 16,
        recent: int = 256,
    ) -> None:
        self.read = read
        self.feed = feed
        self.min_interval_s = min_interval_s
        self.heartbeat_s = heartbeat_s
        self.queue_size = queue_size
        self._views: dict[View, _ViewState] = {}
        self._recent: deque[_Recent] = deque(maxlen=recent)
        # Ids rise across restarts too (a start-time base), so an id from before a restart reads as old.
        self._next_id = time.time_ns() // 1_000_000
        self._loop: asyncio.AbstractEventLoop | None = None
        self.reads = 0
        self.dropped = 0

    @property
    def subscribers(self) -> int:
        return sum(len(state.subscribers) for state in self._views.values())

    async def subscribe(self, view: View, last_event_id: int | None = None) -> AsyncGenerator[bytes, None]:
        """The frames for one client until it leaves or is dropped: first a `retry:` hint, then — on a
        resume — the alerts it missed, then the current pulse as soon as there is one, then changes."""
        self._loop = asyncio.get_running_loop()
        sub = _Subscriber(self.queue_size)
        state = self._views.get(view)
        if state is None:
            state = self._views[view] = _ViewState()
        state.subscribers.add(sub)
        if last_event_id is not None:
            for item in self._recent:
                if item.id > last_event_id and item.view is None:
                    sub.offer(item.frame, self.queue_size)
        if state.frame is not None:
            sub.offer(state.frame, self.queue_size)
        if state.task is None:
            # a fresh context: the view outlives the request that opened it (and its log request id)
            state.task = asyncio.create_task(
                self._run(view, state), name=f"pulse-view {view}", context=contextvars.Context()
            )
        try:
            yield ServerSentEvent(retry=RETRY_MS, sep=SEP).encode()
            while (frame := await sub.queue.get()) is not None:
                yield frame
        finally:
            self._leave(view, state, sub)

    def publish_alert(self, transition: dict[str, Any]) -> None:
        """Send `event: alert` with `transition` to every subscriber. Safe to call from any thread."""
        loop = self._loop
        if loop is not None and not _running_on(loop):
            loop.call_soon_threadsafe(self._publish_alert, transition)
        else:
            self._publish_alert(transition)

    def _publish_alert(self, transition: dict[str, Any]) -> None:
        frame = self._remember(None, "alert", transition)
        for state in list(self._views.values()):
            self._fan_out(state, frame)

    async def _run(self, view: View, state: _ViewState) -> None:
        """Read `view` now, then after every change (at most once per `min_interval_s`, less often when
        reads get slow: `Pacer`) and at least every `heartbeat_s`; push when the readings changed or a
        heartbeat is due."""
        seen = -1
        last_push = float("-inf")
        pacer = Pacer(self.min_interval_s)
        while state.subscribers:
            now = time.monotonic()
            heartbeat_due = last_push + self.heartbeat_s
            if seen >= 0:
                version = await self.feed.wait(seen, max(0.0, heartbeat_due - now))
                if version == seen and time.monotonic() < heartbeat_due:
                    continue
            pause = pacer.pause()
            if pause > 0:
                await asyncio.sleep(pause)
            seen = self.feed.version  # changes after this point trigger another read
            pacer.started()
            try:
                body = await asyncio.to_thread(self.read, view)
            except Exception:
                log.exception("live read of %s failed; retrying after the next change or heartbeat", view)
                last_push = time.monotonic()
                continue
            finally:
                pacer.ended()
            self.reads += 1
            readings = body.get("readings")
            if readings == state.readings and time.monotonic() < heartbeat_due:
                continue
            state.readings = readings
            state.frame = self._remember(view, "pulse", body)
            last_push = time.monotonic()
            self._fan_out(state, state.frame)

    def _remember(self, view: View | None, event: str, body: dict[str, Any]) -> bytes:
        self._next_id += 1
        frame = encode(event, self._next_id, body)
        self._recent.append(_Recent(self._next_id, view, frame))
        return frame

    def _fan_out(self, state: _ViewState, frame: bytes) -> None:
        for sub in list(state.subscribers):
            if not sub.offer(frame, self.queue_size):
                self.dropped += 1
                state.subscribers.discard(sub)
                log.info("dropped a live subscriber %d frames behind", self.queue_size)

    def _leave(self, view: View, state: _ViewState, sub: _Subscriber) -> None:
        state.subscribers.discard(sub)
        if not state.subscribers and self._views.get(view) is state:
            del self._views[view]
            if state.task is not None:
                state.task.cancel()


def _running_on(loop: asyncio.AbstractEventLoop) -> bool:
    with contextlib.suppress(RuntimeError):
        return asyncio.get_running_loop() is loop
    return False
