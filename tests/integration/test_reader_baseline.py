"""Readings against an arbitrary baseline span (an alert rule's `"baseline": "7d"`), on chDB.

The current window is read as `/v1/pulse` reads it; `previous` is the baseline span ending where the window
starts, i.e. the pulse of a window as long as the baseline, as of the window's start; and a baseline as long
as the window is exactly the plain pulse.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cxpulse.config import Settings
from cxpulse.domain import stats
from cxpulse.domain.metrics import METRICS, Filters
from cxpulse.reading import PulseReader
from services.embedded import EmbeddedRuntime
from tests.conftest import validated
from tests.golden.readings_dump import END_MS, events

HOUR = 3_600_000
DAY = 86_400_000
AT = END_MS - 12 * HOUR
WINDOW, BASELINE = 3 * DAY, 7 * DAY
FILTERS = [Filters(), Filters(touchpoint="checkout"), Filters(segment="pro")]
MOVING = [m for m in METRICS.values() if m.fixed_window_ms is None]


@pytest.fixture(scope="module")
def reader(chdb_dir: Path) -> Iterator[PulseReader]:
    settings = Settings(data_dir=str(chdb_dir), database="baseline_readings")
    runtime = EmbeddedRuntime.open(settings)
    runtime.processor.process(validated(events(), END_MS))
    runtime.processor.flush()
    yield PulseReader(runtime.store)
    runtime.store.execute(f"DROP DATABASE IF EXISTS {settings.database} SYNC")
    runtime.store.close()


def close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return bool(a == pytest.approx(b, rel=1e-9, abs=1e-9))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize("flt", FILTERS, ids=lambda f: str(f.to_dict() or "all"))
def test_previous_is_the_baseline_span_ending_at_the_window_start(reader: PulseReader, flt: Filters) -> None:
    ids = [m.id for m in MOVING]
    against = reader.pulse(ids, WINDOW, AT, flt, baseline_ms=BASELINE)
    plain = reader.pulse(ids, WINDOW, AT, flt)
    baseline = reader.pulse(ids, BASELINE, AT - WINDOW, flt)
    assert any(r["n"] for r in against.values())  # the data reaches these windows
    for mid in ids:
        got, now, before = against[mid], plain[mid], baseline[mid]
        same_window = {k: v for k, v in got.items() if k not in ("previous", "delta", "significant")}
        assert close(same_window, {k: now[k] for k in same_window}), mid
        assert close(got["previous"], {"value": before["value"], "n": before["n"]}), mid
        expected_delta = None if None in (got["value"], before["value"]) else got["value"] - before["value"]
        assert close(got["delta"], expected_delta), mid


@pytest.mark.parametrize("flt", FILTERS[:2], ids=lambda f: str(f.to_dict() or "all"))
def test_a_baseline_as_long_as_the_window_is_the_plain_pulse(reader: PulseReader, flt: Filters) -> None:
    for metric in METRICS.values():
        window = metric.fixed_window_ms or WINDOW
        got = reader.pulse([metric.id], WINDOW, AT, flt, baseline_ms=window)[metric.id]
        assert close(got, reader.pulse([metric.id], WINDOW, AT, flt)[metric.id]), metric.id


@pytest.mark.parametrize("baseline", [DAY, 7 * DAY, 14 * DAY])
def test_significance_judges_the_baseline_comparison(reader: PulseReader, baseline: int) -> None:
    """`significant` is the two-sample test of the window against the baseline span (NPS: the z-test on
    promoters and detractors of each side)."""
    got = reader.pulse(["nps"], DAY, AT, Filters(), baseline_ms=baseline)["nps"]
    before = reader.pulse(["nps"], baseline, AT - DAY, Filters())["nps"]
    expected = stats.nps_change_significant(
        (got["promoters"], got["detractors"], got["n"]),
        (before["promoters"], before["detractors"], before["n"]),
    )
    assert got["n"] and before["n"] and got["significant"] is expected


def test_one_query_per_family_and_span(reader: PulseReader, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    store = reader.store
    original = store.rows

    def counting(sql: str, params: Any = None) -> list[list[Any]]:
        calls.append(sql)
        return original(sql, params)

    monkeypatch.setattr(store, "rows", counting)
    reader.pulse(["nps", "csat", "ces"], WINDOW, AT, Filters(), baseline_ms=BASELINE)
    assert len(calls) == 2  # survey family: the window and the baseline span
    calls.clear()
    reader.pulse(["active_customers", "mau"], WINDOW, AT, Filters(), baseline_ms=BASELINE)
    assert len(calls) == 1  # active customers: every span in one pass
