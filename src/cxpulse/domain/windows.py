"""Event-time windows: the `24h` syntax and the `[at − window, at)` ranges every reading uses (SPEC §2/§3)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
DAY_MS = UNIT_MS["d"]
MAX_WINDOW_MS = 400 * UNIT_MS["d"]
_WINDOW = re.compile(r"^([1-9][0-9]{0,8})([smhd])$")


class WindowError(ValueError):
    """A window (or step) that does not follow `integer + s|m|h|d`, up to 400d."""


def parse_window(text: str, *, name: str = "window") -> int:
    """`'24h'` → 86 400 000 (milliseconds)."""
    match = _WINDOW.match(text.strip())
    if not match:
        raise WindowError(f"{name} must be an integer followed by s, m, h or d (e.g. 24h); got {text!r}")
    ms = int(match.group(1)) * UNIT_MS[match.group(2)]
    if ms > MAX_WINDOW_MS:
        raise WindowError(f"{name} must be at most 400d; got {text!r}")
    return ms


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open event-time range `[start_ms, end_ms)`."""

    start_ms: int
    end_ms: int

    @classmethod
    def ending_at(cls, at_ms: int, length_ms: int) -> Span:
        return cls(at_ms - length_ms, at_ms)

    def before(self) -> Span:
        """The window of the same length just before this one (the `previous` reading's)."""
        length = self.end_ms - self.start_ms
        return Span(self.start_ms - length, self.start_ms)


@dataclass(frozen=True, slots=True)
class Grid:
    """`count` spans of `length_ms` whose ends step by `step_ms`: span j = [end_j − length, end_j) with
    end_j = first_end_ms + j·step_ms. A pulse (current and previous window) and a series are both grids,
    so the store computes them with one query; `length == step` is a tumbling grid (each row in one span).
    """

    first_end_ms: int
    step_ms: int
    count: int
    length_ms: int

    @property
    def start_ms(self) -> int:
        return self.first_end_ms - self.length_ms

    @property
    def end_ms(self) -> int:
        return self.first_end_ms + (self.count - 1) * self.step_ms


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC with millisecond precision (parses back to the same ms)."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_DURATION = re.compile(r"^(0|[1-9][0-9]{0,8})([smhd])$")


def parse_duration(text: object, *, name: str, allow_zero: bool = False) -> int:
    """A duration in the window syntax (`'5m'` → 300 000 ms); `allow_zero` also takes `0s`, `0m` … for
    settings where zero means "immediately" (an alert rule's `for`, `keep_firing_for`, `cooldown`)."""
    if not isinstance(text, str):
        raise WindowError(f"{name} must be a string such as 5m; got {text!r}")
    match = (_DURATION if allow_zero else _WINDOW).match(text.strip())
    if not match:
        example = "0s or 5m" if allow_zero else "5m"
        raise WindowError(
            f"{name} must be an integer followed by s, m, h or d (e.g. {example}); got {text!r}"
        )
    ms = int(match.group(1)) * UNIT_MS[match.group(2)]
    if ms > MAX_WINDOW_MS:
        raise WindowError(f"{name} must be at most 400d; got {text!r}")
    return ms


def format_duration(ms: int) -> str:
    """The shortest `integer + unit` spelling of a duration (`300000` → `5m`, `0` → `0s`): what
    `parse_duration` reads back to the same milliseconds."""
    for unit in ("d", "h", "m"):
        if ms and ms % UNIT_MS[unit] == 0:
            return f"{ms // UNIT_MS[unit]}{unit}"
    return f"{ms // UNIT_MS['s']}s"
