"""`cxpulse rules list | add FILE | delete ID`: manage alert rules of a running service over its HTTP API.

A thin client of `/v1/alert-rules`: what the service says is what the user sees — a 4xx prints its
message and every field it names, so a bad rule file is fixed from the terminal.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


class RulesError(Exception):
    """What to tell the user (exit code 1), e.g. the service's 422 with its field errors."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = sub.add_parser("rules", help="list, add or delete alert rules of a running service")
    rules.add_argument("--url", default=DEFAULT_URL, help="the service (default %(default)s)")
    rules.add_argument("--key", help="API key (sent as Authorization: Bearer …), when the service needs one")
    actions = rules.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every rule with its state")
    add = actions.add_parser("add", help="create the rule(s) in a JSON file (one object or a list)")
    add.add_argument("file", help="a JSON file, or - for standard input")
    delete = actions.add_parser("delete", help="delete a rule")
    delete.add_argument("id", help="the rule's id (see `cxpulse rules list`)")
    rules.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a log line per request
    headers = {"authorization": f"Bearer {args.key}"} if args.key else {}
    try:
        with httpx.Client(base_url=args.url.rstrip("/"), headers=headers, timeout=30) as client:
            if args.action == "list":
                print(render_list(_call(client, "GET", "/v1/alert-rules")["rules"]))
            elif args.action == "add":
                for rule in _read_rules(args.file):
                    created = _call(client, "POST", "/v1/alert-rules", json=rule)
                    state = f", state {created['state']}" if created.get("state") else ""
                    print(f"created {created['id']} ({created['name']}, {created['type']} rule{state})")
            else:
                _call(client, "DELETE", f"/v1/alert-rules/{args.id}")
                print(f"deleted {args.id}")
    except httpx.TransportError as exc:
        print(f"cxpulse rules: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
    except RulesError as exc:
        print(f"cxpulse rules {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def _read_rules(name: str) -> list[Any]:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
    except OSError as exc:
        raise RulesError(f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RulesError(f"{name} is not valid JSON: {exc}") from None
    return data if isinstance(data, list) else [data]


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    response = client.request(method, path, **kwargs)
    if response.is_success:
        return response.json() if response.content else None
    raise RulesError(describe_error(response))


def describe_error(response: httpx.Response) -> str:
    """The service's error message and each field it names, one per line."""
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:300]}"
    lines = [f"{error.get('message') or error.get('code')} (HTTP {response.status_code})"]
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and "field" in detail:
            lines.append(f"  {detail['field'] or '(body)'}: {detail.get('message', '')}")
    return "\n".join(lines)


def render_list(rules: list[dict[str, Any]]) -> str:
    """One line per rule: id, type, state, name, what it watches, where it notifies."""
    if not rules:
        return "no alert rules (add one with: cxpulse rules add rule.json)"
    rows = [("ID", "TYPE", "STATE", "NAME", "WATCHES", "NOTIFIES")]
    for r in rules:
        flt = ",".join(f"{k}={v}" for k, v in r.get("filters", {}).items())
        if r["type"] == "metric":
            cond = r["condition"]
            limit = (
                f"{cond['threshold']:g}"
                if "threshold" in cond
                else f"by {cond.get('by'):g} vs {cond.get('baseline')}"
            )
            watches = f"{r['metric']} {r['window']} {cond['op']} {limit}" + (f" [{flt}]" if flt else "")
        else:
            scores = "default scores" if r.get("scores") is None else f"scores {r['scores']}"
            watches = f"{r['survey']} answers, {scores}" + (f" [{flt}]" if flt else "")
        targets = ", ".join(t["type"] for t in r.get("notify", [])) or "-"
        state = r.get("state") or "-"
        off = "" if r.get("enabled", True) else " (disabled)"
        rows.append((r["id"], r["type"], state, r["name"] + off, watches, targets))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + str(row[-1])
        for row in rows
    )
