"""Outcomes benchmark: `/v1/outcomes` latency at large stored sizes (SPEC §7; target ≤ 300 ms at 10M).

    python -m bench.outcomes [--stored 1000000,10000000] [--requests 50]

Bulk-loads 180 days of synthetic events inside chDB (a sixth of the referral purchases name a customer as
`referrer_id`), starts `cxpulse run` on them, and times `/v1/outcomes` (NPS and CSAT cohorts, 90-day window
and horizon, with and without a filter) against two same-run baselines: the HTTP floor (`/healthz`) and one
metric's pulse over the same 90 days (`/v1/pulse?metrics=nps&window=90d`). Then it posts `--late` purchases
and cancellations over the same 180 days (what ingest adds between two rebuilds of the outcome snapshot:
the readings correct the snapshot with them) and times the outcome requests again.
Results: a table on stdout and `bench/results/outcomes-<timestamp>.json`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any

from bench.harness import (
    CUSTOMERS_PER_EVENT,
    Service,
    latency,
    log,
    machine_line,
    post_batches,
    run_worker,
    save_results,
    started,
    temp_dir,
)

DAYS = 180
QUERIES = {
    "outcomes nps 90d/90d": "/v1/outcomes?survey=nps&window=90d&horizon=90d",
    "outcomes nps, channel=web": "/v1/outcomes?survey=nps&window=90d&horizon=90d&channel=web",
    "outcomes csat 90d/90d": "/v1/outcomes?survey=csat&window=90d&horizon=90d",
    "baseline: pulse nps 90d": "/v1/pulse?metrics=nps&window=90d",
    "baseline: /healthz": "/healthz",
}


def worker_bulkload(data_dir: str, stored: int, seed: int) -> dict[str, Any]:
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
        rows = bulk_select(min(step, stored - off), customers, end_ms, days=DAYS, offset=off + seed * 10**10)
        referrer = f"if(referral = 1, concat('cust-', toString(cityHash64(event_id) % {customers})), '')"
        sql = f"SELECT * REPLACE ({referrer} AS referrer_id) FROM ({rows})"
        store.execute(f"INSERT INTO cxpulse.events ({BULK_COLUMNS}) {sql}")
    wall = time.perf_counter() - t0
    store.close()
    return {"stored": stored, "customers": customers, "insert_s": round(wall, 2)}


def bench_outcomes(args: argparse.Namespace, stored: int) -> dict[str, Any]:
    out: dict[str, Any] = {"stored": stored}
    with temp_dir(f"cxpulse-bench-outcomes-{stored}-") as d:
        log(f"outcomes {stored:,}: bulk-loading {DAYS} days inside chDB …")
        out["bulkload"] = run_worker("bench.outcomes", "_bulkload", d, "--stored", str(stored))
        log(f"outcomes {stored:,}: starting cxpulse run (recovery) …")
        svc = Service.cxpulse(d, ready_timeout_s=args.recovery_timeout)
        try:
            # timed on a settled service, not beside the catch-up and the outcome snapshot's first build
            out["rollups_s"] = round(svc.wait_rollups(args.recovery_timeout), 2)
            gauge = "cxpulse_outcomes_snapshot_readable"
            out["snapshot_s"] = round(out["rollups_s"] + svc.wait_rollups(args.recovery_timeout, gauge), 2)
            for label, path in QUERIES.items():
                log(f"outcomes {stored:,}: {label} × {args.requests} …")
                out[label] = latency(svc.port, path, args.requests, warmup=3, max_s=args.max_phase_s)
            if args.late:
                log(f"outcomes {stored:,}: posting {args.late:,} purchases and cancellations …")
                customers = max(100, int(stored * CUSTOMERS_PER_EVENT))
                out["late"] = post_batches(svc.port, late_outcomes(args.late, customers), concurrency=2)
                for label, path in QUERIES.items():
                    if label.startswith("outcomes"):
                        log(f"outcomes {stored:,}: {label}, after them × {args.requests} …")
                        out[f"{label} +late"] = latency(
                            svc.port, path, args.requests, warmup=3, max_s=args.max_phase_s
                        )
        finally:
            svc.stop()
    return out


def late_outcomes(n: int, customers: int, seed: int = 7) -> list[bytes]:
    """NDJSON bodies of 1000: purchases (a seventh naming a referrer) and cancellations over DAYS days."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000) - 120_000
    lines = []
    for i in range(n):
        ms = now_ms - rng.randrange(DAYS * 86_400_000)
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000))
        item: dict[str, Any] = {
            "event_id": f"late-{seed}-{i}",
            "type": "subscription_cancel" if i % 10 == 0 else "purchase",
            "occurred_at": f"{at}Z",
            "customer_id": f"cust-{rng.randrange(customers)}",
        }
        if item["type"] == "purchase":
            item.update(order_id=f"late-order-{i}", amount=10.0, currency="EUR")
            if i % 7 == 0:
                item["referrer_id"] = f"cust-{rng.randrange(customers)}"
        lines.append(json.dumps(item))
    return ["\n".join(lines[i : i + 1000]).encode() + b"\n" for i in range(0, n, 1000)]


def report(res: dict[str, Any]) -> str:
    lines = [machine_line(res["machine"])]
    for run in res["runs"]:
        lines += [
            "",
            f"OUTCOMES  {run['stored']:,} stored events over {DAYS} days   target ≤ 300 ms at 10M",
            f"  after ready: rollups caught up {run['rollups_s']} s,"
            f" outcome snapshot built {run['snapshot_s']} s",
            f"  {'request':<32}{'n':>5}{'p50':>9}{'p95':>9}{'p99':>9}  (ms)",
        ]
        for label in [*QUERIES, *(f"{q} +late" for q in QUERIES)]:
            if label in run:
                s = run[label]
                lines.append(f"  {label:<32}{s['n']:>5}{s['p50']:>9.1f}{s['p95']:>9.1f}{s['p99']:>9.1f}")
        if "late" in run:
            late = run["late"]
            posted, rate = late["accepted"], late["events_per_s"]
            lines.append(f"  (+late: {posted:,} outcomes posted after the snapshot, {rate:,} ev/s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_bulkload":
        ap = argparse.ArgumentParser()
        ap.add_argument("worker")
        ap.add_argument("data_dir")
        ap.add_argument("--stored", type=int, required=True)
        a = ap.parse_args(argv)
        print(json.dumps(worker_bulkload(a.data_dir, a.stored, 42)))
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench.outcomes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--stored", default="1000000,10000000", help="stored sizes (comma-separated)")
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--late", type=int, default=50_000, help="outcomes posted after the first timings")
    ap.add_argument("--max-phase-s", type=float, default=300)
    ap.add_argument("--recovery-timeout", type=float, default=3600)
    args = ap.parse_args(argv)
    res = started(args)
    res["runs"] = [bench_outcomes(args, int(s)) for s in args.stored.split(",") if s.strip()]
    path = save_results("outcomes", res)
    print(report(res))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
