"""The distributed shape against the real broker gives exactly the embedded readings.

HTTP → `cxpulse ingest` → Kafka → `cxpulse aggregator` (Faust, subprocesses) → `cx.store` → loader →
chDB → `/v1/pulse`, compared with `EmbeddedRuntime` fed the same request bodies. The workload has late and
out-of-order events (scenario order is not time order, batches are shuffled) and duplicates whose content
differs from the first copy (the first accepted must win), plus a support case re-contacted later.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from bench.workload import Workload, iso
from cxpulse.config import Settings
from cxpulse.store import Store
from services.aggregator.loader import Loader
from services.api.app import create_app
from services.embedded import EmbeddedRuntime
from tests.kafka_support import BackgroundLoop, Procs, sibling_store, wait_until

pytestmark = pytest.mark.kafka

MINUTE_MS = 60_000


def workload(n: int = 1500, seed: int = 11, batch: int = 50) -> tuple[list[bytes], str, int]:
    """NDJSON bodies (duplicates included), the reading time `at`, and the number of distinct events."""
    end_ms = (int(time.time() * 1000) // MINUTE_MS - 2) * MINUTE_MS
    rng = random.Random(seed)
    events = list(Workload(seed=seed, customers=120, days=20, end_ms=end_ms, id_prefix=f"s{seed}").events(n))
    distinct = len(events)
    dups = []
    for ev in rng.sample(events, n // 10):
        dup = dict(ev)
        dup["channel"] = "dup"  # a different body with the same id: must never count
        if "score" in dup:
            dup["score"] = 10 if dup["survey"] == "nps" else 1
        dups.append(dup)
    stream = events + dups
    # keep every duplicate after its first copy, otherwise shuffle freely (late / out-of-order arrival)
    rng.shuffle(events)
    stream = events + dups
    bodies = [
        b"\n".join(orjson.dumps(e) for e in stream[i : i + batch]) + b"\n"
        for i in range(0, len(stream), batch)
    ]
    return bodies, iso(end_ms + MINUTE_MS), distinct


QUERIES = [
    "window=7d",
    "window=30d",
    "window=30d&channel=web",
    "window=3d&segment=pro",
]
BREAKDOWNS = ["nps/breakdown?by=channel&window=30d", "fcr/breakdown?by=segment&window=30d"]


def readings(client: httpx.Client | TestClient, at: str) -> dict[str, Any]:
    out = {}
    for q in QUERIES:
        out[q] = client.get(f"/v1/pulse?{q}&at={at}").json()
    for q in BREAKDOWNS:
        out[q] = client.get(f"/v1/pulse/{q}&at={at}").json()
    return out


def reference(runtime: EmbeddedRuntime, settings: Settings, bodies: list[bytes], at: str) -> dict[str, Any]:
    """The embedded mode's readings for the same request bodies."""
    client = TestClient(runtime.app(settings))
    for body in bodies:
        r = client.post("/v1/events", content=body, headers={"content-type": "application/x-ndjson"})
        assert r.status_code == 202, r.text
    result = readings(client, at)
    assert result["window=30d"]["readings"]["nps"]["n"] > 50  # the workload really has data to compare
    return result


def post(url: str, bodies: list[bytes], pause_s: float = 0.0) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for body in bodies:
            r = client.post("/v1/events", content=body, headers={"content-type": "application/x-ndjson"})
            assert r.status_code == 202, r.text
            time.sleep(pause_s)


def stored_events(store: Store) -> int:
    rows = store.rows("SELECT count() FROM {db:Identifier}.events", {"db": store.database})
    return int(rows[0][0])


@contextmanager
def loader_into(procs: Procs, runtime: EmbeddedRuntime, settings: Settings) -> Iterator[Store]:
    """A store beside the reference one, loaded from the test's `cx.store` by the loader."""
    store = sibling_store(runtime.store, settings.database + "_k")
    loop = BackgroundLoop(Loader(procs.names.settings(), store).run)
    try:
        yield store
    finally:
        loop.stop()


def assert_converges(
    store: Store, settings: Settings, expected: dict[str, Any], at: str, distinct: int
) -> None:
    client = TestClient(create_app(store, settings))
    wait_until(lambda: stored_events(store) >= distinct, 180, f"{distinct} events stored", every_s=0.5)
    wait_until(lambda: readings(client, at) == expected, 60, "the embedded readings", every_s=1.0)
    assert stored_events(store) == distinct  # each event once: no duplicate, no redelivery counted twice


def test_http_ingest_kafka_faust_store_gives_the_embedded_readings(
    procs: Procs, runtime: EmbeddedRuntime, settings: Settings
) -> None:
    bodies, at, distinct = workload()
    expected = reference(runtime, settings, bodies, at)
    procs.worker()
    _, ingest = procs.http("ingest", name="ingest")
    with loader_into(procs, runtime, settings) as store:
        post(ingest, bodies)
        assert_converges(store, settings, expected, at, distinct)


def test_worker_killed_mid_stream_and_restarted_gives_the_same_readings(
    procs: Procs, runtime: EmbeddedRuntime, settings: Settings
) -> None:
    bodies, at, distinct = workload(seed=12)
    expected = reference(runtime, settings, bodies, at)
    worker = procs.worker("worker-1")
    _, ingest = procs.http("ingest", name="ingest")
    with loader_into(procs, runtime, settings) as store:
        sender = threading.Thread(target=post, args=(ingest, bodies, 0.05))
        sender.start()
        at_kill = wait_until(
            lambda: (n := stored_events(store)) >= distinct // 4 and n, 60, "a quarter loaded", every_s=0.05
        )
        worker.kill(signal.SIGKILL)
        assert at_kill < distinct, "the worker was killed mid-stream"
        sender.join()
        procs.worker("worker-2")
        assert_converges(store, settings, expected, at, distinct)


def test_two_workers_then_one_leaves_gives_the_same_readings(
    procs: Procs, runtime: EmbeddedRuntime, settings: Settings
) -> None:
    """A works alone, B joins (recovers the state A wrote for its new partitions), B leaves (A recovers
    what B wrote). Every step has events that depend on state written by the other worker."""
    bodies, at, distinct = workload(seed=13)
    expected = reference(runtime, settings, bodies, at)
    first = procs.worker("worker-a")
    _, ingest = procs.http("ingest", name="ingest")
    third = len(bodies) // 3
    with loader_into(procs, runtime, settings) as store:
        post(ingest, bodies[:third])
        wait_until(lambda: stored_events(store) > distinct // 4, 60, "the first third loaded")
        second = procs.worker("worker-b")
        post(ingest, bodies[third : 2 * third])
        wait_until(lambda: stored_events(store) > distinct // 2, 60, "the second third loaded")
        second.kill(signal.SIGTERM)  # leaves the group: its partitions move back to A
        post(ingest, bodies[2 * third :])
        assert_converges(store, settings, expected, at, distinct)
    topic = procs.names.topic
    assert first.popen.poll() is None
    # A had all, shared them with B, then took them all back when B left
    pattern = rf"assigned {re.escape(topic)} partitions \[([\d, ]*)\]"
    a_history = re.findall(pattern, first.log())
    b_history = re.findall(pattern, second.log())
    assert any(h and h != "0, 1, 2, 3" for h in b_history), b_history
    assert a_history[-1] == "0, 1, 2, 3" and any(h != "0, 1, 2, 3" for h in a_history), a_history


def test_poison_messages_go_to_the_dlq_and_processing_goes_on(
    procs: Procs, runtime: EmbeddedRuntime, settings: Settings
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    bodies, at, distinct = workload(n=600, seed=14)
    expected = reference(runtime, settings, bodies, at)
    names = procs.names
    poison = [
        (b"cust-1", b"\x00not json at all"),
        (b"cust-2", b'{"event_id": "bad-1", "type": "survey_answer", "customer_id": "cust-2"}'),
    ]

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=names.bootstrap, acks="all")
        await producer.start()
        try:
            for key, value in poison:
                await producer.send_and_wait(names.topic, value, key=key)
        finally:
            await producer.stop()

    async def dead_letters() -> list[Any]:
        consumer = AIOKafkaConsumer(
            names.env()["CXPULSE_DLQ_TOPIC"],
            bootstrap_servers=names.bootstrap,
            group_id=f"dlq-{names.uid}",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        got: list[Any] = []
        try:
            async with asyncio.timeout(60):
                async for msg in consumer:
                    got.append(msg)
                    if len(got) == len(poison):
                        break
        finally:
            await consumer.stop()
        return got

    procs.worker()
    _, ingest = procs.http("ingest", name="ingest")
    with loader_into(procs, runtime, settings) as store:
        post(ingest, bodies[: len(bodies) // 2])
        asyncio.run(produce())
        post(ingest, bodies[len(bodies) // 2 :])
        assert_converges(store, settings, expected, at, distinct)
    letters = asyncio.run(dead_letters())
    by_value = {m.value: (m.key, dict(m.headers)) for m in letters}
    assert set(by_value) == {v for _, v in poison}  # the original bytes, untouched
    key, headers = by_value[poison[0][1]]
    assert key == b"cust-1" and headers["cx.dlq.reason"] == b"undecodable"
    _, headers = by_value[poison[1][1]]
    assert headers["cx.dlq.reason"] == b"invalid"
    fields = {e["field"] for e in orjson.loads(headers["cx.dlq.errors"])}
    assert "occurred_at" in fields and "survey" in fields


def test_run_with_kafka_bus_end_to_end(
    procs: Procs, runtime: EmbeddedRuntime, settings: Settings, tmp_path: Any
) -> None:
    bodies, at, _ = workload(n=800, seed=15)
    expected = reference(runtime, settings, bodies, at)
    _, url = procs.http(
        "run", "--kafka", procs.names.bootstrap, "--data-dir", str(tmp_path / "run-data"), name="run"
    )
    post(url, bodies)
    with httpx.Client(base_url=url, timeout=30) as client:
        wait_until(lambda: readings(client, at) == expected, 90, "the embedded readings", every_s=1.0)


def test_a_restarted_worker_recovers_keyed_state_from_the_changelog(
    procs: Procs, runtime: EmbeddedRuntime, settings: Settings
) -> None:
    """A case contacted before the restart and resolved after it: only recovered state knows the contact."""
    now = int(time.time() * 1000)
    t1, t2 = now - 3 * 3_600_000, now - 3_600_000
    contact = {"event_id": "r-1", "type": "support_contact", "occurred_at": iso(t1), "customer_id": "cr"}
    resolved = {**contact, "event_id": "r-2", "type": "support_resolved", "occurred_at": iso(t2)}
    repeat = {**contact, "case_id": "other"}  # same id as the contact: a duplicate, whatever it says
    contact["case_id"] = resolved["case_id"] = "k"
    first = procs.worker("worker-1")
    _, ingest = procs.http("ingest", name="ingest")
    with loader_into(procs, runtime, settings) as store:
        post(ingest, [orjson.dumps(contact)])
        wait_until(lambda: stored_events(store) == 1, 60, "the contact stored")
        first.kill(signal.SIGTERM)
        procs.worker("worker-2")
        post(ingest, [orjson.dumps(repeat), orjson.dumps(resolved)])

        def case() -> list[Any]:
            return store.rows(
                "SELECT case_id, first_ms, resolved_ms, contacts FROM {db:Identifier}.cases FINAL",
                {"db": store.database},
            )

        assert wait_until(case, 60, "the case fact") == [["k", t1, t2, 1]]
        assert stored_events(store) == 2  # the repeat of r-1 was recognised after the restart
