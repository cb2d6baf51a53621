"""The embedded bus: events go to the in-process processor, with group commit.

Requests that arrive while a write is in flight are merged into the next write, so concurrent producers
share the store's fixed per-insert cost. Each `publish` still returns only after its own events are stored;
the facts derived from them are written behind (see `Processor`), and readers settle them first.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Sequence

from cxpulse.bus.base import BusUnavailable
from cxpulse.domain.events import Event
from cxpulse.pipeline.batch import PublishResult
from cxpulse.pipeline.processor import Processor
from cxpulse.store.base import StoreError

MAX_GROUP_EVENTS = 20_000

log = logging.getLogger("cxpulse.bus")

_Pending = tuple[Sequence[Event], "asyncio.Future[PublishResult]"]


class InProcessBus:
    def __init__(self, processor: Processor, max_group_events: int = MAX_GROUP_EVENTS) -> None:
        self.processor = processor
        self.max_group_events = max_group_events
        self._queue: asyncio.Queue[_Pending] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        queue = self._ensure_writer()
        done: asyncio.Future[PublishResult] = asyncio.get_running_loop().create_future()
        queue.put_nowait((events, done))
        return await done

    def _ensure_writer(self) -> asyncio.Queue[_Pending]:
        """One writer task per event loop (tests may run several loops one after another)."""
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop or self._writer is None or self._writer.done():
            self._loop, self._queue = loop, asyncio.Queue()
            # a fresh context: the writer serves every request, not the one that happened to start it
            self._writer = loop.create_task(self._write_loop(self._queue), context=contextvars.Context())
        return self._queue

    async def _write_loop(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            try:
                first = await asyncio.wait_for(queue.get(), self.processor.flush_interval_s)
            except TimeoutError:  # idle: write what is pending behind the events
                try:
                    await asyncio.to_thread(self.processor.flush)
                except StoreError as exc:  # the events are stored; the facts wait for the next try
                    log.error("writing facts and state behind the events failed (retried later): %s", exc)
                continue
            group = [first]
            size = len(group[0][0])
            while size < self.max_group_events and not queue.empty():
                group.append(queue.get_nowait())
                size += len(group[-1][0])
            batches = [events for events, _ in group]
            try:
                results = await asyncio.to_thread(self.processor.process_many, batches, flush=False)
            except Exception as exc:  # every waiting request must hear about it, and the writer goes on
                reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
                log.error("the store did not accept %d events from %d requests: %s", size, len(group), reason)
                failure = (
                    BusUnavailable(f"the store did not accept the batch: {reason}")
                    if isinstance(exc, StoreError)
                    else exc
                )
                for _, done in group:
                    if not done.done():
                        done.set_exception(failure)
                continue
            for (_, done), result in zip(group, results, strict=True):
                if not done.done():
                    done.set_result(result)
