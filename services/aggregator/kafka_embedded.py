"""`cxpulse run --kafka`: the embedded runtime with Kafka as the bus, for a single node.

Ingest publishes to `cx.events` (acks=all) and answers 202 once acked; this in-process consumer feeds the
same embedded `Processor` (chDB) that `cxpulse run` uses, so no Faust is needed on one node. The processor
dedups against the store (first processed wins) and is idempotent, so the commit-after-store loop is
at-least-once without double counting. Bad messages (from direct producers) go to the DLQ.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaProducer

from cxpulse.bus.codec import DeadLetter, decode_event
from cxpulse.bus.dlq import Headers, SourceMessage, route_dead_letters
from cxpulse.config import Settings
from cxpulse.domain.events import Event
from cxpulse.pipeline.processor import Processor
from services.aggregator.consume import Records, consume, consumer_for

log = logging.getLogger("cxpulse.run")


class KafkaFeeder:
    """`on_dead(n)` is told how many messages each batch sent to the DLQ (the `/metrics` counter)."""

    def __init__(
        self, settings: Settings, processor: Processor, on_dead: Callable[[int], None] | None = None
    ) -> None:
        if not settings.kafka_bootstrap:
            raise ValueError("run --kafka needs a bootstrap address")
        self.settings = settings
        self.processor = processor
        self.on_dead = on_dead
        self._dlq: AIOKafkaProducer | None = None

    async def handle(self, records: Records) -> None:
        events: list[Event] = []
        received: list[int] = []
        dead: list[tuple[SourceMessage, DeadLetter]] = []
        for r in records:
            decoded = decode_event(r.value, r.timestamp, self.settings.retention_days)
            if isinstance(decoded, DeadLetter):
                dead.append((r, decoded))
            else:
                events.append(decoded)
                received.append(r.timestamp)  # when ingest published it: the processing lag starts here
        if dead:
            await route_dead_letters(self._send, self.settings.dlq_topic, dead)
            if self.on_dead is not None:
                self.on_dead(len(dead))
        if events:
            await asyncio.to_thread(self.processor.process, events, received)

    async def _send(self, topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        assert self._dlq is not None
        await self._dlq.send_and_wait(topic, value, key=key, headers=headers)

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        assert s.kafka_bootstrap
        self._dlq = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", enable_idempotence=True)
        consumer = consumer_for(
            s.topic, s.kafka_bootstrap, s.run_group, s.batch_size, s.kafka_session_timeout_s
        )
        await self._dlq.start()
        await consumer.start()
        log.info("processing %s (group %s) into the embedded store", s.topic, s.run_group)
        try:
            await consume(
                consumer, self.handle, max_records=s.batch_size, within_s=s.batch_within_s, stop=stop
            )
        finally:
            await consumer.stop()
            await self._dlq.stop()
