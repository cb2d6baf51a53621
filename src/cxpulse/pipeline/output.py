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

import orjson

from cxpulse.domain.state import FactRow
from cxpulse.pipeline.batch import EventRow, Step
from cxpulse.store.base import Store
from cxpulse.store.repository import Repository
from cxpulse.store.rollups import mark_distributed

#: `batch_seq` of rows written by the distributed path: the embedded processor's recovery replays batches
#: with `batch_seq` above its checkpoint, so 0 keeps distributed rows out of it.
DISTRIBUTED_BATCH_SEQ = 0


@dataclass
class Output:
    """The rows one worker batch produced for one customer (one `cx.store` message, keyed by customer)."""

    events: list[EventRow] = field(default_factory=list)
    facts: list[tuple[str, FactRow]] = field(default_factory=list)

    def encode(self) -> bytes:
        return orjson.dumps({"events": self.events, "facts": [[t, r] for t, r in self.facts]})

    @classmethod
    def per_customer(cls, done: Step) -> dict[str, Output]:
        """A batch step's rows grouped by customer (one `cx.store` message each, keyed by customer)."""
        outputs: dict[str, Output] = {}
        for row in done.rows:
            outputs.setdefault(row["customer_id"], cls()).events.append(row)
        for (table, cid, _), fact in done.facts.items():
            outputs.setdefault(cid, cls()).facts.append((table, fact))
        return outputs

    @classmethod
    def decode(cls, data: bytes) -> Output:
        obj = orjson.loads(data)
        return cls(events=list(obj["events"]), facts=[(str(t), dict(r)) for t, r in obj["facts"]])


class StoreWriter:
    """Idempotent writes of worker output into a `Store` (one writer per store: chDB loader, or a worker)."""

    def __init__(self, store: Store) -> None:
        self.repo = Repository(store)
        self._marked = False

    def write(self, outputs: Sequence[Output]) -> int:
        """Store the outputs' rows; returns how many event rows were new.

        Rows written here are not rolled up (several workers may write at once, and customer numbers need
        one sequencer), so the store is marked first: its readings then come from the raw SQL.
        """
        if not self._marked:
            mark_distributed(self.repo.store)
            self._marked = True
        unique: dict[str, EventRow] = {}
        facts: list[tuple[str, FactRow]] = []
        for out in outputs:
            for row in out.events:
                unique.setdefault(row["event_id"], row)
            facts += out.facts
        existing = self.repo.existing_ids(list(unique))
        fresh = [row for eid, row in unique.items() if eid not in existing]
        if fresh:
            self.repo.insert_events(fresh)
        self.repo.upsert_facts(facts)
        return len(fresh)
