"""Keep a cache fresh from the change feed: the KPI gauges of `/metrics` are refreshed here, never per scrape.

`refresh_on_change` runs a blocking `refresh` in a worker thread (the store is never queried on the event
loop) once at start, then after every change the feed reports — at most once per `min_interval_s`, however
many commits land meanwhile — and at least every `every_s`, because readings "as of now" move as the
window slides even when nothing is written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from cxpulse.live.feed import ChangeFeed

log = logging.getLogger("cxpulse.live")


async def refresh_on_change(
    feed: ChangeFeed,
    refresh: Callable[[], None],
    *,
    min_interval_s: float = 1.0,
    every_s: float = 15.0,
) -> None:
    """Run until cancelled. A failing refresh is logged and retried at the next change or after
    `every_s`; the cache keeps its last good content meanwhile."""
    seen = -1
    last = float("-inf")
    while True:
        if seen >= 0:
            due = last + every_s
            await feed.wait(seen, max(0.0, due - time.monotonic()))
            if feed.version == seen and time.monotonic() < due:
                continue
        pause = last + min_interval_s - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        seen = feed.version  # commits after this point trigger the next refresh
        last = time.monotonic()
        try:
            await asyncio.to_thread(refresh)
        except Exception:
            log.exception("refreshing a live cache failed; retrying after the next change")
