"""Contract tests of `POST /v1/events` (SPEC §1, §3) through the real app on the embedded chDB engine."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from httpx import Response

from cxpulse.config import Settings
from services.embedded import EmbeddedRuntime
from tests.conftest import event, iso

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
Item = dict[str, Any]


@pytest.fixture
def client(runtime: EmbeddedRuntime, settings: Settings) -> TestClient:
    return TestClient(runtime.app(settings))


def now_ms() -> int:
    return int(time.time() * 1000)


def nps(event_id: str, score: int = 9, *, at: int | None = None, customer: str = "c1", **fields: Any) -> Item:
    at = now_ms() - HOUR if at is None else at
    return event(event_id, "survey_answer", at, customer, survey="nps", score=score, **fields)


def assert_error(response: Response, status: int, code: str) -> dict[str, Any]:
    """Every 4xx has the one error format: {"error": {"code", "message", "details"}}."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and len(error["message"]) > 10
    assert isinstance(error["details"], list)
    return error


def accepted(response: Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"accepted", "duplicates", "rejected"}
    return body


def nps_reading(client: TestClient) -> dict[str, Any]:
    """The NPS reading over the last 2 days as of a minute from now (covers every event these tests send)."""
    params = {"metrics": "nps", "window": "2d", "at": iso(now_ms() + 10 * MINUTE)}
    response = client.get("/v1/pulse", params=params)
    assert response.status_code == 200, response.text
    reading: dict[str, Any] = response.json()["readings"]["nps"]
    return reading


# ---------------------------------------------------------------------------------------------- body shapes


def test_single_object_is_accepted_and_counted(client: TestClient) -> None:
    body = accepted(client.post("/v1/events", json=nps("one", 10)))
    assert body == {"accepted": 1, "duplicates": 0, "rejected": []}
    reading = nps_reading(client)
    assert (reading["n"], reading["value"], reading["promoters"]) == (1, 100.0, 1)


def test_json_array_is_accepted(client: TestClient) -> None:
    events = [nps(f"a{i}", s, customer=f"c{i}") for i, s in enumerate([10, 9, 3, 7])]
    assert accepted(client.post("/v1/events", json=events)) == {
        "accepted": 4,
        "duplicates": 0,
        "rejected": [],
    }
    reading = nps_reading(client)
    assert (reading["n"], reading["promoters"], reading["detractors"], reading["value"]) == (4, 2, 1, 25.0)


@pytest.mark.parametrize("content_type", ["application/x-ndjson", "application/x-ndjson; charset=utf-8"])
def test_ndjson_is_accepted(client: TestClient, content_type: str) -> None:
    lines = [orjson.dumps(nps(f"n{i}", 9, customer=f"c{i}")) for i in range(3)]
    body = lines[0] + b"\n\n" + lines[1] + b"\r\n" + lines[2] + b"\n"  # blank line and CRLF are fine
    response = client.post("/v1/events", content=body, headers={"content-type": content_type})
    assert accepted(response) == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert nps_reading(client)["n"] == 3


def test_ndjson_rejected_item_reports_its_index(client: TestClient) -> None:
    items = [nps("ok0"), nps("bad1", 11), nps("ok2"), {"type": "login"}]
    body = b"\n".join(orjson.dumps(i) for i in items)
    response = client.post("/v1/events", content=body, headers={"content-type": "application/x-ndjson"})
    result = accepted(response)
    assert result["accepted"] == 2
    assert [r["index"] for r in result["rejected"]] == [1, 3]
    assert result["rejected"][0]["errors"] == [
        {"field": "score", "message": "must be from 0 to 10 for nps answers; got 11"}
    ]
    missing = {e["field"] for e in result["rejected"][1]["errors"]}
    assert missing == {"event_id", "occurred_at", "customer_id"}


def test_mixed_batch_accepts_the_valid_items_and_reports_each_rejected_one(client: TestClient) -> None:
    now = now_ms()
    batch: list[Any] = [
        nps("v0", 10),
        nps("x1", 12),  # score outside the scale
        event("v2", "login", now - HOUR, "c2"),
        {"event_id": "x3", "type": "teleport", "occurred_at": iso(now - HOUR), "customer_id": "c3"},
        "not an object",
        nps("x5", 9, occurred_at=iso(now + HOUR), touchpoint="Web Site"),  # two errors on one item
        event("v6", "support_contact", now - HOUR, "c6", case_id="k1"),
    ]
    result = accepted(client.post("/v1/events", json=batch))
    assert result["accepted"] == 3
    assert result["duplicates"] == 0
    by_index = {r["index"]: r["errors"] for r in result["rejected"]}
    assert sorted(by_index) == [1, 3, 4, 5]
    assert [e["field"] for e in by_index[1]] == ["score"]
    assert [e["field"] for e in by_index[3]] == ["type"]
    assert "teleport" in by_index[3][0]["message"] and "survey_answer" in by_index[3][0]["message"]
    assert by_index[4] == [
        {"field": "(root)", "message": "must be of type object; got string 'not an object'"}
    ]
    # Schema errors are reported first (all of them); time bounds only once the schema holds.
    assert [e["field"] for e in by_index[5]] == ["touchpoint"]
    for errors in by_index.values():
        for error in errors:
            assert set(error) == {"field", "message"} and error["message"]
    assert nps_reading(client)["n"] == 1


# ---------------------------------------------------------------------------------------- rejection rules

Mutation = Callable[[Item], None]


def _set(**fields: Any) -> Mutation:
    def apply(item: Item) -> None:
        item.update(fields)

    return apply


def _drop(name: str) -> Mutation:
    def apply(item: Item) -> None:
        del item[name]

    return apply


def _at(offset_ms: int) -> Mutation:
    def apply(item: Item) -> None:
        item["occurred_at"] = iso(now_ms() + offset_ms)

    return apply


def _support(item: Item) -> None:
    item.update(type="support_contact", case_id="k1")
    del item["survey"], item["score"]


def _support_without_case(item: Item) -> None:
    _support(item)
    del item["case_id"]


def _support_with_long_case(item: Item) -> None:
    _support(item)
    item["case_id"] = "k" * 129


def _as_type(type_: str, **fields: Any) -> Mutation:
    def apply(item: Item) -> None:
        del item["survey"], item["score"]
        item.update(type=type_, **fields)

    return apply


REJECTIONS: list[tuple[str, Mutation, str, str]] = [
    # missing required fields
    ("missing event_id", _drop("event_id"), "event_id", "is required"),
    ("missing type", _drop("type"), "type", "is required"),
    ("missing occurred_at", _drop("occurred_at"), "occurred_at", "is required"),
    ("missing customer_id", _drop("customer_id"), "customer_id", "is required"),
    ("missing score", _drop("score"), "score", "is required"),
    ("missing survey", _drop("survey"), "survey", "is required"),
    ("missing case_id", _support_without_case, "case_id", "is required"),
    # wrong types
    ("score as string", _set(score="9"), "score", "must be of type integer; got string '9'"),
    ("score as bool", _set(score=True), "score", "must be of type integer"),
    ("score as fraction", _set(score=8.5), "score", "must be of type integer"),
    ("customer_id as number", _set(customer_id=42), "customer_id", "must be of type string"),
    ("properties as array", _set(properties=[1, 2]), "properties", "must be of type object"),
    ("comment as null", _set(comment=None), "comment", "must be of type string; got null"),
    ("referral as string", _as_type("purchase", referral="yes"), "referral", "must be of type boolean"),
    ("amount as string", _as_type("purchase", amount="10"), "amount", "must be of type number"),
    ("trial_days fraction", _as_type("trial_start", trial_days=1.5), "trial_days", "must be of type integer"),
    # scores outside their scale
    ("nps above 10", _set(score=11), "score", "must be from 0 to 10 for nps answers; got 11"),
    ("nps below 0", _set(score=-1), "score", "must be from 0 to 10 for nps answers; got -1"),
    ("csat 1-5 above", _set(survey="csat", score=6), "score", 'from 1 to 5 for csat answers (send "scale"'),
    ("csat 1-5 below", _set(survey="csat", score=0), "score", "from 1 to 5 for csat"),
    ("csat 1-5 explicit", _set(survey="csat", scale="1-5", score=7), "score", "from 1 to 5 for csat"),
    ("csat 1-7 above", _set(survey="csat", scale="1-7", score=8), "score", "from 1 to 7 for csat answers"),
    ("ces above 7", _set(survey="ces", score=8), "score", "must be from 1 to 7 for ces answers; got 8"),
    ("ces below 1", _set(survey="ces", score=0), "score", "must be from 1 to 7 for ces answers; got 0"),
    ("unknown scale", _set(survey="csat", scale="1-10", score=3), "scale", "must be one of 1-5, 1-7"),
    ("unknown survey", _set(survey="ltr"), "survey", "must be one of nps, csat, ces; got 'ltr'"),
    # unknown type
    ("unknown type", _set(type="refund"), "type", "must be one of survey_answer, purchase"),
    # time bounds
    ("future > 5 min", _at(6 * MINUTE), "occurred_at", "more than 5 minutes in the future"),
    ("older than retention", _at(-401 * DAY), "occurred_at", "older than the retention of 400 days"),
    ("no offset", _set(occurred_at="2026-11-20T08:00:00"), "occurred_at", "with an offset"),
    ("not a date", _set(occurred_at="yesterday"), "occurred_at", "RFC 3339 timestamp"),
    ("impossible date", _set(occurred_at="2026-02-30T08:00:00Z"), "occurred_at", "not a valid RFC 3339"),
    # string limits
    ("event_id too long", _set(event_id="e" * 129), "event_id", "longer than 128 characters"),
    ("event_id empty", _set(event_id=""), "event_id", "at least 1 character"),
    ("customer_id too long", _set(customer_id="c" * 129), "customer_id", "longer than 128 characters"),
    ("touchpoint too long", _set(touchpoint="t" * 65), "touchpoint", "longer than 64 characters"),
    ("touchpoint uppercase", _set(touchpoint="Checkout"), "touchpoint", "must be lowercase a-z"),
    ("channel with space", _set(channel="live chat"), "channel", "must be lowercase a-z"),
    ("segment empty", _set(segment=""), "segment", "at least 1 character"),
    ("comment too long", _set(comment="x" * 2001), "comment", "longer than 2000 characters"),
    ("case_id too long", _support_with_long_case, "case_id", "longer than 128 characters"),
    ("plan too long", _as_type("subscription_start", plan="p" * 65), "plan", "longer than 64 characters"),
    ("reason too long", _as_type("subscription_cancel", reason="r" * 2001), "reason", "longer than 2000"),
    ("currency lowercase", _as_type("purchase", currency="eur"), "currency", "ISO 4217"),
    # other value rules
    ("negative amount", _as_type("purchase", amount=-1), "amount", "must be at least 0; got -1"),
    ("trial_days 0", _as_type("trial_start", trial_days=0), "trial_days", "must be at least 1; got 0"),
    ("trial_days 366", _as_type("trial_start", trial_days=366), "trial_days", "must be at most 365; got 366"),
    # unknown fields and fields of another type
    ("unknown field", _set(utm_source="ads"), "utm_source", "put custom data in 'properties'"),
    ("case_id on a survey", _set(case_id="k1"), "case_id", "is not a field of 'survey_answer' events"),
    ("score on a login", _as_type("login", score=3), "score", "is not a field of 'login' events"),
    ("scale on nps", _set(scale="1-7"), "scale", "only applies to csat answers"),
    ("scale on ces", _set(survey="ces", score=2, scale="1-7"), "scale", "only applies to csat answers"),
    ("plan on purchase", _as_type("purchase", plan="pro"), "plan", "is not a field of 'purchase' events"),
    # properties size
    ("properties > 8 KiB", _set(properties={"blob": "x" * 8200}), "properties", "larger than 8192 bytes"),
]


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [pytest.param(m, f, msg, id=name) for name, m, f, msg in REJECTIONS],
)
def test_each_rejection_rule_names_the_field_and_the_fix(
    client: TestClient, mutate: Mutation, field: str, message: str
) -> None:
    bad = nps("bad", 9)
    mutate(bad)
    result = accepted(client.post("/v1/events", json=[nps("good", 9), bad]))
    assert result["accepted"] == 1
    assert len(result["rejected"]) == 1
    rejected = result["rejected"][0]
    assert rejected["index"] == 1
    fields = [e["field"] for e in rejected["errors"]]
    assert fields == [field], rejected
    assert message in rejected["errors"][0]["message"], rejected
    assert nps_reading(client)["n"] == 1


def test_an_item_that_breaks_several_rules_gets_one_error_per_field(client: TestClient) -> None:
    bad = {"event_id": "", "type": "survey_answer", "occurred_at": "now", "survey": "nps", "score": 42}
    result = accepted(client.post("/v1/events", json=[nps("good"), bad]))
    errors = {e["field"]: e["message"] for e in result["rejected"][0]["errors"]}
    assert set(errors) == {"event_id", "occurred_at", "customer_id", "score"}
    assert errors["customer_id"] == "is required"


VALID_EDGES: list[tuple[str, Mutation]] = [
    ("nps 0", _set(score=0)),
    ("nps 10", _set(score=10)),
    ("nps 9.0 is an integer", _set(score=9.0)),
    ("csat 1", _set(survey="csat", score=1)),
    ("csat 5", _set(survey="csat", score=5)),
    ("csat 7 on 1-7", _set(survey="csat", scale="1-7", score=7)),
    ("ces 1", _set(survey="ces", score=1)),
    ("ces 7", _set(survey="ces", score=7)),
    ("4 min in the future", _at(4 * MINUTE)),
    ("399 days old", _at(-399 * DAY)),
    ("offset +05:30", _set(occurred_at="2026-11-20T13:30:00.123+05:30")),
    ("nanoseconds", _set(occurred_at="2026-11-20T08:00:00.123456789Z")),
    ("limits", _set(event_id="e" * 128, customer_id="c" * 128, touchpoint="t" * 64, comment="x" * 2000)),
    ("dimension charset", _set(touchpoint="web.v2_checkout-1", channel="web", segment="eu")),
    ("properties exactly 8 KiB", _set(properties={"b": "x" * (8192 - len('{"b":""}'))})),
    ("unicode comment", _set(comment="très facile 👍" * 100)),
    ("purchase fields", _as_type("purchase", order_id="o1", amount=0, currency="EUR", referrer_id="c9")),
    ("trial fields", _as_type("trial_start", trial_days=365, plan="pro")),
    ("cancel reason", _as_type("subscription_cancel", reason="too expensive")),
    ("support", _support),
]


@pytest.mark.parametrize("mutate", [pytest.param(m, id=name) for name, m in VALID_EDGES])
def test_values_at_the_limits_are_accepted(client: TestClient, mutate: Mutation) -> None:
    item = nps("edge", 9)
    mutate(item)
    assert accepted(client.post("/v1/events", json=item)) == {"accepted": 1, "duplicates": 0, "rejected": []}


def test_an_explicit_nps_score_of_9_0_counts_as_a_promoter(client: TestClient) -> None:
    accepted(client.post("/v1/events", json=nps("float") | {"score": 9.0}))
    reading = nps_reading(client)
    assert (reading["n"], reading["promoters"]) == (1, 1)


def test_retention_follows_the_setting(runtime: EmbeddedRuntime, settings: Settings) -> None:
    short = settings.model_copy(update={"retention_days": 30})
    client = TestClient(runtime.app(short))
    result = accepted(client.post("/v1/events", json=[nps("recent", at=now_ms() - 29 * DAY), nps("old")]))
    assert result["accepted"] == 2
    old = nps("older", at=now_ms() - 31 * DAY)
    error = assert_error(client.post("/v1/events", json=old), 422, "invalid_events")
    assert error["details"][0]["errors"][0]["message"] == "is older than the retention of 30 days"


# ---------------------------------------------------------------------------------------------- duplicates


def test_duplicates_within_a_batch_count_once_and_the_first_wins(client: TestClient) -> None:
    batch = [nps("d1", 10), nps("d1", 0), nps("d2", 10, customer="c2"), nps("d1", 3)]
    assert accepted(client.post("/v1/events", json=batch)) == {"accepted": 2, "duplicates": 2, "rejected": []}
    reading = nps_reading(client)
    assert (reading["n"], reading["promoters"], reading["detractors"]) == (2, 2, 0)


def test_duplicates_across_requests_count_once(client: TestClient) -> None:
    assert accepted(client.post("/v1/events", json=[nps("r1", 10), nps("r2", 10)]))["accepted"] == 2
    again = accepted(client.post("/v1/events", json=[nps("r2", 0), nps("r1", 0), nps("r3", 0)]))
    assert (again["accepted"], again["duplicates"]) == (1, 2)
    assert accepted(client.post("/v1/events", json=nps("r3", 10))) == {
        "accepted": 0,
        "duplicates": 1,
        "rejected": [],
    }
    reading = nps_reading(client)
    assert (reading["n"], reading["promoters"], reading["detractors"]) == (3, 2, 1)


def test_duplicate_ids_across_event_types_still_count_once(client: TestClient) -> None:
    first = accepted(client.post("/v1/events", json=nps("same-id", 10)))
    login = event("same-id", "login", now_ms() - HOUR, "c7")
    second = accepted(client.post("/v1/events", json=login))
    assert (first["accepted"], second["accepted"], second["duplicates"]) == (1, 0, 1)
    response = client.get(
        "/v1/pulse", params={"metrics": "active_customers", "window": "2d", "at": iso(now_ms() + MINUTE)}
    )
    assert response.json()["readings"]["active_customers"]["value"] == 1


def test_rejected_items_are_not_counted_as_duplicates(client: TestClient) -> None:
    accepted(client.post("/v1/events", json=nps("z1")))
    result = accepted(client.post("/v1/events", json=[nps("z1"), nps("z1", 11), nps("z2")]))
    assert (result["accepted"], result["duplicates"], [r["index"] for r in result["rejected"]]) == (1, 1, [1])


# ----------------------------------------------------------------------------------------- malformed → 400


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        pytest.param(b'{"event_id": "x",', "application/json", "not valid JSON", id="truncated-json"),
        pytest.param(b"{'event_id': 'x'}", "application/json", "not valid JSON", id="single-quotes"),
        pytest.param(b"", "application/json", "empty", id="empty-body"),
        pytest.param(b"  \n\t ", "application/json", "empty", id="blank-body"),
        pytest.param(b"\n\n", "application/x-ndjson", "empty", id="blank-ndjson"),
        pytest.param(b"42", "application/json", "event object, a JSON array", id="number"),
        pytest.param(b'"event"', "application/json", "event object, a JSON array", id="string"),
        pytest.param(b"null", "application/json", "event object, a JSON array", id="null"),
        pytest.param(b"true", "application/json", "event object, a JSON array", id="bool"),
        pytest.param(b"[]", "application/json", "array is empty", id="empty-array"),
        pytest.param(b'{"a": 1}\n{"b": 2}', "application/json", "application/x-ndjson", id="ndjson-as-json"),
        pytest.param(b"\xff\xfe{}", "application/json", "not valid JSON", id="not-utf8"),
    ],
)
def test_malformed_body_is_400(client: TestClient, body: bytes, content_type: str, message: str) -> None:
    response = client.post("/v1/events", content=body, headers={"content-type": content_type})
    error = assert_error(response, 400, "malformed_body")
    assert message in error["message"]


def test_bad_ndjson_line_is_400_naming_the_line(client: TestClient) -> None:
    body = orjson.dumps(nps("l1")) + b"\n{not json}\n" + orjson.dumps(nps("l3"))
    response = client.post("/v1/events", content=body, headers={"content-type": "application/x-ndjson"})
    error = assert_error(response, 400, "malformed_body")
    assert "line 2 is not valid JSON" in error["message"]
    assert nps_reading(client)["n"] == 0  # nothing of a malformed body is stored


# ---------------------------------------------------------------------------------------- too large → 413


def test_more_than_10000_items_is_413(client: TestClient) -> None:
    items = [nps(f"big{i}", customer=f"c{i}") for i in range(10_001)]
    error = assert_error(client.post("/v1/events", json=items), 413, "payload_too_large")
    assert "at most 10000 events" in error["message"] and "10001" in error["message"]
    assert nps_reading(client)["n"] == 0


def test_exactly_10000_items_are_accepted(client: TestClient) -> None:
    now = now_ms()
    items = [nps(f"max{i}", i % 11, at=now - HOUR - i, customer=f"c{i}") for i in range(10_000)]
    body = b"\n".join(orjson.dumps(i) for i in items)
    response = client.post("/v1/events", content=body, headers={"content-type": "application/x-ndjson"})
    assert accepted(response) == {"accepted": 10_000, "duplicates": 0, "rejected": []}
    assert nps_reading(client)["n"] == 10_000


@pytest.fixture
def small_client(runtime: EmbeddedRuntime, settings: Settings) -> TestClient:
    small = settings.model_copy(update={"max_body_bytes": 2048})
    return TestClient(runtime.app(small))


def test_body_over_the_byte_limit_is_413(small_client: TestClient) -> None:
    events = [nps(f"s{i}", customer=f"c{i}") for i in range(30)]
    body = orjson.dumps(events)
    assert len(body) > 2048
    response = small_client.post("/v1/events", content=body, headers={"content-type": "application/json"})
    error = assert_error(response, 413, "payload_too_large")
    assert "larger than 2048 bytes" in error["message"]


def test_streamed_body_over_the_byte_limit_is_413(small_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        for i in range(40):
            yield orjson.dumps(nps(f"st{i}")) + b"\n"

    response = small_client.post(
        "/v1/events", content=chunks(), headers={"content-type": "application/x-ndjson"}
    )
    assert_error(response, 413, "payload_too_large")


def test_body_under_the_byte_limit_is_accepted(small_client: TestClient) -> None:
    body = orjson.dumps([nps("u1"), nps("u2", customer="c2")])
    assert len(body) <= 2048
    response = small_client.post("/v1/events", content=body, headers={"content-type": "application/json"})
    assert accepted(response)["accepted"] == 2


# ------------------------------------------------------------------------------------ nothing valid → 422


def test_nothing_valid_is_422_with_every_rejection_in_details(client: TestClient) -> None:
    batch = [nps("a", 11), {"event_id": "b"}, nps("c", 9, touchpoint="UPPER")]
    error = assert_error(client.post("/v1/events", json=batch), 422, "invalid_events")
    assert "none of the 3" in error["message"]
    assert [d["index"] for d in error["details"]] == [0, 1, 2]
    assert error["details"][0]["errors"] == [
        {"field": "score", "message": "must be from 0 to 10 for nps answers; got 11"}
    ]
    assert {e["field"] for e in error["details"][1]["errors"]} == {"type", "occurred_at", "customer_id"}
    assert nps_reading(client)["n"] == 0


def test_single_invalid_object_is_422(client: TestClient) -> None:
    error = assert_error(client.post("/v1/events", json=nps("x", 9, extra=1)), 422, "invalid_events")
    assert error["details"] == [
        {
            "index": 0,
            "errors": [
                {"field": "extra", "message": "is not an event field; put custom data in 'properties'"}
            ],
        }
    ]


# ------------------------------------------------------------------------------------------- error format


def test_other_4xx_use_the_error_format_too(client: TestClient) -> None:
    assert_error(client.get("/v1/events"), 405, "method_not_allowed")
    assert_error(client.post("/v1/nothing-here", json={}), 404, "not_found")
