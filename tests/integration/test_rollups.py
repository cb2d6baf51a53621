"""Rollups (migration 003) on the real engine: readings equal the raw SQL's exactly, at any `at` and window.

The reference is the same store read through the raw SQL (`RawSQL`, a second handle of it). Covered:
random streams with random batching and flushes (hypothesis), edges not aligned to days or hours, late
events after their day was rolled up, batches not rolled up yet, retracted fact versions, a flush
interrupted after the signed fact rows were written, events bulk-inserted behind the processor's back,
and the switch to raw SQL once a distributed writer stored rows.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxpulse.config import Settings
from cxpulse.domain.metrics import METRICS, Dimension, Filters, Reading
from cxpulse.pipeline.output import Output, StoreWriter
from cxpulse.pipeline.processor import Processor
from cxpulse.reading import PulseReader
from cxpulse.store.base import Store
from cxpulse.store.chdb_store import ChdbStore
from cxpulse.store.migrations import apply_migrations, migrations
from cxpulse.store.repository import Repository
from cxpulse.store.snapshot import RawSQL, read_view, rollups_readable
from services.embedded import EmbeddedRuntime
from tests.conftest import T0, iso, ms, validated

HOUR = 3_600_000
DAY = 24 * HOUR
AT = ms(T0)
START = AT - 40 * DAY
NOW = AT + 30 * DAY
Item = dict[str, Any]


@contextmanager
def fresh_runtime(chdb_dir: Path) -> Iterator[EmbeddedRuntime]:
    rt = EmbeddedRuntime.open(Settings(data_dir=str(chdb_dir), database=f"r_{uuid.uuid4().hex[:12]}"))
    try:
        yield rt
    finally:
        rt.processor.flush()
        rt.store.execute(f"DROP DATABASE IF EXISTS {rt.store.database}")
        rt.close()


@pytest.fixture
def rt(chdb_dir: Path) -> Iterator[EmbeddedRuntime]:
    with fresh_runtime(chdb_dir) as runtime:
        yield runtime


def close(a: Any, b: Any, where: str = "") -> None:
    """Equal readings: exact structure, floats to 1e-9 (sums in another order)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-9), where
    else:
        assert a == b, where


def compare(store: Store, ats: Sequence[int], windows: Sequence[int], series: bool = True) -> int:
    """Every metric's pulse (several filters), breakdowns and series, rollups against raw; returns how many
    readings had a value."""
    fast, raw = PulseReader(store), PulseReader(RawSQL(store))
    assert rollups_readable(store)
    valued = 0
    for at in ats:
        for window in windows:
            for flt in (Filters(), Filters(channel="web"), Filters(segment="pro", touchpoint="usage")):
                got = fast.pulse(list(METRICS), window, at, flt)
                close(got, raw.pulse(list(METRICS), window, at, flt), f"pulse {at} {window} {flt}")
                valued += sum(r["value"] is not None for r in got.values())
            if at != ats[0]:
                continue
            for metric in METRICS:
                close(
                    fast.breakdown(metric, Dimension.CHANNEL, window, at, Filters()),
                    raw.breakdown(metric, Dimension.CHANNEL, window, at, Filters()),
                    f"breakdown {metric} {at} {window}",
                )
    if series:
        for metric in METRICS:
            for step, count in ((DAY, 12), (6 * HOUR + 1, 10)):
                frm = ats[0] - count * step
                close(
                    fast.series(metric, frm, ats[0], step, Filters(segment="pro")),
                    raw.series(metric, frm, ats[0], step, Filters(segment="pro")),
                    f"series {metric} {step}",
                )
    return valued


# --- random streams ---------------------------------------------------------------------------------------

_instants = st.one_of(
    st.integers(START, AT + DAY),
    # near day and hour boundaries, where a reading's pieces meet
    st.builds(
        lambda d, h, off: START + d * DAY + h * HOUR + off,
        st.integers(0, 40),
        st.sampled_from([0, 0, 1, 23]),
        st.sampled_from([-1, 0, 0, 1, 1800_000]),
    ),
)
KINDS = [
    "login",
    "login",
    "survey_answer",
    "survey_answer",
    "purchase",
    "support_contact",
    "support_resolved",
    "trial_start",
    "subscription_start",
    "subscription_cancel",
]


@st.composite
def _item(draw: st.DrawFn) -> Item:
    kind = draw(st.sampled_from(KINDS))
    item: Item = {
        "type": kind,
        "occurred_at": iso(draw(_instants)),
        "customer_id": draw(st.sampled_from(["a", "b", "c", "d", "e"])),
        **draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "channel": st.sampled_from(["web", "phone"]),
                    "segment": st.sampled_from(["free", "pro"]),
                    "touchpoint": st.sampled_from(["usage", "app"]),
                },
            )
        ),
    }
    if kind == "survey_answer":
        survey = draw(st.sampled_from(["nps", "csat", "csat7", "ces"]))
        if survey == "nps":
            item.update(survey="nps", score=draw(st.integers(0, 10)))
        elif survey == "csat":
            item.update(survey="csat", score=draw(st.integers(1, 5)))
        elif survey == "csat7":
            item.update(survey="csat", scale="1-7", score=draw(st.integers(1, 7)))
        else:
            item.update(survey="ces", score=draw(st.integers(1, 7)))
    elif kind == "purchase":
        item.update(draw(st.sampled_from([{}, {"referral": True}])))
    elif kind.startswith("support_"):
        item["case_id"] = draw(st.sampled_from(["K1", "K2"]))
    elif kind == "trial_start":
        item["trial_days"] = draw(st.integers(1, 20))
    return item


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[list[Item], bool]]:
    """Batches of distinct events, each with whether the processor flushes after it."""
    items = [
        {"event_id": f"e{i}", **it} for i, it in enumerate(draw(st.lists(_item(), min_size=5, max_size=60)))
    ]
    cuts = sorted(draw(st.lists(st.integers(0, len(items)), max_size=5)))
    batches = [items[a:b] for a, b in zip([0, *cuts], [*cuts, len(items)], strict=True) if a < b]
    return [(b, draw(st.booleans())) for b in batches]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    stream=streams(),
    at=st.one_of(st.just(AT), st.integers(AT - 5 * DAY, AT + DAY)),
    window=st.sampled_from([HOUR, DAY, 7 * DAY, 30 * DAY, 3 * DAY + 5 * HOUR + 17]),
)
def test_random_streams_read_the_same_from_rollups(
    chdb_dir: Path, stream: list[tuple[list[Item], bool]], at: int, window: int
) -> None:
    with fresh_runtime(chdb_dir) as rt:
        rt.processor.flush_interval_s = 3600  # only the drawn flushes
        for batch, flush in stream:
            rt.processor.process_many([validated(batch, NOW)], flush=flush)
        compare(rt.store, [at], [window], series=False)  # whatever is flushed or not
        rt.processor.flush()
        compare(rt.store, [at], [window])


# --- the cases a random stream rarely draws ---------------------------------------------------------------


def ingest(rt: EmbeddedRuntime, items: list[Item], flush: bool = True) -> None:
    rt.processor.process_many([validated(items, NOW)], flush=flush)
    if flush:
        rt.processor.roll_up()


def everything(prefix: str, t: int, customer: str = "c1") -> list[Item]:
    """One event of each kind at `t` (a resolved case, a trial, a subscription and a survey answer)."""
    return [
        {"event_id": f"{prefix}-l", "type": "login", "occurred_at": iso(t), "customer_id": customer},
        {
            "event_id": f"{prefix}-n",
            "type": "survey_answer",
            "occurred_at": iso(t),
            "customer_id": customer,
            "survey": "nps",
            "score": 9,
            "channel": "web",
        },
        {"event_id": f"{prefix}-p", "type": "purchase", "occurred_at": iso(t), "customer_id": customer},
        {
            "event_id": f"{prefix}-c",
            "type": "support_contact",
            "occurred_at": iso(t),
            "customer_id": customer,
            "case_id": prefix,
        },
        {
            "event_id": f"{prefix}-r",
            "type": "support_resolved",
            "occurred_at": iso(t + HOUR),
            "customer_id": customer,
            "case_id": prefix,
        },
        {"event_id": f"{prefix}-t", "type": "trial_start", "occurred_at": iso(t), "customer_id": customer},
        {
            "event_id": f"{prefix}-s",
            "type": "subscription_start",
            "occurred_at": iso(t),
            "customer_id": customer,
        },
    ]


EDGE_ATS = [AT + 13 * HOUR + 7, AT, AT - 1, AT - HOUR - 1]
EDGE_WINDOWS = [HOUR, DAY + 1, 7 * DAY, 30 * DAY]


def test_edges_at_day_and_hour_boundaries(rt: EmbeddedRuntime) -> None:
    items = []
    for i, t in enumerate([AT - 7 * DAY, AT - DAY, AT - DAY - 1, AT - HOUR, AT - 1, AT, AT - 30 * DAY]):
        items += everything(f"k{i}", t, f"c{i % 3}")
    ingest(rt, items)
    assert compare(rt.store, EDGE_ATS, EDGE_WINDOWS, series=False) > 100


def rolled(store: Store, table: str) -> int:
    (row,) = store.rows(f"SELECT sum(n) FROM {store.database}.{table} WHERE dims = 0")
    return int(row[0])


def test_a_late_event_lands_in_its_own_day(rt: EmbeddedRuntime) -> None:
    ingest(rt, everything("now", AT - HOUR))
    before = PulseReader(rt.store).pulse(["nps", "active_customers"], 30 * DAY, AT, Filters())
    assert rolled(rt.store, "event_counts_1d") == 2  # the answer and the purchase
    late = everything("late", AT - 20 * DAY + 5, "c9")
    ingest(rt, late)
    after = PulseReader(rt.store).pulse(["nps", "active_customers"], 30 * DAY, AT, Filters())
    assert (after["nps"]["n"], after["active_customers"]["value"]) == (before["nps"]["n"] + 1, 2)
    bucket = (AT - 20 * DAY) // DAY * DAY
    (day,) = rt.store.rows(
        f"SELECT sum(n) FROM {rt.store.database}.event_counts_1d WHERE dims = 0 AND bucket = {bucket}"
    )
    assert day == [2]
    compare(rt.store, [AT, AT - 20 * DAY + HOUR], EDGE_WINDOWS)


def test_batches_not_rolled_up_yet_are_read_from_events(rt: EmbeddedRuntime) -> None:
    ingest(rt, everything("a", AT - 3 * DAY))
    rt.processor.flush_interval_s = 3600
    ingest(rt, everything("b", AT - 2 * DAY, "c2"), flush=False)  # stored, not rolled up
    assert rolled(rt.store, "event_counts_1d") == 2
    r = PulseReader(rt.store).pulse(["nps", "active_customers", "referral_rate"], 7 * DAY, AT, Filters())
    assert (r["nps"]["n"], r["active_customers"]["value"], r["referral_rate"]["n"]) == (2, 2, 2)
    compare(rt.store, [AT], [7 * DAY], series=False)


def test_a_changed_fact_is_retracted_and_readings_follow(rt: EmbeddedRuntime) -> None:
    t = AT - 5 * DAY
    case = [
        {"event_id": "c1", "type": "support_contact", "occurred_at": iso(t), "customer_id": "x"},
        {"event_id": "r1", "type": "support_resolved", "occurred_at": iso(t + HOUR), "customer_id": "x"},
    ]
    case = [{**e, "case_id": "K"} for e in case]
    ingest(rt, case)
    assert PulseReader(rt.store).pulse(["fcr"], 7 * DAY, AT, Filters())["fcr"]["value"] == 100.0
    # a re-contact, then an earlier resolution: the fact changes twice, each flush retracts the last one
    ingest(rt, [{**case[0], "event_id": "c2", "occurred_at": iso(t + 2 * DAY)}])
    ingest(rt, [{**case[1], "event_id": "r0", "occurred_at": iso(t - 3 * DAY), "channel": "phone"}])
    rows = rt.store.rows(
        f"SELECT resolved_ms, sign FROM {rt.store.database}.case_facts ORDER BY resolved_ms, sign"
    )
    assert sorted(s for _, s in rows) == [-1, -1, 1, 1, 1]
    assert sum(s for _, s in rows) == 1
    compare(rt.store, [AT, t + DAY], [DAY, 7 * DAY, 30 * DAY], series=False)


def test_a_flush_cut_short_after_the_signed_rows_is_reconciled(rt: EmbeddedRuntime) -> None:
    ingest(rt, everything("a", AT - 9 * DAY))
    rt.processor.flush_interval_s = 3600
    later = [
        *everything("b", AT - 8 * DAY),
        {
            "event_id": "re",
            "type": "support_contact",
            "occurred_at": iso(AT - 9 * DAY + 2 * HOUR),
            "case_id": "a",
        },
        {"event_id": "cx", "type": "subscription_cancel", "occurred_at": iso(AT - 3 * DAY)},
    ]
    later[-2:] = [{**e, "customer_id": "c1"} for e in later[-2:]]
    ingest(rt, later, flush=False)

    def crash(*_: Any, **__: Any) -> None:
        raise RuntimeError("killed")

    rt.processor.repo.upsert_facts = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        rt.processor.flush()  # the signed rows are written, the state and checkpoint are not
    del rt.processor.repo.upsert_facts
    rt.processor = Processor(Repository(rt.store))  # the crashed one is gone
    fresh = Processor(Repository(rt.store))
    assert fresh.recover() > 0
    held = fresh.signed_facts.net_facts(["c1"])
    assert all(net == 1 for _, _, net in held)
    assert len(held) == 4  # cases a and b, trials a and b
    ((subscriber, net),) = fresh.signed_facts.net_subscribers(["c1"])
    assert net == 1 and len(subscriber["started"]) == 2  # starts a and b
    compare(rt.store, [AT, AT - 8 * DAY + HOUR], [DAY, 7 * DAY, 30 * DAY], series=False)
    assert Processor(Repository(rt.store)).recover() == 0
    assert fresh.signed_facts.net_facts(["c1"]) == held
    assert fresh.signed_facts.net_subscribers(["c1"]) == [(subscriber, 1)]


def test_events_stored_behind_the_processor_are_caught_up_at_recovery(rt: EmbeddedRuntime) -> None:
    ingest(rt, everything("a", AT - 2 * DAY))
    rows = [
        {**e.to_row(), "received_ms": NOW, "batch_seq": 99}
        for e in validated(everything("bulk", AT - 6 * DAY, "z") + everything("bulk2", AT - HOUR, "y"), NOW)
    ]
    rt.store.insert("events", rows)  # a bulk import: stored, not folded, numbered nor rolled up
    Processor(Repository(rt.store)).recover()  # the day bitmaps merged from the hour ones
    assert rolled(rt.store, "event_counts_1d") == 6
    (numbers,) = rt.store.rows(f"SELECT count(), max(num) FROM {rt.store.database}.customer_numbers")
    assert numbers == [3, 3]
    assert dim_sets(rt.store) == {
        "active_1d": [0, 1, 2, 4, 7],
        "active_1h": [0, 1, 2, 4, 7],
        "active_5m": [0, 1, 2, 4],
    }
    compare(rt.store, [AT, AT - 5 * DAY], [DAY, 7 * DAY], series=False)


def dim_sets(store: Store) -> dict[str, list[int]]:
    """The dimension sets each active table holds rows of."""
    db = store.database
    sql = " UNION ALL ".join(
        f"SELECT '{t}', groupUniqArray(dims) FROM {db}.{t}" for t in ("active_1d", "active_1h", "active_5m")
    )
    return {table: sorted(sets) for table, sets in store.rows(sql)}


def test_a_distributed_writer_switches_readers_to_raw_sql(rt: EmbeddedRuntime) -> None:
    ingest(rt, everything("a", AT - 2 * DAY))
    assert rollups_readable(rt.store)
    rows = [
        {**e.to_row(), "received_ms": NOW, "batch_seq": 0}
        for e in validated(everything("w", AT - DAY, "w"), NOW)
    ]
    StoreWriter(rt.store).write([Output(events=rows)])
    assert not rollups_readable(rt.store)
    r = PulseReader(rt.store).pulse(["nps", "active_customers"], 7 * DAY, AT, Filters())
    assert (r["nps"]["n"], r["active_customers"]["value"]) == (2, 2)


def test_every_reading_kind_over_a_rich_history(rt: EmbeddedRuntime) -> None:
    from tests.integration.test_kpis import rich_events

    items = rich_events(seed=11, end=AT + 2 * DAY, days=40)
    half = len(items) // 2
    ingest(rt, items[:half])
    ingest(rt, items[half:])
    assert compare(rt.store, [AT, AT - 3 * DAY + 5 * HOUR + 3], [DAY, 7 * DAY, 30 * DAY]) > 100


def _readings(store: Store, at: int) -> dict[str, Reading]:
    return PulseReader(store).pulse(list(METRICS), 30 * DAY, at, Filters())


def test_readings_of_a_reopened_store(chdb_dir: Path) -> None:
    settings_ = Settings(data_dir=str(chdb_dir), database=f"r_{uuid.uuid4().hex[:12]}")
    rt = EmbeddedRuntime.open(settings_)
    try:
        ingest(rt, everything("a", AT - 2 * DAY) + everything("b", AT - 40 * HOUR, "c2"))
        before = _readings(rt.store, AT)
        rt.close()
        rt = EmbeddedRuntime.open(settings_)  # the number index is refilled, the watermarks read again
        close(_readings(rt.store, AT), before)
        ingest(rt, everything("c", AT - 3 * HOUR, "c3"))
        assert _readings(rt.store, AT)["active_customers"]["value"] == 3
        compare(rt.store, [AT], [DAY, 7 * DAY], series=False)
    finally:
        rt.store.execute(f"DROP DATABASE IF EXISTS {settings_.database}")
        rt.close()


def test_a_store_rolled_up_before_migrations_005_and_006_reads_the_same_after_them(
    chdb_dir: Path, tmp_path: Path
) -> None:
    """A store written under migrations 001–004 reads the same after 005 recreated its bitmap tables
    (empty, 32-row granules; the next start rebuilt them from the events) and 006 copied its subscriber rows
    into one row per interval (and derives them from every later insert)."""
    before_005 = tmp_path / "migrations"
    before_005.mkdir()
    for m in migrations():
        if m.version < 5:
            shutil.copy(m.path, before_005)
    settings_ = Settings(data_dir=str(chdb_dir), database=f"r_{uuid.uuid4().hex[:12]}")
    store = ChdbStore(chdb_dir, database=settings_.database)
    apply_migrations(store, before_005)
    old = Processor(Repository(store))
    old.recover()
    items = [e for i in range(6) for e in everything(f"g{i}", AT - i * 9 * HOUR - 7, f"c{i % 4}")]
    items.append(
        {
            "event_id": "x",
            "type": "subscription_cancel",
            "occurred_at": iso(AT - 2 * HOUR),
            "customer_id": "c1",
        }
    )
    old.process_many([validated(items, NOW)], flush=True)
    old.roll_up()
    table = f"{settings_.database}.active_1d"

    def granularity(name: str = "active_1d") -> str:
        (create,) = store.rows(f"SHOW CREATE TABLE {settings_.database}.{name}")[0]
        return str(create)

    assert "index_granularity = 8192" in granularity()
    before = PulseReader(RawSQL(store)).pulse(list(METRICS), DAY, AT, Filters())
    store.close()
    rt = EmbeddedRuntime.open(settings_)  # a new start: applies 005 and 006, then recovery rolls up again
    store = rt.store
    try:
        for name in ("active_1d", "active_1h", "active_5m"):
            assert "index_granularity = 32" in granularity(name)
            assert "AggregatingMergeTree" in granularity(name)
        assert store.rows(f"SELECT count() FROM {table} WHERE dims = 0")[0][0] >= 2
        marks = rt.processor.rollups.watermarks()
        assert marks["active_1d"] == marks["active_5m"] == marks["event_counts_1d"] > 0
        (intervals,) = store.rows(
            f"SELECT sum(length(started) * sign) FROM {settings_.database}.subscriber_facts"
        )[0]
        copied = store.rows(f"SELECT sum(sign) FROM {settings_.database}.subscription_intervals")[0][0]
        assert copied == intervals > 0
        close(PulseReader(store).pulse(list(METRICS), DAY, AT, Filters()), before)
        assert before["active_customers"]["value"] == 3  # c0, c1, c2 within the day
        assert (before["churn"]["n"], before["churn"]["value"]) == (3, 100 / 3)  # c1 of c0, c1, c3
        ingest(rt, everything("later", AT - HOUR, "c9"))  # the view derives interval rows of new inserts
        compare(store, [AT, AT - 5 * HOUR - 3], [DAY, 7 * DAY], series=False)
    finally:
        store.execute(f"DROP DATABASE IF EXISTS {settings_.database}")
        rt.close()


def test_migration_007_deletes_the_five_minute_bitmaps_by_every_dimension(
    chdb_dir: Path, tmp_path: Path
) -> None:
    """Rows by all three dimensions that the five-minute table held before 007 are deleted (readings no
    longer use them); the catch-ups after it write none, and readings by two dimensions equal the raw SQL."""
    before_007 = tmp_path / "migrations"
    before_007.mkdir()
    for m in migrations():
        if m.version < 7:
            shutil.copy(m.path, before_007)
    database = f"r_{uuid.uuid4().hex[:12]}"
    store = ChdbStore(chdb_dir, database=database)
    try:
        apply_migrations(store, before_007)
        store.execute(  # what the catch-ups wrote before 007, by every set
            f"INSERT INTO {database}.active_5m SELECT dims, 0, '', '', '', groupBitmapState(toUInt32(1)), 0"
            " FROM (SELECT arrayJoin([0, 1, 2, 4, 7]) AS dims) GROUP BY dims"
        )
        assert apply_migrations(store) == [7, 8]
        assert store.rows(f"SELECT arraySort(groupArray(dims)) FROM {database}.active_5m")[0][0] == [
            0,
            1,
            2,
            4,
        ]
    finally:
        store.execute(f"DROP DATABASE IF EXISTS {database}")
        store.close()


def test_catch_ups_write_no_five_minute_bitmaps_by_every_dimension(rt: EmbeddedRuntime) -> None:
    logins = [
        {
            "event_id": f"l{i}",
            "type": "login",
            "occurred_at": iso(t),
            "customer_id": c,
            "channel": "web",
            "segment": segment,
        }
        for i, (t, c, segment) in enumerate(
            [
                (AT - 2 * HOUR, "c1", "pro"),
                (AT - DAY - 59_993, "c2", "pro"),
                (AT - 3 * HOUR, "c3", "free"),
                (AT - DAY - 60_007, "c4", "pro"),
                (AT - 90_000, "c5", "pro"),
            ]
        )
    ]
    ingest(rt, everything("a", AT - 2 * HOUR, "c1") + logins)
    assert dim_sets(rt.store)["active_5m"] == [0, 1, 2, 4]
    two = Filters(channel="web", segment="pro")
    at = AT - 60_000  # edges inside a five-minute bucket at both ends
    reading = PulseReader(rt.store).pulse(["active_customers"], DAY, at, two)
    assert reading["active_customers"]["value"] == 3  # c1, c2 (7 ms inside), c5; not c3 (free) nor c4
    close(reading, PulseReader(RawSQL(rt.store)).pulse(["active_customers"], DAY, at, two))


# --- catch-up beside ingest -------------------------------------------------------------------------------


def test_a_batch_does_not_wait_for_a_reading_while_a_loop_rolls_up(rt: EmbeddedRuntime) -> None:
    """A catch-up waits for the readings in progress; with the rollups caught up by the runtime's loop, a
    batch (and its flush) goes through while a reading holds its snapshot."""
    ingest(rt, everything("a", AT - 3 * DAY))
    rt.processor.roll_in_flush = False  # what `run_rollups` does while it runs
    rt.processor.rollup_interval_s = 0  # a flush that rolled up would catch up every time
    done = threading.Event()

    def post() -> None:
        rt.processor.process_many([validated(everything("b", AT - 2 * HOUR, "c2"), NOW)])
        done.set()

    with read_view(rt.store) as view:
        assert view is not None
        writer = threading.Thread(target=post)
        writer.start()
        assert done.wait(60), "the batch waited for the reading in progress"
    writer.join()
    assert rt.processor.rollups.progress.watermark == 1  # the batch is read from events until the loop runs
    compare(rt.store, [AT, AT - HOUR], [DAY, 7 * DAY])
    rt.processor.roll_up()
    assert rt.processor.rollups.progress.watermark == 2
    compare(rt.store, [AT, AT - HOUR], [DAY, 7 * DAY])


def test_the_runtime_loop_catches_the_rollups_up(rt: EmbeddedRuntime) -> None:
    rt.processor.rollup_interval_s = 0.05

    async def scenario() -> None:
        stop = asyncio.Event()
        loop = asyncio.create_task(rt.run_rollups(stop))
        await asyncio.sleep(0)
        assert not rt.processor.roll_in_flush
        await asyncio.to_thread(rt.processor.process_many, [validated(everything("a", AT - DAY), NOW)])
        for _ in range(600):  # the loop's next round covers the batch
            if rt.processor.rollups.progress.watermark == 1:
                break
            await asyncio.sleep(0.05)
        assert rt.processor.rollups.progress.watermark == 1
        stop.set()
        await asyncio.wait_for(loop, 30)

    asyncio.run(scenario())
    assert rt.processor.roll_in_flush  # flushes catch up again once the loop is gone
    compare(rt.store, [AT], [DAY, 30 * DAY])


def test_a_serving_start_reads_raw_sql_until_its_loop_has_rolled_the_import_up(chdb_dir: Path) -> None:
    """`roll_up_later` (what `cxpulse run` opens with): the runtime is ready before the rollups cover a bulk
    import, readings are exact from the raw SQL meanwhile (the gauge says so), and the loop's first round
    rolls everything up."""
    settings = Settings(data_dir=str(chdb_dir), database=f"r_{uuid.uuid4().hex[:12]}")
    rt = EmbeddedRuntime.open(settings)
    ingest(rt, everything("a", AT - 2 * DAY))
    rows = [
        {**e.to_row(), "received_ms": NOW, "batch_seq": 99}
        for e in validated(everything("bulk", AT - 6 * DAY, "z") + everything("bulk2", AT - HOUR, "y"), NOW)
    ]
    rt.store.insert("events", rows)  # a bulk import: stored, not folded, numbered nor rolled up
    rt.close()
    rt = EmbeddedRuntime.open(settings, roll_up_later=True)
    try:
        assert not rollups_readable(rt.store)
        assert rt.metrics.registry.get_sample_value("cxpulse_rollups_readable") == 0
        assert rolled(rt.store, "event_counts_1d") == 2  # the import is not rolled up
        reading = PulseReader(rt.store).pulse(list(METRICS), 7 * DAY, AT, Filters())
        close(reading, PulseReader(RawSQL(rt.store)).pulse(list(METRICS), 7 * DAY, AT, Filters()))
        assert reading["active_customers"]["value"] == 3
        rt.processor.rollup_interval_s = 0.05

        async def first_round() -> None:
            stop = asyncio.Event()
            loop = asyncio.create_task(rt.run_rollups(stop))
            for _ in range(600):
                if rollups_readable(rt.store):
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.wait_for(loop, 30)

        asyncio.run(first_round())
        assert rt.metrics.registry.get_sample_value("cxpulse_rollups_readable") == 1
        assert rolled(rt.store, "event_counts_1d") == 6
        close(PulseReader(rt.store).pulse(list(METRICS), 7 * DAY, AT, Filters()), reading)
        compare(rt.store, [AT, AT - 5 * DAY], [DAY, 7 * DAY], series=False)
    finally:
        rt.store.execute(f"DROP DATABASE IF EXISTS {settings.database}")
        rt.close()
