"""Read endpoints of SPEC §3: pulse, breakdown, series, and the metric registry. Thin: parameters are
parsed by typed dependencies, readings computed by the `Reader`, errors translated in `http.errors`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from cxpulse.domain.metrics import METRICS, Filters
from cxpulse.domain.outcomes import SURVEYS
from cxpulse.domain.windows import DAY_MS, iso_ms
from cxpulse.http import params
from cxpulse.http.deps import MetricDep, MetricIdsDep, ReaderDep, SettingsDep
from cxpulse.http.errors import error_responses
from cxpulse.reading import Reader
from services.api.models import Breakdown, Journey, MetricInfo, Outcomes, Pulse, Series

Text = Annotated[str | None, Query()]
#: An RFC 3339 instant (declared as such, so clients and the fuzzer know; parsed by `params.timestamp_ms`).
Time = Annotated[str | None, Query(json_schema_extra={"format": "date-time"})]

DEFAULT_WINDOW = "24h"

router = APIRouter(tags=["pulse"])


@router.get("/v1/pulse", summary="Current readings of the CX KPIs", response_model=Pulse)
def pulse(
    reader: ReaderDep,
    settings: SettingsDep,
    metric_ids: MetricIdsDep,
    window: str = DEFAULT_WINDOW,
    at: Time = None,
    touchpoint: Text = None,
    channel: Text = None,
    segment: Text = None,
) -> dict[str, Any]:
    window, window_ms = window_param(window, settings.retention_days)
    at_ms = params.timestamp_ms(at)
    return pulse_body(
        reader, metric_ids, window, window_ms, at_ms, params.filters(touchpoint, channel, segment)
    )


def pulse_body(
    reader: Reader, metric_ids: list[str], window: str, window_ms: int, at_ms: int, flt: Filters
) -> dict[str, Any]:
    """The `/v1/pulse` answer (also what the live stream sends)."""
    readings = reader.pulse(metric_ids, window_ms, at_ms, flt)
    return {"at": iso_ms(at_ms), "window": window, "filters": flt.to_dict(), "readings": readings}


@router.get(
    "/v1/pulse/{metric}/breakdown",
    summary="One reading per touchpoint, channel or segment",
    response_model=Breakdown,
    responses=error_responses(404),
)
def breakdown(
    metric: MetricDep,
    reader: ReaderDep,
    settings: SettingsDep,
    by: str,
    window: str = DEFAULT_WINDOW,
    at: Time = None,
    touchpoint: Text = None,
    channel: Text = None,
    segment: Text = None,
) -> dict[str, Any]:
    dim = params.dimension(by)
    window, window_ms = window_param(window, settings.retention_days)
    at_ms = params.timestamp_ms(at)
    flt = params.filters(touchpoint, channel, segment)
    groups = reader.breakdown(metric.id, dim, window_ms, at_ms, flt)
    if len(groups) > settings.max_breakdown_groups:
        raise params.bad_parameter(
            "by",
            f"{len(groups)} {dim.value} values in this window; a breakdown answers at most "
            f"{settings.max_breakdown_groups} (CXPULSE_MAX_BREAKDOWN_GROUPS): filter, or shorten the window",
        )
    return {"metric": metric.id, "by": dim.value, "window": window, "at": iso_ms(at_ms), "groups": groups}


@router.get("/v1/journey", summary="Every KPI per touchpoint, in journey order", response_model=Journey)
def journey(
    reader: ReaderDep,
    settings: SettingsDep,
    window: str = DEFAULT_WINDOW,
    at: Time = None,
    channel: Text = None,
    segment: Text = None,
) -> dict[str, Any]:
    window, window_ms = window_param(window, settings.retention_days)
    at_ms = params.timestamp_ms(at)
    flt = params.filters(None, channel, segment)
    touchpoints = reader.journey(window_ms, at_ms, flt)
    return {"window": window, "at": iso_ms(at_ms), "filters": flt.to_dict(), "touchpoints": touchpoints}


@router.get(
    "/v1/series/{metric}",
    summary="Readings of consecutive buckets, oldest first",
    response_model=Series,
    responses=error_responses(404),
)
def series(
    metric: MetricDep,
    reader: ReaderDep,
    settings: SettingsDep,
    to: Time = None,
    step: str = "1h",
    touchpoint: Text = None,
    channel: Text = None,
    segment: Text = None,
    from_: Annotated[str | None, Query(alias="from", json_schema_extra={"format": "date-time"})] = None,
) -> dict[str, Any]:
    step_ms = params.within_retention(params.window_ms(step, "step"), "step", settings.retention_days, step)
    to_ms = params.timestamp_ms(to, "to")
    from_ms = params.timestamp_ms(from_, "from") if from_ else to_ms - 24 * step_ms
    if to_ms - from_ms > settings.retention_days * DAY_MS:
        raise params.bad_parameter(
            "from", f"the range from 'from' to 'to' must be at most the retention, {settings.retention_days}d"
        )
    flt = params.filters(touchpoint, channel, segment)
    points = reader.series(metric.id, from_ms, to_ms, step_ms, flt)
    for p in points:
        p["start"], p["end"] = iso_ms(p["start"]), iso_ms(p["end"])
    return {"metric": metric.id, "step": step, "points": points}


@router.get(
    "/v1/outcomes",
    summary="Does the score predict behaviour? Outcomes per NPS, CSAT or CES group",
    response_model=Outcomes,
)
def outcomes(
    reader: ReaderDep,
    settings: SettingsDep,
    survey: str = "nps",
    window: str = "90d",
    horizon: str = "90d",
    at: Time = None,
    touchpoint: Text = None,
    channel: Text = None,
    segment: Text = None,
) -> dict[str, Any]:
    if survey not in SURVEYS:
        raise params.bad_parameter("survey", f"must be one of {', '.join(SURVEYS)}; got {survey!r}")
    retention_ms = settings.retention_days * DAY_MS
    spans = {}
    for name, text in (("window", window), ("horizon", horizon)):
        spans[name] = params.window_ms(text.strip(), name)
        if spans[name] > retention_ms:
            raise params.bad_parameter(
                name, f"must be at most the retention ({settings.retention_days}d); got {text!r}"
            )
    at_ms = params.timestamp_ms(at)
    flt = params.filters(touchpoint, channel, segment)
    answer = reader.outcomes(survey, spans["window"], spans["horizon"], at_ms, flt)
    return {
        "survey": survey,
        "window": window.strip(),
        "horizon": horizon.strip(),
        "at": iso_ms(at_ms),
        "filters": flt.to_dict(),
        **answer,
    }


@router.get("/v1/metrics", summary="The KPIs this service computes", response_model=list[MetricInfo])
def metrics() -> list[dict[str, Any]]:
    return [
        {
            "id": m.id,
            "family": m.family.value,
            "unit": m.unit,
            "direction": m.direction.value,
            "description": m.description,
            "extras": list(m.extras),
        }
        for m in METRICS.values()
    ]


def window_param(text: str, retention_days: int) -> tuple[str, int]:
    """The window as echoed back and in milliseconds; empty means the default. At most the retention."""
    window = text.strip() or DEFAULT_WINDOW
    return window, params.within_retention(params.window_ms(window), "window", retention_days, window)
