"""A plain aiokafka batch loop with at-least-once commits, shared by the loader and `run --kafka`.

Offsets are committed only after the handler returned, i.e. after its store write: a crash in between
redelivers the batch, and both handlers write idempotently. A failing handler is retried with the same
records (never skipped, never committed past).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import CommitFailedError, KafkaError

from services.aggregator.retrying import retrying

log = logging.getLogger("cxpulse.consume")

Records = list[ConsumerRecord[bytes, bytes]]
Handler = Callable[[Records], Awaitable[None]]


def consumer_for(
    topic: str, bootstrap: str, group: str, max_records: int, session_timeout_s: float = 10.0
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
        session_timeout_ms=int(session_timeout_s * 1000),
        heartbeat_interval_ms=int(min(3.0, session_timeout_s / 5) * 1000),
    )


async def consume(
    consumer: AIOKafkaConsumer,
    handle: Handler,
    *,
    max_records: int,
    within_s: float,
    stop: asyncio.Event,
) -> None:
    """Run `handle` on each fetched batch (partition order kept) until `stop` is set."""
    while not stop.is_set():
        fetched = await consumer.getmany(timeout_ms=int(within_s * 1000), max_records=max_records)
        records: Records = [r for part in fetched.values() for r in part]
        if not records:
            continue
        await retrying(f"a batch of {len(records)}", partial(handle, records))
        try:
            await consumer.commit()
        except (CommitFailedError, KafkaError) as exc:  # rebalanced meanwhile: the batch comes again
            log.warning("commit failed (%r); the batch will be redelivered", exc)
