"""`GET /v1/stream` (SPEC §6): the pulse over Server-Sent Events, fanned out by the app's `PulseHub`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from cxpulse.domain.windows import parse_window
from cxpulse.http import params
from cxpulse.http.auth import LOCAL, Access, CallerDep
from cxpulse.http.deps import MetricIdsDep, SettingsDep
from cxpulse.live.hub import PulseHub, View
from cxpulse.live.hub import Reader as ViewReader
from cxpulse.reading import Reader
from services.api.routes import pulse_body, window_param

Text = Annotated[str | None, Query()]

#: A client that does not take a frame within this long is cut off (sse-starlette's send timeout).
SEND_TIMEOUT_S = 10.0
#: Comment pings keep idle proxies from closing the stream.
PING_S = 15


def pulse_view_reader(reader: Reader) -> ViewReader:
    """`read(view)` for the hub: the `/v1/pulse` body for `view` as of now."""

    def read(view: View) -> dict[str, Any]:
        at_ms = int(time.time() * 1000)
        return pulse_body(
            reader, list(view.metrics), view.window, parse_window(view.window), at_ms, view.filters
        )

    return read


def get_hub(request: Request) -> PulseHub:
    hub: PulseHub = request.app.state.pulse_hub
    return hub


class HeldStream(EventSourceResponse):
    """The stream, holding one of its key's stream slots until the connection ends (however it ends)."""

    def __init__(self, *args: Any, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


router = APIRouter(tags=["pulse"])


@router.get(
    "/v1/stream",
    summary="The pulse as Server-Sent Events: `event: pulse` on change, `event: alert` on transitions",
    response_class=EventSourceResponse,
)
async def stream(
    request: Request,
    caller: CallerDep,
    settings: SettingsDep,
    hub: Annotated[PulseHub, Depends(get_hub)],
    metric_ids: MetricIdsDep,
    window: str = "",
    touchpoint: Text = None,
    channel: Text = None,
    segment: Text = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    window, _ = window_param(window, settings.retention_days)
    view = View(tuple(metric_ids), window, params.filters(touchpoint, channel, segment))
    resume = int(last_event_id) if last_event_id and last_event_id.isdigit() else None
    events = hub.subscribe(view, resume)
    if caller.key_id == LOCAL:  # open mode: no key to count streams against
        return EventSourceResponse(events, ping=PING_S, send_timeout=SEND_TIMEOUT_S)
    access: Access = request.app.state.access
    release = access.streams.acquire(caller.key_id)  # 429 when the key has too many open
    return HeldStream(events, ping=PING_S, send_timeout=SEND_TIMEOUT_S, release=release)
