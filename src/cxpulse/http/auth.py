"""Access control (SPEC §8): one dependency checks the caller's API key against the scopes a route needs.

Routers get their scope where the app includes them — `include(app, router, "read")` — so a router cannot
be added without one; a handler that wants the caller declares `caller: CallerDep`. The check:

- no key, a malformed, unknown or revoked key → 401 `unauthorized` with `WWW-Authenticate: Bearer`, the
  same answer for all of them (and the same constant-time path, see `KeyRing.verify`);
- a valid key without the scope → 403 `forbidden`;
- then the key's rate limit for that kind of request → 429 `rate_limited` with `Retry-After`.

The key comes as `Authorization: Bearer <key>`; routes a browser opens by URL (the dashboard, its assets,
`EventSource`) also take `?key=`. Open mode — no key was ever configured — lets every request through as
the local caller; `check_bind` keeps that mode on 127.0.0.1.

`/healthz`, `/readyz` and the API documentation (`/docs`, `/openapi.json`) stay open: the docs page is
where a person enters a key (its Authorize button).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.params import Depends as DependsParam
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from cxpulse.config import Settings
from cxpulse.http.errors import ApiError, error_responses
from cxpulse.http.keys import KeyRing
from cxpulse.http.limits import RateLimits, StreamSlots

Scope = Literal["ingest", "read", "admin"]

#: Paths that answer without a key.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
#: The caller in open mode.
LOCAL = "local"

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    bearerFormat="prefix.secret",
    description="An API key from `cxpulse keys create`, as `Authorization: Bearer <key>`.",
)
query_key = APIKeyQuery(
    name="key",
    auto_error=False,
    scheme_name="apiKeyQuery",
    description="The same key as `?key=`: only the dashboard, its assets and `GET /v1/stream` "
    "(EventSource cannot send headers) take it.",
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: a key (`key_id` is its public prefix) or, in open mode, the local caller."""

    name: str
    key_id: str
    scopes: frozenset[str]


class Access:
    """What the dependency consults, on `app.state.access`: the keys, the rate limits, the stream slots."""

    def __init__(self, settings: Settings, keys: KeyRing | None = None) -> None:
        self.keys = keys if keys is not None else KeyRing(settings.keys_path)
        self.limits = RateLimits(settings)
        self.streams = StreamSlots(settings.max_streams_per_key)

    @property
    def open(self) -> bool:
        """No key configured: every request passes (and the service must stay on 127.0.0.1)."""
        self.keys.refresh()
        return not self.keys.enforced


def _unauthorized() -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        "a valid API key is required: send Authorization: Bearer <key> (from `cxpulse keys create`)",
        headers={"WWW-Authenticate": 'Bearer realm="cxpulse"'},
    )


def authorize(request: Request, scopes: Sequence[str], token: str | None) -> Caller:
    """The one check every protected route goes through (see the module docstring)."""
    access: Access = request.app.state.access
    if access.open:
        caller = Caller(LOCAL, LOCAL, frozenset(("ingest", "read", "admin")))
    else:
        record = access.keys.verify(token) if token else None
        if record is None:
            raise _unauthorized()
        for scope in scopes:
            if scope not in record.scopes:
                raise ApiError(403, "forbidden", f"this API key does not have the {scope} scope")
        caller = Caller(record.name, record.prefix, record.scopes)
        access.limits.check("ingest" if "ingest" in scopes else "read", caller.key_id)
    request.state.caller = caller
    return caller


async def require(
    security_scopes: SecurityScopes,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The key from `Authorization: Bearer`."""
    return authorize(request, security_scopes.scopes, credentials.credentials if credentials else None)


async def require_from_browser(
    security_scopes: SecurityScopes,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    key: Annotated[str | None, Depends(query_key)],
) -> Caller:
    """The key from `Authorization: Bearer`, or from `?key=` for what a browser opens by URL."""
    return authorize(request, security_scopes.scopes, credentials.credentials if credentials else key)


def needs(scope: Scope, *, browser: bool = False) -> DependsParam:
    """The dependency that guards a router with `scope`."""
    guard: DependsParam = Security(require_from_browser if browser else require, scopes=[scope])
    return guard


def include(app: FastAPI, router: APIRouter, scope: Scope, *, browser: bool = False) -> None:
    """Include `router` with every route guarded by `scope` (the only way the app adds a router); its
    operations document the answers the guard may give."""
    app.include_router(
        router, dependencies=[needs(scope, browser=browser)], responses=error_responses(401, 403, 429)
    )


def current_caller(request: Request) -> Caller:
    """The caller `authorize` let through (for handlers that count per key, like the stream cap)."""
    caller: Caller = request.state.caller
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]
IngestAccess = Security(require, scopes=["ingest"])
ReadAccess = Security(require, scopes=["read"])
AdminAccess = Security(require, scopes=["admin"])


class OpenBindRefused(RuntimeError):
    """The service would be open (no keys) on an address other than loopback."""


def check_bind(host: str, access: Access, allow_open: bool) -> str:
    """Decide whether the service may start on `host`; returns the line to print at start.

    No keys and a non-loopback address is refused unless `CXPULSE_ALLOW_OPEN=true`."""
    if not access.open:
        return f"API keys required ({access.keys.path})"
    if _is_loopback(host):
        return (
            f"OPEN: no API keys in {access.keys.path}, so anyone on this machine may ingest and read; "
            "create one with `cxpulse keys create --name NAME --scopes ingest,read` to require keys"
        )
    if allow_open:
        return (
            f"OPEN on {host} (CXPULSE_ALLOW_OPEN=true): no API keys, anyone who can reach this address may "
            "ingest and read"
        )
    raise OpenBindRefused(
        f"refusing to serve without API keys on {host}: anyone who can reach it could ingest and read. "
        "Create a key (`cxpulse keys create --name NAME --scopes ingest,read`), bind 127.0.0.1, or set "
        "CXPULSE_ALLOW_OPEN=true to serve open anyway"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
