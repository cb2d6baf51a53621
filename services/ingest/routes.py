"""`POST /v1/events`: one event, a JSON array (≤ 10 000) or NDJSON; 202 once accepted events are durable."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cxpulse.bus import EventBus
from cxpulse.config import Settings
from cxpulse.domain.validation import validate_batch
from cxpulse.http.body import decode_items
from cxpulse.http.deps import BusDep, MetricsDep, SettingsDep
from cxpulse.http.errors import ApiError, error_responses
from cxpulse.observability.metrics import ServiceMetrics

_EXAMPLE = {
    "event_id": "evt-0001",
    "type": "survey_answer",
    "occurred_at": "2026-11-25T08:30:00Z",
    "customer_id": "cust-42",
    "survey": "nps",
    "score": 9,
    "channel": "web",
}


router = APIRouter(tags=["ingest"])


@router.post(
    "/v1/events",
    status_code=202,
    summary="Send touchpoint events",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Event"}, "example": _EXAMPLE},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
    responses=error_responses(400, 413, 422, 503),
)
async def post_events(
    request: Request, bus: BusDep, settings: SettingsDep, metrics: MetricsDep
) -> JSONResponse:
    started = time.perf_counter()
    try:
        return await _post_events(request, bus, settings, metrics)
    finally:  # every answer, 4xx and 503 included: a slow rejection is still a slow request
        metrics.ingest_latency.observe(time.perf_counter() - started)


async def _post_events(
    request: Request, bus: EventBus, settings: Settings, metrics: ServiceMetrics
) -> JSONResponse:
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    items = decode_items(bytes(body), request.headers.get("content-type", ""))
    accepted, rejected = validate_batch(items, int(time.time() * 1000), settings.retention_days)
    rejected_out = [r.to_dict() for r in rejected]
    if not accepted:
        metrics.count_ingest(accepted=0, duplicates=0, rejected=len(rejected))
        raise ApiError(422, "invalid_events", f"none of the {len(items)} event(s) is valid", rejected_out)
    result = await bus.publish(accepted)
    metrics.count_ingest(result.accepted, result.duplicates, len(rejected))
    payload: dict[str, Any] = {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": rejected_out,
    }
    return JSONResponse(payload, status_code=202)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body is larger than {limit} bytes")
