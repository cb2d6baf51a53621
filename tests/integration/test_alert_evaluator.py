"""The metric-rule evaluator against a counting fake `Reader` and the real alert repository and outbox on
chDB: one read per (window, filters, baseline) group, the `for` and `keep_firing_for` clocks, the write
order, and a restart that neither re-notifies a firing rule nor loses a pending one."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cxpulse.alerts.evaluator import Evaluator, ReadKey, metrics_changed_by
from cxpulse.alerts.service import directions
from cxpulse.domain.alerts.evaluation import AlertState
from cxpulse.domain.alerts.rules.metric import MetricRule
from cxpulse.domain.alerts.rules.rule import parse_rule
from cxpulse.domain.metrics import Dimension, Filters, Reading
from cxpulse.live.feed import ChangeFeed
from cxpulse.notify.outbox import StoreOutbox
from cxpulse.store import migrate
from cxpulse.store.alerts import AlertRepository
from cxpulse.store.chdb_store import ChdbStore

T0 = 1_793_491_200_000
MINUTE = 60_000
HOOK = [{"type": "webhook", "url": "https://hooks.example/alerts"}]


def reading(value: float | None, n: int = 100, previous: float | None = None) -> Reading:
    prev = {"value": previous, "n": n if previous is not None else 0}
    delta = None if value is None or previous is None else value - previous
    return {"value": value, "n": n, "ci": None, "previous": prev, "delta": delta, "significant": True}


@dataclass
class FakeReader:
    """Canned readings per metric (a function of the call, so a test can change the world); counts calls."""

    value: Callable[[str, Filters, int | None], Reading] = lambda m, f, b: reading(10.0)
    calls: list[tuple[tuple[str, ...], int, Filters, int | None]] = field(default_factory=list)
    fail_for: set[str] = field(default_factory=set)

    def pulse(
        self,
        metric_ids: Sequence[str],
        window_ms: int,
        at_ms: int,
        filters: Filters,
        baseline_ms: int | None = None,
    ) -> dict[str, Reading]:
        self.calls.append((tuple(metric_ids), window_ms, filters, baseline_ms))
        if filters.touchpoint in self.fail_for:
            raise RuntimeError("the store is down for this one")
        return {m: self.value(m, filters, baseline_ms) for m in metric_ids}

    def breakdown(
        self, metric_id: str, by: Dimension, window_ms: int, at_ms: int, filters: Filters
    ) -> dict[str, Reading]:
        raise AssertionError("not used")

    def series(
        self, metric_id: str, from_ms: int, to_ms: int, step_ms: int, filters: Filters
    ) -> list[dict[str, Any]]:
        raise AssertionError("not used")

    def journey(self, window_ms: int, at_ms: int, filters: Filters) -> dict[str, dict[str, Reading]]:
        raise AssertionError("not used")

    def outcomes(
        self, survey: str, window_ms: int, horizon_ms: int, at_ms: int, filters: Filters
    ) -> dict[str, Any]:
        raise AssertionError("not used")


@pytest.fixture
def db(chdb_dir: Path) -> Iterator[tuple[Path, str]]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    store = ChdbStore(chdb_dir, database=name)
    migrate(store)
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


def metric_rule(rule_id: str, **fields: Any) -> MetricRule:
    data = {
        "name": f"rule {rule_id}",
        "metric": "nps",
        "condition": {"op": "below", "threshold": 20},
        "notify": HOOK,
    } | fields
    rule = parse_rule(data, metrics=directions(), rule_id=rule_id)
    assert isinstance(rule, MetricRule)
    return rule


def evaluator(store: ChdbStore, reader: FakeReader, rules: list[MetricRule]) -> Evaluator:
    return Evaluator(reader, AlertRepository(store), StoreOutbox(store), lambda: rules)


# ------------------------------------------------------------------------------------------- grouping


def test_200_rules_over_20_groups_are_20_reads(store: ChdbStore) -> None:
    windows = ["1h", "24h", "7d", "30d"]
    filters: list[dict[str, str]] = [
        {},
        {"touchpoint": "checkout"},
        {"channel": "web"},
        {"segment": "pro"},
        {"touchpoint": "checkout", "channel": "web"},
    ]
    metrics = ["nps", "csat", "ces", "fcr", "churn"]
    rules = []
    for i, (window, flt) in enumerate(itertools.product(windows, filters)):
        for j in range(10):
            metric = metrics[j % len(metrics)]
            rules.append(metric_rule(f"r{i}-{j}", metric=metric, window=window, filters=flt, min_samples=1))
    reader = FakeReader()
    transitions = evaluator(store, reader, rules).evaluate(T0)
    assert len(rules) == 200 and len(reader.calls) == 20
    assert len({(w, f, b) for _, w, f, b in reader.calls}) == 20  # each group read once
    assert all(sorted(ids) == sorted(metrics) for ids, *_ in reader.calls)  # all its metrics at once
    assert all(b is None for *_, b in reader.calls)
    assert len(transitions) == 200  # every rule judged (all below 20 with the canned value 10)


def test_rules_with_another_baseline_read_apart_and_threshold_rules_ignore_baselines(
    store: ChdbStore,
) -> None:
    change = {"op": "decrease", "by": 5}
    rules = [
        metric_rule("below", window="24h"),
        metric_rule("prev", window="24h", condition=change),
        metric_rule("week", window="24h", condition=change | {"baseline": "7d"}),
        metric_rule("week2", window="24h", metric="csat", condition=change | {"baseline": "7d"}),
    ]
    assert ReadKey.of(rules[0]) == ReadKey.of(rules[1])
    reader = FakeReader()
    evaluator(store, reader, rules).evaluate(T0)
    assert sorted((ids, b) for ids, _, _, b in reader.calls) == [
        (("nps",), None),
        (("nps", "csat"), 7 * 86_400_000),
    ]


def test_a_failing_read_skips_its_group_only(store: ChdbStore) -> None:
    rules = [
        metric_rule("a", filters={"touchpoint": "broken"}, **{"for": "0s"}),
        metric_rule("b", **{"for": "0s"}),
    ]
    reader = FakeReader(fail_for={"broken"})
    transitions = evaluator(store, reader, rules).evaluate(T0)
    assert [t.rule_id for t in transitions] == ["b"]


# ----------------------------------------------------------------------------------------- the clocks


def test_for_keeps_a_rule_pending_then_fires_once_and_resolves_once(store: ChdbStore) -> None:
    world = {"value": 10.0}
    reader = FakeReader(lambda m, f, b: reading(world["value"]))
    rule = metric_rule("r", **{"for": "5m"}, recover=25)
    ev = evaluator(store, reader, [rule])
    seen: list[dict[str, Any]] = []
    ev.listeners.append(seen.append)
    outbox = StoreOutbox(store)

    assert [t.to_state for t in ev.evaluate(T0)] == [AlertState.PENDING]
    assert ev.evaluate(T0 + 4 * MINUTE) == []
    assert outbox.deliveries() == []
    (firing,) = ev.evaluate(T0 + 5 * MINUTE)
    assert firing.notify == "firing" and firing.from_state is AlertState.PENDING
    assert ev.evaluate(T0 + 6 * MINUTE) == []  # still firing: never repeated
    world["value"] = 22.0  # above the threshold but below `recover`: hysteresis keeps it firing
    assert ev.evaluate(T0 + 7 * MINUTE) == []
    world["value"] = 30.0
    (resolved,) = ev.evaluate(T0 + 8 * MINUTE)
    assert resolved.notify == "resolved" and resolved.to_state is AlertState.OK

    rows = outbox.deliveries()
    bodies = sorted((d.id, d.body) for d in rows)
    assert len(rows) == 2 and {d.kind for d in rows} == {"alert"}
    assert {d.id for d in rows} == {firing.notification_id, resolved.notification_id}
    assert any('"status":"firing"' in b for _, b in bodies) and any(
        '"status":"resolved"' in b for _, b in bodies
    )
    assert [s["to"] for s in seen] == ["pending", "firing", "ok"]
    assert seen[1]["name"] == "rule r" and seen[1]["reading"]["value"] == 10.0
    history = AlertRepository(store).transitions("r")
    assert [(t.from_state, t.to_state) for t in history] == [
        (AlertState.FIRING, AlertState.OK),
        (AlertState.PENDING, AlertState.FIRING),
        (AlertState.OK, AlertState.PENDING),
    ]


def test_keep_firing_for_holds_a_rule_after_its_condition_clears(store: ChdbStore) -> None:
    world = {"value": 10.0}
    reader = FakeReader(lambda m, f, b: reading(world["value"]))
    rule = metric_rule("r", **{"for": "0s", "keep_firing_for": "10m"})
    ev = evaluator(store, reader, [rule])
    assert [t.notify for t in ev.evaluate(T0)] == ["firing"]
    world["value"] = 50.0
    assert ev.evaluate(T0 + MINUTE) == []
    assert ev.evaluate(T0 + 10 * MINUTE) == []
    (resolved,) = ev.evaluate(T0 + 11 * MINUTE)
    assert resolved.notify == "resolved"


def test_too_few_samples_show_no_data_and_never_fire(store: ChdbStore) -> None:
    reader = FakeReader(lambda m, f, b: reading(-50.0, n=5))
    ev = evaluator(store, reader, [metric_rule("r", **{"for": "0s"})])
    (t,) = ev.evaluate(T0)
    assert t.to_state is AlertState.NO_DATA and t.notify is None
    assert StoreOutbox(store).deliveries() == []


def test_a_disabled_rule_resolves_and_is_not_read(store: ChdbStore) -> None:
    reader = FakeReader()
    rule = metric_rule("r", **{"for": "0s"})
    rules = [rule]
    ev = evaluator(store, reader, rules)
    assert [t.notify for t in ev.evaluate(T0)] == ["firing"]
    rules[0] = metric_rule("r", **{"for": "0s"}, enabled=False)
    reader.calls.clear()
    assert [t.notify for t in ev.evaluate(T0 + MINUTE)] == ["resolved"]
    assert reader.calls == [] and ev.evaluate(T0 + 2 * MINUTE) == []


def test_notify_hook_runs_only_when_something_was_queued(store: ChdbStore) -> None:
    woken: list[int] = []
    rule = metric_rule("r", **{"for": "0s"})
    silent = metric_rule("s", **{"for": "0s"}, notify=[])
    ev = Evaluator(FakeReader(), AlertRepository(store), StoreOutbox(store), lambda: [silent])
    ev.on_notify = lambda: woken.append(1)
    assert [t.notify for t in ev.evaluate(T0)] == ["firing"] and woken == []  # no targets, nothing queued
    ev.rules = lambda: [rule]
    ev.evaluate(T0)
    assert woken == [1]


# -------------------------------------------------------------------------------------------- restart


def test_a_restart_keeps_the_pending_clock_and_does_not_renotify(db: tuple[Path, str]) -> None:
    world = {"value": 10.0}
    rules = [metric_rule("slow", **{"for": "5m"}), metric_rule("fast", **{"for": "0s"})]

    first = ChdbStore(*db)
    ev = evaluator(first, FakeReader(lambda m, f, b: reading(world["value"])), rules)
    assert {t.rule_id: t.to_state for t in ev.evaluate(T0)} == {
        "slow": AlertState.PENDING,
        "fast": AlertState.FIRING,
    }
    assert len(StoreOutbox(first).deliveries()) == 1
    first.close()  # the process stops: nothing but the store survives

    second = ChdbStore(*db)
    try:
        ev = evaluator(second, FakeReader(lambda m, f, b: reading(world["value"])), rules)
        assert ev.evaluate(T0 + 2 * MINUTE) == []  # fast stays firing without a second message
        (fired,) = ev.evaluate(T0 + 5 * MINUTE)  # slow's clock started at T0, before the restart
        assert fired.rule_id == "slow" and fired.notify == "firing"
        assert len(StoreOutbox(second).deliveries()) == 2
        assert {r: s.state for r, s in AlertRepository(second).states().items()} == {
            "slow": AlertState.FIRING,
            "fast": AlertState.FIRING,
        }
    finally:
        second.close()


def test_states_are_written_only_when_more_than_the_evaluation_time_changed(store: ChdbStore) -> None:
    rule = metric_rule("r", **{"for": "0s"})
    ev = evaluator(store, FakeReader(), [rule])
    ev.evaluate(T0)

    def versions() -> int:
        return int(store.rows(f"SELECT count() FROM {store.database}.alert_state")[0][0])

    before = versions()
    ev.evaluate(T0 + MINUTE)
    ev.evaluate(T0 + 2 * MINUTE)
    assert versions() == before


# ------------------------------------------------------------------------------------------- the loop

ACTIVE = {"active_customers", "dau", "wau", "mau", "stickiness"}


def test_which_metrics_an_event_type_can_change() -> None:
    assert metrics_changed_by({"login"}) == ACTIVE
    assert metrics_changed_by({"survey_answer"}) == ACTIVE | {"nps", "csat", "ces"}
    assert metrics_changed_by({"support_resolved"}) == ACTIVE | {"fcr", "resolution_time"}
    assert metrics_changed_by({"purchase"}) == ACTIVE | {"referral_rate", "trial_conversion"}
    assert metrics_changed_by({"subscription_cancel"}) == ACTIVE | {"churn", "retention"}


def test_the_loop_evaluates_on_new_events_only_the_rules_they_affect(store: ChdbStore) -> None:
    """Started: every rule. New survey answers: only the NPS rule is read, within the debounce. A change
    nobody described: every rule. A rule change (`wake`): every rule. The interval is an hour, so every
    read here was triggered by the feed or the wake."""
    reader = FakeReader()
    rules = [metric_rule("nps"), metric_rule("fcr", metric="fcr")]
    ev = evaluator(store, reader, rules)
    feed = ChangeFeed()

    async def until_reads(count: int, timeout_s: float = 5.0) -> float:
        t0 = time.monotonic()
        while len(reader.calls) < count:
            assert time.monotonic() - t0 < timeout_s, reader.calls
            await asyncio.sleep(0.01)
        return time.monotonic() - t0

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(ev.run(stop, interval_s=3600, feed=feed, debounce_s=0.2))
        await until_reads(1)  # one group: both metrics in one read
        assert [ids for ids, *_ in reader.calls] == [("nps", "fcr")]
        await asyncio.sleep(0.3)
        ev.touch({"survey_answer"})
        feed.notify()
        assert await until_reads(2) < 1.0
        assert reader.calls[1][0] == ("nps",)
        await asyncio.sleep(0.3)
        feed.notify()
        await until_reads(3)
        assert reader.calls[2][0] == ("nps", "fcr")
        await asyncio.sleep(0.3)
        ev.wake()
        await until_reads(4)
        assert reader.calls[3][0] == ("nps", "fcr")
        stop.set()
        await task

    asyncio.run(go())


def test_reading_states_and_deleting_a_rule_never_wait_for_an_evaluation(store: ChdbStore) -> None:
    release = threading.Event()
    reading_started = threading.Event()

    def slow(m: str, f: Filters, b: int | None) -> Reading:
        reading_started.set()
        release.wait(10)
        return reading(10.0)

    rules = [metric_rule("kept", **{"for": "0s"}), metric_rule("gone", **{"for": "0s"})]
    ev = evaluator(store, FakeReader(slow), rules)
    worker = threading.Thread(target=ev.evaluate, args=(T0,))
    worker.start()
    assert reading_started.wait(10)
    t0 = time.monotonic()
    assert ev.states() == {}
    ev.forget("gone")  # DELETE /v1/alert-rules/gone while the evaluation reads
    assert time.monotonic() - t0 < 1.0
    release.set()
    worker.join(10)
    assert set(ev.states()) == {"kept"}
    assert set(AlertRepository(store).states()) == {"kept"}
    assert [t.rule_id for t in AlertRepository(store).transitions()] == ["kept"]
