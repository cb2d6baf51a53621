"""The notification outbox: one row per (notification, target), kept in the store so delivery survives a
restart and every attempt can be listed.

Rows are versioned (ReplacingMergeTree): `add` writes version 1 only for ids it has not seen, every attempt
writes version + 1, so re-adding a notification (a replayed event, a re-run evaluation) never resets a row
that was already delivered. A row keeps the notification's JSON body whatever the target; a Slack target
is sent its rendering of it (`wire_body`), so the listing shows the same facts for every target.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal, Protocol

import orjson

from cxpulse.domain.alerts.payloads import slack_payload
from cxpulse.domain.alerts.rules.targets import Target
from cxpulse.store.base import Store

Kind = Literal["alert", "response"]


class Status(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class Notification:
    """What the evaluator or the processing path enqueues: a body for every target of a rule."""

    id: str
    rule_id: str
    kind: Kind
    body: Mapping[str, Any]
    targets: tuple[Target, ...]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row: `body` is the notification's JSON (what a webhook gets; see `wire_body`)."""

    id: str
    target_index: int
    version: int
    rule_id: str
    kind: Kind
    target: Target
    body: str
    status: Status
    attempts: int
    created_ms: int
    next_attempt_ms: int
    last_result: str = ""

    def to_json(self) -> dict[str, Any]:
        """Public view: the target without its secret."""
        return {
            "id": self.id,
            "target_index": self.target_index,
            "rule_id": self.rule_id,
            "kind": self.kind,
            "target": {"type": self.target.type, "url": self.target.url},
            "status": str(self.status),
            "attempts": self.attempts,
            "created_ms": self.created_ms,
            "next_attempt_ms": self.next_attempt_ms,
            "last_result": self.last_result,
        }


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One delivery attempt and its result (a row of `GET /v1/alerts/notifications`)."""

    id: str
    target_index: int
    rule_id: str
    kind: Kind
    target_type: str
    url: str
    attempt: int
    at_ms: int
    duration_ms: int
    outcome: str
    status_code: int | None
    error: str
    next_attempt_ms: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "target_index": self.target_index,
            "rule_id": self.rule_id,
            "kind": self.kind,
            "target": {"type": self.target_type, "url": self.url},
            "attempt": self.attempt,
            "at_ms": self.at_ms,
            "duration_ms": self.duration_ms,
            "outcome": self.outcome,
            "status_code": self.status_code,
            "error": self.error,
            "next_attempt_ms": self.next_attempt_ms,
        }


class Outbox(Protocol):
    def add(self, notification: Notification, now_ms: int) -> int:
        """Enqueue one row per target; an id already in the outbox adds nothing. Returns rows added."""

    def add_many(self, notifications: Sequence[Notification], now_ms: int) -> int:
        """`add` for several notifications in one write. Returns rows added."""

    def due(self, now_ms: int, limit: int = 100) -> list[Delivery]:
        """Pending rows whose next attempt is due, oldest first."""

    def record(self, attempt: AttemptRecord, updated: Delivery) -> None:
        """Log an attempt and write the row's new status (its version is the caller's + 1)."""

    def disable_target(self, rule_id: str, url: str, at_ms: int, reason: str) -> None:
        """Stop notifying `url` for `rule_id` (it answered 410 Gone)."""

    def enable_target(self, rule_id: str, url: str, at_ms: int) -> None:
        """Undo `disable_target` (e.g. when the rule is edited)."""

    def disabled_targets(self, rule_id: str | None = None) -> set[tuple[str, str]]:
        """(rule_id, url) of every disabled target."""

    def deliveries(
        self, rule_id: str | None = None, limit: int = 100, kind: Kind | None = None
    ) -> list[Delivery]:
        """Rows, newest first."""

    def attempts(
        self,
        rule_id: str | None = None,
        limit: int = 100,
        kind: Kind | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[AttemptRecord]:
        """Every attempt, newest first (of the notifications `ids` only, when given)."""

    def latest(
        self, rule_id: str | None = None, kind: Kind | None = None, limit: int = 100
    ) -> list[Delivery]:
        """Every row of the `limit` newest notifications, newest first."""


def render(notification: Notification, target: Target) -> str:
    """The text an outbox row keeps: the notification's JSON body (the same for every target)."""
    return orjson.dumps(notification.body).decode()


def wire_body(delivery: Delivery) -> str:
    """The text POSTed for a row: the body as is for a webhook, its Slack message for Slack."""
    if delivery.target.type == "slack":
        return orjson.dumps(slack_payload(orjson.loads(delivery.body))).decode()
    return delivery.body


_DELIVERY_COLUMNS = (
    "id, target_index, version, rule_id, kind, target_type, url, secret, body, status, attempts, "
    "created_ms, next_attempt_ms, last_result"
)
_ATTEMPT_COLUMNS = (
    "id, target_index, rule_id, kind, target_type, url, attempt, at_ms, duration_ms, outcome, status_code, "
    "error, next_attempt_ms"
)


#: Rows of one rule and kind ('' = any).
_MATCHING = "({rule:String} = '' OR rule_id = {rule:String}) AND ({kind:String} = '' OR kind = {kind:String})"


class StoreOutbox:
    """The outbox on the `Store` protocol (tables of schemas/clickhouse/migrations/002_alerts.sql).

    One writer per database (the process that runs the dispatcher); a lock makes `add`'s check-then-insert
    atomic within it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._db = store.database
        self._lock = threading.Lock()

    def add(self, notification: Notification, now_ms: int) -> int:
        return self.add_many([notification], now_ms)

    def add_many(self, notifications: Sequence[Notification], now_ms: int) -> int:
        if not notifications:
            return 0
        with self._lock:
            seen = {
                r[0]
                for r in self._store.rows(
                    f"SELECT DISTINCT id FROM {self._db}.notifications WHERE id IN {{ids:Array(String)}}",
                    {"ids": sorted({n.id for n in notifications})},
                )
            }
            disabled = self.disabled_targets() if any(n.targets for n in notifications) else set()
            rows = []
            for notification in notifications:
                if notification.id in seen:
                    continue
                seen.add(notification.id)
                for index, target in enumerate(notification.targets):
                    off = (notification.rule_id, target.url) in disabled
                    row = Delivery(
                        id=notification.id,
                        target_index=index,
                        version=1,
                        rule_id=notification.rule_id,
                        kind=notification.kind,
                        target=target,
                        body=render(notification, target),
                        status=Status.DISABLED if off else Status.PENDING,
                        attempts=0,
                        created_ms=now_ms,
                        next_attempt_ms=now_ms,
                        last_result="target disabled (it answered 410 Gone)" if off else "",
                    )
                    rows.append(_delivery_row(row))
            if rows:
                self._store.insert("notifications", rows)
            return len(rows)

    def due(self, now_ms: int, limit: int = 100) -> list[Delivery]:
        rows = self._store.rows(
            f"SELECT {_DELIVERY_COLUMNS} FROM {self._db}.notifications FINAL "
            "WHERE status = 'pending' AND next_attempt_ms <= {now:Int64} "
            "ORDER BY next_attempt_ms, id, target_index LIMIT {limit:UInt32}",
            {"now": now_ms, "limit": limit},
        )
        return [_delivery(r) for r in rows]

    def record(self, attempt: AttemptRecord, updated: Delivery) -> None:
        # The attempt first: a crash in between re-sends (at least once) rather than losing the log line.
        self._store.insert("notification_attempts", [_attempt_row(attempt)])
        self._store.insert("notifications", [_delivery_row(updated)])

    def disable_target(self, rule_id: str, url: str, at_ms: int, reason: str) -> None:
        self._set_target(rule_id, url, at_ms, disabled=True, reason=reason)

    def enable_target(self, rule_id: str, url: str, at_ms: int) -> None:
        self._set_target(rule_id, url, at_ms, disabled=False, reason="")

    def disabled_targets(self, rule_id: str | None = None) -> set[tuple[str, str]]:
        rows = self._store.rows(
            f"SELECT rule_id, url FROM {self._db}.disabled_targets FINAL "
            "WHERE disabled = 1 AND ({rule:String} = '' OR rule_id = {rule:String})",
            {"rule": rule_id or ""},
        )
        return {(r[0], r[1]) for r in rows}

    def deliveries(
        self, rule_id: str | None = None, limit: int = 100, kind: Kind | None = None
    ) -> list[Delivery]:
        rows = self._store.rows(
            f"SELECT {_DELIVERY_COLUMNS} FROM {self._db}.notifications FINAL WHERE {_MATCHING} "
            "ORDER BY created_ms DESC, id, target_index LIMIT {limit:UInt32}",
            {"rule": rule_id or "", "kind": kind or "", "limit": limit},
        )
        return [_delivery(r) for r in rows]

    def latest(
        self, rule_id: str | None = None, kind: Kind | None = None, limit: int = 100
    ) -> list[Delivery]:
        rows = self._store.rows(
            f"SELECT {_DELIVERY_COLUMNS} FROM {self._db}.notifications FINAL WHERE id IN ("
            f" SELECT id FROM {self._db}.notifications WHERE {_MATCHING}"
            " GROUP BY id ORDER BY min(created_ms) DESC, id LIMIT {limit:UInt32}"
            ") ORDER BY created_ms DESC, id, target_index",
            {"rule": rule_id or "", "kind": kind or "", "limit": limit},
        )
        return [_delivery(r) for r in rows]

    def attempts(
        self,
        rule_id: str | None = None,
        limit: int = 100,
        kind: Kind | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[AttemptRecord]:
        rows = self._store.rows(
            f"SELECT {_ATTEMPT_COLUMNS} FROM {self._db}.notification_attempts WHERE {_MATCHING} "
            "AND ({any_id:UInt8} = 1 OR id IN {ids:Array(String)}) "
            "ORDER BY at_ms DESC, attempt DESC LIMIT {limit:UInt32}",
            {
                "rule": rule_id or "",
                "kind": kind or "",
                "limit": limit,
                "any_id": int(ids is None),
                "ids": list(ids or []),
            },
        )
        return [_attempt(r) for r in rows]

    def _set_target(self, rule_id: str, url: str, at_ms: int, *, disabled: bool, reason: str) -> None:
        with self._lock:
            current = self._store.rows(
                f"SELECT max(version) FROM {self._db}.disabled_targets "
                "WHERE rule_id = {rule:String} AND url = {url:String}",
                {"rule": rule_id, "url": url},
            )
            version = int(current[0][0] or 0) + 1
            row = {"rule_id": rule_id, "url": url, "version": version, "disabled": int(disabled)}
            self._store.insert("disabled_targets", [row | {"at_ms": at_ms, "reason": reason}])


def _delivery_row(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "target_index": d.target_index,
        "version": d.version,
        "rule_id": d.rule_id,
        "kind": d.kind,
        "target_type": d.target.type,
        "url": d.target.url,
        "secret": d.target.secret or "",
        "body": d.body,
        "status": str(d.status),
        "attempts": d.attempts,
        "created_ms": d.created_ms,
        "next_attempt_ms": d.next_attempt_ms,
        "last_result": d.last_result,
    }


def _delivery(r: Sequence[Any]) -> Delivery:
    return Delivery(
        id=r[0],
        target_index=int(r[1]),
        version=int(r[2]),
        rule_id=r[3],
        kind=r[4],
        target=Target(r[5], r[6], r[7] or None),
        body=r[8],
        status=Status(r[9]),
        attempts=int(r[10]),
        created_ms=int(r[11]),
        next_attempt_ms=int(r[12]),
        last_result=r[13],
    )


def _attempt_row(a: AttemptRecord) -> dict[str, Any]:
    return {
        "id": a.id,
        "target_index": a.target_index,
        "rule_id": a.rule_id,
        "kind": a.kind,
        "target_type": a.target_type,
        "url": a.url,
        "attempt": a.attempt,
        "at_ms": a.at_ms,
        "duration_ms": a.duration_ms,
        "outcome": a.outcome,
        "status_code": a.status_code,
        "error": a.error,
        "next_attempt_ms": a.next_attempt_ms,
    }


def _attempt(r: Sequence[Any]) -> AttemptRecord:
    return AttemptRecord(
        id=r[0],
        target_index=int(r[1]),
        rule_id=r[2],
        kind=r[3],
        target_type=r[4],
        url=r[5],
        attempt=int(r[6]),
        at_ms=int(r[7]),
        duration_ms=int(r[8]),
        outcome=r[9],
        status_code=None if r[10] is None else int(r[10]),
        error=r[11],
        next_attempt_ms=None if r[12] is None else int(r[12]),
    )


def next_version(delivery: Delivery, **changes: Any) -> Delivery:
    """The row after an attempt: `changes` applied, version + 1 (so it replaces the current row)."""
    return replace(delivery, version=delivery.version + 1, **changes)
