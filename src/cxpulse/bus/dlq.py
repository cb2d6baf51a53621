"""Dead-letter routing, the one way: the original key and bytes to the DLQ topic, the diagnosis in headers.

Both consumers of `cx.events` (the Faust worker and `run --kafka`) read messages that look alike — Faust
messages and aiokafka records both carry topic, partition, offset, key and value — and send with their own
producer, so the producer is a parameter: `send(topic, key, value, headers)` returns once acked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from cxpulse.bus.codec import DeadLetter, dead_letter_headers

log = logging.getLogger("cxpulse.dlq")

Headers = list[tuple[str, bytes]]
Send = Callable[[str, bytes | None, bytes | None, Headers], Awaitable[None]]


class SourceMessage(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


async def route_dead_letters(
    send: Send, dlq_topic: str, dead: Sequence[tuple[SourceMessage, DeadLetter]]
) -> None:
    """Log and publish each dead letter; returns once every one is acked."""
    sends = []
    for msg, letter in dead:
        log.warning(
            "to the DLQ: %s/%d/%d %s %s",
            msg.topic,
            msg.partition,
            msg.offset,
            letter.reason,
            [e.get("field") for e in letter.errors[:3]],  # fields only: messages may quote the data
        )
        headers = dead_letter_headers(letter, msg.topic, msg.partition, msg.offset)
        sends.append(send(dlq_topic, msg.key, msg.value, headers))
    await asyncio.gather(*sends)
