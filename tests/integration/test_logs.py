"""Logs of a real `cxpulse run` with `CXPULSE_LOG_FORMAT=json`: every line is a JSON object, each line
written for a request carries that request's id (echoed as `X-Request-ID`), and no key, secret or survey
comment appears anywhere — whatever the requests carried."""

from __future__ import annotations

import io
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cxpulse.http.keys import KeyFile
from cxpulse.observability.logs import RequestIdFilter, formatter, redact, request_id
from tests.conftest import event
from tests.server_support import running_service

COMMENT = "my-private-comment-about-the-agent-Zq81"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    keys_file = KeyFile(tmp_path / "keys")
    keys = {s: keys_file.create(f"k-{s}", frozenset({s})) for s in ("ingest", "read")}
    log = tmp_path / "service.log"
    env = {
        "CXPULSE_KEYS_FILE": str(keys_file.path),
        "CXPULSE_LOG_FORMAT": "json",
        "CXPULSE_LOG_LEVEL": "debug",
    }
    with running_service(tmp_path / "d", log, stdout_too=False, exit_code=0, **env) as url:
        yield url, keys, log


def _lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_json_lines_with_request_ids_and_no_secrets(service: tuple[str, dict[str, str], Path]) -> None:
    url, keys, log = service
    ingest, read = {"Authorization": f"Bearer {keys['ingest']}"}, {"Authorization": f"Bearer {keys['read']}"}
    now = int(time.time() * 1000)
    good = event("e1", "survey_answer", now - 60_000, "c1", survey="nps", score=3, comment=COMMENT)
    too_long = event("e2", "survey_answer", now - 60_000, "c1", survey="nps", score=3, comment=COMMENT * 100)
    sent_ids = []
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/v1/events", {"json": [good, too_long], "headers": ingest}),
        ("POST", "/v1/events", {"json": [too_long], "headers": ingest}),  # 422
        ("GET", "/v1/pulse?metrics=nps", {"headers": read}),
        ("GET", f"/v1/pulse?metrics=nps&key={keys['read']}", {}),  # 401: ?key= is not for this route
        ("GET", f"/?key={keys['read']}", {}),
        ("GET", f"/static/dashboard.css?key={keys['read']}", {}),
        ("GET", "/v1/pulse", {"headers": {"Authorization": "Bearer cxp_00000000." + "A" * 43}}),
        ("GET", "/v1/nothing-here", {"headers": read}),
    ]
    for i, (method, path, kwargs) in enumerate(calls):
        rid = f"test-{i}"
        headers = {**kwargs.pop("headers", {}), "X-Request-ID": rid}
        response = httpx.request(method, url + path, headers=headers, **kwargs)
        assert response.headers["x-request-id"] == rid
        sent_ids.append(rid)
    generated = httpx.get(f"{url}/healthz").headers["x-request-id"]
    assert len(generated) == 32  # made up when the caller sent none
    time.sleep(0.5)
    lines = _lines(log)  # every line parses as JSON
    access = [line for line in lines if line["logger"] == "cxpulse.access"]
    assert {line["request_id"] for line in access} >= {*sent_ids, generated}
    for line in lines:
        assert set(line) >= {"time", "level", "logger", "message", "request_id"}
    text = log.read_text()
    for secret in (keys["ingest"], keys["read"], keys["read"].split(".")[1], COMMENT, "A" * 43):
        assert secret not in text
    assert "?key" not in text and "/v1/pulse?metrics" not in text  # paths are logged without queries


def test_a_line_written_inside_a_request_carries_its_id() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("json"))
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("test.request-id")
    logger.addHandler(handler)
    try:
        token = request_id.set("abc-123")
        logger.warning("inside")
        request_id.reset(token)
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["request_id"] == "abc-123" and inside["message"] == "inside"
    assert outside["request_id"] == "-"


def test_redaction_catches_secrets_wherever_they_are() -> None:
    key = "cxp_0123abcd." + "x" * 43
    samples = [
        f"token {key} here",
        "Authorization: Bearer something-secret",
        "GET /v1/stream?window=1h&key=something-secret HTTP/1.1",
        "secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "POST https://hooks.slack.com/services/T000/B000/XXXXSECRET",
    ]
    for sample in samples:
        out = redact(sample)
        assert "[redacted]" in out
        assert key not in out and "something-secret" not in out and "XXXXSECRET" not in out
        assert "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" not in out
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed for %s", (key,), None)
    try:
        raise RuntimeError(f"boom with Bearer {key}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    RequestIdFilter().filter(record)
    assert key not in formatter("text").format(record) and key not in formatter("json").format(record)
