"""`GET /metrics` on the real embedded service (chDB): the KPI gauges equal `/v1/pulse`."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from cxpulse.config import Settings
from cxpulse.observability.metrics import ServiceMetrics
from cxpulse.reading import PulseReader
from services.api.metrics_route import metrics_router, pulse_source
from services.embedded import EmbeddedRuntime
from tests.conftest import T0, event, iso, ms

AT = ms(T0)
MINUTE = 60_000


def kpis(text: str) -> dict[tuple[str, str, str], float]:
    return {
        (s.name, s.labels["metric"], s.labels["window"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("cxpulse_kpi")
        for s in family.samples
    }


def test_kpi_gauges_equal_the_pulse_and_empty_kpis_are_absent(
    runtime: EmbeddedRuntime, settings: Settings
) -> None:
    app = runtime.app(settings)
    reader = PulseReader(runtime.store, before_read=runtime.processor.flush)
    metrics = ServiceMetrics(("1h", "24h"), pulse=pulse_source(reader, now_ms=lambda: AT))
    app.include_router(metrics_router(metrics.registry))
    client = TestClient(app)

    metrics.kpis.refresh()
    assert kpis(client.get("/metrics").text) == {}

    t = AT - 30 * MINUTE
    items: list[dict[str, Any]] = [
        event("m1", "survey_answer", t, "c1", survey="nps", score=10),
        event("m2", "survey_answer", t, "c2", survey="nps", score=3),
        event("m3", "survey_answer", t, "c3", survey="nps", score=9),
        event("m4", "survey_answer", t, "c1", survey="csat", score=5),
        event("m5", "support_contact", t, "c2", case_id="k1"),
        event("m6", "support_resolved", t + MINUTE, "c2", case_id="k1"),
        event("m7", "survey_answer", AT - 5 * 60 * MINUTE, "c4", survey="nps", score=0),
    ]
    assert client.post("/v1/events", json=items).json()["accepted"] == len(items)
    metrics.kpis.refresh()
    gauges = kpis(client.get("/metrics").text)

    for window in ("1h", "24h"):
        readings = client.get(f"/v1/pulse?window={window}&at={iso(AT)}").json()["readings"]
        for metric, r in readings.items():
            key = ("cxpulse_kpi", metric, window)
            if r["value"] is None:
                assert not any(k[1:] == (metric, window) for k in gauges), (metric, window)
                continue
            assert gauges[key] == r["value"], (key, r)
            assert gauges["cxpulse_kpi_samples", metric, window] == r["n"]
            if r["ci"] is not None:
                assert gauges["cxpulse_kpi_ci_low", metric, window] == r["ci"][0]
                assert gauges["cxpulse_kpi_ci_high", metric, window] == r["ci"][1]
    assert gauges["cxpulse_kpi", "nps", "1h"] == 100 * (2 - 1) / 3
    assert gauges["cxpulse_kpi", "nps", "24h"] == 0.0  # the 0 from c4 joins the day: a real zero
    assert ("cxpulse_kpi", "churn", "24h") not in gauges
