"""The embedded bus: events go straight to the in-process processor, off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from cxpulse.bus.base import BusUnavailable, PublishResult
from cxpulse.domain.events import Event
from cxpulse.pipeline.processor import Processor
from cxpulse.store.base import StoreError


class InProcessBus:
    def __init__(self, processor: Processor) -> None:
        self.processor = processor

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        try:
            return await asyncio.to_thread(self.processor.process, events)
        except StoreError as exc:
            raise BusUnavailable(f"the store did not accept the batch: {exc}") from exc
