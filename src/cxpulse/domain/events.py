"""The normalized touchpoint event: what validation produces and every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    SURVEY_ANSWER = "survey_answer"
    PURCHASE = "purchase"
    SUPPORT_CONTACT = "support_contact"
    SUPPORT_RESOLVED = "support_resolved"
    LOGIN = "login"
    TRIAL_START = "trial_start"
    SUBSCRIPTION_START = "subscription_start"
    SUBSCRIPTION_CANCEL = "subscription_cancel"


DEFAULT_TOUCHPOINT: dict[str, str] = {
    EventType.SURVEY_ANSWER: "survey",
    EventType.PURCHASE: "checkout",
    EventType.SUPPORT_CONTACT: "support",
    EventType.SUPPORT_RESOLVED: "support",
    EventType.LOGIN: "usage",
    EventType.TRIAL_START: "onboarding",
    EventType.SUBSCRIPTION_START: "subscription",
    EventType.SUBSCRIPTION_CANCEL: "subscription",
}
UNKNOWN = "unknown"
DEFAULT_TRIAL_DAYS = 14

#: Event types that change per-customer keyed state (the rest are aggregated straight from the store).
STATEFUL_TYPES = frozenset(
    {
        EventType.SUPPORT_CONTACT,
        EventType.SUPPORT_RESOLVED,
        EventType.TRIAL_START,
        EventType.SUBSCRIPTION_START,
        EventType.SUBSCRIPTION_CANCEL,
        EventType.PURCHASE,
    }
)


@dataclass(frozen=True, slots=True)
class Event:
    """One accepted event, with defaults applied and time as epoch milliseconds (UTC)."""

    event_id: str
    type: str
    occurred_ms: int
    customer_id: str
    touchpoint: str
    channel: str = UNKNOWN
    segment: str = UNKNOWN
    survey: str = ""
    score: int | None = None
    scale: int = 0
    comment: str = ""
    case_id: str = ""
    order_id: str = ""
    amount: float | None = None
    currency: str = ""
    referral: bool = False
    referrer_id: str = ""
    trial_days: int = 0
    plan: str = ""
    reason: str = ""
    properties: str = "{}"

    def to_row(self) -> dict[str, Any]:
        """The event as a row of the `events` table."""
        return {
            "event_id": self.event_id,
            "type": self.type,
            "occurred_ms": self.occurred_ms,
            "customer_id": self.customer_id,
            "touchpoint": self.touchpoint,
            "channel": self.channel,
            "segment": self.segment,
            "survey": self.survey,
            "score": self.score,
            "scale": self.scale,
            "comment": self.comment,
            "case_id": self.case_id,
            "order_id": self.order_id,
            "amount": self.amount,
            "currency": self.currency,
            "referral": 1 if self.referral else 0,
            "referrer_id": self.referrer_id,
            "trial_days": self.trial_days,
            "plan": self.plan,
            "reason": self.reason,
            "properties": self.properties,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Event:
        """Inverse of `to_row` (extra columns such as ingest bookkeeping are ignored)."""
        return cls(
            event_id=row["event_id"],
            type=row["type"],
            occurred_ms=int(row["occurred_ms"]),
            customer_id=row["customer_id"],
            touchpoint=row["touchpoint"],
            channel=row["channel"],
            segment=row["segment"],
            survey=row["survey"],
            score=None if row["score"] is None else int(row["score"]),
            scale=int(row["scale"]),
            comment=row["comment"],
            case_id=row["case_id"],
            order_id=row["order_id"],
            amount=None if row["amount"] is None else float(row["amount"]),
            currency=row["currency"],
            referral=bool(row["referral"]),
            referrer_id=row["referrer_id"],
            trial_days=int(row["trial_days"]),
            plan=row["plan"],
            reason=row["reason"],
            properties=row["properties"],
        )
