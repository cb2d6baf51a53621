"""Alert latency in the distributed mode: from the 202 of the events that break a `for: 0s` metric rule to
the signed webhook arriving at a local receiver. Against the local broker (`scripts/kafka.sh up`).

    python -m bench.alerts_distributed [--trials 50] [--baseline-trials 50]

Distributed: `cxpulse ingest` → Kafka → `cxpulse aggregator` (Faust) → `cx.store` → `cxpulse api --kafka`
(chDB: loader, evaluator, dispatcher), default settings. One rule, `nps below 0` over the last hour at one
touchpoint, `for: 0s`, `min_samples: 1`, a webhook with a secret. Each trial posts two detractor answers
in one request (the NPS drops below 0; the time starts at the 202) and waits for the `firing` webhook;
then two promoter answers and waits for `resolved` (reported too). Baseline in the same run: the same
trials against the embedded service (`cxpulse run`: the event is processed inside the request).
Target: distributed firing p95 ≤ 5 s. Results: printed, and `bench/results/alerts-distributed-<ts>.json`.
"""

from __future__ import annotations

import argparse
import base64
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.harness import free_port, log, machine_line, save_results, started, summarize
from bench.workload import iso

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
SECRET = "whsec_" + base64.b64encode(b"bench-alerts-distributed-secret!").decode()
TOUCHPOINT = "bench_alerts"
TARGET_P95_S = 5.0


class Receiver:
    """A local webhook receiver: each POST's body and arrival time (perf_counter) go to a queue."""

    def __init__(self) -> None:
        self.arrivals: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        arrivals = self.arrivals

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                arrivals.put((time.perf_counter(), orjson.loads(body)))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def next(self, status: str, timeout_s: float = 60) -> float:
        """Arrival time of the next webhook with this status (others are skipped)."""
        deadline = time.monotonic() + timeout_s
        while True:
            at, body = self.arrivals.get(timeout=max(0.01, deadline - time.monotonic()))
            if body.get("status") == status:
                return at

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def process(args: list[str], env: dict[str, str], wait_for: str | None = None) -> Iterator[Path]:
    """A `cxpulse …` subprocess (its log in a temp file); waits for `wait_for` in the log if given."""
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
        deadline = time.monotonic() + 120
        while wait_for and wait_for not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} did not get ready:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        yield log_path
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_path.unlink(missing_ok=True)


def wait_http(url: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


def answers(score: int, n: int) -> bytes:
    now_ms = int(time.time() * 1000)
    items = [
        {
            "event_id": f"b-{uuid.uuid4().hex}",
            "type": "survey_answer",
            "occurred_at": iso(now_ms - 1000),
            "customer_id": f"bench-{uuid.uuid4().hex[:8]}",
            "survey": "nps",
            "score": score,
            "touchpoint": TOUCHPOINT,
        }
        for _ in range(n)
    ]
    return b"\n".join(orjson.dumps(i) for i in items) + b"\n"


def trials(ingest_url: str, api_url: str, receiver: Receiver, n: int, warmup: int = 2) -> dict[str, Any]:
    """`n` break/recover cycles of one rule; seconds from each 202 to the matching webhook."""
    rule = {
        "name": "bench: NPS below 0",
        "metric": "nps",
        "window": "1h",
        "filters": {"touchpoint": TOUCHPOINT},
        "condition": {"op": "below", "threshold": 0},
        "min_samples": 1,
        "for": "0s",
        "notify": [{"type": "webhook", "url": receiver.url, "secret": SECRET}],
    }
    firing: list[float] = []
    resolved: list[float] = []
    with httpx.Client(timeout=30) as client:
        r = client.post(api_url + "/v1/alert-rules", json=rule)
        assert r.status_code == 201, r.text
        time.sleep(1)  # the rule's first evaluation (no data yet)
        for i in range(n + warmup):
            for score, status, out in ((0, "firing", firing), (10, "resolved", resolved)):
                r = client.post(
                    ingest_url + "/v1/events",
                    content=answers(score, 2),
                    headers={"content-type": "application/x-ndjson"},
                )
                assert r.status_code == 202, r.text
                t0 = time.perf_counter()
                arrived = receiver.next(status)
                if i >= warmup:  # the first cycles pay for connections and metadata
                    out.append(arrived - t0)
            if (i + 1) % 10 == 0:
                log(f"  {i + 1 - warmup if i >= warmup else 0}/{n} trials")
    return {"trials": n, "firing_s": summarize(firing), "resolved_s": summarize(resolved)}


def distributed(n: int) -> dict[str, Any]:
    uid = uuid.uuid4().hex[:10]
    env = {
        "CXPULSE_KAFKA_BOOTSTRAP": BOOTSTRAP,
        "CXPULSE_TOPIC": f"bench-{uid}.events",
        "CXPULSE_DLQ_TOPIC": f"bench-{uid}.dlq",
        "CXPULSE_STORE_TOPIC": f"bench-{uid}.store",
        "CXPULSE_RULES_TOPIC": f"bench-{uid}.rules",
        "CXPULSE_ALERTS_TOPIC": f"bench-{uid}.alerts",
        "CXPULSE_APP_ID": f"bench-{uid}",
        "CXPULSE_LOADER_GROUP": f"bench-loader-{uid}",
        "CXPULSE_DATA_DIR": tempfile.mkdtemp(prefix="cxpulse-bench-worker-"),
    }
    api_dir = tempfile.mkdtemp(prefix="cxpulse-bench-api-")
    ingest_port, api_port = free_port(), free_port()
    receiver = Receiver()
    try:
        with ExitStack() as stack:
            stack.enter_context(process(["aggregator"], env, wait_for="Worker ready"))
            stack.enter_context(process(["ingest", "--port", str(ingest_port)], env))
            stack.enter_context(process(["api", "--port", str(api_port), "--data-dir", api_dir], env))
            ingest_url, api_url = f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{api_port}"
            wait_http(ingest_url)
            wait_http(api_url)
            return trials(ingest_url, api_url, receiver, n)
    finally:
        receiver.close()
        shutil.rmtree(api_dir, ignore_errors=True)
        shutil.rmtree(env["CXPULSE_DATA_DIR"], ignore_errors=True)


def embedded(n: int) -> dict[str, Any]:
    data_dir = tempfile.mkdtemp(prefix="cxpulse-bench-run-")
    port = free_port()
    receiver = Receiver()
    try:
        with process(["run", "--port", str(port), "--data-dir", data_dir], {}):
            url = f"http://127.0.0.1:{port}"
            wait_http(url)
            return trials(url, url, receiver, n)
    finally:
        receiver.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=50, help="distributed break/recover cycles")
    parser.add_argument("--baseline-trials", type=int, default=50, help="embedded cycles (0: skip)")
    args = parser.parse_args(argv)
    res = started(args)
    log(f"distributed: {args.trials} trials …")
    res["distributed"] = distributed(args.trials)
    if args.baseline_trials:
        log(f"embedded baseline: {args.baseline_trials} trials …")
        res["embedded"] = embedded(args.baseline_trials)
    res["target_p95_s"] = TARGET_P95_S
    path = save_results("alerts-distributed", res)
    print(machine_line(res["machine"]))
    for name in ("distributed", "embedded"):
        if name not in res:
            continue
        for kind in ("firing", "resolved"):
            s = res[name][f"{kind}_s"]
            print(
                f"{name:<11} 202 → {kind:<8} webhook  p50 {s['p50']:>6.0f} ms  p95 {s['p95']:>6.0f} ms  "
                f"max {s['max']:>6.0f} ms  (n {s['n']})"
            )
    p95 = res["distributed"]["firing_s"]["p95"] / 1000
    verdict = "✔" if p95 <= TARGET_P95_S else "✘"
    print(f"target: distributed firing p95 ≤ {TARGET_P95_S:g} s → {p95:.2f} s {verdict}")
    print(f"results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
