"""The bus contract: `publish` returns only once the events are durable (stored, or acked by Kafka)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cxpulse.domain.events import Event
from cxpulse.pipeline.batch import PublishResult


class BusUnavailable(RuntimeError):
    """The bus could not make the events durable in time: the client should retry (HTTP 503)."""

    def __init__(self, message: str, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class EventBus(Protocol):
    async def publish(self, events: Sequence[Event]) -> PublishResult: ...
