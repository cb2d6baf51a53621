"""The Kafka bus: ingest publishes accepted events to `cx.events` and answers 202 only once acked.

Durability: acks=all with the idempotent producer, so a 202 means every replica in the ISR has the events
and producer retries cannot duplicate them within a session. `publish` waits for every ack within
`publish_timeout_s`; past that (broker down, partition leaderless …) it raises `BusUnavailable` (HTTP 503
with Retry-After). A 503 never means "lost": some events of that request may still land later, and the
client's retry is deduplicated by the workers (same event_id counts once).

A producer that failed a publish is replaced by a new one (a new producer id) at the next publish. After
an outage its idempotence sequence may be broken for good: batches that expired unsent leave a gap the
broker answers with OutOfOrderSequenceNumber, which stops aiokafka's sender for the producer's lifetime
(ingest answered 503 until restarted). The old producer is stopped in the background; whatever it still
delivers is a repeat the workers drop.

`PublishResult.duplicates` counts only repeats *within the request*: ingest does not know what the topic
already holds; deduplication against earlier requests is the workers' job (their `seen` table).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from cxpulse.bus.base import BusUnavailable
from cxpulse.bus.codec import encode_event
from cxpulse.config import Settings
from cxpulse.domain.events import Event
from cxpulse.pipeline.batch import PublishResult

log = logging.getLogger("cxpulse.bus.kafka")

RETRY_AFTER_S = 5


def producer_options(settings: Settings) -> dict[str, Any]:
    """The producer settings ingest uses (shared with the benchmark's raw-producer baseline)."""
    compression = settings.kafka_compression
    return {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": None if compression in (None, "", "none") else compression,
        "linger_ms": settings.kafka_linger_ms,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": max(1000, int(settings.publish_timeout_s * 1000)),
    }


class KafkaBus:
    def __init__(self, settings: Settings) -> None:
        if not settings.kafka_bootstrap:
            raise ValueError("KafkaBus needs CXPULSE_KAFKA_BOOTSTRAP")
        self.settings = settings
        self.topic = settings.topic
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect now (optional: `publish` connects lazily, so ingest can start before the broker)."""
        try:
            await self._started()
        except BusUnavailable as exc:
            log.warning("Kafka not reachable yet (%s); will retry on the first request", exc)

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(**producer_options(self.settings))
                try:
                    async with asyncio.timeout(self.settings.publish_timeout_s):
                        await producer.start()
                except (KafkaError, TimeoutError, OSError) as exc:
                    await producer.stop()
                    raise BusUnavailable(
                        f"Kafka at {self.settings.kafka_bootstrap} is not reachable: {exc!r}", RETRY_AFTER_S
                    ) from exc
                self._producer = producer
            return self._producer

    async def publish(self, events: Sequence[Event]) -> PublishResult:
        unique: dict[str, Event] = {}
        for event in events:
            unique.setdefault(event.event_id, event)
        producer = await self._started()
        try:
            async with asyncio.timeout(self.settings.publish_timeout_s):
                acks = [
                    await producer.send(self.topic, encode_event(e), key=e.customer_id.encode())
                    for e in unique.values()
                ]
                await asyncio.gather(*acks)
        except TimeoutError:
            self._retire(producer)
            raise BusUnavailable(
                f"Kafka did not acknowledge within {self.settings.publish_timeout_s:g} s", RETRY_AFTER_S
            ) from None
        except KafkaError as exc:
            self._retire(producer)
            raise BusUnavailable(f"Kafka refused the batch: {exc!r}", RETRY_AFTER_S) from exc
        return PublishResult(accepted=len(unique), duplicates=len(events) - len(unique))

    def _retire(self, producer: AIOKafkaProducer) -> None:
        """Let the next publish start a new producer; stop this one in the background (bounded)."""
        if self._producer is not producer:
            return  # another request retired it already
        self._producer = None
        log.warning("Kafka producer replaced after a failed publish")

        async def stop(old: AIOKafkaProducer) -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.settings.publish_timeout_s):
                    await old.stop()

        task = asyncio.create_task(stop(producer))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def ready(self, timeout_s: float = 3.0) -> bool:
        """Whether the broker answers a metadata request now."""
        try:
            producer = await self._started()
            async with asyncio.timeout(timeout_s):
                return bool(await producer.client.force_metadata_update())
        except (BusUnavailable, TimeoutError, KafkaError, OSError):
            return False

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)


async def ensure_topics(
    bootstrap: str, topics: Iterable[str], partitions: int, config: dict[str, str] | None = None
) -> None:
    """Create the topics that do not exist yet (a Faust agent never consumes a topic created later)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process was first
                await admin.create_topics(
                    [
                        NewTopic(
                            t, num_partitions=partitions, replication_factor=1, topic_configs=config or {}
                        )
                        for t in missing
                    ]
                )
            log.info("created topics %s (%d partitions)", ", ".join(missing), partitions)
    finally:
        await admin.close()
