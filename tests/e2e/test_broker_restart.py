"""The Kafka broker stopped mid-stream and restarted under the whole distributed shape (issue 10, faults).

HTTP → `cxpulse ingest` → Kafka → `cxpulse aggregator` (Faust subprocess) → `cx.store` → loader → chDB,
all on a broker of the test's own (free ports, its own data dir) so the shared one is never stopped. The
client keeps sending while the broker is down and does what the API asks of it: a 503 is retried after
`Retry-After`. Afterwards every acknowledged event is stored exactly once (a publish that timed out but
reached the log comes again under the same id: a duplicate, dropped) and the readings equal the embedded
mode's for the same bodies.

Regression: once, ingest answered 503 `OutOfOrderSequenceNumber` for minutes after the restart — batches
that expired unsent during the outage had broken the idempotent producer's sequence, which stops aiokafka's
sender for good; the bus now replaces a producer that failed a publish (`cxpulse.bus.kafka`).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from cxpulse.config import Settings
from services.embedded import EmbeddedRuntime
from tests.e2e.test_distributed import (
    assert_converges,
    loader_into,
    reference,
    stored_events,
    workload,
)
from tests.kafka_support import Names, OwnBroker, Procs, wait_until

pytestmark = pytest.mark.kafka


class Sender:
    """Posts the bodies in order, each until it is acknowledged (202), as a well-behaved client does."""

    def __init__(self, url: str, bodies: list[bytes], pause_s: float) -> None:
        self.url, self.bodies, self.pause_s = url, bodies, pause_s
        self.acked = 0
        self.refused = 0  # 503 answers (the broker was down)
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        headers = {"content-type": "application/x-ndjson"}
        with httpx.Client(base_url=self.url, timeout=60) as client:
            for body in self.bodies:
                deadline = time.monotonic() + 240
                while True:
                    r = client.post("/v1/events", content=body, headers=headers)
                    if r.status_code == 202:
                        self.acked += 1
                        break
                    if r.status_code != 503 or time.monotonic() > deadline:
                        self.errors.append(f"{r.status_code} {r.text[:300]}")
                        return
                    self.refused += 1
                    time.sleep(min(float(r.headers.get("Retry-After", "1")), 2.0))
                time.sleep(self.pause_s)


def test_broker_stopped_mid_stream_and_restarted_loses_nothing_and_counts_nothing_twice(
    tmp_path: Path, runtime: EmbeddedRuntime, settings: Settings
) -> None:
    bodies, at, distinct = workload(n=1500, seed=21)
    expected = reference(runtime, settings, bodies, at)
    broker = OwnBroker(tmp_path / "kafka")
    broker.up()
    procs = Procs(tmp_path, Names(broker.bootstrap))
    try:
        procs.worker()
        _, ingest = procs.http("ingest", name="ingest", env={"CXPULSE_PUBLISH_TIMEOUT_S": "3"})
        with loader_into(procs, runtime, settings) as store:
            sender = Sender(ingest, bodies, pause_s=0.1)
            sender.thread.start()
            at_stop = wait_until(
                lambda: (n := stored_events(store)) >= distinct // 4 and n, 120, "a quarter stored", 0.05
            )
            broker.down()
            assert at_stop < distinct, "the broker was stopped mid-stream"
            wait_until(lambda: sender.refused >= 3, 60, "ingest refusing with 503 while the broker is down")
            time.sleep(5)  # workers and loader keep running against a dead broker for a while
            broker.up()
            sender.thread.join(300)
            assert not sender.thread.is_alive() and not sender.errors, sender.errors
            assert sender.acked == len(bodies)
            # every event stored once, and the same readings as the embedded mode
            assert_converges(store, settings, expected, at, distinct)
        assert all(p.popen.poll() is None for p in procs.started), "a process died with the broker"
    finally:
        procs.stop_all()
        broker.down()
        for proc in procs.started:  # shown by pytest only when the test failed
            print(f"\n---- {proc.log_path.name} ----\n{proc.log()[-4000:]}")
