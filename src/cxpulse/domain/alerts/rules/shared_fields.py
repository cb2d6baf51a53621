"""The fields every rule has, whatever its kind: `name`, `filters`, `notify` and `enabled`. Parsed once,
before the kind's own fields, so both kinds name their errors the same way and in the same order."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cxpulse.domain.alerts.rules.errors import FieldErrors
from cxpulse.domain.alerts.rules.targets import Target, TargetPolicy, parse_targets

FILTER_KEYS = ("touchpoint", "channel", "segment")
_DIMENSION_VALUE = re.compile(r"^[a-z0-9_.-]{1,64}$")
MAX_NAME = 200


@dataclass(frozen=True, slots=True)
class SharedFields:
    """As parsed; `name` is None when it is invalid (the errors say why)."""

    id: str
    name: str | None
    filters: dict[str, str]
    notify: tuple[Target, ...]
    enabled: bool


def parse_shared_fields(
    data: Mapping[str, Any],
    errors: FieldErrors,
    rule_id: str,
    previous_targets: Sequence[Target],
    policy: TargetPolicy | None,
) -> SharedFields:
    name = errors.string(data, "name", "name")
    if name is not None and len(name) > MAX_NAME:
        errors.add("name", f"must be at most {MAX_NAME} characters")
    filters = _filters(data.get("filters", {}), errors)
    notify = parse_targets(data.get("notify", []), errors, previous_targets, policy)
    enabled = errors.boolean(data, "enabled", "enabled", True)
    return SharedFields(rule_id, name, filters, notify, enabled)


def _filters(data: object, errors: FieldErrors) -> dict[str, str]:
    if not isinstance(data, Mapping):
        errors.add("filters", "must be an object such as {'touchpoint': 'checkout'}")
        return {}
    out: dict[str, str] = {}
    for key, value in data.items():
        if key not in FILTER_KEYS:
            errors.add(f"filters.{key}", f"unknown filter; one of {', '.join(FILTER_KEYS)}")
        elif not isinstance(value, str) or not _DIMENSION_VALUE.match(value):
            errors.add(f"filters.{key}", "must be 1–64 characters of [a-z0-9_.-]")
        else:
            out[key] = value
    return out
