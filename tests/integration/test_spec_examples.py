"""SPEC §5 worked examples, end to end: HTTP ingest → embedded processor → chDB → /v1/pulse."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from cxpulse.config import Settings
from services.embedded import EmbeddedRuntime
from tests.conftest import T0, event, iso, ms

DAY = 86_400_000
AT = ms(T0)


@pytest.fixture
def client(runtime: EmbeddedRuntime, settings: Settings) -> TestClient:
    return TestClient(runtime.app(settings))


def post(client: TestClient, events: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post("/v1/events", json=events)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def pulse(client: TestClient, metrics: str, window: str = "7d", at: int = AT) -> dict[str, Any]:
    response = client.get("/v1/pulse", params={"metrics": metrics, "window": window, "at": iso(at)})
    assert response.status_code == 200, response.text
    readings: dict[str, Any] = response.json()["readings"]
    return readings


def test_nps_csat_ces_examples(client: TestClient) -> None:
    t = AT - DAY
    events = [
        event(f"n{i}", "survey_answer", t + i, f"c{i}", survey="nps", score=s)
        for i, s in enumerate([10, 9, 9, 8, 7, 6, 3, 10, 0, 9])
    ]
    events += [
        event(f"s{i}", "survey_answer", t + i, f"c{i}", survey="csat", score=s)
        for i, s in enumerate([5, 4, 3, 5, 1])
    ]
    events += [
        event(f"e{i}", "survey_answer", t + i, f"c{i}", survey="ces", score=s)
        for i, s in enumerate([1, 2, 2, 5, 7])
    ]
    assert post(client, events)["accepted"] == 20
    r = pulse(client, "nps,csat,ces")
    assert (r["nps"]["value"], r["nps"]["n"], r["nps"]["promoters"], r["nps"]["detractors"]) == (
        20.0,
        10,
        5,
        3,
    )
    assert (r["csat"]["value"], r["csat"]["n"]) == (60.0, 5)
    assert r["ces"]["value"] == pytest.approx(3.4)
    assert r["ces"]["easy_pct"] == 60.0


def test_fcr_example(client: TestClient) -> None:
    t = AT - 5 * DAY
    post(
        client,
        [
            event("a1", "support_contact", t, case_id="A"),
            event("a2", "support_resolved", t + 1000, case_id="A"),
            event("b1", "support_contact", t, case_id="B"),
            event("b2", "support_contact", t + 500, case_id="B"),
            event("b3", "support_resolved", t + 1000, case_id="B"),
            event("c1", "support_contact", t, case_id="C"),
            event("c2", "support_resolved", t + 1000, case_id="C"),
            event("c3", "support_contact", t + 1000 + 2 * DAY, case_id="C"),
        ],
    )
    r = pulse(client, "fcr")["fcr"]
    assert r["n"] == 3
    assert r["value"] == pytest.approx(100 / 3)
    # As of a moment before C's re-contact, C still counted as first-contact.
    assert pulse(client, "fcr", at=t + DAY)["fcr"]["value"] == pytest.approx(200 / 3)


def test_churn_and_retention_example(client: TestClient) -> None:
    start = AT - 30 * DAY
    events = [event(f"s{i}", "subscription_start", start - 10 * DAY, f"c{i}") for i in range(100)]
    events += [event(f"x{i}", "subscription_cancel", start + DAY, f"c{i}") for i in range(5)]
    events += [event(f"n{i}", "subscription_start", start + 2 * DAY, f"new{i}") for i in range(10)]
    post(client, events)
    r = pulse(client, "churn,retention", window="30d")
    assert (r["churn"]["value"], r["churn"]["n"]) == (5.0, 100)
    assert (r["retention"]["value"], r["retention"]["n"]) == (95.0, 100)
