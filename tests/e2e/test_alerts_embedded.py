"""Alerts end to end in embedded mode (SPEC §4): a real `cxpulse run` process, rules added with the real
`cxpulse rules` CLI, events over HTTP, and a real webhook receiver in a thread.

- events that break a `for: 0s` NPS rule → a signed webhook (verified with `standardwebhooks`) within
  seconds — the evaluation interval is set to a minute, so only the event-triggered evaluation can make it
  — then recovering events → `resolved`, and `/v1/alerts/transitions` lists both;
- a response rule: a detractor's answer notifies once; posting the same event again does not;
- `kill -9` while a notification is pending (its receiver answered 500), restart: the receiver, deduping
  by webhook-id, gets it exactly once, and the firing rule is not notified again;
- SIGTERM right after a burst of notifications: they are all delivered before the exit (0), each once;
- a receiver that answers 500 three times then 200 gets it (same webhook-id every time), and a hanging
  receiver does not delay another target of the same notification.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.conftest import event
from tests.server_support import CxpulseRun, free_port
from tests.webhook_receiver import Receiver, Reply

SECRET = "whsec_" + base64.b64encode(b"end-to-end-secret-of-32-bytes!!!").decode()
ROOT = Path(__file__).resolve().parents[2]


class Service(CxpulseRun):
    """`cxpulse run` with the alert endpoints' helpers."""

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def post_events(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/v1/events", json=events, timeout=30)
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        return body

    def rules(self, *args: str, tmp: Path | None = None, rule: dict[str, Any] | None = None) -> str:
        """Run `cxpulse rules …` against this service; returns its output (fails the test on error)."""
        argv = list(args)
        if rule is not None:
            assert tmp is not None
            path = tmp / f"rule-{uuid.uuid4().hex[:6]}.json"
            path.write_text(json.dumps(rule))
            argv.append(str(path))
        done = cli("rules", "--url", self.url, *argv)
        assert done.returncode == 0, done.stderr
        return done.stdout


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


ENV = {
    "CXPULSE_ALERT_INTERVAL": "60s",  # only the event-triggered evaluation can notify within the test's wait
    "CXPULSE_NOTIFY_RETRY_BASE_S": "0.3",
    "CXPULSE_NOTIFY_TIMEOUT_S": "3",
    "CXPULSE_WEBHOOK_ALLOW_PRIVATE": "true",  # the test's receiver is on 127.0.0.1
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("alerts-e2e")
    svc = Service(tmp / "data", tmp / "service.log", dict(ENV))
    svc.start()
    yield svc
    svc.stop()


def now_ms() -> int:
    return int(time.time() * 1000) - 500


def answers(prefix: str, scores: list[int], touchpoint: str) -> list[dict[str, Any]]:
    t = now_ms()
    return [
        event(
            f"{prefix}-{i}",
            "survey_answer",
            t - i,
            f"{prefix}-c{i}",
            survey="nps",
            score=s,
            touchpoint=touchpoint,
        )
        for i, s in enumerate(scores)
    ]


def nps_rule(name: str, touchpoint: str, notify: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "metric": "nps",
        "window": "1h",
        "filters": {"touchpoint": touchpoint},
        "condition": {"op": "below", "threshold": 20},
        "recover": 25,
        "min_samples": 10,
        "for": "0s",
        "notify": notify,
    }


def watch_stream(url: str, frames: list[str]) -> None:
    """Collect the SSE frames of `/v1/stream` (one string per frame) until the service goes away."""
    try:
        with httpx.stream("GET", f"{url}/v1/stream", params={"metrics": "nps"}, timeout=None) as response:
            frame: list[str] = []
            for line in response.iter_lines():
                if line:
                    frame.append(line)
                elif frame:
                    frames.append("\n".join(f for f in frame if not f.startswith("id:")))
                    frame = []
    except httpx.HTTPError:
        pass


def webhook_body(receiver: Receiver, path: str, index: int) -> tuple[dict[str, Any], str]:
    request = receiver.at(path)[index]
    body = Webhook(SECRET).verify(request.body, request.headers)  # raises unless signed with SECRET
    assert isinstance(body, dict)
    return body, request.headers["webhook-id"]


def test_a_metric_rule_fires_within_seconds_and_resolves(
    service: Service, receiver: Receiver, tmp_path: Path
) -> None:
    hook = receiver.url("/nps")
    out = service.rules(
        "add",
        tmp=tmp_path,
        rule=nps_rule("Checkout NPS falling", "checkout", [{"url": hook, "secret": SECRET}]),
    )
    rule_id = out.split()[1]
    assert out.startswith("created rule_") and ("state ok" in out or "state no_data" in out)
    time.sleep(1.0)  # let the new rule's first evaluation (ok: no data) pass

    frames: list[str] = []
    threading.Thread(target=watch_stream, args=(service.url, frames), daemon=True).start()
    time.sleep(1.0)

    sent = time.monotonic()
    service.post_events(answers("bad", [0] * 9 + [10] * 3, "checkout"))  # NPS −50, n 12
    (request,) = receiver.wait_for("/nps", 1, timeout_s=15)
    latency = request.at - sent
    firing, firing_id = webhook_body(receiver, "/nps", 0)
    assert firing["kind"] == "alert" and firing["status"] == "firing"
    assert firing["rule"]["id"] == rule_id and firing["rule"]["filters"] == {"touchpoint": "checkout"}
    assert firing["reading"]["value"] == pytest.approx(-50) and firing["reading"]["n"] == 12
    assert latency < 10, f"the firing webhook took {latency:.1f} s"  # the interval is 60 s

    listed = service.rules("list")
    assert rule_id in listed and "firing" in listed

    service.post_events(answers("good", [10] * 60, "checkout"))  # NPS 72, n 72: recovered
    receiver.wait_for("/nps", 2, timeout_s=15)
    resolved, resolved_id = webhook_body(receiver, "/nps", 1)
    assert resolved["status"] == "resolved" and resolved_id != firing_id
    time.sleep(1.5)
    assert len(receiver.at("/nps")) == 2  # each state change notified once

    alerts = [json.loads(f.split("data: ", 1)[1]) for f in frames if f.startswith("event: alert")]
    assert [(a["rule_id"], a["to"]) for a in alerts] == [(rule_id, "firing"), (rule_id, "ok")]

    history = service.get("/v1/alerts/transitions", rule_id=rule_id)["transitions"]
    assert [(t["from"], t["to"], t["notify"]) for t in history] == [
        ("firing", "ok", "resolved"),
        ("no_data", "firing", "firing"),
        ("ok", "no_data", None),  # the new rule's first evaluation, before any answer
    ]
    notes = service.get("/v1/alerts/notifications", rule_id=rule_id)["notifications"]
    assert [(n["id"], n["targets"][0]["status"]) for n in notes] == [
        (resolved_id, "delivered"),
        (firing_id, "delivered"),
    ]
    assert all(n["attempts"][0]["status_code"] == 200 for n in notes)


def test_a_detractor_notifies_once_and_a_repeated_event_does_not(
    service: Service, receiver: Receiver, tmp_path: Path
) -> None:
    rule = {
        "type": "response",
        "name": "Call support detractors",
        "survey": "nps",
        "filters": {"touchpoint": "support"},
        "cooldown": "0s",  # so only dedup stands between a repeated event and a second message
        "notify": [{"url": receiver.url("/responses"), "secret": SECRET}],
    }
    assert service.rules("add", tmp=tmp_path, rule=rule).startswith("created")
    detractor = event(
        "resp-1",
        "survey_answer",
        now_ms(),
        "cust-42",
        survey="nps",
        score=3,
        comment="Nobody called back",
        touchpoint="support",
        channel="phone",
        segment="pro",
    )
    assert service.post_events([detractor])["accepted"] == 1
    receiver.wait_for("/responses", 1, timeout_s=10)
    body, _ = webhook_body(receiver, "/responses", 0)
    assert {k: body[k] for k in ("customer_id", "score", "comment", "touchpoint", "channel", "segment")} == {
        "customer_id": "cust-42",
        "score": 3,
        "comment": "Nobody called back",
        "touchpoint": "support",
        "channel": "phone",
        "segment": "pro",
    }
    assert service.post_events([detractor])["duplicates"] == 1
    service.post_events(answers("promoters", [9, 10], "support"))
    time.sleep(2.0)
    assert len(receiver.at("/responses")) == 1


def test_retries_until_delivered_and_a_hanging_target_delays_no_one(
    service: Service, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.scripts["/thrice"] = [Reply(500), Reply(500), Reply(500), Reply(200)]
    receiver.scripts["/hang"] = [Reply(200, delay_s=30)]
    targets = [
        {"url": receiver.url("/hang")},
        {"url": receiver.url("/thrice"), "secret": SECRET},
        {"url": receiver.url("/fast"), "secret": SECRET},
    ]
    service.rules("add", tmp=tmp_path, rule=nps_rule("Onboarding NPS", "onboarding", targets))
    time.sleep(1.0)
    service.post_events(answers("onb", [0] * 12, "onboarding"))

    hung = receiver.wait_for("/hang", 1, timeout_s=15)[0]
    fast = receiver.wait_for("/fast", 1, timeout_s=15)[0]
    assert fast.at - hung.at < 2.0  # not after the hanging attempt's 3 s timeout

    thrice = receiver.wait_for("/thrice", 4, timeout_s=20)
    assert [r.status for r in thrice] == [500, 500, 500, 200]
    assert len({r.headers["webhook-id"] for r in thrice}) == 1 == len(receiver.processed("/thrice"))
    for r in thrice:
        Webhook(SECRET).verify(r.body, r.headers)

    counts = {
        line.split('result="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in httpx.get(f"{service.url}/metrics", timeout=30).text.splitlines()
        if line.startswith("cxpulse_notifications_total{")
    }
    assert counts["retry"] >= 3 and counts["delivered"] >= 2  # /thrice's retries; /thrice and /fast

    (note,) = service.get("/v1/alerts/notifications", kind="alert", limit=1)["notifications"]
    by_url = {t["target"]["url"]: t for t in note["targets"]}
    assert by_url[receiver.url("/thrice")]["status"] == "delivered"
    assert by_url[receiver.url("/thrice")]["attempts"] == 4
    tries = [a for a in note["attempts"] if a["target"]["url"] == receiver.url("/thrice")]
    assert sorted((a["attempt"], a["outcome"]) for a in tries) == [
        (1, "retry"),
        (2, "retry"),
        (3, "retry"),
        (4, "delivered"),
    ]


def test_the_rules_cli_names_bad_fields_and_sends_the_key(
    service: Service, receiver: Receiver, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(nps_rule("Bad", "checkout", []) | {"metric": "joy", "window": "soon"}))
    done = cli("rules", "--url", service.url, "add", str(bad))
    assert done.returncode == 1 and done.stdout == ""
    assert "the rule is not valid" in done.stderr and "(HTTP 422)" in done.stderr
    assert "\n  metric: unknown metric" in done.stderr and "\n  window: " in done.stderr
    missing = cli("rules", "--url", service.url, "delete", "rule_nope")
    assert missing.returncode == 1 and "no alert rule with id 'rule_nope'" in missing.stderr
    unreadable = cli("rules", "--url", service.url, "add", str(tmp_path / "absent.json"))
    assert unreadable.returncode == 1 and "cannot read" in unreadable.stderr

    created = {"id": "rule_x", "name": "X", "type": "metric", "state": "ok"}
    receiver.scripts["/v1/alert-rules"] = [Reply(201, json.dumps(created).encode())]
    good = tmp_path / "good.json"
    good.write_text(json.dumps(nps_rule("X", "checkout", [])))
    sent = cli("rules", "--url", receiver.url(""), "--key", "cxp_test.key", "add", str(good))
    assert sent.returncode == 0 and sent.stdout.startswith("created rule_x"), sent.stderr
    (request,) = receiver.at("/v1/alert-rules")
    assert request.headers["authorization"] == "Bearer cxp_test.key"
    assert json.loads(request.body)["name"] == "X"

    dead = cli("rules", "--url", f"http://127.0.0.1:{free_port()}", "list")
    assert dead.returncode == 2 and "cannot reach" in dead.stderr


def test_kill_9_with_a_pending_notification_delivers_it_exactly_once_after_restart(
    tmp_path: Path,
) -> None:
    receiver = Receiver()
    receiver.scripts["/dedupe"] = [Reply(500), Reply(200)]
    env = ENV | {"CXPULSE_NOTIFY_RETRY_BASE_S": "4", "CXPULSE_ALERT_INTERVAL": "1s"}
    svc = Service(tmp_path / "data", tmp_path / "service.log", env)
    try:
        svc.start()
        rule = nps_rule("Checkout NPS", "checkout", [{"url": receiver.url("/dedupe"), "secret": SECRET}])
        svc.rules("add", tmp=tmp_path, rule=rule)
        svc.post_events(answers("k", [0] * 12, "checkout"))
        (first,) = receiver.wait_for("/dedupe", 1, timeout_s=15)
        assert first.status == 500  # pending: the next attempt is about 4 s away
        svc.kill()
        pending = first.headers["webhook-id"]

        svc.start()
        receiver.wait_for("/dedupe", 2, timeout_s=30)
        time.sleep(3.0)  # several evaluations (every 1 s) of the still-firing rule: none notifies again
        assert set(receiver.processed("/dedupe")) == {pending}
        assert [r.headers["webhook-id"] for r in receiver.at("/dedupe")] == [pending, pending]
        (alert,) = svc.get("/v1/alerts", state="firing")["alerts"]
        assert alert["rule"]["name"] == "Checkout NPS"
        history = svc.get("/v1/alerts/transitions")["transitions"]
        assert [t["to"] for t in history if t["to"] == "firing"] == ["firing"]
    finally:
        svc.stop()
        receiver.close()


def test_sigterm_drains_pending_notifications_exits_0_and_loses_nothing(tmp_path: Path) -> None:
    """More notifications than the dispatcher starts in one poll (100), each answered after half a second,
    and SIGTERM right after their 202: the process delivers all of them before it exits (0), each once; a
    restart finds nothing left to send."""
    receiver = Receiver()
    receiver.scripts["/drain"] = [Reply(200, delay_s=0.5)]
    svc = Service(tmp_path / "data", tmp_path / "service.log", dict(ENV))
    count = 150
    try:
        svc.start()
        rule = {
            "type": "response",
            "name": "Detractors at checkout",
            "survey": "nps",
            "filters": {"touchpoint": "drain"},
            "cooldown": "0s",
            "notify": [{"url": receiver.url("/drain"), "secret": SECRET}],
        }
        assert svc.rules("add", tmp=tmp_path, rule=rule).startswith("created")
        # one batch: one wake of the dispatcher, whose poll starts 100 of them
        assert svc.post_events(answers("drain", [2] * count, "drain"))["accepted"] == count
        assert svc.terminate() == 0, svc.log_text()[-3000:]
        # delivered before the exit, each once (a receiver deduping by webhook-id acted on every one)
        assert len(receiver.processed("/drain")) == count
        assert len(receiver.at("/drain")) == count

        svc.start()
        notes = svc.get("/v1/alerts/notifications", kind="response", limit=1000)["notifications"]
        assert len(notes) == count
        assert {t["status"] for n in notes for t in n["targets"]} == {"delivered"}
        time.sleep(3.0)  # a restarted dispatcher finds nothing due: nothing is sent twice
        assert len(receiver.at("/drain")) == count
    finally:
        svc.stop()
        receiver.close()
