"""`cxpulse demo` against a real embedded service (a `cxpulse run` subprocess on a free port)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.demo import DemoError, run_demo
from tests.server_support import free_port, running_service

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
CXPULSE = [sys.executable, "-m", "services.cli"]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("demo-data")
    with running_service(data / "store", data / "service.log") as url:
        yield url


def _get(url: str, path: str) -> dict[str, Any]:
    response = httpx.get(f"{url}{path}", timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_demo_fills_the_pulse_and_an_incident_shows_at_its_touchpoint(service: str) -> None:
    lines: list[str] = []
    totals = asyncio.run(
        run_demo(
            service, rate=400, customers=300, duration_s=4, incident="checkout", seed=11, out=lines.append
        )
    )
    assert totals.sent == 1600
    assert totals.accepted == totals.sent and totals.rejected == 0 and totals.duplicates == 0
    assert lines[-1].startswith("demo done:") and "sent 1600" in lines[-1]

    readings = _get(service, "/v1/pulse?window=1h")["readings"]
    for metric in ("nps", "csat", "ces", "fcr"):
        assert readings[metric]["n"] > 0, (metric, readings[metric])
    assert readings["active_customers"]["value"] > 0

    groups = _get(service, "/v1/pulse/nps/breakdown?by=touchpoint&window=1h")["groups"]
    others = [g["value"] for tp, g in groups.items() if tp != "checkout" and g["n"] >= 5]
    assert groups["checkout"]["n"] >= 5 and others
    assert groups["checkout"]["value"] < min(others)


def test_the_cli_runs_for_its_duration_and_exits_0(service: str) -> None:
    proc = subprocess.run(
        [*CXPULSE, "demo", "--url", service, "--rate", "50", "--duration", "2s", "--seed", "3"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    done = proc.stdout.strip().splitlines()[-1]
    assert done.startswith("demo done:") and "sent 100  accepted 100" in done, proc.stdout


def test_an_unreachable_service_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DemoError, match="cannot reach CX Pulse"):
        asyncio.run(run_demo(url, duration_s=1, out=lambda _: None))
    proc = subprocess.run(
        [*CXPULSE, "demo", "--url", url, "--duration", "1s"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"cannot reach CX Pulse at {url}" in proc.stderr


def test_history_backfills_every_window_and_the_outcome_cohorts(tmp_path: Path) -> None:
    lines: list[str] = []
    with running_service(tmp_path / "store", tmp_path / "service.log") as url:
        totals = asyncio.run(
            run_demo(
                url, rate=50, customers=200, duration_s=1, seed=5, history_s=3 * 86_400, out=lines.append
            )
        )
        assert totals.sent == 200 * 2 * 3 + 50  # the history, then one second live
        assert totals.accepted == totals.sent
        assert any("backfilling 1,200 events" in line for line in lines)
        readings = _get(url, "/v1/pulse?window=24h")["readings"]
        assert readings["nps"]["previous"]["n"] > 0  # the day before has answers too
        assert readings["mau"]["value"] > readings["dau"]["value"]
        outcomes = _get(url, "/v1/outcomes?survey=nps&window=2d&horizon=12h")
        assert sum(g["customers"] for g in outcomes["groups"].values()) > 0
