"""`POST /v1/events`: one event, a JSON array (≤ 10 000) or NDJSON; 202 once accepted events are durable."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cxpulse.bus import BusUnavailable, EventBus
from cxpulse.config import Settings
from cxpulse.domain.body import BodyError, decode_items
from cxpulse.domain.validation import validate_batch
from cxpulse.http.errors import ApiError

_EXAMPLE = {
    "event_id": "evt-0001",
    "type": "survey_answer",
    "occurred_at": "2026-11-25T08:30:00Z",
    "customer_id": "cust-42",
    "survey": "nps",
    "score": 9,
    "channel": "web",
}


def events_router(bus: EventBus, settings: Settings) -> APIRouter:
    retention_days, max_body_bytes = settings.retention_days, settings.max_body_bytes
    router = APIRouter(tags=["ingest"])

    @router.post(
        "/v1/events",
        status_code=202,
        summary="Send touchpoint events",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/Event"},
                        "example": _EXAMPLE,
                    },
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
            }
        },
        responses={
            400: {"description": "malformed body"},
            413: {"description": "body or batch too large"},
            422: {"description": "no event in the body is valid"},
            503: {"description": "bus unavailable"},
        },
    )
    async def post_events(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            raise _too_large(max_body_bytes)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                raise _too_large(max_body_bytes)
        try:
            items = decode_items(bytes(body), request.headers.get("content-type", ""))
        except BodyError as exc:
            if exc.too_large:
                raise ApiError(413, "payload_too_large", str(exc)) from None
            raise ApiError(400, "malformed_body", str(exc)) from None
        accepted, rejected = validate_batch(items, int(time.time() * 1000), retention_days)
        rejected_out = [r.to_dict() for r in rejected]
        if not accepted:
            raise ApiError(422, "invalid_events", f"none of the {len(items)} event(s) is valid", rejected_out)
        try:
            result = await bus.publish(accepted)
        except BusUnavailable as exc:
            raise ApiError(
                503,
                "unavailable",
                f"events not accepted, retry later: {exc}",
                headers={"Retry-After": str(exc.retry_after_s)},
            ) from None
        payload: dict[str, Any] = {
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "rejected": rejected_out,
        }
        return JSONResponse(payload, status_code=202)

    return router


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than {limit} bytes")
