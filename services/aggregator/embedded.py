"""The embedded runtime: chDB store + processor + in-process bus, recovered from disk at start."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cxpulse.bus.inprocess import InProcessBus
from cxpulse.config import Settings
from cxpulse.pipeline.processor import Processor
from cxpulse.pipeline.repository import Repository
from cxpulse.store import Store, migrate, open_store
from cxpulse.store.chdb_store import ChdbStore

log = logging.getLogger("cxpulse.aggregator")


@dataclass
class EmbeddedRuntime:
    store: Store
    processor: Processor
    bus: InProcessBus

    @classmethod
    def open(cls, settings: Settings) -> EmbeddedRuntime:
        store: Store = (
            ChdbStore(settings.data_dir, settings.database, fsync=settings.fsync)
            if not settings.clickhouse_url
            else open_store(settings.clickhouse_url, settings.data_dir, settings.database)
        )
        migrate(store)
        processor = Processor(Repository(store))
        replayed = processor.recover()
        log.info("store ready (%d stateful events replayed since the last checkpoint)", replayed)
        return cls(store, processor, InProcessBus(processor))

    def close(self) -> None:
        self.store.close()
