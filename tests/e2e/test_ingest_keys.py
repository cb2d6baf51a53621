"""Distributed mode reads the same keys file as the API: `cxpulse ingest` (a process, real broker) refuses
a missing or unknown key (401), a key without the ingest scope (403), and a key revoked while it runs;
it takes a key with the ingest scope (202)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest

from cxpulse.http.keys import KeyFile
from tests.conftest import event
from tests.kafka_support import Procs, wait_until

pytestmark = pytest.mark.kafka


def test_cxpulse_ingest_takes_keys_from_the_shared_keys_file(procs: Procs, tmp_path: Path) -> None:
    keys_path = tmp_path / "keys"
    key_file = KeyFile(keys_path)
    ingest_key = key_file.create("shop", frozenset({"ingest"}))
    read_key = key_file.create("ops", frozenset({"read"}))
    _, url = procs.http("ingest", name="ingest", env={"CXPULSE_KEYS_FILE": str(keys_path)})

    def post(key: str | None, event_id: str) -> httpx.Response:
        body = orjson.dumps([event(event_id, "login", int(time.time() * 1000) - 60_000, "c1")])
        headers = {"content-type": "application/json"}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        return httpx.post(f"{url}/v1/events", content=body, headers=headers, timeout=30)

    assert post(None, "e0").status_code == 401
    assert post("unknown.0123456789abcdef", "e1").status_code == 401
    refused = post(read_key, "e2")
    assert refused.status_code == 403, refused.text
    accepted = post(ingest_key, "e3")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["accepted"] == 1
    key_file.revoke("shop")
    wait_until(lambda: post(ingest_key, "e4").status_code == 401, 10, "the revoked key refused")
