"""The aggregator's own /metrics port (it has no HTTP API): loopback by default, a read key once keys
exist (SPEC §8, like the API's /metrics), and no open bind on a public address without CXPULSE_ALLOW_OPEN.
Served for real on a free port and asked over HTTP; the refusal also through `cxpulse aggregator`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from cxpulse.config import Settings
from cxpulse.http.auth import Access, OpenBindRefused, check_bind
from cxpulse.http.keys import KeyFile
from services.aggregator.metrics_server import serve_metrics
from tests.server_support import cxpulse, free_port


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("cxpulse_events_dlq", "dead letters", registry=registry).inc(3)
    return registry


@contextmanager
def metrics(settings: Settings) -> Iterator[tuple[str, str]]:
    server, line = serve_metrics(settings, _registry())
    try:
        yield f"http://{settings.metrics_host}:{settings.metrics_port}/metrics", line
    finally:
        server.shutdown()
        server.server_close()


def test_without_keys_it_serves_loopback_open_by_default(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path), metrics_port=free_port(), host="0.0.0.0")
    assert settings.metrics_host == "127.0.0.1"  # CXPULSE_HOST (the API's) does not open it
    with metrics(settings) as (url, line):
        r = httpx.get(url, timeout=10)
        assert r.status_code == 200 and "cxpulse_events_dlq_total 3.0" in r.text
        assert line.startswith("OPEN: no API keys")


def test_with_keys_it_takes_a_read_key_and_follows_revocation(tmp_path: Path) -> None:
    keys = KeyFile(tmp_path / "keys")
    reader = keys.create("prometheus", frozenset({"read"}))
    writer = keys.create("shop", frozenset({"ingest"}))
    settings = Settings(data_dir=str(tmp_path), metrics_port=free_port())
    with metrics(settings) as (url, line):
        assert line.startswith("API keys required")
        anonymous = httpx.get(url, timeout=10)
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
        assert anonymous.json()["error"]["code"] == "unauthorized"
        unknown = httpx.get(url, headers={"Authorization": "Bearer cxp_00000000.nope"}, timeout=10)
        assert unknown.status_code == 401 and unknown.json() == anonymous.json()
        wrong = httpx.get(url, headers={"Authorization": f"Bearer {writer}"}, timeout=10)
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
        ok = httpx.get(url, headers={"Authorization": f"Bearer {reader}"}, timeout=10)
        assert ok.status_code == 200 and "cxpulse_events_dlq_total 3.0" in ok.text

        assert keys.revoke("prometheus") == 1
        time.sleep(0.05)
        revoked = httpx.get(url, headers={"Authorization": f"Bearer {reader}"}, timeout=10)
        assert revoked.status_code == 401


def test_an_open_public_bind_is_refused_unless_allowed(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path), metrics_port=free_port(), metrics_host="0.0.0.0")
    with pytest.raises(OpenBindRefused, match="CXPULSE_ALLOW_OPEN"):
        serve_metrics(settings, _registry())
    # allowed: the same check passes (not served here: tests bind loopback only)
    assert check_bind("0.0.0.0", Access(settings), allow_open=True).startswith("OPEN on 0.0.0.0")


def test_the_aggregator_refuses_before_it_touches_kafka(tmp_path: Path) -> None:
    done = cxpulse(
        ["aggregator", "--kafka", f"127.0.0.1:{free_port()}", "--metrics-port", str(free_port())],
        CXPULSE_METRICS_HOST="0.0.0.0",
        CXPULSE_DATA_DIR=str(tmp_path),
    )
    assert done.returncode == 2, done.stderr
    assert "refusing to serve without API keys on 0.0.0.0" in done.stderr
