"""The wire format of `cx.events`: each event as its public SPEC §1 JSON, keyed by `customer_id`.

Ingest writes the public format (not an internal row) so that producers may also write straight to the
topic, and the workers validate every message the same way whoever wrote it. `encode_event` is the inverse
of validation: `validate_event(json.loads(encode_event(e)))` gives back `e` (a unit test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from cxpulse.domain.events import Event, EventType
from cxpulse.domain.validation import validate_event
from cxpulse.domain.windows import iso_ms


def event_to_json(event: Event) -> dict[str, Any]:
    """The event as the SPEC §1 object (defaults written out, empty optional fields left out)."""
    out: dict[str, Any] = {
        "event_id": event.event_id,
        "type": event.type,
        "occurred_at": iso_ms(event.occurred_ms),
        "customer_id": event.customer_id,
        "touchpoint": event.touchpoint,
        "channel": event.channel,
        "segment": event.segment,
    }
    kind = event.type
    if kind == EventType.SURVEY_ANSWER:
        out["survey"] = event.survey
        out["score"] = event.score
        if event.survey == "csat" and event.scale == 7:
            out["scale"] = "1-7"
        if event.comment:
            out["comment"] = event.comment
    elif kind == EventType.PURCHASE:
        for name in ("order_id", "currency", "referrer_id"):
            if getattr(event, name):
                out[name] = getattr(event, name)
        if event.amount is not None:
            out["amount"] = event.amount
        if event.referral and not event.referrer_id:
            out["referral"] = True
    elif kind in (EventType.SUPPORT_CONTACT, EventType.SUPPORT_RESOLVED):
        out["case_id"] = event.case_id
    elif kind == EventType.TRIAL_START:
        out["trial_days"] = event.trial_days
    if kind in (EventType.TRIAL_START, EventType.SUBSCRIPTION_START) and event.plan:
        out["plan"] = event.plan
    if kind == EventType.SUBSCRIPTION_CANCEL and event.reason:
        out["reason"] = event.reason
    if event.properties != "{}":
        out["properties"] = orjson.Fragment(event.properties)
    return out


def encode_event(event: Event) -> bytes:
    return orjson.dumps(event_to_json(event))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why a message cannot be processed; it goes to the DLQ with the original bytes."""

    reason: str
    errors: list[dict[str, str]]


def decode_event(value: bytes | None, now_ms: int, retention_days: int) -> Event | DeadLetter:
    """Decode and validate one `cx.events` message; never raises.

    `now_ms` should be the message timestamp (not the wall clock), so a redelivered message is judged the
    same way every time.
    """
    if value is None:
        return DeadLetter("undecodable", [{"field": "(message)", "message": "the message has no value"}])
    try:
        item = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return DeadLetter("undecodable", [{"field": "(message)", "message": f"not JSON: {exc}"}])
    result = validate_event(item, now_ms, retention_days)
    if isinstance(result, Event):
        return result
    return DeadLetter("invalid", [e.to_dict() for e in result])


def dead_letter_headers(
    letter: DeadLetter, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """Kafka headers of a DLQ record, whose key and value are the original message's, byte for byte.

    (The Kafka Connect convention: the payload is left untouched, the diagnosis rides in headers.)
    """
    return [
        ("cx.dlq.reason", letter.reason.encode()),
        ("cx.dlq.errors", orjson.dumps(letter.errors)),
        ("cx.dlq.source", f"{topic}/{partition}/{offset}".encode()),
    ]
