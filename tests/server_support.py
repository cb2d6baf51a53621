"""Serving an app over real HTTP in a test: uvicorn in a thread on a free 127.0.0.1 port, and the `cxpulse`
command line as a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """`app` on http://127.0.0.1:<free port> until the block ends."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a `python -m services.cli` subprocess: this checkout on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return {**env, **extra}


def cxpulse(args: Sequence[str], timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `cxpulse ARGS` to completion; stdout and stderr captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def placeholder_app() -> FastAPI:
    """The full app (ingest, reads, stream, dashboard, /metrics, alerts) built over placeholders: for its
    routes and OpenAPI document, which do not depend on the store. Never serve it."""
    from cxpulse.config import Settings
    from services.api.app import create_app

    alerts = SimpleNamespace(evaluator=SimpleNamespace(listeners=[]), alert_counts=dict, on_attempt=[])
    settings = Settings(keys_file="/nonexistent/keys", metrics_windows="")
    return create_app(object(), settings, bus=object(), alerts=alerts)  # type: ignore[arg-type]


@contextmanager
def running_service(
    data_dir: Path, log: Path, *, stdout_too: bool = True, exit_code: int | None = None, **env: str
) -> Iterator[str]:
    """`cxpulse run` (a `CxpulseRun`) with `env` for the length of the block (`stdout_too=False`: only its
    stderr in `log`); stopped with SIGTERM, and its exit code checked when `exit_code` is given. Yields
    the base URL."""
    run = CxpulseRun(data_dir, log, env=env, stdout_too=stdout_too)
    run.start()
    try:
        yield run.url
    finally:
        code = run.terminate(timeout=30)
        if exit_code is not None:
            assert code == exit_code


@dataclass
class CxpulseRun:
    """`cxpulse run` as a subprocess on a data directory and a port that outlive it, so a test can stop,
    kill and start it again in place; its output, every start appended, in `log`."""

    data_dir: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    ready_timeout_s: float = 90
    #: False: only stderr goes to `log` (stdout is dropped).
    stdout_too: bool = True
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and wait until `/readyz` answers 200 (fails the test, with the log, otherwise)."""
        assert self.proc is None
        self.starts += 1
        cmd = [sys.executable, "-m", "services.cli", "run", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*cmd, "--data-dir", str(self.data_dir)],
                env=cli_env(**self.env),
                cwd=ROOT,
                stdout=out if self.stdout_too else subprocess.DEVNULL,
                stderr=subprocess.STDOUT if self.stdout_too else out,
            )
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"cxpulse exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"cxpulse did not become ready in {self.ready_timeout_s:.0f} s:\n{self.log_text()}")

    def terminate(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> int:
        """Send `sig` and wait for the exit; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def stop(self) -> None:
        """SIGTERM if running (SIGKILL after 30 s): for the end of a test, whatever its outcome."""
        if self.proc is None:
            return
        try:
            self.terminate(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flush — whatever was not durable is lost."""
        if self.proc is None:
            return
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL
        self.proc = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
