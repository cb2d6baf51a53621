"""The embedded service: store + processor + in-process bus + the API, in one process.

The store is chDB under the data dir, or a ClickHouse server when `CXPULSE_CLICKHOUSE_URL` is set; it is
recovered from disk at start (keyed state loaded, batches after the last checkpoint replayed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import FastAPI

from cxpulse.bus.inprocess import InProcessBus
from cxpulse.config import Settings
from cxpulse.http.auth import Access
from cxpulse.live.feed import ChangeFeed
from cxpulse.pipeline.processor import Processor
from cxpulse.store import Store, migrate, open_store
from cxpulse.store.repository import Repository
from services.api.app import create_app

log = logging.getLogger("cxpulse.embedded")


@dataclass
class EmbeddedRuntime:
    store: Store
    processor: Processor
    bus: InProcessBus
    feed: ChangeFeed

    @classmethod
    def open(cls, settings: Settings) -> EmbeddedRuntime:
        store = open_store(settings)
        migrate(store)
        feed = ChangeFeed()
        processor = Processor(Repository(store), on_commit=feed.notify)
        replayed = processor.recover()
        log.info("store ready (%d stateful events replayed since the last checkpoint)", replayed)
        return cls(store, processor, InProcessBus(processor), feed)

    def app(self, settings: Settings, access: Access | None = None) -> FastAPI:
        """The whole embedded service: ingest through the in-process bus, reads that see every 202."""
        return create_app(
            self.store,
            settings,
            bus=self.bus,
            before_read=self.processor.flush,
            feed=self.feed,
            access=access,
        )

    def close(self) -> None:
        self.processor.flush()
        self.store.close()
