"""The Prometheus exposition (SPEC §6), read back with prometheus-client's own parser."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cxpulse.domain.windows import WindowError
from cxpulse.observability.metrics import ServiceMetrics, parse_metrics_windows
from services.api.metrics_route import metrics_router

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
KPI_FAMILIES = ("cxpulse_kpi", "cxpulse_kpi_samples", "cxpulse_kpi_ci_low", "cxpulse_kpi_ci_high")


def reading(value: float | None, n: int | None, ci: list[float] | None) -> dict[str, Any]:
    return {"value": value, "n": n, "ci": ci, "previous": {"value": None, "n": 0}, "delta": None}


BODIES: dict[str, dict[str, Any]] = {
    "1h": {
        "window": "1h",
        "readings": {
            "nps": reading(-12.5, 40, [-40.1, 15.1]),
            "csat": reading(80.0, 25, [60.9, 91.1]),
            "fcr": reading(None, 0, None),
            "active_customers": reading(57, 57, None),
        },
    },
    "24h": {
        "window": "24h",
        "readings": {"nps": reading(31.0, 800, [25.0, 37.0]), "churn": reading(None, 0, None)},
    },
}


def scrape(metrics: ServiceMetrics) -> Samples:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def kpi(samples: Samples, family: str, metric: str, window: str) -> float | None:
    return samples.get((family, (("metric", metric), ("window", window))))


def kpi_series(samples: Samples) -> set[tuple[str, str, str]]:
    return {
        (name, dict(labels)["metric"], dict(labels)["window"])
        for name, labels in samples
        if name in KPI_FAMILIES
    }


def test_kpi_gauges_equal_the_cached_pulse() -> None:
    metrics = ServiceMetrics(("1h", "24h"))
    metrics.kpis.update(BODIES)
    samples = scrape(metrics)
    for window, body in BODIES.items():
        for metric, r in body["readings"].items():
            if r["value"] is None:
                continue
            assert kpi(samples, "cxpulse_kpi", metric, window) == r["value"]
            assert kpi(samples, "cxpulse_kpi_samples", metric, window) == r["n"]
            low, high = r["ci"] or (None, None)
            assert kpi(samples, "cxpulse_kpi_ci_low", metric, window) == low
            assert kpi(samples, "cxpulse_kpi_ci_high", metric, window) == high


def test_a_kpi_without_data_is_absent_not_zero() -> None:
    metrics = ServiceMetrics()
    metrics.kpis.update(BODIES)
    metrics_seen = {(metric, window) for _, metric, window in kpi_series(scrape(metrics))}
    assert metrics_seen == {("nps", "1h"), ("csat", "1h"), ("active_customers", "1h"), ("nps", "24h")}


def test_no_kpi_series_when_there_is_no_data() -> None:
    metrics = ServiceMetrics()
    assert kpi_series(scrape(metrics)) == set()
    metrics.kpis.update({"1h": {"readings": {"nps": reading(None, 0, None)}}, "24h": {"readings": {}}})
    assert kpi_series(scrape(metrics)) == set()


def test_the_cache_is_refreshed_on_demand_never_per_scrape() -> None:
    calls: list[str] = []
    value = {"now": 10.0}

    def source(window: str) -> dict[str, Any]:
        calls.append(window)
        return {"readings": {"nps": reading(value["now"], 5, [0.0, 20.0])}}

    metrics = ServiceMetrics(("1h", "7d"), pulse=source)
    assert kpi_series(scrape(metrics)) == set()
    metrics.kpis.refresh()
    assert calls == ["1h", "7d"]
    value["now"] = 20.0
    for _ in range(3):
        samples = scrape(metrics)
    assert calls == ["1h", "7d"]
    assert kpi(samples, "cxpulse_kpi", "nps", "7d") == 10.0
    metrics.kpis.refresh()
    assert kpi(scrape(metrics), "cxpulse_kpi", "nps", "7d") == 20.0


def test_counters_increment_and_instances_are_independent() -> None:
    first, second = ServiceMetrics(), ServiceMetrics()
    first.count_ingest(accepted=3, duplicates=1, rejected=2)
    first.count_ingest(accepted=4, duplicates=0, rejected=1)
    first.events_dlq.inc()
    first.notifications.labels(result="sent").inc(2)
    first.notifications.labels(result="failed").inc()
    first.ingest_latency.observe(0.02)
    first.store_insert_latency.observe(0.003)
    samples = scrape(first)
    assert samples["cxpulse_events_accepted_total", ()] == 7
    assert samples["cxpulse_events_duplicates_total", ()] == 1
    assert samples["cxpulse_events_rejected_total", ()] == 3
    assert samples["cxpulse_events_dlq_total", ()] == 1
    assert samples["cxpulse_notifications_total", (("result", "sent"),)] == 2
    assert samples["cxpulse_notifications_total", (("result", "failed"),)] == 1
    assert samples["cxpulse_ingest_request_duration_seconds_count", ()] == 1
    assert samples["cxpulse_ingest_request_duration_seconds_bucket", (("le", "0.025"),)] == 1
    assert samples["cxpulse_ingest_request_duration_seconds_bucket", (("le", "0.01"),)] == 0
    assert samples["cxpulse_store_insert_duration_seconds_sum", ()] == 0.003
    assert scrape(second)["cxpulse_events_accepted_total", ()] == 0


def test_alerts_by_state_come_from_a_callback() -> None:
    counts = {"firing": 2, "pending": 1}
    metrics = ServiceMetrics(alert_counts=lambda: counts)
    samples = scrape(metrics)
    alerts = {dict(labels)["state"]: v for (name, labels), v in samples.items() if name == "cxpulse_alerts"}
    assert alerts == {"ok": 0, "pending": 1, "firing": 2, "no_data": 0}
    counts["firing"] = 0
    assert scrape(metrics)["cxpulse_alerts", (("state", "firing"),)] == 0
    later = ServiceMetrics()  # the evaluator hooks in after the app is built
    later.alerts.counts = lambda: {"firing": 1}
    assert scrape(later)["cxpulse_alerts", (("state", "firing"),)] == 1


def test_store_inserts_time_and_the_processing_lag_from_received_ms() -> None:
    now = {"t": 1_000.0}
    metrics = ServiceMetrics(clock=lambda: now["t"])
    rows = [{"event_id": "a", "received_ms": 998_500}, {"event_id": "b", "received_ms": 999_000}]
    metrics.observe_insert("events", rows, 0.004)
    samples = scrape(metrics)
    assert samples["cxpulse_processing_lag_seconds", ()] == 1.5  # the batch's oldest event
    assert samples["cxpulse_store_insert_duration_seconds_count", ()] == 1
    metrics.observe_insert("fcr_cases", [{"case_id": "k"}], 0.002)  # facts: latency only
    samples = scrape(metrics)
    assert samples["cxpulse_processing_lag_seconds", ()] == 1.5
    assert samples["cxpulse_store_insert_duration_seconds_count", ()] == 2
    metrics.count_read(0.01)
    assert scrape(metrics)["cxpulse_store_read_queries_total", ()] == 1


def test_ingest_and_worker_instances_have_no_kpi_or_alert_series() -> None:
    metrics = ServiceMetrics((), alerts=False)
    metrics.events_dlq.inc()
    names = {name for name, _ in scrape(metrics)}
    assert "cxpulse_events_dlq_total" in names
    assert not any(n.startswith(("cxpulse_kpi", "cxpulse_alerts")) for n in names)


def test_a_failing_alert_source_drops_its_series_not_the_scrape() -> None:
    def broken() -> dict[str, int]:
        raise RuntimeError("store down")

    metrics = ServiceMetrics(alert_counts=broken)
    metrics.events_dlq.inc()
    samples = scrape(metrics)
    assert not any(name == "cxpulse_alerts" for name, _ in samples)
    assert samples["cxpulse_events_dlq_total", ()] == 1


def test_the_route_serves_the_text_format() -> None:
    metrics = ServiceMetrics()
    metrics.kpis.update(BODIES)
    app = FastAPI()
    app.include_router(metrics_router(metrics.registry))
    response = TestClient(app).get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {f.name for f in text_string_to_metric_families(response.text)}
    assert {
        "cxpulse_events_accepted",
        "cxpulse_kpi",
        "cxpulse_alerts",
        "cxpulse_processing_lag_seconds",
    } <= families


def test_metrics_windows_setting() -> None:
    assert parse_metrics_windows("1h, 24h,1h,") == ("1h", "24h")
    with pytest.raises(WindowError, match="CXPULSE_METRICS_WINDOWS"):
        parse_metrics_windows("1h,1w")
