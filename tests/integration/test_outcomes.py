"""`GET /v1/outcomes` (SPEC §7): a hand-made cohort computed by hand, a naive oracle on random streams,
and the 4xx of bad parameters."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxpulse.config import Settings
from cxpulse.domain import stats
from cxpulse.domain.outcomes import OUTCOMES
from cxpulse.store import Store, open_store
from cxpulse.store.instrumented import InstrumentedStore
from services.embedded import EmbeddedRuntime
from tests.conftest import T0, event, iso, ms

DAY = 86_400_000
AT = ms(T0)
H, W = 5 * DAY, 10 * DAY  # horizon, window: the cohort answered in [AT − 15d, AT − 5d)


class Recording(InstrumentedStore):
    """The store, noting the SQL of every read (which way an outcome reading went)."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.reads: list[str] = []

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        self.reads.append(sql)
        return super().rows(sql, params)


@contextmanager
def running(chdb_dir: Path) -> Iterator[tuple[TestClient, EmbeddedRuntime, Recording]]:
    cfg = Settings(data_dir=str(chdb_dir), database=f"o_{uuid.uuid4().hex[:12]}")
    store = Recording(open_store(cfg))
    runtime = EmbeddedRuntime.open(cfg, store)
    try:
        yield TestClient(runtime.app(cfg)), runtime, store
    finally:
        runtime.processor.flush()
        runtime.store.execute(f"DROP DATABASE IF EXISTS {cfg.database} SYNC")
        runtime.store.close()


@contextmanager
def service(chdb_dir: Path) -> Iterator[TestClient]:
    with running(chdb_dir) as (client, _, _):
        yield client


def snapshot_now(runtime: EmbeddedRuntime) -> None:
    """Store what was posted and build the outcome snapshot up to it (what the rollup loop does)."""
    runtime.processor.flush()
    runtime.processor.roll_up()
    assert runtime.processor.rollups.progress.outcomes is not None


def read_the_snapshot(store: Recording) -> bool:
    """Whether the last outcome reading read the snapshot."""
    last = next(sql for sql in reversed(store.reads) if " AS grp" in sql)
    return "answer_outcomes" in last


def nps(eid: str, cid: str, at: int, score: int, **dims: str) -> dict[str, Any]:
    return event(eid, "survey_answer", at, cid, survey="nps", score=score, **dims)


def get(client: TestClient, **params: str) -> dict[str, Any]:
    response = client.get("/v1/outcomes", params={"window": "10d", "horizon": "5d", "at": iso(AT), **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


HAND_MADE = [
    # promoters
    nps("p1a", "p1", AT - 14 * DAY, 10),
    event("p1b", "purchase", AT - 14 * DAY + H, "p1"),  # exactly at the horizon's end: counted
    nps("p2a", "p2", AT - 12 * DAY, 9, touchpoint="checkout"),
    event("p2b", "purchase", AT - 12 * DAY + H + 1, "p2"),  # just after: not counted
    event("c9a", "purchase", AT - 11 * DAY, "c9", referrer_id="p2"),  # p2 recommends in practice
    nps("p3a", "p3", AT - 13 * DAY, 3),  # answered twice: the latest (a 9) counts
    event("p3b", "purchase", AT - 13 * DAY + 3_600_000, "p3"),  # before the latest answer: not counted
    nps("p3c", "p3", AT - 7 * DAY, 9),
    event("p3d", "subscription_cancel", AT - 6 * DAY, "p3"),
    nps("p4a", "p4", AT - 15 * DAY, 9),  # at the cohort's first instant: in
    # detractors
    nps("d1a", "d1", AT - 10 * DAY, 2),
    event("d1b", "subscription_cancel", AT - 9 * DAY, "d1"),
    event("d1c", "purchase", AT - 8 * DAY, "d1"),
    nps("d2a", "d2", AT - 9 * DAY, 6),
    nps("d3a", "d3", AT - 5 * DAY, 0),  # at the cohort's end: out
    # outside the cohort
    nps("x1a", "x1", AT - 4 * DAY, 10),
    nps("x2a", "x2", AT - 16 * DAY, 8),
    event("r1a", "purchase", AT - 10 * DAY, "c8", referrer_id="r1"),  # r1 never answered: not counted
]


def share(x: int, n: int) -> dict[str, Any]:
    ci = stats.wilson_interval(x, n)
    return {"value": None if n == 0 else 100 * x / n, "n": n, "ci": None if ci is None else list(ci)}


ANSWERS = [e for e in HAND_MADE if e["type"] == "survey_answer"]
ACTS = [e for e in HAND_MADE if e["type"] != "survey_answer"]


@pytest.mark.parametrize(
    "parts, snapshot_after, reads_snapshot",
    [
        ([HAND_MADE], None, False),  # no snapshot yet: the raw SQL
        ([HAND_MADE], 1, True),  # all in the snapshot
        ([ANSWERS, ACTS], 1, True),  # outcomes stored after it bring next outcomes earlier
        ([ACTS, ANSWERS], 1, False),  # answers of the window stored after it: the raw SQL
    ],
    ids=["raw", "snapshot", "outcomes-after-snapshot", "answers-after-snapshot"],
)
def test_hand_made_cohort(
    chdb_dir: Path, parts: list[list[dict[str, Any]]], snapshot_after: int | None, reads_snapshot: bool
) -> None:
    with running(chdb_dir) as (client, runtime, store):
        for i, part in enumerate(parts, 1):
            assert client.post("/v1/events", json=part).json()["accepted"] == len(part)
            if i == snapshot_after:
                snapshot_now(runtime)
        body = get(client)
        assert read_the_snapshot(store) is reads_snapshot
        assert (body["survey"], body["window"], body["horizon"], body["at"]) == (
            "nps",
            "10d",
            "5d",
            "2026-11-01T00:00:00.000Z",
        )
        assert list(body["groups"]) == ["promoter", "passive", "detractor"]
        promoter, passive, detractor = (body["groups"][g] for g in ("promoter", "passive", "detractor"))
        assert promoter == {
            "customers": 4,  # p1, p2, p3, p4
            "repurchase": share(1, 4),  # p1 (exactly at the end); p2 too late, p3 before its latest answer
            "churned": share(1, 4),  # p3
            "referred": share(1, 4),  # p2
        }
        assert promoter["repurchase"]["value"] == 25.0
        assert detractor == {
            "customers": 2,  # d1, d2 (d3 answered at the cohort's end)
            "repurchase": share(1, 2),
            "churned": share(1, 2),
            "referred": share(0, 2),
        }
        assert passive == {"customers": 0, **{o: {"value": None, "n": 0, "ci": None} for o in OUTCOMES}}
        assert body["significant"] == {
            "repurchase": stats.proportions_significant((1, 4), (1, 2)),
            "churned": stats.proportions_significant((1, 4), (1, 2)),
            "referred": stats.proportions_significant((1, 4), (0, 2)),
        }
        # filters select by the answer's dimensions: only p2 answered at checkout
        checkout = get(client, touchpoint="checkout")
        assert checkout["filters"] == {"touchpoint": "checkout"}
        assert checkout["groups"]["promoter"]["customers"] == 1
        assert checkout["groups"]["promoter"]["referred"]["value"] == 100.0
        assert checkout["significant"] == {"repurchase": None, "churned": None, "referred": None}


def test_csat_and_ces_groups_on_both_scales(chdb_dir: Path) -> None:
    t = AT - 10 * DAY
    items = [
        event("s1", "survey_answer", t, "a", survey="csat", score=5),
        event("s2", "survey_answer", t, "b", survey="csat", score=6, scale="1-7"),
        event("s3", "survey_answer", t, "c", survey="csat", score=3),
        event("s4", "survey_answer", t, "d", survey="csat", score=5, scale="1-7"),
        event("s5", "survey_answer", t, "e", survey="csat", score=2, scale="1-7"),
        event("e1", "survey_answer", t, "a", survey="ces", score=3),
        event("e2", "survey_answer", t, "b", survey="ces", score=4),
        event("e3", "survey_answer", t, "c", survey="ces", score=7),
    ]
    with service(chdb_dir) as client:
        client.post("/v1/events", json=items)
        csat = get(client, survey="csat")["groups"]
        assert {g: v["customers"] for g, v in csat.items()} == {
            "satisfied": 2,
            "neutral": 2,
            "dissatisfied": 1,
        }
        ces = get(client, survey="ces")["groups"]
        assert {g: v["customers"] for g, v in ces.items()} == {"easy": 1, "neutral": 1, "hard": 1}


@pytest.mark.parametrize("snapshot", [False, True], ids=["raw", "snapshot"])
@pytest.mark.parametrize("filters", [{}, {"channel": "web"}], ids=["all", "filtered"])
def test_answers_at_the_same_millisecond_are_ordered_by_event_id(
    chdb_dir: Path, snapshot: bool, filters: dict[str, str]
) -> None:
    """Ties by `occurred_at`, then `event_id` (SPEC §7): the greater id (as text: "c-9" > "c-10") is
    the latest answer — with a filter too (the snapshot finds the latest of the filtered answers another
    way)."""
    t = AT - 10 * DAY
    items = [nps("a-1", "a", t, 0), nps("a-2", "a", t, 10), nps("b-2", "b", t, 10), nps("b-1", "b", t, 0)]
    items += [nps("c-10", "c", t, 0), nps("c-9", "c", t, 10), nps("c-11", "c", t, 8)]
    items = [{**e, "channel": "web"} for e in items]
    with running(chdb_dir) as (client, runtime, store):
        client.post("/v1/events", json=items)
        if snapshot:
            snapshot_now(runtime)
        groups = get(client, **filters)["groups"]
        assert read_the_snapshot(store) is snapshot
    assert {g: v["customers"] for g, v in groups.items()} == {"promoter": 3, "passive": 0, "detractor": 0}


def test_the_snapshot_is_rebuilt_when_due_and_keeps_one_build(chdb_dir: Path) -> None:
    """A rebuild replaces the previous build (one `gen` stored), no sooner than its interval unless
    forced, and never for batches it already covers."""
    with running(chdb_dir) as (client, runtime, _):
        snapshots = runtime.processor.outcomes
        client.post("/v1/events", json=HAND_MADE[:5])
        snapshot_now(runtime)
        first = runtime.processor.rollups.progress.outcomes
        client.post("/v1/events", json=HAND_MADE[5:])
        runtime.processor.flush()
        last = runtime.processor.rollups.progress.stored
        assert first is not None and last > first
        assert not snapshots.refresh(last)  # not due: its interval has not passed
        assert snapshots.refresh(last, force=True)
        assert not snapshots.refresh(last, force=True)  # nothing new
        gens = runtime.store.rows(f"SELECT DISTINCT gen FROM {runtime.store.database}.answer_outcomes")
        assert gens == [[last]]
        answers = sum(e["type"] == "survey_answer" for e in HAND_MADE)
        assert runtime.store.rows(f"SELECT count() FROM {runtime.store.database}.answer_outcomes") == [
            [answers]
        ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"survey": "happiness"}, "survey"),
        ({"horizon": "401d"}, "horizon"),
        ({"window": "3x"}, "window"),
        ({"at": "last tuesday"}, "at"),
        ({"segment": "Pro!"}, "segment"),
    ],
)
def test_bad_parameters_are_400_naming_them(chdb_dir: Path, params: dict[str, str], field: str) -> None:
    with service(chdb_dir) as client:
        response = client.get("/v1/outcomes", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"][0]["field"] == field


def test_a_window_over_the_retention_is_400(chdb_dir: Path) -> None:
    cfg = Settings(data_dir=str(chdb_dir), database=f"o_{uuid.uuid4().hex[:12]}", retention_days=30)
    runtime = EmbeddedRuntime.open(cfg)
    try:
        response = TestClient(runtime.app(cfg)).get("/v1/outcomes", params={"window": "31d"})
    finally:
        runtime.store.execute(f"DROP DATABASE IF EXISTS {cfg.database} SYNC")
        runtime.store.close()
    assert response.status_code == 400 and "retention (30d)" in response.json()["error"]["message"]


# --------------------------------------------------------------------------------- naive oracle, random


def oracle(items: list[dict[str, Any]], window: int, horizon: int, at: int) -> dict[str, list[int]]:
    """Customers and outcomes per group, straight from the SPEC text over deduplicated events."""
    seen: dict[str, dict[str, Any]] = {}
    for item in items:
        seen.setdefault(item["event_id"], item)
    evs = [{**e, "t": ms_of(e["occurred_at"])} for e in seen.values()]
    lo, hi = at - horizon - window, at - horizon
    latest: dict[str, dict[str, Any]] = {}
    for e in evs:
        if e["type"] == "survey_answer" and lo <= e["t"] < hi:
            cur = latest.get(e["customer_id"])
            if cur is None or (e["t"], e["event_id"]) > (cur["t"], cur["event_id"]):
                latest[e["customer_id"]] = e
    out: dict[str, list[int]] = {}
    for cid, answer in latest.items():
        s = answer["score"]
        group = "promoter" if s >= 9 else "passive" if s >= 7 else "detractor"

        def within(e: dict[str, Any], a: dict[str, Any] = answer) -> bool:
            return bool(a["t"] < e["t"] <= a["t"] + horizon)

        flags = [
            any(e["type"] == "purchase" and e["customer_id"] == cid and within(e) for e in evs),
            any(e["type"] == "subscription_cancel" and e["customer_id"] == cid and within(e) for e in evs),
            any(e["type"] == "purchase" and e.get("referrer_id") == cid and within(e) for e in evs),
        ]
        row = out.setdefault(group, [0, 0, 0, 0])
        row[0] += 1
        for i, flag in enumerate(flags):
            row[i + 1] += int(flag)
    return out


def ms_of(text: str) -> int:
    from cxpulse.domain.validation import parse_timestamp_ms

    return parse_timestamp_ms(text)


CUSTOMERS = [f"k{i}" for i in range(6)]


@st.composite
def stream(draw: st.DrawFn) -> list[dict[str, Any]]:
    items = []
    for i in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["survey_answer", "survey_answer", "purchase", "subscription_cancel"]))
        t = AT - draw(st.sampled_from([0, 1, 5 * DAY, 15 * DAY])) - draw(st.integers(0, 20 * DAY))
        item = event(f"e{i}", kind, t, draw(st.sampled_from(CUSTOMERS)))
        if kind == "survey_answer":
            item.update(survey="nps", score=draw(st.integers(0, 10)))
        elif kind == "purchase" and draw(st.booleans()):
            item["referrer_id"] = draw(st.sampled_from([*CUSTOMERS, "stranger"]))
        items.append(item)
    # duplicates: a repeat of an id (first accepted wins, whatever its content), then late arrivals
    for _ in range(draw(st.integers(0, 5))):
        copy = dict(draw(st.sampled_from(items)))
        copy["customer_id"] = draw(st.sampled_from(CUSTOMERS))
        items.append(copy)
    return draw(st.permutations(items))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=stream(), batches=st.integers(1, 3), snapshot=st.sampled_from(["none", "any", "answers first"]))
def test_equals_a_naive_computation_on_random_streams(
    chdb_dir: Path, items: list[dict[str, Any]], batches: int, snapshot: str
) -> None:
    """The reading equals the oracle with no snapshot, with one built after the first batch, and with one
    built after the answers when only outcomes come after it (the reading then reads it)."""
    if snapshot == "answers first":
        items = sorted(items, key=lambda e: e["type"] != "survey_answer")
    size = -(-len(items) // batches)
    parts = [items[i : i + size] for i in range(0, len(items), size)]
    if snapshot == "answers first":
        answered = sum(e["type"] == "survey_answer" for e in items)
        parts = [items[:answered], *[items[answered:][i : i + size] for i in range(0, len(items), size)]]
    with running(chdb_dir) as (client, runtime, store):
        for i, part in enumerate(parts):
            if part:
                assert client.post("/v1/events", json=part).status_code in (202, 422)
            if i == 0 and snapshot != "none":
                snapshot_now(runtime)
        body = get(client)
        if snapshot == "answers first":
            assert read_the_snapshot(store)
    expected = oracle(items, W, H, AT)
    for group, got in body["groups"].items():
        want = expected.get(group, [0, 0, 0, 0])
        assert got["customers"] == want[0], (group, got, want)
        assert [got[o]["n"] for o in OUTCOMES] == [want[0]] * 3
        assert [round(got[o]["value"] * want[0] / 100) if want[0] else None for o in OUTCOMES] == (
            want[1:] if want[0] else [None] * 3
        ), (group, got, want)


def test_a_failed_rebuild_is_logged_and_readings_stay_exact(
    chdb_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with running(chdb_dir) as (client, runtime, store):
        client.post("/v1/events", json=HAND_MADE)
        runtime.processor.flush()
        runtime.store.execute(f"DROP TABLE {runtime.store.database}.answer_outcomes")
        assert not runtime.processor.outcomes.refresh(runtime.processor.rollups.progress.stored, force=True)
        assert "outcome snapshot rebuild failed" in caplog.text
        body = get(client)
        assert not read_the_snapshot(store)
    assert body["groups"]["promoter"]["customers"] == 4
    assert body["groups"]["detractor"]["churned"] == share(1, 2)
