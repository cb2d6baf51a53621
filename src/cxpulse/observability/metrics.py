"""Prometheus instruments of one service instance (SPEC §6).

Every instrument lives on a `CollectorRegistry` made per `ServiceMetrics`, not on prometheus_client's
global one, so tests (and one process) can build several apps. The KPI gauges are served from a cache of
`/v1/pulse` bodies that the change feed refreshes (`KpiCollector.refresh`): a scrape only formats numbers
already computed, it never runs a KPI query. A KPI with no data (value null) has no series at all — a 0
would read as a real score.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from cxpulse.domain.windows import parse_window

log = logging.getLogger(__name__)

DEFAULT_WINDOWS = ("1h", "24h")
#: The table whose rows carry `received_ms` (the processing lag is measured on its inserts).
EVENTS_TABLE = "events"
ALERT_STATES = ("ok", "pending", "firing", "no_data")
#: Ingest requests and store inserts take from a millisecond (a small batch) to seconds (10 000 events).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

PulseBody = Mapping[str, Any]
#: The `/v1/pulse` body (all metrics, no filters, as of now) for one window such as "24h".
PulseSource = Callable[[str], PulseBody]


def parse_metrics_windows(text: str) -> tuple[str, ...]:
    """`CXPULSE_METRICS_WINDOWS` (`"1h,24h"`) as windows, each checked; raises `WindowError`."""
    windows = tuple(dict.fromkeys(w.strip() for w in text.split(",") if w.strip()))
    for window in windows:
        parse_window(window, name="CXPULSE_METRICS_WINDOWS")
    return windows


class _KpiRow(NamedTuple):
    metric: str
    window: str
    value: float
    samples: float | None
    ci: tuple[float, float] | None


class KpiCollector:
    """`cxpulse_kpi{metric,window}` with `_samples`, `_ci_low`, `_ci_high`, from cached pulse bodies."""

    def __init__(self, windows: Sequence[str] = DEFAULT_WINDOWS, source: PulseSource | None = None) -> None:
        self.windows = tuple(windows)
        #: Where `refresh()` reads pulse bodies; may be set after construction.
        self.source = source
        self._rows: tuple[_KpiRow, ...] = ()

    def refresh(self) -> None:
        """Re-read every window from `source` (call it when the change feed says readings moved)."""
        if self.source is None:
            raise RuntimeError("KpiCollector.refresh needs a source")
        self.update({window: self.source(window) for window in self.windows})

    def update(self, bodies: Mapping[str, PulseBody]) -> None:
        """Replace the cache with `{window: pulse body}`; a window missing here loses its series."""
        self._rows = tuple(row for window, body in bodies.items() for row in _rows(window, body))

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterator[Metric]:
        rows = self._rows  # one consistent snapshot even if update() runs meanwhile
        kpi, samples, low, high = self._families()
        for row in rows:
            labels = [row.metric, row.window]
            kpi.add_metric(labels, row.value)
            if row.samples is not None:
                samples.add_metric(labels, row.samples)
            if row.ci is not None:
                low.add_metric(labels, row.ci[0])
                high.add_metric(labels, row.ci[1])
        yield from (kpi, samples, low, high)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        labels = ["metric", "window"]
        return (
            GaugeMetricFamily(
                "cxpulse_kpi", "KPI value over the trailing window (see /v1/pulse).", labels=labels
            ),
            GaugeMetricFamily("cxpulse_kpi_samples", "The reading's n (responses, cases …).", labels=labels),
            GaugeMetricFamily("cxpulse_kpi_ci_low", "Lower end of the reading's 95% CI.", labels=labels),
            GaugeMetricFamily("cxpulse_kpi_ci_high", "Upper end of the reading's 95% CI.", labels=labels),
        )


def _rows(window: str, body: PulseBody) -> Iterator[_KpiRow]:
    for metric, reading in body.get("readings", {}).items():
        value = reading.get("value")
        if value is None:
            continue
        n = reading.get("n")
        ci = reading.get("ci")
        bounds = (float(ci[0]), float(ci[1])) if ci and None not in ci else None
        yield _KpiRow(metric, window, float(value), None if n is None else float(n), bounds)


class AlertsCollector:
    """`cxpulse_alerts{state}`: how many alert rules are in each state, read from a callback per scrape
    (a count held by the evaluator, not a query)."""

    def __init__(self, counts: Callable[[], Mapping[str, int]] | None = None) -> None:
        self.counts = counts

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        counts: dict[str, int] = dict.fromkeys(ALERT_STATES, 0)
        if self.counts is not None:
            try:
                counts.update(self.counts())
            except Exception:  # a scrape must not fail because one source did
                log.exception("alert counts for /metrics failed")
                return
        for state, count in counts.items():
            family.add_metric([state], count)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("cxpulse_alerts", "Alert rules by state.", labels=["state"])


class ServiceMetrics:
    """The service's instruments, defined once per app (one registry each); the ingest route, the store
    seam (`observe_insert`, `count_read`), the DLQ routing, the notifier and the change feed update them,
    `metrics_router(metrics.registry)` serves them.

    `windows` empty: no KPI gauges (ingest, the worker). `alerts=False`: no `cxpulse_alerts` (a process
    that evaluates no rules must not report zero rules next to the one that does). The alert evaluator
    hooks its counts in later by setting `metrics.alerts.counts`.
    """

    def __init__(
        self,
        windows: Sequence[str] = DEFAULT_WINDOWS,
        *,
        pulse: PulseSource | None = None,
        alert_counts: Callable[[], Mapping[str, int]] | None = None,
        alerts: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = r = CollectorRegistry()
        self.clock = clock
        self.events_accepted = Counter(
            "cxpulse_events_accepted", "Events accepted (new, durable).", registry=r
        )
        self.events_rejected = Counter(
            "cxpulse_events_rejected", "Event items rejected by validation.", registry=r
        )
        self.events_duplicates = Counter(
            "cxpulse_events_duplicates", "Events dropped as already stored (same event_id).", registry=r
        )
        self.events_dlq = Counter("cxpulse_events_dlq", "Messages sent to the dead-letter topic.", registry=r)
        self.notifications = Counter(
            "cxpulse_notifications", "Notification attempts by result.", ["result"], registry=r
        )
        self.ingest_latency = Histogram(
            "cxpulse_ingest_request_duration_seconds",
            "POST /v1/events: request received → answered.",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.store_insert_latency = Histogram(
            "cxpulse_store_insert_duration_seconds",
            "One insert into the store (events or facts).",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.store_reads = Counter(
            "cxpulse_store_read_queries",
            "Queries the read path (pulse, series, journey, live views, KPI gauges) ran on the store.",
            registry=r,
        )
        self.processing_lag = Gauge(
            "cxpulse_processing_lag_seconds",
            "Received → stored, for the oldest event of the last stored batch: received is the Kafka "
            "message time (run --kafka, workers, loader) or the embedded writer taking the batch.",
            registry=r,
        )
        self.rollups_readable = Gauge(
            "cxpulse_rollups_readable",
            "1 while readings come from the rollups; 0 while they read raw events (a catch-up in progress: "
            "after a start on a bulk import, until the first one ends).",
            registry=r,
        )
        self.outcomes_snapshot_readable = Gauge(
            "cxpulse_outcomes_snapshot_readable",
            "1 once /v1/outcomes reads the outcome snapshot (rebuilt beside the rollups); 0 before its first "
            "build, when outcome readings join raw events.",
            registry=r,
        )
        self.alerts = AlertsCollector(alert_counts)
        self.kpis = KpiCollector(windows, pulse)
        if alerts:
            r.register(self.alerts)
        if self.kpis.windows:
            r.register(self.kpis)

    def count_ingest(self, accepted: int, duplicates: int, rejected: int) -> None:
        """One `POST /v1/events` answer's counts."""
        self.events_accepted.inc(accepted)
        self.events_duplicates.inc(duplicates)
        self.events_rejected.inc(rejected)

    def observe_insert(self, table: str, rows: Sequence[Mapping[str, Any]], seconds: float) -> None:
        """One store insert (the `InstrumentedStore` callback): its latency, and for event rows the
        processing lag — now minus the earliest `received_ms` among them."""
        self.store_insert_latency.observe(seconds)
        if table == EVENTS_TABLE and rows:
            received = min(int(row["received_ms"]) for row in rows)
            self.processing_lag.set(max(0.0, self.clock() - received / 1000))

    def count_read(self, seconds: float) -> None:
        """One read-path store query (the `InstrumentedStore` callback)."""
        self.store_reads.inc()
