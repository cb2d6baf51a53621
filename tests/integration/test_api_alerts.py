"""The alert endpoints (SPEC §4) over the embedded service on chDB: the rules collection, 422 naming every
bad field, 404 for unknown ids, secrets masked everywhere, states, transitions and notifications."""

from __future__ import annotations

import base64
import copy
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cxpulse.config import Settings
from cxpulse.domain.alerts.rules.targets import mask_secret, mask_url
from cxpulse.domain.windows import iso_ms
from services.embedded import EmbeddedRuntime
from tests.conftest import event

SECRET = "whsec_" + base64.b64encode(b"a-secret-of-thirty-two-bytes-!!!").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-secret-thirty-two-bytes!").decode()
HOOK = "https://hooks.example/cx"
METRIC_RULE: dict[str, Any] = {
    "name": "Checkout NPS falling",
    "metric": "nps",
    "window": "1h",
    "filters": {"touchpoint": "checkout"},
    "condition": {"op": "below", "threshold": 20},
    "recover": 25,
    "min_samples": 10,
    "for": "0s",
    "severity": "critical",
    "notify": [{"type": "webhook", "url": HOOK, "secret": SECRET}, {"type": "slack", "url": HOOK + "/slack"}],
}
RESPONSE_RULE: dict[str, Any] = {
    "type": "response",
    "name": "Call detractors",
    "survey": "nps",
    "filters": {"touchpoint": "checkout"},
    "notify": [{"type": "webhook", "url": HOOK, "secret": SECRET}],
}


@pytest.fixture
def client(runtime: EmbeddedRuntime, settings: Settings) -> TestClient:
    return TestClient(runtime.app(settings))


def create(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/alert-rules", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def with_(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of the metric rule with `path` (dotted, `[i]` for list items) set; `...` deletes it."""
    body = copy.deepcopy(base or METRIC_RULE)
    keys: list[Any] = []
    for part in path.split("."):
        name, _, index = part.partition("[")
        keys.append(name)
        if index:
            keys.append(int(index.rstrip("]")))
    holder: Any = body
    for key in keys[:-1]:
        holder = holder[key]
    if value is ...:
        del holder[keys[-1]]
    else:
        holder[keys[-1]] = value
    return body


# ----------------------------------------------------------------------------------------------- rules


def test_create_answers_201_with_the_rule_its_id_and_state(client: TestClient) -> None:
    created = create(client, METRIC_RULE)
    assert created["id"].startswith("rule_") and created["state"] == "ok" and created["type"] == "metric"
    assert created["for"] == "0s" and created["keep_firing_for"] == "0s" and created["enabled"] is True
    assert created["notify"][0] == {"type": "webhook", "url": HOOK, "secret": mask_secret(SECRET)}
    assert created["notify"][1] == {"type": "slack", "url": mask_url(HOOK + "/slack"), "secret": None}
    response = create(client, RESPONSE_RULE)
    assert response["type"] == "response" and response["state"] is None and response["cooldown"] == "7d"
    listed = client.get("/v1/alert-rules").json()["rules"]
    assert {r["id"] for r in listed} == {created["id"], response["id"]}
    assert client.get(f"/v1/alert-rules/{created['id']}").json() == created


def test_a_client_chosen_id_is_kept_and_taken_ids_conflict(client: TestClient) -> None:
    assert create(client, METRIC_RULE | {"id": "checkout-nps"})["id"] == "checkout-nps"
    again = client.post("/v1/alert-rules", json=METRIC_RULE | {"id": "checkout-nps"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "rule_exists"
    bad = client.post("/v1/alert-rules", json=METRIC_RULE | {"id": "has space"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "id"


INVALID_METRIC = [
    ("type", "alarm"),
    ("name", ...),
    ("name", ""),
    ("metric", "happiness"),
    ("metric", ...),
    ("window", "24 hours"),
    ("window", "500d"),
    ("filters", "checkout"),
    ("filters.touchpoint", "Check Out"),
    ("filters.region", "eu"),
    ("condition", ...),
    ("condition", "below 20"),
    ("condition.op", "under"),
    ("condition.threshold", ...),
    ("condition.threshold", "twenty"),
    ("condition.by", 5),
    ("recover", 10),
    ("recover", "high"),
    ("confidence", "yes"),
    ("min_samples", 0),
    ("min_samples", 2.5),
    ("for", "5 minutes"),
    ("keep_firing_for", -1),
    ("severity", "page"),
    ("notify", {"url": HOOK}),
    ("notify[0]", "https://x.example"),
    ("notify[0].type", "email"),
    ("notify[0].url", "ftp://hooks.example/x"),
    ("notify[0].url", "not a url"),
    ("notify[0].url", ...),
    ("notify[0].secret", "short"),
    ("notify[1].secret", SECRET),
    ("notify[0].extra", 1),
    ("enabled", "no"),
    ("owner", "me"),
]


@pytest.mark.parametrize(("path", "value"), INVALID_METRIC, ids=[f"{p}={v!r}" for p, v in INVALID_METRIC])
def test_every_invalid_metric_rule_field_is_a_422_naming_it(
    client: TestClient, path: str, value: Any
) -> None:
    response = client.post("/v1/alert-rules", json=with_(path, value))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_rule"
    fields = [d["field"] for d in error["details"]]
    assert path in fields, fields
    assert path in error["message"]
    assert client.get("/v1/alert-rules").json()["rules"] == []  # nothing was stored


CHANGE = {"op": "decrease", "by": 5}
INVALID_CHANGE = [
    ("condition.by", ...),
    ("condition.by", 0),
    ("condition.baseline", "last week"),
    ("condition.require_significant", "yes"),
    ("condition.threshold", 20),
]


@pytest.mark.parametrize(("path", "value"), INVALID_CHANGE, ids=[f"{p}={v!r}" for p, v in INVALID_CHANGE])
def test_every_invalid_change_condition_field_is_named(client: TestClient, path: str, value: Any) -> None:
    base = METRIC_RULE | {"condition": dict(CHANGE), "recover": None}
    del base["recover"]
    response = client.post("/v1/alert-rules", json=with_(path, value, base))
    assert response.status_code == 422, response.text
    assert path in [d["field"] for d in response.json()["error"]["details"]]


INVALID_RESPONSE = [
    ("survey", "eNPS"),
    ("survey", ...),
    ("scores", []),
    ("scores[0]", 11),
    ("cooldown", "a week"),
    ("filters.channel", "Web!"),
    ("threshold", 3),
]


@pytest.mark.parametrize(("path", "value"), INVALID_RESPONSE, ids=[f"{p}={v!r}" for p, v in INVALID_RESPONSE])
def test_every_invalid_response_rule_field_is_named(client: TestClient, path: str, value: Any) -> None:
    base = RESPONSE_RULE | {"scores": [0, 1]}
    response = client.post("/v1/alert-rules", json=with_(path, value, base))
    assert response.status_code == 422, response.text
    assert path in [d["field"] for d in response.json()["error"]["details"]]


def test_several_bad_fields_are_all_named_and_non_objects_are_refused(client: TestClient) -> None:
    body = with_("severity", "page", with_("window", "soon", with_("metric", "joy")))
    details = client.post("/v1/alert-rules", json=body).json()["error"]["details"]
    assert {"metric", "window", "severity"} <= {d["field"] for d in details}
    listed = client.post("/v1/alert-rules", json=[METRIC_RULE])
    assert listed.status_code == 422 and listed.json()["error"]["code"] == "invalid_rule"
    malformed = client.post(
        "/v1/alert-rules", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_an_unknown_id_is_a_404(client: TestClient, method: str) -> None:
    create(client, METRIC_RULE)
    response = client.request(method, "/v1/alert-rules/rule_nope", json=METRIC_RULE)
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "unknown_rule" and "rule_nope" in error["message"]


def test_put_replaces_and_keeps_a_masked_secret(client: TestClient, runtime: EmbeddedRuntime) -> None:
    created = create(client, METRIC_RULE)
    rule_id = created["id"]
    edited = copy.deepcopy(created)  # as GET shows it: masked secret, state included
    edited["severity"] = "warning"
    response = client.put(f"/v1/alert-rules/{rule_id}", json=edited)
    assert response.status_code == 200, response.text
    assert response.json()["severity"] == "warning"
    assert runtime.alerts.repo.rule_json(rule_id)["notify"][0]["secret"] == SECRET  # type: ignore[index]
    assert runtime.alerts.repo.rule_json(rule_id)["notify"][1]["url"] == HOOK + "/slack"  # type: ignore[index]
    # a new secret replaces it; an unknown masked value is not a secret at all
    rotated = with_("notify[0].secret", OTHER_SECRET, edited)
    assert client.put(f"/v1/alert-rules/{rule_id}", json=rotated).status_code == 200
    assert runtime.alerts.repo.rule_json(rule_id)["notify"][0]["secret"] == OTHER_SECRET  # type: ignore[index]
    wrong_mask = with_("notify[0].secret", "whsec_…zzzz", edited)
    bad = client.put(f"/v1/alert-rules/{rule_id}", json=wrong_mask)
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "notify[0].secret"
    invalid = client.put(f"/v1/alert-rules/{rule_id}", json=with_("metric", "joy", edited))
    assert invalid.status_code == 422
    assert client.get(f"/v1/alert-rules/{rule_id}").json()["severity"] == "warning"  # unchanged


def test_secrets_never_appear_in_any_answer(client: TestClient, runtime: EmbeddedRuntime) -> None:
    rule_id = create(client, METRIC_RULE)["id"]
    create(client, RESPONSE_RULE)
    post_answers(client, [0] * 12)
    runtime.alerts.evaluator.evaluate()
    answers = [
        client.get("/v1/alert-rules").text,
        client.get(f"/v1/alert-rules/{rule_id}").text,
        client.get("/v1/alerts").text,
        client.get("/v1/alerts/transitions").text,
        client.get("/v1/alerts/notifications").text,
    ]
    assert '"notifications":[{' in answers[-1] and mask_secret(SECRET) in answers[0]
    secret_core = SECRET.removeprefix("whsec_")
    assert all(secret_core[:-4] not in text for text in answers)
    assert all(HOOK + "/slack" not in text for text in answers)  # a Slack URL is a credential too
    assert mask_url(HOOK + "/slack") in answers[-1]


def test_delete_removes_the_rule_and_its_state(client: TestClient, runtime: EmbeddedRuntime) -> None:
    rule_id = create(client, METRIC_RULE)["id"]
    post_answers(client, [0] * 12)
    runtime.alerts.evaluator.evaluate()
    assert client.get(f"/v1/alert-rules/{rule_id}").json()["state"] == "firing"
    assert client.delete(f"/v1/alert-rules/{rule_id}").status_code == 204
    assert client.get(f"/v1/alert-rules/{rule_id}").status_code == 404
    assert client.delete(f"/v1/alert-rules/{rule_id}").status_code == 404
    assert client.get("/v1/alerts").json()["alerts"] == []
    history = client.get("/v1/alerts/transitions").json()["transitions"]
    assert [(t["rule_id"], t["to"], t["name"]) for t in history] == [(rule_id, "firing", None)]


def test_rules_survive_a_restart(client: TestClient, settings: Settings) -> None:
    created = create(client, METRIC_RULE)
    create(client, RESPONSE_RULE)
    reopened = EmbeddedRuntime.open(settings)
    again = TestClient(reopened.app(settings)).get("/v1/alert-rules").json()["rules"]
    assert sorted(r["name"] for r in again) == ["Call detractors", "Checkout NPS falling"]
    assert next(r for r in again if r["id"] == created["id"]) == created
    assert [r.name for r in reopened.alerts.response_rules()] == ["Call detractors"]


# ---------------------------------------------------------------------------- states and the log


def post_answers(
    client: TestClient, scores: list[int], touchpoint: str = "checkout", prefix: str = "a"
) -> None:
    now = int(time.time() * 1000) - 1_000
    items = [
        event(f"{prefix}{i}", "survey_answer", now - i, f"c{i}", survey="nps", score=s, touchpoint=touchpoint)
        for i, s in enumerate(scores)
    ]
    response = client.post("/v1/events", json=items)
    assert response.status_code == 202, response.text


def test_alerts_transitions_and_notifications_after_an_evaluation(
    client: TestClient, runtime: EmbeddedRuntime
) -> None:
    rule_id = create(client, METRIC_RULE)["id"]
    quiet = create(client, METRIC_RULE | {"name": "support", "filters": {"touchpoint": "support"}})["id"]
    post_answers(client, [0] * 8 + [10] * 4)  # NPS -33 at checkout, n 12
    runtime.alerts.evaluator.evaluate()

    firing = client.get("/v1/alerts", params={"state": "firing"}).json()["alerts"]
    assert [a["rule_id"] for a in firing] == [rule_id]
    (alert,) = firing
    assert alert["rule"]["name"] == "Checkout NPS falling" and alert["rule"]["severity"] == "critical"
    assert alert["reading"]["n"] == 12 and alert["reading"]["value"] == pytest.approx(-100 / 3)
    assert alert["since"] and alert["evaluated_at"]
    no_data = client.get("/v1/alerts", params={"state": "no_data"}).json()["alerts"]
    assert [a["rule_id"] for a in no_data] == [quiet]
    assert len(client.get("/v1/alerts").json()["alerts"]) == 2
    bad = client.get("/v1/alerts", params={"state": "burning"})
    assert bad.status_code == 400 and bad.json()["error"]["details"][0]["field"] == "state"

    (transition,) = client.get("/v1/alerts/transitions", params={"rule_id": rule_id}).json()["transitions"]
    assert (transition["from"], transition["to"], transition["notify"]) == ("ok", "firing", "firing")
    assert transition["reading"]["n"] == 12 and transition["at"].endswith("Z")
    assert len(client.get("/v1/alerts/transitions", params={"limit": 1}).json()["transitions"]) == 1

    (note,) = client.get("/v1/alerts/notifications", params={"rule_id": rule_id}).json()["notifications"]
    assert note["kind"] == "alert" and note["id"].startswith("msg_")
    assert note["payload"]["status"] == "firing" and note["payload"]["rule"]["id"] == rule_id
    assert [t["target"]["type"] for t in note["targets"]] == ["webhook", "slack"]
    assert {t["status"] for t in note["targets"]} == {"pending"} and note["attempts"] == []

    exposition = client.get("/metrics").text
    assert 'cxpulse_alerts{state="firing"} 1.0' in exposition
    assert 'cxpulse_alerts{state="no_data"} 1.0' in exposition

    post_answers(client, [10] * 40, prefix="b")  # recovered
    runtime.alerts.evaluator.evaluate()
    history = client.get("/v1/alerts/transitions", params={"rule_id": rule_id}).json()["transitions"]
    assert [(t["from"], t["to"]) for t in history] == [("firing", "ok"), ("ok", "firing")]
    kinds = client.get("/v1/alerts/notifications", params={"kind": "alert"}).json()["notifications"]
    assert [n["payload"]["status"] for n in kinds] == ["resolved", "firing"]
    assert client.get("/v1/alerts/notifications", params={"kind": "response"}).json()["notifications"] == []


def test_a_detractor_answer_notifies_once_through_the_processing_path(client: TestClient) -> None:
    rule_id = create(client, RESPONSE_RULE)["id"]
    now = int(time.time() * 1000) - 1_000
    answer = event(
        "d1", "survey_answer", now, "cust-9", survey="nps", score=2, touchpoint="checkout", comment="Slow!"
    )
    assert client.post("/v1/events", json=[answer]).json()["accepted"] == 1
    assert client.post("/v1/events", json=[answer]).json()["duplicates"] == 1
    promoter = event("p1", "survey_answer", now, "cust-8", survey="nps", score=10, touchpoint="checkout")
    client.post("/v1/events", json=[promoter])
    late = event(
        "l1", "survey_answer", now - 25 * 3_600_000, "cust-7", survey="nps", score=0, touchpoint="checkout"
    )
    client.post("/v1/events", json=[late])
    (note,) = client.get("/v1/alerts/notifications", params={"kind": "response"}).json()["notifications"]
    assert note["rule_id"] == rule_id
    payload = note["payload"]
    assert {
        k: payload[k] for k in ("customer_id", "score", "comment", "touchpoint", "channel", "segment")
    } == {
        "customer_id": "cust-9",
        "score": 2,
        "comment": "Slow!",
        "touchpoint": "checkout",
        "channel": "unknown",
        "segment": "unknown",
    }
    assert payload["occurred_at"] == iso_ms(now) and payload["event_id"] == "d1"


def test_the_openapi_documents_the_alert_endpoints(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in (
        "/v1/alert-rules",
        "/v1/alert-rules/{rule_id}",
        "/v1/alerts",
        "/v1/alerts/transitions",
        "/v1/alerts/notifications",
    ):
        assert path in spec["paths"], path
    schemas = spec["components"]["schemas"]
    assert {"MetricRuleOut", "ResponseRuleOut", "AlertOut", "TransitionOut", "NotificationOut"} <= set(
        schemas
    )
    assert "for" in schemas["MetricRuleOut"]["properties"]
