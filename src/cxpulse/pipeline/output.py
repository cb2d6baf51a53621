"""What a distributed worker produces per batch, and how it lands in the one store idempotently.

A worker turns `cx.events` messages into event rows and fact rows. They reach the store either directly
(ClickHouse server: every worker writes) or through the `cx.store` topic that the chDB-owning process
loads. Both paths end in `StoreWriter.write`, which is safe to repeat: at-least-once delivery redelivers
whole batches after a crash or a rebalance, so

- event rows whose `event_id` the store already holds are dropped (and repeats within the batch: the first
  wins, the order the worker saw them in), and
- fact rows go to ReplacingMergeTree tables keyed by (customer_id, fact id) with `version` = the
  customer's state sequence, so writing a row again, or an older row after a newer one, changes nothing;
- close-the-loop notifications enter the outbox by id (derived from rule and event), so a redelivered
  batch adds nothing. They travel without targets: the rules reach the workers without secrets, so the
  targets are those of the rule as the store holds it when the notification enters the outbox (a rule
  deleted or disabled meanwhile notifies nobody).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from cxpulse.domain.alerts.rules.errors import RuleError
from cxpulse.domain.alerts.rules.response import ResponseRule
from cxpulse.domain.alerts.rules.rule import parse_rule
from cxpulse.domain.state import FactRow
from cxpulse.notify.outbox import Notification, Outbox, StoreOutbox
from cxpulse.pipeline.batch import EventRow, Step
from cxpulse.store.alerts import AlertRepository
from cxpulse.store.base import Store
from cxpulse.store.repository import Repository
from cxpulse.store.snapshot import mark_distributed

log = logging.getLogger("cxpulse.pipeline.output")

#: `batch_seq` of rows written by the distributed path: the embedded processor's recovery replays batches
#: with `batch_seq` above its checkpoint, so 0 keeps distributed rows out of it.
DISTRIBUTED_BATCH_SEQ = 0


@dataclass
class Output:
    """The rows one worker batch produced for one customer (one `cx.store` message, keyed by customer)."""

    events: list[EventRow] = field(default_factory=list)
    facts: list[tuple[str, FactRow]] = field(default_factory=list)
    #: Close-the-loop notifications the batch raised for the customer (targets left out, see above).
    notifications: list[Notification] = field(default_factory=list)

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "events": self.events,
                "facts": [[t, r] for t, r in self.facts],
                "notifications": [_notification_json(n) for n in self.notifications],
            }
        )

    @classmethod
    def per_customer(cls, done: Step) -> dict[str, Output]:
        """A batch step's rows grouped by customer (one `cx.store` message each, keyed by customer)."""
        outputs: dict[str, Output] = {}
        for row in done.rows:
            outputs.setdefault(row["customer_id"], cls()).events.append(row)
        for (table, cid, _), fact in done.facts.items():
            outputs.setdefault(cid, cls()).facts.append((table, fact))
        for notification in done.notifications:
            cid = str(notification.body["customer_id"])
            outputs.setdefault(cid, cls()).notifications.append(notification)
        return outputs

    @classmethod
    def decode(cls, data: bytes) -> Output:
        obj = orjson.loads(data)
        return cls(
            events=list(obj["events"]),
            facts=[(str(t), dict(r)) for t, r in obj["facts"]],
            notifications=[_notification(n) for n in obj.get("notifications", ())],
        )


def _notification_json(n: Notification) -> dict[str, Any]:
    return {"id": n.id, "rule_id": n.rule_id, "kind": n.kind, "body": n.body}


def _notification(data: dict[str, Any]) -> Notification:
    kind = data["kind"]
    if kind not in ("alert", "response"):
        raise ValueError(f"unknown notification kind {kind!r}")
    return Notification(str(data["id"]), str(data["rule_id"]), kind, dict(data["body"]), ())


@dataclass(frozen=True, slots=True)
class Written:
    """What a `StoreWriter.write` did: new event rows, and the notifications it handed to the outbox."""

    events: int
    notifications: list[Notification]


class StoreWriter:
    """Idempotent writes of worker output into a `Store` (one writer per store: chDB loader, or a worker).

    `outbox`: where notifications go (the process's shared outbox, when it also runs the dispatcher)."""

    def __init__(
        self, store: Store, outbox: Outbox | None = None, clock: Callable[[], int] | None = None
    ) -> None:
        self.repo = Repository(store)
        self.rules = AlertRepository(store)
        self.outbox = outbox if outbox is not None else StoreOutbox(store)
        self._clock = clock or _wall_clock_ms
        self._marked = False

    def write(self, outputs: Sequence[Output]) -> Written:
        """Store the outputs' rows, then enqueue their notifications (rows first: a notification is only
        sent once the answer it is about is stored).

        Rows written here are not rolled up (several workers may write at once, and customer numbers need
        one sequencer), so the store is marked first: its readings then come from the raw SQL.
        """
        if not self._marked:
            mark_distributed(self.repo.store)
            self._marked = True
        unique: dict[str, EventRow] = {}
        facts: list[tuple[str, FactRow]] = []
        notifications: dict[str, Notification] = {}
        for out in outputs:
            for row in out.events:
                unique.setdefault(row["event_id"], row)
            facts += out.facts
            for n in out.notifications:
                notifications.setdefault(n.id, n)
        existing = self.repo.existing_ids(list(unique))
        fresh = [row for eid, row in unique.items() if eid not in existing]
        if fresh:
            self.repo.insert_events(fresh)
        self.repo.upsert_facts(facts)
        queued = self.enqueue(list(notifications.values())) if notifications else []
        return Written(len(fresh), queued)

    def enqueue(self, notifications: Sequence[Notification]) -> list[Notification]:
        """Add notifications to the outbox with their rule's current targets; returns those it passed to
        the outbox (with targets; the outbox itself ignores ids it holds already)."""
        rules: dict[str, ResponseRule | None] = {}
        ready = []
        for n in notifications:
            if n.rule_id not in rules:
                rules[n.rule_id] = self._response_rule(n.rule_id)
            rule = rules[n.rule_id]
            if rule is None or not rule.enabled:
                log.info("notification %s dropped: rule %s is gone or disabled", n.id, n.rule_id)
            elif rule.notify:
                ready.append(replace(n, targets=rule.notify))
        if ready:
            self.outbox.add_many(ready, self._clock())
        return ready

    def _response_rule(self, rule_id: str) -> ResponseRule | None:
        data = self.rules.rule_json(rule_id)
        if data is None or data.get("type") != "response":
            return None
        try:
            rule = parse_rule(data, metrics={}, rule_id=rule_id)
        except RuleError as exc:  # stored by the API after validation: not expected
            log.error("stored rule %s does not parse: %s", rule_id, exc)
            return None
        return rule if isinstance(rule, ResponseRule) else None


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000
