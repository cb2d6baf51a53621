"""The dashboard in headless Chromium against a `cxpulse run` that requires API keys (SPEC §8).

Opened as `/?key=<read key>`, the page loads, goes live and updates from the stream; every request it
makes carries the key (as `Authorization: Bearer`, or `?key=` where a header cannot go) and none is
refused; without the key the page is a 401. The key never shows up in the service's output.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Request, sync_playwright

from cxpulse.http.keys import KeyFile
from tests.conftest import event
from tests.server_support import running_service

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (scripts/system-deps.sh)")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    keys_file = KeyFile(tmp_path / "keys")
    keys = {
        "read": keys_file.create("dashboard", frozenset({"read"})),
        "ingest": keys_file.create("producer", frozenset({"ingest"})),
    }
    log = tmp_path / "service.log"
    with running_service(tmp_path / "d", log, CXPULSE_KEYS_FILE=str(keys_file.path)) as url:
        yield url, keys, log


def _answer(url: str, key: str, event_id: str, score: int) -> None:
    now = int(time.time() * 1000)
    item = event(event_id, "survey_answer", now - 60_000, f"c-{event_id}", survey="nps", score=score)
    response = httpx.post(f"{url}/v1/events", json=[item], headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 202, response.text


def test_dashboard_with_a_key(service: tuple[str, dict[str, str], Path]) -> None:
    url, keys, log = service
    key = keys["read"]
    _answer(url, keys["ingest"], "seed-1", 9)
    requests: list[Request] = []
    refused: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r))
            page.on("response", lambda r: refused.append(r.url) if r.status in (401, 403) else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{url}/?key={key}")
            page.wait_for_selector("#status[data-state='live']", timeout=15_000)
            page.wait_for_function(
                "() => document.querySelector('.tile[data-metric=\"nps\"]').dataset.state === 'ok'",
                timeout=15_000,
            )
            before = page.eval_on_selector(".tile[data-metric='nps']", "t => t.dataset.value")
            _answer(url, keys["ingest"], "live-1", 0)  # a detractor: NPS falls, over the stream
            page.wait_for_function(
                f"() => document.querySelector('.tile[data-metric=\"nps\"]').dataset.value !== '{before}'",
                timeout=10_000,
            )
            assert key in page.url  # a reload keeps working
            anonymous = browser.new_page()
            response = anonymous.goto(url + "/")
            assert response is not None and response.status == 401
        finally:
            browser.close()
    assert not errors, errors
    assert not refused, refused
    ours = [r for r in requests if r.url.startswith(url) and "/openapi.json" not in r.url]
    assert len(ours) >= 10
    for request in ours:
        headers: dict[str, Any] = request.headers
        carried = headers.get("authorization") == f"Bearer {key}" or f"key={key}" in request.url
        assert carried, request.url
    assert any("/v1/stream?" in r.url and f"key={key}" in r.url for r in ours)
    assert key not in log.read_text() and keys["ingest"] not in log.read_text()
