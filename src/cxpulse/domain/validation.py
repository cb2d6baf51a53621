"""Event validation derived from `schemas/event.schema.json`, the single source of truth (SPEC §1).

Valid items take a compiled fast path (fastjsonschema); an item that fails it is re-checked with
`jsonschema` to collect every per-field message. Rules a schema cannot express — time bounds relative to
now, the serialized size of `properties` — are checked here after the schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import orjson

from cxpulse.domain.events import DEFAULT_TOUCHPOINT, DEFAULT_TRIAL_DAYS, UNKNOWN, Event, EventType

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "schemas" / "event.schema.json"
MAX_FUTURE_MS = 5 * 60 * 1000
MAX_PROPERTIES_BYTES = 8 * 1024
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class Rejected:
    index: int
    errors: tuple[FieldError, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "errors": [e.to_dict() for e in self.errors]}


@cache
def event_schema() -> dict[str, Any]:
    """The event JSON Schema, loaded once from `schemas/` (bundled next to the package when installed)."""
    path = SCHEMA_PATH
    if not path.exists():  # installed from a wheel: the schema ships as package data
        path = Path(__file__).resolve().parents[1] / "schemas" / "event.schema.json"
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


@cache
def _fast_validator() -> Callable[[Any], Any]:
    validator: Callable[[Any], Any] = fastjsonschema.compile(event_schema())
    return validator


@cache
def _full_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(event_schema())


def _field_of(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return ".".join(p for p in (path, missing) if p)
    if error.validator == "propertyNames" or error.validator == "additionalProperties":
        return path or "(root)"
    return path or "(root)"


def _message_of(error: jsonschema.ValidationError, item: Any) -> str:
    v = error.validator
    if v == "required":
        return "is required"
    if v == "additionalProperties":
        extras = sorted(set(item) - set(event_schema()["properties"])) if isinstance(item, dict) else []
        return f"unknown field(s) {', '.join(map(repr, extras))}; put custom data in 'properties'"
    if v == "propertyNames":
        return f"field {error.instance!r} is not allowed for type {item.get('type')!r}"
    if v == "enum":
        return f"must be one of {', '.join(map(str, error.validator_value))}; got {error.instance!r}"
    if v == "type":
        return f"must be of type {error.validator_value}; got {type(error.instance).__name__}"
    if v in ("minimum", "maximum"):
        return f"{error.instance!r} is outside the allowed range ({error.message.split(' is ')[-1]})"
    if v == "maxLength":
        return f"is longer than {error.validator_value} characters"
    if v == "minLength":
        return f"must be at least {error.validator_value} character(s)"
    if v == "pattern":
        if error.absolute_path and error.absolute_path[-1] == "occurred_at":
            return "must be an RFC 3339 timestamp with an offset, e.g. 2026-11-25T08:30:00Z"
        return f"{error.instance!r} does not match {error.validator_value}"
    if v is False or error.validator == "false":
        return "is not allowed here"
    return str(error.message)


def _schema_errors(item: Any) -> list[FieldError]:
    errors = []
    for err in _full_validator().iter_errors(item):
        for leaf in _leaves(err):
            errors.append(FieldError(_field_of(leaf), _message_of(leaf, item)))
    seen: set[FieldError] = set()
    return [e for e in errors if not (e in seen or seen.add(e))]  # type: ignore[func-returns-value]


def _leaves(error: jsonschema.ValidationError) -> Iterable[jsonschema.ValidationError]:
    if error.context:
        for sub in error.context:
            yield from _leaves(sub)
    else:
        yield error


def parse_timestamp_ms(text: str) -> int:
    """RFC 3339 text (offset required) to epoch milliseconds. Raises ValueError otherwise."""
    dt = datetime.fromisoformat(text.replace("z", "Z"))
    if dt.tzinfo is None:
        raise ValueError("timestamp needs an offset (Z or ±hh:mm)")
    return int(dt.timestamp() * 1000)


def validate_event(item: Any, now_ms: int, retention_days: int) -> Event | list[FieldError]:
    """Validate one decoded JSON item; return the normalized Event or its per-field errors."""
    try:
        _fast_validator()(item)
    except fastjsonschema.JsonSchemaException:
        errors = _schema_errors(item)
        return errors or [FieldError("(root)", "does not match the event schema")]
    try:
        occurred_ms = parse_timestamp_ms(item["occurred_at"])
    except ValueError as exc:
        return [FieldError("occurred_at", f"not a valid RFC 3339 timestamp: {exc}")]
    errors = []
    if occurred_ms > now_ms + MAX_FUTURE_MS:
        errors.append(FieldError("occurred_at", "is more than 5 minutes in the future"))
    if occurred_ms < now_ms - retention_days * DAY_MS:
        errors.append(FieldError("occurred_at", f"is older than the retention of {retention_days} days"))
    props = item.get("properties")
    properties = "{}" if props is None else orjson.dumps(props).decode()
    if len(properties.encode()) > MAX_PROPERTIES_BYTES:
        errors.append(FieldError("properties", f"is larger than {MAX_PROPERTIES_BYTES} bytes serialized"))
    if errors:
        return errors
    etype = item["type"]
    scale = 0
    if etype == EventType.SURVEY_ANSWER:
        scale = (
            10
            if item["survey"] == "nps"
            else 7
            if item.get("scale") == "1-7" or item["survey"] == "ces"
            else 5
        )
    return Event(
        event_id=item["event_id"],
        type=etype,
        occurred_ms=occurred_ms,
        customer_id=item["customer_id"],
        touchpoint=item.get("touchpoint") or DEFAULT_TOUCHPOINT[etype],
        channel=item.get("channel") or UNKNOWN,
        segment=item.get("segment") or UNKNOWN,
        survey=item.get("survey", ""),
        score=item.get("score"),
        scale=scale,
        comment=item.get("comment", ""),
        case_id=item.get("case_id", ""),
        order_id=item.get("order_id", ""),
        amount=None if item.get("amount") is None else float(item["amount"]),
        currency=item.get("currency", ""),
        referral=bool(item.get("referral", False)) or "referrer_id" in item,
        referrer_id=item.get("referrer_id", ""),
        trial_days=int(item.get("trial_days", DEFAULT_TRIAL_DAYS)) if etype == EventType.TRIAL_START else 0,
        plan=item.get("plan", ""),
        reason=item.get("reason", ""),
        properties=properties,
    )


def validate_batch(items: list[Any], now_ms: int, retention_days: int) -> tuple[list[Event], list[Rejected]]:
    """Validate a batch; valid items are kept even when others are rejected."""
    accepted: list[Event] = []
    rejected: list[Rejected] = []
    for index, item in enumerate(items):
        result = validate_event(item, now_ms, retention_days)
        if isinstance(result, Event):
            accepted.append(result)
        else:
            rejected.append(Rejected(index, tuple(result)))
    return accepted, rejected
