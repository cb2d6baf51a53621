"""Run an ASGI app with uvicorn next to background loops (loader, Kafka feeder) in one event loop.

One loop, so the loops share the process's store and bus; if a background loop dies the server stops too
(exit code 1) instead of serving stale readings while looking healthy.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI

log = logging.getLogger("cxpulse.serve")

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def exit_cleanly_on_signals() -> None:
    """SIGTERM and SIGINT (Ctrl+C) end the process with status 0 after a graceful stop, wherever they
    arrive.

    While serving, uvicorn takes the signal itself: it stops accepting, lets in-flight requests (batches
    being made durable) finish, and then re-raises the signal so the default action would end the
    process — for SIGTERM before the `finally` blocks that flush and close the store, with status -15; for
    SIGINT as a KeyboardInterrupt that cancels the wait for the background loops and prints a traceback.
    With this handler in place that last signal becomes `SystemExit(0)`: the `finally` blocks run and the
    exit is clean. Before serving starts (opening the store, recovery) it stops the process the same way
    (installed before `asyncio.run`, it also keeps asyncio from taking SIGINT over)."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


Hook = Callable[[], Awaitable[None]]


async def serve(
    app: FastAPI,
    host: str,
    port: int,
    loops: Sequence[Loop] = (),
    startup: Sequence[Hook] = (),
    shutdown: Sequence[Hook] = (),
) -> int:
    stop = asyncio.Event()
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, log_config=None)
    server = uvicorn.Server(config)
    failed: list[BaseException] = []

    def on_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            assert exc is not None
            log.error("background loop failed: %r; stopping", exc, exc_info=exc)
            failed.append(exc)
            server.should_exit = True

    for hook in startup:
        await hook()
    tasks = [asyncio.create_task(loop(stop)) for loop in loops]
    for task in tasks:
        task.add_done_callback(on_done)
    try:
        await server.serve()
    finally:
        stop.set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=10)
            if pending:  # e.g. notifications still being sent: they stay in the outbox for the next start
                log.warning("%d background loop(s) still busy after 10 s; stopping them", len(pending))
            for task in pending:
                task.cancel()
        for hook in shutdown:
            await hook()
    return 1 if failed else 0
