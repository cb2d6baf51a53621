"""The worker's Prometheus `/metrics` on its own small port, under the same access rule as the API's.

The worker has no HTTP API, so its counters (dead letters, store inserts, lag) get a port of their own
(`CXPULSE_METRICS_PORT`), bound to `CXPULSE_METRICS_HOST` — 127.0.0.1 unless set, and not `CXPULSE_HOST`:
opening the API must not open this port by the way. SPEC §8 puts `/metrics` under the `read` scope, so
once the keys file holds a key this port asks for one too (`Authorization: Bearer`, the same file the API
and ingest read, re-read when it changes); with no keys it is open, and — like the HTTP services — may
then only bind loopback unless `CXPULSE_ALLOW_OPEN=true`.

prometheus_client's WSGI app does the exposition; a small WSGI wrapper does the key check, in a thread
(as `prometheus_client.start_http_server` runs its own).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from prometheus_client import CollectorRegistry, make_wsgi_app

from cxpulse.config import Settings
from cxpulse.http.auth import Access, check_bind
from cxpulse.http.errors import error_body
from cxpulse.http.keys import KeyRing

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no access log (it would go to stderr)
        pass


def _answer(start_response: StartResponse, status: str, code: str, message: str) -> list[bytes]:
    body = orjson.dumps(error_body(code, message))
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if status.startswith("401"):
        headers.append(("WWW-Authenticate", 'Bearer realm="cxpulse"'))
    start_response(status, headers)
    return [body]


def require_read_key(app: WSGIApp, keys: KeyRing) -> WSGIApp:
    """`app` behind the `read` scope while the keys file holds keys; 401/403 in the §3 error format."""

    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        keys.refresh()
        if keys.enforced:
            scheme, _, token = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
            record = keys.verify(token.strip()) if scheme.lower() == "bearer" and token else None
            if record is None:
                return _answer(
                    start_response, "401 Unauthorized", "unauthorized", "a valid API key is required"
                )
            if "read" not in record.scopes:
                return _answer(
                    start_response, "403 Forbidden", "forbidden", "this API key does not have the read scope"
                )
        return app(environ, start_response)

    return guarded


def serve_metrics(settings: Settings, registry: CollectorRegistry) -> tuple[WSGIServer, str]:
    """Start serving `registry` on CXPULSE_METRICS_HOST:CXPULSE_METRICS_PORT in a daemon thread; returns
    the server and the access line to log. Raises `OpenBindRefused` (no keys, not loopback, not allowed)."""
    assert settings.metrics_port is not None
    access = Access(settings)
    line = check_bind(settings.metrics_host, access, settings.allow_open)
    app = require_read_key(make_wsgi_app(registry), access.keys)
    server = make_server(
        settings.metrics_host, settings.metrics_port, app, server_class=_Server, handler_class=_QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server, line
