"""Notification delivery against a real local HTTP receiver and the real chDB outbox (SPEC §4): Standard
Webhooks signatures, retries with the same webhook-id, Retry-After, a hanging target that delays nobody
else, 410 disabling, Slack bodies, every attempt listed, and exactly-once to a deduping receiver across a
restart."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from cxpulse.domain.alerts.evaluation import RuleState, evaluate
from cxpulse.domain.alerts.payloads import alert_payload
from cxpulse.domain.alerts.rules.metric import MetricRule
from cxpulse.domain.alerts.rules.response import ResponseRule
from cxpulse.domain.alerts.rules.rule import parse_rule, rule_to_json
from cxpulse.domain.alerts.rules.targets import Target
from cxpulse.domain.metrics import Direction
from cxpulse.notify.dispatcher import Dispatcher
from cxpulse.notify.outbox import AttemptRecord, Delivery, Notification, Status, StoreOutbox
from cxpulse.notify.schedule import Schedule
from cxpulse.schema_files import schema_file
from cxpulse.store.alerts import AlertRepository
from cxpulse.store.base import Store
from cxpulse.store.chdb_store import ChdbStore

SECRET = "whsec_" + base64.b64encode(b"cx-pulse-test-secret-32-bytes!!!").decode()
DIRECTIONS = {"nps": Direction.HIGHER_IS_BETTER, "ces": Direction.LOWER_IS_BETTER}
FAST = Schedule(base_s=0.05, cap_s=1.0, max_attempts=6, jitter=0.0)


# ------------------------------------------------------------------------------------------- receiver


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """A real HTTP server on 127.0.0.1: per path, a script of replies (the last one repeats)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.scripts: dict[str, list[Reply]] = {}
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.requests.append(Received(self.path, dict(self.headers), body, time.monotonic()))
                script = receiver.scripts.get(self.path) or [Reply()]
                reply = script.pop(0) if len(script) > 1 else script[0]
                if reply.delay_s:
                    receiver.release.wait(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:  # the client gave up (timeout): nothing to answer
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


# ----------------------------------------------------------------------------------------------- store


def apply_alerts_migration(store: Store) -> None:
    """What the migration runner will do: run 002_alerts.sql's statements."""
    store.execute(f"CREATE DATABASE IF NOT EXISTS {store.database}")
    lines = schema_file("clickhouse", "migrations", "002_alerts.sql").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("--"))
    for statement in text.split(";\n"):
        if statement.strip().strip(";"):
            store.execute(statement.strip().rstrip(";").replace("{db}", store.database))


@pytest.fixture
def db(chdb_dir: Path) -> Iterator[tuple[Path, str]]:
    """A fresh database in the session's chDB directory (tests open and reopen stores on it)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    store = ChdbStore(chdb_dir, database=name)
    apply_alerts_migration(store)
    store.close()
    yield chdb_dir, name
    store = ChdbStore(chdb_dir, database=name)
    store.execute(f"DROP DATABASE IF EXISTS {name} SYNC")
    store.close()


@pytest.fixture
def store(db: tuple[Path, str]) -> Iterator[ChdbStore]:
    s = ChdbStore(*db)
    yield s
    s.close()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def notification(*targets: Target, nid: str = "msg_1", rule_id: str = "rule-1") -> Notification:
    body = {
        "kind": "response",
        "rule": {"id": rule_id, "name": "Detractors"},
        "customer_id": "c1",
        "score": 2,
    }
    return Notification(nid, rule_id, "response", body, targets)


async def until_settled(dispatcher: Dispatcher, outbox: StoreOutbox, timeout_s: float = 10.0) -> None:
    """Deliver due rows until none is pending."""
    deadline = time.monotonic() + timeout_s
    while any(d.status is Status.PENDING for d in outbox.deliveries()):
        assert time.monotonic() < deadline, "outbox did not settle"
        await dispatcher.deliver_due()
        await asyncio.sleep(0.02)
    await dispatcher.aclose()


# ----------------------------------------------------------------------------------------------- tests


def test_a_signed_webhook_verifies_with_standard_webhooks(store: ChdbStore, receiver: Receiver) -> None:
    outbox = StoreOutbox(store)
    body = {"kind": "response", "customer_id": "c1", "comment": "naïve « quoted » text", "score": 2}
    assert (
        outbox.add(
            Notification(
                "msg_sig", "rule-1", "response", body, (Target("webhook", receiver.url("/h"), SECRET),)
            ),
            now_ms(),
        )
        == 1
    )

    records = asyncio.run(_deliver_once(Dispatcher(outbox, schedule=FAST)))
    assert [r.outcome for r in records] == ["delivered"]
    (request,) = receiver.requests
    assert request.headers["webhook-id"] == "msg_sig"
    assert Webhook(SECRET).verify(request.body, request.headers) == body
    tampered = request.body.replace(b"c1", b"c2")
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(tampered, request.headers)
    assert request.headers["webhook-signature"].startswith("v1,")
    assert request.headers["content-type"] == "application/json"


async def _deliver_once(dispatcher: Dispatcher) -> list[Any]:
    try:
        return await dispatcher.deliver_due()
    finally:
        await dispatcher.aclose()


def test_retries_until_delivered_with_the_same_webhook_id(store: ChdbStore, receiver: Receiver) -> None:
    receiver.scripts["/flaky"] = [Reply(500), Reply(502), Reply(503), Reply(200)]
    outbox = StoreOutbox(store)
    outbox.add(notification(Target("webhook", receiver.url("/flaky"), SECRET), nid="msg_retry"), now_ms())
    asyncio.run(until_settled(Dispatcher(outbox, schedule=FAST), outbox))

    requests = receiver.at("/flaky")
    assert len(requests) == 4
    assert {r.headers["webhook-id"] for r in requests} == {"msg_retry"}
    for r in requests:  # each attempt is signed with its own timestamp, all verify
        Webhook(SECRET).verify(r.body, r.headers)
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    # backoff doubles (0.05, 0.1, 0.2 s): judged cumulatively, since a late receiver timestamp under load
    # lengthens one gap and shortens the next
    since_first = list(itertools.accumulate(gaps))
    assert since_first[0] >= 0.05 and since_first[1] >= 0.15 and since_first[2] >= 0.35, gaps

    (row,) = outbox.deliveries()
    assert (row.status, row.attempts) == (Status.DELIVERED, 4)
    attempts = sorted(outbox.attempts("rule-1"), key=lambda a: a.attempt)
    assert [(a.attempt, a.outcome, a.status_code) for a in attempts] == [
        (1, "retry", 500),
        (2, "retry", 502),
        (3, "retry", 503),
        (4, "delivered", 200),
    ]
    assert all(a.id == "msg_retry" and a.url == receiver.url("/flaky") for a in attempts)
    assert attempts[0].next_attempt_ms is not None and attempts[3].next_attempt_ms is None
    assert "secret" not in json.dumps([a.to_json() for a in attempts] + [row.to_json()])


def test_gives_up_after_max_attempts(store: ChdbStore, receiver: Receiver) -> None:
    receiver.scripts["/down"] = [Reply(503)]
    outbox = StoreOutbox(store)
    outbox.add(notification(Target("webhook", receiver.url("/down"))), now_ms())
    schedule = Schedule(base_s=0.02, max_attempts=3, jitter=0.0)
    asyncio.run(until_settled(Dispatcher(outbox, schedule=schedule), outbox))
    (row,) = outbox.deliveries()
    assert row.status is Status.FAILED and row.attempts == 3 and "gave up" in row.last_result
    assert len(receiver.at("/down")) == 3


def test_retry_after_is_honoured(store: ChdbStore, receiver: Receiver) -> None:
    receiver.scripts["/busy"] = [Reply(429, headers={"Retry-After": "1"}), Reply(200)]
    outbox = StoreOutbox(store)
    outbox.add(notification(Target("webhook", receiver.url("/busy"))), now_ms())
    schedule = Schedule(base_s=0.6, jitter=0.0)  # backoff alone would wait 0.6 s

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(Dispatcher(outbox, schedule=schedule, poll_interval_s=0.05).run(stop))
        deadline = time.monotonic() + 5
        while len(receiver.at("/busy")) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        stop.set()
        await task

    asyncio.run(go())
    first, second = receiver.at("/busy")
    assert second.at - first.at >= 0.95
    retry = next(a for a in outbox.attempts() if a.attempt == 1)
    assert retry.status_code == 429 and retry.next_attempt_ms is not None
    assert retry.next_attempt_ms - retry.at_ms == 1000


def test_a_hanging_target_does_not_delay_the_others(store: ChdbStore, receiver: Receiver) -> None:
    receiver.scripts["/hang"] = [Reply(200, delay_s=30)]
    outbox = StoreOutbox(store)
    hang, fast = Target("webhook", receiver.url("/hang")), Target("webhook", receiver.url("/fast"))
    dispatcher = Dispatcher(outbox, schedule=FAST, attempt_timeout_s=1.5, poll_interval_s=0.05)

    async def go() -> tuple[float, float, float]:
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))
        t0 = time.monotonic()
        await asyncio.to_thread(outbox.add, notification(hang, fast, nid="msg_a"), now_ms())
        dispatcher.wake()
        while len(receiver.at("/fast")) < 1:
            await asyncio.sleep(0.01)
        first = time.monotonic() - t0
        # A second notification while the first attempt to /hang is still hanging.
        t1 = time.monotonic()
        await asyncio.to_thread(outbox.add, notification(fast, nid="msg_b"), now_ms())
        dispatcher.wake()
        while len(receiver.at("/fast")) < 2:
            await asyncio.sleep(0.01)
        second = time.monotonic() - t1
        while not any(a.url.endswith("/hang") for a in await asyncio.to_thread(outbox.attempts)):
            await asyncio.sleep(0.05)
        hung = time.monotonic() - t0
        stop.set()
        receiver.release.set()
        await task
        return first, second, hung

    first, second, hung = asyncio.run(go())
    assert first < 1.0 and second < 1.0  # neither waited for the 1.5 s timeout
    assert hung >= 1.4
    hang_attempt = next(a for a in outbox.attempts() if a.url.endswith("/hang") and a.attempt == 1)
    assert hang_attempt.outcome == "retry" and "timeout" in hang_attempt.error.lower()


def test_a_full_poll_of_hanging_rows_does_not_hide_the_rows_behind_it(
    store: ChdbStore, receiver: Receiver
) -> None:
    """The hanging rows are still pending (due) while in flight: a poll of `batch` rows must look past
    them, or a burst to one slow target holds up every notification after it."""
    receiver.scripts["/hang"] = [Reply(200, delay_s=30)]
    outbox = StoreOutbox(store)
    hang, fast = Target("webhook", receiver.url("/hang")), Target("webhook", receiver.url("/fast"))
    dispatcher = Dispatcher(outbox, schedule=FAST, attempt_timeout_s=5, poll_interval_s=0.05, batch=2)

    async def go() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))
        added = now_ms()
        await asyncio.to_thread(outbox.add, notification(hang, nid="msg_h1"), added)
        await asyncio.to_thread(outbox.add, notification(hang, nid="msg_h2"), added)
        dispatcher.wake()
        while len(receiver.at("/hang")) < 2:
            await asyncio.sleep(0.01)
        t0 = time.monotonic()
        await asyncio.to_thread(outbox.add, notification(fast, nid="msg_f"), now_ms())
        dispatcher.wake()
        while not receiver.at("/fast"):
            await asyncio.sleep(0.01)
        waited = time.monotonic() - t0
        stop.set()
        receiver.release.set()
        await task
        return waited

    assert asyncio.run(go()) < 2.0  # not after the hanging attempts' 5 s timeout


def test_410_disables_the_target_and_spares_it_afterwards(store: ChdbStore, receiver: Receiver) -> None:
    receiver.scripts["/gone"] = [Reply(410, b"no such hook")]
    outbox = StoreOutbox(store)
    gone, live = Target("webhook", receiver.url("/gone")), Target("webhook", receiver.url("/live"))
    outbox.add(notification(gone, live, nid="msg_1"), now_ms())
    asyncio.run(until_settled(Dispatcher(outbox, schedule=FAST), outbox))
    assert outbox.disabled_targets("rule-1") == {("rule-1", gone.url)}
    rows = {d.target.url: d for d in outbox.deliveries()}
    assert rows[gone.url].status is Status.DISABLED and rows[live.url].status is Status.DELIVERED
    assert "410" in rows[gone.url].last_result

    outbox.add(notification(gone, live, nid="msg_2"), now_ms())
    asyncio.run(until_settled(Dispatcher(outbox, schedule=FAST), outbox))
    assert len(receiver.at("/gone")) == 1 and len(receiver.at("/live")) == 2
    later = {(d.id, d.target.url): d.status for d in outbox.deliveries()}
    assert later[("msg_2", gone.url)] is Status.DISABLED

    outbox.enable_target("rule-1", gone.url, now_ms())
    assert outbox.disabled_targets() == set()


def test_slack_gets_text_and_blocks_and_ok_false_fails(store: ChdbStore, receiver: Receiver) -> None:
    receiver.scripts["/slack-ok"] = [Reply(200, b"ok")]
    receiver.scripts["/slack-bad"] = [Reply(200, b'{"ok": false, "error": "invalid_blocks"}')]
    rule = parse_rule(
        {"name": "NPS low", "metric": "nps", "condition": {"op": "below", "threshold": 20}, "for": "0s"},
        metrics=DIRECTIONS,
        rule_id="rule-1",
    )
    assert isinstance(rule, MetricRule)
    reading = {
        "value": 12.5,
        "n": 80,
        "ci": [1.0, 24.0],
        "previous": {"value": 30.0, "n": 90},
        "delta": -17.5,
        "significant": True,
    }
    _, transition = evaluate(rule, RuleState(), reading, now_ms())
    assert transition is not None and transition.notification_id is not None
    body = alert_payload(rule, transition)
    targets = (
        Target("slack", receiver.url("/slack-ok")),
        Target("slack", receiver.url("/slack-bad")),
        Target("webhook", receiver.url("/hook")),
    )
    outbox = StoreOutbox(store)
    outbox.add(Notification(transition.notification_id, rule.id, "alert", body, targets), now_ms())
    asyncio.run(until_settled(Dispatcher(outbox, schedule=FAST), outbox))

    slack = json.loads(receiver.at("/slack-ok")[0].body)
    assert set(slack) == {"text", "blocks"} and isinstance(slack["blocks"], list)
    assert "NPS low" in slack["text"] and "12.5" in slack["text"] and "FIRING" in slack["text"]
    assert json.loads(receiver.at("/hook")[0].body) == body
    status = {d.target.url: d.status for d in outbox.deliveries()}
    assert status[receiver.url("/slack-ok")] is Status.DELIVERED
    assert status[receiver.url("/slack-bad")] is Status.FAILED  # not retried
    assert len(receiver.at("/slack-bad")) == 1
    bad = next(a for a in outbox.attempts() if a.url.endswith("/slack-bad"))
    assert bad.outcome == "failed" and "invalid_blocks" in bad.error


def test_client_errors_fail_and_unreachable_targets_retry(store: ChdbStore, receiver: Receiver) -> None:
    receiver.scripts["/bad"] = [Reply(400, b"bad request")]
    receiver.scripts["/moved"] = [Reply(301, headers={"Location": receiver.url("/live")})]
    closed = Receiver()
    dead_url = closed.url("/nobody")
    closed.close()  # a port nobody listens on any more
    outbox = StoreOutbox(store)
    targets = (
        Target("webhook", receiver.url("/bad")),
        Target("webhook", receiver.url("/moved")),
        Target("webhook", dead_url),
    )
    outbox.add(notification(*targets), now_ms())
    asyncio.run(
        until_settled(Dispatcher(outbox, schedule=Schedule(base_s=0.02, max_attempts=2, jitter=0.0)), outbox)
    )
    by_url: dict[str, list[str]] = {}
    for a in sorted(outbox.attempts(), key=lambda a: a.attempt):
        by_url.setdefault(a.url, []).append(a.outcome)
    assert by_url == {
        receiver.url("/bad"): ["failed"],
        receiver.url("/moved"): ["failed"],
        dead_url: ["retry", "retry"],
    }
    assert receiver.at("/live") == []  # the redirect was not followed


def test_on_sent_runs_once_per_delivered_row(store: ChdbStore, receiver: Receiver) -> None:
    sent: list[Delivery] = []

    async def on_sent(delivery: Delivery) -> None:
        sent.append(delivery)

    receiver.scripts["/x"] = [Reply(500), Reply(200)]
    outbox = StoreOutbox(store)
    outbox.add(
        notification(Target("webhook", receiver.url("/x")), Target("webhook", receiver.url("/y"))), now_ms()
    )
    asyncio.run(until_settled(Dispatcher(outbox, schedule=FAST, on_sent=on_sent), outbox))
    assert sorted(d.target.url for d in sent) == [receiver.url("/x"), receiver.url("/y")]
    assert all(d.status is Status.DELIVERED for d in sent)


def test_adding_the_same_notification_twice_delivers_once(store: ChdbStore, receiver: Receiver) -> None:
    outbox = StoreOutbox(store)
    target = Target("webhook", receiver.url("/once"))
    assert outbox.add(notification(target, nid="msg_dup"), now_ms()) == 1
    assert outbox.add(notification(target, nid="msg_dup"), now_ms()) == 0
    asyncio.run(until_settled(Dispatcher(outbox, schedule=FAST), outbox))
    assert outbox.add(notification(target, nid="msg_dup"), now_ms()) == 0  # also after delivery
    asyncio.run(until_settled(Dispatcher(outbox, schedule=FAST), outbox))
    assert len(receiver.at("/once")) == 1


def test_a_pending_notification_survives_a_restart_and_is_delivered_once(
    db: tuple[Path, str], receiver: Receiver
) -> None:
    """Crash after a failed attempt; the reopened store still has the row, re-adding it changes nothing,
    and a receiver that dedupes by webhook-id processes it exactly once."""
    receiver.scripts["/dedupe"] = [Reply(503), Reply(200)]
    target = Target("webhook", receiver.url("/dedupe"), SECRET)

    first = ChdbStore(*db)
    outbox = StoreOutbox(first)
    outbox.add(notification(target, nid="msg_restart"), now_ms())
    records = asyncio.run(_deliver_once(Dispatcher(outbox, schedule=Schedule(base_s=0.2, jitter=0.0))))
    assert [r.outcome for r in records] == ["retry"]
    first.close()  # the process stops with the notification pending

    second = ChdbStore(*db)
    try:
        outbox = StoreOutbox(second)
        assert outbox.add(notification(target, nid="msg_restart"), now_ms()) == 0  # the evaluator re-adds it
        (row,) = outbox.deliveries()
        assert (row.status, row.attempts) == (Status.PENDING, 1)
        time.sleep(0.25)
        asyncio.run(until_settled(Dispatcher(outbox, schedule=FAST), outbox))
        asyncio.run(until_settled(Dispatcher(outbox, schedule=FAST), outbox))
        assert [a.attempt for a in sorted(outbox.attempts(), key=lambda a: a.attempt)] == [1, 2]
    finally:
        second.close()

    processed = {
        r.headers["webhook-id"] for r in receiver.at("/dedupe") if Webhook(SECRET).verify(r.body, r.headers)
    }
    assert processed == {"msg_restart"} and len(receiver.at("/dedupe")) == 2


# ---------------------------------------------------------------------------------- alert repository


def test_rules_are_stored_with_secrets_versioned_and_deletable(db: tuple[Path, str]) -> None:
    store = ChdbStore(*db)
    repo = AlertRepository(store)
    data = {
        "name": "NPS low",
        "metric": "nps",
        "condition": {"op": "below", "threshold": 20},
        "notify": [{"url": "https://h.example/x", "secret": SECRET}],
    }
    rule = parse_rule(data, metrics=DIRECTIONS, rule_id="rule-1")
    other = parse_rule(
        {"type": "response", "name": "Detractors", "survey": "nps"}, metrics=DIRECTIONS, rule_id="rule-2"
    )
    repo.put_rule(rule, 1)
    repo.put_rule(other, 2)
    assert repo.rule_json("rule-1") == rule_to_json(rule, mask_secrets=False)
    edited = parse_rule({**data, "severity": "critical"}, metrics=DIRECTIONS, rule_id="rule-1")
    repo.put_rule(edited, 3)
    assert repo.rules(DIRECTIONS) == [other, edited]
    assert repo.delete_rule("rule-2", 4) and not repo.delete_rule("rule-2", 5)
    assert repo.rule_json("rule-2") is None
    store.close()
    reopened = ChdbStore(*db)
    try:
        (only,) = AlertRepository(reopened).rules(DIRECTIONS)
        assert (
            isinstance(only, MetricRule) and only.severity == "critical" and only.notify[0].secret == SECRET
        )
    finally:
        reopened.close()


def test_states_transitions_and_cooldowns_survive_a_reopen(db: tuple[Path, str]) -> None:
    rule = parse_rule(
        {"name": "NPS low", "metric": "nps", "condition": {"op": "below", "threshold": 20}},
        metrics=DIRECTIONS,
        rule_id="rule-1",
    )
    assert isinstance(rule, MetricRule)
    t0 = 1_793_491_200_000
    reading = {
        "value": 5.0,
        "n": 100,
        "ci": [0.0, 10.0],
        "previous": {"value": 9.0, "n": 100},
        "delta": -4.0,
        "significant": False,
    }
    store = ChdbStore(*db)
    repo = AlertRepository(store)
    state, pending = evaluate(rule, RuleState(), reading, t0)
    repo.put_state(rule.id, state)
    assert pending is not None
    repo.add_transitions([pending])
    repo.set_last_response_ms("rr", "c1", t0 - 5)
    repo.set_last_response_ms("rr", "c1", t0)
    store.close()

    store = ChdbStore(*db)
    try:
        repo = AlertRepository(store)
        restored = repo.states()["rule-1"]
        assert restored == state and restored.state == "pending"
        state, firing = evaluate(rule, restored, reading, t0 + rule.for_ms)  # the for clock kept running
        assert firing is not None and firing.notify == "firing"
        repo.put_state(rule.id, state)
        repo.add_transitions([firing])
        assert repo.transitions("rule-1") == [firing, pending]
        assert repo.transitions(limit=1) == [firing]
        assert repo.states()["rule-1"].state == "firing"
        assert repo.last_response_ms("rr", "c1") == t0 and repo.last_response_ms("rr", "c2") is None
        repo.delete_state("rule-1")
        assert repo.states()["rule-1"] == RuleState()
    finally:
        store.close()


def test_response_rule_round_trips_through_the_store(store: ChdbStore) -> None:
    repo = AlertRepository(store)
    rule = parse_rule(
        {
            "type": "response",
            "name": "CES",
            "survey": "ces",
            "scores": [7],
            "filters": {"channel": "phone"},
            "cooldown": "1d",
            "notify": [{"type": "slack", "url": "https://hooks.slack.com/x"}],
        },
        metrics=DIRECTIONS,
        rule_id="rr",
    )
    assert isinstance(rule, ResponseRule)
    repo.put_rule(rule, 1)
    assert repo.rules(DIRECTIONS) == [rule]


class SlowPollOutbox(StoreOutbox):
    """Its second poll reads the rows, then answers only once an attempt was recorded and has ended: the
    poll's answer holds a row that the attempt in flight has delivered since."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.polls = 0
        self.recorded = threading.Event()

    def due(self, now_ms: int, limit: int = 100) -> list[Delivery]:
        rows = super().due(now_ms, limit)
        self.polls += 1
        if self.polls == 2:
            self.recorded.wait(5)
            time.sleep(0.3)
        return rows

    def record(self, attempt: AttemptRecord, updated: Delivery) -> None:
        super().record(attempt, updated)
        self.recorded.set()


def test_an_attempt_that_ends_while_a_poll_runs_is_not_started_again(
    store: ChdbStore, receiver: Receiver
) -> None:
    receiver.scripts["/slow"] = [Reply(200, delay_s=0.3)]
    outbox = SlowPollOutbox(store)
    outbox.add(notification(Target("webhook", receiver.url("/slow"))), now_ms())

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(Dispatcher(outbox, schedule=FAST, poll_interval_s=0.05).run(stop))
        deadline = time.monotonic() + 10
        while outbox.polls < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        stop.set()
        await task

    asyncio.run(go())
    assert outbox.polls >= 4
    assert len(receiver.at("/slow")) == 1
    assert [d.status for d in outbox.deliveries()] == [Status.DELIVERED]
