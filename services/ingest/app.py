"""`cxpulse ingest`: the stateless front door of the distributed shape — validate, publish to Kafka, 202.

Only `POST /v1/events` (the same router and answers as the embedded mode) plus health and `/metrics` (the
ingest counters and request latency; no KPI gauges, no alerts): `/readyz` fails while the broker does not
answer, so a load balancer stops sending traffic that would get 503s.
"""

from __future__ import annotations

from fastapi import FastAPI

from cxpulse.bus.kafka import KafkaBus
from cxpulse.config import Settings
from cxpulse.http.app import service_app
from cxpulse.http.auth import Access, include
from cxpulse.http.errors import ApiError
from cxpulse.observability.metrics import ServiceMetrics
from services.api.metrics_route import metrics_router
from services.ingest.routes import router as events_router


def create_ingest_app(bus: KafkaBus, settings: Settings, access: Access | None = None) -> FastAPI:
    # access: the same keys file as the API (CXPULSE_KEYS_FILE)
    app = service_app("CX Pulse ingest", "Touchpoint events into Kafka.", settings, access)
    app.state.bus = bus
    app.state.metrics = metrics = ServiceMetrics((), alerts=False)
    include(app, events_router, "ingest")
    include(app, metrics_router(metrics.registry), "read")

    @app.get("/readyz", tags=["ops"], summary="The Kafka broker answers")
    async def readyz() -> dict[str, str]:
        if not await bus.ready():
            raise ApiError(
                503,
                "not_ready",
                f"Kafka at {settings.kafka_bootstrap} does not answer",
                headers={"Retry-After": "5"},
            )
        return {"status": "ready"}

    return app
