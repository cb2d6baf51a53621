"""Faults with real parts, against a real `cxpulse run` process:

- SIGTERM while producers are posting: the process drains the batches in flight, exits 0, and after a
  restart every acknowledged event is counted, once; Ctrl+C (SIGINT) stops it as cleanly, without a
  traceback;
- a full disk (a small tmpfs, mounted for the test — needs root): the batch gets a clear 503 and the log a
  line saying why; once space is back ingest goes on, and after a restart the store holds exactly what was
  acknowledged (nothing corrupt, nothing half-written).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import event, iso
from tests.server_support import CxpulseRun

HOUR = 3_600_000


class Service(CxpulseRun):
    def nps_n(self) -> int:
        at = iso(int(time.time() * 1000) + HOUR)
        body = httpx.get(
            f"{self.url}/v1/pulse", params={"metrics": "nps", "window": "1d", "at": at}, timeout=60
        )
        assert body.status_code == 200, body.text
        n: int = body.json()["readings"]["nps"]["n"]
        return n


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path / "data", tmp_path / "service.log")
    yield svc
    svc.kill()


def _batch(prefix: str, size: int) -> list[dict[str, Any]]:
    t = int(time.time() * 1000) - HOUR
    return [
        event(f"{prefix}-{i}", "survey_answer", t, f"c-{prefix}-{i}", survey="nps", score=i % 11)
        for i in range(size)
    ]


def test_sigterm_drains_in_flight_batches_and_exits_0(service: Service) -> None:
    service.start()
    assert "OPEN: no API keys" in service.log.read_text()  # open mode says so at start
    acked = [0] * 4
    ambiguous = [0] * 4  # a batch whose answer never came: the producer would retry it
    stop = threading.Event()

    def produce(worker: int) -> None:
        with httpx.Client(base_url=service.url, timeout=30) as client:
            n = 0
            while not stop.is_set():
                n += 1
                batch = _batch(f"w{worker}-{n}", 200)
                try:
                    response = client.post("/v1/events", json=batch)
                except httpx.TransportError:
                    if isinstance(sys.exc_info()[1], httpx.ConnectError):
                        return  # refused: never sent, the server is gone
                    ambiguous[worker] += len(batch)
                    return
                if response.status_code == 202:
                    acked[worker] += response.json()["accepted"]
                else:
                    return  # 503 while shutting down: not acknowledged

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(3)
    assert sum(acked) > 0
    code = service.terminate()
    stop.set()
    for thread in threads:
        thread.join(30)
    assert code == 0, service.log.read_text()
    service.start()
    stored = service.nps_n()
    assert sum(acked) <= stored <= sum(acked) + sum(ambiguous), (acked, ambiguous, stored)
    assert service.terminate() == 0


def test_ctrl_c_stops_cleanly_with_every_acknowledged_event_stored(service: Service) -> None:
    """SIGINT (Ctrl+C on `make run`) is a graceful stop like SIGTERM: status 0, no traceback."""
    service.start()
    with httpx.Client(base_url=service.url, timeout=30) as client:
        acked = sum(client.post("/v1/events", json=_batch(f"c{n}", 100)).json()["accepted"] for n in range(3))
    assert acked == 300
    code = service.terminate(sig=signal.SIGINT)
    log = service.log.read_text()
    assert code == 0, log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    service.start()
    assert service.nps_n() == acked
    assert service.terminate(sig=signal.SIGINT) == 0


def _mounted_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


def test_a_full_disk_is_a_503_and_a_log_line_and_no_corrupt_store(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    if not _mounted_tmpfs(disk, "48m"):
        pytest.skip("needs root to mount a small tmpfs")
    service = Service(disk / "data", tmp_path / "service.log")
    try:
        service.start()
        with httpx.Client(base_url=service.url, timeout=30) as client:
            assert client.post("/v1/events", json=_batch("before", 50)).status_code == 202
            with (disk / "filler").open("wb") as filler, contextlib.suppress(OSError):
                while True:  # fill the disk to the last byte
                    filler.write(b"\0" * (1 << 20))
                    filler.flush()
            refused = client.post("/v1/events", json=_batch("full", 50))
            assert refused.status_code == 503, refused.text
            error = refused.json()["error"]
            assert error["code"] == "unavailable" and "not enough space" in error["message"]
            assert int(refused.headers["retry-after"]) >= 1
            time.sleep(0.2)
            assert "the store did not accept 50 events" in service.log.read_text()
            reading = client.get("/v1/pulse", params={"metrics": "nps", "window": "1d"})
            assert reading.status_code in (200, 503), reading.text  # a read may or may not need space
            (disk / "filler").unlink()
            assert client.post("/v1/events", json=_batch("after", 50)).status_code == 202
            assert client.post("/v1/events", json=_batch("full", 50)).json()["accepted"] == 50  # the retry
        assert service.terminate() == 0
        service.start()  # the store opens and holds exactly what was acknowledged
        assert service.nps_n() == 150
        assert service.terminate() == 0
    finally:
        service.kill()
        subprocess.run(["umount", "-l", str(disk)], check=False)
