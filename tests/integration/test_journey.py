"""`GET /v1/journey` (SPEC §7): every KPI per touchpoint, each equal to the pulse filtered by it, in one
query per metric family."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cxpulse.config import Settings
from cxpulse.domain.metrics import METRICS, Family, Filters
from cxpulse.domain.windows import parse_window
from cxpulse.reading import PulseReader
from services.embedded import EmbeddedRuntime
from tests.conftest import T0, event, iso, ms
from tests.golden.harness import client_over
from tests.golden.readings_dump import AT, events
from tests.integration.test_readings_golden import approx_equal

DAY = 86_400_000
NOW = ms(T0)


def journey_equals_pulse(client: TestClient, params: dict[str, str]) -> dict[str, Any]:
    response = client.get("/v1/journey", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["touchpoints"], "no touchpoint seen"
    for touchpoint, readings in body["touchpoints"].items():
        assert list(readings) == list(METRICS)
        pulse = client.get("/v1/pulse", params={**params, "touchpoint": touchpoint}).json()["readings"]
        for metric, reading in readings.items():
            assert approx_equal(reading, pulse[metric]), (touchpoint, metric, reading, pulse[metric])
    return body


def test_spec_examples_per_touchpoint(runtime: EmbeddedRuntime, settings: Settings) -> None:
    client = TestClient(runtime.app(settings))
    t = NOW - DAY
    items = [
        event(f"n{i}", "survey_answer", t + i, f"c{i}", survey="nps", score=s, touchpoint="checkout")
        for i, s in enumerate([10, 9, 9, 8, 7, 6, 3, 10, 0, 9])
    ]
    items += [
        event(f"s{i}", "survey_answer", t + i, f"c{i}", survey="csat", score=s, touchpoint="website")
        for i, s in enumerate([5, 4, 3, 5, 1])
    ]
    items += [
        event("a1", "support_contact", t, "c1", case_id="A"),
        event("a2", "support_resolved", t + 60_000, "c1", case_id="A"),
        event("p1", "purchase", t, "c2", referrer_id="c1"),
        event("l1", "login", t, "c3", touchpoint="zeta"),
    ]
    assert client.post("/v1/events", json=items).status_code == 202
    body = journey_equals_pulse(client, {"window": "7d", "at": iso(NOW)})
    # journey order first, then the others by name; nothing that was not seen
    assert list(body["touchpoints"]) == ["website", "checkout", "support", "zeta"]
    checkout = body["touchpoints"]["checkout"]
    assert (checkout["nps"]["value"], checkout["nps"]["n"]) == (20.0, 10)
    assert checkout["csat"]["value"] is None and checkout["csat"]["n"] == 0
    assert body["touchpoints"]["website"]["csat"]["value"] == 60.0
    assert body["touchpoints"]["support"]["fcr"]["value"] == 100.0


@pytest.mark.parametrize("params", [{"window": "7d"}, {"window": "30d", "channel": "web"}, {"window": "24h"}])
def test_random_stream_equals_pulse_per_touchpoint(chdb_dir: Path, params: dict[str, str]) -> None:
    with client_over(str(chdb_dir), events()) as client:
        journey_equals_pulse(client, {**params, "at": AT})


def test_one_query_per_metric_family_whatever_the_touchpoints(chdb_dir: Path) -> None:
    with client_over(str(chdb_dir), events()) as client:
        reader: PulseReader = client.app.state.reader  # type: ignore[attr-defined]
        calls: list[str] = []
        store = reader.store
        reads = {"rows": store.rows, "array_rows": store.array_rows}

        def counting(read: Callable[[str, Any], list[list[Any]]]) -> Callable[[str, Any], list[list[Any]]]:
            def counted(sql: str, params: Any = None) -> list[list[Any]]:
                calls.append(sql)
                return read(sql, params)

            return counted

        for name, read in reads.items():
            setattr(store, name, counting(read))
        try:
            journey = reader.journey(parse_window("30d"), ms(T0), Filters())
        finally:
            for name, read in reads.items():
                setattr(store, name, read)
    assert len(journey) >= 5
    assert len(calls) == len(set(Family))


def test_bad_parameters_are_400(runtime: EmbeddedRuntime, settings: Settings) -> None:
    client = TestClient(runtime.app(settings))
    for params, field in (
        ({"window": "7x"}, "window"),
        ({"at": "yesterday"}, "at"),
        ({"channel": "Web!"}, "channel"),
    ):
        response = client.get("/v1/journey", params=params)
        assert response.status_code == 400
        assert response.json()["error"]["details"][0]["field"] == field
