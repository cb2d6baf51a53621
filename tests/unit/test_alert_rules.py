"""Alert rule validation (SPEC §4): defaults, every bad field named by its dotted path, secret masking."""

from __future__ import annotations

import ast
import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from cxpulse.domain.alerts.rules.errors import RuleError
from cxpulse.domain.alerts.rules.metric import Condition, MetricRule, Op
from cxpulse.domain.alerts.rules.response import ResponseRule
from cxpulse.domain.alerts.rules.rule import parse_rule, rule_to_json
from cxpulse.domain.alerts.rules.targets import Target, check_target_url, mask_secret, mask_url
from cxpulse.domain.metrics import Direction
from cxpulse.domain.windows import WindowError, parse_duration, parse_window

METRICS = {
    "nps": Direction.HIGHER_IS_BETTER,
    "csat": Direction.HIGHER_IS_BETTER,
    "ces": Direction.LOWER_IS_BETTER,
}
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def metric_rule(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Checkout NPS falling",
        "metric": "nps",
        "condition": {"op": "below", "threshold": 20},
    }
    data.update(changes)
    return data


def fields_of(data: object) -> list[str]:
    with pytest.raises(RuleError) as info:
        parse_rule(data, metrics=METRICS, rule_id="r1")
    return [e["field"] for e in info.value.errors]


def test_a_minimal_metric_rule_gets_the_spec_defaults() -> None:
    rule = parse_rule(metric_rule(), metrics=METRICS, rule_id="r1")
    assert rule == MetricRule(
        id="r1",
        name="Checkout NPS falling",
        metric="nps",
        window="24h",
        window_ms=86_400_000,
        filters={},
        condition=Condition(Op.BELOW, threshold=20.0),
        recover=None,
        confidence=False,
        min_samples=30,
        for_ms=300_000,
        keep_firing_for_ms=0,
        severity="warning",
        notify=(),
        enabled=True,
        direction=Direction.HIGHER_IS_BETTER,
    )
    assert rule.recover_limit == 20


def test_the_spec_example_parses() -> None:
    data = {
        "type": "metric",
        "name": "Checkout NPS falling",
        "metric": "nps",
        "window": "24h",
        "filters": {"touchpoint": "checkout"},
        "condition": {"op": "below", "threshold": 20},
        "recover": 25,
        "confidence": False,
        "min_samples": 30,
        "for": "5m",
        "keep_firing_for": "0s",
        "severity": "warning",
        "notify": [
            {"type": "webhook", "url": "https://hooks.example.com/cx", "secret": SECRET},
            {"type": "slack", "url": "https://hooks.slack.com/services/T/B/X"},
        ],
        "enabled": True,
    }
    rule = parse_rule(data, metrics=METRICS, rule_id="r1")
    assert isinstance(rule, MetricRule)
    assert rule.filters == {"touchpoint": "checkout"} and rule.recover_limit == 25
    assert rule.notify == (
        Target("webhook", "https://hooks.example.com/cx", SECRET),
        Target("slack", "https://hooks.slack.com/services/T/B/X"),
    )


def test_a_change_rule_defaults_to_the_previous_window_and_significance() -> None:
    rule = parse_rule(metric_rule(condition={"op": "decrease", "by": 10}), metrics=METRICS, rule_id="r")
    assert isinstance(rule, MetricRule)
    assert rule.condition == Condition(Op.DECREASE, by=10.0, baseline="previous", require_significant=True)
    weekly = parse_rule(
        metric_rule(condition={"op": "increase", "by": 5, "baseline": "7d", "require_significant": False}),
        metrics=METRICS,
        rule_id="r",
    )
    assert isinstance(weekly, MetricRule)
    assert weekly.condition.baseline_ms == 7 * 86_400_000 and not weekly.condition.require_significant


@pytest.mark.parametrize(
    ("metric", "op", "effective", "change"),
    [
        ("ces", "worsen", Op.INCREASE, "worse"),  # CES: lower is better, so worsening is an increase
        ("ces", "improve", Op.DECREASE, "better"),
        ("nps", "worsen", Op.DECREASE, "worse"),
        ("nps", "improve", Op.INCREASE, "better"),
        ("ces", "decrease", Op.DECREASE, "better"),  # a CES decrease is good news
        ("nps", "decrease", Op.DECREASE, "worse"),
    ],
)
def test_worsen_and_improve_follow_the_metrics_direction(
    metric: str, op: str, effective: Op, change: str
) -> None:
    rule = parse_rule(
        metric_rule(metric=metric, condition={"op": op, "by": 0.5}), metrics=METRICS, rule_id="r"
    )
    assert isinstance(rule, MetricRule)
    assert (rule.op, rule.change) == (effective, change)
    assert rule.condition.op == op  # shown as written


def test_threshold_rules_carry_no_change() -> None:
    rule = parse_rule(metric_rule(), metrics=METRICS, rule_id="r")
    assert isinstance(rule, MetricRule) and rule.change is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"metric": "happiness"}, "metric"),
        ({"metric": 3}, "metric"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"window": "0s"}, "window"),
        ({"window": "24 hours"}, "window"),
        ({"window": "401d"}, "window"),
        ({"for": "5 minutes"}, "for"),
        ({"for": 300}, "for"),
        ({"keep_firing_for": "-1m"}, "keep_firing_for"),
        ({"severity": "urgent"}, "severity"),
        ({"min_samples": 0}, "min_samples"),
        ({"min_samples": "30"}, "min_samples"),
        ({"confidence": "yes"}, "confidence"),
        ({"enabled": 1}, "enabled"),
        ({"recover": "25"}, "recover"),
        ({"recover": 10}, "recover"),  # below 20 must recover at ≥ 20
        ({"filters": {"region": "eu"}}, "filters.region"),
        ({"filters": {"touchpoint": "Check Out"}}, "filters.touchpoint"),
        ({"filters": ["touchpoint"]}, "filters"),
        ({"colour": "red"}, "colour"),
        ({"id": "other"}, "id"),
        ({"type": "sms"}, "type"),
        ({"condition": {"op": "under", "threshold": 20}}, "condition.op"),
        ({"condition": {"op": "below"}}, "condition.threshold"),
        ({"condition": {"op": "below", "threshold": "20"}}, "condition.threshold"),
        ({"condition": {"op": "below", "threshold": True}}, "condition.threshold"),
        ({"condition": {"op": "below", "threshold": 20, "by": 3}}, "condition.by"),
        ({"condition": {"op": "below", "threshold": 20, "unit": "pct"}}, "condition.unit"),
        ({"condition": {"op": "decrease"}}, "condition.by"),
        ({"condition": {"op": "decrease", "by": 0}}, "condition.by"),
        ({"condition": {"op": "decrease", "by": 5, "threshold": 20}}, "condition.threshold"),
        ({"condition": {"op": "decrease", "by": 5, "baseline": "last week"}}, "condition.baseline"),
        (
            {"condition": {"op": "decrease", "by": 5, "require_significant": "no"}},
            "condition.require_significant",
        ),
        ({"condition": {"op": "decrease", "by": 5}, "recover": 6}, "recover"),
        ({"condition": "below 20"}, "condition"),
        ({"condition": None}, "condition"),
        ({"notify": {"url": "https://x"}}, "notify"),
        ({"notify": ["https://x.example"]}, "notify[0]"),
        ({"notify": [{"type": "webhook", "url": "ftp://x.example/"}]}, "notify[0].url"),
        ({"notify": [{"type": "webhook", "url": "https:///path"}]}, "notify[0].url"),
        ({"notify": [{"type": "webhook"}]}, "notify[0].url"),
        ({"notify": [{"type": "email", "url": "https://x.example"}]}, "notify[0].type"),
        ({"notify": [{"url": "https://x.example", "secret": "not base64!"}]}, "notify[0].secret"),
        ({"notify": [{"url": "https://x.example", "secret": "whsec_c2hvcnQ="}]}, "notify[0].secret"),
        ({"notify": [{"type": "slack", "url": "https://x.example", "secret": SECRET}]}, "notify[0].secret"),
        ({"notify": [{"url": "https://x.example", "headers": {}}]}, "notify[0].headers"),
    ],
)
def test_each_invalid_field_is_named(changes: dict[str, Any], field: str) -> None:
    assert field in fields_of(metric_rule(**changes))


def test_a_missing_required_field_is_named() -> None:
    assert fields_of({"name": "n", "condition": {"op": "below", "threshold": 1}}) == ["metric"]
    assert fields_of({"name": "n", "metric": "nps"}) == ["condition"]
    assert fields_of({"metric": "nps", "condition": {"op": "below", "threshold": 1}}) == ["name"]


def test_every_bad_field_is_named_at_once() -> None:
    data = metric_rule(
        metric="happiness",
        window="1 day",
        severity="urgent",
        extra=1,
        notify=[{"url": "https://ok.example"}, {"url": "gopher://x"}],
        condition={"op": "below", "threshold": "low"},
    )
    data["for"] = "soon"
    assert sorted(fields_of(data)) == sorted(
        ["metric", "window", "severity", "extra", "notify[1].url", "condition.threshold", "for"]
    )


def test_not_an_object() -> None:
    assert fields_of([1, 2]) == [""]


def test_response_rule_defaults_and_errors() -> None:
    rule = parse_rule(
        {"type": "response", "name": "Detractors", "survey": "nps"}, metrics=METRICS, rule_id="r2"
    )
    assert rule == ResponseRule("r2", "Detractors", "nps", None, {}, 7 * 86_400_000, (), True)
    zero = parse_rule(
        {"type": "response", "name": "All", "survey": "ces", "scores": [7, 6, 6], "cooldown": "0s"},
        metrics=METRICS,
        rule_id="r3",
    )
    assert isinstance(zero, ResponseRule) and zero.scores == frozenset({6, 7}) and zero.cooldown_ms == 0
    bad = {
        "type": "response",
        "name": "x",
        "survey": "ces",
        "scores": [6, 8, "7"],
        "cooldown": "a week",
        "metric": "nps",
    }
    assert sorted(fields_of(bad)) == ["cooldown", "metric", "scores[1]", "scores[2]"]
    assert fields_of({"type": "response", "name": "x", "survey": "nps", "scores": []}) == ["scores"]
    assert fields_of({"type": "response", "name": "x", "survey": "happiness"}) == ["survey"]
    assert fields_of({"type": "response", "name": "x", "survey": "nps", "scores": [11]}) == ["scores[0]"]


def test_secrets_are_masked_in_the_public_json_and_kept_in_the_stored_json() -> None:
    data = metric_rule(notify=[{"type": "webhook", "url": "https://hooks.example.com/x", "secret": SECRET}])
    rule = parse_rule(data, metrics=METRICS, rule_id="r1")
    public = rule_to_json(rule)
    assert public["notify"][0]["secret"] == f"whsec_…{SECRET[-4:]}" == mask_secret(SECRET)
    assert SECRET not in json.dumps(public) and SECRET.removeprefix("whsec_") not in json.dumps(public)
    assert SECRET not in repr(mask_secret(SECRET))
    stored = rule_to_json(rule, mask_secrets=False)
    assert stored["notify"][0]["secret"] == SECRET
    assert parse_rule(stored, metrics=METRICS, rule_id="r1") == rule


def test_a_masked_secret_sent_back_keeps_the_stored_one() -> None:
    rule = parse_rule(
        metric_rule(notify=[{"url": "https://hooks.example.com/x", "secret": SECRET}]),
        metrics=METRICS,
        rule_id="r1",
    )
    edited = {**rule_to_json(rule), "severity": "critical"}  # what a client GETs, edits and PUTs back
    updated = parse_rule(edited, metrics=METRICS, rule_id="r1", previous=rule)
    assert isinstance(updated, MetricRule)
    assert updated.notify[0].secret == SECRET and updated.severity == "critical"
    assert fields_of(edited) == ["notify[0].secret"]  # without the previous rule a mask is not a secret


@pytest.mark.parametrize(
    "rule",
    [
        metric_rule(
            window="7d",
            filters={"channel": "web"},
            condition={"op": "worsen", "by": 0.5, "baseline": "28d", "require_significant": False},
            recover=0.25,
            confidence=True,
            min_samples=100,
            keep_firing_for="90m",
            severity="critical",
            enabled=False,
            notify=[{"type": "slack", "url": "http://slack.local/hook"}],
            **{"for": "0s", "metric": "ces"},
        ),
        {"type": "response", "name": "x", "survey": "csat", "scores": [1, 2, 3], "cooldown": "36h"},
    ],
)
def test_the_public_json_parses_back_to_the_same_rule(rule: dict[str, Any]) -> None:
    parsed = parse_rule(rule, metrics=METRICS, rule_id="r9")
    shown = rule_to_json(parsed)
    assert parse_rule(shown, metrics=METRICS, rule_id="r9", previous=parsed) == parsed
    assert parse_rule(rule_to_json(parsed, mask_secrets=False), metrics=METRICS, rule_id="r9") == parsed
    if isinstance(parsed, MetricRule):
        assert (shown["for"], shown["keep_firing_for"]) == ("0s", "90m")


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://hooks.example.com/x?a=1", True),
        ("http://127.0.0.1:8080/hook", True),
        ("file:///etc/passwd", False),
        ("https://", False),
        ("https://exa mple.com/", False),
        ("https://example.com:99999/", False),
        ("javascript:alert(1)", False),
    ],
)
def test_target_urls(url: str, ok: bool) -> None:
    assert (check_target_url(url) is None) is ok


def test_parse_duration_takes_zero_only_when_allowed_and_parse_window_never() -> None:
    assert parse_duration("0s", name="for", allow_zero=True) == 0
    assert parse_duration("5m", name="for", allow_zero=True) == 300_000
    assert parse_duration("2h", name="cooldown") == 7_200_000
    for bad, allow in (("0s", False), ("00s", True), ("5", True), ("1.5h", True), ("401d", True)):
        with pytest.raises(WindowError, match="for"):
            parse_duration(bad, name="for", allow_zero=allow)
    with pytest.raises(WindowError):
        parse_window("0s")
    assert parse_window("24h") == 86_400_000


def test_the_alerts_domain_imports_only_stdlib_and_the_domain() -> None:
    package = Path(__file__).resolve().parents[2] / "src" / "cxpulse" / "domain" / "alerts"
    for module in package.rglob("*.py"):  # the rules/ package too
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert name.startswith("cxpulse.domain") or top in sys.stdlib_module_names, (
                    f"{module.relative_to(package)} imports {name}"
                )


def test_a_slack_url_is_masked_like_a_secret_and_kept_when_sent_back() -> None:
    url = "https://hooks.slack.com/services/T0001/B0002/abcdefghijklmnopqrstWXYZ"
    rule = parse_rule(metric_rule(notify=[{"type": "slack", "url": url}]), metrics=METRICS, rule_id="r1")
    shown = rule_to_json(rule)
    assert shown["notify"][0]["url"] == "https://hooks.slack.com/…WXYZ" == mask_url(url)
    assert "abcdefghijklmnop" not in json.dumps(shown)
    assert rule_to_json(rule, mask_secrets=False)["notify"][0]["url"] == url
    edited = {**shown, "severity": "critical"}
    updated = parse_rule(edited, metrics=METRICS, rule_id="r1", previous=rule)
    assert updated.notify[0].url == url
    assert fields_of(edited) == ["notify[0].url"]  # a mask is not a URL without the rule it came from
    webhook = parse_rule(
        metric_rule(notify=[{"type": "webhook", "url": "https://h.example/x…y"}]),
        metrics=METRICS,
        rule_id="r",
    )
    assert webhook.notify[0].url == "https://h.example/x…y"  # only Slack URLs are masked
