"""Arrival order does not matter (SPEC §2): any order, batching and repetition of the same events gives the
readings of ingesting them once, in time order.

Each example builds two fresh databases on the session's chDB data directory (chDB opens one directory
per process): a reference fed once in time order, and one fed a shuffled stream in several batches with
repeats. Duplicates share their event_id *and* content: with differing content "the first accepted wins"
makes the outcome depend on arrival order by design.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxpulse.config import Settings
from cxpulse.domain.events import Event
from cxpulse.domain.metrics import METRICS, Dimension, Filters
from cxpulse.reading import PulseReader
from services.embedded import EmbeddedRuntime
from tests.conftest import T0, iso, ms, validated

HOUR = 3_600_000
DAY = 24 * HOUR
END = ms(T0)
START = END - 60 * DAY
NOW = END + DAY

Item = dict[str, Any]

_dims = st.fixed_dictionaries(
    {},
    optional={
        "channel": st.sampled_from(["web", "phone"]),
        "segment": st.sampled_from(["free", "pro"]),
    },
)
# hours since START; a few fixed instants make ties between events likely
_hours = st.one_of(st.integers(0, 60 * 24 - 1), st.sampled_from([0, 500, 501, 1000, 1430]))


#: Event types, the stateful ones (whose facts could depend on arrival order) more often.
KINDS = [
    "login",
    "survey_answer",
    *["purchase", "support_contact", "support_resolved", "trial_start"] * 2,
    *["subscription_start", "subscription_cancel"] * 2,
]


@st.composite
def _item(draw: st.DrawFn) -> Item:
    kind = draw(st.sampled_from(KINDS))
    item: Item = {
        "type": kind,
        "occurred_at": iso(START + draw(_hours) * HOUR),
        "customer_id": draw(st.sampled_from(["a", "b"])),
        **draw(_dims),
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
        item.update(draw(st.sampled_from([{}, {"referral": True}, {"referrer_id": "x"}])))
    elif kind.startswith("support_"):
        item["case_id"] = draw(st.sampled_from(["K1", "K2"]))
    elif kind == "trial_start":
        item["trial_days"] = draw(st.integers(1, 30))
    return item


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Item], list[list[Item]]]:
    """(the distinct events, the delivery: batches of a shuffled stream with duplicates and repeats)."""
    distinct = [
        {"event_id": f"e{i}", **it} for i, it in enumerate(draw(st.lists(_item(), min_size=10, max_size=40)))
    ]
    stream = distinct + draw(st.lists(st.sampled_from(distinct), max_size=8))  # duplicates (same id)
    stream = draw(st.permutations(stream))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=4)))
    batches = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    batches = [b for b in batches if b]
    # whole batches re-delivered later (at-least-once delivery)
    repeats = draw(st.lists(st.integers(0, len(batches) - 1), max_size=2))
    return distinct, batches + [batches[i] for i in repeats]


def _events(items: list[Item]) -> list[Event]:
    return validated(items, NOW)


@contextmanager
def _fresh_runtime(chdb_dir: Path) -> Iterator[EmbeddedRuntime]:
    rt = EmbeddedRuntime.open(Settings(data_dir=str(chdb_dir), database=f"p_{uuid.uuid4().hex[:12]}"))
    try:
        yield rt
    finally:
        rt.store.execute(f"DROP DATABASE IF EXISTS {rt.store.database}")
        rt.close()


#: One metric per statistics family (and stickiness) for the breakdowns.
BREAKDOWN_METRICS = [
    "nps",
    "referral_rate",
    "active_customers",
    "stickiness",
    "fcr",
    "trial_conversion",
    "churn",
]


def _snapshot(rt: EmbeddedRuntime) -> dict[str, Any]:
    """Every metric's 30-day pulse at the end, its weekly series (the 7-day pulse reading as of the end of
    each of the last 8 weeks) and breakdowns by segment."""
    reader = PulseReader(rt.store)
    out: dict[str, Any] = {"pulse/30d": reader.pulse(list(METRICS), 30 * DAY, END, Filters())}
    for metric in METRICS:
        out[f"series/{metric}"] = reader.series(metric, END - 56 * DAY, END, 7 * DAY, Filters())
    for metric in BREAKDOWN_METRICS:
        out[f"breakdown/{metric}"] = reader.breakdown(metric, Dimension.SEGMENT, 30 * DAY, END, Filters())
    return out


def _rounded(value: Any) -> Any:
    """Readings with floats rounded (sums in another order may differ in the last bits)."""
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, float):
        return round(value, 9)
    return value


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_any_arrival_order_gives_the_readings_of_time_order(
    chdb_dir: Path, scenario: tuple[list[Item], list[list[Item]]]
) -> None:
    distinct, batches = scenario
    with _fresh_runtime(chdb_dir) as reference:
        in_time_order = sorted(_events(distinct), key=lambda e: (e.occurred_ms, e.event_id))
        assert reference.processor.process(in_time_order).accepted == len(distinct)
        expected = _rounded(_snapshot(reference))
    with _fresh_runtime(chdb_dir) as shuffled:
        accepted = sum(shuffled.processor.process(_events(batch)).accepted for batch in batches)
        assert accepted == len(distinct)
        got = _rounded(_snapshot(shuffled))
    assert got == expected
