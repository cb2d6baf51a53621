"""Helpers for tests against the real local broker (`scripts/kafka.sh up`): topics, processes, waiting."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from cxpulse.config import Settings
from cxpulse.store import Store, migrate

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = ROOT / "scripts" / "kafka.sh"
PORT = int(os.environ.get("KAFKA_PORT", "9092"))
BOOTSTRAP = f"127.0.0.1:{PORT}"
CXPULSE = [sys.executable, "-m", "services.cli"]

T = TypeVar("T")


def broker_status(port: int = PORT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(KAFKA_SH), "status"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "KAFKA_PORT": str(port)},
    )


def require_broker(port: int = PORT) -> str:
    proc = broker_status(port)
    if proc.returncode != 0:
        pytest.skip(
            f"no Kafka broker answering on 127.0.0.1:{port} "
            f"(start one with `bash scripts/kafka.sh up`): {proc.stdout.strip()}"
        )
    return f"127.0.0.1:{port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class OwnBroker:
    """A broker of the test's own (`scripts/kafka.sh` on free ports, data under the test's directory), for
    tests that stop and restart it: the shared broker on 9092 is never touched."""

    def __init__(self, data_dir: Path) -> None:
        require_broker()  # the harness has Java and the cached jars
        self.port = free_port()
        self.env = {
            **os.environ,
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
            "KAFKA_DATA_DIR": str(data_dir),
        }
        self.bootstrap = f"127.0.0.1:{self.port}"

    def _run(self, cmd: str) -> None:
        proc = subprocess.run(
            ["bash", str(KAFKA_SH), cmd], env=self.env, timeout=120, capture_output=True, text=True
        )
        assert proc.returncode == 0, f"kafka.sh {cmd} on {self.bootstrap}: {proc.stdout}{proc.stderr}"

    def up(self) -> None:
        self._run("up")

    def down(self) -> None:
        self._run("down")


def wait_until(check: Callable[[], T], timeout_s: float, what: str, every_s: float = 0.25) -> T:
    """Poll `check` until it returns something truthy; fail with `what` (and the last value) otherwise."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}; last: {last!r}"[:4000])


@dataclass
class Names:
    """Per-test topics and groups (uuid names), as CXPULSE_* environment for subprocesses."""

    bootstrap: str
    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def topic(self) -> str:
        return f"t-{self.uid}.events"

    def env(self) -> dict[str, str]:
        return {
            "CXPULSE_KAFKA_BOOTSTRAP": self.bootstrap,
            "CXPULSE_TOPIC": self.topic,
            "CXPULSE_DLQ_TOPIC": f"t-{self.uid}.events.dlq",
            "CXPULSE_STORE_TOPIC": f"t-{self.uid}.store",
            "CXPULSE_APP_ID": f"app-{self.uid}",
            "CXPULSE_LOADER_GROUP": f"loader-{self.uid}",
            "CXPULSE_RUN_GROUP": f"run-{self.uid}",
            "CXPULSE_RULES_TOPIC": f"t-{self.uid}.rules",
            "CXPULSE_ALERTS_TOPIC": f"t-{self.uid}.alerts",
            "CXPULSE_LEADER_TOPIC": f"t-{self.uid}.alerts.leader",
            "CXPULSE_LEADER_GROUP": f"leader-{self.uid}",
            # workers keep Faust's table metadata under the data dir: not in the working tree
            "CXPULSE_DATA_DIR": str(Path(tempfile.gettempdir()) / f"cxpulse-test-{self.uid}"),
        }

    def settings(self, **overrides: Any) -> Settings:
        env = {k.removeprefix("CXPULSE_").lower(): v for k, v in self.env().items()}
        return Settings(**{**env, **overrides})


class Proc:
    """A `cxpulse …` subprocess with its own log file (shown when a test fails)."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.popen = subprocess.Popen(
            [*CXPULSE, *args],
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout_s: float = 60) -> None:
        wait_until(lambda: text in self.log() or self.popen.poll() is not None, timeout_s, repr(text))
        assert self.popen.poll() is None, f"process exited:\n{self.log()[-3000:]}"

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._log.close()


@dataclass
class Procs:
    """Processes a test started; all stopped at teardown."""

    tmp: Path
    names: Names
    started: list[Proc] = field(default_factory=list)

    def start(self, *args: str, name: str, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(list(args), {**self.names.env(), **(env or {})}, self.tmp / f"{name}.log")
        self.started.append(proc)
        return proc

    def worker(self, name: str = "worker") -> Proc:
        proc = self.start("aggregator", name=name)
        proc.wait_log("Worker ready", 90)
        return proc

    def http(self, *args: str, name: str, env: dict[str, str] | None = None) -> tuple[Proc, str]:
        port = free_port()
        proc = self.start(*args, "--port", str(port), name=name, env=env)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert proc.popen.poll() is None, f"{name} exited:\n{proc.log()[-3000:]}"
            try:
                return httpx.get(url + "/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 60, f"{name} on {url}")
        return proc, url

    def dump_workers(self) -> list[Proc]:
        """Ask every live aggregator worker for its asyncio tasks (mode's SIGUSR1 dump, into its log): when
        a test failed, where each worker was waiting."""
        live = [p for p in self.started if p.args[:1] == ["aggregator"] and p.popen.poll() is None]
        for proc in live:
            proc.popen.send_signal(signal.SIGUSR1)
        if live:
            time.sleep(2.0)
        return live

    def stop_all(self) -> None:
        for proc in self.started:
            proc.kill(signal.SIGTERM)


@pytest.fixture
def procs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Procs]:
    bootstrap = require_broker()
    p = Procs(tmp_path, Names(bootstrap))
    yield p
    report = getattr(request.node, "rep_call", None)
    failed = report is not None and report.failed
    dumped = failed and p.dump_workers()
    p.stop_all()
    for proc in p.started:  # captured: pytest shows it only when the test failed
        sys.stderr.write(f"\n---- {proc.log_path.name} ----\n{proc.log()[-4000:]}\n")
        if dumped and proc in dumped:
            stacks = task_stacks(proc.log())
            sys.stderr.write(f"\n---- {proc.log_path.name}: its asyncio tasks ----\n{stacks}\n")


def task_stacks(log: str) -> str:
    """The task names and stack lines of the last dump mode's worker wrote on SIGUSR1 (without the locals
    it prints beside them)."""
    lines = log[log.rfind("TASKS") :].splitlines()
    keep = [
        line
        for i, line in enumerate(lines)
        if line.lstrip().startswith(("TASK ", "-> ", 'File "'))
        or (i and lines[i - 1].lstrip().startswith('File "'))
    ]
    return "\n".join(keep)[-30000:]


def sibling_store(store: Store, database: str) -> Store:
    """The test's chDB store under another database name (one chDB engine per process: share it)."""
    other = copy.copy(store)
    other.database = database
    migrate(other)
    return other


class BackgroundLoop:
    """Run an `async def run(stop)` loop (the loader) in a thread with its own event loop."""

    def __init__(self, run: Callable[[asyncio.Event], Any]) -> None:
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self.error: BaseException | None = None

        def main() -> None:
            try:
                self._loop.run_until_complete(run(self._stop))
            except BaseException as exc:  # surfaced by stop()
                self.error = exc

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        if self.error is not None:
            raise self.error
