"""Parsing of the query parameters the read endpoints share: window, at, filters, dimension."""

from __future__ import annotations

import re
import time

from cxpulse.domain.metrics import Dimension, Filters
from cxpulse.domain.validation import parse_timestamp_ms
from cxpulse.domain.windows import DAY_MS, WindowError, parse_window
from cxpulse.http.errors import ApiError

_DIMENSION_VALUE = re.compile(r"^[a-z0-9_.-]{1,64}$")
#: `at`, `from` and `to` lie in [1970, 2200): no event is older, and every window edge, previous window
#: and series bucket around them stays a date the API can print (found by fuzzing: year 0 and 10000).
MIN_TIMESTAMP_MS = 0
MAX_TIMESTAMP_MS = 7_258_118_400_000  # 2200-01-01T00:00:00Z


def bad_parameter(name: str, message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", f"{name}: {message}", [{"field": name, "message": message}])


def window_ms(text: str, name: str = "window") -> int:
    try:
        return parse_window(text, name=name)
    except WindowError as exc:
        raise bad_parameter(name, str(exc)) from None


def within_retention(ms: int, name: str, retention_days: int, text: str) -> int:
    """A query cost limit: nothing older than the retention is kept, so no span may reach further."""
    if ms > retention_days * DAY_MS:
        raise bad_parameter(name, f"must be at most the retention, {retention_days}d; got {text!r}")
    return ms


def timestamp_ms(text: str | None, name: str = "at") -> int:
    """An RFC 3339 timestamp parameter; absent means now."""
    if text is None or text == "":
        return int(time.time() * 1000)
    try:
        ms = parse_timestamp_ms(text)
    except ValueError:
        raise bad_parameter(
            name, f"must be an RFC 3339 timestamp with offset, e.g. 2026-11-25T08:00:00Z; got {text!r}"
        ) from None
    if not MIN_TIMESTAMP_MS <= ms < MAX_TIMESTAMP_MS:
        raise bad_parameter(name, f"must be from 1970-01-01 up to 2200-01-01; got {text!r}")
    return ms


def filters(touchpoint: str | None, channel: str | None, segment: str | None) -> Filters:
    """The dimension filters; an empty value (`touchpoint=`) means no filter, like an absent one."""
    for name, value in (("touchpoint", touchpoint), ("channel", channel), ("segment", segment)):
        if value and not _DIMENSION_VALUE.match(value):
            raise bad_parameter(name, f"must be 1–64 characters of a-z, 0-9, '_', '.', '-'; got {value!r}")
    return Filters(touchpoint or None, channel or None, segment or None)


def dimension(text: str) -> Dimension:
    try:
        return Dimension(text)
    except ValueError:
        raise bad_parameter("by", f"must be one of touchpoint, channel, segment; got {text!r}") from None
