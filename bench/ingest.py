# ruff: noqa: E501  (report tables read better unwrapped)
"""Embedded ingest benchmark: events/s of `cxpulse run` over real HTTP, against same-run baselines.

    python -m bench.ingest [--events 200000] [--concurrency 4]

`cxpulse run` in a subprocess on a free port with a temp data dir; NDJSON batches of 1000 posted over real
HTTP by a few concurrent connections. Baselines in the same run: the same rows inserted straight into chDB
(a subprocess with its own data dir, no HTTP/validation/processing) and a trivial FastAPI endpoint under
the same uvicorn that only reads the body. Then an in-process stage profile.
Results: a table on stdout and `bench/results/ingest-<timestamp>.json`.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.harness import (
    CUSTOMERS_PER_EVENT,
    PY,
    Service,
    dir_mib,
    free_port,
    log,
    machine_line,
    post_batches,
    run_worker,
    save_results,
    started,
    temp_dir,
)

MODULE = "bench.ingest"


def _bodies(events: int, seed: int) -> list[bytes]:
    from bench.workload import Workload

    return Workload(seed=seed, customers=max(100, int(events * CUSTOMERS_PER_EVENT))).ndjson_batches(events)


def worker_rawinsert(data_dir: str, events: int, seed: int, batch: int = 1000) -> dict[str, Any]:
    """The store's insert alone: the same rows as JSONEachRow into chDB, `batch` rows an insert, no HTTP."""
    import orjson
    from chdb import session as chdb_session

    from cxpulse.domain.validation import validate_batch
    from cxpulse.http.body import decode_items
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
    from cxpulse.domain.validation import validate_batch
    from cxpulse.http.body import decode_items
    from cxpulse.pipeline.processor import Processor
    from cxpulse.store import migrate
    from cxpulse.store.chdb_store import ChdbStore
    from cxpulse.store.repository import Repository

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
    triv = Service([PY, "-m", "bench.ingest", "_trivial", "--port", str(port)], port)
    try:
        out["trivial_fastapi"] = post_batches(port, bodies, args.concurrency)
    finally:
        triv.stop()

    log("baseline: raw chDB JSONEachRow inserts of the same rows …")
    with temp_dir("cxpulse-bench-raw-") as d:
        out["raw_chdb_insert"] = run_worker(
            "bench.ingest", "_rawinsert", d, "--events", str(args.events), "--seed", str(args.seed)
        )
    with temp_dir("cxpulse-bench-raw-") as d:
        out["raw_chdb_insert_batch10k"] = run_worker(
            "bench.ingest",
            "_rawinsert",
            d,
            "--events",
            str(args.events),
            "--seed",
            str(args.seed),
            "--batch",
            "10000",
        )

    log("profile: the ingest path in-process (stage timers, then cProfile) …")
    with temp_dir("cxpulse-bench-prof-") as d:
        out["inprocess_stages"] = run_worker(
            "bench.ingest", "_ingestprofile", d, "--events", str(args.events), "--seed", str(args.seed)
        )
    with temp_dir("cxpulse-bench-prof-") as d:
        n = min(args.events, 100_000)
        prof = run_worker(
            "bench.ingest", "_ingestprofile", d, "--events", str(n), "--seed", str(args.seed), "--cprofile"
        )
        out["cprofile"] = {"events": n, "events_per_s": prof["events_per_s"], "top": prof["cprofile_tottime"]}

    svc_rate = out["service"]["events_per_s"]
    out["ratios"] = {
        "service_vs_raw_insert": round(svc_rate / out["raw_chdb_insert"]["events_per_s"], 3),
        "service_vs_trivial_http": round(svc_rate / out["trivial_fastapi"]["events_per_s"], 3),
    }
    return out


def report(res: dict[str, Any]) -> str:
    lines = [machine_line(res["machine"])]
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
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("_"):
        return _worker_main(argv)
    ap = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000, help="events posted")
    ap.add_argument("--concurrency", type=int, default=4, help="concurrent HTTP connections")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    res = started(args)
    res["ingest"] = bench_ingest(args)
    path = save_results("ingest", res)
    print(report(res))
    print("\ncProfile of the in-process ingest path (tottime):\n" + res["ingest"]["cprofile"]["top"])
    print(f"\nresults: {path}")
    return 0


def _worker_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("worker")
    ap.add_argument("data_dir", nargs="?")
    ap.add_argument("--events", type=int, default=0)
    ap.add_argument("--seed", type=int, default=42)
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
    }[a.worker]()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
