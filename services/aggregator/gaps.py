"""A guard against Faust skipping offsets around a rebalance: read back what the stream left out.

faust-streaming 0.15 can leave out offsets its agent never saw when partitions move (seen here: events
missing downstream). On a revoke it clears the agents' buffered messages while its fetch position stays
past them, and after a seek it drops re-fetched messages below the last offset it read, or delivers a
prefetched later one first (cf. faust-streaming#216, #221, #312). So the worker tracks, per assigned
partition, the offset it must process next, and reads what is missing itself, with a plain consumer:

- a *hole*: a batch starts past that offset (the range is read back in front of the batch, `fill`);
- a *tail*: the partition has messages past that offset and the stream has not delivered them for a
  while (`stalled`, then `read`) — a hole that no later batch would reveal, when nothing else arrives.

Processing is idempotent, so reading a range twice is harmless; missing it would lose events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

log = logging.getLogger("cxpulse.aggregator.gaps")

#: partition → [first offset missing, first offset not missing)
Holes = dict[int, tuple[int, int]]

#: How long the stream may leave a partition's newer messages undelivered before the guard reads them.
#: Faust delivers within `batch_within_s` when it works, so this only fires when it stopped short.
STALL_S = 5.0


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
    """The offsets this worker must process next, and the reads that fill what the stream left out.
    Callers serialize its use (one batch at a time, see `faust_app`)."""

    def __init__(
        self, bootstrap: str, group: str, topic: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.bootstrap, self.group, self.topic = bootstrap, group, topic
        self.clock = clock
        self.expected: dict[int, int] = {}  # partition → next offset this worker must process
        self.assigned: set[int] = set()
        self._behind: dict[int, tuple[int, float]] = {}  # partition → (expected, since) while behind
        self._reader: AIOKafkaConsumer | None = None

    async def on_assigned(self, partitions: Sequence[int]) -> None:
        """Track each assigned partition from the group's committed offset (where Faust seeks to), or its
        first offset when nothing is committed (Faust starts at the earliest); a partition this worker kept
        through the rebalance from where it got to, when that is further."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(self.group)
        finally:
            await admin.close()
        kept = {p: self.expected[p] for p in partitions if p in self.assigned and p in self.expected}
        self.expected, self.assigned, self._behind = {}, set(partitions), {}
        fresh = []
        for p in partitions:
            meta = committed.get(TopicPartition(self.topic, p))
            if meta is not None and meta.offset >= 0:
                self.expected[p] = max(meta.offset, kept.get(p, 0))
            else:
                fresh.append(TopicPartition(self.topic, p))
        if fresh:
            reader = await self._consumer()
            for tp, first in (await reader.beginning_offsets(fresh)).items():
                self.expected[tp.partition] = max(first, kept.get(tp.partition, 0))

    def on_revoked(self, partitions: Iterable[int]) -> None:
        self.assigned.difference_update(partitions)

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
            if p in self.assigned and p in self.expected and start > self.expected[p]
        }
        missing: list[Any] = []
        if holes:
            missing = await self._read(holes)
            log.warning("the stream skipped offsets %s; read %d messages back", _ranges(holes), len(missing))
        for p, end in last.items():
            if p in self.assigned:
                self.expected[p] = max(self.expected.get(p, end + 1), end + 1)
        return [*missing, *events]

    async def stalled(self) -> Holes:
        """The ranges past the expected offsets that have waited `STALL_S` without the stream moving on
        (the expected offset unchanged since they were first seen)."""
        tracked = [TopicPartition(self.topic, p) for p in sorted(self.assigned) if p in self.expected]
        if not tracked:
            return {}
        ends = await (await self._consumer()).end_offsets(tracked)
        now, behind, holes = self.clock(), {}, {}
        for tp, end in ends.items():
            p, at = tp.partition, self.expected[tp.partition]
            if end <= at:
                continue
            seen_at, since = self._behind.get(p, (at, now))
            if seen_at != at:  # the stream moved on: a new wait starts
                since = now
            behind[p] = (at, since)
            if now - since >= STALL_S:
                holes[p] = (at, end)
        self._behind = behind
        return holes

    async def read(self, holes: Holes) -> list[Any]:
        """The messages of `holes`, as events; the expected offsets move past them."""
        missing = await self._read(holes)
        log.warning("the stream stopped short of offsets %s; read %d messages", _ranges(holes), len(missing))
        for p, (_, end) in holes.items():
            self.expected[p] = max(self.expected[p], end)
            self._behind.pop(p, None)
        return missing

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None

    async def _consumer(self) -> AIOKafkaConsumer:
        if self._reader is None:
            reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
            await reader.start()
            self._reader = reader
        return self._reader

    async def _read(self, holes: Holes) -> list[Any]:
        consumer = await self._consumer()
        tps = {p: TopicPartition(self.topic, p) for p in holes}
        consumer.assign(list(tps.values()))
        try:
            for p, (start, _) in holes.items():
                consumer.seek(tps[p], start)
            return await _fetch(consumer, tps, dict(holes))
        finally:
            consumer.unsubscribe()  # no prefetching of partitions nobody reads until the next hole


async def _fetch(consumer: AIOKafkaConsumer, tps: dict[int, TopicPartition], pending: Holes) -> list[Any]:
    """Every message of the `pending` ranges, the consumer positioned at their starts."""
    out: list[Any] = []
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
    return out


def _ranges(holes: Holes) -> dict[int, str]:
    return {p: f"{a}..{b - 1}" for p, (a, b) in holes.items()}
