"""The worker's gap guard on the real broker: where it starts each partition, the holes it reads back in
front of a batch, and the tail it reads once the stream has left it undelivered for `STALL_S`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from cxpulse.bus.kafka import ensure_topics
from services.aggregator.gaps import STALL_S, GapGuard, RefetchedEvent, RefetchedMessage
from tests.kafka_support import require_broker

pytestmark = pytest.mark.kafka


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def batch(topic: str, partition: int, offsets: range) -> list[RefetchedEvent]:
    """Events as the stream would deliver them (only topic / partition / offset matter to the guard)."""
    return [RefetchedEvent(RefetchedMessage(topic, partition, o, 0.0, None, b"")) for o in offsets]


def offsets(events: list[Any]) -> list[tuple[int, int]]:
    return [(e.message.partition, e.message.offset) for e in events]


async def with_topic(body: Callable[[str, str, str], Awaitable[None]]) -> None:
    """A 2-partition topic with 10 messages in each (values "p:offset"), partition 0's group offset
    committed at 4, nothing committed for partition 1."""
    bootstrap = require_broker()
    uid = uuid.uuid4().hex[:10]
    topic, group = f"t-{uid}.gaps", f"g-{uid}"
    await ensure_topics(bootstrap, [topic], 2)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for p in (0, 1):
            for i in range(10):
                await producer.send_and_wait(topic, f"{p}:{i}".encode(), partition=p)
    finally:
        await producer.stop()
    committer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await committer.start()
    try:
        committer.assign([TopicPartition(topic, 0)])
        await committer.commit({TopicPartition(topic, 0): OffsetAndMetadata(4, "")})
    finally:
        await committer.stop()
    await body(bootstrap, topic, group)


def run(body: Callable[[str, str, str], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(with_topic(body), 60))


def test_partitions_start_at_the_committed_offset_or_the_first_one() -> None:
    async def body(bootstrap: str, topic: str, group: str) -> None:
        guard = GapGuard(bootstrap, group, topic)
        try:
            await guard.on_assigned([0, 1])
            assert guard.expected == {0: 4, 1: 0}
            # a partition kept through a rebalance goes on from where this worker got to
            await guard.fill(batch(topic, 0, range(4, 8)))
            await guard.on_assigned([0])
            assert guard.expected == {0: 8}
            # one that came back from another worker starts at the committed offset again
            await guard.on_assigned([1])
            await guard.on_assigned([0, 1])
            assert guard.expected == {0: 4, 1: 0}
        finally:
            await guard.close()

    run(body)


def test_a_batch_that_starts_past_the_expected_offset_gets_the_hole_in_front() -> None:
    async def body(bootstrap: str, topic: str, group: str) -> None:
        guard = GapGuard(bootstrap, group, topic)
        try:
            await guard.on_assigned([0, 1])
            events = await guard.fill([*batch(topic, 0, range(7, 9)), *batch(topic, 1, range(0, 2))])
            assert offsets(events) == [(0, 4), (0, 5), (0, 6), (0, 7), (0, 8), (1, 0), (1, 1)]
            assert [e.message.value for e in events[:3]] == [b"0:4", b"0:5", b"0:6"]  # read back
            assert guard.expected == {0: 9, 1: 2}
            # contiguous batches, or a redelivery from before the expected offset: nothing to read
            again = batch(topic, 0, range(5, 10))
            assert await guard.fill(again) == again
            assert guard.expected == {0: 10, 1: 2}
        finally:
            await guard.close()

    run(body)


def test_a_tail_the_stream_leaves_undelivered_is_read_after_the_stall_time() -> None:
    async def body(bootstrap: str, topic: str, group: str) -> None:
        clock = Clock()
        guard = GapGuard(bootstrap, group, topic, clock=clock)
        try:
            await guard.on_assigned([0, 1])
            await guard.fill(batch(topic, 0, range(4, 10)))  # partition 0 is whole
            await guard.fill(batch(topic, 1, range(0, 6)))  # partition 1 stops short at 6 of 10
            assert await guard.stalled() == {}  # seen behind: the wait starts
            clock.now += STALL_S - 0.1
            assert await guard.stalled() == {}
            # the stream moves on (a batch arrives): a new wait starts from there
            await guard.fill(batch(topic, 1, range(6, 7)))
            clock.now += 0.2
            assert await guard.stalled() == {}
            clock.now += STALL_S
            holes = await guard.stalled()
            assert holes == {1: (7, 10)}
            events = await guard.read(holes)
            assert offsets(events) == [(1, 7), (1, 8), (1, 9)]
            assert [e.message.value for e in events] == [b"1:7", b"1:8", b"1:9"]
            assert guard.expected == {0: 10, 1: 10}
            clock.now += STALL_S
            assert await guard.stalled() == {}
        finally:
            await guard.close()

    run(body)


def test_revoked_partitions_are_not_read() -> None:
    async def body(bootstrap: str, topic: str, group: str) -> None:
        clock = Clock()
        guard = GapGuard(bootstrap, group, topic, clock=clock)
        try:
            await guard.on_assigned([0, 1])
            assert await guard.stalled() == {}
            clock.now += STALL_S
            assert await guard.stalled() == {0: (4, 10), 1: (0, 10)}
            guard.on_revoked([1])
            assert await guard.stalled() == {0: (4, 10)}
            # a batch of a revoked partition (a stale delivery) does not reopen it
            assert offsets(await guard.fill(batch(topic, 1, range(8, 9)))) == [(1, 8)]
            assert 1 not in guard.assigned
        finally:
            await guard.close()

    run(body)
