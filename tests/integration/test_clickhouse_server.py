"""The same store SQL on a ClickHouse server (clickhouse-connect), when one is configured.

Set CXPULSE_TEST_CLICKHOUSE_URL (e.g. http://default:@127.0.0.1:8123 from `deploy/docker-compose.yml`)
to run these; each test uses a fresh database, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from cxpulse.config import Settings
from cxpulse.domain.metrics import Filters
from cxpulse.domain.validation import validate_event
from cxpulse.reading import PulseReader
from services.embedded import EmbeddedRuntime
from tests.conftest import T0, event, ms

URL = os.environ.get("CXPULSE_TEST_CLICKHOUSE_URL")
pytestmark = [
    pytest.mark.clickhouse_server,
    pytest.mark.skipif(URL is None, reason="no ClickHouse server: set CXPULSE_TEST_CLICKHOUSE_URL to run"),
]
DAY = 86_400_000


@pytest.fixture
def server_runtime() -> Iterator[EmbeddedRuntime]:
    settings = Settings(clickhouse_url=URL, database=f"cxpulse_test_{uuid.uuid4().hex[:10]}")
    runtime = EmbeddedRuntime.open(settings)
    yield runtime
    runtime.store.execute(f"DROP DATABASE IF EXISTS {settings.database}")
    runtime.close()


def test_spec_examples_on_the_server(server_runtime: EmbeddedRuntime) -> None:
    at = ms(T0)
    items = [
        event(f"n{i}", "survey_answer", at - DAY + i, f"c{i}", survey="nps", score=s)
        for i, s in enumerate([10, 9, 9, 8, 7, 6, 3, 10, 0, 9])
    ]
    items += [
        event("a1", "support_contact", at - 5 * DAY, case_id="A"),
        event("a2", "support_resolved", at - 5 * DAY + 1000, case_id="A"),
        event("c1", "support_contact", at - 5 * DAY, case_id="C"),
        event("c2", "support_resolved", at - 5 * DAY + 1000, case_id="C"),
        event("c3", "support_contact", at - 3 * DAY, case_id="C"),
    ]
    now = ms(T0)
    events = [validate_event(item, now, 400) for item in items]
    server_runtime.processor.process([e for e in events if not isinstance(e, list)])
    server_runtime.processor.process([e for e in events if not isinstance(e, list)][:3])  # repeats
    readings = PulseReader(server_runtime.store).pulse(["nps", "fcr"], 7 * DAY, at, Filters())
    assert (readings["nps"]["value"], readings["nps"]["n"]) == (20.0, 10)
    assert (readings["fcr"]["value"], readings["fcr"]["n"]) == (50.0, 2)
