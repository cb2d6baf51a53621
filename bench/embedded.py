# ruff: noqa: E501  (report tables and SQL read better unwrapped)
"""Embedded-mode benchmark: ingest throughput and `/v1/pulse` latency of `cxpulse run` (chDB store).

    python -m bench.embedded [--events 200000] [--stored 1000000,10000000] [--requests 200]

Ingest: `cxpulse run` in a subprocess on a free port with a temp data dir; NDJSON batches of 1000 posted
over real HTTP by a few concurrent connections. Baselines in the same run: the same rows inserted straight
into chDB as JSONEachRow (a subprocess with its own data dir, no HTTP/validation/processing) and a trivial
FastAPI endpoint under the same uvicorn that only reads the body. Then an in-process stage profile.

Pulse: for each stored size, bulk-load the events inside chDB (`INSERT … SELECT … FROM numbers(N)`,
batch_seq = 1), let the service's startup recovery derive facts and keyed state (timed: that is the
recovery cost), then measure `/v1/pulse?window=30d` (all metrics, each metric alone, and `channel=web`),
and time each metric's SQL in-process with the service stopped.

Everything that opens a chDB data dir runs in its own process (one chDB dir per process).
Results: a table on stdout and `bench/results/<timestamp>.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import http.client
import io
import json
import os
import platform
import pstats
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
PY = sys.executable
CXPULSE = str(Path(PY).with_name("cxpulse"))
NDJSON = {"Content-Type": "application/x-ndjson"}
CUSTOMERS_PER_EVENT = 1 / 20  # 1M events ↔ 50k customers


# ---------------------------------------------------------------------------------------------------
# machine, processes, HTTP client
# ---------------------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem_kb = int(next(ln.split()[1] for ln in f if ln.startswith("MemTotal")))
    import chdb

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "chdb": chdb.__version__,
        "kernel": platform.release(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout_s: float) -> float:
    """Seconds until `/healthz` answers 200 (raises if the process dies or time runs out)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with {proc.returncode}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if _get(port, "/healthz", 1)[0] == 200:
                return time.perf_counter() - t0
        time.sleep(0.05)
    raise TimeoutError(f"not ready after {timeout_s:.0f} s")


class Service:
    """A server subprocess (`cxpulse run` or a bench worker) on a free port, its log in a temp file."""

    def __init__(self, argv: list[str], port: int, ready_timeout_s: float = 60) -> None:
        self.port = port
        self.log = tempfile.NamedTemporaryFile(prefix="cxpulse-bench-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            self.ready_s = wait_ready(self.proc, port, ready_timeout_s)
        except BaseException:
            self.stop()
            raise

    def rss_peak_mib(self) -> float | None:
        with contextlib.suppress(OSError), open(f"/proc/{self.proc.pid}/status") as f:
            for ln in f:
                if ln.startswith("VmHWM"):
                    return round(int(ln.split()[1]) / 1024, 1)
        return None

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)

    @classmethod
    def cxpulse(cls, data_dir: str, ready_timeout_s: float = 60) -> Service:
        port = free_port()
        return cls([CXPULSE, "run", "--port", str(port), "--data-dir", data_dir], port, ready_timeout_s)


def post_batches(
    port: int, bodies: list[bytes], concurrency: int, path: str = "/v1/events"
) -> dict[str, Any]:
    """POST every body (keep-alive connections, `concurrency` threads); wall time from first to last."""
    work: queue.Queue[bytes] = queue.Queue()
    for b in bodies:
        work.put(b)
    accepted, errors, lat = [0], [], []
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                break
            t = time.perf_counter()
            conn.request("POST", path, body=body, headers=NDJSON)
            resp = conn.getresponse()
            data = resp.read()
            dt = time.perf_counter() - t
            with lock:
                lat.append(dt)
                if resp.status == 202 or resp.status == 200:
                    accepted[0] += json.loads(data).get("accepted", 0)
                else:
                    errors.append((resp.status, data[:300].decode(errors="replace")))
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    events = sum(b.count(b"\n") for b in bodies)
    return {
        "events": events,
        "batches": len(bodies),
        "concurrency": concurrency,
        "wall_s": round(wall, 3),
        "events_per_s": round(events / wall),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "accepted": accepted[0],
        "errors": errors[:5],
        "error_count": len(errors),
        "batch_latency_ms": summarize(lat),
    }


def summarize(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {}
    xs = sorted(seconds)

    def q(p: float) -> float:  # nearest rank
        return xs[max(0, min(len(xs) - 1, -(-int(p * len(xs) * 1000) // 1000) - 1))]

    return {
        "n": len(xs),
        "p50": round(q(0.50) * 1000, 2),
        "p95": round(q(0.95) * 1000, 2),
        "p99": round(q(0.99) * 1000, 2),
        "max": round(xs[-1] * 1000, 2),
        "mean": round(statistics.fmean(xs) * 1000, 2),
    }


def latency(port: int, path: str, n: int, warmup: int = 5, max_s: float = 300) -> dict[str, Any]:
    """Sequential GETs on one keep-alive connection; stops early (and says so) after `max_s`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for _ in range(warmup):
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"GET {path} → {r.status}: {body[:300]!r}")
    xs: list[float] = []
    t0 = time.perf_counter()
    while len(xs) < n and time.perf_counter() - t0 < max_s:
        t = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        xs.append(time.perf_counter() - t)
    conn.close()
    out: dict[str, Any] = summarize(xs)
    out["path"] = path
    out["loadavg_1m_after"] = round(os.getloadavg()[0], 2)  # other work on the box skews latency
    if len(xs) < n:
        out["truncated"] = f"{len(xs)} of {n} requests (time cap {max_s:.0f} s)"
    return out


def run_worker(*args: str, timeout: float = 7200) -> dict[str, Any]:
    """Run `python -m bench.embedded <worker> …` and return the JSON it prints last."""
    proc = subprocess.run(
        [PY, "-m", "bench.embedded", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[str]:
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def dir_mib(path: str) -> float:
    return round(sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**20, 1)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------
# workers (each in its own process)
# ---------------------------------------------------------------------------------------------------
def _bodies(events: int, seed: int) -> list[bytes]:
    from bench.workload import Workload

    return Workload(seed=seed, customers=max(100, int(events * CUSTOMERS_PER_EVENT))).ndjson_batches(events)


def worker_rawinsert(data_dir: str, events: int, seed: int, batch: int = 1000) -> dict[str, Any]:
    """The store's insert alone: the same rows as JSONEachRow into chDB, `batch` rows an insert, no HTTP."""
    import orjson
    from chdb import session as chdb_session

    from cxpulse.domain.body import decode_items
    from cxpulse.domain.validation import validate_batch
    from cxpulse.store import migrate
    from cxpulse.store.chdb_store import ChdbStore

    store = ChdbStore(data_dir)
    migrate(store)
    now = int(time.time() * 1000)
    blocks = []
    rows_all = []
    for body in _bodies(events, seed):
        ok, _ = validate_batch(decode_items(body, "application/x-ndjson"), now, 400)
        rows_all += [{**e.to_row(), "received_ms": now, "batch_seq": 1} for e in ok]
    for i in range(0, len(rows_all), batch):
        rows = rows_all[i : i + batch]
        blocks.append(
            "INSERT INTO cxpulse.events FORMAT JSONEachRow\n"
            + b"\n".join(orjson.dumps(r) for r in rows).decode()
        )
    sess: chdb_session.Session = store._session  # the raw engine, no lock / parsing
    t0 = time.perf_counter()
    for sql in blocks:
        sess.query(sql, "CSV")
    wall = time.perf_counter() - t0
    return {"events": events, "batch": batch, "wall_s": round(wall, 3), "events_per_s": round(events / wall)}


def worker_ingestprofile(data_dir: str, events: int, seed: int, profile: bool) -> dict[str, Any]:
    """The ingest path in-process, no HTTP: per-stage wall time (and a cProfile when `profile`)."""
    from cxpulse.domain.body import decode_items
    from cxpulse.domain.validation import validate_batch
    from cxpulse.pipeline.processor import Processor
    from cxpulse.pipeline.repository import Repository
    from cxpulse.store import migrate
    from cxpulse.store.chdb_store import ChdbStore

    store = ChdbStore(data_dir)
    migrate(store)
    repo = Repository(store)
    stages: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                stages[name] = stages.get(name, 0.0) + time.perf_counter() - t

        return wrapper

    for name in ("existing_ids", "insert_events", "upsert_facts", "save_states", "save_checkpoint"):
        if hasattr(repo, name):  # the repository evolves; time whatever it has
            setattr(repo, name, timed(f"repo.{name}", getattr(repo, name)))
    store_query = store._query
    store._query = timed("chdb.query (all SQL)", store_query)  # type: ignore[method-assign]
    proc = Processor(repo)
    proc.recover()
    bodies = _bodies(events, seed)
    now = int(time.time() * 1000)
    decode = timed("decode_items (orjson)", decode_items)
    validate = timed("validate_batch", validate_batch)
    process = timed("processor.process (total)", proc.process)
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    accepted = 0
    for body in bodies:
        ok, _ = validate(decode(body, "application/x-ndjson"), now, 400)
        accepted += process(ok).accepted
    if prof:
        prof.disable()
    wall = time.perf_counter() - t0
    repo_sql = sum(v for k, v in stages.items() if k.startswith("repo."))
    stages["fold: keyed state + facts (python, excl. SQL)"] = stages["processor.process (total)"] - repo_sql
    out: dict[str, Any] = {
        "events": events,
        "accepted": accepted,
        "wall_s": round(wall, 3),
        "events_per_s": round(events / wall),
        "stages_s": {k: round(v, 3) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])},
        "stages_us_per_event": {k: round(v / events * 1e6, 1) for k, v in stages.items()},
    }
    if prof:
        s = io.StringIO()
        ps = pstats.Stats(prof, stream=s)
        ps.sort_stats("tottime").print_stats(22)
        out["cprofile_tottime"] = s.getvalue()[-9000:]
    return out


def worker_bulkload(data_dir: str, stored: int, seed: int) -> dict[str, Any]:
    """`stored` synthetic events straight into chDB (batch_seq = 1, no facts: recovery derives them)."""
    from bench.workload import BULK_COLUMNS, bulk_select
    from cxpulse.store import migrate
    from cxpulse.store.chdb_store import ChdbStore

    store = ChdbStore(data_dir)
    migrate(store)
    end_ms = int(time.time() * 1000) - 60_000
    customers = max(100, int(stored * CUSTOMERS_PER_EVENT))
    t0 = time.perf_counter()
    step = 5_000_000
    for off in range(0, stored, step):
        sql = bulk_select(min(step, stored - off), customers, end_ms, offset=off + seed * 10**10)
        store.execute(f"INSERT INTO cxpulse.events ({BULK_COLUMNS}) {sql}")
    wall = time.perf_counter() - t0
    mix = store.rows("SELECT type, count() FROM cxpulse.events GROUP BY type ORDER BY 2 DESC")
    store.close()
    return {
        "stored": stored,
        "customers": customers,
        "insert_s": round(wall, 2),
        "type_counts": dict(mix),
        "dir_mib": dir_mib(data_dir),
    }


def worker_sqlprofile(data_dir: str, reps: int) -> dict[str, Any]:
    """Each metric's store query timed alone (no HTTP), with and without `channel=web`; table sizes."""
    from cxpulse.domain.metrics import METRICS, Filters
    from cxpulse.readings import PulseReader
    from cxpulse.store.chdb_store import ChdbStore

    store = ChdbStore(data_dir)
    reader = PulseReader(store)
    at = int(time.time() * 1000)
    window = 30 * 86_400_000
    out: dict[str, Any] = {"metric_sql_ms": {}, "metric_sql_ms_channel_web": {}}
    for key, flt in (("metric_sql_ms", Filters()), ("metric_sql_ms_channel_web", Filters(channel="web"))):
        for m in METRICS.values():
            reader.pulse([m.id], window, at, flt)  # warm
            xs = []
            for _ in range(reps):
                t = time.perf_counter()
                reader.pulse([m.id], window, at, flt)
                xs.append(time.perf_counter() - t)
            out[key][m.id] = round(statistics.median(xs) * 1000, 2)
    xs = []
    for _ in range(reps):
        t = time.perf_counter()
        reader.pulse(list(METRICS), window, at, Filters())
        xs.append(time.perf_counter() - t)
    out["pulse_in_process_ms_median"] = round(statistics.median(xs) * 1000, 2)
    out["sum_metric_sql_ms"] = round(sum(out["metric_sql_ms"].values()), 2)
    out["tables"] = {
        t: store.rows(f"SELECT count() FROM cxpulse.{t}{' FINAL' if t != 'events' else ''}")[0][0]
        for t in ("events", "cases", "trials", "subscriptions", "customer_state")
    }
    out["active_parts"] = dict(
        store.rows(
            "SELECT table, count() FROM system.parts WHERE database = 'cxpulse' AND active GROUP BY table"
        )
    )
    store.close()
    return out


def worker_trivial(port: int) -> None:
    """A FastAPI endpoint under the same uvicorn settings as `cxpulse run`, that only reads the body."""
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.post("/v1/events")
    async def events(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"accepted": body.count(b"\n")}, status_code=202)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# ---------------------------------------------------------------------------------------------------
# phases
# ---------------------------------------------------------------------------------------------------
def bench_ingest(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    log(f"generating {args.events} events (seed {args.seed}) …")
    t = time.perf_counter()
    bodies = _bodies(args.events, args.seed)
    out["generate_s"] = round(time.perf_counter() - t, 2)
    out["body_bytes_mean"] = round(sum(map(len, bodies)) / len(bodies))

    with temp_dir("cxpulse-bench-ingest-") as d:
        svc = Service.cxpulse(d)
        out["startup_empty_s"] = round(svc.ready_s, 2)
        try:
            log(f"ingest: POST {len(bodies)} NDJSON batches to cxpulse run, {args.concurrency} connections …")
            out["service"] = post_batches(svc.port, bodies, args.concurrency)
            out["service"]["rss_peak_mib"] = svc.rss_peak_mib()
        finally:
            svc.stop()
        out["service"]["dir_mib"] = dir_mib(d)

    log("baseline: trivial FastAPI endpoint (reads the body only) …")
    port = free_port()
    triv = Service([PY, "-m", "bench.embedded", "_trivial", "--port", str(port)], port)
    try:
        out["trivial_fastapi"] = post_batches(port, bodies, args.concurrency)
    finally:
        triv.stop()

    log("baseline: raw chDB JSONEachRow inserts of the same rows …")
    with temp_dir("cxpulse-bench-raw-") as d:
        out["raw_chdb_insert"] = run_worker(
            "_rawinsert", d, "--events", str(args.events), "--seed", str(args.seed)
        )
    with temp_dir("cxpulse-bench-raw-") as d:
        out["raw_chdb_insert_batch10k"] = run_worker(
            "_rawinsert", d, "--events", str(args.events), "--seed", str(args.seed), "--batch", "10000"
        )

    log("profile: the ingest path in-process (stage timers, then cProfile) …")
    with temp_dir("cxpulse-bench-prof-") as d:
        out["inprocess_stages"] = run_worker(
            "_ingestprofile", d, "--events", str(args.events), "--seed", str(args.seed)
        )
    with temp_dir("cxpulse-bench-prof-") as d:
        n = min(args.events, 100_000)
        prof = run_worker("_ingestprofile", d, "--events", str(n), "--seed", str(args.seed), "--cprofile")
        out["cprofile"] = {"events": n, "events_per_s": prof["events_per_s"], "top": prof["cprofile_tottime"]}

    svc_rate = out["service"]["events_per_s"]
    out["ratios"] = {
        "service_vs_raw_insert": round(svc_rate / out["raw_chdb_insert"]["events_per_s"], 3),
        "service_vs_trivial_http": round(svc_rate / out["trivial_fastapi"]["events_per_s"], 3),
    }
    return out


METRIC_IDS = [
    "nps", "csat", "ces", "fcr", "resolution_time", "active_customers", "dau", "wau", "mau", "stickiness",
    "churn", "retention", "trial_conversion", "referral_rate",
]  # fmt: skip


def bench_pulse(args: argparse.Namespace, stored: int) -> dict[str, Any]:
    out: dict[str, Any] = {"stored": stored}
    with temp_dir(f"cxpulse-bench-{stored}-") as d:
        log(f"pulse {stored:,}: bulk-loading events inside chDB …")
        out["bulkload"] = run_worker("_bulkload", d, "--stored", str(stored), "--seed", str(args.seed))
        log(f"pulse {stored:,}: loaded in {out['bulkload']['insert_s']} s; starting cxpulse run (recovery) …")
        svc = Service.cxpulse(d, ready_timeout_s=args.recovery_timeout)
        out["recovery"] = {
            "first_start_ready_s": round(svc.ready_s, 2),
            "rss_peak_mib": svc.rss_peak_mib(),
            "log": [ln for ln in svc.log_text().splitlines() if "replayed" in ln],
        }

        log(f"pulse {stored:,}: ready after {svc.ready_s:.1f} s (recovery); restart to time a warm start …")
        svc.stop()
        svc = Service.cxpulse(d, ready_timeout_s=args.recovery_timeout)
        out["recovery"]["restart_ready_s"] = round(svc.ready_s, 2)
        out["dir_mib"] = dir_mib(d)
        try:
            base = "/v1/pulse?window=30d"
            out["healthz"] = latency(svc.port, "/healthz", 200, max_s=30)
            log(f"pulse {stored:,}: all metrics × {args.requests} …")
            out["all"] = latency(svc.port, base, args.requests, max_s=args.max_phase_s)
            log(f"pulse {stored:,}: all metrics, channel=web × {args.requests} …")
            out["all_channel_web"] = latency(
                svc.port, base + "&channel=web", args.requests, max_s=args.max_phase_s
            )
            log(f"pulse {stored:,}: each metric alone × {args.per_metric_requests} …")
            out["per_metric"] = {
                m: latency(svc.port, f"{base}&metrics={m}", args.per_metric_requests, warmup=2, max_s=60)
                for m in METRIC_IDS
            }
            out["service_rss_peak_mib"] = svc.rss_peak_mib()
        finally:
            svc.stop()
        log(f"pulse {stored:,}: per-metric SQL in-process …")
        out["sql"] = run_worker("_sqlprofile", d, "--reps", str(args.sql_reps))
    return out


# ---------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------
def report(res: dict[str, Any]) -> str:
    lines = []
    m = res["machine"]
    lines.append(
        f"machine: {m['nproc']} CPU · {m['cpu']} · {m['ram_gib']} GiB RAM · Python {m['python']} · "
        f"chDB {m['chdb']}"
    )
    ing = res.get("ingest")
    if ing:
        s = ing["service"]
        lines += [
            "",
            f"INGEST  ({s['events']:,} events, NDJSON batches of 1000, {s['concurrency']} connections)"
            "   target ≥ 50 000 events/s",
            f"  cxpulse run (HTTP → validate → dedup → store → facts)  {s['events_per_s']:>9,} ev/s"
            f"   batch p50 {s['batch_latency_ms']['p50']} ms, p99 {s['batch_latency_ms']['p99']} ms"
            f"   accepted {s['accepted']:,}, errors {s['error_count']}",
            f"  baseline: raw chDB JSONEachRow insert                 {ing['raw_chdb_insert']['events_per_s']:>9,} ev/s"
            f"   (service = {ing['ratios']['service_vs_raw_insert']:.1%} of it)",
            f"  (raw chDB insert with batches of 10 000:              {ing['raw_chdb_insert_batch10k']['events_per_s']:>9,} ev/s)",
            f"  baseline: trivial FastAPI, reads body only            {ing['trivial_fastapi']['events_per_s']:>9,} ev/s"
            f"   (service = {ing['ratios']['service_vs_trivial_http']:.1%} of it)",
            f"  in-process, no HTTP (decode+validate+process)         {ing['inprocess_stages']['events_per_s']:>9,} ev/s",
            "  in-process stages (µs/event):",
        ]
        per = ing["inprocess_stages"]["stages_us_per_event"]
        for k, v in sorted(per.items(), key=lambda kv: -kv[1]):
            lines.append(f"    {k:<50} {v:>8.1f}")
    for p in res.get("pulse", []):
        n = p["stored"]
        r = p["recovery"]
        lines += [
            "",
            f"PULSE  {n:,} stored events ({p['bulkload']['customers']:,} customers; bulk insert "
            f"{p['bulkload']['insert_s']} s; data dir {p['dir_mib']} MiB)   target p99 ≤ 100 ms",
            f"  startup recovery (derive facts + state from {n:,} events): ready after "
            f"{r['first_start_ready_s']} s (empty-store startup {res.get('ingest', {}).get('startup_empty_s', '?')} s), "
            f"peak RSS {r['rss_peak_mib']} MiB; warm restart {r['restart_ready_s']} s",
            f"  {'request':<44}{'n':>5}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}  (ms)",
        ]

        def row(label: str, s: dict[str, Any]) -> str:
            t = f"  [{s['truncated']}]" if "truncated" in s else ""
            return (
                f"  {label:<44}{s['n']:>5}{s['p50']:>9.1f}{s['p95']:>9.1f}{s['p99']:>9.1f}{s['max']:>9.1f}{t}"
            )

        lines.append(row("/healthz (HTTP floor)", p["healthz"]))
        if "loadavg_1m_after" in p["all"]:
            lines.append(
                f"  (1-min load average after the all-metrics series: {p['all']['loadavg_1m_after']} on {m['nproc']} CPUs)"
            )
        lines.append(row("/v1/pulse?window=30d (all metrics)", p["all"]))
        lines.append(row("  … &channel=web", p["all_channel_web"]))
        sql = p["sql"]
        lines.append(
            f"  per metric (HTTP, metrics=<one>)             {'':>5}{'p50':>9}{'p99':>9}   SQL only p50 (ms): all / channel=web"
        )
        for mid, s in sorted(p["per_metric"].items(), key=lambda kv: -kv[1]["p50"]):
            lines.append(
                f"    {mid:<42}{s['n']:>5}{s['p50']:>9.1f}{s['p99']:>9.1f}   "
                f"{sql['metric_sql_ms'][mid]:>8.1f} / {sql['metric_sql_ms_channel_web'][mid]:.1f}"
            )
        lines.append(
            f"  sum of per-metric SQL {sql['sum_metric_sql_ms']} ms; whole pulse in-process "
            f"{sql['pulse_in_process_ms_median']} ms; rows {sql['tables']}; active parts {sql['active_parts']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("_"):
        return _worker_main(argv)
    ap = argparse.ArgumentParser(prog="python -m bench.embedded", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000, help="events posted in the ingest phase")
    ap.add_argument(
        "--stored", default="1000000,10000000", help="stored sizes for the pulse phase ('' = skip)"
    )
    ap.add_argument("--concurrency", type=int, default=4, help="concurrent HTTP connections for ingest")
    ap.add_argument("--requests", type=int, default=200, help="timed /v1/pulse requests (after warm-up)")
    ap.add_argument("--per-metric-requests", type=int, default=30)
    ap.add_argument("--sql-reps", type=int, default=10)
    ap.add_argument("--max-phase-s", type=float, default=400, help="time cap of one latency series")
    ap.add_argument("--recovery-timeout", type=float, default=3600)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--skip-ingest", action="store_true")
    args = ap.parse_args(argv)

    res: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "args": vars(args),
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{time.strftime('%Y%m%dT%H%M%S')}.json"

    def save() -> None:
        path.write_text(json.dumps(res, indent=2))

    if not args.skip_ingest:
        res["ingest"] = bench_ingest(args)
        save()
    res["pulse"] = []
    for stored in [int(s) for s in args.stored.split(",") if s.strip()]:
        try:
            res["pulse"].append(bench_pulse(args, stored))
        except Exception as exc:  # keep what we have (e.g. a recovery that runs out of time)
            log(f"pulse {stored:,} failed: {exc}")
            res.setdefault("failures", []).append({"stored": stored, "error": str(exc)[-2000:]})
        save()
    print(report(res))
    if "ingest" in res:
        print("\ncProfile of the in-process ingest path (tottime):\n" + res["ingest"]["cprofile"]["top"])
    print(f"\nresults: {path}")
    return 0


def _worker_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("worker")
    ap.add_argument("data_dir", nargs="?")
    ap.add_argument("--events", type=int, default=0)
    ap.add_argument("--stored", type=int, default=0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--cprofile", action="store_true")
    a = ap.parse_args(argv)
    if a.worker == "_trivial":
        worker_trivial(a.port)
        return 0
    result = {
        "_rawinsert": lambda: worker_rawinsert(a.data_dir, a.events, a.seed, a.batch),
        "_ingestprofile": lambda: worker_ingestprofile(a.data_dir, a.events, a.seed, a.cprofile),
        "_bulkload": lambda: worker_bulkload(a.data_dir, a.stored, a.seed),
        "_sqlprofile": lambda: worker_sqlprofile(a.data_dir, a.reps),
    }[a.worker]()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
