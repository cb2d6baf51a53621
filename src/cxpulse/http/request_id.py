"""A request id for every HTTP request: taken from `X-Request-ID` when the caller sent a sane one, else
made up; set in the logging context for the whole request and echoed back as `X-Request-ID`.

One line per request at DEBUG (`cxpulse.access`: method, path without the query string — where a `?key=`
would be —, status, milliseconds), and at WARNING for a 5xx, so every failure leaves a line with its id.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cxpulse.observability.logs import request_id

HEADER = "x-request-id"
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

log = logging.getLogger("cxpulse.access")


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(HEADER.encode(), b"").decode("latin-1")
        rid = sent if _SANE.match(sent) else uuid.uuid4().hex
        token = request_id.set(rid)
        status = 0
        t0 = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (HEADER.encode(), rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            ms = (time.perf_counter() - t0) * 1000
            level = logging.WARNING if status >= 500 or status == 0 else logging.DEBUG
            if log.isEnabledFor(level):
                log.log(level, "%s %s → %s (%.0f ms)", scope["method"], scope["path"], status or "-", ms)
            request_id.reset(token)
