"""Event validation derived from `schemas/event.schema.json`, the single source of truth (SPEC §1).

Valid items take a plain-Python fast path compiled from the schema (`fast_validation.check`, several times
cheaper than fastjsonschema); an item it is not sure about takes fastjsonschema, and an item that fails that
is re-checked with `jsonschema` to collect every per-field message. Rules a schema cannot express — time
bounds relative to now, the serialized size of `properties` — are checked here after the schema.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime
from functools import cache
from typing import Any

import fastjsonschema
import jsonschema
import orjson

from cxpulse.domain import fast_validation
from cxpulse.domain.event_schema import event_schema
from cxpulse.domain.events import DEFAULT_TOUCHPOINT, DEFAULT_TRIAL_DAYS, UNKNOWN, Event, EventType
from cxpulse.domain.windows import DAY_MS

MAX_FUTURE_MS = 5 * 60 * 1000
MAX_PROPERTIES_BYTES = 8 * 1024
KNOWN_TYPES = frozenset(EventType)
SURVEY_ANSWER = str(EventType.SURVEY_ANSWER)
TRIAL_START = str(EventType.TRIAL_START)

#: `validate_event` builds Events positionally (keyword parsing of 21 fields costs ~0.8 µs per event).
_EVENT_FIELDS = (
    "event_id", "type", "occurred_ms", "customer_id", "touchpoint", "channel", "segment", "survey", "score",
    "scale", "comment", "case_id", "order_id", "amount", "currency", "referral", "referrer_id", "trial_days",
    "plan", "reason", "properties",
)  # fmt: skip
if tuple(f.name for f in fields(Event)) != _EVENT_FIELDS:  # pragma: no cover - guards the positional call
    raise ImportError(
        "Event's fields changed: update _EVENT_FIELDS and the Event(...) call in validate_event"
    )


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
def _fast_validator(event_type: str) -> Callable[[Any], Any]:
    """The schema specialized to one `type`: its `if type == …` branches resolved ahead of time.

    Same rules as the whole schema, without paying for every other type's `if` on each event (3× faster).
    """
    schema = copy.deepcopy(event_schema())
    schema["properties"]["type"] = {"const": event_type}
    branches = schema["allOf"]
    schema["allOf"] = [b["then"] for b in branches if _branch_matches(b["if"], event_type)]
    validator: Callable[[Any], Any] = fastjsonschema.compile(schema)
    return validator


def _branch_matches(condition: dict[str, Any], event_type: str) -> bool:
    rule = condition["properties"]["type"]
    return bool(rule.get("const") == event_type or event_type in rule.get("enum", ()))


@cache
def _full_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(event_schema())


_JSON_TYPES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "list": "array",
    "dict": "object",
    "NoneType": "null",
}
_PATTERN_HINTS = {
    "^[a-z0-9_.-]+$": "must be lowercase a-z, 0-9, '_', '.' or '-' only (e.g. 'checkout')",
    "^[A-Z]{3}$": "must be a 3-letter ISO 4217 currency code in capitals (e.g. 'EUR')",
}


def _show(value: Any, limit: int = 60) -> str:
    """A value as it appears in a message, cut short so that a huge field does not flood the answer."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _score_range(item: dict[str, Any]) -> tuple[int, int, str]:
    """The valid score range of a survey answer and a hint on how to pick another scale."""
    survey = item.get("survey")
    if survey == "nps":
        return 0, 10, ""
    if survey == "ces":
        return 1, 7, ""
    if item.get("scale") == "1-7":
        return 1, 7, ""
    return 1, 5, ' (send "scale": "1-7" for a 7-point CSAT)'


def _describe(error: jsonschema.ValidationError, item: Any) -> list[FieldError]:
    """Per-field errors for one leaf schema error: the field it concerns and what to send instead."""
    path = ".".join(str(p) for p in error.absolute_path)
    field = path or "(root)"
    v = error.validator
    known = event_schema()["properties"]
    etype = item.get("type") if isinstance(item, dict) else None
    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return [FieldError(".".join(p for p in (path, missing) if p), "is required")]
    if v == "additionalProperties" and isinstance(item, dict):
        return [
            FieldError(name or '""', "is not an event field; put custom data in 'properties'")  # "" too
            for name in sorted(set(item) - set(known))
        ]
    if "propertyNames" in error.absolute_schema_path:
        name = str(error.instance)
        if name not in known:  # reported once, by additionalProperties
            return []
        return [FieldError(name, f"is not a field of {etype!r} events; remove it or move it to 'properties'")]
    if v is None:  # a `false` subschema: fields present that this kind of event must not have
        node: Any = event_schema()
        for key in error.absolute_schema_path:
            node = node[key]
        names = [k for k, sub in node.items() if sub is False and k in item] if isinstance(node, dict) else []
        if names == ["scale"] or not names:
            survey = item.get("survey") if isinstance(item, dict) else None
            return [FieldError("scale", f"only applies to csat answers; remove it from {survey} answers")]
        return [FieldError(n, "is not allowed here; remove it") for n in names]
    if v == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return [FieldError(field, f"must be one of {allowed}; got {_show(error.instance)}")]
    if v == "type":
        got = _JSON_TYPES.get(type(error.instance).__name__, type(error.instance).__name__)
        return [
            FieldError(field, f"must be of type {error.validator_value}; got {got} {_show(error.instance)}")
        ]
    if v in ("minimum", "maximum"):
        if path == "score" and isinstance(item, dict):
            lo, hi, hint = _score_range(item)
            return [
                FieldError(
                    "score",
                    f"must be from {lo} to {hi} for {item.get('survey')} answers{hint}; "
                    f"got {error.instance!r}",
                )
            ]
        bound = "at least" if v == "minimum" else "at most"
        return [FieldError(field, f"must be {bound} {error.validator_value}; got {error.instance!r}")]
    if v == "maxLength":
        return [FieldError(field, f"is longer than {error.validator_value} characters; shorten it")]
    if v == "minLength":
        return [
            FieldError(field, f"must be at least {error.validator_value} character(s); got an empty string")
        ]
    if v == "pattern":
        if error.instance == "":  # already reported by minLength
            return []
        if path == "occurred_at":
            message = "must be an RFC 3339 timestamp with an offset, e.g. 2026-11-25T08:30:00Z"
        else:
            message = _PATTERN_HINTS.get(error.validator_value, f"must match {error.validator_value}")
        return [FieldError(field, f"{message}; got {_show(error.instance)}")]
    return [FieldError(field, str(error.message))]


def _schema_errors(item: Any) -> list[FieldError]:
    errors = []
    for err in _full_validator().iter_errors(item):
        for leaf in _leaves(err):
            errors.extend(_describe(leaf, item))
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
    if not fast_validation.check(item):  # not sure: the full path decides, and words the errors
        event_type = item.get("type") if isinstance(item, dict) else None
        try:
            if not isinstance(event_type, str) or event_type not in KNOWN_TYPES:  # [] is unhashable
                raise fastjsonschema.JsonSchemaException("unknown type")
            _fast_validator(event_type)(item)
        except fastjsonschema.JsonSchemaException:
            errors = _schema_errors(item)
            return errors or [FieldError("(root)", "does not match the event schema")]
    try:
        occurred_ms = parse_timestamp_ms(item["occurred_at"])
    except ValueError as exc:
        return [FieldError("occurred_at", f"not a valid RFC 3339 timestamp: {exc}")]
    get = item.get
    props = get("properties")
    raw = b"{}" if props is None else orjson.dumps(props)  # orjson writes UTF-8: len() is the byte size
    too_new = occurred_ms > now_ms + MAX_FUTURE_MS
    too_old = occurred_ms < now_ms - retention_days * DAY_MS
    if too_new or too_old or len(raw) > MAX_PROPERTIES_BYTES:
        errors = []
        if too_new:
            errors.append(FieldError("occurred_at", "is more than 5 minutes in the future"))
        if too_old:
            errors.append(FieldError("occurred_at", f"is older than the retention of {retention_days} days"))
        if len(raw) > MAX_PROPERTIES_BYTES:
            errors.append(FieldError("properties", f"is larger than {MAX_PROPERTIES_BYTES} bytes serialized"))
        return errors
    etype = item["type"]
    scale = 0
    if etype == SURVEY_ANSWER:
        survey = item["survey"]
        scale = 10 if survey == "nps" else 7 if survey == "ces" or get("scale") == "1-7" else 5
    score = get("score")
    amount = get("amount")
    referrer_id = get("referrer_id", "")
    return Event(
        item["event_id"],
        etype,
        occurred_ms,
        item["customer_id"],
        get("touchpoint") or DEFAULT_TOUCHPOINT[etype],
        get("channel") or UNKNOWN,
        get("segment") or UNKNOWN,
        get("survey", ""),
        None if score is None else int(score),  # 9.0 is an integer
        scale,
        get("comment", ""),
        get("case_id", ""),
        get("order_id", ""),
        None if amount is None else float(amount),
        get("currency", ""),
        bool(get("referral", False)) or "referrer_id" in item,
        referrer_id,
        int(get("trial_days", DEFAULT_TRIAL_DAYS)) if etype == TRIAL_START else 0,
        get("plan", ""),
        get("reason", ""),
        "{}" if props is None else raw.decode(),
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
