"""Leader election through a Kafka consumer group: whoever is assigned the one partition of a one-partition
topic leads. Kafka's group coordinator is the arbiter, so no extra service (ZooKeeper, etcd, a lock table)
is needed, and the takeover time is the group's session timeout.

The leader runs a *duty* (the metric-rule evaluator and the notification dispatcher of the API) while it
holds the partition. On a rebalance Kafka first revokes the partition from its holder — the duty is
stopped and awaited inside the revocation callback — and only then assigns it again, so a graceful
hand-over never has two duties running. A leader that dies (SIGKILL, a lost host) stops heartbeating; the
coordinator evicts it after the session timeout and the next member is assigned the partition. A leader
that is alive but cut off from Kafka keeps running its duty until its own heartbeat session expires and
the consumer rejoins (revoking first): during that window two duties can overlap (see docs/distributed.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

log = logging.getLogger("cxpulse.bus.leader")

#: What the leader runs: an `async def duty(deposed)` that returns soon after `deposed` is set.
Duty = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class LeaderElection:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        duty: Duty,
        *,
        session_timeout_s: float = 10.0,
        member: str | None = None,
    ) -> None:
        self.topic = topic
        self.duty = duty
        self.member = member or f"{socket.gethostname()}:{os.getpid()}"
        self._partition = TopicPartition(topic, 0)
        self._options: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "group_id": group,
            "client_id": f"cxpulse-leader-{self.member}",
            "enable_auto_commit": False,
            "auto_offset_reset": "latest",
            "session_timeout_ms": int(session_timeout_s * 1000),
            "heartbeat_interval_ms": int(min(3.0, session_timeout_s / 5) * 1000),
        }
        self._task: asyncio.Task[None] | None = None
        self._deposed = asyncio.Event()
        #: How often this member became leader (for logs and tests).
        self.terms = 0

    @property
    def is_leader(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run(self, stop: asyncio.Event) -> None:
        """Take part in the election until `stop`; raises if the duty failed (the process should exit so
        another member takes over, rather than hold the leadership with a dead duty)."""
        consumer = AIOKafkaConsumer(**self._options)  # here: aiokafka wants a running loop
        consumer.subscribe([self.topic], listener=_Listener(self))
        await consumer.start()
        log.info("member %s takes part in the election on %s", self.member, self.topic)
        try:
            while not stop.is_set():
                # polling keeps the membership alive and runs the rebalance callbacks
                await consumer.getmany(timeout_ms=500)
                task = self._task
                if task is not None and task.done() and not task.cancelled() and task.exception():
                    raise RuntimeError(f"the leader's duty failed: {task.exception()!r}")
        finally:
            await self._step_down()
            await consumer.stop()  # leaves the group: a follower is assigned at once

    def _elected(self, assigned: set[TopicPartition]) -> None:
        if self._partition in assigned and self._task is None:
            self.terms += 1
            self._deposed = asyncio.Event()
            self._task = asyncio.create_task(self.duty(self._deposed), name=f"leader duty {self.member}")
            log.info("member %s is the leader (term %d on this member)", self.member, self.terms)

    async def _step_down(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._deposed.set()
        try:
            await task
        except Exception:  # its failure is reported by run(); here only make sure it has ended
            log.exception("the leader's duty failed while stepping down")
        log.info("member %s stepped down", self.member)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, election: LeaderElection) -> None:
        self.election = election

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.election._step_down()  # before anyone else can be assigned the partition

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.election._elected(assigned)
