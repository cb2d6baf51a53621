"""Integration fixtures: the embedded app served by a real uvicorn on a free port (lifespan included, so the
background tasks — KPI gauge refresh — run as in `cxpulse run`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from cxpulse.config import Settings
from services.embedded import EmbeddedRuntime
from tests.kafka_support import free_port


@pytest.fixture
def base_url(runtime: EmbeddedRuntime, settings: Settings) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            runtime.app(settings),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
