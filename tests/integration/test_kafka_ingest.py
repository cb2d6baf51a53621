"""Ingest → Kafka against real brokers: wire format, in-batch duplicates, 503 while the broker is down.

The broker-down test runs its own broker (another KAFKA_PORT and KAFKA_DATA_DIR) so stopping it does not
disturb the shared one.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from cxpulse.bus.base import BusUnavailable
from cxpulse.bus.codec import decode_event
from cxpulse.bus.kafka import KafkaBus
from cxpulse.config import Settings
from cxpulse.domain.events import Event
from tests.conftest import event, iso
from tests.kafka_support import Names, OwnBroker, Procs, free_port, require_broker, wait_until

pytestmark = pytest.mark.kafka

NOW_MS = int(time.time() * 1000)


async def read_topic(
    bootstrap: str, topic: str, count: int, timeout_s: float = 30, until: Any = None
) -> list[Any]:
    """The topic's first `count` messages (or until `until(messages)` holds), from the beginning."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"read-{uuid.uuid4().hex}", auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[Any] = []
    try:
        async with asyncio.timeout(timeout_s):
            async for msg in consumer:
                got.append(msg)
                if until(got) if until else len(got) >= count:
                    break
    finally:
        await consumer.stop()
    return got


def _events(prefix: str, n: int) -> list[Event]:
    return [
        Event(
            f"{prefix}-{i}",
            "survey_answer",
            NOW_MS - 60_000 - i,
            f"cust-{i % 5}",
            "survey",
            survey="nps",
            score=i % 11,
            scale=10,
        )
        for i in range(n)
    ]


def test_publish_writes_public_json_keyed_by_customer() -> None:
    names = Names(require_broker())
    settings = names.settings()
    events = _events("e", 40)

    async def go() -> tuple[Any, list[Any]]:
        bus = KafkaBus(settings)
        try:
            result = await bus.publish([*events, events[3], events[7]])
        finally:
            await bus.stop()
        return result, await read_topic(names.bootstrap, names.topic, len(events))

    result, msgs = asyncio.run(go())
    assert (result.accepted, result.duplicates) == (40, 2)  # in-batch repeats only
    decoded = [decode_event(m.value, NOW_MS, 400) for m in msgs]
    assert {e.event_id: e for e in decoded if isinstance(e, Event)} == {e.event_id: e for e in events}
    assert all(m.key == orjson.loads(m.value)["customer_id"].encode() for m in msgs)
    partitions: dict[bytes, set[int]] = {}
    for m in msgs:
        partitions.setdefault(m.key, set()).add(m.partition)
    assert all(len(p) == 1 for p in partitions.values())  # one customer, one partition: its order holds


def test_publish_to_an_unreachable_broker_raises_bus_unavailable() -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", publish_timeout_s=2)

    async def go() -> None:
        bus = KafkaBus(settings)
        try:
            await bus.publish(_events("x", 1))
        finally:
            await bus.stop()

    with pytest.raises(BusUnavailable) as info:
        asyncio.run(go())
    assert info.value.retry_after_s > 0


def test_ingest_answers_503_while_the_broker_is_down_and_loses_nothing_acknowledged(tmp_path: Path) -> None:
    broker = OwnBroker(tmp_path / "kafka")
    broker.up()
    names = Names(broker.bootstrap)
    procs = Procs(tmp_path, names)
    acknowledged: set[str] = set()

    def body(prefix: str, n: int) -> bytes:
        at = iso(NOW_MS - 3_600_000)
        items = [event(f"{prefix}-{i}", "login", NOW_MS - 3_600_000, f"c{i}") for i in range(n)]
        assert all(it["occurred_at"] == at for it in items)
        return orjson.dumps(items)

    try:
        _, url = procs.http("ingest", name="ingest", env={"CXPULSE_PUBLISH_TIMEOUT_S": "3"})
        client = httpx.Client(base_url=url, timeout=30)
        r = client.post("/v1/events", content=body("a", 30))
        assert r.status_code == 202 and r.json()["accepted"] == 30
        acknowledged |= {f"a-{i}" for i in range(30)}
        assert client.get("/readyz").status_code == 200

        broker.down()
        r = client.post("/v1/events", content=body("b", 30))
        assert r.status_code == 503, r.text
        assert int(r.headers["Retry-After"]) > 0
        assert r.json()["error"]["code"] == "unavailable"
        assert client.get("/readyz").status_code == 503

        broker.up()

        def retried() -> bool:  # what a client does with a 503: retry after a while
            r = client.post("/v1/events", content=body("b", 30))
            return r.status_code == 202

        wait_until(retried, 90, "ingest to accept again", every_s=1.0)
        acknowledged |= {f"b-{i}" for i in range(30)}

        def ids(msgs: list[Any]) -> set[str]:
            return {orjson.loads(m.value)["event_id"] for m in msgs}

        def complete(msgs: list[Any]) -> bool:
            return acknowledged <= ids(msgs)

        # times out (fails) if an acknowledged event is missing
        msgs = asyncio.run(read_topic(names.bootstrap, names.topic, 0, timeout_s=60, until=complete))
        assert acknowledged <= ids(msgs)
    finally:
        procs.stop_all()
        broker.down()
