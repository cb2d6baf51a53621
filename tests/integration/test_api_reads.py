"""Contract tests of the read endpoints (SPEC §3): pulse, breakdown, series, health, OpenAPI — on chDB."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from cxpulse.config import Settings
from cxpulse.domain.event_schema import event_schema
from cxpulse.domain.metrics import METRICS
from services.embedded import EmbeddedRuntime
from tests.conftest import T0, event, iso, ms

HOUR = 3_600_000
DAY = 86_400_000
AT = ms(T0)
READING_KEYS = {"value", "n", "ci", "previous", "delta", "significant"}


@pytest.fixture
def client(runtime: EmbeddedRuntime, settings: Settings) -> TestClient:
    return TestClient(runtime.app(settings))


@pytest.fixture
def loaded(client: TestClient) -> TestClient:
    """Surveys in the current 24h window before AT and in the one before it, over two touchpoints."""
    cur, prev = AT - 2 * HOUR, AT - DAY - 2 * HOUR
    events = [
        # current window: checkout nps [10, 9, 3], web channel; support nps [8, 0], phone channel
        event("n1", "survey_answer", cur, "c1", survey="nps", score=10, touchpoint="checkout", channel="web"),
        event(
            "n2", "survey_answer", cur + 1, "c2", survey="nps", score=9, touchpoint="checkout", channel="web"
        ),
        event(
            "n3", "survey_answer", cur + 2, "c3", survey="nps", score=3, touchpoint="checkout", channel="web"
        ),
        event(
            "n4", "survey_answer", cur + 3, "c4", survey="nps", score=8, touchpoint="support", channel="phone"
        ),
        event(
            "n5", "survey_answer", cur + 4, "c5", survey="nps", score=0, touchpoint="support", channel="phone"
        ),
        event("s1", "survey_answer", cur, "c1", survey="csat", score=5, touchpoint="checkout"),
        event("s2", "survey_answer", cur, "c2", survey="csat", score=2, touchpoint="checkout"),
        # previous window only: an nps promoter at "onboarding" (not a group of the current window)
        event("p1", "survey_answer", prev, "c6", survey="nps", score=10, touchpoint="onboarding"),
        event("p2", "survey_answer", prev, "c7", survey="nps", score=9, touchpoint="checkout"),
        # exactly at AT: not part of a reading as of AT (window is [at − window, at))
        event("late", "survey_answer", AT, "c8", survey="nps", score=0, touchpoint="checkout"),
    ]
    response = client.post("/v1/events", json=events)
    assert response.status_code == 202 and response.json()["accepted"] == len(events), response.text
    return client


def get_ok(client: TestClient, path: str, **params: str) -> dict[str, Any]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_error(response: Response, status: int, code: str, field: str | None = None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    error = body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and len(error["message"]) > 10
    assert isinstance(error["details"], list)
    if field is not None:
        assert [d["field"] for d in error["details"]] == [field]
    message: str = error["message"]
    return message


def assert_reading_shape(reading: dict[str, Any]) -> None:
    assert set(reading) >= READING_KEYS
    assert set(reading["previous"]) >= {"value", "n"}
    assert isinstance(reading["n"], int)
    if reading["value"] is None:
        assert reading["delta"] is None and reading["significant"] is None
    if reading["ci"] is not None:
        lo, hi = reading["ci"]
        assert lo <= reading["value"] <= hi


# ------------------------------------------------------------------------------------------------- pulse


def test_pulse_defaults_are_all_metrics_24h_and_now(client: TestClient) -> None:
    before = time.time()
    body = get_ok(client, "/v1/pulse")
    assert set(body) == {"at", "window", "filters", "readings"}
    assert body["window"] == "24h"
    assert body["filters"] == {}
    assert list(body["readings"]) == list(METRICS)
    at = datetime.fromisoformat(body["at"]).timestamp()
    assert body["at"].endswith("Z")
    assert before - 1 <= at <= time.time() + 1
    for reading in body["readings"].values():
        assert_reading_shape(reading)
        assert reading["value"] is None  # no data yet: null, never 0 and never an error
        assert reading["n"] == 0


def test_pulse_readings_with_previous_delta_and_significance(loaded: TestClient) -> None:
    body = get_ok(loaded, "/v1/pulse", metrics="nps,csat", window="24h", at=iso(AT))
    assert body["at"] == "2026-11-01T00:00:00.000Z"
    assert (body["window"], body["filters"]) == ("24h", {})
    assert list(body["readings"]) == ["nps", "csat"]
    nps = body["readings"]["nps"]
    assert_reading_shape(nps)
    assert (nps["n"], nps["promoters"], nps["detractors"], nps["passives"]) == (5, 2, 2, 1)
    assert nps["value"] == 0.0
    assert nps["previous"] == {"value": 100.0, "n": 2}
    assert nps["delta"] == -100.0
    assert isinstance(nps["significant"], bool)
    assert len(nps["ci"]) == 2 and nps["ci"][0] < 0 < nps["ci"][1]
    csat = body["readings"]["csat"]
    assert (csat["value"], csat["n"], csat["previous"], csat["delta"]) == (
        50.0,
        2,
        {"value": None, "n": 0},
        None,
    )
    assert csat["significant"] is None  # one side is empty


def test_pulse_metrics_order_follows_the_request(loaded: TestClient) -> None:
    body = get_ok(loaded, "/v1/pulse", metrics="csat, nps,ces", at=iso(AT))
    assert list(body["readings"]) == ["csat", "nps", "ces"]
    assert body["readings"]["ces"]["value"] is None


def test_pulse_at_is_normalized_to_utc(loaded: TestClient) -> None:
    body = get_ok(loaded, "/v1/pulse", metrics="nps", at="2026-11-01T01:00:00+01:00")
    assert body["at"] == "2026-11-01T00:00:00.000Z"
    assert body["readings"]["nps"]["n"] == 5


def test_pulse_window_is_half_open_in_event_time(loaded: TestClient) -> None:
    assert get_ok(loaded, "/v1/pulse", metrics="nps", at=iso(AT + 1))["readings"]["nps"]["n"] == 6
    short = get_ok(loaded, "/v1/pulse", metrics="nps", window="2h", at=iso(AT))
    assert short["window"] == "2h"
    assert short["readings"]["nps"]["n"] == 5  # events at AT − 2h are inside [AT − 2h, AT)
    assert get_ok(loaded, "/v1/pulse", metrics="nps", window="7200s", at=iso(AT))["readings"]["nps"]["n"] == 5
    shorter = get_ok(loaded, "/v1/pulse", metrics="nps", window="119m", at=iso(AT))
    assert shorter["readings"]["nps"]["n"] == 0
    assert get_ok(loaded, "/v1/pulse", metrics="nps", window="400d", at=iso(AT))["readings"]["nps"]["n"] == 7


def test_pulse_filters_select_and_are_echoed(loaded: TestClient) -> None:
    body = get_ok(loaded, "/v1/pulse", metrics="nps", at=iso(AT), touchpoint="checkout", channel="web")
    assert body["filters"] == {"touchpoint": "checkout", "channel": "web"}
    nps = body["readings"]["nps"]
    assert (nps["n"], nps["value"]) == (3, pytest.approx(100 / 3))
    assert nps["previous"] == {"value": None, "n": 0}  # p2 is at checkout but on the default channel
    only_touchpoint = get_ok(loaded, "/v1/pulse", metrics="nps", at=iso(AT), touchpoint="checkout")
    assert only_touchpoint["readings"]["nps"]["previous"] == {"value": 100.0, "n": 1}
    none = get_ok(loaded, "/v1/pulse", metrics="nps", at=iso(AT), segment="enterprise")
    assert none["readings"]["nps"]["value"] is None and none["readings"]["nps"]["n"] == 0


def test_pulse_empty_filter_values_mean_no_filter(loaded: TestClient) -> None:
    body = get_ok(loaded, "/v1/pulse", metrics="nps", at=iso(AT), touchpoint="", channel="", segment="")
    assert body["filters"] == {}
    assert body["readings"]["nps"]["n"] == 5


def test_pulse_fixed_window_metrics_ignore_window(loaded: TestClient) -> None:
    a = get_ok(loaded, "/v1/pulse", metrics="dau,mau,stickiness", window="1h", at=iso(AT))["readings"]
    b = get_ok(loaded, "/v1/pulse", metrics="dau,mau,stickiness", window="30d", at=iso(AT))["readings"]
    assert a == b
    assert (a["dau"]["value"], a["mau"]["value"]) == (5, 7)
    assert a["stickiness"]["value"] == pytest.approx(100 * 5 / 7)


# --------------------------------------------------------------------------------------------- breakdown


def test_breakdown_shape_and_groups_equal_filtered_pulse(loaded: TestClient) -> None:
    body = get_ok(loaded, "/v1/pulse/nps/breakdown", by="touchpoint", window="24h", at=iso(AT))
    assert set(body) == {"metric", "by", "window", "at", "groups"}
    assert (body["metric"], body["by"], body["window"], body["at"]) == (
        "nps",
        "touchpoint",
        "24h",
        "2026-11-01T00:00:00.000Z",
    )
    assert set(body["groups"]) == {"checkout", "support"}  # "onboarding" only in the previous window
    for group, reading in body["groups"].items():
        assert_reading_shape(reading)
        pulse = get_ok(loaded, "/v1/pulse", metrics="nps", at=iso(AT), touchpoint=group)
        assert reading == pulse["readings"]["nps"]
    assert body["groups"]["support"]["value"] == -50.0


def test_breakdown_by_channel_with_a_filter(loaded: TestClient) -> None:
    body = get_ok(loaded, "/v1/pulse/csat/breakdown", by="channel", at=iso(AT), touchpoint="checkout")
    assert list(body["groups"]) == ["unknown"]  # default channel
    assert (body["groups"]["unknown"]["value"], body["groups"]["unknown"]["n"]) == (50.0, 2)


def test_breakdown_of_an_empty_window_has_no_groups(client: TestClient) -> None:
    body = get_ok(client, "/v1/pulse/nps/breakdown", by="segment")
    assert body["groups"] == {} and body["window"] == "24h"


# ------------------------------------------------------------------------------------------------ series


def test_series_shape_and_points_equal_pulse_readings(loaded: TestClient) -> None:
    body = get_ok(loaded, "/v1/series/nps", **{"from": iso(AT - 2 * DAY), "to": iso(AT), "step": "1d"})
    assert set(body) == {"metric", "step", "points"}
    assert (body["metric"], body["step"]) == ("nps", "1d")
    points = body["points"]
    assert [(p["start"], p["end"]) for p in points] == [
        ("2026-10-30T00:00:00.000Z", "2026-10-31T00:00:00.000Z"),
        ("2026-10-31T00:00:00.000Z", "2026-11-01T00:00:00.000Z"),
    ]
    for p in points:
        pulse = get_ok(loaded, "/v1/pulse", metrics="nps", window="1d", at=p["end"])["readings"]["nps"]
        assert {k: v for k, v in p.items() if k not in ("start", "end")} == pulse
    assert [p["n"] for p in points] == [2, 5]


def test_series_defaults_to_24_steps_ending_at_to(loaded: TestClient) -> None:
    points = get_ok(loaded, "/v1/series/nps", to=iso(AT))["points"]
    assert len(points) == 24
    assert points[-1]["end"] == "2026-11-01T00:00:00.000Z"
    assert points[0]["start"] == "2026-10-31T00:00:00.000Z"
    assert sum(p["n"] for p in points) == 5
    assert get_ok(loaded, "/v1/series/nps")["step"] == "1h"


def test_series_with_filters_and_exactly_5000_points(loaded: TestClient) -> None:
    params = {"from": iso(AT - 5000 * 60_000), "to": iso(AT), "step": "1m", "touchpoint": "support"}
    points = get_ok(loaded, "/v1/series/nps", **params)["points"]
    assert len(points) == 5000
    assert sum(p["n"] for p in points) == 2


# ---------------------------------------------------------------------------------------------- 4xx


def test_unknown_metric_in_metrics_is_400(client: TestClient) -> None:
    message = assert_error(
        client.get("/v1/pulse", params={"metrics": "nps,happiness"}), 400, "invalid_parameter", "metrics"
    )
    assert "happiness" in message and "nps" in message and "referral_rate" in message


@pytest.mark.parametrize("path", ["/v1/pulse/happiness/breakdown?by=channel", "/v1/series/happiness"])
def test_unknown_metric_in_the_path_is_404(client: TestClient, path: str) -> None:
    message = assert_error(client.get(path), 404, "unknown_metric")
    assert "'happiness'" in message and "known: nps" in message


@pytest.mark.parametrize("window", ["7x", "0h", "401d", "1.5h", "-1h", "24", "h", "24 h"])
@pytest.mark.parametrize("path", ["/v1/pulse", "/v1/pulse/nps/breakdown"])
def test_bad_window_is_400(client: TestClient, path: str, window: str) -> None:
    message = assert_error(
        client.get(path, params={"by": "channel", "window": window}), 400, "invalid_parameter", "window"
    )
    assert "400d" in message if window == "401d" else "integer followed by s, m, h or d" in message


@pytest.mark.parametrize("at", ["yesterday", "2026-11-01T00:00:00", "2026-11-01", "1793491200000"])
@pytest.mark.parametrize("path", ["/v1/pulse", "/v1/pulse/nps/breakdown"])
def test_at_not_a_timestamp_is_400(client: TestClient, path: str, at: str) -> None:
    message = assert_error(
        client.get(path, params={"by": "channel", "at": at}), 400, "invalid_parameter", "at"
    )
    assert "RFC 3339" in message and at in message


def test_unknown_by_is_400(client: TestClient) -> None:
    message = assert_error(
        client.get("/v1/pulse/nps/breakdown", params={"by": "region"}), 400, "invalid_parameter", "by"
    )
    assert "touchpoint, channel, segment" in message and "region" in message


def test_missing_by_is_400(client: TestClient) -> None:
    assert_error(client.get("/v1/pulse/nps/breakdown"), 400, "invalid_request", "by")


@pytest.mark.parametrize(
    ("name", "value"),
    [("touchpoint", "Checkout"), ("channel", "live chat"), ("segment", "s" * 65), ("channel", "web;drop")],
)
@pytest.mark.parametrize("path", ["/v1/pulse", "/v1/pulse/nps/breakdown", "/v1/series/nps"])
def test_bad_filter_value_is_400(client: TestClient, path: str, name: str, value: str) -> None:
    message = assert_error(
        client.get(path, params={"by": "channel", name: value}), 400, "invalid_parameter", name
    )
    assert "a-z, 0-9" in message


def test_series_over_5000_points_is_400_that_says_so(client: TestClient) -> None:
    params = {"from": iso(AT - 5001 * 60_000), "to": iso(AT), "step": "1m"}
    message = assert_error(client.get("/v1/series/nps", params=params), 400, "invalid_parameter", "from")
    assert "5001 points" in message and "at most 5000" in message and "larger step" in message


@pytest.mark.parametrize("offset", [0, -HOUR])
def test_series_to_not_after_from_is_400(client: TestClient, offset: int) -> None:
    params = {"from": iso(AT), "to": iso(AT + offset)}
    message = assert_error(client.get("/v1/series/nps", params=params), 400, "invalid_parameter", "from")
    assert "'to' must be later than 'from'" in message


@pytest.mark.parametrize(
    ("name", "value"), [("from", "last week"), ("to", "2026-11-01T00:00"), ("step", "0h")]
)
def test_series_bad_parameters_are_400(client: TestClient, name: str, value: str) -> None:
    assert_error(client.get("/v1/series/nps", params={name: value}), 400, "invalid_parameter", name)


# ------------------------------------------------------------------------------------ health and OpenAPI


def test_health_and_readiness(client: TestClient) -> None:
    assert get_ok(client, "/healthz") == {"status": "ok"}
    assert get_ok(client, "/readyz") == {"status": "ready"}


def test_docs_page_is_served(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "swagger" in response.text.lower() and "/openapi.json" in response.text


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_openapi_has_the_event_component_from_the_json_schema(client: TestClient) -> None:
    spec = get_ok(client, "/openapi.json")
    schemas = spec["components"]["schemas"]
    source = event_schema()
    component = schemas["Event"]
    assert set(component["properties"]) == set(source["properties"])
    assert component["required"] == source["required"]
    assert component["additionalProperties"] is False
    assert component["properties"]["type"]["enum"] == source["properties"]["type"]["enum"]
    assert component["allOf"] == source["allOf"]
    for ref in _refs(spec):  # every reference resolves inside the document
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref
    body = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/Event"}
    assert "application/x-ndjson" in body
    for path in ("/v1/pulse", "/v1/pulse/{metric}/breakdown", "/v1/series/{metric}", "/healthz", "/readyz"):
        assert "get" in spec["paths"][path], path


def test_pulse_empty_metrics_and_window_mean_the_defaults(loaded: TestClient) -> None:
    explicit = get_ok(loaded, "/v1/pulse", at=iso(ms(T0)))
    empty = get_ok(loaded, "/v1/pulse", metrics=",", window="", at=iso(ms(T0)))
    assert empty["window"] == "24h"
    assert list(empty["readings"]) == list(METRICS)
    assert empty["readings"] == explicit["readings"]
