# ruff: noqa: E501  (report tables read better unwrapped)
"""Soak: `cxpulse run` (with API keys) held at 80 % of its benchmarked ingest rate for a long time, with
readers and a live stream, and checked at the end against what was sent.

    python -m bench.soak [--duration 10m] [--rate EVENTS_PER_S] [--calibrate 20s] [--batch 500] [--no-reads]

1. Calibrate (same run, same machine): NDJSON batches posted as fast as 4 connections go for
   `--calibrate`; the target rate is 80 % of that (or `--rate`).
2. Soak for `--duration`: batches paced to the target by 4 senders; a reader polling `/v1/pulse`,
   a breakdown and a series in turn; an SSE client on `/v1/stream`; the service's RSS sampled every 10 s,
   also net of the store's event-id set (`id_set_mib`), which grows with the events stored by design.
3. Check: the final NPS reading (n and value) and the active customers equal the reference computed
   from the events that were acknowledged — nothing lost, nothing counted twice.

Prints a report (RSS over time and its slope, p99 latencies, reference vs readings) and writes
`bench/results/soak-<timestamp>.json`. Exits 1 when the readings do not match.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import (
    CXPULSE,
    Service,
    free_port,
    log,
    machine_line,
    save_results,
    started,
    summarize,
    temp_dir,
)

MINUTE_MS = 60_000
BATCH_DEFAULT = 500


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Reference:
    """What was acknowledged: the readings the service must end up with."""

    events: int = 0
    answers: int = 0
    promoters: int = 0
    detractors: int = 0
    customers: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, batch: Batch) -> None:
        with self.lock:
            self.events += batch.events
            self.answers += batch.answers
            self.promoters += batch.promoters
            self.detractors += batch.detractors
            self.customers |= batch.customers

    @property
    def nps(self) -> float | None:
        return None if not self.answers else 100 * (self.promoters - self.detractors) / self.answers


@dataclass
class Batch:
    body: bytes
    events: int
    answers: int
    promoters: int
    detractors: int
    customers: set[str]


class Generator:
    """NPS answers and logins of a fixed population, each event new, occurred in the last 30 minutes."""

    def __init__(self, customers: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.customers = [f"soak-c{i}" for i in range(customers)]
        self.n = 0
        self.lock = threading.Lock()

    def batch(self, size: int) -> Batch:
        with self.lock:
            start, self.n = self.n, self.n + size
            rng = self.rng
            now = int(time.time() * 1000)
            lines, answers, promoters, detractors, who = [], 0, 0, 0, set()
            for i in range(start, start + size):
                customer = rng.choice(self.customers)
                who.add(customer)
                item: dict[str, Any] = {
                    "event_id": f"soak-{i}",
                    "customer_id": customer,
                    "occurred_at": _iso(now - rng.randrange(30 * MINUTE_MS)),
                    "channel": rng.choice(("web", "app", "email")),
                }
                if rng.random() < 0.5:
                    score = rng.choice((0, 3, 5, 6, 7, 8, 9, 9, 10, 10))
                    item |= {"type": "survey_answer", "survey": "nps", "score": score, "comment": "soak"}
                    answers += 1
                    promoters += score >= 9
                    detractors += score <= 6
                else:
                    item["type"] = "login"
                lines.append(json.dumps(item, separators=(",", ":")))
        return Batch(("\n".join(lines) + "\n").encode(), size, answers, promoters, detractors, who)


class Client:
    """One keep-alive connection with the key on every request."""

    def __init__(self, port: int, key: str, timeout: float = 120) -> None:
        self.port, self.key, self.timeout = port, key, timeout
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, float]:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/x-ndjson"}
        t = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            return 0, b"", time.perf_counter() - t
        return resp.status, data, time.perf_counter() - t


def calibrate(port: int, key: str, gen: Generator, seconds: float, batch: int, ref: Reference) -> float:
    """Events/s with 4 connections posting as fast as they can."""
    stop = time.perf_counter() + seconds
    sent = [0]
    lock = threading.Lock()

    def worker() -> None:
        client = Client(port, key)
        while time.perf_counter() < stop:
            b = gen.batch(batch)
            status, data, _ = client.request("POST", "/v1/events", b.body)
            if status == 202 and json.loads(data)["accepted"] == b.events:
                ref.add(b)
                with lock:
                    sent[0] += b.events

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sent[0] / (time.perf_counter() - t0)


def soak(
    port: int,
    keys: dict[str, str],
    gen: Generator,
    args: argparse.Namespace,
    rate: float,
    ref: Reference,
    svc: Service,
) -> dict[str, Any]:
    interval = args.batch / rate  # seconds between batches overall
    senders = 4
    stop = threading.Event()
    ingest_lat: list[float] = []
    read_lat: dict[str, list[float]] = {"pulse": [], "breakdown": [], "series": []}
    failures: list[str] = []
    behind = [0.0]
    pushes: list[float] = []
    rss: list[tuple[float, float]] = []  # (seconds, MiB)
    stored: list[int] = []  # events acknowledged at each RSS sample
    t0 = time.perf_counter()
    first_event = gen.n  # the calibration's events are not the soak's
    lock = threading.Lock()

    def sender(k: int) -> None:
        client = Client(port, keys["ingest"])
        n = k
        while not stop.is_set():
            due = t0 + n * interval
            wait = due - time.perf_counter()
            if wait > 0:
                if stop.wait(wait):
                    return
            else:
                with lock:
                    behind[0] = max(behind[0], -wait)
            b = gen.batch(args.batch)
            status, data, dt = client.request("POST", "/v1/events", b.body)
            with lock:
                ingest_lat.append(dt)
                if status == 202 and json.loads(data)["accepted"] == b.events:
                    ref.add(b)
                else:
                    failures.append(f"ingest {status} {data[:200]!r}")
            n += senders

    def reader() -> None:
        client = Client(port, keys["read"])
        paths = {
            "pulse": "/v1/pulse?window=1h",
            "breakdown": "/v1/pulse/nps/breakdown?by=channel&window=1h",
            "series": "/v1/series/nps?step=5m",
        }
        i = 0
        while not stop.wait(0.5):
            name = list(paths)[i % 3]
            status, data, dt = client.request("GET", paths[name])
            with lock:
                read_lat[name].append(dt)
                if status != 200:
                    failures.append(f"{name} {status} {data[:200]!r}")
            i += 1

    def stream() -> None:
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                conn.request("GET", f"/v1/stream?metrics=nps&window=1h&key={keys['read']}")
                resp = conn.getresponse()
                if resp.status != 200:
                    failures.append(f"stream {resp.status}")
                    return
                while not stop.is_set():
                    line = resp.fp.readline()
                    if not line:
                        break
                    if line.startswith(b"event: pulse"):
                        with lock:
                            pushes.append(time.perf_counter())
            except (OSError, http.client.HTTPException) as exc:
                failures.append(f"stream {exc!r}")
            finally:
                conn.close()

    def sampler() -> None:
        while True:
            value = _rss_mib(svc.proc.pid)
            if value is not None:
                rss.append((round(time.perf_counter() - t0, 1), value))
                stored.append(ref.events)
            if stop.wait(10):
                return

    threads = [threading.Thread(target=sender, args=(k,), daemon=True) for k in range(senders)]
    others = (sampler,) if args.no_reads else (reader, stream, sampler)
    threads += [threading.Thread(target=f, daemon=True) for f in others]
    for t in threads:
        t.start()
    last_report = time.perf_counter()
    while time.perf_counter() - t0 < args.duration:
        time.sleep(1)
        if time.perf_counter() - last_report >= 60:
            last_report = time.perf_counter()
            log(
                f"soak: {time.perf_counter() - t0:.0f} s, {ref.answers} answers acked, RSS {rss[-1][1] if rss else '?'} MiB, {len(failures)} failures"
            )
    stop.set()
    for t in threads:
        t.join(70)
    wall = time.perf_counter() - t0
    sent_events = gen.n - first_event
    gaps = [b - a for a, b in itertools.pairwise(pushes)]
    return {
        "duration_s": round(wall, 1),
        "target_events_per_s": round(rate),
        "achieved_events_per_s": round(sent_events / wall),
        "most_behind_schedule_s": round(behind[0], 2),
        "ingest_batch_ms": summarize(ingest_lat),
        "read_ms": {k: summarize(v) for k, v in read_lat.items()},
        "stream_pushes": len(pushes),
        "stream_gap_ms": summarize(gaps),
        "rss_mib": rss,
        "events_stored_at_rss_samples": stored,
        "failures": failures[:20],
        "failure_count": len(failures),
    }


def id_set_mib(events: int) -> float:
    """Memory of the store's `event_ids` Set (the duplicate check) holding `events` ids: it grows with the
    events stored, by design, in steps. ClickHouse's hash set has 16-byte cells (sipHash128), at most half
    full; it starts at 2^8 cells and grows 4× while under 2^23 cells, 2× after (`HashTableGrower`).
    Checked against `system.tables.total_bytes` of the Set in-process: 4 MiB at 100k ids, 16 at 198k,
    64 at 555k to 1.07M."""
    degree = 8
    while events > 1 << (degree - 1):
        degree += 1 if degree >= 23 else 2
    return 16 * (1 << degree) / 2**20


def _rss_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope dy/dx over the second half of the run (after warm-up)."""
    tail = points[len(points) // 2 :]
    if len(tail) < 3:
        return None
    n = len(tail)
    mx = sum(x for x, _ in tail) / n
    my = sum(y for _, y in tail) / n
    den = sum((x - mx) ** 2 for x, _ in tail)
    return None if den == 0 else sum((x - mx) * (y - my) for x, y in tail) / den


def check(port: int, key: str, ref: Reference) -> dict[str, Any]:
    client = Client(port, key)
    at = _iso(int(time.time() * 1000) + MINUTE_MS)
    window = "1d"
    status, data, _ = client.request("GET", f"/v1/pulse?metrics=nps,active_customers&window={window}&at={at}")
    if status != 200:
        return {"ok": False, "error": f"{status} {data[:300]!r}"}
    readings = json.loads(data)["readings"]
    got = {
        "nps_n": readings["nps"]["n"],
        "nps": readings["nps"]["value"],
        "active_customers": readings["active_customers"]["value"],
    }
    want = {"nps_n": ref.answers, "nps": ref.nps, "active_customers": len(ref.customers)}
    ok = got["nps_n"] == want["nps_n"] and got["active_customers"] == want["active_customers"]
    ok = ok and (want["nps"] is None or abs(got["nps"] - want["nps"]) < 1e-6)
    return {"ok": ok, "readings": got, "reference": want}


def _duration(text: str) -> float:
    from cxpulse.domain.windows import parse_window

    return parse_window(text, name="duration") / 1000


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=_duration, default=600.0, help="soak length, e.g. 10m (default 10m)"
    )
    parser.add_argument("--calibrate", type=_duration, default=20.0, help="calibration length (default 20s)")
    parser.add_argument("--rate", type=float, help="events/s to hold (default: 80%% of the calibrated rate)")
    parser.add_argument(
        "--batch", type=int, default=BATCH_DEFAULT, help="events per POST (default %(default)s)"
    )
    parser.add_argument("--customers", type=int, default=20_000, help="population (default %(default)s)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--no-reads", action="store_true", help="ingest only: no reader, no stream (to see what reads cost)"
    )
    args = parser.parse_args()
    out = started(args)
    log(machine_line(out["machine"]))
    from cxpulse.http.keys import KeyFile

    with temp_dir("cxpulse-soak-") as data:
        keys_file = KeyFile(Path(data) / "keys")
        keys = {s: keys_file.create(f"soak-{s}", frozenset({s})) for s in ("ingest", "read")}
        port = free_port()
        svc = Service([CXPULSE, "run", "--port", str(port), "--data-dir", data], port)
        try:
            ref, gen = Reference(), Generator(args.customers, args.seed)
            log(f"calibrating ingest for {args.calibrate:.0f} s …")
            measured = calibrate(port, keys["ingest"], gen, args.calibrate, args.batch, ref)
            rate = args.rate or 0.8 * measured
            out["calibrated_events_per_s"] = round(measured)
            log(
                f"calibrated {measured:.0f} events/s; soaking at {rate:.0f} events/s for {args.duration:.0f} s …"
            )
            out["soak"] = soak(port, keys, gen, args, rate, ref, svc)
            time.sleep(1)
            out["check"] = check(port, keys["read"], ref)
            samples = out["soak"]["rss_mib"]
            stored = out["soak"]["events_stored_at_rss_samples"]
            per_s = _slope(samples)
            per_event = _slope([(e, v) for e, (_, v) in zip(stored, samples, strict=True)])
            out["rss_slope_mib_per_min_2nd_half"] = None if per_s is None else round(60 * per_s, 2)
            out["rss_mib_per_100k_events_2nd_half"] = None if per_event is None else round(1e5 * per_event, 2)
            net = [(t, round(v - id_set_mib(e), 1)) for e, (t, v) in zip(stored, samples, strict=True)]
            out["soak"]["rss_net_of_id_set_mib"] = net
            net_per_s = _slope(net)
            out["rss_net_slope_mib_per_min_2nd_half"] = (
                None if net_per_s is None else round(60 * net_per_s, 2)
            )
        finally:
            svc.stop()
    path = save_results("soak", out)
    _report(out, path)
    return 0 if out["check"]["ok"] and not out["soak"]["failure_count"] else 1


def _report(out: dict[str, Any], path: Path) -> None:
    s = out["soak"]
    rss = s["rss_mib"]
    print(f"\n{machine_line(out['machine'])}")
    print(
        f"calibrated ingest: {out['calibrated_events_per_s']} events/s (4 connections, batches of {out['args']['batch']})"
    )
    print(
        f"soak: {s['duration_s']:.0f} s at {s['achieved_events_per_s']} events/s (target {s['target_events_per_s']}); most behind schedule {s['most_behind_schedule_s']} s"
    )
    print("\n| what | n | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
    rows = [("POST /v1/events batch", s["ingest_batch_ms"])] + [
        (f"GET {k}", v) for k, v in s["read_ms"].items()
    ]
    rows.append(("stream: time between pushes", s["stream_gap_ms"]))
    for name, q in rows:
        if q:
            print(f"| {name} | {q['n']} | {q['p50']} | {q['p99']} | {q['max']} |")
    if rss:
        marks = rss[:: max(1, len(rss) // 12)]
        print(
            "\nRSS MiB over time: "
            + ", ".join(f"{t:.0f}s {v:.0f}" for t, v in marks)
            + f", end {rss[-1][1]:.0f}"
        )
        print(
            f"RSS slope over the second half: {out['rss_slope_mib_per_min_2nd_half']} MiB/min, "
            f"{out['rss_mib_per_100k_events_2nd_half']} MiB per 100k events stored (the store grows with them)"
        )
        net = s["rss_net_of_id_set_mib"]
        marks = net[:: max(1, len(net) // 12)]
        print(
            "RSS MiB net of the event-id set (grows with the events stored, in steps): "
            + ", ".join(f"{t:.0f}s {v:.0f}" for t, v in marks)
            + f", end {net[-1][1]:.0f}; slope over the second half {out['rss_net_slope_mib_per_min_2nd_half']} MiB/min"
        )
    c = out["check"]
    print(
        f"\nfinal readings {c.get('readings')} vs reference {c.get('reference')}: {'EQUAL' if c['ok'] else 'DIFFERENT'}"
    )
    print(f"failures: {s['failure_count']} {s['failures'][:3]}")
    print(f"results: {path}")


if __name__ == "__main__":
    sys.exit(main())
