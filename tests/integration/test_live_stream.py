"""`GET /v1/stream` over real HTTP (uvicorn on a free port) against the embedded service on chDB, and the
dashboard's static files."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse
from prometheus_client.parser import text_string_to_metric_families

from cxpulse.config import Settings
from cxpulse.reading import PulseReader
from tests.conftest import event

MINUTE = 60_000


@pytest.fixture
def settings(chdb_dir: Path) -> Settings:
    """No KPI gauges in these tests: every store read they count is a live view's."""
    return Settings(data_dir=str(chdb_dir), database=f"t_{uuid.uuid4().hex[:12]}", metrics_windows="")


def store_reads(base_url: str) -> float:
    """`cxpulse_store_read_queries_total`: every query the read path ran on the store."""
    text = httpx.get(f"{base_url}/metrics").text
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "cxpulse_store_read_queries"]
    return sum(s.value for s in family.samples if s.name.endswith("_total"))


@pytest.fixture
def pulse_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts `PulseReader.pulse` calls: every one is a store query for a pulse."""
    calls: list[int] = []
    original = PulseReader.pulse

    def counted(self: PulseReader, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PulseReader, "pulse", counted)
    return calls


class Listener:
    """One stream read by a task; its events arrive on a queue. Cancelling the task closes the stream."""

    def __init__(self, client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: asyncio.Queue[ServerSentEvent] = asyncio.Queue()
        self.status = 0
        self._opened = asyncio.Event()
        self._task = asyncio.create_task(self._run(client, url, headers or {}))

    async def open(self) -> Listener:
        await asyncio.wait_for(self._opened.wait(), 10)
        return self

    async def _run(self, client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> None:
        async with aconnect_sse(client, "GET", url, headers=headers) as source:
            self.status = source.response.status_code
            self._opened.set()
            async for sse in source.aiter_sse():
                self.events.put_nowait(sse)

    async def next(self, timeout: float, event: str = "pulse") -> ServerSentEvent:
        async with asyncio.timeout(timeout):
            while (sse := await self.events.get()).event != event:
                pass
        return sse

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def _answer(client: httpx.AsyncClient, event_id: str, score: int, **dims: str) -> None:
    now = int(time.time() * 1000)
    item = event(event_id, "survey_answer", now - MINUTE, f"c-{event_id}", survey="nps", score=score, **dims)
    response = await client.post("/v1/events", json=[item])
    assert response.status_code == 202 and response.json()["accepted"] == 1, response.text


def _body(sse: ServerSentEvent) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(sse.data)
    return body


def run(base_url: str, test: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    async def go() -> None:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(10, read=60), limits=limits
        ) as client:
            await asyncio.wait_for(test(client), 60)

    asyncio.run(go())


def test_stream_pushes_a_posted_answer_and_matches_pulse(base_url: str) -> None:
    async def go(client: httpx.AsyncClient) -> None:
        listener = await Listener(client, "/v1/stream?metrics=nps,csat&window=1h&channel=web").open()
        assert listener.status == 200
        first = _body(await listener.next(5))
        assert first["window"] == "1h" and first["filters"] == {"channel": "web"}
        assert first["readings"]["nps"]["value"] is None  # an empty window is null, not 0
        await asyncio.sleep(1.0)
        started = time.monotonic()
        await _answer(client, "a1", 10, channel="web")
        pushed = _body(await listener.next(2))
        assert time.monotonic() - started < 2.0
        assert pushed["readings"]["nps"]["n"] == 1 and pushed["readings"]["nps"]["value"] == 100.0
        params = {"metrics": "nps,csat", "window": "1h", "channel": "web"}
        assert (await client.get("/v1/pulse", params=params)).json()["readings"] == pushed["readings"]
        await _answer(client, "a2", 0, channel="phone")  # another channel: this view does not change
        with pytest.raises(TimeoutError):
            await listener.next(2.0)
        await listener.close()

    run(base_url, go)


def test_stream_rejects_bad_parameters_like_pulse(base_url: str) -> None:
    for query in ("metrics=bogus", "window=5x", "channel=Not%20Valid"):
        stream = httpx.get(f"{base_url}/v1/stream?{query}")
        pulse = httpx.get(f"{base_url}/v1/pulse?{query}")
        assert stream.status_code == pulse.status_code == 400
        assert stream.json() == pulse.json()


def test_last_event_id_gets_the_current_pulse_at_once(base_url: str) -> None:
    async def go(client: httpx.AsyncClient) -> None:
        await _answer(client, "r1", 9)
        first = await Listener(client, "/v1/stream?metrics=nps").open()
        sse = await first.next(5)
        await first.close()
        started = time.monotonic()
        again = await Listener(client, "/v1/stream?metrics=nps", headers={"Last-Event-ID": sse.id}).open()
        resumed = await again.next(2)
        assert time.monotonic() - started < 2.0
        assert _body(resumed)["readings"] == _body(sse)["readings"]
        assert int(resumed.id) > int(sse.id)
        await again.close()

    run(base_url, go)


def test_many_connections_on_one_view_cost_one_store_read_per_change(
    base_url: str, pulse_reads: list[int]
) -> None:
    async def go(client: httpx.AsyncClient) -> None:
        listeners = [await Listener(client, "/v1/stream?metrics=nps&window=2h").open() for _ in range(100)]
        for listener in listeners:
            await listener.next(5)
        assert len(pulse_reads) == 1
        queries = store_reads(base_url)
        await asyncio.sleep(1.0)
        await _answer(client, "m1", 3)
        for listener in listeners:
            assert _body(await listener.next(3))["readings"]["nps"]["n"] == 1
        assert len(pulse_reads) == 2
        assert store_reads(base_url) - queries == 1  # NPS is one query: one for all 100 connections
        for listener in listeners:
            await listener.close()

    run(base_url, go)


def test_dashboard_and_its_assets_are_served_from_the_package(base_url: str) -> None:
    page = httpx.get(f"{base_url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/vendor/uPlot-1.6.32.iife.min.js" in page.text and "/static/dashboard.js" in page.text
    for asset in (
        "dashboard.js",
        "dashboard.css",
        "vendor/uPlot-1.6.32.iife.min.js",
        "vendor/uPlot-1.6.32.min.css",
    ):
        response = httpx.get(f"{base_url}/static/{asset}")
        assert response.status_code == 200 and len(response.content) > 500, asset
        etag = response.headers["etag"]
        assert httpx.get(f"{base_url}/static/{asset}", headers={"If-None-Match": etag}).status_code == 304
    assert httpx.get(f"{base_url}/static/../app.py").status_code == 404
