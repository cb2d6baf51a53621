"""Alerting in the distributed shape, with real processes against the real broker and a real HTTP receiver:
`cxpulse ingest` → Kafka → `cxpulse aggregator` (Faust; close-the-loop in its keyed state, rules from the
rules topic) → `cx.store` → `cxpulse api --kafka` (chDB: loads, evaluates, delivers, publishes
`cx.alerts`).

- a `for: 0s` metric rule fires on the answer that breaks it and resolves when it recovers: both signed
  webhooks arrive (verified with `standardwebhooks`), the transitions are listed, both are on `cx.alerts`;
- a response rule: one notification per detractor answer, none for the same answer posted again;
- a redelivery to another worker (the first one SIGKILLed, the group's offsets rewound so the second
  processes the same messages again from the recovered changelog) raises the notification again on
  `cx.store`, yet the receiver gets it once;
- a second `cxpulse api` on the same chDB data dir refuses to start, naming the owner.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata
from standardwebhooks import Webhook

from tests.kafka_support import CXPULSE, ROOT, Proc, Procs, wait_until
from tests.webhook_receiver import Received, Receiver

pytestmark = pytest.mark.kafka

SECRET = "whsec_" + base64.b64encode(b"distributed-alerts-test-secret!!").decode()
FAST = {
    "CXPULSE_ALERT_INTERVAL": "2s",
    "CXPULSE_KAFKA_SESSION_TIMEOUT_S": "6",
    "CXPULSE_BATCH_WITHIN_S": "0.1",
    "CXPULSE_WEBHOOK_ALLOW_PRIVATE": "true",  # the test's receiver is on 127.0.0.1
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@dataclass
class Cluster:
    procs: Procs
    ingest: str
    api: str
    api_proc: Proc
    worker: Proc
    data_dir: Path

    def post(self, *items: dict[str, Any]) -> None:
        body = b"\n".join(orjson.dumps(i) for i in items) + b"\n"
        r = httpx.post(
            self.ingest + "/v1/events",
            content=body,
            headers={"content-type": "application/x-ndjson"},
            timeout=30,
        )
        assert r.status_code == 202, r.text

    def rule(self, body: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(self.api + "/v1/alert-rules", json=body, timeout=30)
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created

    def get(self, path: str) -> Any:
        r = httpx.get(self.api + path, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_worker_follows(self, n: int, worker: Proc | None = None) -> None:
        proc = worker or self.worker
        text = f"following {n} response rule(s)"
        wait_until(lambda: text in proc.log(), 30, f"the worker {text}")


def start_cluster(procs: Procs, tmp_path: Path) -> Cluster:
    worker = procs.start("aggregator", name="worker", env=FAST)
    worker.wait_log("Worker ready", 120)
    _, ingest = procs.http("ingest", name="ingest", env=FAST)
    data_dir = tmp_path / "api-data"
    api_proc, api = procs.http("api", "--data-dir", str(data_dir), name="api", env=FAST)
    return Cluster(procs, ingest, api, api_proc, worker, data_dir)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def answer(
    event_id: str, customer: str, score: int, at_ms: int | None = None, **extra: Any
) -> dict[str, Any]:
    at = at_ms if at_ms is not None else int(time.time() * 1000) - 5_000
    return {
        "event_id": event_id,
        "type": "survey_answer",
        "occurred_at": iso(at),
        "customer_id": customer,
        "survey": "nps",
        "score": score,
        "touchpoint": "checkout",
        **extra,
    }


def verified(hook: Received) -> dict[str, Any]:
    """The body, after checking the Standard Webhooks signature with the receiver's own library."""
    data: dict[str, Any] = Webhook(SECRET).verify(hook.body, hook.headers)
    return data


# ------------------------------------------------------------------------------------------------ tests


def test_a_for_0s_metric_rule_fires_and_resolves_with_signed_webhooks_and_on_cx_alerts(
    procs: Procs, tmp_path: Path, receiver: Receiver
) -> None:
    cluster = start_cluster(procs, tmp_path)
    rule = cluster.rule(
        {
            "name": "Checkout NPS negative",
            "metric": "nps",
            "window": "1h",
            "filters": {"touchpoint": "checkout"},
            "condition": {"op": "below", "threshold": 0},
            "min_samples": 1,
            "for": "0s",
            "severity": "critical",
            "notify": [{"type": "webhook", "url": receiver.url("/metric"), "secret": SECRET}],
        }
    )
    cluster.post(answer("m-1", "cust-m1", 2))  # NPS −100: breaks the rule
    (firing,) = wait_until(lambda: receiver.at("/metric"), 60, "the firing webhook")
    body = verified(firing)
    assert body["kind"] == "alert" and body["status"] == "firing" and body["rule"]["id"] == rule["id"]
    assert body["reading"]["value"] == -100 and body["reading"]["n"] == 1

    cluster.post(answer("m-2", "cust-m2", 10), answer("m-3", "cust-m3", 10))  # NPS +33: recovered
    wait_until(lambda: len(receiver.at("/metric")) >= 2, 60, "the resolved webhook")
    resolved = verified(receiver.at("/metric")[1])
    assert resolved["status"] == "resolved" and resolved["reading"]["n"] == 3
    assert firing.headers["webhook-id"] != receiver.at("/metric")[1].headers["webhook-id"]

    transitions = cluster.get(f"/v1/alerts/transitions?rule_id={rule['id']}")["transitions"]
    changes = [(t["from"], t["to"], t["notify"]) for t in reversed(transitions)]  # oldest first
    assert changes[-2:] == [(changes[-2][0], "firing", "firing"), ("firing", "ok", "resolved")], changes
    assert cluster.get("/v1/alerts?state=ok")["alerts"][0]["rule_id"] == rule["id"]

    def on_topic() -> list[dict[str, Any]] | None:
        found = [v for k, v in alerts_topic(procs) if k == rule["id"].encode()]
        return found if len(found) >= 2 else None

    published = wait_until(on_topic, 30, "both on cx.alerts")
    assert published is not None
    assert [m["status"] for m in published] == ["firing", "resolved"]
    assert [m["id"] for m in published] == [h.headers["webhook-id"] for h in receiver.at("/metric")]
    time.sleep(3)  # two more evaluations: a state that holds never notifies again
    assert len(receiver.at("/metric")) == 2


def test_a_response_rule_notifies_once_per_detractor_answer_even_when_it_is_posted_again(
    procs: Procs, tmp_path: Path, receiver: Receiver
) -> None:
    cluster = start_cluster(procs, tmp_path)
    rule = cluster.rule(
        {
            "type": "response",
            "name": "Call checkout detractors",
            "survey": "nps",
            "filters": {"touchpoint": "checkout"},
            "notify": [{"type": "webhook", "url": receiver.url("/response"), "secret": SECRET}],
        }
    )
    cluster.wait_worker_follows(1)
    detractor = answer("d-1", "cust-d", 3, comment="slow checkout")
    cluster.post(detractor)
    (hook,) = wait_until(lambda: receiver.at("/response"), 60, "the close-the-loop webhook")
    body = verified(hook)
    assert body["kind"] == "response" and body["rule"]["id"] == rule["id"]
    assert (body["event_id"], body["customer_id"], body["score"], body["comment"]) == (
        "d-1",
        "cust-d",
        3,
        "slow checkout",
    )

    # The same answer again, then a promoter answer of the same customer (same partition, so it is
    # processed after the repeat): once that one is counted, the repeat has been through the worker.
    cluster.post(detractor)
    cluster.post(answer("d-2", "cust-d", 10))
    wait_until(
        lambda: cluster.get("/v1/pulse?window=1h&touchpoint=checkout")["readings"]["nps"]["n"] == 2,
        60,
        "the promoter counted",
    )
    time.sleep(2)  # a notification of the repeat would have been delivered by now
    assert len(receiver.at("/response")) == 1
    notes = cluster.get(f"/v1/alerts/notifications?rule_id={rule['id']}")["notifications"]
    assert [n["id"] for n in notes] == [hook.headers["webhook-id"]]
    assert notes[0]["targets"][0]["status"] == "delivered"
    published = [v for k, v in alerts_topic(procs) if k == rule["id"].encode()]
    assert [m["id"] for m in published] == [hook.headers["webhook-id"]]
    assert published[0]["event_id"] == "d-1"


def test_a_redelivery_to_another_worker_notifies_once(
    procs: Procs, tmp_path: Path, receiver: Receiver
) -> None:
    cluster = start_cluster(procs, tmp_path)
    rule = cluster.rule(
        {
            "type": "response",
            "name": "Call detractors",
            "survey": "nps",
            "notify": [{"type": "webhook", "url": receiver.url("/again"), "secret": SECRET}],
        }
    )
    cluster.wait_worker_follows(1)
    cluster.post(answer("r-1", "cust-r", 1), answer("r-0", "cust-other", 9))
    (hook,) = wait_until(lambda: receiver.at("/again"), 60, "the first delivery")

    cluster.worker.kill()  # SIGKILL: its table changelog holds the cooldown it set
    group = procs.names.env()["CXPULSE_APP_ID"]
    rewind(procs.names.bootstrap, group, procs.names.topic)  # the next worker gets every message again
    second = procs.start("aggregator", name="worker-2", env=FAST)
    second.wait_log("Worker ready", 120)
    cluster.wait_worker_follows(1, second)

    def raised_twice() -> list[bytes] | None:
        found = store_outputs_with(procs, hook.headers["webhook-id"])
        return found if len(found) >= 2 else None

    outputs = wait_until(raised_twice, 180, "a redelivery")  # a loaded machine recovers Faust slowly
    assert (
        outputs is not None and len(outputs) == 2
    )  # the second worker raised the same notification again (same id) ...
    time.sleep(3)
    assert len(receiver.at("/again")) == 1  # ... and the outbox kept one
    assert verified(hook)["event_id"] == "r-1"
    ids = {v["id"] for k, v in alerts_topic(procs) if k == rule["id"].encode()}
    assert ids == {hook.headers["webhook-id"]}  # at least once on cx.alerts, always the same id


def test_a_second_api_on_the_same_chdb_data_dir_refuses_to_start(procs: Procs, tmp_path: Path) -> None:
    data_dir = tmp_path / "owned"
    procs.http("api", "--data-dir", str(data_dir), name="api-1")
    second = subprocess.run(
        [*CXPULSE, "api", "--data-dir", str(data_dir), "--port", "0"],
        env={**os.environ, **procs.names.env()},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 2, second.stderr[-2000:]
    assert "is in use by another process (PID: " in second.stderr
    assert "only one process can own a chDB data directory" in second.stderr


# ---------------------------------------------------------------------------------------------- helpers


def rewind(bootstrap: str, group: str, topic: str) -> None:
    """Set the (now empty) consumer group's committed offsets of `topic` back to 0."""

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            async with asyncio.timeout(60):
                while True:  # the SIGKILLed member leaves the group after the session timeout
                    (desc,) = await admin.describe_consumer_groups([group])
                    if desc.groups[0][2] in ("Empty", "Dead"):
                        break
                    await asyncio.sleep(0.5)
            (described,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(tps)
            await consumer.commit({tp: OffsetAndMetadata(0, "") for tp in tps})
        finally:
            await consumer.stop()

    asyncio.run(run())


def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Every message of `topic` so far, as (key, value), partition by partition."""

    async def read() -> list[tuple[bytes | None, bytes]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: list[tuple[bytes | None, bytes]] = []
            for tp, end in ends.items():
                while await consumer.position(tp) < end:
                    for batch in (await consumer.getmany(tp, timeout_ms=500)).values():
                        out += [(m.key, m.value or b"") for m in batch]
            return out
        finally:
            await consumer.stop()

    return asyncio.run(read())


def alerts_topic(procs: Procs) -> list[tuple[bytes | None, dict[str, Any]]]:
    """Every message on the test's cx.alerts topic so far: (key, value)."""
    messages = read_topic(procs.names.bootstrap, procs.names.env()["CXPULSE_ALERTS_TOPIC"])
    return [(k, orjson.loads(v)) for k, v in messages]


def store_outputs_with(procs: Procs, notification_id: str) -> list[bytes]:
    """The cx.store messages carrying `notification_id`."""
    messages = read_topic(procs.names.bootstrap, procs.names.env()["CXPULSE_STORE_TOPIC"])
    return [v for _, v in messages if notification_id.encode() in v]
