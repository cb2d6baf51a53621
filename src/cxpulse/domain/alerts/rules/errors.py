"""Why a rule is invalid: every bad field named by its dotted path, collected rather than stopping at the
first, so one 422 lists them all."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cxpulse.domain.windows import WindowError, parse_duration

#: A field that was not sent, told apart from one sent as null.
MISSING = object()


class RuleError(ValueError):
    """An invalid rule; `errors` lists every bad field as `{"field": dotted.path, "message": …}`."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


class FieldErrors:
    """Collects every problem instead of stopping at the first, so a 422 can name them all."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append({"field": path, "message": message})

    def unknown(self, data: Mapping[str, Any], allowed: frozenset[str], prefix: str = "") -> None:
        for key in sorted(set(data) - allowed, key=str):
            self.add(f"{prefix}{key}", "unknown field")

    def string(self, data: Mapping[str, Any], key: str, path: str, default: Any = MISSING) -> str | None:
        value = data.get(key, default)
        if value is MISSING:
            self.add(path, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.add(path, "must be a non-empty string")
            return None
        return value

    def boolean(self, data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.add(path, "must be true or false")
            return default
        return value

    def number(self, data: Mapping[str, Any], key: str, path: str) -> float | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.add(path, "must be a finite number")
            return None
        return float(value)

    def duration(self, data: Mapping[str, Any], key: str, default: str, *, allow_zero: bool) -> int | None:
        try:
            return parse_duration(data.get(key, default), name=key, allow_zero=allow_zero)
        except WindowError as exc:
            self.add(key, str(exc))
            return None
