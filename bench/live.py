"""Live view benchmark: how fast an event reaches an SSE client, and what watching costs the store.

    python -m bench.live [--samples 40] [--clients 100] [--views 5] [--rate 1000] [--seconds 20]
                         [--no-distributed]

1. Event → visible, embedded: `cxpulse run`; one `/v1/stream` client watches a view; one answer at a time
   (1.2–1.6 s apart, so the once-a-second limit never holds a push back) is posted and timed from the
   POST until the client receives a pulse that counts it. Baseline, same run: the POST's own round trip
   (202 = durable). Target p95 ≤ 1 s.
2. Event → visible, distributed: `cxpulse ingest` + one `cxpulse aggregator` + `cxpulse api` (loader,
   chDB) on the local broker; POST to ingest, SSE on the api. Baseline, same run: the same events polled
   with `/v1/pulse` every 20 ms (what `bench.kafka` calls freshness). Target p95 ≤ 2 s.
3. Store queries with many clients: `cxpulse run` under a steady stream of `--rate` events/s (batches of
   100), watched by 0, then `--views` (one client per view), then `--clients` clients spread over the same
   `--views` distinct views; the service's own counter `cxpulse_store_read_queries_total` (every read-path
   query at the store seam, scraped from `/metrics`) gives queries/s for each phase. The 0-client phase is
   the baseline (the KPI gauges' refresh); "one query per connection per second" is printed for scale.
   Every phase also has one probe client on a view of its own: an answer posted every 2 s inside the
   stream, timed to its push, gives event → visible under that load.

Results: printed, and `bench/results/live-<timestamp>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from httpx_sse import aconnect_sse

from bench.harness import PY, ROOT, Service, free_port, log, machine_line, save_results, started, summarize

BOOTSTRAP = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
NDJSON = {"Content-Type": "application/x-ndjson"}
#: The distinct views of phase 3 (the first `--views` of them); the probe view is added on top.
VIEWS = [
    "window=24h",
    "metrics=nps,csat,ces&window=1h",
    "window=24h&channel=web",
    "metrics=fcr,resolution_time&window=7d",
    "metrics=active_customers,nps&window=1h&segment=pro",
    "metrics=csat&window=24h&touchpoint=checkout",
    "metrics=nps&window=7d&channel=mobile",
]
PROBE_VIEW = "metrics=nps&window=1h&segment=probe"
CHANNELS = ("web", "mobile", "email", "chat")
SEGMENTS = ("free", "pro", "business")
TOUCHPOINTS = ("website", "checkout", "onboarding", "usage", "support")


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def answer(segment: str, customer: str) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "event_id": f"probe-{uuid.uuid4().hex}",
        "type": "survey_answer",
        "occurred_at": iso(now - 1000),
        "customer_id": customer,
        "survey": "nps",
        "score": 8,
        "segment": segment,
    }


def stream_batch(rng: random.Random, n: int, seq: int) -> bytes:
    """`n` events happening now: answers, logins, purchases and support cases over a few thousand
    customers, touchpoints, channels and segments (so every view moves)."""
    now = int(time.time() * 1000)
    lines = []
    for i in range(n):
        cid = f"c{rng.randrange(5000)}"
        base = {
            "event_id": f"s{seq}-{i}-{uuid.uuid4().hex[:8]}",
            "occurred_at": iso(now - rng.randrange(1, 5000)),
            "customer_id": cid,
            "touchpoint": rng.choice(TOUCHPOINTS),
            "channel": rng.choice(CHANNELS),
            "segment": rng.choice(SEGMENTS),
        }
        kind = rng.random()
        if kind < 0.35:
            survey = rng.choice(("nps", "csat", "ces"))
            score = {"nps": rng.randint(0, 10), "csat": rng.randint(1, 5), "ces": rng.randint(1, 7)}[survey]
            event = {**base, "type": "survey_answer", "survey": survey, "score": score}
        elif kind < 0.7:
            event = {**base, "type": "login"}
        elif kind < 0.85:
            event = {**base, "type": "purchase", "amount": 20, "referral": rng.random() < 0.2}
        else:
            case = f"k{rng.randrange(20_000)}"
            kind_of = "support_contact" if rng.random() < 0.6 else "support_resolved"
            event = {**base, "type": kind_of, "case_id": case}
        lines.append(orjson.dumps(event))
    return b"\n".join(lines) + b"\n"


# ---------------------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------------------
def cxpulse(*args: str) -> list[str]:
    """This checkout's CLI (not an installed `cxpulse` script, which may be another tree)."""
    return [PY, "-m", "services.cli", *args]


@contextlib.contextmanager
def embedded() -> Iterator[Service]:
    data = tempfile.mkdtemp(prefix="cxpulse-bench-live-")
    port = free_port()
    svc = Service(cxpulse("run", "--port", str(port), "--data-dir", data), port)
    try:
        yield svc
    finally:
        svc.stop()
        shutil.rmtree(data, ignore_errors=True)


@contextlib.contextmanager
def worker(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    log_path = Path(tempfile.mkstemp(prefix="cxpulse-bench-worker-", suffix=".log")[1])
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            cxpulse("aggregator"), env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    try:
        deadline = time.monotonic() + 120
        while "Worker ready" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_path.unlink(missing_ok=True)


@contextlib.contextmanager
def distributed() -> Iterator[tuple[str, str]]:
    """ingest + one worker + api (loader into chDB) on fresh topics; yields (ingest url, api url)."""
    uid = uuid.uuid4().hex[:10]
    data = tempfile.mkdtemp(prefix="cxpulse-bench-live-dist-")
    env = {
        "CXPULSE_KAFKA_BOOTSTRAP": BOOTSTRAP,
        "CXPULSE_TOPIC": f"bench-{uid}.events",
        "CXPULSE_DLQ_TOPIC": f"bench-{uid}.dlq",
        "CXPULSE_STORE_TOPIC": f"bench-{uid}.store",
        "CXPULSE_APP_ID": f"bench-{uid}",
        "CXPULSE_LOADER_GROUP": f"bench-loader-{uid}",
        "CXPULSE_DATA_DIR": data,
    }
    with_env = ["env", *(f"{k}={v}" for k, v in env.items())]
    ingest_port, api_port = free_port(), free_port()
    try:
        with worker(env):
            ingest = Service([*with_env, *cxpulse("ingest", "--port", str(ingest_port))], ingest_port)
            try:
                api = Service([*with_env, *cxpulse("api", "--port", str(api_port))], api_port)
                try:
                    yield f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{api_port}"
                finally:
                    api.stop()
            finally:
                ingest.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# SSE clients
# ---------------------------------------------------------------------------------------------------
@dataclass
class Watcher:
    """One `/v1/stream` connection; `n` is the latest pulse's n for `metric`, `seen` when it changed."""

    query: str
    metric: str = "nps"
    n: int = -1
    frames: int = 0
    changed: asyncio.Event | None = None

    async def run(self, client: httpx.AsyncClient, ready: asyncio.Event | None = None) -> None:
        self.changed = asyncio.Event()
        async with aconnect_sse(client, "GET", f"/v1/stream?{self.query}") as source:
            async for sse in source.aiter_sse():
                if sse.event != "pulse":
                    continue
                self.frames += 1
                reading = json.loads(sse.data)["readings"].get(self.metric) or {}
                self.n = int(reading.get("n") or 0)
                self.changed.set()
                if ready is not None:
                    ready.set()

    async def until(self, n: int, timeout: float) -> None:
        assert self.changed is not None
        deadline = time.monotonic() + timeout
        while self.n < n:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))


@contextlib.asynccontextmanager
async def watching(client: httpx.AsyncClient, watchers: list[Watcher]) -> AsyncIterator[None]:
    readies = [asyncio.Event() for _ in watchers]
    tasks = [asyncio.create_task(w.run(client, r)) for w, r in zip(watchers, readies, strict=True)]
    try:
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)  # first pulse each
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def client(base: str, connections: int = 10) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections + 10, max_keepalive_connections=connections + 10)
    return httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(30, read=120), limits=limits)


# ---------------------------------------------------------------------------------------------------
# 1 + 2: event → visible
# ---------------------------------------------------------------------------------------------------
async def visible(post_url: str, watch_url: str, samples: int, poll: bool = False) -> dict[str, Any]:
    """Post `samples` answers one at a time; time each until the SSE client counts it (and, with `poll`,
    until `/v1/pulse` polled every 20 ms does)."""
    segment = f"probe{uuid.uuid4().hex[:6]}"
    query = f"metrics=nps&window=1h&segment={segment}"
    sse_s: list[float] = []
    poll_s: list[float] = []
    ack_s: list[float] = []
    rng = random.Random(1)
    async with client(watch_url) as reader, client(post_url) as poster:
        watcher = Watcher(query)
        async with watching(reader, [watcher]):
            for i in range(samples + 2):
                await asyncio.sleep(rng.uniform(1.2, 1.6))
                t0 = time.perf_counter()
                response = await poster.post("/v1/events", json=[answer(segment, f"p-{segment}-{i}")])
                acked = time.perf_counter()
                response.raise_for_status()

                async def polled(n: int = i + 1) -> float:
                    while True:
                        body = (await reader.get(f"/v1/pulse?{query}")).json()
                        if (body["readings"]["nps"]["n"] or 0) >= n:
                            return time.perf_counter()
                        await asyncio.sleep(0.02)

                poller = asyncio.create_task(polled()) if poll else None
                await watcher.until(i + 1, 30)
                seen = time.perf_counter()
                polled_at = await poller if poller else None
                if i >= 2:  # the first ones pay for connections and the consumers' first fetch
                    sse_s.append(seen - t0)
                    ack_s.append(acked - t0)
                    if polled_at is not None:
                        poll_s.append(polled_at - t0)
    out: dict[str, Any] = {
        "samples": samples,
        "sse_visible_ms": summarize(sse_s),
        "post_202_ms": summarize(ack_s),
    }
    if poll:
        out["pulse_polled_20ms_visible_ms"] = summarize(poll_s)
    return out


# ---------------------------------------------------------------------------------------------------
# 3: store queries with many clients under a stream
# ---------------------------------------------------------------------------------------------------
async def store_reads(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("cxpulse_store_read_queries_total "):
            return float(line.split()[1])
    raise RuntimeError("cxpulse_store_read_queries_total not on /metrics")


async def queries_per_pulse(http: httpx.AsyncClient, view: str) -> float:
    before = await store_reads(http)
    (await http.get(f"/v1/pulse?{view}")).raise_for_status()
    return await store_reads(http) - before


async def under_stream(url: str, clients: int, views: int, rate: int, seconds: float) -> dict[str, Any]:
    chosen = VIEWS[:views]
    rng = random.Random(7)
    phases: dict[str, Any] = {}
    batch = 100
    async with client(url, clients + 20) as http:
        per_pulse = {v: await queries_per_pulse(http, v) for v in chosen}
        seq = 0
        probe_n = 0

        async def stream(until: float, probe: Watcher | None) -> tuple[list[float], int]:
            """Post `rate` events/s in batches of 100 from 4 connections; meanwhile every 2 s one probe
            answer, timed to its push. Returns the probes' lags and the events sent (a loaded machine may
            fall behind the rate: the figure says so)."""
            nonlocal seq
            started_at = time.monotonic()
            sent = 0

            async def poster() -> None:
                nonlocal seq, sent
                while (now := time.monotonic()) < until:
                    if sent + batch > int((now - started_at) * rate):
                        await asyncio.sleep(0.01)
                        continue
                    sent += batch  # reserved before the await: the other posters see it
                    seq += 1
                    body = stream_batch(rng, batch, seq)
                    (await http.post("/v1/events", content=body, headers=NDJSON)).raise_for_status()

            async def prober() -> list[float]:
                nonlocal probe_n
                lags: list[float] = []
                while probe is not None and time.monotonic() + 2.0 < until:
                    await asyncio.sleep(2.0 - (time.monotonic() - started_at) % 2.0)
                    probe_n += 1
                    t0 = time.perf_counter()
                    (
                        await http.post("/v1/events", json=[answer("probe", f"probe-{probe_n}")])
                    ).raise_for_status()
                    lags.append(await _timed(probe, probe_n, t0))
                return lags

            probing = asyncio.create_task(prober())
            await asyncio.gather(*(poster() for _ in range(4)))
            return await probing, sent

        for name, count in (("0 clients", 0), (f"{views} clients", views), (f"{clients} clients", clients)):
            watchers = [Watcher(chosen[i % views]) for i in range(count)]
            probe = Watcher(PROBE_VIEW)
            async with watching(http, [*watchers, probe]):
                await stream(time.monotonic() + 3, None)  # warm up: every view reading, the store busy
                before, t0 = await store_reads(http), time.monotonic()
                frames_before = sum(w.frames for w in watchers)
                lags, sent = await stream(t0 + seconds, probe)
                elapsed = time.monotonic() - t0
                queries = await store_reads(http) - before
                frames = sum(w.frames for w in watchers) - frames_before
            phases[name] = {
                "clients": count,
                "store_queries_per_s": round(queries / elapsed, 1),
                "events_per_s_sent": round(sent / elapsed),
                "pushes_per_client_per_s": round(frames / max(1, count) / elapsed, 2) if count else None,
                "probe_event_to_sse_ms": summarize(lags),
                "loadavg_1m": round(os.getloadavg()[0], 2),
            }
            log(f"  {name}: {phases[name]['store_queries_per_s']} store queries/s")
    naive = sum(per_pulse[chosen[i % views]] for i in range(clients))
    return {
        "rate_events_per_s": rate,
        "seconds": seconds,
        "views": chosen,
        "queries_per_pulse": per_pulse,
        "phases": phases,
        "one_query_set_per_connection_per_s": round(naive, 1),
    }


async def _timed(probe: Watcher, n: int, t0: float) -> float:
    await probe.until(n, 30)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--views", type=int, default=5)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--no-distributed", action="store_true", help="skip the Kafka figure")
    parser.add_argument("--no-latency", action="store_true", help="only the store-queries figure")
    args = parser.parse_args(argv)
    res: dict[str, Any] = started(args)
    log(machine_line(res["machine"]))

    if not args.no_latency:
        log(f"1. event → SSE, embedded ({args.samples} samples)")
        with embedded() as svc:
            url = f"http://127.0.0.1:{svc.port}"
            res["embedded"] = asyncio.run(visible(url, url, args.samples))
    if not args.no_distributed and not args.no_latency:
        log(f"2. event → SSE, distributed ({args.samples} samples, broker {BOOTSTRAP})")
        with distributed() as (ingest, api):
            res["distributed"] = asyncio.run(visible(ingest, api, args.samples, poll=True))
    log(f"3. store queries: {args.clients} clients on {args.views} views under {args.rate} events/s")
    with embedded() as svc:
        url = f"http://127.0.0.1:{svc.port}"
        res["fan_out"] = asyncio.run(under_stream(url, args.clients, args.views, args.rate, args.seconds))
    path = save_results("live", res)

    def row(p: dict[str, Any]) -> str:
        return f"p50 {p['p50']:.0f} ms  p95 {p['p95']:.0f} ms  max {p['max']:.0f} ms  (n {p['n']})"

    print()
    if "embedded" in res:
        e = res["embedded"]
        print(f"event → SSE, embedded     {row(e['sse_visible_ms'])}   target p95 ≤ 1000 ms")
        print(f"  baseline: POST → 202    {row(e['post_202_ms'])}")
    if "distributed" in res:
        d = res["distributed"]
        print(f"event → SSE, distributed  {row(d['sse_visible_ms'])}   target p95 ≤ 2000 ms")
        print(f"  baseline: /v1/pulse polled every 20 ms  {row(d['pulse_polled_20ms_visible_ms'])}")
    f = res["fan_out"]
    print(f"store queries/s under {f['rate_events_per_s']} events/s, views {f['views']}:")
    for name, p in f["phases"].items():
        probe = p["probe_event_to_sse_ms"]
        print(
            f"  {name:>12}: {p['store_queries_per_s']:6.1f} queries/s ({p['events_per_s_sent']} ev/s sent, "
            f"{p['pushes_per_client_per_s'] or 0:.2f} pushes/client/s)   probe event → SSE "
            f"p50 {probe.get('p50', 0):.0f} ms p95 {probe.get('p95', 0):.0f} ms   load {p['loadavg_1m']}"
        )
    print(
        f"  for scale, one query set per connection per second: {f['one_query_set_per_connection_per_s']}/s"
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
