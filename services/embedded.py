"""The embedded service: store + processor + in-process bus + the API, in one process.

The store is chDB under the data dir, or a ClickHouse server when `CXPULSE_CLICKHOUSE_URL` is set; it is
recovered from disk at start (keyed state loaded, batches after the last checkpoint replayed). The
processor tells the change feed about every commit (the live stream and the KPI gauges follow it) and its
inserts are timed for `/metrics`. Alerting (`AlertService`) shares the store: the processor matches
answers against its response rules and puts their notifications in its outbox; `loops()` are the
evaluator and the dispatcher, which the serving process runs next to the HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from fastapi import FastAPI

from cxpulse.alerts.service import AlertService
from cxpulse.bus import EventBus
from cxpulse.bus.inprocess import InProcessBus
from cxpulse.config import Settings
from cxpulse.http.auth import Access
from cxpulse.live.feed import ChangeFeed
from cxpulse.observability.metrics import ServiceMetrics, parse_metrics_windows
from cxpulse.pipeline.processor import Processor
from cxpulse.reading import PulseReader
from cxpulse.store import Store, migrate, open_store
from cxpulse.store.instrumented import InstrumentedStore
from cxpulse.store.repository import Repository
from cxpulse.store.snapshot import outcomes_readable, rollups_readable
from services.api.app import create_app
from services.serving import Loop

log = logging.getLogger("cxpulse.embedded")


@dataclass
class EmbeddedRuntime:
    store: Store
    processor: Processor
    bus: InProcessBus
    feed: ChangeFeed
    metrics: ServiceMetrics
    alerts: AlertService

    @classmethod
    def open(
        cls, settings: Settings, store: Store | None = None, *, roll_up_later: bool = False
    ) -> EmbeddedRuntime:
        """The runtime over `store` (default: the one `settings` name; tests pass a wrapped one).

        `roll_up_later` (a serving process): the rollups are caught up by `run_rollups` instead of before
        this returns — after a bulk import that is most of a start (40 of 65 s at 10M events), and readings
        are exact meanwhile (the raw SQL, slower), so the service answers sooner.
        """
        store = store if store is not None else open_store(settings)
        migrate(store, ids_in_background=True)
        feed = ChangeFeed()
        metrics = ServiceMetrics(parse_metrics_windows(settings.metrics_windows))
        writes = InstrumentedStore(store, on_insert=metrics.observe_insert)
        processor = Processor(Repository(writes), on_commit=feed.notify)
        reads = InstrumentedStore(store, on_query=metrics.count_read)  # evaluator reads count on /metrics
        alerts = AlertService(store, PulseReader(reads, before_read=processor.flush), settings, feed=feed)
        processor.responses = alerts.response_rules
        processor.outbox = alerts.outbox
        processor.on_notify = alerts.wake_dispatcher
        processor.on_types = alerts.evaluator.touch
        processor.roll_in_flush = not roll_up_later  # no flush may take the first, long catch-up on itself
        replayed = processor.recover(roll_up=not roll_up_later)
        log.info("store ready (%d events replayed since the last checkpoint)", replayed)
        metrics.rollups_readable.set_function(lambda: float(rollups_readable(store)))
        metrics.outcomes_snapshot_readable.set_function(lambda: float(outcomes_readable(store)))
        return cls(store, processor, InProcessBus(processor), feed, metrics, alerts)

    def app(self, settings: Settings, bus: EventBus | None = None, access: Access | None = None) -> FastAPI:
        """The whole embedded service: ingest through the in-process bus (or `bus`: Kafka for
        `run --kafka`, whose consumer feeds this processor), reads that see every 202, alert endpoints;
        `access`: the API keys and limits (default: from `settings`)."""
        return create_app(
            self.store,
            settings,
            bus=bus or self.bus,
            before_read=self.processor.flush,
            feed=self.feed,
            metrics=self.metrics,
            alerts=self.alerts,
            access=access,
        )

    def loops(self) -> list[Loop]:
        """Background work to run beside the HTTP server: rollup catch-up, alert evaluation and
        notification delivery."""
        return [self.run_rollups, *self.alerts.loops()]

    async def run_rollups(self, stop: asyncio.Event) -> None:
        """Catch the rollups up every `rollup_interval_s` beside ingest instead of inside its flushes: a
        catch-up waits for the readings in progress, and batches should not wait behind them."""
        self.processor.roll_in_flush = False
        try:
            while not stop.is_set():
                try:
                    await asyncio.to_thread(self.processor.roll_up)
                except Exception as exc:  # readings stay exact (raw SQL past the rollups): try again later
                    log.error("rollup catch-up failed (retried): %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.processor.rollup_interval_s)
        finally:
            self.processor.roll_in_flush = True

    def close(self) -> None:
        self.processor.flush()
        self.store.close()
