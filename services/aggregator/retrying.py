"""Retry a batch step until it works, with a growing pause: the one retry policy of the consumers.

Skipping a failed batch would lose data; crashing would only make Kafka redeliver the same batch. So a
store or broker hiccup keeps the batch and tries again (1 s, 2 s, … at most 10 s apart).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger("cxpulse.retry")

T = TypeVar("T")

BASE_S = 1.0
MAX_S = 10.0


async def retrying(what: str, action: Callable[[], Awaitable[T]]) -> T:
    """`await action()` until it returns; each failure is logged and followed by a longer pause."""
    attempt = 0
    while True:
        try:
            return await action()
        except Exception as exc:  # a store / broker hiccup: keep the batch, try again
            attempt += 1
            log.warning("%s failed (attempt %d): %r; retrying", what, attempt, exc)
            await asyncio.sleep(min(BASE_S * attempt, MAX_S))
