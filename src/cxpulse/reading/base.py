"""The read-side contract: what the API, the alert evaluator and the live stream ask of the KPI store.

Small on purpose: a fake that returns canned readings is enough to unit-test anything built on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from cxpulse.domain.metrics import Dimension, Filters, Reading

MAX_SERIES_POINTS = 5_000


class QueryError(ValueError):
    """A request the reader cannot answer as asked (too many points, an empty range …): a 400 that names
    the parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Reader(Protocol):
    def pulse(
        self,
        metric_ids: Sequence[str],
        window_ms: int,
        at_ms: int,
        filters: Filters,
        baseline_ms: int | None = None,
    ) -> dict[str, Reading]:
        """Readings of `[at − window, at)` per metric id, compared with the window just before it — or,
        with `baseline_ms`, with the `baseline_ms` span ending where the window starts (an alert rule's
        `"baseline": "7d"`): `previous`, `delta` and `significant` then describe that comparison."""

    def breakdown(
        self, metric_id: str, by: Dimension, window_ms: int, at_ms: int, filters: Filters
    ) -> dict[str, Reading]:
        """One reading per value of `by` seen in the window."""

    def journey(self, window_ms: int, at_ms: int, filters: Filters) -> dict[str, dict[str, Reading]]:
        """Every metric per touchpoint seen in the window, touchpoints in journey order (SPEC §7)."""

    def outcomes(
        self, survey: str, window_ms: int, horizon_ms: int, at_ms: int, filters: Filters
    ) -> dict[str, Any]:
        """`groups` and `significant` of SPEC §7: outcomes per group of the survey's cohort."""

    def series(
        self, metric_id: str, from_ms: int, to_ms: int, step_ms: int, filters: Filters
    ) -> list[dict[str, Any]]:
        """Readings of consecutive `step` buckets from `from` to `to`, oldest first (`start`/`end` in ms)."""
