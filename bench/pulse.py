# ruff: noqa: E501  (report tables and SQL read better unwrapped)
"""Embedded pulse benchmark: `/v1/pulse` latency of `cxpulse run` at large stored sizes.

    python -m bench.pulse [--stored 1000000,10000000] [--requests 200]

For each stored size, bulk-load the events inside chDB (`INSERT … SELECT … FROM numbers(N)`,
batch_seq = 1), let the service's startup recovery derive facts and keyed state (timed: that is the
recovery cost), then measure `/v1/pulse?window=30d` (all metrics, each metric alone, and `channel=web`)
against `/healthz` as the HTTP floor, and time each metric's SQL in-process with the service stopped.
Results: a table on stdout and `bench/results/pulse-<timestamp>.json`.
"""

from __future__ import annotations

import argparse
import json
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
    """Each metric's store query timed alone (no HTTP), with and without `channel=web`; table sizes."""
    from cxpulse.domain.metrics import METRICS, Filters
    from cxpulse.reading import PulseReader
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
        out["sql"] = run_worker("bench.pulse", "_sqlprofile", d, "--reps", str(args.sql_reps))
    return out


def report(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [machine_line(m)]
    for p in res.get("pulse", []):
        n = p["stored"]
        r = p["recovery"]
        lines += [
            "",
            f"PULSE  {n:,} stored events ({p['bulkload']['customers']:,} customers; bulk insert "
            f"{p['bulkload']['insert_s']} s; data dir {p['dir_mib']} MiB)   target p99 ≤ 100 ms",
            f"  startup recovery (derive facts + state from {n:,} events): ready after "
            f"{r['first_start_ready_s']} s, "
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
    ap = argparse.ArgumentParser(prog="python -m bench.pulse", description=__doc__.split("\n\n")[0])
    ap.add_argument("--stored", default="1000000,10000000", help="stored sizes (comma-separated)")
    ap.add_argument("--requests", type=int, default=200, help="timed /v1/pulse requests (after warm-up)")
    ap.add_argument("--per-metric-requests", type=int, default=30)
    ap.add_argument("--sql-reps", type=int, default=10)
    ap.add_argument("--max-phase-s", type=float, default=400, help="time cap of one latency series")
    ap.add_argument("--recovery-timeout", type=float, default=3600)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    res = started(args)
    res["pulse"] = []
    for stored in [int(s) for s in args.stored.split(",") if s.strip()]:
        try:
            res["pulse"].append(bench_pulse(args, stored))
        except Exception as exc:  # keep what we have (e.g. a recovery that runs out of time)
            log(f"pulse {stored:,} failed: {exc}")
            res.setdefault("failures", []).append({"stored": stored, "error": str(exc)[-2000:]})
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
