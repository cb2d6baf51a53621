"""Typed FastAPI dependencies: what a handler needs, resolved from the app it runs in.

`create_app` puts the service's parts on `app.state`; handlers declare them as typed parameters
(`reader: ReaderDep`), so they read like the domain and a test can swap a part by building the app with
another one. The caller's key joins them here when access control lands.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from cxpulse.alerts.service import AlertService
from cxpulse.bus import EventBus
from cxpulse.config import Settings
from cxpulse.domain.metrics import METRICS, Metric, UnknownMetric, metric_by_id
from cxpulse.http.errors import ApiError
from cxpulse.http.params import bad_parameter
from cxpulse.observability.metrics import ServiceMetrics
from cxpulse.reading import Reader


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_reader(request: Request) -> Reader:
    reader: Reader = request.app.state.reader
    return reader


def get_bus(request: Request) -> EventBus:
    bus: EventBus | None = getattr(request.app.state, "bus", None)
    if bus is None:  # only apps built with a bus route to ingest
        raise ApiError(404, "not_found", "this service does not ingest events")
    return bus


def get_metrics(request: Request) -> ServiceMetrics:
    """The app's Prometheus instruments (one `ServiceMetrics` per app)."""
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


def get_alerts(request: Request) -> AlertService:
    alerts: AlertService | None = getattr(request.app.state, "alerts", None)
    if alerts is None:  # only apps built with an alert service route to the alert endpoints
        raise ApiError(404, "not_found", "this service does not manage alert rules")
    return alerts


def path_metric(metric: str) -> Metric:
    """The metric named in the path (unknown → 404 via the `UnknownMetric` handler)."""
    return metric_by_id(metric)


def metrics_param(
    metrics: Annotated[
        str | None, Query(description=f"comma-separated metric ids (default: all): {', '.join(METRICS)}")
    ] = None,
) -> list[str]:
    """The `metrics=` list; empty means every metric."""
    ids = [m.strip() for m in (metrics or "").split(",") if m.strip()] or list(METRICS)
    unknown = []
    for metric_id in ids:
        try:
            metric_by_id(metric_id)
        except UnknownMetric:
            unknown.append(metric_id)
    if unknown:
        known = ", ".join(METRICS)
        raise bad_parameter("metrics", f"unknown metric(s) {', '.join(unknown)}; known: {known}")
    return ids


SettingsDep = Annotated[Settings, Depends(get_settings)]
ReaderDep = Annotated[Reader, Depends(get_reader)]
BusDep = Annotated[EventBus, Depends(get_bus)]
AlertsDep = Annotated[AlertService, Depends(get_alerts)]
MetricDep = Annotated[Metric, Depends(path_metric)]
MetricIdsDep = Annotated[list[str], Depends(metrics_param)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
