"""The FastAPI application: read endpoints, the live stream and dashboard, `/metrics`, health, OpenAPI —
plus ingest when a bus is given."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cxpulse.alerts.service import AlertService
from cxpulse.bus import EventBus
from cxpulse.config import Settings
from cxpulse.http.app import service_app
from cxpulse.http.auth import Access, include
from cxpulse.http.errors import ApiError
from cxpulse.live.feed import ChangeFeed
from cxpulse.live.hub import PulseHub
from cxpulse.live.refresh import refresh_on_change
from cxpulse.observability.metrics import ServiceMetrics, parse_metrics_windows
from cxpulse.reading import PulseReader
from cxpulse.store.base import Store, StoreError
from cxpulse.store.instrumented import InstrumentedStore
from services.api import alerts as alert_routes
from services.api import dashboard, routes, stream
from services.api.metrics_route import metrics_router, pulse_source
from services.api.stream import pulse_view_reader
from services.ingest.routes import router as events_router


def create_app(
    store: Store,
    settings: Settings,
    bus: EventBus | None = None,
    *,
    before_read: Callable[[], None] | None = None,
    feed: ChangeFeed | None = None,
    metrics: ServiceMetrics | None = None,
    alerts: AlertService | None = None,
    access: Access | None = None,
) -> FastAPI:
    """The app over `store`; with a `bus` it also ingests. `before_read` makes acknowledged writes visible
    to reads (the embedded processor writes facts behind events). `feed` tells the live stream and the KPI
    gauges about commits; without one they refresh on their heartbeat only. `metrics`: the instruments the
    writer side already reports to (store inserts, DLQ), else new ones. With `alerts` it serves the alert
    endpoints, streams the evaluator's transitions (`event: alert` on `app.state.pulse_hub`), counts rules
    by state and delivery attempts on /metrics; the caller runs `alerts.loops()` (see `services.serving`).
    `access` (default: from `settings`) holds the API keys and limits; every router is included with its
    scope (SPEC §8)."""
    feed = feed or ChangeFeed()
    metrics = metrics or ServiceMetrics(parse_metrics_windows(settings.metrics_windows))
    # Every read-path query goes through here, so /metrics counts what the live views cost the store.
    reader = PulseReader(InstrumentedStore(store, on_query=metrics.count_read), before_read=before_read)
    metrics.kpis.source = pulse_source(reader)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = []
        if metrics.kpis.windows:  # the gauges follow the change feed, off the loop, at most once a second
            tasks.append(asyncio.create_task(refresh_on_change(feed, metrics.kpis.refresh), name="kpis"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    app = service_app(
        "CX Pulse",
        "A live pulse on customer experience: NPS, CSAT, CES, FCR and more, in event time.",
        settings,
        access,
        lifespan=lifespan,
    )
    app.state.reader = reader
    app.state.metrics = metrics
    app.state.feed = feed
    include(app, routes.router, "read")
    app.state.pulse_hub = PulseHub(pulse_view_reader(reader), feed)
    include(app, stream.router, "read", browser=True)
    include(app, metrics_router(metrics.registry), "read")
    include(app, dashboard.router, "read", browser=True)
    if alerts is not None:
        app.state.alerts = alerts
        alerts.evaluator.listeners.append(app.state.pulse_hub.publish_alert)
        metrics.alerts.counts = alerts.alert_counts
        alerts.on_attempt.append(lambda outcome: metrics.notifications.labels(result=outcome).inc())
        include(app, alert_routes.rules, "admin")
        include(app, alert_routes.router, "read")
    if bus is not None:
        app.state.bus = bus
        include(app, events_router, "ingest")

    @app.get("/readyz", tags=["ops"], summary="The store answers queries")
    def readyz() -> dict[str, str]:
        try:
            store.rows("SELECT 1")
        except StoreError as exc:
            raise ApiError(503, "not_ready", f"the store does not answer: {exc}") from None
        return {"status": "ready"}

    return app
