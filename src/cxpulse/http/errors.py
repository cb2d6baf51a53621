"""The one error format of SPEC §3, `{"error": {"code", "message", "details"}}`, mapped in one place.

Handlers raise either an `ApiError` or the library's own error; `translate` maps the library's errors to
API errors here, once:

    UnknownMetric  (domain)  → 404 unknown_metric
    QueryError     (reading) → 400 invalid_parameter, naming the parameter
    BodyError      (http)    → 400 malformed_body, or 413 payload_too_large
    BusUnavailable (bus)     → 503 unavailable + Retry-After
    RuleError      (domain)  → 422 invalid_rule, one detail per bad field
    UnknownRule    (alerts)  → 404 unknown_rule
    RuleExists     (alerts)  → 409 rule_exists
    StoreError     (store)   → 503 unavailable + Retry-After (a read the store could not answer)
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from cxpulse.alerts.service import RuleExists, UnknownRule
from cxpulse.bus.base import BusUnavailable
from cxpulse.domain.alerts.rules.errors import RuleError
from cxpulse.domain.metrics import UnknownMetric
from cxpulse.http.body import BodyError
from cxpulse.reading.base import QueryError
from cxpulse.store.base import StoreError

log = logging.getLogger("cxpulse.http")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details or []
        self.headers = headers


class ErrorInfo(BaseModel):
    code: str = Field(description="machine-readable: invalid_parameter, unauthorized, rate_limited …")
    message: str = Field(description="what went wrong and what to send instead")
    details: list[Any] = Field(description="per-field problems, `{field, message}` (may be empty)")


class ErrorBody(BaseModel):
    """Every error answer (SPEC §3)."""

    error: ErrorInfo


#: What each error status means, as documented on the operations that can answer it.
ERROR_STATUSES: dict[int, str] = {
    400: "invalid parameter or malformed body (the message names the field)",
    401: "no API key, or not a valid one (`WWW-Authenticate: Bearer`)",
    403: "the API key lacks the scope this operation needs",
    404: "unknown metric or rule",
    409: "a rule with this id exists",
    413: "body or batch too large",
    422: "nothing valid to accept: no valid event in the body, or an invalid rule (each problem in details)",
    429: "this key's rate limit or stream cap; retry after `Retry-After` seconds",
    503: "the store or broker cannot take it, or the request timed out; retry after `Retry-After`",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these error statuses, each with the error body's schema."""
    return {s: {"model": ErrorBody, "description": ERROR_STATUSES[s]} for s in statuses}


def error_body(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}}


def translate(exc: Exception) -> ApiError:
    """The API error for a library error (see the module docstring)."""
    if isinstance(exc, UnknownMetric):
        return ApiError(404, "unknown_metric", str(exc))
    if isinstance(exc, QueryError):
        return ApiError(
            400, "invalid_parameter", f"{exc.field}: {exc}", [{"field": exc.field, "message": str(exc)}]
        )
    if isinstance(exc, BodyError):
        if exc.too_large:
            return ApiError(413, "payload_too_large", str(exc))
        return ApiError(400, "malformed_body", str(exc))
    if isinstance(exc, BusUnavailable):
        return ApiError(
            503,
            "unavailable",
            f"events not accepted, retry later: {exc}",
            headers={"Retry-After": str(exc.retry_after_s)},
        )
    if isinstance(exc, RuleError):
        fields = ", ".join(dict.fromkeys(e["field"] or "(body)" for e in exc.errors))
        return ApiError(422, "invalid_rule", f"the rule is not valid ({fields}): {exc}", exc.errors)
    if isinstance(exc, UnknownRule):
        return ApiError(404, "unknown_rule", str(exc))
    if isinstance(exc, RuleExists):
        return ApiError(409, "rule_exists", str(exc))
    if isinstance(exc, StoreError):
        log.error("the store failed: %s", _first_line(exc))
        return ApiError(
            503,
            "unavailable",
            f"the store cannot answer now, retry later: {_first_line(exc)}",
            headers={"Retry-After": "5"},
        )
    raise TypeError(f"no API error for {exc!r}")


def _first_line(exc: Exception) -> str:
    """An engine message's first line, capped (the rest can quote SQL, and so data)."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


TRANSLATED: tuple[type[Exception], ...] = (
    UnknownMetric,
    QueryError,
    BodyError,
    BusUnavailable,
    RuleError,
    UnknownRule,
    RuleExists,
    StoreError,
)


def install_error_handlers(app: FastAPI) -> None:
    async def _translated(request: Request, exc: Exception) -> JSONResponse:
        return await _api_error(request, translate(exc))

    for error in TRANSLATED:
        app.add_exception_handler(error, _translated)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"field": ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), "message": e["msg"]}
            for e in exc.errors()
        ]
        return JSONResponse(
            error_body("invalid_request", "the request parameters are not valid", details), 400
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        # Starlette's routing errors carry only the status phrase: say what was asked and where to look.
        if exc.status_code == 404 and message == "Not Found":
            message = f"no endpoint at {request.url.path}; the API is listed at /docs"
        elif exc.status_code == 405 and message == "Method Not Allowed":
            allowed = (exc.headers or {}).get("allow") or (exc.headers or {}).get("Allow") or "see /docs"
            message = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}"
        return JSONResponse(error_body(code, message), exc.status_code, headers=exc.headers)
