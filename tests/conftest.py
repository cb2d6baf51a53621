"""Shared fixtures: a fresh chDB-backed runtime per test, and event builders."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cxpulse.config import Settings
from cxpulse.domain.events import Event
from cxpulse.domain.validation import validate_event
from services.embedded import EmbeddedRuntime

#: A fixed "now" for deterministic tests: readings are computed as of explicit `at` values.
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def validated(items: list[dict[str, Any]], now_ms: int) -> list[Event]:
    """Validate test items as ingest would at `now_ms`; every item must be valid."""
    out = []
    for item in items:
        result = validate_event(item, now_ms, 400)
        assert isinstance(result, Event), (item, result)
        out.append(result)
    return out


def event(event_id: str, type_: str, at_ms: int, customer: str = "c1", **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": type_, "occurred_at": iso(at_ms), "customer_id": customer, **fields}


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """chDB opens one data directory per process, so the whole test session shares one."""
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def settings(chdb_dir: Path) -> Settings:
    """Settings with a fresh database per test (isolation without reopening the engine elsewhere).

    Webhook targets may be private: the tests' receivers run on 127.0.0.1, and the example hostnames they
    use must not be looked up in DNS (test_target_policy.py and test_access.py check the policy)."""
    return Settings(data_dir=str(chdb_dir), database=f"t_{uuid.uuid4().hex[:12]}", webhook_allow_private=True)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[EmbeddedRuntime]:
    rt = EmbeddedRuntime.open(settings)
    yield rt
    rt.processor.flush()
    rt.store.execute(f"DROP DATABASE IF EXISTS {settings.database} SYNC")
    rt.store.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Each phase's report on the test item (`rep_call`…): fixtures look at it at teardown."""
    outcome = yield
    setattr(item, f"rep_{call.when}", outcome.get_result())  # type: ignore[attr-defined]
