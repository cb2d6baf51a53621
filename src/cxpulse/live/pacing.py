"""How often a live cache may read: at most once per interval, and never more than a share of a thread.

The live stream and the KPI gauges re-read readings after every commit. On a quiet store a reading takes
milliseconds and the interval alone paces them; under heavy ingest the same reading can take a second, and
back-to-back reads would take a core from the writer. So once reads are slow, the next one waits, after
the last one ended, `d × (1/share − 1)` where `d` is the shorter of the last two reads: sustained slowness
backs off, while one slow read — the cold first read after a start, a moment of contention — does not
hold a view back for seconds.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

#: The share of one thread a live cache may keep busy reading (the rest of the time it idles).
LIVE_READ_SHARE = 0.25


class Pacer:
    def __init__(
        self,
        min_interval_s: float,
        share: float = LIVE_READ_SHARE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self.min_interval_s = min_interval_s
        self.share = share
        self.clock = clock
        self._start = self._end = float("-inf")
        self._busy: deque[float] = deque(maxlen=2)

    def pause(self) -> float:
        """Seconds to wait before the next read may start."""
        busy = min(self._busy) if len(self._busy) == self._busy.maxlen else 0.0
        ready = max(self._start + self.min_interval_s, self._end + busy * (1 / self.share - 1))
        return max(0.0, ready - self.clock())

    def started(self) -> None:
        self._start = self._end = self.clock()

    def ended(self) -> None:
        self._end = self.clock()
        self._busy.append(self._end - self._start)
