"""Close-the-loop response rules (SPEC §4): which survey answers notify, and at most how often.

Everything works in event time, so replaying the same events makes the same decisions, and the
notification id is derived from the rule and the event, so a replayed or duplicated answer yields the
same id and the outbox delivers it once.
"""

from __future__ import annotations

from cxpulse.domain.alerts import ids
from cxpulse.domain.alerts.rules.response import ResponseRule
from cxpulse.domain.events import Event, EventType
from cxpulse.domain.windows import UNIT_MS

#: An answer that occurred longer ago than this (as of processing) is history, not a customer to call.
LATE_MS = 24 * UNIT_MS["h"]


def default_scores(survey: str, scale: int) -> frozenset[int]:
    """The unhappy answers: NPS detractors 0–6, CSAT 1–2 (1–5 scale) or 1–3 (1–7), CES 6–7."""
    if survey == "nps":
        return frozenset(range(0, 7))
    if survey == "csat":
        return frozenset(range(1, 4 if scale == 7 else 3))
    if survey == "ces":
        return frozenset({6, 7})
    return frozenset()


def response_matches(rule: ResponseRule, event: Event, now_ms: int) -> bool:
    """Whether `event` is an answer this rule notifies about (cooldown aside)."""
    if not rule.enabled or event.type != EventType.SURVEY_ANSWER or event.survey != rule.survey:
        return False
    if event.score is None or now_ms - event.occurred_ms > LATE_MS:
        return False
    scores = rule.scores if rule.scores is not None else default_scores(event.survey, event.scale)
    if event.score not in scores:
        return False
    dims = {"touchpoint": event.touchpoint, "channel": event.channel, "segment": event.segment}
    return all(dims.get(key) == value for key, value in rule.filters.items())


def cooldown_allows(last_ms: int | None, answer_ms: int, cooldown_ms: int) -> bool:
    """Whether an answer at `answer_ms` may notify when the customer's last notified answer (same rule)
    occurred at `last_ms`. Compared both ways in event time, so an out-of-order earlier answer inside
    the cooldown is held back too, and the decision does not depend on when it is processed."""
    return last_ms is None or abs(answer_ms - last_ms) >= cooldown_ms


def notification_id(rule_id: str, event_id: str) -> str:
    """The webhook-id of the notification an answer causes: the same for a replay of the same event."""
    return ids.notification_id(rule_id, f"event:{event_id}")
