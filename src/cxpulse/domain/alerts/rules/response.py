"""Response rules (SPEC §4, type `response`, close the loop): notify when one customer answers a survey
with an unhappy score, at most once per customer and rule per `cooldown`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cxpulse.domain.alerts.rules.errors import FieldErrors, RuleError
from cxpulse.domain.alerts.rules.shared_fields import SharedFields
from cxpulse.domain.alerts.rules.targets import Target, target_to_json
from cxpulse.domain.windows import UNIT_MS, format_duration

SURVEY_SCORES: dict[str, range] = {"nps": range(0, 11), "csat": range(1, 8), "ces": range(1, 8)}

_RESPONSE_FIELDS = frozenset(
    {"id", "type", "name", "survey", "scores", "filters", "cooldown", "notify", "enabled"}
)


@dataclass(frozen=True, slots=True)
class ResponseRule:
    id: str
    name: str
    survey: str
    #: None: the survey's default "unhappy" scores for the answer's scale (see responses.default_scores).
    scores: frozenset[int] | None = None
    filters: Mapping[str, str] = field(default_factory=dict)
    cooldown_ms: int = 7 * UNIT_MS["d"]
    notify: tuple[Target, ...] = ()
    enabled: bool = True


def parse_response_rule(data: Mapping[str, Any], errors: FieldErrors, shared: SharedFields) -> ResponseRule:
    """The response rule's own fields, with SPEC §4 defaults; raises RuleError with every bad field (those
    already in `errors` too)."""
    errors.unknown(data, _RESPONSE_FIELDS)
    survey = errors.string(data, "survey", "survey")
    if survey is not None and survey not in SURVEY_SCORES:
        errors.add("survey", "must be nps, csat or ces")
        survey = None
    scores = _scores(data.get("scores"), survey, errors)
    cooldown = errors.duration(data, "cooldown", "7d", allow_zero=True)
    if errors.items:
        raise RuleError(errors.items)
    name = shared.name
    assert name is not None and survey is not None and cooldown is not None
    return ResponseRule(
        shared.id, name, survey, scores, shared.filters, cooldown, shared.notify, shared.enabled
    )


def _scores(data: object, survey: str | None, errors: FieldErrors) -> frozenset[int] | None:
    if data is None:
        return None
    if not isinstance(data, list) or not data:
        errors.add("scores", "must be a non-empty list of integers")
        return None
    valid = SURVEY_SCORES.get(survey or "", range(0, 11))
    out = set()
    for i, score in enumerate(data):
        if isinstance(score, bool) or not isinstance(score, int) or score not in valid:
            errors.add(f"scores[{i}]", f"must be an integer {valid.start}–{valid.stop - 1}")
        else:
            out.add(score)
    return frozenset(out)


def response_rule_to_json(rule: ResponseRule, *, mask_secrets: bool = True) -> dict[str, Any]:
    """See `rule.rule_to_json`."""
    return {
        "id": rule.id,
        "type": "response",
        "name": rule.name,
        "survey": rule.survey,
        "scores": None if rule.scores is None else sorted(rule.scores),
        "filters": dict(rule.filters),
        "cooldown": format_duration(rule.cooldown_ms),
        "notify": [target_to_json(t, mask_secrets=mask_secrets) for t in rule.notify],
        "enabled": rule.enabled,
    }
