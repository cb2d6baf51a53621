"""How a span splits into whole rollup buckets and raw edges: a reading reads each event exactly once.

A span `[start, end)` is covered, coarsest level first, by the whole buckets of each rollup level (days,
then hours, then five minutes) that the coarser levels left over, and the rest — never more than a bucket of
the finest level at each end — comes from the events themselves. Buckets are aligned to the epoch (UTC).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cxpulse.domain.windows import Span

Range = tuple[int, int]
#: At most this many separate ranges go into a WHERE clause; beyond that the closest ones are merged
#: (every row is still placed by its span conditions, so merging only costs reading the gaps too).
MAX_WHERE_RANGES = 64


@dataclass(frozen=True, slots=True)
class Pieces:
    """Per span: the ranges of each level (at most two per level, in `sizes` order) and the raw ranges."""

    sizes: tuple[int, ...]
    levels: list[list[list[Range]]]  # levels[level][span] -> ranges of whole buckets
    raw: list[list[Range]]  # raw[span] -> ranges read from events


def _floor(t: int, size: int) -> int:
    return t // size * size


def _ceil(t: int, size: int) -> int:
    return -(-t // size) * size


def split(spans: Sequence[Span], sizes: Sequence[int]) -> Pieces:
    """Cover each span with whole buckets of `sizes` (coarsest first, each dividing the one before)."""
    levels: list[list[list[Range]]] = [[] for _ in sizes]
    raw: list[list[Range]] = []
    for span in spans:
        rest: list[Range] = [(span.start_ms, span.end_ms)] if span.start_ms < span.end_ms else []
        for level, size in enumerate(sizes):
            whole: list[Range] = []
            left: list[Range] = []
            for lo, hi in rest:
                a, b = _ceil(lo, size), _floor(hi, size)
                if a < b:
                    whole.append((a, b))
                    left += [r for r in ((lo, a), (b, hi)) if r[0] < r[1]]
                else:
                    left.append((lo, hi))
            levels[level].append(whole)
            rest = left
        raw.append(rest)
    return Pieces(tuple(sizes), levels, raw)


def merged(ranges: Sequence[Range]) -> list[Range]:
    """The union of `ranges` as sorted, disjoint, non-adjacent ranges."""
    out: list[Range] = []
    for lo, hi in sorted(r for r in ranges if r[0] < r[1]):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def where_ranges(ranges: Sequence[Range]) -> list[Range]:
    """What a WHERE clause restricts a scan to: the union, with the smallest gaps closed while it has
    more than `MAX_WHERE_RANGES` parts."""
    union = merged(ranges)
    while len(union) > MAX_WHERE_RANGES:
        i = min(range(len(union) - 1), key=lambda j: union[j + 1][0] - union[j][1])
        union[i : i + 2] = [(union[i][0], union[i + 1][1])]
    return union


def padded(per_span: Sequence[Sequence[Range]], width: int) -> list[list[Range]]:
    """Each span's ranges padded with empty ones to `width` (SQL binds them as fixed-width arrays)."""
    out = []
    for ranges in per_span:
        if len(ranges) > width:
            raise ValueError(f"{len(ranges)} ranges where at most {width} fit")
        out.append([*ranges, *[(0, 0)] * (width - len(ranges))])
    return out
