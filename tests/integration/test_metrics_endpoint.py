"""`GET /metrics` on the real embedded service (chDB, uvicorn with its lifespan): read back with
prometheus-client's parser, the KPI gauges equal `/v1/pulse`, a KPI without data has no series, and the
service counters move when events are posted."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import event

MINUTE = 60_000
HOUR = 60 * MINUTE
KPI_FAMILIES = ("cxpulse_kpi", "cxpulse_kpi_samples", "cxpulse_kpi_ci_low", "cxpulse_kpi_ci_high")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base_url: str) -> Samples:
    response = httpx.get(f"{base_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def kpis(samples: Samples) -> dict[tuple[str, str, str], float]:
    return {
        (name, dict(labels)["metric"], dict(labels)["window"]): value
        for (name, labels), value in samples.items()
        if name in KPI_FAMILIES
    }


def wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_no_kpi_series_without_data_but_every_service_family(base_url: str) -> None:
    time.sleep(1.5)  # past the first gauge refresh, which found nothing
    samples = scrape(base_url)
    assert kpis(samples) == {}
    names = {name for name, _ in samples}
    assert {
        "cxpulse_events_accepted_total",
        "cxpulse_events_rejected_total",
        "cxpulse_events_duplicates_total",
        "cxpulse_events_dlq_total",
        "cxpulse_processing_lag_seconds",
        "cxpulse_alerts",
        "cxpulse_ingest_request_duration_seconds_count",
        "cxpulse_store_insert_duration_seconds_count",
    } <= names
    assert samples["cxpulse_events_accepted_total", ()] == 0
    alerts = {dict(labels)["state"]: v for (name, labels), v in samples.items() if name == "cxpulse_alerts"}
    assert alerts == {"ok": 0, "pending": 0, "firing": 0, "no_data": 0}  # no rules until alerts land


def test_counters_move_when_events_are_posted(base_url: str) -> None:
    before = scrape(base_url)
    now = int(time.time() * 1000)
    good = [event(f"c{i}", "survey_answer", now - MINUTE, f"u{i}", survey="nps", score=9) for i in range(3)]
    bad = {**good[0], "event_id": "bad", "score": 11}
    first = httpx.post(f"{base_url}/v1/events", json=[*good, bad])
    assert first.status_code == 202 and first.json()["accepted"] == 3
    again = httpx.post(f"{base_url}/v1/events", json=good[:2])  # same ids: duplicates
    assert again.json() == {"accepted": 0, "duplicates": 2, "rejected": []}
    assert httpx.post(f"{base_url}/v1/events", json=[bad]).status_code == 422
    after = scrape(base_url)

    def moved(name: str) -> float:
        return after[name, ()] - before.get((name, ()), 0.0)

    assert moved("cxpulse_events_accepted_total") == 3
    assert moved("cxpulse_events_duplicates_total") == 2
    assert moved("cxpulse_events_rejected_total") == 2  # one in the mixed batch, one in the 422
    assert moved("cxpulse_ingest_request_duration_seconds_count") == 3
    assert moved("cxpulse_store_insert_duration_seconds_count") >= 1  # the events insert, at least
    assert 0 <= after["cxpulse_processing_lag_seconds", ()] < 10


def test_kpi_gauges_equal_the_pulse_and_follow_the_change_feed(base_url: str) -> None:
    now = int(time.time() * 1000)
    t = now - 30 * MINUTE  # well inside 1h and 24h (and clear of their edges while the test runs)
    items: list[dict[str, Any]] = [
        event("m1", "survey_answer", t, "c1", survey="nps", score=10),
        event("m2", "survey_answer", t, "c2", survey="nps", score=3),
        event("m3", "survey_answer", t, "c3", survey="nps", score=9),
        event("m4", "survey_answer", t, "c1", survey="csat", score=5),
        event("m5", "support_contact", t, "c2", case_id="k1"),
        event("m6", "support_resolved", t + MINUTE, "c2", case_id="k1"),
        event("m7", "survey_answer", now - 5 * HOUR, "c4", survey="nps", score=0),
    ]
    assert httpx.post(f"{base_url}/v1/events", json=items).json()["accepted"] == len(items)

    # the change feed refreshes the gauges (at most once a second): no scrape computes them
    # (both windows: a refresh that began just before the commit may hold the new data in one only)
    def counted() -> dict[tuple[str, str, str], float] | None:
        g = kpis(scrape(base_url))
        n = (g.get(("cxpulse_kpi_samples", "nps", "1h")), g.get(("cxpulse_kpi_samples", "nps", "24h")))
        return g if n == (3, 4) else None

    gauges = wait_for(counted, 5, "the KPI gauges to count the posted answers")
    for window in ("1h", "24h"):
        readings = httpx.get(f"{base_url}/v1/pulse", params={"window": window}).json()["readings"]
        for metric, r in readings.items():
            if r["value"] is None:
                assert not any(k[1:] == (metric, window) for k in gauges), (metric, window)
                continue
            assert gauges["cxpulse_kpi", metric, window] == r["value"], (metric, window, r)
            assert gauges["cxpulse_kpi_samples", metric, window] == r["n"]
            if r["ci"] is not None:
                assert gauges["cxpulse_kpi_ci_low", metric, window] == r["ci"][0]
                assert gauges["cxpulse_kpi_ci_high", metric, window] == r["ci"][1]
    assert gauges["cxpulse_kpi", "nps", "1h"] == pytest.approx(100 * (2 - 1) / 3)
    assert gauges["cxpulse_kpi", "nps", "24h"] == 0.0  # the 0 from c4 joins the day: a real zero
    assert ("cxpulse_kpi", "churn", "24h") not in gauges  # no subscribers: absent, not 0
