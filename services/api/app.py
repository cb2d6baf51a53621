"""The FastAPI application: read endpoints, health, OpenAPI — plus ingest when a bus is given."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from cxpulse import __version__
from cxpulse.bus import EventBus
from cxpulse.config import Settings
from cxpulse.domain.validation import event_schema
from cxpulse.http.errors import ApiError, install_error_handlers
from cxpulse.readings import PulseReader
from cxpulse.store.base import Store, StoreError
from services.api.routes import pulse_router
from services.ingest.routes import events_router


def create_app(
    store: Store,
    settings: Settings,
    bus: EventBus | None = None,
    *,
    before_read: Callable[[], None] | None = None,
) -> FastAPI:
    """The app over `store`; with a `bus` it also ingests. `before_read` makes acknowledged writes visible
    to reads (the embedded processor writes facts behind events)."""
    app = FastAPI(
        title="CX Pulse",
        version=__version__,
        description="A live pulse on customer experience: NPS, CSAT, CES, FCR and more, in event time.",
    )
    install_error_handlers(app)
    app.include_router(pulse_router(PulseReader(store, before_read=before_read)))
    if bus is not None:
        app.include_router(
            events_router(bus, retention_days=settings.retention_days, max_body_bytes=settings.max_body_bytes)
        )
    _add_event_schema(app)

    @app.get("/healthz", tags=["ops"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="The store answers queries")
    def readyz() -> dict[str, str]:
        try:
            store.rows("SELECT 1")
        except StoreError as exc:
            raise ApiError(503, "not_ready", f"the store does not answer: {exc}") from None
        return {"status": "ready"}

    return app


def _add_event_schema(app: FastAPI) -> None:
    """Publish `schemas/event.schema.json` as the OpenAPI `Event` component (one source of truth)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = original()
            schema = {k: v for k, v in event_schema().items() if k not in ("$schema", "$id", "definitions")}
            text = json.dumps(schema).replace("#/definitions/", "#/components/schemas/Event_")
            spec.setdefault("components", {}).setdefault("schemas", {})["Event"] = json.loads(text)
            for name, sub in event_schema()["definitions"].items():
                spec["components"]["schemas"][f"Event_{name}"] = sub
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
