"""A guard against Faust skipping offsets around a rebalance: refetch what the stream jumped over.

faust-streaming 0.15 can commit past offsets its agent never saw when a partition comes back to a worker
after a rebalance (seen here: every offset committed, events missing downstream; Faust records offset
jumps as "gaps" it later treats as acked, and acks stale-generation messages it skips — cf.
faust-streaming#216, #221, #312). So the worker checks each batch against the offset it expects next per
assigned partition (the group's committed offset right after an assignment) and reads any hole itself,
with a plain consumer, before processing the batch. Processing is idempotent, so reading a range twice is
harmless; missing it would lose events.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

log = logging.getLogger("cxpulse.aggregator.gaps")


@dataclass
class RefetchedMessage:
    """The parts of a Faust message the batch logic reads (timestamp in seconds, as Faust gives it)."""

    topic: str
    partition: int
    offset: int
    timestamp: float
    key: bytes | None
    value: bytes | None


@dataclass(eq=False)
class RefetchedEvent:
    message: RefetchedMessage


class GapGuard:
    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.bootstrap, self.group, self.topic = bootstrap, group, topic
        self.expected: dict[int, int] = {}  # partition → next offset this worker must process
        self.assigned: set[int] = set()

    async def on_assigned(self, partitions: Sequence[int]) -> None:
        """Start each newly assigned partition at the group's committed offset (where Faust seeks to)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(self.group)
        finally:
            await admin.close()
        self.expected = {}
        self.assigned = set(partitions)
        for p in partitions:
            meta = committed.get(TopicPartition(self.topic, p))
            if meta is not None and meta.offset >= 0:
                self.expected[p] = meta.offset
        # a partition without a committed offset is tracked from its first batch on

    async def fill(self, events: Sequence[Any]) -> list[Any]:
        """The batch with every skipped offset range of an assigned partition read back in front of it."""
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for e in events:
            m = e.message
            if m.topic == self.topic:
                first.setdefault(m.partition, m.offset)
                last[m.partition] = m.offset
        holes = {
            p: (self.expected[p], start)
            for p, start in first.items()
            if p in self.expected and start > self.expected[p]
        }
        missing: list[Any] = []
        if holes:
            missing = await self._read(holes)
            log.warning(
                "the stream skipped offsets %s; read %d messages back",
                {p: f"{a}..{b - 1}" for p, (a, b) in holes.items()},
                len(missing),
            )
        for p, end in last.items():
            if p in self.assigned:
                self.expected[p] = max(self.expected.get(p, end + 1), end + 1)
        return [*missing, *events]

    async def _read(self, holes: dict[int, tuple[int, int]]) -> list[Any]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        out: list[Any] = []
        try:
            tps = {p: TopicPartition(self.topic, p) for p in holes}
            consumer.assign(list(tps.values()))
            for p, (start, _) in holes.items():
                consumer.seek(tps[p], start)
            pending = dict(holes)
            while pending:
                fetched = await consumer.getmany(*[tps[p] for p in pending], timeout_ms=1000)
                for tp, records in fetched.items():
                    end = pending[tp.partition][1]
                    for r in records:
                        if r.offset < end:
                            out.append(
                                RefetchedEvent(
                                    RefetchedMessage(
                                        r.topic, r.partition, r.offset, r.timestamp / 1000, r.key, r.value
                                    )
                                )
                            )
                    if records and records[-1].offset >= end - 1:
                        pending.pop(tp.partition)
                for p in list(pending):
                    if await consumer.position(tps[p]) >= pending[p][1]:
                        pending.pop(p)
        finally:
            await consumer.stop()
        return out
