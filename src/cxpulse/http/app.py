"""What every CX Pulse HTTP service shares: the error format, `/healthz`, the event JSON Schema as the
OpenAPI `Event` component (one source of truth), access control's state, the request timeout and the
request id."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from starlette.types import Lifespan

from cxpulse import __version__
from cxpulse.config import Settings
from cxpulse.domain.event_schema import event_schema
from cxpulse.http.auth import Access
from cxpulse.http.errors import ERROR_STATUSES, ErrorBody, install_error_handlers
from cxpulse.http.request_id import RequestId
from cxpulse.http.timeout import RequestTimeout


def service_app(
    title: str,
    description: str,
    settings: Settings,
    access: Access | None = None,
    lifespan: Lifespan[FastAPI] | None = None,
) -> FastAPI:
    """A FastAPI app with the shared error handlers, `/healthz`, the `Event` schema in its OpenAPI, the
    settings and access control (`access`, default: from `settings`) on its state, and the request
    timeout; `lifespan` runs the app's background tasks while it serves. Routers go in with
    `auth.include(app, router, scope)`."""
    app = FastAPI(title=title, version=__version__, description=description, lifespan=lifespan)
    app.state.settings = settings
    app.state.access = access or Access(settings)
    install_error_handlers(app)
    add_event_schema(app)
    app.add_middleware(RequestTimeout, timeout_s=settings.request_timeout_s)
    app.add_middleware(RequestId)  # outermost: the timeout's 503 and its log line carry the id too

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
            document_errors(spec)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_errors(spec: dict[str, Any]) -> None:
    """Make the document say what the service answers on errors (checked by the schemathesis suite):

    - FastAPI documents its own `422 HTTPValidationError` for every operation with parameters, but the
      error handlers answer a bad parameter with a 400 in the error format: that 422 goes, a 400 comes;
    - any operation may answer 503: the request timeout (and, for `/readyz`, a store that does not answer).
    """
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}"))
    for name, definition in ErrorBody.model_json_schema()["$defs"].items():
        schemas.setdefault(name, definition)
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for item in spec.get("paths", {}).values():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            validation = responses.get("422", {}).get("content", {}).get("application/json", {})
            if validation.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                del responses["422"]
            if operation.get("parameters") or operation.get("requestBody"):
                responses.setdefault("400", {"description": ERROR_STATUSES[400], "content": error})
            responses.setdefault("503", {"description": ERROR_STATUSES[503], "content": error})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
