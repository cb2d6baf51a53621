"""The FastAPI application: read endpoints, health, OpenAPI — plus ingest when a bus is given."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from cxpulse.alerts.service import AlertService
from cxpulse.bus import EventBus
from cxpulse.config import Settings
from cxpulse.http.app import service_app
from cxpulse.http.auth import Access, include
from cxpulse.http.errors import ApiError
from cxpulse.live.feed import ChangeFeed
from cxpulse.live.hub import PulseHub
from cxpulse.reading import PulseReader
from cxpulse.store.base import Store, StoreError
from services.api import alerts as alert_routes
from services.api import dashboard, routes, stream
from services.api.stream import pulse_view_reader
from services.ingest.routes import router as events_router


def create_app(
    store: Store,
    settings: Settings,
    bus: EventBus | None = None,
    *,
    before_read: Callable[[], None] | None = None,
    feed: ChangeFeed | None = None,
    alerts: AlertService | None = None,
    access: Access | None = None,
) -> FastAPI:
    """The app over `store`; with a `bus` it also ingests. `before_read` makes acknowledged writes visible
    to reads (the embedded processor writes facts behind events). `feed` tells the live stream about
    commits; without one it refreshes on its heartbeat only. With `alerts` it serves the alert endpoints
    and streams the evaluator's transitions (`event: alert`); the caller runs `alerts.loops()`. `access`
    (default: from `settings`) holds the API keys and limits; every router is included with its scope
    (SPEC §8)."""
    app = service_app(
        "CX Pulse",
        "A live pulse on customer experience: NPS, CSAT, CES, FCR and more, in event time.",
        settings,
        access,
    )
    reader = app.state.reader = PulseReader(store, before_read=before_read)
    include(app, routes.router, "read")
    hub = PulseHub(pulse_view_reader(reader), feed or ChangeFeed())
    app.state.pulse_hub = hub  # the alert evaluator publishes transitions here
    include(app, stream.router, "read", browser=True)
    include(app, dashboard.router, "read", browser=True)
    if alerts is not None:
        app.state.alerts = alerts
        alerts.evaluator.listeners.append(hub.publish_alert)
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
