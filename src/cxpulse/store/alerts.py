"""Alert rules, rule states, transitions and close-the-loop cooldowns in the store (002_alerts.sql).

Versioned rows (ReplacingMergeTree, read with FINAL): each write takes the key's current version + 1, so
one writer per database (the API for rules, the single evaluator for states) always wins in order.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import orjson

from cxpulse.domain.alerts.evaluation import RuleState, Transition
from cxpulse.domain.alerts.rules.rule import Rule, parse_rule, rule_to_json
from cxpulse.domain.metrics import Direction
from cxpulse.store.base import Store


class AlertRepository:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._db = store.database
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ rules

    def put_rule(self, rule: Rule, now_ms: int) -> None:
        """Create or replace a rule (stored with its secrets; show it with rule_to_json, which masks them)."""
        stored = orjson.dumps(rule_to_json(rule, mask_secrets=False)).decode()
        self._write("alert_rules", "rule_id", rule.id, {"deleted": 0, "updated_ms": now_ms, "rule": stored})

    def delete_rule(self, rule_id: str, now_ms: int) -> bool:
        """Delete a rule; False if there was none."""
        if self.rule_json(rule_id) is None:
            return False
        self._write("alert_rules", "rule_id", rule_id, {"deleted": 1, "updated_ms": now_ms, "rule": ""})
        return True

    def rule_json(self, rule_id: str) -> dict[str, Any] | None:
        """A rule's stored JSON (secrets included), or None."""
        rows = self._store.rows(
            f"SELECT rule FROM {self._db}.alert_rules FINAL WHERE rule_id = {{id:String}} AND deleted = 0",
            {"id": rule_id},
        )
        return orjson.loads(rows[0][0]) if rows else None

    def rule_jsons(self) -> list[dict[str, Any]]:
        rows = self._store.rows(
            f"SELECT rule FROM {self._db}.alert_rules FINAL WHERE deleted = 0 ORDER BY updated_ms, rule_id"
        )
        return [orjson.loads(r[0]) for r in rows]

    def rules(self, metrics: Mapping[str, Direction]) -> list[Rule]:
        """Every rule, re-parsed with the current metric registry (so `worsen` follows its direction)."""
        return [parse_rule(data, metrics=metrics, rule_id=data["id"]) for data in self.rule_jsons()]

    # ----------------------------------------------------------------------------------------- states

    def put_state(self, rule_id: str, state: RuleState) -> None:
        self._write("alert_state", "rule_id", rule_id, {"state": orjson.dumps(state.to_json()).decode()})

    def put_states(self, states: Mapping[str, RuleState]) -> None:
        """Write several rules' states in one insert (the evaluator's per-tick write)."""
        if not states:
            return
        with self._lock:
            rows = self._store.rows(
                f"SELECT rule_id, max(version) FROM {self._db}.alert_state "
                "WHERE rule_id IN {ids:Array(String)} GROUP BY rule_id",
                {"ids": sorted(states)},
            )
            versions = {r[0]: int(r[1]) for r in rows}
            self._store.insert(
                "alert_state",
                [
                    {
                        "rule_id": rule_id,
                        "version": versions.get(rule_id, 0) + 1,
                        "state": orjson.dumps(state.to_json()).decode(),
                    }
                    for rule_id, state in states.items()
                ],
            )

    def states(self) -> dict[str, RuleState]:
        """The persisted state of every rule that has one."""
        rows = self._store.rows(f"SELECT rule_id, state FROM {self._db}.alert_state FINAL")
        return {r[0]: RuleState.from_json(orjson.loads(r[1])) for r in rows}

    def delete_state(self, rule_id: str) -> None:
        """Forget a deleted rule's state (a rule re-created with the same id starts at ok)."""
        self._write(
            "alert_state", "rule_id", rule_id, {"state": orjson.dumps(RuleState().to_json()).decode()}
        )

    # ------------------------------------------------------------------------------------ transitions

    def add_transitions(self, transitions: list[Transition]) -> None:
        self._store.insert(
            "alert_transitions",
            [
                {
                    "rule_id": t.rule_id,
                    "at_ms": t.at_ms,
                    "from_state": str(t.from_state),
                    "to_state": str(t.to_state),
                    "notify": t.notify or "",
                    "reading": orjson.dumps(t.reading).decode(),
                }
                for t in transitions
            ],
        )

    def transitions(self, rule_id: str | None = None, limit: int = 100) -> list[Transition]:
        """Newest first."""
        rows = self._store.rows(
            f"SELECT rule_id, from_state, to_state, at_ms, reading, notify FROM {self._db}.alert_transitions "
            "WHERE {rule:String} = '' OR rule_id = {rule:String} "
            "ORDER BY at_ms DESC, rule_id LIMIT {limit:UInt32}",
            {"rule": rule_id or "", "limit": limit},
        )
        return [
            Transition.from_json(
                {"rule_id": r[0], "from": r[1], "to": r[2], "at_ms": r[3], "reading": orjson.loads(r[4])}
                | {"notify": r[5] or None}
            )
            for r in rows
        ]

    # -------------------------------------------------------------------------------------- cooldowns

    def last_response_ms(self, rule_id: str, customer_id: str) -> int | None:
        """Event time of the customer's last notified answer under this response rule."""
        rows = self._store.rows(
            f"SELECT last_ms FROM {self._db}.response_cooldowns FINAL "
            "WHERE rule_id = {rule:String} AND customer_id = {customer:String}",
            {"rule": rule_id, "customer": customer_id},
        )
        return int(rows[0][0]) if rows else None

    def set_last_response_ms(self, rule_id: str, customer_id: str, last_ms: int) -> None:
        with self._lock:
            version = self._version("response_cooldowns", "rule_id", rule_id, customer_id=customer_id)
            row = {"rule_id": rule_id, "customer_id": customer_id, "version": version, "last_ms": last_ms}
            self._store.insert("response_cooldowns", [row])

    # ---------------------------------------------------------------------------------------- helpers

    def _write(self, table: str, key: str, value: str, columns: dict[str, Any]) -> None:
        with self._lock:
            version = self._version(table, key, value)
            self._store.insert(table, [{key: value, "version": version, **columns}])

    def _version(self, table: str, key: str, value: str, *, customer_id: str | None = None) -> int:
        where = f"{key} = {{value:String}}"
        params: dict[str, Any] = {"value": value}
        if customer_id is not None:
            where += " AND customer_id = {customer:String}"
            params["customer"] = customer_id
        rows = self._store.rows(f"SELECT max(version) FROM {self._db}.{table} WHERE {where}", params)
        return int(rows[0][0] or 0) + 1
