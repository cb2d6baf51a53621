# ruff: noqa: E501  (report lines read better unwrapped)
"""Alerts benchmark: how fast a breaking event becomes a webhook, and what evaluating 200 rules costs.

    python -m bench.alerts [--trials 50] [--stored 1000000] [--reps 5]

1. **Latency** (embedded `cxpulse run`, a webhook receiver in this process): per trial a fresh `for: 0s`
   NPS rule on its own touchpoint is created and evaluated once (no data), then ONE detractor answer is
   posted; measured from that POST's 202 to the firing webhook's arrival. Same-run baseline: the same
   202 → webhook for a close-the-loop response rule (no evaluation in between: the delivery floor).
   Target p95 ≤ 2 s.
2. **Evaluator cost** at `--stored` bulk-loaded events (as `bench.pulse` loads them; facts derived by the
   startup recovery): one `Evaluator.evaluate()` of 200 rules over 20 distinct (window, filters) pairs,
   against the same-run baseline of one pulse read (all metrics, 24h, no filter), and against reading the
   200 rules one by one (what the grouping saves).

Results: a summary on stdout and `bench/results/alerts-<timestamp>.json`.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.harness import (
    PY,
    ROOT,
    Service,
    free_port,
    log,
    machine_line,
    run_worker,
    save_results,
    started,
    summarize,
    temp_dir,
)

WINDOWS = ["1h", "24h", "7d", "30d"]
FILTERS: list[dict[str, str]] = [
    {},
    {"touchpoint": "checkout"},
    {"channel": "web"},
    {"segment": "pro"},
    {"touchpoint": "support", "channel": "phone"},
]
RULE_METRICS = [
    "nps", "csat", "ces", "fcr", "resolution_time", "churn", "retention", "active_customers",
    "trial_conversion", "referral_rate",
]  # fmt: skip


# ------------------------------------------------------------------------------------------- latency


class Receiver:
    """Webhook receiver: the arrival time (perf_counter) of each body, keyed by its rule id."""

    def __init__(self) -> None:
        self.arrivals: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                at = time.perf_counter()
                self.send_response(204)
                self.end_headers()
                with receiver.changed:
                    receiver.arrivals.setdefault(body["rule"]["id"], []).append((at, body))
                    receiver.changed.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, rule_id: str, count: int, timeout_s: float) -> float:
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while len(self.arrivals.get(rule_id, [])) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no webhook for {rule_id} in {timeout_s} s")
                self.changed.wait(left)
            return self.arrivals[rule_id][count - 1][0]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Api:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=data, headers={"content-type": "application/json"})
        r = self.conn.getresponse()
        raw = r.read()
        return r.status, json.loads(raw) if raw else None


def answer(touchpoint: str, score: int) -> dict[str, Any]:
    now = time.time() - 0.2
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    return {
        "event_id": f"bench-{uuid.uuid4().hex}",
        "type": "survey_answer",
        "occurred_at": stamp,
        "customer_id": f"c-{uuid.uuid4().hex[:8]}",
        "survey": "nps",
        "score": score,
        "touchpoint": touchpoint,
    }


def bench_latency(trials: int) -> dict[str, Any]:
    receiver = Receiver()
    out: dict[str, Any] = {}
    with temp_dir("cxpulse-bench-alerts-") as d:
        port = free_port()
        svc = Service([PY, "-m", "services.cli", "run", "--port", str(port), "--data-dir", d], port, 90)
        api = Api(port)
        try:
            hook = [{"type": "webhook", "url": receiver.url}]
            status, resp_rule = api.call(
                "POST",
                "/v1/alert-rules",
                {
                    "type": "response",
                    "name": "bench responses",
                    "survey": "nps",
                    "cooldown": "0s",
                    "filters": {"touchpoint": "responses"},
                    "notify": hook,
                },
            )
            assert status == 201, resp_rule
            log(f"latency: {trials} close-the-loop trials (baseline) …")
            floor = []
            for i in range(trials):
                status, _ = api.call("POST", "/v1/events", [answer("responses", 2)])
                t202 = time.perf_counter()
                assert status == 202
                floor.append(receiver.wait(resp_rule["id"], i + 1, 30) - t202)
            log(f"latency: {trials} metric-rule trials (rule created, evaluated, one breaking answer) …")
            fired, evaluated_wait = [], []
            for i in range(trials):
                tp = f"bench{i}"
                status, rule = api.call(
                    "POST",
                    "/v1/alert-rules",
                    {
                        "name": f"bench {i}",
                        "metric": "nps",
                        "window": "1h",
                        "filters": {"touchpoint": tp},
                        "condition": {"op": "below", "threshold": 20},
                        "min_samples": 1,
                        "for": "0s",
                        "notify": hook,
                    },
                )
                assert status == 201, rule
                t = time.perf_counter()
                while api.call("GET", f"/v1/alert-rules/{rule['id']}")[1]["state"] == "ok":
                    time.sleep(0.02)  # until its first evaluation (no data) is done
                evaluated_wait.append(time.perf_counter() - t)
                status, _ = api.call("POST", "/v1/events", [answer(tp, 0)])
                t202 = time.perf_counter()
                assert status == 202
                fired.append(receiver.wait(rule["id"], 1, 30) - t202)
                api.call("DELETE", f"/v1/alert-rules/{rule['id']}")
            out["metric_rule_202_to_webhook"] = summarize(fired)
            out["response_rule_202_to_webhook"] = summarize(floor)
            out["new_rule_first_evaluation"] = summarize(evaluated_wait)
            out["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
        finally:
            svc.stop()
            receiver.close()
    return out


# ---------------------------------------------------------------------------------- evaluator cost


def worker_evaluator(data_dir: str, reps: int) -> dict[str, Any]:
    """In a process of its own (it opens the chDB data dir): recover, add 200 rules, time evaluations."""
    from cxpulse.alerts.service import AlertService
    from cxpulse.config import Settings
    from cxpulse.domain.metrics import METRICS, Filters
    from cxpulse.reading import PulseReader
    from services.embedded import EmbeddedRuntime

    settings = Settings(data_dir=data_dir)
    t = time.perf_counter()
    runtime = EmbeddedRuntime.open(settings)
    recovery_s = time.perf_counter() - t
    reader = PulseReader(runtime.store)
    service = AlertService(runtime.store, reader, settings)
    for i, (window, flt) in enumerate(itertools.product(WINDOWS, FILTERS)):
        for j, metric in enumerate(RULE_METRICS):
            service.create(
                {
                    "name": f"r{i}-{j}",
                    "metric": metric,
                    "window": window,
                    "filters": flt,
                    "condition": {"op": "below", "threshold": 50.0 + j},
                    "for": "5m",
                    "notify": [],
                }
            )
    rules = service.metric_rules()
    ev = service.evaluator
    now = int(time.time() * 1000)

    def timed(fn: Any, n: int) -> list[float]:
        xs = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            xs.append(time.perf_counter() - t)
        return xs

    ev.evaluate(now)  # warm (and the first evaluation writes every state)
    before = ev.reads
    evaluate = timed(lambda: ev.evaluate(now), reps)
    reads_per_evaluation = (ev.reads - before) / reps
    day = 86_400_000
    reader.pulse(list(METRICS), day, now, Filters())  # warm
    pulse = timed(lambda: reader.pulse(list(METRICS), day, now, Filters()), reps)

    def one_by_one() -> None:
        for r in rules:
            reader.pulse([r.metric], r.window_ms, now, Filters(**dict(r.filters)))

    naive = timed(one_by_one, max(1, reps // 3))
    transitions = len(service.transitions(limit=10_000))
    runtime.close()
    return {
        "rules": len(rules),
        "groups": len({(r.window_ms, tuple(sorted(r.filters.items()))) for r in rules}),
        "recovery_s": round(recovery_s, 1),
        "evaluate_ms": summarize(evaluate),
        "reads_per_evaluation": reads_per_evaluation,
        "pulse_all_metrics_24h_ms": summarize(pulse),
        "rules_one_read_each_ms": summarize(naive),
        "transitions_recorded": transitions,
    }


def bench_evaluator(stored: int, reps: int, seed: int) -> dict[str, Any]:
    with temp_dir(f"cxpulse-bench-eval-{stored}-") as d:
        log(f"evaluator: bulk-loading {stored:,} events …")
        load = run_worker("bench.pulse", "_bulkload", d, "--stored", str(stored), "--seed", str(seed))
        log(f"evaluator: loaded in {load['insert_s']} s; recovery, 200 rules, {reps} evaluations …")
        out = run_worker("bench.alerts", "_evaluator", d, "--reps", str(reps))
        out["stored"] = stored
        out["bulk_insert_s"] = load["insert_s"]
        return out


# ------------------------------------------------------------------------------------------- report


def report(res: dict[str, Any]) -> str:
    lines = [machine_line(res["machine"])]

    def row(label: str, s: dict[str, Any]) -> str:
        return f"  {label:<52}{s['n']:>5}{s['p50']:>9.0f}{s['p95']:>9.0f}{s['max']:>9.0f}"

    if "latency" in res:
        lat = res["latency"]
        lines += [
            "",
            "LATENCY (embedded cxpulse run)   target: metric rule p95 ≤ 2000 ms",
            f"  {'from the 202 of the event to the webhook arriving':<52}{'n':>5}{'p50':>9}{'p95':>9}{'max':>9}  (ms)",
            row("metric rule, for: 0s (one breaking NPS answer)", lat["metric_rule_202_to_webhook"]),
            row("baseline: response rule (delivery floor)", lat["response_rule_202_to_webhook"]),
            row("(a new rule's first evaluation after its 201)", lat["new_rule_first_evaluation"]),
            f"  1-min load average after: {lat['loadavg_1m_after']} on {res['machine']['nproc']} CPUs",
        ]
    if "evaluator" in res:
        ev = res["evaluator"]
        e, p, n = ev["evaluate_ms"], ev["pulse_all_metrics_24h_ms"], ev["rules_one_read_each_ms"]
        lines += [
            "",
            f"EVALUATOR  {ev['rules']} rules over {ev['groups']} (window, filters) pairs at {ev['stored']:,} stored events "
            f"(bulk insert {ev['bulk_insert_s']} s, recovery {ev['recovery_s']} s)",
            f"  one evaluation: p50 {e['p50']:.0f} ms, max {e['max']:.0f} ms ({e['n']} runs), "
            f"{ev['reads_per_evaluation']:.0f} reader calls",
            f"  baseline, one pulse read (all 14 metrics, 24h): p50 {p['p50']:.0f} ms → evaluation = "
            f"{e['p50'] / p['p50']:.1f}× one pulse read",
            f"  the 200 rules read one by one: p50 {n['p50']:.0f} ms ({n['p50'] / e['p50']:.1f}× the grouped evaluation)",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # the service and the workers run this checkout's code
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    if argv and argv[0].startswith("_"):
        return _worker_main(argv)
    ap = argparse.ArgumentParser(prog="python -m bench.alerts", description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=50, help="latency trials (0: skip)")
    ap.add_argument("--stored", type=int, default=1_000_000, help="stored events for the evaluator (0: skip)")
    ap.add_argument("--reps", type=int, default=5, help="timed evaluations")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    res = started(args)
    if args.trials:
        res["latency"] = bench_latency(args.trials)
    if args.stored:
        res["evaluator"] = bench_evaluator(args.stored, args.reps, args.seed)
    path = save_results("alerts", res)
    print(report(res))
    print(f"\nresults: {path}")
    return 0


def _worker_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("worker")
    ap.add_argument("data_dir")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args(argv)
    assert a.worker == "_evaluator"
    print(json.dumps(worker_evaluator(a.data_dir, a.reps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
