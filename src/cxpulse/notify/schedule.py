"""When to retry: exponential backoff with jitter, `Retry-After` honoured within bounds, a last attempt."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Schedule:
    """Delay after failed attempt k (1-based): `base_s × 2^(k−1)`, capped at `cap_s`, jittered ±`jitter`
    so retries of many notifications spread out. A receiver's `Retry-After` is clamped to [delay, 2 × delay]:
    honoured when it asks for more patience, but it can neither hammer nor park a notification forever."""

    base_s: float = 5.0
    cap_s: float = 10 * 3600.0
    max_attempts: int = 8
    jitter: float = 0.2
    #: Uniform [0, 1) source; injectable for deterministic tests.
    rng: Callable[[], float] = field(default=random.random, compare=False)

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float | None:
        """Seconds to wait after failed attempt number `attempt`; None when it was the last allowed."""
        if attempt >= self.max_attempts:
            return None
        delay = min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))
        delay *= 1 + self.jitter * (2 * self.rng() - 1)
        if retry_after_s is not None:
            delay = min(max(retry_after_s, delay), 2 * delay)
        return delay
