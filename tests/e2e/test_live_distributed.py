"""The live view in the Kafka modes, against the real broker: the change feed is driven by the processor's
commits in `cxpulse run --kafka` and by the loader in `cxpulse api`, so an event posted to ingest reaches
`/v1/stream` as `event: pulse` within 2 s; `/metrics` of every process counts what it did (ingest
counters, DLQ — the worker on its own metrics port — store inserts, processing lag, KPI gauges).
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import event
from tests.kafka_support import Procs, free_port, wait_until

pytestmark = pytest.mark.kafka

MINUTE = 60_000


class Stream:
    """`/v1/stream` read by a thread; its `event: pulse` frames arrive on a queue."""

    def __init__(self, url: str) -> None:
        self.events: queue.Queue[ServerSentEvent] = queue.Queue()
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=60))
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()

    def _run(self, url: str) -> None:
        try:
            with connect_sse(self._client, "GET", url) as source:
                for sse in source.iter_sse():
                    if sse.event == "pulse":
                        self.events.put(sse)
        except httpx.HTTPError:
            pass  # closed by the test

    def next(self, timeout: float) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.events.get(timeout=timeout).data)
        return body

    def close(self) -> None:
        self._client.close()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def answer(score: int) -> dict[str, Any]:
    now = int(time.time() * 1000)
    eid = f"live-{uuid.uuid4().hex[:8]}"
    return event(eid, "survey_answer", now - MINUTE, f"c-{eid}", survey="nps", score=score)


def assert_pushed_within_two_seconds(stream: Stream, ingest_url: str, n: int) -> None:
    """Post one answer to `ingest_url`; the stream's next pulse counts `n` answers, within 2 s of the 202."""
    response = httpx.post(f"{ingest_url}/v1/events", json=[answer(10)], timeout=30)
    assert response.status_code == 202 and response.json()["accepted"] == 1, response.text
    acknowledged = time.monotonic()
    deadline = acknowledged + 2.0
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "no pulse with the posted answer within 2 s"
        try:
            body = stream.next(remaining)
        except queue.Empty:
            pytest.fail("no pulse with the posted answer within 2 s")
        if body["readings"]["nps"]["n"] == n:
            return


def produce_poison(procs: Procs) -> None:
    from aiokafka import AIOKafkaProducer

    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=procs.names.bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(procs.names.topic, b"\x00not json", key=b"cust-x")
        finally:
            await producer.stop()

    asyncio.run(go())


def test_run_with_kafka_streams_changes_and_counts_them(procs: Procs, tmp_path: Path) -> None:
    _, url = procs.http("run", "--data-dir", str(tmp_path / "data"), name="run")  # Kafka from the env
    stream = Stream(f"{url}/v1/stream?metrics=nps&window=1h")
    try:
        assert stream.next(10)["readings"]["nps"]["n"] == 0
        time.sleep(1.0)  # past the once-a-second limit
        assert_pushed_within_two_seconds(stream, url, n=1)
    finally:
        stream.close()
    produce_poison(procs)
    samples = wait_until(
        lambda: (s := scrape(url)).get(("cxpulse_events_dlq_total", ())) == 1 and s, 30, "the DLQ count"
    )
    assert samples["cxpulse_events_accepted_total", ()] == 1
    assert samples["cxpulse_store_insert_duration_seconds_count", ()] >= 1
    # received = the Kafka message time: the lag covers the topic and the consumer, and is small here
    assert 0 <= samples["cxpulse_processing_lag_seconds", ()] < 10
    wait_until(
        lambda: scrape(url).get(("cxpulse_kpi_samples", (("metric", "nps"), ("window", "1h")))) == 1,
        10,
        "the NPS gauge to follow the change feed",
    )


def test_distributed_api_streams_what_the_loader_loads(procs: Procs, tmp_path: Path) -> None:
    metrics_port = free_port()
    procs.start("aggregator", "--metrics-port", str(metrics_port), name="worker").wait_log("Worker ready", 90)
    _, ingest = procs.http("ingest", name="ingest")
    _, api = procs.http("api", "--data-dir", str(tmp_path / "api-data"), name="api")
    stream = Stream(f"{api}/v1/stream?metrics=nps&window=1h")
    try:
        assert stream.next(10)["readings"]["nps"]["n"] == 0
        time.sleep(1.0)
        # the first event also pays for the worker's and the loader's first fetch: not timed
        httpx.post(f"{ingest}/v1/events", json=[answer(9)], timeout=30).raise_for_status()
        wait_until(lambda: stream.next(30)["readings"]["nps"]["n"] == 1, 60, "the first answer")
        time.sleep(1.0)
        assert_pushed_within_two_seconds(stream, ingest, n=2)
    finally:
        stream.close()

    assert scrape(ingest)["cxpulse_events_accepted_total", ()] == 2
    api_samples = scrape(api)
    assert api_samples["cxpulse_store_insert_duration_seconds_count", ()] >= 2  # the loader's inserts
    assert 0 <= api_samples["cxpulse_processing_lag_seconds", ()] < 30
    produce_poison(procs)
    worker = f"http://127.0.0.1:{metrics_port}"
    wait_until(
        lambda: scrape(worker).get(("cxpulse_events_dlq_total", ())) == 1, 30, "the worker's DLQ count"
    )
