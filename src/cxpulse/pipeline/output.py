"""What a distributed worker produces per batch, and how it lands in the one store idempotently.

A worker turns `cx.events` messages into event rows and fact rows. They reach the store either directly
(ClickHouse server: every worker writes) or through the `cx.store` topic that the chDB-owning process
loads. Both paths end in `StoreWriter.write`, which is safe to repeat: at-least-once delivery redelivers
whole batches after a crash or a rebalance, so

- event rows whose `event_id` the store already holds are dropped (and repeats within the batch: the first
  wins, the order the worker saw them in), and
- fact rows go to ReplacingMergeTree tables keyed by (customer_id, fact id) with `version` = the
  customer's state sequence, so writing a row again, or an older row after a newer one, changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from cxpulse.domain.events import Event
from cxpulse.domain.state import FactRow
from cxpulse.pipeline.repository import Repository
from cxpulse.store.base import Store

EventRow = dict[str, Any]

#: `batch_seq` of rows written by the distributed path: the embedded processor's recovery replays batches
#: with `batch_seq` above its checkpoint, so 0 keeps distributed rows out of it.
DISTRIBUTED_BATCH_SEQ = 0


def event_row(event: Event, received_ms: int) -> EventRow:
    """The `events` row of a worker-processed event (`received_ms` = the Kafka message timestamp)."""
    return {**event.to_row(), "received_ms": received_ms, "batch_seq": DISTRIBUTED_BATCH_SEQ}


@dataclass
class Output:
    """The rows one worker batch produced for one customer (one `cx.store` message, keyed by customer)."""

    events: list[EventRow] = field(default_factory=list)
    facts: list[tuple[str, FactRow]] = field(default_factory=list)

    def encode(self) -> bytes:
        return orjson.dumps({"events": self.events, "facts": [[t, r] for t, r in self.facts]})

    @classmethod
    def decode(cls, data: bytes) -> Output:
        obj = orjson.loads(data)
        return cls(events=list(obj["events"]), facts=[(str(t), dict(r)) for t, r in obj["facts"]])


class StoreWriter:
    """Idempotent writes of worker output into a `Store` (one writer per store: chDB loader, or a worker)."""

    def __init__(self, store: Store) -> None:
        self.repo = Repository(store)

    def write(self, outputs: Sequence[Output]) -> int:
        """Store the outputs' rows; returns how many event rows were new."""
        unique: dict[str, EventRow] = {}
        facts: list[tuple[str, FactRow]] = []
        for out in outputs:
            for row in out.events:
                unique.setdefault(row["event_id"], row)
            facts += out.facts
        existing = self.repo.existing_ids(list(unique))
        fresh = [row for eid, row in unique.items() if eid not in existing]
        if fresh:
            self.repo.store.insert("events", fresh)
        self.repo.upsert_facts(facts)
        return len(fresh)
