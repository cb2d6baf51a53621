"""Distributed-mode benchmark against the local broker (`scripts/kafka.sh up`), each figure with its baseline.

    python -m bench.kafka [--events 100000] [--freshness 60]

1. Ingest → Kafka: `cxpulse ingest` in a subprocess, NDJSON batches of 1000 posted over HTTP by a few
   connections (202 = acked by Kafka), vs a raw aiokafka producer with the *same* producer settings
   (acks=all, idempotent, compression, linger) sending the same events' JSON. Target ≥ 0.5×.
2. One Faust worker: `cxpulse aggregator` over a topic pre-filled with the events (output to `cx.store`),
   timed from "Worker ready" until its committed offsets reach the end, vs a raw aiokafka consumer loop
   that reads and JSON-decodes the same topic. Target ≥ 0.3×.
3. Freshness: ingest + one worker + `cxpulse api` (loader, chDB); one event at a time, the time from its
   202 until `/v1/pulse` counts it (polled every 20 ms). Target p95 ≤ 2 s.

Every run uses fresh uuid topics and groups. Results: printed, and `bench/results/kafka-<timestamp>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import orjson

from bench.harness import free_port, machine_info, post_batches, summarize
from bench.workload import Workload, iso
from cxpulse.bus.kafka import ensure_topics, producer_options
from cxpulse.config import Settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
BOOTSTRAP = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"


def log(msg: str) -> None:
    print(f"[bench.kafka] {msg}", file=sys.stderr, flush=True)


def names() -> dict[str, str]:
    uid = uuid.uuid4().hex[:10]
    return {
        "CXPULSE_KAFKA_BOOTSTRAP": BOOTSTRAP,
        "CXPULSE_TOPIC": f"bench-{uid}.events",
        "CXPULSE_DLQ_TOPIC": f"bench-{uid}.dlq",
        "CXPULSE_STORE_TOPIC": f"bench-{uid}.store",
        "CXPULSE_APP_ID": f"bench-{uid}",
        "CXPULSE_LOADER_GROUP": f"bench-loader-{uid}",
    }


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(**{k.removeprefix("CXPULSE_").lower(): v for k, v in env.items()})


@contextmanager
def process(args: list[str], env: dict[str, str], wait_for: str | None = None) -> Iterator[tuple[Any, Path]]:
    """A `cxpulse …` subprocess; yields (popen, log path); waits for `wait_for` in the log if given."""
    log_path = Path(tempfile.mkstemp(prefix="cxpulse-bench-", suffix=".log")[1])
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        if wait_for:
            deadline = time.monotonic() + 120
            while wait_for not in log_path.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{args[0]} did not get ready:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.02)
        yield proc, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_http(url: str, proc: Any) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the service exited")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


def event_dicts(n: int, seed: int = 5) -> list[dict[str, Any]]:
    return list(Workload(seed=seed, customers=max(100, n // 20), days=30).events(n))


# ---------------------------------------------------------------------------------------------------
# 1. ingest → Kafka vs a raw producer
# ---------------------------------------------------------------------------------------------------
async def raw_produce(settings: Settings, values: list[tuple[bytes, bytes]]) -> float:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**producer_options(settings))
    await producer.start()
    try:
        t0 = time.perf_counter()
        acks = [await producer.send(settings.topic, v, key=k) for k, v in values]
        await asyncio.gather(*acks)
        return time.perf_counter() - t0
    finally:
        await producer.stop()


def bench_ingest(n: int, concurrency: int) -> dict[str, Any]:
    events = event_dicts(n)
    env = names()
    settings = settings_of(env)
    asyncio.run(ensure_topics(BOOTSTRAP, [settings.topic], settings.kafka_partitions))
    raw_s = asyncio.run(raw_produce(settings, [(e["customer_id"].encode(), orjson.dumps(e)) for e in events]))
    bodies = [b"\n".join(orjson.dumps(e) for e in events[i : i + 1000]) + b"\n" for i in range(0, n, 1000)]
    env2 = names()  # a fresh topic for the service
    asyncio.run(ensure_topics(BOOTSTRAP, [env2["CXPULSE_TOPIC"]], settings.kafka_partitions))
    port = free_port()
    with process(["ingest", "--port", str(port)], env2) as (proc, _):
        wait_http(f"http://127.0.0.1:{port}", proc)
        post_batches(port, bodies[:5], 1)  # warm-up (connection, metadata, schema compile)
        res = post_batches(port, bodies, concurrency)
    raw_eps = n / raw_s
    return {
        "events": n,
        "compression": settings.kafka_compression,
        "raw_producer_events_per_s": round(raw_eps),
        "ingest_events_per_s": res["events_per_s"],
        "ratio": round(res["events_per_s"] / raw_eps, 2),
        "target_ratio": 0.5,
        "http_concurrency": concurrency,
        "batch_latency_ms": res["batch_latency_ms"],
        "errors": res["error_count"],
    }


# ---------------------------------------------------------------------------------------------------
# 2. one Faust worker vs a raw consumer loop
# ---------------------------------------------------------------------------------------------------
async def prefill(settings: Settings, events: list[dict[str, Any]]) -> None:
    await ensure_topics(BOOTSTRAP, [settings.topic], settings.kafka_partitions)
    await raw_produce(settings, [(e["customer_id"].encode(), orjson.dumps(e)) for e in events])


async def raw_consume(settings: Settings, n: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        settings.topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=f"raw-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        seen = 0
        t0 = time.perf_counter()
        while seen < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for r in records:
                    orjson.loads(r.value)
                seen += len(records)
        await consumer.commit()
        return time.perf_counter() - t0
    finally:
        await consumer.stop()


@dataclass
class _Message:
    topic: str
    partition: int
    offset: int
    timestamp: float  # seconds, as Faust gives it
    key: bytes | None
    value: bytes | None


@dataclass(eq=False)
class _Event:
    message: _Message


async def raw_same_work(settings: Settings, n: int) -> float:
    """A plain aiokafka loop doing the worker's per-message work, without Faust (and without changelogs):
    decode, validate, dedup, fold (`BatchProcessor` over a dict), output to a topic, commit."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from services.aggregator.faust_app import BatchProcessor

    consumer = AIOKafkaConsumer(
        settings.topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=f"same-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(**producer_options(settings))
    table: dict[str, dict[str, Any]] = {}
    batch = BatchProcessor(table.get, settings.retention_days)
    out_topic = settings.store_topic + ".same-work"
    await consumer.start()
    await producer.start()
    try:
        seen = 0
        t0 = time.perf_counter()
        while seen < n:
            fetched = await consumer.getmany(timeout_ms=500, max_records=settings.batch_size)
            records = [r for part in fetched.values() for r in part]
            if not records:
                continue
            events = [
                _Event(_Message(r.topic, r.partition, r.offset, r.timestamp / 1000, r.key, r.value))
                for r in records
            ]
            outputs = batch.process(cast(list[Any], events)).outputs
            acks = [await producer.send(out_topic, o.encode(), key=c.encode()) for c, o in outputs.items()]
            await asyncio.gather(*acks)
            await consumer.commit()
            seen += len(records)
        return time.perf_counter() - t0
    finally:
        await consumer.stop()
        await producer.stop()


async def committed_total(group: str, topic: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)
    finally:
        await admin.close()


def bench_worker(n: int) -> dict[str, Any]:
    events = event_dicts(n, seed=6)
    env = names()
    settings = settings_of(env)
    asyncio.run(prefill(settings, events))
    raw_s = asyncio.run(raw_consume(settings, n))
    same_s = asyncio.run(raw_same_work(settings, n))
    with process(["aggregator"], env, wait_for="Worker ready"):
        t0 = time.perf_counter()
        while asyncio.run(committed_total(settings.app_id, settings.topic)) < n:
            if time.perf_counter() - t0 > 600:
                raise TimeoutError("the worker did not finish in 10 minutes")
            time.sleep(0.2)
        worker_s = time.perf_counter() - t0
    raw_eps, same_eps, worker_eps = n / raw_s, n / same_s, n / worker_s
    return {
        "events": n,
        "raw_consumer_events_per_s": round(raw_eps),
        "raw_loop_same_work_events_per_s": round(same_eps),
        "faust_worker_events_per_s": round(worker_eps),
        "ratio": round(worker_eps / raw_eps, 3),
        "ratio_vs_same_work": round(worker_eps / same_eps, 2),
        "target_ratio": 0.3,
        "note": "worker timed from 'Worker ready' to committed offsets = end (commit interval 1 s)",
    }


# ---------------------------------------------------------------------------------------------------
# 3. freshness: accepted → visible in /v1/pulse
# ---------------------------------------------------------------------------------------------------
def bench_freshness(samples: int) -> dict[str, Any]:
    env = names()
    data_dir = tempfile.mkdtemp(prefix="cxpulse-bench-api-")
    ingest_port, api_port = free_port(), free_port()
    try:
        with (
            process(["aggregator"], env, wait_for="Worker ready"),
            process(["ingest", "--port", str(ingest_port)], env) as (ingest, _),
            process(["api", "--port", str(api_port), "--data-dir", data_dir], env) as (api, _),
        ):
            ingest_url, api_url = f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{api_port}"
            wait_http(ingest_url, ingest)
            wait_http(api_url, api)
            lags: list[float] = []
            with httpx.Client(timeout=30) as client:
                for i in range(samples + 3):
                    now_ms = int(time.time() * 1000)
                    body = {
                        "event_id": f"fresh-{uuid.uuid4().hex}",
                        "type": "login",
                        "occurred_at": iso(now_ms - 1000),
                        "customer_id": f"fresh-{i}",
                    }
                    r = client.post(ingest_url + "/v1/events", json=body)
                    assert r.status_code == 202, r.text
                    t0 = time.perf_counter()
                    while True:
                        pulse = client.get(api_url + "/v1/pulse?metrics=active_customers&window=1h").json()
                        if (pulse["readings"]["active_customers"]["value"] or 0) >= i + 1:
                            break
                        if time.perf_counter() - t0 > 30:
                            raise TimeoutError(f"event {i} not visible after 30 s")
                        time.sleep(0.02)
                    if i >= 3:  # the first few pay for connections and metadata
                        lags.append(time.perf_counter() - t0)
        return {"samples": samples, "visible_after_s": summarize(lags), "target_p95_s": 2.0}
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--freshness", type=int, default=60, help="freshness samples")
    args = parser.parse_args(argv)
    res: dict[str, Any] = {"machine": machine_info(), "bootstrap": BOOTSTRAP}
    log(f"ingest → Kafka, {args.events} events …")
    res["ingest"] = bench_ingest(args.events, args.concurrency)
    log(f"Faust worker, {args.events} events …")
    res["worker"] = bench_worker(args.events)
    log(f"freshness, {args.freshness} samples …")
    res["freshness"] = bench_freshness(args.freshness)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"kafka-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(res, indent=2))
    i, w, f = res["ingest"], res["worker"], res["freshness"]["visible_after_s"]
    print(f"machine: {res['machine']}")
    print(
        f"ingest → Kafka  {i['ingest_events_per_s']:>8,} ev/s  raw producer"
        f" {i['raw_producer_events_per_s']:>8,} ev/s  ratio {i['ratio']:.2f} (target ≥ 0.5)"
    )
    print(
        f"Faust worker    {w['faust_worker_events_per_s']:>8,} ev/s  raw consumer"
        f" {w['raw_consumer_events_per_s']:>8,} ev/s  ratio {w['ratio']:.3f} (target ≥ 0.3)"
    )
    print(
        f"                raw loop doing the same work {w['raw_loop_same_work_events_per_s']:>8,} ev/s"
        f"  ratio {w['ratio_vs_same_work']:.2f}"
    )
    print(
        f"freshness       p50 {f['p50']:.0f} ms  p95 {f['p95']:.0f} ms  max {f['max']:.0f} ms"
        " (target p95 ≤ 2000 ms)"
    )
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
