"""The store adapters: one small `Store` interface, two ClickHouse backends (chDB in-process, a server)."""

from cxpulse.store.base import Store, StoreError, migrate

__all__ = ["Store", "StoreError", "migrate", "open_store"]


def open_store(url: str | None, data_dir: str, database: str) -> Store:
    """A ClickHouse-server store when `url` is set, else the embedded chDB store under `data_dir`."""
    if url:
        from cxpulse.store.server import ServerStore

        return ServerStore(url, database)
    from cxpulse.store.chdb_store import ChdbStore

    return ChdbStore(data_dir, database)
