"""Keep a cache fresh from the change feed: the KPI gauges of `/metrics` are refreshed here, never per scrape.

`refresh_on_change` runs a blocking `refresh` in a worker thread (the store is never queried on the event
loop) once at start, then after every change the feed reports — at most once per `min_interval_s` (and
less often when refreshes get slow: `Pacer`), however many commits land meanwhile — and at least every
`every_s`, because readings "as of now" move as the window slides even when nothing is written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from cxpulse.live.feed import ChangeFeed
from cxpulse.live.pacing import Pacer

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
    pacer = Pacer(min_interval_s)
    while True:
        if seen >= 0:
            due = last + every_s
            await feed.wait(seen, max(0.0, due - time.monotonic()))
            if feed.version == seen and time.monotonic() < due:
                continue
        pause = pacer.pause()
        if pause > 0:
            await asyncio.sleep(pause)
        seen = feed.version  # commits after this point trigger the next refresh

        def timed() -> None:
            nonlocal last
            last = time.monotonic()  # when it really starts: a worker thread may start late under load
            pacer.started()
            refresh()

        try:
            await asyncio.to_thread(timed)
        except Exception:
            log.exception("refreshing a live cache failed; retrying after the next change")
        finally:
            pacer.ended()
