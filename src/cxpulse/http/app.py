"""What every CX Pulse HTTP service shares: the error format, `/healthz`, and the event JSON Schema as the
OpenAPI `Event` component (one source of truth)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from starlette.types import Lifespan

from cxpulse import __version__
from cxpulse.domain.event_schema import event_schema
from cxpulse.http.errors import install_error_handlers


def service_app(title: str, description: str, lifespan: Lifespan[FastAPI] | None = None) -> FastAPI:
    """A FastAPI app with the shared error handlers, `/healthz` and the `Event` schema in its OpenAPI;
    `lifespan` runs the app's background tasks while it serves."""
    app = FastAPI(title=title, version=__version__, description=description, lifespan=lifespan)
    install_error_handlers(app)
    add_event_schema(app)

    @app.get("/healthz", tags=["ops"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def add_event_schema(app: FastAPI) -> None:
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
