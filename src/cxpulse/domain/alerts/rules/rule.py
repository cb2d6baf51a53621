"""A rule of either kind (SPEC §4): the `Rule` union, `parse_rule` and `rule_to_json`.

`parse_rule` is the only way in: it applies the defaults and resolves what depends on the metric (the
direction that turns `worsen` / `improve` into `decrease` / `increase`), so the evaluator never needs the
metric registry and a stored rule re-parses to the same model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cxpulse.domain.alerts.rules.errors import FieldErrors, RuleError
from cxpulse.domain.alerts.rules.metric import MetricRule, metric_rule_to_json, parse_metric_rule
from cxpulse.domain.alerts.rules.response import ResponseRule, parse_response_rule, response_rule_to_json
from cxpulse.domain.alerts.rules.shared_fields import parse_shared_fields
from cxpulse.domain.alerts.rules.targets import TargetPolicy
from cxpulse.domain.metrics import Direction

Rule = MetricRule | ResponseRule


def parse_rule(
    data: object,
    *,
    metrics: Mapping[str, Direction],
    rule_id: str,
    previous: Rule | None = None,
    target_policy: TargetPolicy | None = None,
) -> Rule:
    """Validate a rule as sent to `POST/PUT /v1/alert-rules` (or as stored) and apply SPEC §4 defaults.

    `metrics` maps each metric id to its direction. `previous` is the rule being replaced: a target whose
    secret is sent back masked (as GET shows it) keeps its stored secret. `target_policy` says where
    notifications may go (the API passes `notify.targets.target_policy(settings)`). Raises RuleError.
    """
    errors = FieldErrors()
    if not isinstance(data, Mapping):
        raise RuleError([{"field": "", "message": "a rule must be a JSON object"}])
    if "id" in data and data["id"] != rule_id:
        errors.add("id", f"does not match the rule's id {rule_id!r}")
    kind = data.get("type", "metric")
    if kind not in ("metric", "response"):
        errors.add("type", "must be metric or response")
        raise RuleError(errors.items)
    previous_targets = () if previous is None else previous.notify
    shared = parse_shared_fields(data, errors, rule_id, previous_targets, target_policy)
    if kind == "response":
        return parse_response_rule(data, errors, shared)
    return parse_metric_rule(data, errors, shared, metrics)


def rule_to_json(rule: Rule, *, mask_secrets: bool = True) -> dict[str, Any]:
    """The rule as the API shows it (and, with `mask_secrets=False`, as the store keeps it); it parses
    back to an equal rule (the public form given the rule itself as `previous`, which unmasks it)."""
    if isinstance(rule, ResponseRule):
        return response_rule_to_json(rule, mask_secrets=mask_secrets)
    return metric_rule_to_json(rule, mask_secrets=mask_secrets)
