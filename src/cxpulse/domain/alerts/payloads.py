"""Notification bodies (SPEC §4): the webhook JSON, and the Slack message built from it with the same facts.

Slack gets a `text` (what notifications and screen readers show) and `blocks` (the laid-out message), both
rendered from the webhook body, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cxpulse.domain.alerts.evaluation import Transition
from cxpulse.domain.alerts.rules.metric import MetricRule, condition_to_json
from cxpulse.domain.alerts.rules.response import ResponseRule
from cxpulse.domain.events import Event

READING_FIELDS = ("value", "n", "ci", "previous", "delta", "significant")


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC (`2026-11-01T00:00:00.000Z`)."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_payload(rule: MetricRule, transition: Transition) -> dict[str, Any]:
    """The body of a `firing` / `resolved` notification."""
    reading = transition.reading or {}
    return {
        "kind": "alert",
        "status": transition.notify,
        "rule": {
            "id": rule.id,
            "name": rule.name,
            "metric": rule.metric,
            "window": rule.window,
            "filters": dict(rule.filters),
            "severity": rule.severity,
            "condition": condition_to_json(rule.condition),
        },
        "change": rule.change,
        "reading": {key: reading.get(key) for key in READING_FIELDS},
        "at": iso_ms(transition.at_ms),
    }


def response_payload(rule: ResponseRule, event: Event) -> dict[str, Any]:
    """The body of a close-the-loop notification: who answered what, where."""
    return {
        "kind": "response",
        "rule": {"id": rule.id, "name": rule.name},
        "event_id": event.event_id,
        "customer_id": event.customer_id,
        "survey": event.survey,
        "score": event.score,
        "comment": event.comment or None,
        "touchpoint": event.touchpoint,
        "channel": event.channel,
        "segment": event.segment,
        "occurred_at": iso_ms(event.occurred_ms),
    }


def slack_payload(body: Mapping[str, Any]) -> dict[str, Any]:
    """`{"text", "blocks"}` for a Slack incoming webhook, from an alert or response body."""
    if body["kind"] == "alert":
        title, lines, fields = _alert_facts(body)
    else:
        title, lines, fields = _response_facts(body)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
    ]
    if fields:
        blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields[:10]]})
    return {"text": " — ".join([title, *lines]), "blocks": blocks}


def _alert_facts(body: Mapping[str, Any]) -> tuple[str, list[str], list[str]]:
    rule, reading, cond = body["rule"], body["reading"], body["rule"]["condition"]
    icon = ":red_circle:" if body["status"] == "firing" else ":large_green_circle:"
    title = f"[{str(body['status']).upper()}] {rule['name']}"
    limit = f"{cond['threshold']:g}" if "threshold" in cond else f"by {cond['by']:g} vs {cond['baseline']}"
    scope = _escape(", ".join(f"{k}={v}" for k, v in rule["filters"].items()) or "all")
    lines = [
        f"{icon} *{_escape(rule['metric'])}* is {_num(reading['value'])} (n {reading['n']}) over "
        f"{rule['window']} — rule: {cond['op']} {limit}",
        f"Scope: {scope}. Severity: {rule['severity']}.",
    ]
    fields = [
        f"*Previous:* {_num((reading.get('previous') or {}).get('value'))}",
        f"*Change:* {_num(reading['delta'])}" + (f" ({body['change']})" if body.get("change") else ""),
        f"*95% CI:* {_interval(reading['ci'])}",
        f"*Significant:* {_yes_no(reading['significant'])}",
        f"*At:* {body['at']}",
    ]
    return title, lines, fields


def _response_facts(body: Mapping[str, Any]) -> tuple[str, list[str], list[str]]:
    title = f"{str(body['survey']).upper()} {body['score']} from {body['customer_id']}"
    comment = body.get("comment")
    lines = [
        f"Rule *{_escape(body['rule']['name'])}*: customer `{_escape(body['customer_id'])}` answered "
        f"{str(body['survey']).upper()} *{body['score']}*.",
        f"> {_escape(comment)}" if comment else "(no comment)",
    ]
    fields = [
        f"*Touchpoint:* {_escape(body['touchpoint'])}",
        f"*Channel:* {_escape(body['channel'])}",
        f"*Segment:* {_escape(body['segment'])}",
        f"*Answered:* {body['occurred_at']}",
        f"*Event:* `{_escape(body['event_id'])}`",
    ]
    return title, lines, fields


def _escape(text: str) -> str:
    """Slack mrkdwn control characters (its documented escaping: &, <, >)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _interval(ci: list[float] | None) -> str:
    return "n/a" if not ci else f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def _yes_no(flag: bool | None) -> str:
    return "n/a" if flag is None else "yes" if flag else "no"
