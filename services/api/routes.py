"""Read endpoints of SPEC §3: pulse, breakdown, series. Thin: parsing here, computing in `PulseReader`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from cxpulse.domain.metrics import METRICS
from cxpulse.http import params
from cxpulse.http.errors import ApiError
from cxpulse.readings import PulseReader, QueryError

Text = Annotated[str | None, Query()]


DEFAULT_WINDOW = "24h"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def pulse_router(reader: PulseReader) -> APIRouter:
    router = APIRouter(tags=["pulse"])

    @router.get("/v1/pulse", summary="Current readings of the CX KPIs")
    def pulse(
        metrics: Text = None,
        window: str = DEFAULT_WINDOW,
        at: Text = None,
        touchpoint: Text = None,
        channel: Text = None,
        segment: Text = None,
    ) -> dict[str, Any]:
        ids = [m.strip() for m in (metrics or "").split(",") if m.strip()] or list(METRICS)
        unknown = [m for m in ids if m not in METRICS]
        if unknown:
            raise params.bad_parameter(
                "metrics", f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}"
            )
        window, window_ms = _window(window)
        at_ms = params.timestamp_ms(at)
        flt = params.filters(touchpoint, channel, segment)
        readings = reader.pulse(ids, window_ms, at_ms, flt)
        return {"at": _iso(at_ms), "window": window, "filters": flt.to_dict(), "readings": readings}

    @router.get("/v1/pulse/{metric}/breakdown", summary="One reading per touchpoint, channel or segment")
    def breakdown(
        metric: str,
        by: str,
        window: str = DEFAULT_WINDOW,
        at: Text = None,
        touchpoint: Text = None,
        channel: Text = None,
        segment: Text = None,
    ) -> dict[str, Any]:
        _known(metric)
        dim = params.dimension(by)
        window, window_ms = _window(window)
        at_ms = params.timestamp_ms(at)
        groups = reader.breakdown(metric, dim, window_ms, at_ms, params.filters(touchpoint, channel, segment))
        return {"metric": metric, "by": dim.value, "window": window, "at": _iso(at_ms), "groups": groups}

    @router.get("/v1/series/{metric}", summary="Readings of consecutive buckets, oldest first")
    def series(
        metric: str,
        to: Text = None,
        step: str = "1h",
        touchpoint: Text = None,
        channel: Text = None,
        segment: Text = None,
        from_: Annotated[str | None, Query(alias="from")] = None,
    ) -> dict[str, Any]:
        _known(metric)
        step_ms = params.window_ms(step, "step")
        to_ms = params.timestamp_ms(to, "to")
        from_ms = params.timestamp_ms(from_, "from") if from_ else to_ms - 24 * step_ms
        try:
            points = reader.series(
                metric, from_ms, to_ms, step_ms, params.filters(touchpoint, channel, segment)
            )
        except QueryError as exc:
            raise params.bad_parameter("from", str(exc)) from None
        for p in points:
            p["start"], p["end"] = _iso(p["start"]), _iso(p["end"])
        return {"metric": metric, "step": step, "points": points}

    return router


def _window(text: str) -> tuple[str, int]:
    """The window as echoed back and in milliseconds; empty means the default."""
    window = text.strip() or DEFAULT_WINDOW
    return window, params.window_ms(window)


def _known(metric: str) -> None:
    if metric not in METRICS:
        raise ApiError(404, "unknown_metric", f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
