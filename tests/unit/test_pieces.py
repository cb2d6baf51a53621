"""Splitting spans into rollup buckets and raw edges: every instant of a span is read exactly once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cxpulse.domain.windows import DAY_MS, Span
from cxpulse.store.pieces import merged, padded, split, where_ranges

HOUR = 3_600_000
T = 1_790_000_000_000  # an ordinary epoch time (2026)


def test_a_span_of_whole_days_is_one_day_range() -> None:
    start = T // DAY_MS * DAY_MS
    p = split([Span(start, start + 3 * DAY_MS)], [DAY_MS, HOUR])
    assert p.levels[0] == [[(start, start + 3 * DAY_MS)]]
    assert p.levels[1] == [[]]
    assert p.raw == [[]]


def test_partial_edges_go_to_hours_then_raw() -> None:
    day = T // DAY_MS * DAY_MS
    span = Span(day - 2 * HOUR - 5, day + DAY_MS + 3 * HOUR + 7)
    p = split([span], [DAY_MS, HOUR])
    assert p.levels[0] == [[(day, day + DAY_MS)]]
    assert p.levels[1] == [[(day - 2 * HOUR, day), (day + DAY_MS, day + DAY_MS + 3 * HOUR)]]
    assert p.raw == [[(day - 2 * HOUR - 5, day - 2 * HOUR), (day + DAY_MS + 3 * HOUR, span.end_ms)]]


def test_a_span_inside_one_hour_is_raw() -> None:
    p = split([Span(T + 1, T + 1000)], [DAY_MS, HOUR])
    assert p.levels == [[[]], [[]]]
    assert p.raw == [[(T + 1, T + 1000)]]


@given(
    st.lists(
        st.tuples(st.integers(0, 40 * DAY_MS), st.integers(0, 40 * DAY_MS)).map(sorted),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from([[DAY_MS], [DAY_MS, HOUR], [HOUR]]),
)
def test_pieces_cover_each_span_exactly_with_aligned_buckets(
    bounds: list[list[int]], sizes: list[int]
) -> None:
    spans = [Span(T + a, T + b) for a, b in bounds]
    p = split(spans, sizes)
    for i, span in enumerate(spans):
        parts = [r for level in p.levels for r in level[i]] + p.raw[i]
        assert sum(hi - lo for lo, hi in parts) == span.end_ms - span.start_ms
        assert merged(parts) == ([(span.start_ms, span.end_ms)] if span.start_ms < span.end_ms else [])
        for size, level in zip(sizes, p.levels, strict=True):
            assert all(lo % size == 0 and hi % size == 0 for lo, hi in level[i])
            assert len(level[i]) <= 2
        assert len(p.raw[i]) <= 2
        assert sum(hi - lo for lo, hi in p.raw[i]) < 2 * sizes[-1]


def test_where_ranges_close_the_smallest_gaps() -> None:
    ranges = [(i * 10, i * 10 + 5) for i in range(40)] + [
        (10_000 + i * 10, 10_000 + i * 10 + 5) for i in range(40)
    ]
    got = where_ranges(ranges)
    assert len(got) == 64
    assert merged(got + ranges) == got  # still covers every range
    assert all(not (lo < 9_000 < hi) for lo, hi in got)  # the big gap stays open
    assert where_ranges([(5, 10), (0, 5), (20, 30)]) == [(0, 10), (20, 30)]


def test_padded() -> None:
    assert padded([[(1, 2)], []], 2) == [[(1, 2), (0, 0)], [(0, 0), (0, 0)]]
