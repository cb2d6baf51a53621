"""Faults with real parts, at the `Store` seam of the embedded service on chDB: a store that fails inserts.

A batch whose events the store did not take is answered 503 + Retry-After and leaves no trace (not
counted, not folded into keyed state, not after a restart either); a retry of it is accepted as new. A
failure writing facts behind already-stored events does not fail the batch: the facts are written later.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cxpulse.config import Settings
from cxpulse.store import open_store
from cxpulse.store.base import Store, StoreError
from services.embedded import EmbeddedRuntime
from tests.conftest import event, iso

HOUR = 3_600_000


class FailingStore:
    """The real store; inserts into the tables in `failing` raise, as a full or broken disk would."""

    def __init__(self, store: Store) -> None:
        self.store, self.database = store, store.database
        self.failing: set[str] = set()
        self.refused = 0

    def execute(self, sql: str) -> None:
        self.store.execute(sql)

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return self.store.rows(sql, params)

    def array_rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        return self.store.array_rows(sql, params)

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if table in self.failing:
            self.refused += 1
            raise StoreError(
                "Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not enough space. (NOT_ENOUGH_SPACE)"
            )
        self.store.insert(table, rows)

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def faulty(settings: Settings) -> Iterator[tuple[FailingStore, TestClient, Settings]]:
    store = FailingStore(open_store(settings))
    runtime = EmbeddedRuntime.open(settings, store)
    yield store, TestClient(runtime.app(settings)), settings
    store.failing.clear()
    store.execute(f"DROP DATABASE IF EXISTS {settings.database} SYNC")
    store.close()


def _reading(client: TestClient, metric: str) -> dict[str, Any]:
    at = iso(int(time.time() * 1000) + HOUR)
    response = client.get("/v1/pulse", params={"metrics": metric, "window": "2d", "at": at})
    assert response.status_code == 200, response.text
    reading: dict[str, Any] = response.json()["readings"][metric]
    return reading


def _nps(event_id: str) -> dict[str, Any]:
    return event(
        event_id, "survey_answer", int(time.time() * 1000) - HOUR, f"c-{event_id}", survey="nps", score=9
    )


def test_a_refused_insert_is_a_503_and_counts_nothing(
    faulty: tuple[FailingStore, TestClient, Settings],
) -> None:
    store, client, _ = faulty
    batch = [_nps(f"e{i}") for i in range(3)]
    store.failing = {"events"}
    response = client.post("/v1/events", json=batch)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "unavailable" and "not enough space" in response.text
    assert int(response.headers["retry-after"]) >= 1
    assert store.refused == 1
    store.failing = set()
    assert _reading(client, "nps")["n"] == 0  # nothing of the refused batch is counted
    retried = client.post("/v1/events", json=batch)
    assert retried.status_code == 202 and retried.json()["accepted"] == 3  # new, not duplicates
    assert _reading(client, "nps")["n"] == 3


def test_a_refused_batch_leaves_no_trace_in_keyed_state(
    faulty: tuple[FailingStore, TestClient, Settings],
) -> None:
    """Regression: `step` folds events into the keyed state before the insert; when the insert failed, the
    state kept the refused events and later facts were computed from them. Here a case's resolution is
    refused; a later contact on the same case must not produce a resolved case (FCR n must stay 0)."""
    store, client, settings = faulty
    t = int(time.time() * 1000) - 3 * HOUR
    case = {"case_id": "K-1"}
    refused = [
        event("c1", "support_contact", t, "cust-1", **case),
        event("r1", "support_resolved", t + 60_000, "cust-1", **case),
    ]
    store.failing = {"events"}
    assert client.post("/v1/events", json=refused).status_code == 503
    store.failing = set()
    later = [event("c2", "support_contact", t + HOUR, "cust-1", **case)]
    assert client.post("/v1/events", json=later).status_code == 202
    assert _reading(client, "fcr")["n"] == 0
    # and the same from the store alone, after a restart
    reopened = TestClient(EmbeddedRuntime.open(settings, store).app(settings))
    assert _reading(reopened, "fcr")["n"] == 0
    # the client retries the refused batch: now the case is resolved — re-contacted, so not first-contact
    assert client.post("/v1/events", json=refused).json()["accepted"] == 2
    fcr = _reading(client, "fcr")
    assert fcr["n"] == 1 and fcr["value"] == 0


def test_facts_that_cannot_be_written_are_written_later(
    faulty: tuple[FailingStore, TestClient, Settings],
) -> None:
    """The events insert is the commit point: a failure behind it does not turn the 202 into a 503."""
    store, client, _ = faulty
    t = int(time.time() * 1000) - 2 * HOUR
    batch = [
        event("c1", "support_contact", t, "cust-1", case_id="K-1"),
        event("r1", "support_resolved", t + 60_000, "cust-1", case_id="K-1"),
    ]
    store.failing = {"cases", "customer_state"}
    client.app.state.bus.processor.flush_interval_s = 0.001  # type: ignore[attr-defined]  # flush with it
    response = client.post("/v1/events", json=batch)
    assert response.status_code == 202 and response.json()["accepted"] == 2
    with pytest.raises(StoreError):  # a read settles pending facts first: it cannot yet
        client.app.state.reader.before_read()  # type: ignore[attr-defined]
    assert client.get("/v1/pulse?metrics=fcr").status_code == 503  # and says so, in the error format
    store.failing = set()
    fcr = _reading(client, "fcr")
    assert fcr["n"] == 1 and fcr["value"] == 100


def test_a_flush_that_fails_halfway_counts_nothing_twice(
    faulty: tuple[FailingStore, TestClient, Settings],
) -> None:
    """Regression (rollups): a flush writes the signed case rows, then the subscriber rows; when the second
    insert fails the state does not know the first was written, and the next flush wrote the case again
    (FCR counted twice). The processor now rebuilds its state from the store first, reconciling the rows."""
    store, client, _ = faulty
    t = int(time.time() * 1000) - 2 * HOUR
    batch = [
        event("c1", "support_contact", t, "cust-1", case_id="K-1"),
        event("r1", "support_resolved", t + 60_000, "cust-1", case_id="K-1"),
        event("s1", "subscription_start", t, "cust-2"),
    ]
    store.failing = {"subscriber_facts"}
    client.app.state.bus.processor.flush_interval_s = 0.001  # type: ignore[attr-defined]  # flush with it
    response = client.post("/v1/events", json=batch)
    assert response.status_code == 202 and response.json()["accepted"] == 3
    store.failing = set()
    assert client.post("/v1/events", json=[_nps("later")]).status_code == 202  # a flush after the failure
    fcr = _reading(client, "fcr")
    assert fcr["n"] == 1 and fcr["value"] == 100
