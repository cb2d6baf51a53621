"""What the benchmarks share: the machine, a `cxpulse run` subprocess, HTTP load, latency series, workers.

Everything that opens a chDB data dir runs in its own process (one chDB dir per process).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
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
from collections.abc import Iterator
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

    def wait_rollups(self, timeout_s: float, gauge: str = "cxpulse_rollups_readable") -> float:
        """Seconds until `/metrics` says readings come from the rollups (`cxpulse run` catches them up
        after it is ready; meanwhile readings are exact from raw events, and slower) — or `gauge` is 1
        (e.g. `cxpulse_outcomes_snapshot_readable`, built right after them)."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with {self.proc.returncode}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, body = _get(self.port, "/metrics", 5)
                if status == 200 and f"\n{gauge} 1.0".encode() in body:
                    return time.perf_counter() - t0
            time.sleep(0.1)
        raise TimeoutError(f"{gauge} not 1 after {timeout_s:.0f} s")

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


def run_worker(module: str, *args: str, timeout: float = 7200) -> dict[str, Any]:
    """Run `python -m <module> <worker> …` and return the JSON it prints last (a worker opens its own
    chDB data dir, and only one process may hold one)."""
    proc = subprocess.run(
        [PY, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
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


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"machine: {m['nproc']} CPU · {m['cpu']} · {m['ram_gib']} GiB RAM · Python {m['python']} · "
        f"chDB {m['chdb']}"
    )


def save_results(name: str, res: dict[str, Any]) -> Path:
    """`bench/results/<name>-<timestamp>.json`."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=2))
    return path


def started(args: Any) -> dict[str, Any]:
    """What every result file starts with: when, on which machine and commit, with which arguments."""
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "args": vars(args),
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
    }
