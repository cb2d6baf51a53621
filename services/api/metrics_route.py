"""`GET /metrics`: the Prometheus text format of one service's registry (SPEC §6), and the pulse source
that feeds its KPI gauges."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from cxpulse.domain.metrics import METRICS, Filters
from cxpulse.domain.windows import parse_window
from cxpulse.observability.metrics import PulseBody, PulseSource
from cxpulse.reading import PulseReader


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get(
        "/metrics",
        summary="Prometheus metrics: service counters and KPI gauges",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    def metrics() -> Response:  # sync: a callback collector may block, so it runs in the threadpool
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def pulse_source(
    reader: PulseReader, now_ms: Callable[[], int] = lambda: int(time.time() * 1000)
) -> PulseSource:
    """What `KpiCollector.refresh` reads: every metric, no filters, as of now — the `/v1/pulse` readings."""

    def read(window: str) -> PulseBody:
        readings = reader.pulse(list(METRICS), parse_window(window), now_ms(), Filters())
        return {"window": window, "filters": {}, "readings": readings}

    return read
