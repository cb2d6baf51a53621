"""Close-the-loop in the Faust worker's batch glue (`BatchProcessor`): the cooldown lives in the customers
table entry, so a worker that takes over a partition (entries recovered from the changelog) and gets the
same answer again — redelivered at its position — raises the *same* notification (same id: the outbox
keeps one), while a re-posted copy (another offset) raises none. The notifications travel in `Output`."""

from __future__ import annotations

import copy
import time
from datetime import datetime
from typing import Any

import orjson

from cxpulse.domain.alerts.responses import notification_id
from cxpulse.domain.alerts.rules.response import ResponseRule
from cxpulse.domain.alerts.rules.targets import Target
from cxpulse.pipeline.output import Output
from services.aggregator.faust_app import BatchProcessor, Entry
from services.aggregator.gaps import RefetchedEvent, RefetchedMessage
from tests.conftest import event

RULE = ResponseRule("r-1", "Detractors", "nps", notify=(Target("webhook", "http://127.0.0.1:1/hook", "s"),))


def message(item: dict[str, Any], offset: int, now_s: float, partition: int = 0) -> Any:
    return RefetchedEvent(
        RefetchedMessage(
            "cx.events", partition, offset, now_s, item["customer_id"].encode(), orjson.dumps(item)
        )
    )


class Changelog:
    """The `customers` table as the changelog holds it: what a worker persisted, recovered by the next."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def worker(self) -> BatchProcessor:
        recovered = copy.deepcopy(self.entries)  # a new process: its own copy, rebuilt from the changelog
        return BatchProcessor(recovered.get, retention_days=400)

    def persist(self, result: Any) -> None:
        for cid, (_, entry) in result.entries.items():
            self.entries[cid] = copy.deepcopy(entry)


def test_redelivery_to_another_worker_raises_the_same_notification_and_a_repost_none() -> None:
    now_s = time.time()
    now_ms = int(now_s * 1000)
    answer = event("a-1", "survey_answer", now_ms - 60_000, "cust-9", survey="nps", score=2)
    log = Changelog()

    first = log.worker().process([message(answer, 5, now_s)], [RULE])
    log.persist(first)  # changelog written; the worker dies before its output lands or offsets commit
    (n1,) = first.outputs["cust-9"].notifications
    assert n1.id == notification_id(RULE.id, "a-1") and n1.body["score"] == 2
    assert log.entries["cust-9"]["state"]["notified"] == {"r-1": answer_ms(answer)}

    taken_over = log.worker().process([message(answer, 5, now_s + 30)], [RULE])  # redelivered, same offset
    log.persist(taken_over)
    (n2,) = taken_over.outputs["cust-9"].notifications
    assert n2.id == n1.id and n2.body == n1.body

    reposted = log.worker().process([message(answer, 9, now_s + 60)], [RULE])  # the client posted it again
    assert not any(out.notifications for out in reposted.outputs.values())

    later = event("a-2", "survey_answer", now_ms - 30_000, "cust-9", survey="nps", score=1)
    within_cooldown = log.worker().process([message(later, 10, now_s + 60)], [RULE])
    assert not within_cooldown.outputs["cust-9"].notifications


def test_no_rules_no_notifications_and_rules_apply_per_batch() -> None:
    now_s = time.time()
    answer = event("b-1", "survey_answer", int(now_s * 1000) - 1000, "cust-1", survey="nps", score=0)
    log = Changelog()
    assert not log.worker().process([message(answer, 1, now_s)]).outputs["cust-1"].notifications
    assert log.worker().process([message(answer, 1, now_s)], [RULE]).outputs["cust-1"].notifications


def test_output_carries_notifications_without_their_targets() -> None:
    now_s = time.time()
    answer = event("c-1", "survey_answer", int(now_s * 1000) - 1000, "cust-2", survey="nps", score=3)
    out = Changelog().worker().process([message(answer, 1, now_s)], [RULE]).outputs["cust-2"]
    wire = out.encode()
    assert b"http://127.0.0.1:1/hook" not in wire  # targets (and their secrets) stay with the API
    back = Output.decode(wire)
    (n,) = back.notifications
    (orig,) = out.notifications
    assert (n.id, n.rule_id, n.kind, dict(n.body), n.targets) == (
        orig.id,
        "r-1",
        "response",
        dict(orig.body),
        (),
    )
    assert back.events == out.events
    old = orjson.dumps({"events": out.events, "facts": []})  # written by a worker of the previous version
    assert Output.decode(old).notifications == []


def answer_ms(item: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(item["occurred_at"]).timestamp() * 1000)
