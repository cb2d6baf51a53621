"""Alert endpoints of SPEC §4: the rules collection, current states, the transition log and every
notification with its delivery attempts. Thin: the `AlertService` does the work, `RuleError` /
`UnknownRule` / `RuleExists` become 422 / 404 / 409 in `cxpulse.http.errors`, secrets are masked in every
answer (`rule_to_json`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response

from cxpulse.domain.alerts.evaluation import AlertState
from cxpulse.http.deps import AlertsDep
from cxpulse.http.params import bad_parameter
from services.api.models import (
    AlertList,
    AlertRuleList,
    AlertRuleOut,
    NotificationList,
    TransitionList,
)

#: The rules collection (SPEC §8: `admin`); the states, transitions and notifications are `router` (`read`:
#: the dashboard shows firing alerts and close-the-loop answers).
rules = APIRouter(tags=["alerts"])
router = APIRouter(tags=["alerts"])

_METRIC_EXAMPLE = {
    "type": "metric",
    "name": "Checkout NPS falling",
    "metric": "nps",
    "window": "24h",
    "filters": {"touchpoint": "checkout"},
    "condition": {"op": "below", "threshold": 20},
    "recover": 25,
    "min_samples": 30,
    "for": "5m",
    "severity": "warning",
    "notify": [{"type": "webhook", "url": "https://example.com/hooks/cx", "secret": "whsec_…"}],
}
_RESPONSE_EXAMPLE = {
    "type": "response",
    "name": "Call NPS detractors",
    "survey": "nps",
    "filters": {"touchpoint": "checkout"},
    "cooldown": "7d",
    "notify": [{"type": "slack", "url": "https://hooks.slack.com/services/…"}],
}
RuleBody = Annotated[
    Any,
    Body(
        description="A metric or response rule (SPEC §4). `id` (on create) is optional; `state` is ignored.",
        openapi_examples={
            "metric": {"summary": "a metric rule", "value": _METRIC_EXAMPLE},
            "response": {"summary": "a close-the-loop response rule", "value": _RESPONSE_EXAMPLE},
        },
    ),
]
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no rule with this id"},
    422: {"description": "the rule is not valid; `details` names every bad field"},
}


#: OpenAPI links from a created rule to what can be done with it (clients and stateful fuzzing follow them).
_RULE_LINKS = {
    name: {"operationId": operation, "parameters": {"rule_id": "$response.body#/id"}}
    for name, operation in (
        ("GetRule", "get_alert_rule"),
        ("ReplaceRule", "replace_alert_rule"),
        ("DeleteRule", "delete_alert_rule"),
    )
}


@rules.post(
    "/v1/alert-rules",
    status_code=201,
    summary="Create an alert rule",
    response_model=AlertRuleOut,
    responses={
        201: {"description": "the rule as stored (secrets masked)", "links": _RULE_LINKS},
        409: {"description": "a rule with the given id exists"},
        422: _ERRORS[422],
    },
)
def create_rule(alerts: AlertsDep, rule: RuleBody) -> dict[str, Any]:
    return alerts.create(rule)


@rules.get("/v1/alert-rules", summary="Every alert rule", response_model=AlertRuleList)
def list_rules(alerts: AlertsDep) -> dict[str, Any]:
    return {"rules": alerts.rules_view()}


@rules.get(
    "/v1/alert-rules/{rule_id}",
    summary="One alert rule",
    operation_id="get_alert_rule",
    response_model=AlertRuleOut,
    responses={404: _ERRORS[404]},
)
def get_rule(alerts: AlertsDep, rule_id: str) -> dict[str, Any]:
    return alerts.get(rule_id)


@rules.put(
    "/v1/alert-rules/{rule_id}",
    summary="Replace an alert rule (a masked secret sent back keeps the stored one)",
    operation_id="replace_alert_rule",
    response_model=AlertRuleOut,
    responses=_ERRORS,
)
def replace_rule(alerts: AlertsDep, rule_id: str, rule: RuleBody) -> dict[str, Any]:
    return alerts.replace(rule_id, rule)


@rules.delete(
    "/v1/alert-rules/{rule_id}",
    status_code=204,
    summary="Delete an alert rule",
    operation_id="delete_alert_rule",
    response_class=Response,
    responses={404: _ERRORS[404]},
)
def delete_rule(alerts: AlertsDep, rule_id: str) -> Response:
    alerts.delete(rule_id)
    return Response(status_code=204)


@router.get(
    "/v1/alerts",
    summary="The current state of every metric rule, with its last reading",
    response_model=AlertList,
)
def current_alerts(
    alerts: AlertsDep,
    state: Annotated[str | None, Query(description="ok, pending, firing or no_data")] = None,
) -> dict[str, Any]:
    wanted = None
    if state:
        try:
            wanted = AlertState(state)
        except ValueError:
            raise bad_parameter(
                "state", f"must be one of {', '.join(s.value for s in AlertState)}; got {state!r}"
            ) from None
    return {"alerts": alerts.alerts(wanted)}


@router.get(
    "/v1/alerts/transitions",
    summary="Every state change of the metric rules, newest first",
    response_model=TransitionList,
)
def transitions(
    alerts: AlertsDep,
    rule_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> dict[str, Any]:
    return {"transitions": alerts.transitions(rule_id or None, limit)}


@router.get(
    "/v1/alerts/notifications",
    summary="The newest notifications, each with its targets' status and every delivery attempt",
    response_model=NotificationList,
)
def notifications(
    alerts: AlertsDep,
    rule_id: str | None = None,
    kind: Literal["alert", "response"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
) -> dict[str, Any]:
    return {"notifications": alerts.notifications(rule_id or None, kind, limit)}
