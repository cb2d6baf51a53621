"""The `cx.store` loader: the chDB-owning process loads the workers' output into its store.

chDB lives in one process, so with several workers their output travels through the `cx.store` topic and
this loop (its own consumer group) writes it with `StoreWriter` — idempotent, so the at-least-once commits
of `consume` are enough: event rows already stored are dropped, fact rows are versioned upserts, the
workers' close-the-loop notifications enter the outbox by id. After each load `on_commit` tells the API's
change feed, so the live stream and the KPI gauges follow distributed writes as they follow the embedded
processor.

`after_write` (the API's alerting composition) runs after each batch's write and before its offsets are
committed: it publishes the batch's notifications to `cx.alerts`, wakes the dispatcher and tells the
metric-rule evaluator that new events arrived. A failure there retries the batch (writes are idempotent).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from cxpulse.config import Settings
from cxpulse.notify.outbox import Outbox
from cxpulse.pipeline.output import Output, StoreWriter, Written
from cxpulse.store.base import Store
from services.aggregator.consume import Records, consume, consumer_for

log = logging.getLogger("cxpulse.loader")


AfterWrite = Callable[[Written], Awaitable[None]]


class Loader:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        outbox: Outbox | None = None,
        after_write: AfterWrite | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        if not settings.kafka_bootstrap:
            raise ValueError("the loader needs CXPULSE_KAFKA_BOOTSTRAP")
        self.settings = settings
        self.writer = StoreWriter(store, outbox)
        self.after_write = after_write
        self.on_commit = on_commit
        self.loaded = 0

    async def handle(self, records: Records) -> None:
        outputs = []
        for record in records:
            try:
                outputs.append(Output.decode(record.value or b""))
            except (ValueError, KeyError, TypeError) as exc:  # only our workers write here: a bug, not data
                log.error(
                    "skipping a malformed cx.store message at %d/%d: %r", record.partition, record.offset, exc
                )
        if not outputs:
            return
        written = await asyncio.to_thread(self.writer.write, outputs)
        self.loaded += written.events
        if self.after_write is not None:
            await self.after_write(written)
        if self.on_commit is not None:  # facts alone (a late re-contact turning FCR) change readings too
            self.on_commit()

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        assert s.kafka_bootstrap
        consumer = consumer_for(
            s.store_topic, s.kafka_bootstrap, s.loader_group, s.batch_size * 10, s.kafka_session_timeout_s
        )
        await consumer.start()
        log.info("loading %s (group %s) into the store", s.store_topic, s.loader_group)
        try:
            await consume(
                consumer, self.handle, max_records=s.batch_size * 10, within_s=s.batch_within_s, stop=stop
            )
        finally:
            await consumer.stop()
