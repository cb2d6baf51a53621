"""Alert rules (SPEC §4): the frozen model, validation that names every bad field, and the public JSON.

`parse_rule` is the only way in: it applies the defaults and resolves what depends on the metric (the
direction that turns `worsen` / `improve` into `decrease` / `increase`), so the evaluator never needs the
metric registry and a stored rule re-parses to the same model.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

from cxpulse.domain.windows import UNIT_MS, WindowError, format_duration, parse_duration, parse_window


class Direction(StrEnum):
    """Which way a metric gets better (the metric registry says it per metric)."""

    HIGHER = "higher"
    LOWER = "lower"


class Op(StrEnum):
    BELOW = "below"
    ABOVE = "above"
    DECREASE = "decrease"
    INCREASE = "increase"
    WORSEN = "worsen"
    IMPROVE = "improve"


THRESHOLD_OPS = frozenset({Op.BELOW, Op.ABOVE})
SEVERITIES = ("info", "warning", "critical")
SURVEY_SCORES: dict[str, range] = {"nps": range(0, 11), "csat": range(1, 8), "ces": range(1, 8)}
FILTER_KEYS = ("touchpoint", "channel", "segment")
_DIMENSION_VALUE = re.compile(r"^[a-z0-9_.-]{1,64}$")
MAX_NAME = 200
MAX_URL = 2048
MAX_TARGETS = 10

TargetType = Literal["webhook", "slack"]
Change = Literal["worse", "better"]


@dataclass(frozen=True, slots=True)
class Target:
    type: TargetType
    url: str
    secret: str | None = None


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
    direction: Direction = Direction.HIGHER

    @property
    def op(self) -> Op:
        """The effective comparison: `below`, `above`, `decrease` or `increase`."""
        op = self.condition.op
        if op is Op.WORSEN:
            return Op.DECREASE if self.direction is Direction.HIGHER else Op.INCREASE
        if op is Op.IMPROVE:
            return Op.INCREASE if self.direction is Direction.HIGHER else Op.DECREASE
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
        up_is_good = self.direction is Direction.HIGHER
        return "better" if (self.op is Op.INCREASE) == up_is_good else "worse"


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


Rule = MetricRule | ResponseRule


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """Where notifications may be sent (SSRF). `resolve` gives a host's addresses (the network side passes
    a DNS lookup in, so the domain stays pure); `allow_private` lifts the address check — for local
    receivers (`CXPULSE_WEBHOOK_ALLOW_PRIVATE=true`)."""

    resolve: Callable[[str], Sequence[str]]
    allow_private: bool = False


class RuleError(ValueError):
    """An invalid rule; `errors` lists every bad field as `{"field": dotted.path, "message": …}`."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


def check_target_url(url: str, policy: TargetPolicy | None = None) -> str | None:
    """Why `url` cannot be a notification target, or None. The one place the network policy lives: http(s)
    only, and with a `policy` (what the API applies to rules it is sent) no loopback, link-local, private
    or otherwise non-public address — the host's every address is checked, a host that does not resolve
    is refused. Without a policy (a rule read back from the store) only the syntax is checked."""
    if len(url) > MAX_URL:
        return f"must be at most {MAX_URL} characters"
    if any(c.isspace() for c in url):
        return "must not contain whitespace"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 — raises ValueError on a malformed port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must be an http or https URL"
    if not parts.hostname:
        return "must name a host"
    if policy is not None and not policy.allow_private:
        return _address_problem(parts.hostname, policy.resolve)
    return None


def _address_problem(host: str, resolve: Callable[[str], Sequence[str]]) -> str | None:
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a) for a in resolve(host)]
        except (OSError, ValueError, UnicodeError):
            addresses = []
        if not addresses:
            return f"host {host!r} does not resolve"
    for address in addresses:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_global and not address.is_multicast:
            continue
        kinds = ("loopback", "link_local", "unspecified", "private")
        kind = next((k for k in kinds if getattr(address, f"is_{k}")), "non-public").replace("_", "-")
        where = str(address) if host == str(address) else f"{host} is {address}"
        allow = "set CXPULSE_WEBHOOK_ALLOW_PRIVATE=true to allow it"
        return f"must not point at a {kind} address ({where}); {allow}"
    return None


def check_secret(secret: str) -> str | None:
    """Standard Webhooks secrets are base64 (optionally prefixed `whsec_`) of 24–64 random bytes."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return "must be base64, optionally prefixed whsec_ (e.g. whsec_ + 32 random bytes in base64)"
    if not 24 <= len(key) <= 64:
        return f"must decode to 24–64 bytes; got {len(key)}"
    return None


def mask_secret(secret: str) -> str:
    """`whsec_…abcd`: enough to tell secrets apart, never enough to use one."""
    prefix = "whsec_" if secret.startswith("whsec_") else ""
    return f"{prefix}…{secret[-4:]}"


def mask_url(url: str) -> str:
    """A Slack incoming-webhook URL is itself the credential: show its host and last 4 characters only
    (`https://hooks.slack.com/…x9Qz`)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…{url[-4:]}"


# ---------------------------------------------------------------------------------------------- parsing

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
_RESPONSE_FIELDS = frozenset(
    {"id", "type", "name", "survey", "scores", "filters", "cooldown", "notify", "enabled"}
)
_CONDITION_FIELDS = frozenset({"op", "threshold", "by", "baseline", "require_significant"})
_TARGET_FIELDS = frozenset({"type", "url", "secret"})

_MISSING = object()


class _Errors:
    """Collects every problem instead of stopping at the first, so a 422 can name them all."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append({"field": path, "message": message})

    def unknown(self, data: Mapping[str, Any], allowed: frozenset[str], prefix: str = "") -> None:
        for key in sorted(set(data) - allowed, key=str):
            self.add(f"{prefix}{key}", "unknown field")

    def string(self, data: Mapping[str, Any], key: str, path: str, default: Any = _MISSING) -> str | None:
        value = data.get(key, default)
        if value is _MISSING:
            self.add(path, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.add(path, "must be a non-empty string")
            return None
        return value

    def boolean(self, data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.add(path, "must be true or false")
            return default
        return value

    def number(self, data: Mapping[str, Any], key: str, path: str) -> float | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.add(path, "must be a finite number")
            return None
        return float(value)

    def duration(self, data: Mapping[str, Any], key: str, default: str, *, allow_zero: bool) -> int | None:
        try:
            return parse_duration(data.get(key, default), name=key, allow_zero=allow_zero)
        except WindowError as exc:
            self.add(key, str(exc))
            return None


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
    errors = _Errors()
    if not isinstance(data, Mapping):
        raise RuleError([{"field": "", "message": "a rule must be a JSON object"}])
    if "id" in data and data["id"] != rule_id:
        errors.add("id", f"does not match the rule's id {rule_id!r}")
    kind = data.get("type", "metric")
    if kind not in ("metric", "response"):
        errors.add("type", "must be metric or response")
        raise RuleError(errors.items)
    secrets, slack_urls = _secrets_of(previous), _slack_urls_of(previous)
    name = errors.string(data, "name", "name")
    if name is not None and len(name) > MAX_NAME:
        errors.add("name", f"must be at most {MAX_NAME} characters")
    filters = _filters(data.get("filters", {}), errors)
    notify = _targets(data.get("notify", []), errors, secrets, slack_urls, target_policy)
    enabled = errors.boolean(data, "enabled", "enabled", True)
    if kind == "response":
        errors.unknown(data, _RESPONSE_FIELDS)
        survey = errors.string(data, "survey", "survey")
        if survey is not None and survey not in SURVEY_SCORES:
            errors.add("survey", "must be nps, csat or ces")
            survey = None
        scores = _scores(data.get("scores"), survey, errors)
        cooldown = errors.duration(data, "cooldown", "7d", allow_zero=True)
        if errors.items:
            raise RuleError(errors.items)
        assert name is not None and survey is not None and cooldown is not None
        return ResponseRule(rule_id, name, survey, scores, filters, cooldown, notify, enabled)

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
    direction = metrics.get(metric or "", Direction.HIGHER)
    condition = _condition(data.get("condition", _MISSING), errors)
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
    assert name and metric and window and window_ms and condition and for_ms is not None
    assert keep_ms is not None
    return MetricRule(
        rule_id,
        name,
        metric,
        window.strip(),
        window_ms,
        filters,
        condition,
        recover,
        confidence,
        min_samples,
        for_ms,
        keep_ms,
        severity,
        notify,
        enabled,
        direction,
    )


def _condition(data: object, errors: _Errors) -> Condition | None:
    if data is _MISSING:
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


def _check_recover(condition: Condition, direction: Direction, recover: float, errors: _Errors) -> None:
    """Hysteresis must widen the firing band, never narrow it (or the rule would flap)."""
    probe = MetricRule("", "", "", "", 0, {}, condition, direction=direction)
    limit = probe.limit
    if probe.op is Op.BELOW and recover < limit:
        errors.add("recover", f"must be ≥ the threshold ({limit:g}) for below")
    elif probe.op is Op.ABOVE and recover > limit:
        errors.add("recover", f"must be ≤ the threshold ({limit:g}) for above")
    elif probe.op not in THRESHOLD_OPS and not 0 <= recover <= limit:
        errors.add("recover", f"must be between 0 and by ({limit:g}) for a change")


def _filters(data: object, errors: _Errors) -> dict[str, str]:
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


def _targets(
    data: object,
    errors: _Errors,
    secrets: Mapping[tuple[str, str], str],
    slack_urls: Mapping[str, str],
    policy: TargetPolicy | None = None,
) -> tuple[Target, ...]:
    if not isinstance(data, list):
        errors.add("notify", "must be a list of targets")
        return ()
    if len(data) > MAX_TARGETS:
        errors.add("notify", f"at most {MAX_TARGETS} targets")
    out = []
    for i, item in enumerate(data):
        path = f"notify[{i}]"
        if not isinstance(item, Mapping):
            errors.add(path, "must be an object such as {'type': 'webhook', 'url': 'https://…'}")
            continue
        errors.unknown(item, _TARGET_FIELDS, f"{path}.")
        kind = item.get("type", "webhook")
        if kind not in ("webhook", "slack"):
            errors.add(f"{path}.type", "must be webhook or slack")
        url = errors.string(item, "url", f"{path}.url")
        if url is not None and kind == "slack" and "…" in url:  # as GET shows it
            if url in slack_urls:
                url = slack_urls[url]
            else:
                errors.add(
                    f"{path}.url",
                    "is masked: send the full Slack webhook URL, or the masked value GET shows for one of "
                    "this rule's own targets",
                )
                url = None
        problem = None if url is None else check_target_url(url, policy)
        if problem:
            errors.add(f"{path}.url", problem)
        secret = item.get("secret")
        if secret is not None and url is not None:
            secret = secrets.get((url, secret), secret)
        if secret is not None:
            if kind == "slack":
                errors.add(f"{path}.secret", "only applies to webhook targets")
            elif not isinstance(secret, str):
                errors.add(f"{path}.secret", "must be a string")
            elif problem := check_secret(secret):
                errors.add(f"{path}.secret", problem)
        if url is not None and kind in ("webhook", "slack"):
            out.append(Target(kind, url, secret if isinstance(secret, str) else None))
    return tuple(out)


def _scores(data: object, survey: str | None, errors: _Errors) -> frozenset[int] | None:
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


def _slack_urls_of(rule: Rule | None) -> dict[str, str]:
    """masked URL → URL of the Slack targets of the rule being replaced."""
    if rule is None:
        return {}
    return {mask_url(t.url): t.url for t in rule.notify if t.type == "slack"}


def _secrets_of(rule: Rule | None) -> dict[tuple[str, str], str]:
    """(url, masked secret) → secret of the rule being replaced."""
    if rule is None:
        return {}
    return {(t.url, mask_secret(t.secret)): t.secret for t in rule.notify if t.secret}


# ------------------------------------------------------------------------------------------ public JSON


def target_to_json(target: Target, *, mask_secrets: bool = True) -> dict[str, Any]:
    """A target as shown: its secret masked, and a Slack URL (the credential itself) masked too."""
    slack = mask_secrets and target.type == "slack"
    out: dict[str, Any] = {"type": target.type, "url": mask_url(target.url) if slack else target.url}
    if target.secret is not None:
        out["secret"] = mask_secret(target.secret) if mask_secrets else target.secret
    return out


def condition_to_json(condition: Condition) -> dict[str, Any]:
    if condition.op in THRESHOLD_OPS:
        return {"op": str(condition.op), "threshold": condition.threshold}
    return {
        "op": str(condition.op),
        "by": condition.by,
        "baseline": condition.baseline,
        "require_significant": condition.require_significant,
    }


def rule_to_json(rule: Rule, *, mask_secrets: bool = True) -> dict[str, Any]:
    """The rule as the API shows it (and, with `mask_secrets=False`, as the store keeps it); it parses
    back to an equal rule (the public form given the rule itself as `previous`, which unmasks it)."""
    targets = [target_to_json(t, mask_secrets=mask_secrets) for t in rule.notify]
    if isinstance(rule, ResponseRule):
        return {
            "id": rule.id,
            "type": "response",
            "name": rule.name,
            "survey": rule.survey,
            "scores": None if rule.scores is None else sorted(rule.scores),
            "filters": dict(rule.filters),
            "cooldown": format_duration(rule.cooldown_ms),
            "notify": targets,
            "enabled": rule.enabled,
        }
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
        "notify": targets,
        "enabled": rule.enabled,
    }
