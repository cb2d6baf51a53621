"""The local Kafka broker (scripts/kafka.sh up) round-trips a message with aiokafka.

Start it first:  bash scripts/kafka.sh up   (KAFKA_PORT, default 9092)
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = ROOT / "scripts" / "kafka.sh"
PORT = int(os.environ.get("KAFKA_PORT", "9092"))
BOOTSTRAP = f"127.0.0.1:{PORT}"

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def broker() -> str:
    proc = subprocess.run(
        ["bash", str(KAFKA_SH), "status"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "KAFKA_PORT": str(PORT)},
    )
    if proc.returncode != 0:
        pytest.skip(
            f"no Kafka broker answering on {BOOTSTRAP} "
            f"(start one with `bash scripts/kafka.sh up`): {proc.stdout.strip()}"
        )
    return BOOTSTRAP


async def _round_trip(
    bootstrap: str, topic: str, payloads: list[bytes]
) -> list[tuple[bytes | None, bytes | None]]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i, value in enumerate(payloads):
            await producer.send_and_wait(topic, value, key=f"k{i}".encode(), partition=0)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"cxpulse-test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[tuple[bytes | None, bytes | None]] = []
    try:
        async with asyncio.timeout(30):
            async for msg in consumer:
                got.append((msg.key, msg.value))
                if len(got) == len(payloads):
                    break
        await consumer.commit()
    finally:
        await consumer.stop()
    return got


def test_produce_and_consume_round_trip(broker: str) -> None:
    topic = f"cxpulse-test-{uuid.uuid4().hex}"
    payloads = [f'{{"n": {i}, "id": "{uuid.uuid4()}"}}'.encode() for i in range(5)]
    got = asyncio.run(_round_trip(broker, topic, payloads))
    assert got == [(f"k{i}".encode(), p) for i, p in enumerate(payloads)]


def test_topic_is_auto_created_with_configured_partitions(broker: str) -> None:
    from aiokafka import AIOKafkaProducer

    async def partitions(topic: str) -> set[int]:
        producer = AIOKafkaProducer(bootstrap_servers=broker)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"x")
            parts: set[int] = await producer.partitions_for(topic)
            return parts
        finally:
            await producer.stop()

    parts = asyncio.run(partitions(f"cxpulse-test-{uuid.uuid4().hex}"))
    expected = int(os.environ.get("KAFKA_PARTITIONS", "4"))
    assert len(parts) == expected
