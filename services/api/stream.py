"""`GET /v1/stream` (SPEC §6): the pulse over Server-Sent Events, fanned out by a `PulseHub`."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse

from cxpulse.domain.metrics import METRICS
from cxpulse.domain.windows import parse_window
from cxpulse.http import params
from cxpulse.live.hub import PulseHub, Reader, View
from cxpulse.readings import PulseReader

Text = Annotated[str | None, Query()]

DEFAULT_WINDOW = "24h"
#: A client that does not take a frame within this long is cut off (sse-starlette's send timeout).
SEND_TIMEOUT_S = 10.0
#: Comment pings keep idle proxies from closing the stream.
PING_S = 15


def pulse_view_reader(reader: PulseReader) -> Reader:
    """`read(view)` for the hub: the `/v1/pulse` body for `view` as of now."""

    def read(view: View) -> dict[str, Any]:
        at_ms = int(time.time() * 1000)
        readings = reader.pulse(list(view.metrics), parse_window(view.window), at_ms, view.filters)
        at = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds")
        return {
            "at": at.replace("+00:00", "Z"),
            "window": view.window,
            "filters": view.filters.to_dict(),
            "readings": readings,
        }

    return read


def parse_view(
    metrics: str | None,
    window: str | None,
    touchpoint: str | None,
    channel: str | None,
    segment: str | None,
) -> View:
    """The view a stream request asks for, with the same 400s as `/v1/pulse`."""
    ids = [m.strip() for m in (metrics or "").split(",") if m.strip()] or list(METRICS)
    unknown = [m for m in ids if m not in METRICS]
    if unknown:
        raise params.bad_parameter(
            "metrics", f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}"
        )
    window = (window or "").strip() or DEFAULT_WINDOW
    params.window_ms(window)
    return View(tuple(ids), window, params.filters(touchpoint, channel, segment))


def stream_router(hub: PulseHub) -> APIRouter:
    router = APIRouter(tags=["pulse"])

    @router.get(
        "/v1/stream",
        summary="The pulse as Server-Sent Events: `event: pulse` on change, `event: alert` on transitions",
        response_class=EventSourceResponse,
    )
    async def stream(
        metrics: Text = None,
        window: Text = None,
        touchpoint: Text = None,
        channel: Text = None,
        segment: Text = None,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> EventSourceResponse:
        view = parse_view(metrics, window, touchpoint, channel, segment)
        resume = int(last_event_id) if last_event_id and last_event_id.isdigit() else None
        return EventSourceResponse(hub.subscribe(view, resume), ping=PING_S, send_timeout=SEND_TIMEOUT_S)

    return router
