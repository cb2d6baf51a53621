"""Metric rules (SPEC §4, type `metric`): a KPI over a window that crosses a threshold (`below` / `above`)
or changes against a baseline (`decrease` / `increase` / `worsen` / `improve`).

The metric's direction is taken when the rule is parsed — it turns `worsen` / `improve` into `decrease` /
`increase` and reads a change as better or worse — so the evaluator never needs the metric registry and a
stored rule re-parses to the same model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from cxpulse.domain.alerts.rules.errors import MISSING, FieldErrors, RuleError
from cxpulse.domain.alerts.rules.shared_fields import SharedFields
from cxpulse.domain.alerts.rules.targets import Target, target_to_json
from cxpulse.domain.metrics import Direction
from cxpulse.domain.windows import UNIT_MS, WindowError, format_duration, parse_duration, parse_window


class Op(StrEnum):
    BELOW = "below"
    ABOVE = "above"
    DECREASE = "decrease"
    INCREASE = "increase"
    WORSEN = "worsen"
    IMPROVE = "improve"


THRESHOLD_OPS = frozenset({Op.BELOW, Op.ABOVE})
SEVERITIES = ("info", "warning", "critical")

Change = Literal["worse", "better"]


@dataclass(frozen=True, slots=True)
class Condition:
    """`op` as written; `baseline_ms` is None for `"previous"` (the window just before)."""

    op: Op
    threshold: float | None = None
    by: float | None = None
    baseline: str = "previous"
    baseline_ms: int | None = None
    require_significant: bool = True


@dataclass(frozen=True, slots=True)
class MetricRule:
    id: str
    name: str
    metric: str
    window: str
    window_ms: int
    filters: Mapping[str, str]
    condition: Condition
    recover: float | None = None
    confidence: bool = False
    min_samples: int = 30
    for_ms: int = 5 * UNIT_MS["m"]
    keep_firing_for_ms: int = 0
    severity: str = "warning"
    notify: tuple[Target, ...] = ()
    enabled: bool = True
    #: The metric's direction when the rule was parsed (decides `worsen` / `improve` and `change`).
    direction: Direction = Direction.HIGHER_IS_BETTER

    @property
    def op(self) -> Op:
        """The effective comparison: `below`, `above`, `decrease` or `increase`."""
        op = self.condition.op
        if op is Op.WORSEN:
            return Op.DECREASE if self.direction is Direction.HIGHER_IS_BETTER else Op.INCREASE
        if op is Op.IMPROVE:
            return Op.INCREASE if self.direction is Direction.HIGHER_IS_BETTER else Op.DECREASE
        return op

    @property
    def limit(self) -> float:
        """The firing threshold (`threshold` for below/above, `by` for a change)."""
        value = self.condition.threshold if self.op in THRESHOLD_OPS else self.condition.by
        assert value is not None  # parse_rule guarantees it
        return value

    @property
    def recover_limit(self) -> float:
        """Where a firing rule resolves: `recover`, or the firing threshold (no hysteresis)."""
        return self.limit if self.recover is None else self.recover

    @property
    def change(self) -> Change | None:
        """`worse` / `better` for a change rule, read with the metric's direction (a CES increase is
        worse); None for a threshold rule."""
        if self.op in THRESHOLD_OPS:
            return None
        up_is_good = self.direction is Direction.HIGHER_IS_BETTER
        return "better" if (self.op is Op.INCREASE) == up_is_good else "worse"


_METRIC_FIELDS = frozenset(
    {
        "id",
        "type",
        "name",
        "metric",
        "window",
        "filters",
        "condition",
        "recover",
        "confidence",
        "min_samples",
        "for",
        "keep_firing_for",
        "severity",
        "notify",
        "enabled",
    }
)
_CONDITION_FIELDS = frozenset({"op", "threshold", "by", "baseline", "require_significant"})


def parse_metric_rule(
    data: Mapping[str, Any], errors: FieldErrors, shared: SharedFields, metrics: Mapping[str, Direction]
) -> MetricRule:
    """The metric rule's own fields, with SPEC §4 defaults; raises RuleError with every bad field (those
    already in `errors` too). `metrics` maps each metric id to its direction."""
    errors.unknown(data, _METRIC_FIELDS)
    metric = errors.string(data, "metric", "metric")
    if metric is not None and metric not in metrics:
        errors.add("metric", f"unknown metric; one of {', '.join(sorted(metrics))}")
        metric = None
    window = errors.string(data, "window", "window", "24h")
    window_ms = None
    if window is not None:
        try:
            window_ms = parse_window(window)
        except WindowError as exc:
            errors.add("window", str(exc))
    direction = metrics.get(metric or "", Direction.HIGHER_IS_BETTER)
    condition = _condition(data.get("condition", MISSING), errors)
    recover = errors.number(data, "recover", "recover")
    if condition is not None and recover is not None:
        _check_recover(condition, direction, recover, errors)
    min_samples = data.get("min_samples", 30)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        errors.add("min_samples", "must be an integer ≥ 1")
    severity = data.get("severity", "warning")
    if severity not in SEVERITIES:
        errors.add("severity", f"must be one of {', '.join(SEVERITIES)}")
    confidence = errors.boolean(data, "confidence", "confidence", False)
    for_ms = errors.duration(data, "for", "5m", allow_zero=True)
    keep_ms = errors.duration(data, "keep_firing_for", "0s", allow_zero=True)
    if errors.items:
        raise RuleError(errors.items)
    name = shared.name
    assert name and metric and window and window_ms and condition and for_ms is not None
    assert keep_ms is not None
    return MetricRule(
        shared.id,
        name,
        metric,
        window.strip(),
        window_ms,
        shared.filters,
        condition,
        recover,
        confidence,
        min_samples,
        for_ms,
        keep_ms,
        severity,
        shared.notify,
        shared.enabled,
        direction,
    )


def _condition(data: object, errors: FieldErrors) -> Condition | None:
    if data is MISSING:
        errors.add("condition", "is required")
        return None
    if not isinstance(data, Mapping):
        errors.add("condition", "must be an object such as {'op': 'below', 'threshold': 20}")
        return None
    errors.unknown(data, _CONDITION_FIELDS, "condition.")
    raw_op = data.get("op")
    if raw_op not in tuple(Op):
        errors.add("condition.op", f"must be one of {', '.join(Op)}")
        return None
    op = Op(raw_op)
    threshold = errors.number(data, "threshold", "condition.threshold")
    by = errors.number(data, "by", "condition.by")
    require = errors.boolean(data, "require_significant", "condition.require_significant", True)
    if op in THRESHOLD_OPS:
        if "threshold" not in data:
            errors.add("condition.threshold", f"is required for {op}")
        for key in ("by", "baseline", "require_significant"):
            if key in data:
                errors.add(f"condition.{key}", "only applies to decrease, increase, worsen and improve")
        return None if threshold is None else Condition(op, threshold=threshold)
    if "threshold" in data:
        errors.add("condition.threshold", "only applies to below and above (use by for a change)")
    if "by" not in data:
        errors.add("condition.by", f"is required for {op}")
    elif by is not None and by <= 0:
        errors.add("condition.by", "must be greater than 0 (the size of the change)")
        by = None
    baseline = data.get("baseline", "previous")
    baseline_ms = None
    if baseline != "previous":
        try:
            baseline_ms = parse_duration(baseline, name="baseline")
        except WindowError:
            errors.add(
                "condition.baseline",
                f'must be "previous" or a window up to 400d such as 7d; got {baseline!r}',
            )
            return None
    if by is None:
        return None
    return Condition(
        op, by=by, baseline=baseline.strip(), baseline_ms=baseline_ms, require_significant=require
    )


def _check_recover(condition: Condition, direction: Direction, recover: float, errors: FieldErrors) -> None:
    """Hysteresis must widen the firing band, never narrow it (or the rule would flap)."""
    probe = MetricRule("", "", "", "", 0, {}, condition, direction=direction)
    limit = probe.limit
    if probe.op is Op.BELOW and recover < limit:
        errors.add("recover", f"must be ≥ the threshold ({limit:g}) for below")
    elif probe.op is Op.ABOVE and recover > limit:
        errors.add("recover", f"must be ≤ the threshold ({limit:g}) for above")
    elif probe.op not in THRESHOLD_OPS and not 0 <= recover <= limit:
        errors.add("recover", f"must be between 0 and by ({limit:g}) for a change")


def condition_to_json(condition: Condition) -> dict[str, Any]:
    if condition.op in THRESHOLD_OPS:
        return {"op": str(condition.op), "threshold": condition.threshold}
    return {
        "op": str(condition.op),
        "by": condition.by,
        "baseline": condition.baseline,
        "require_significant": condition.require_significant,
    }


def metric_rule_to_json(rule: MetricRule, *, mask_secrets: bool = True) -> dict[str, Any]:
    """See `rule.rule_to_json`."""
    return {
        "id": rule.id,
        "type": "metric",
        "name": rule.name,
        "metric": rule.metric,
        "window": rule.window,
        "filters": dict(rule.filters),
        "condition": condition_to_json(rule.condition),
        "recover": rule.recover,
        "confidence": rule.confidence,
        "min_samples": rule.min_samples,
        "for": format_duration(rule.for_ms),
        "keep_firing_for": format_duration(rule.keep_firing_for_ms),
        "severity": rule.severity,
        "notify": [target_to_json(t, mask_secrets=mask_secrets) for t in rule.notify],
        "enabled": rule.enabled,
    }
