"""Request timeouts: a request that has not started its answer within `timeout_s` gets a 503 `timeout`.

The clock runs until the response starts, not until it ends, so a long stream (`/v1/stream`) is never cut
while a slow body upload or a slow query is. The handler runs in its own task and the client is answered
at the deadline even when the handler cannot be interrupted (a store query in a worker thread finishes in
the background, and whatever it sends afterwards is dropped).
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cxpulse.http.errors import error_body

log = logging.getLogger("cxpulse.http")


class RequestTimeout:
    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = asyncio.Event()
        timed_out = False

        async def guarded_send(message: Message) -> None:
            if timed_out:  # the client already has its 503
                return
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        async def run() -> None:
            await self.app(scope, receive, guarded_send)

        handler = asyncio.create_task(run())
        waiter = asyncio.create_task(started.wait())
        try:
            await asyncio.wait({handler, waiter}, timeout=self.timeout_s, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server is cancelling this request: the handler goes too
            handler.cancel()
            raise
        finally:
            waiter.cancel()
        if handler.done() or started.is_set():
            await handler  # finish the answer (or re-raise the handler's error)
            return
        timed_out = True
        handler.cancel()
        handler.add_done_callback(_consume)
        limit = f"{self.timeout_s:g} s"
        log.warning("%s %s: no answer within %s; answered 503", scope["method"], scope["path"], limit)
        message = f"the request took longer than {limit} (CXPULSE_REQUEST_TIMEOUT_S); retry later"
        body = orjson.dumps(error_body("timeout", message))
        headers = [(b"content-type", b"application/json"), (b"retry-after", b"5")]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _consume(task: asyncio.Task[None]) -> None:
    """Retrieve the abandoned handler's outcome so asyncio does not report it as never retrieved."""
    if not task.cancelled():
        task.exception()
