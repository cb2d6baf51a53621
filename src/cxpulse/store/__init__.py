"""The store adapters: one small `Store` interface, two ClickHouse backends (chDB in-process, a server)."""

from cxpulse.config import Settings
from cxpulse.store.base import Store, StoreError, migrate

__all__ = ["Store", "StoreError", "migrate", "open_store"]


def open_store(settings: Settings) -> Store:
    """A ClickHouse-server store when `clickhouse_url` is set, else the embedded chDB store in `data_dir`."""
    if settings.clickhouse_url:
        from cxpulse.store.server import ServerStore

        return ServerStore(settings.clickhouse_url, settings.database)
    from cxpulse.store.chdb_store import ChdbStore

    return ChdbStore(settings.data_dir, settings.database, fsync=settings.fsync)
