"""Query planning: which grids of spans a run of readings needs, so most readings cost one query."""

from __future__ import annotations

from dataclasses import dataclass

from cxpulse.domain.metrics import Metric, spans_for, stat_spans
from cxpulse.domain.windows import Grid


@dataclass(frozen=True, slots=True)
class Plan:
    """Where each statistic a reading needs comes from: (grid number, point offset) per `stat_spans` slot."""

    grids: list[Grid]
    slots: list[tuple[int, int]]


def plan_grids(metric: Metric, first_end_ms: int, step_ms: int, count: int, window_ms: int) -> Plan:
    """Grids covering the readings at `first_end + i·step` (i < count), merging a reading's current and
    previous spans into one grid whenever they are one step apart (always so for a pulse or a series with
    step = window), so most readings cost one query."""
    current, previous = spans_for(metric, first_end_ms, window_ms)
    needed = [(s.end_ms - s.start_ms, first_end_ms - s.end_ms) for s in stat_spans(metric, current, previous)]
    grids: list[Grid] = []
    slot_of: dict[tuple[int, int], tuple[int, int]] = {}
    for length in dict.fromkeys(length for length, _ in needed):
        offsets = [o for span_length, o in needed if span_length == length]
        lowest, highest = min(offsets), max(offsets)
        # one grid when the spans line up and lie close (a pulse, a series with step = window); a
        # series of hourly 30-day readings would otherwise read the 720 hours between them too
        if all((o - lowest) % step_ms == 0 for o in offsets) and (highest - lowest) // step_ms <= count:
            grids.append(Grid(first_end_ms - highest, step_ms, count + (highest - lowest) // step_ms, length))
            slot_of.update({(length, o): (len(grids) - 1, (highest - o) // step_ms) for o in offsets})
        else:
            for o in offsets:
                grids.append(Grid(first_end_ms - o, step_ms, count, length))
                slot_of[(length, o)] = (len(grids) - 1, 0)
    return Plan(grids, [slot_of[key] for key in needed])
