"""How the golden guard builds a service over a fixed event set (shared by the dump and the test)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient

from cxpulse.config import Settings
from services.embedded import EmbeddedRuntime
from tests.conftest import validated
from tests.golden.readings_dump import END_MS


@contextmanager
def client_over(data_dir: str, items: list[dict[str, Any]]) -> Iterator[TestClient]:
    settings = Settings(data_dir=data_dir, database=f"g_{uuid.uuid4().hex[:12]}")
    runtime = EmbeddedRuntime.open(settings)
    try:
        runtime.processor.process(validated(items, END_MS))
        yield TestClient(runtime.app(settings))
    finally:
        runtime.processor.flush()
        runtime.store.execute(f"DROP DATABASE IF EXISTS {settings.database} SYNC")
        runtime.store.close()
