"""Per-key limits: a token bucket per key for ingest and for reads, and a cap on a key's open streams.

The buckets are `token_bucket.Limiter` (falconry's token-bucket: refilled at `rate` tokens a second up to
`burst`); a request takes one token or gets a 429 whose `Retry-After` says when the next token is there.
Each key has its own buckets, so one busy key never slows another. Open mode (no keys, 127.0.0.1 only)
has no per-key limits: there is no key to count against.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable
from typing import Literal

import token_bucket

from cxpulse.config import Settings
from cxpulse.http.errors import ApiError

Kind = Literal["ingest", "read"]


class _Bucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.storage = token_bucket.MemoryStorage()
        self.limiter = token_bucket.Limiter(rate, burst, self.storage)

    def take(self, key_id: str) -> float | None:
        """None when a token was taken, else the seconds until one is there."""
        if self.limiter.consume(key_id):
            return None
        missing = 1.0 - self.storage.get_token_count(key_id)
        return max(missing / self.rate, 0.0)


class RateLimits:
    """`check(kind, key)`: one token from that key's `kind` bucket, or a 429 with `Retry-After`."""

    def __init__(self, settings: Settings) -> None:
        self._buckets: dict[Kind, _Bucket] = {}
        if settings.ingest_rate > 0:
            self._buckets["ingest"] = _Bucket(settings.ingest_rate, settings.ingest_burst)
        if settings.read_rate > 0:
            self._buckets["read"] = _Bucket(settings.read_rate, settings.read_burst)

    def check(self, kind: Kind, key_id: str) -> None:
        bucket = self._buckets.get(kind)
        if bucket is None:
            return
        wait = bucket.take(key_id)
        if wait is not None:
            retry_after = max(1, math.ceil(wait))
            raise ApiError(
                429,
                "rate_limited",
                f"too many {kind} requests for this key (at most {bucket.rate:g} a second); "
                f"retry after {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )


class StreamSlots:
    """At most `per_key` concurrent streams per key; `acquire` returns the release function."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def acquire(self, key_id: str) -> Callable[[], None]:
        with self._lock:
            if self._open[key_id] >= self.per_key:
                raise ApiError(
                    429,
                    "too_many_streams",
                    f"this key already has {self.per_key} open streams (CXPULSE_MAX_STREAMS_PER_KEY); "
                    "close one first",
                    headers={"Retry-After": "5"},
                )
            self._open[key_id] += 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if not released:
                    released = True
                    self._open[key_id] -= 1
                    if self._open[key_id] <= 0:
                        del self._open[key_id]

        return release

    def open_count(self, key_id: str) -> int:
        with self._lock:
            return self._open[key_id]
