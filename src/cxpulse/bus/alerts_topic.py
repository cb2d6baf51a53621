"""Every notification also goes to the Kafka topic `cx.alerts` (SPEC §4, distributed mode).

Published where the notification enters the outbox, not when a target accepts it: the topic is a channel
of its own, so it carries a notification whose targets are down as well, and carries each once rather
than once per target (an `on_sent` hook would publish per delivered row, and never for a dead target).
A rule with no targets raises no notification, as in the embedded mode. The message is the webhook body
plus `"id"` (the webhook-id, also in the `webhook-id` header), keyed by rule id so that a rule's `firing`
and `resolved` stay in order; consumers dedupe by id, as webhook receivers do (at least once).

Two ways in: `publish` (awaited, for async code that must not commit before the publish — the `cx.store`
loader, a worker writing to a ClickHouse server), and `MirroredOutbox`, an `Outbox` that queues every
notification added through it for `run` to publish (the evaluator adds from synchronous code).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

import orjson
from aiokafka import AIOKafkaProducer

from cxpulse.notify.outbox import AttemptRecord, Delivery, Kind, Notification, Outbox

log = logging.getLogger("cxpulse.bus.alerts")

Message = tuple[bytes, bytes, list[tuple[str, bytes]]]  # key, value, headers


def alert_message(notification: Notification) -> Message:
    """(key, value, headers) of a notification's `cx.alerts` message."""
    value = orjson.dumps({"id": notification.id, **notification.body})
    return notification.rule_id.encode(), value, [("webhook-id", notification.id.encode())]


class AlertsTopic:
    def __init__(self, bootstrap: str, topic: str, *, retry_s: float = 1.0) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None  # made in start(): aiokafka wants a running loop
        self._queue: asyncio.Queue[Notification] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retry_s = retry_s
        self.published = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, notifications: Iterable[Notification]) -> None:
        """Send and wait for every ack (raises on a Kafka error: the caller retries)."""
        assert self._producer is not None, "start() first"
        acks = []
        for n in notifications:
            key, value, headers = alert_message(n)
            acks.append(await self._producer.send(self.topic, value, key=key, headers=headers))
        await asyncio.gather(*acks)
        self.published += len(acks)

    def enqueue(self, notification: Notification) -> None:
        """Queue a notification for `run` to publish; safe from any thread."""
        assert self._loop is not None and self._queue is not None, "start() first"
        self._loop.call_soon_threadsafe(self._queue.put_nowait, notification)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish what `enqueue` queued, retrying until Kafka takes it, until `stop`."""
        assert self._queue is not None, "start() first"
        queue = self._queue
        while not stop.is_set():
            getter = asyncio.ensure_future(queue.get())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait([getter, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not getter.done():
                getter.cancel()
                break
            batch = [getter.result()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            while True:
                try:
                    await self.publish(batch)
                    break
                except Exception as exc:  # Kafka away: keep the batch, try again
                    log.warning(
                        "publishing %d notification(s) to %s failed (%r); retrying",
                        len(batch),
                        self.topic,
                        exc,
                    )
                    if stop.is_set():
                        log.error(
                            "stopping with %d notification(s) not published to %s", len(batch), self.topic
                        )
                        return
                    await asyncio.sleep(self._retry_s)


class MirroredOutbox:
    """An `Outbox` that also hands every notification added through it to `cx.alerts` (queued: `add` is
    called from synchronous code). A notification already in the outbox is mirrored again — at least
    once, deduplicated by id downstream — so a re-add after a crash is not lost from the topic."""

    def __init__(self, inner: Outbox, alerts: AlertsTopic) -> None:
        self.inner = inner
        self.alerts = alerts

    def add(self, notification: Notification, now_ms: int) -> int:
        return self.add_many([notification], now_ms)

    def add_many(self, notifications: Sequence[Notification], now_ms: int) -> int:
        added = self.inner.add_many(notifications, now_ms)
        for notification in notifications:
            self.alerts.enqueue(notification)
        return added

    def due(self, now_ms: int, limit: int = 100) -> list[Delivery]:
        return self.inner.due(now_ms, limit)

    def record(self, attempt: AttemptRecord, updated: Delivery) -> None:
        self.inner.record(attempt, updated)

    def disable_target(self, rule_id: str, url: str, at_ms: int, reason: str) -> None:
        self.inner.disable_target(rule_id, url, at_ms, reason)

    def enable_target(self, rule_id: str, url: str, at_ms: int) -> None:
        self.inner.enable_target(rule_id, url, at_ms)

    def disabled_targets(self, rule_id: str | None = None) -> set[tuple[str, str]]:
        return self.inner.disabled_targets(rule_id)

    def deliveries(
        self, rule_id: str | None = None, limit: int = 100, kind: Kind | None = None
    ) -> list[Delivery]:
        return self.inner.deliveries(rule_id, limit, kind)

    def attempts(
        self,
        rule_id: str | None = None,
        limit: int = 100,
        kind: Kind | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[AttemptRecord]:
        return self.inner.attempts(rule_id, limit, kind, ids)

    def latest(
        self, rule_id: str | None = None, kind: Kind | None = None, limit: int = 100
    ) -> list[Delivery]:
        return self.inner.latest(rule_id, kind, limit)
