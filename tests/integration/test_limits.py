"""Limits (README "Security") over real HTTP against the embedded service on chDB: per-key rate limits,
the per-key stream cap, request timeouts and query cost limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from cxpulse.config import Settings
from cxpulse.http.keys import KeyFile
from cxpulse.store.base import Store
from services.api.app import create_app
from services.embedded import EmbeddedRuntime
from tests.conftest import event, iso
from tests.server_support import served

MINUTE = 60_000


def _keyed(settings: Settings, tmp_path: Path, **limits: Any) -> tuple[Settings, dict[str, str]]:
    settings = settings.model_copy(update={"keys_file": str(tmp_path / "keys"), **limits})
    key_file = KeyFile(settings.keys_path)
    keys = {name: key_file.create(name, frozenset({"ingest", "read"})) for name in ("a", "b")}
    return settings, keys


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _answer(event_id: str, channel: str = "web") -> dict[str, Any]:
    now = int(time.time() * 1000)
    return event(
        event_id, "survey_answer", now - MINUTE, f"c-{event_id}", survey="nps", score=8, channel=channel
    )


def test_read_rate_limit_is_per_key_with_retry_after(
    runtime: EmbeddedRuntime, settings: Settings, tmp_path: Path
) -> None:
    settings, keys = _keyed(settings, tmp_path, read_rate=1.0, read_burst=3)
    with served(runtime.app(settings)) as url, httpx.Client(base_url=url) as client:
        statuses = [client.get("/v1/metrics", headers=_bearer(keys["a"])).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        limited = client.get("/v1/metrics", headers=_bearer(keys["a"]))
        assert limited.status_code == 429, limited.text
        assert limited.json()["error"]["code"] == "rate_limited"
        retry_after = int(limited.headers["retry-after"])
        assert 1 <= retry_after <= 2
        for _ in range(3):  # another key goes on while `a` waits
            assert client.get("/v1/metrics", headers=_bearer(keys["b"])).status_code == 200
        time.sleep(retry_after)
        assert client.get("/v1/metrics", headers=_bearer(keys["a"])).status_code == 200
        assert client.get("/healthz").status_code == 200  # open routes are not counted


def test_ingest_rate_limit_is_separate_from_reads(
    runtime: EmbeddedRuntime, settings: Settings, tmp_path: Path
) -> None:
    settings, keys = _keyed(settings, tmp_path, ingest_rate=0.5, ingest_burst=2, read_rate=0)
    with served(runtime.app(settings)) as url, httpx.Client(base_url=url) as client:
        for i in range(2):
            response = client.post("/v1/events", json=[_answer(f"rl-{i}")], headers=_bearer(keys["a"]))
            assert response.status_code == 202
        limited = client.post("/v1/events", json=[_answer("rl-x")], headers=_bearer(keys["a"]))
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert client.get("/v1/pulse?metrics=nps", headers=_bearer(keys["a"])).status_code == 200
        response = client.post("/v1/events", json=[_answer("rl-b")], headers=_bearer(keys["b"]))
        assert response.status_code == 202
        window = {"metrics": "nps", "window": "1h", "at": _iso_in(MINUTE)}
        pulse = client.get("/v1/pulse", params=window, headers=_bearer(keys["b"])).json()
        assert pulse["readings"]["nps"]["n"] == 3  # the refused batch was not stored


def _iso_in(ms: int) -> str:
    return iso(int(time.time() * 1000) + ms)


def test_streams_are_capped_per_key(runtime: EmbeddedRuntime, settings: Settings, tmp_path: Path) -> None:
    settings, keys = _keyed(settings, tmp_path, max_streams_per_key=2, read_rate=0)

    async def go(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10, read=60)) as client:
            first = await _open_stream(client, keys["a"])
            second = await _open_stream(client, keys["a"])
            third = await client.get("/v1/stream", params={"key": keys["a"]})
            assert third.status_code == 429 and third.json()["error"]["code"] == "too_many_streams"
            other = await _open_stream(client, keys["b"])  # another key has its own slots
            await first.aclose()
            deadline = time.monotonic() + 5  # the slot comes back when the server sees the disconnect
            while True:
                response = await client.send(
                    client.build_request("GET", "/v1/stream", params={"key": keys["a"]}), stream=True
                )
                if response.status_code == 200:
                    await response.aclose()
                    break
                await response.aread()
                assert time.monotonic() < deadline, "the closed stream's slot was not released"
                await asyncio.sleep(0.1)
            await second.aclose()
            await other.aclose()

    with served(runtime.app(settings)) as url:
        asyncio.run(go(url))


async def _open_stream(client: httpx.AsyncClient, key: str) -> httpx.Response:
    response = await client.send(client.build_request("GET", "/v1/stream", headers=_bearer(key)), stream=True)
    assert response.status_code == 200
    return response


class SlowReads:
    """The store, with every query taking `delay_s` longer (inserts untouched)."""

    def __init__(self, store: Store, delay_s: float) -> None:
        self.store, self.delay_s, self.database = store, delay_s, store.database

    def execute(self, sql: str) -> None:
        self.store.execute(sql)

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        if "SELECT 1" not in sql:
            time.sleep(self.delay_s)
        return self.store.rows(sql, params)

    def array_rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        time.sleep(self.delay_s)
        return self.store.array_rows(sql, params)

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        self.store.insert(table, rows)

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def slow_app_url(runtime: EmbeddedRuntime, settings: Settings) -> Iterator[str]:
    settings = settings.model_copy(update={"request_timeout_s": 1.0})
    app = create_app(SlowReads(runtime.store, 3.0), settings, bus=runtime.bus, feed=runtime.feed)
    with served(app) as url:
        yield url


def test_a_slow_query_is_answered_503_at_the_deadline(slow_app_url: str) -> None:
    t0 = time.monotonic()
    response = httpx.get(f"{slow_app_url}/v1/pulse?metrics=nps", timeout=10)
    took = time.monotonic() - t0
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "timeout" and "CXPULSE_REQUEST_TIMEOUT_S" in response.text
    assert response.headers["retry-after"] == "5"
    assert 0.9 <= took < 2.5, took
    assert httpx.get(f"{slow_app_url}/healthz").status_code == 200


def test_a_slow_upload_is_answered_503_at_the_deadline(slow_app_url: str) -> None:
    def trickle() -> Iterator[bytes]:
        yield b'[{"event_id": "slow", '
        time.sleep(2.5)
        yield b'"type": "login"}]'

    t0 = time.monotonic()
    try:
        response = httpx.post(
            f"{slow_app_url}/v1/events", content=trickle(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 503 and response.json()["error"]["code"] == "timeout"
    except httpx.RemoteProtocolError:
        pass  # the server may answer and close while the body is still being sent
    assert time.monotonic() - t0 < 4


def test_a_stream_outlives_the_request_timeout(slow_app_url: str) -> None:
    """The deadline is for starting an answer: a stream that started goes on."""

    async def go() -> None:
        timeout = httpx.Timeout(10, read=30)
        async with (
            httpx.AsyncClient(base_url=slow_app_url, timeout=timeout) as client,
            client.stream("GET", "/v1/stream", params={"metrics": "nps"}) as response,
        ):
            assert response.status_code == 200
            chunks: AsyncIterator[bytes] = response.aiter_bytes()
            t0 = time.monotonic()
            received = b""
            while b"event: pulse" not in received:  # the first pulse needs one slow (3 s) read
                received += await asyncio.wait_for(anext(chunks), 10)
            assert time.monotonic() - t0 > 1.5

    asyncio.run(go())


@pytest.fixture
def short_retention(runtime: EmbeddedRuntime, settings: Settings) -> Iterator[httpx.Client]:
    settings = settings.model_copy(update={"retention_days": 30, "max_breakdown_groups": 3})
    with served(runtime.app(settings)) as url, httpx.Client(base_url=url) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/pulse?window=31d", "window"),
        ("/v1/pulse/nps/breakdown?by=channel&window=800h", "window"),
        ("/v1/series/nps?step=31d", "step"),
        ("/v1/series/nps?step=1d&from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", "from"),
        ("/v1/stream?window=40d", "window"),
    ],
)
def test_no_span_reaches_past_the_retention(short_retention: httpx.Client, path: str, field: str) -> None:
    response = short_retention.get(path)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["details"][0]["field"] == field and "retention, 30d" in error["message"]
    assert short_retention.get("/v1/pulse?window=30d&metrics=nps").status_code == 200


def test_breakdown_groups_are_capped(short_retention: httpx.Client) -> None:
    events = [_answer(f"g-{c}", channel=c) for c in ("web", "app", "email")]
    assert short_retention.post("/v1/events", json=events).status_code == 202
    assert short_retention.get("/v1/pulse/nps/breakdown?by=channel&window=1h").status_code == 200
    assert short_retention.post("/v1/events", json=[_answer("g-x", channel="phone")]).status_code == 202
    response = short_retention.get("/v1/pulse/nps/breakdown?by=channel&window=1h")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["details"][0]["field"] == "by" and "CXPULSE_MAX_BREAKDOWN_GROUPS" in error["message"]
