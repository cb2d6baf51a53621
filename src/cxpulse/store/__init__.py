"""The store adapters: one small `Store` interface, two ClickHouse backends (chDB in-process, a server),
the schema migrations, and the SQL of both sides (KPI statistics, processing repository)."""

from cxpulse.config import Settings
from cxpulse.store import idset
from cxpulse.store.base import Store, StoreError
from cxpulse.store.migrations import apply_migrations

__all__ = ["Store", "StoreError", "migrate", "open_store"]


def open_store(settings: Settings) -> Store:
    """A ClickHouse-server store when `clickhouse_url` is set, else the embedded chDB store in `data_dir`."""
    if settings.clickhouse_url:
        from cxpulse.store.server import ServerStore

        return ServerStore(settings.clickhouse_url, settings.database)
    from cxpulse.store.chdb_store import ChdbStore

    return ChdbStore(settings.data_dir, settings.database, fsync=settings.fsync)


def migrate(store: Store, *, ids_in_background: bool = False) -> None:
    """Bring the schema up to date, and refill the in-memory customer number index and event id set (Join
    and Set tables that are not persisted).

    `ids_in_background`: the id set (seconds at 10M events) is refilled by a thread, so the store serves
    readings at once; the duplicate check waits for it (`idset.wait_for_event_ids`).
    """
    apply_migrations(store)
    db = store.database
    store.execute(
        f"INSERT INTO {db}.customer_number_index SELECT customer_key, num FROM {db}.customer_numbers"
    )
    refill = f"INSERT INTO {db}.event_ids SELECT sipHash128(event_id) FROM {db}.events"
    if ids_in_background:
        idset.refill_in_background(store, refill)
    else:
        store.execute(refill)
