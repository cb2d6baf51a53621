# ruff: noqa: E501  (report tables and SQL read better unwrapped)
"""Embedded pulse benchmark: the scale curve of `cxpulse run` reads, with a same-run raw-SQL baseline.

    python -m bench.pulse [--stored 1000000,10000000,30000000] [--requests 200] [--ingest-events 200000]

For each stored size: bulk-load the events inside chDB (`INSERT … SELECT … FROM numbers(N)`, batch_seq =
1), start `cxpulse run` (startup after a bulk import: ready once the facts are derived, then the rollups
caught up behind — both timed, with the peak RSS), restart it (warm restart), then over HTTP: `/v1/pulse?window=30d` (all metrics; with `channel=web`),
breakdowns by channel, 24-point series, each metric alone, `/healthz` as the HTTP floor. With the service
stopped, a worker times the same readings in-process from the rollups and from the raw SQL over events
(the reference path), interleaved so both see the same machine load. Then ingest over HTTP (NDJSON ×
1000, 2 and 4 connections, a fresh service). Results: a table on stdout and
`bench/results/pulse-<timestamp>.json`; the 1-minute load average is recorded with every series.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

from bench.harness import (
    CUSTOMERS_PER_EVENT,
    Service,
    dir_mib,
    latency,
    log,
    machine_line,
    post_batches,
    run_worker,
    save_results,
    started,
    temp_dir,
)


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
    """In-process readings from the rollups and from the raw SQL (same run, interleaved), wall and CPU."""
    import os

    from cxpulse.domain.metrics import METRICS, Dimension, Filters
    from cxpulse.pipeline.processor import Processor
    from cxpulse.reading import PulseReader
    from cxpulse.store import migrate
    from cxpulse.store.chdb_store import ChdbStore
    from cxpulse.store.repository import Repository
    from cxpulse.store.snapshot import RawSQL

    store = ChdbStore(data_dir)
    migrate(store)
    Processor(Repository(store)).recover()  # nothing to replay: registers the rollups' writer
    readers = {"rollups": PulseReader(store), "raw_sql": PulseReader(RawSQL(store))}
    at = int(time.time() * 1000)
    day = 86_400_000
    window = 30 * day
    cases: dict[str, Any] = {
        "pulse_all_30d": lambda r: r.pulse(list(METRICS), window, at, Filters()),
        "pulse_all_30d_channel_web": lambda r: r.pulse(list(METRICS), window, at, Filters(channel="web")),
        "breakdown_nps_by_channel_30d": lambda r: r.breakdown(
            "nps", Dimension.CHANNEL, window, at, Filters()
        ),
        "breakdown_active_by_channel_30d": lambda r: r.breakdown(
            "active_customers", Dimension.CHANNEL, window, at, Filters()
        ),
        "series_nps_24x1h": lambda r: r.series("nps", at - day, at, 3_600_000, Filters()),
        "series_mau_24x1h": lambda r: r.series("mau", at - day, at, 3_600_000, Filters()),
    }
    for m in METRICS:
        cases[f"metric_{m}"] = lambda r, m=m: r.pulse([m], window, at, Filters())
    out: dict[str, Any] = {"ms_median": {}, "cpu_ms_median": {}, "equal": {}}
    for name, read in cases.items():
        wall: dict[str, list[float]] = {k: [] for k in readers}
        cpu: dict[str, list[float]] = {k: [] for k in readers}
        results = {k: read(r) for k, r in readers.items()}  # warm, and the answers compared
        out["equal"][name] = _same(results["rollups"], results["raw_sql"])
        k = reps if name.startswith(("pulse", "breakdown")) else max(2, reps // 3)
        for _ in range(k):
            for key, reader in readers.items():
                c, t = time.process_time(), time.perf_counter()
                read(reader)
                wall[key].append(time.perf_counter() - t)
                cpu[key].append(time.process_time() - c)
        out["ms_median"][name] = {key: round(statistics.median(v) * 1000, 1) for key, v in wall.items()}
        out["cpu_ms_median"][name] = {key: round(statistics.median(v) * 1000, 1) for key, v in cpu.items()}
    out["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    out["tables"] = {
        t: store.rows(f"SELECT count() FROM cxpulse.{t}")[0][0]
        for t in ("events", "event_counts_1d", "active_1d", "active_1h", "case_facts", "trial_facts",
                  "subscriber_facts", "customer_numbers")
    }  # fmt: skip
    store.close()
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal readings (floats to 1e-9 relative: sums in another order)."""
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


METRIC_IDS = [
    "nps", "csat", "ces", "fcr", "resolution_time", "active_customers", "dau", "wau", "mau", "stickiness",
    "churn", "retention", "trial_conversion", "referral_rate",
]  # fmt: skip


def bench_pulse(args: argparse.Namespace, stored: int) -> dict[str, Any]:
    out: dict[str, Any] = {"stored": stored}
    with temp_dir(f"cxpulse-bench-{stored}-") as d:
        log(f"pulse {stored:,}: bulk-loading events inside chDB …")
        out["bulkload"] = run_worker(
            "bench.pulse", "_bulkload", d, "--stored", str(stored), "--seed", str(args.seed)
        )
        log(f"pulse {stored:,}: loaded in {out['bulkload']['insert_s']} s; starting cxpulse run (recovery) …")
        svc = Service.cxpulse(d, ready_timeout_s=args.recovery_timeout)
        rolled = svc.wait_rollups(args.recovery_timeout)
        out["recovery"] = {
            "first_start_ready_s": round(svc.ready_s, 2),
            "first_start_rollups_s": round(svc.ready_s + rolled, 2),
            "rss_peak_mib": svc.rss_peak_mib(),
            "loadavg_1m": round(os.getloadavg()[0], 2),
        }
        log(
            f"pulse {stored:,}: ready after {svc.ready_s:.1f} s (recovery), rollups caught up after"
            f" {svc.ready_s + rolled:.1f} s; restart to time a warm start …"
        )
        svc.stop()
        svc = Service.cxpulse(d, ready_timeout_s=args.recovery_timeout)
        out["recovery"]["restart_ready_s"] = round(svc.ready_s, 2)
        out["recovery"]["restart_rollups_s"] = round(svc.ready_s + svc.wait_rollups(args.recovery_timeout), 2)
        out["recovery"]["restart_rss_mib"] = svc.rss_peak_mib()
        out["dir_mib"] = dir_mib(d)
        try:
            base = "/v1/pulse?window=30d"
            out["healthz"] = latency(svc.port, "/healthz", 200, max_s=30)
            series = {
                "all": base,
                "all_channel_web": base + "&channel=web",
                "breakdown_nps_channel": "/v1/pulse/nps/breakdown?by=channel&window=30d",
                "breakdown_active_channel": "/v1/pulse/active_customers/breakdown?by=channel&window=30d",
                "series_nps_24x1h": "/v1/series/nps?step=1h",
                "series_mau_24x1h": "/v1/series/mau?step=1h",
            }
            for name, path in series.items():
                log(f"pulse {stored:,}: {path} × {args.requests} …")
                out[name] = latency(svc.port, path, args.requests, max_s=args.max_phase_s)
            log(f"pulse {stored:,}: each metric alone × {args.per_metric_requests} …")
            out["per_metric"] = {
                m: latency(svc.port, f"{base}&metrics={m}", args.per_metric_requests, warmup=2, max_s=60)
                for m in METRIC_IDS
            }
            out["service_rss_peak_mib"] = svc.rss_peak_mib()
        finally:
            svc.stop()
        log(f"pulse {stored:,}: in-process readings, rollups vs raw SQL …")
        out["sql"] = run_worker("bench.pulse", "_sqlprofile", d, "--reps", str(args.sql_reps))
    return out


def bench_ingest(args: argparse.Namespace) -> dict[str, Any]:
    """Events/s of a fresh `cxpulse run` over HTTP, NDJSON × 1000, from this (separate) process."""
    from bench.ingest import _bodies

    out: dict[str, Any] = {}
    bodies = _bodies(args.ingest_events, args.seed)
    for connections in (2, 4):
        with temp_dir("cxpulse-bench-ingest-") as d:
            svc = Service.cxpulse(d)
            try:
                log(f"ingest: {args.ingest_events:,} events, {connections} connections …")
                out[f"connections_{connections}"] = post_batches(svc.port, bodies, connections)
            finally:
                svc.stop()
    return out


def report(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [machine_line(m) + f" · load average at start {m['loadavg_at_start']}"]
    for p in res.get("pulse", []):
        n = p["stored"]
        r = p["recovery"]
        lines += [
            "",
            f"PULSE  {n:,} stored events ({p['bulkload']['customers']:,} customers; bulk insert "
            f"{p['bulkload']['insert_s']} s; data dir {p['dir_mib']} MiB)",
            f"  startup after the bulk import: ready (facts derived) after {r['first_start_ready_s']} s, rollups"
            f" caught up after {r.get('first_start_rollups_s')} s, peak RSS {r['rss_peak_mib']} MiB (load"
            f" {r['loadavg_1m']}); warm restart {r['restart_ready_s']} s   targets ≤ 30 s / ≤ 2048 MiB / ≤ 5 s",
            f"  {'HTTP request':<44}{'n':>5}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}  (ms)  load after",
        ]

        def row(label: str, s: dict[str, Any]) -> str:
            t = f"  [{s['truncated']}]" if "truncated" in s else ""
            return (
                f"  {label:<44}{s['n']:>5}{s['p50']:>9.1f}{s['p95']:>9.1f}{s['p99']:>9.1f}{s['max']:>9.1f}"
                f"  {s.get('loadavg_1m_after', '')}{t}"
            )

        lines.append(row("/healthz (HTTP floor)", p["healthz"]))
        lines.append(row("/v1/pulse?window=30d (all metrics)", p["all"]))
        lines.append(row("  … &channel=web", p["all_channel_web"]))
        lines.append(row("/v1/pulse/nps/breakdown?by=channel", p["breakdown_nps_channel"]))
        lines.append(row("/v1/pulse/active_customers/breakdown?by=…", p["breakdown_active_channel"]))
        lines.append(row("/v1/series/nps?step=1h (24 points)", p["series_nps_24x1h"]))
        lines.append(row("/v1/series/mau?step=1h (24 points)", p["series_mau_24x1h"]))
        sql = p["sql"]
        lines.append(
            f"  in-process, same run (load after {sql['loadavg_1m_after']}): median ms wall (cpu)"
            "      rollups         raw SQL    speed-up  equal"
        )
        for name, ms in sql["ms_median"].items():
            cpu = sql["cpu_ms_median"][name]
            speed = ms["raw_sql"] / ms["rollups"] if ms["rollups"] else float("nan")
            lines.append(
                f"    {name:<46}{ms['rollups']:>8.1f} ({cpu['rollups']:>6.1f}){ms['raw_sql']:>8.1f}"
                f" ({cpu['raw_sql']:>6.1f}){speed:>8.1f}×  {sql['equal'][name]}"
            )
        lines.append(
            "  per metric over HTTP p50/p99: "
            + ", ".join(f"{k} {v['p50']:.0f}/{v['p99']:.0f}" for k, v in p["per_metric"].items())
        )
        lines.append(f"  rows {sql['tables']}")
    ing = res.get("ingest")
    if ing:
        lines.append("")
        for s in ing.values():
            lines.append(
                f"INGEST {s['events']:,} events, NDJSON × 1000, {s['concurrency']} connections: "
                f"{s['events_per_s']:,} ev/s (batch p50 {s['batch_latency_ms']['p50']} ms, p99 "
                f"{s['batch_latency_ms']['p99']} ms; accepted {s['accepted']:,}, errors {s['error_count']}; "
                f"load after {s['loadavg_1m_after']})   target ≥ 50 000"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("_"):
        return _worker_main(argv)
    ap = argparse.ArgumentParser(prog="python -m bench.pulse", description=__doc__.split("\n\n")[0])
    ap.add_argument("--stored", default="1000000,10000000,30000000", help="stored sizes (comma-separated)")
    ap.add_argument("--requests", type=int, default=200, help="timed /v1/pulse requests (after warm-up)")
    ap.add_argument("--per-metric-requests", type=int, default=20)
    ap.add_argument("--sql-reps", type=int, default=10)
    ap.add_argument("--max-phase-s", type=float, default=400, help="time cap of one latency series")
    ap.add_argument("--recovery-timeout", type=float, default=3600)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--ingest-events", type=int, default=200_000, help="0: skip the ingest runs")
    args = ap.parse_args(argv)
    res = started(args)
    res["pulse"] = []
    for stored in [int(s) for s in args.stored.split(",") if s.strip()]:
        try:
            res["pulse"].append(bench_pulse(args, stored))
        except Exception as exc:  # keep what we have (e.g. a recovery that runs out of time)
            log(f"pulse {stored:,} failed: {exc}")
            res.setdefault("failures", []).append({"stored": stored, "error": str(exc)[-2000:]})
    if args.ingest_events:
        res["ingest"] = bench_ingest(args)
    path = save_results("pulse", res)
    print(report(res))
    print(f"\nresults: {path}")
    return 0


def _worker_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("worker")
    ap.add_argument("data_dir", nargs="?")
    ap.add_argument("--stored", type=int, default=0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args(argv)
    result = {
        "_bulkload": lambda: worker_bulkload(a.data_dir, a.stored, a.seed),
        "_sqlprofile": lambda: worker_sqlprofile(a.data_dir, a.reps),
    }[a.worker]()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
