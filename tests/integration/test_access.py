"""API keys and scopes (SPEC §8) over real HTTP against the embedded service on chDB.

Every route of the app × {no key, malformed key, unknown key, revoked key, each scope} gets the status the
route's scope says. The routes are enumerated from the app itself at collection time, and each must be in
`SCOPE` (or `OPEN`): a new route nobody gave a scope fails here.
"""

from __future__ import annotations

import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from cxpulse.config import Settings
from cxpulse.http.auth import OPEN_PATHS
from cxpulse.http.keys import KeyFile
from services.embedded import EmbeddedRuntime
from tests.conftest import event
from tests.server_support import cxpulse, free_port, placeholder_app, served

HOUR = 3_600_000
KEY_SHAPE = re.compile(r"^cxp_[0-9a-f]{8}\.[A-Za-z0-9_-]{43}$")

#: The scope each protected route needs (routes on other branches are listed so they cannot slip in open).
SCOPE: dict[tuple[str, str], str] = {
    ("POST", "/v1/events"): "ingest",
    ("GET", "/v1/pulse"): "read",
    ("GET", "/v1/pulse/{metric}/breakdown"): "read",
    ("GET", "/v1/series/{metric}"): "read",
    ("GET", "/v1/metrics"): "read",
    ("GET", "/v1/stream"): "read",
    ("GET", "/"): "read",
    ("GET", "/static/{path:path}"): "read",
    ("GET", "/metrics"): "read",
    ("GET", "/v1/journey"): "read",
    ("GET", "/v1/outcomes"): "read",
    ("GET", "/v1/alerts"): "read",
    ("GET", "/v1/alerts/transitions"): "read",
    ("GET", "/v1/alerts/notifications"): "read",
    ("POST", "/v1/alert-rules"): "admin",
    ("GET", "/v1/alert-rules"): "admin",
    ("GET", "/v1/alert-rules/{rule_id}"): "admin",
    ("PUT", "/v1/alert-rules/{rule_id}"): "admin",
    ("DELETE", "/v1/alert-rules/{rule_id}"): "admin",
}
OPEN = {("GET", path) for path in OPEN_PATHS}
#: Routes a browser opens by URL: they also take `?key=`.
BROWSER = {("GET", "/"), ("GET", "/static/{path:path}"), ("GET", "/v1/stream")}


def _app_routes() -> list[tuple[str, str]]:
    """(method, path) of every route the full app serves (built over placeholders: no store is touched)."""
    app = placeholder_app()
    out = set()
    for route in iter_route_contexts(app.routes):
        for method in route.methods or {"GET"}:
            if method != "HEAD":
                out.add((method, str(route.path)))
    return sorted(out)


ROUTES = _app_routes()
PROTECTED = [r for r in ROUTES if r not in OPEN]


def _nps(event_id: str) -> dict[str, Any]:
    at = int(time.time() * 1000) - HOUR
    return event(event_id, "survey_answer", at, "c-access", survey="nps", score=9)


#: A request that succeeds on each protected route when the key has the scope.
SAMPLE: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/events"): {"url": "/v1/events"},
    ("GET", "/v1/pulse"): {"url": "/v1/pulse?metrics=nps"},
    ("GET", "/v1/pulse/{metric}/breakdown"): {"url": "/v1/pulse/nps/breakdown?by=channel"},
    ("GET", "/v1/series/{metric}"): {"url": "/v1/series/nps?step=1h"},
    ("GET", "/v1/metrics"): {"url": "/v1/metrics"},
    ("GET", "/v1/stream"): {"url": "/v1/stream?metrics=nps", "stream": True},
    ("GET", "/"): {"url": "/"},
    ("GET", "/static/{path:path}"): {"url": "/static/dashboard.css"},
    ("GET", "/metrics"): {"url": "/metrics"},
    ("GET", "/v1/journey"): {"url": "/v1/journey"},
    ("GET", "/v1/outcomes"): {"url": "/v1/outcomes"},
    ("GET", "/v1/alerts"): {"url": "/v1/alerts"},
    ("GET", "/v1/alerts/transitions"): {"url": "/v1/alerts/transitions"},
    ("GET", "/v1/alerts/notifications"): {"url": "/v1/alerts/notifications"},
    ("POST", "/v1/alert-rules"): {"url": "/v1/alert-rules", "rule": True},
    ("GET", "/v1/alert-rules"): {"url": "/v1/alert-rules"},
    ("GET", "/v1/alert-rules/{rule_id}"): {"url": "/v1/alert-rules/{rule}", "needs_rule": True},
    ("PUT", "/v1/alert-rules/{rule_id}"): {"url": "/v1/alert-rules/{rule}", "needs_rule": True, "rule": True},
    ("DELETE", "/v1/alert-rules/{rule_id}"): {"url": "/v1/alert-rules/{rule}", "needs_rule": True},
}
RULE = {"name": "access test", "metric": "nps", "condition": {"op": "below", "threshold": 0}}


@dataclass
class Keyed:
    url: str
    keys: dict[str, str]
    key_file: KeyFile
    settings: Settings


@pytest.fixture
def keyed(settings: Settings, tmp_path: Path) -> Iterator[Keyed]:
    """The embedded service with one key per scope, one `all` key, one revoked key; no rate limits."""
    settings = settings.model_copy(
        update={"keys_file": str(tmp_path / "keys"), "ingest_rate": 0, "read_rate": 0}
    )
    key_file = KeyFile(settings.keys_path)
    keys = {scope: key_file.create(f"k-{scope}", frozenset({scope})) for scope in ("ingest", "read", "admin")}
    keys["all"] = key_file.create("k-all", frozenset({"ingest", "read", "admin"}))
    keys["revoked"] = key_file.create("k-revoked", frozenset({"ingest", "read", "admin"}))
    key_file.revoke("k-revoked")
    runtime = EmbeddedRuntime.open(settings)
    try:
        with served(runtime.app(settings)) as url:
            yield Keyed(url, keys, key_file, settings)
    finally:
        runtime.processor.flush()
        runtime.store.execute(f"DROP DATABASE IF EXISTS {settings.database} SYNC")
        runtime.store.close()


def _call(
    keyed: Keyed, route: tuple[str, str], headers: dict[str, str], query_key: str | None = None
) -> httpx.Response:
    sample = SAMPLE[route]
    url = keyed.url + sample["url"]
    if sample.get("needs_rule"):  # a rule of its own, made with the admin key (a DELETE uses it up)
        admin = {"Authorization": f"Bearer {keyed.keys['admin']}"}
        made = httpx.post(f"{keyed.url}/v1/alert-rules", json=RULE, headers=admin)
        assert made.status_code == 201, made.text
        url = url.replace("{rule}", made.json()["id"])
    if query_key is not None:
        url += ("&" if "?" in url else "?") + f"key={query_key}"
    method = route[0]
    kwargs: dict[str, Any] = {"headers": headers, "timeout": 30}
    if sample.get("rule"):
        kwargs["json"] = RULE
    elif method == "POST":
        kwargs["json"] = [_nps(f"evt-{time.monotonic_ns()}")]
    if sample.get("stream"):
        with httpx.stream(method, url, **kwargs) as response:
            if response.status_code != 200:
                response.read()  # an error is a finite JSON body
            # else: the status is all we want; leaving the block closes the stream server-side
            return response
    return httpx.request(method, url, **kwargs)


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.request.url.path, response.text)
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    error: dict[str, Any] = body["error"]
    return error


def test_every_route_has_a_scope_or_is_open() -> None:
    missing = [r for r in ROUTES if r not in SCOPE and r not in OPEN]
    assert not missing, f"give these routes a scope (auth.include) and list them in SCOPE: {missing}"
    assert ("GET", "/healthz") in ROUTES and ("GET", "/readyz") in ROUTES


CALLERS = ["none", "malformed", "unknown", "revoked", "ingest", "read", "admin"]


@pytest.mark.parametrize("route", PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_every_route_answers_each_kind_of_caller(keyed: Keyed, route: tuple[str, str]) -> None:
    needed = SCOPE[route]
    unknown = "cxp_00000000." + "A" * 43  # well formed, never issued
    for caller in CALLERS:
        token = {"none": None, "malformed": "not-a-key", "unknown": unknown}.get(
            caller, keyed.keys.get(caller)
        )
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = _call(keyed, route, headers)
        if caller in ("none", "malformed", "unknown", "revoked"):
            error = _assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "Bearer" in error["message"]
        elif caller == needed:
            assert response.status_code in (200, 201, 202, 204), (caller, route, response.text)
        else:
            _assert_error(response, 403, "forbidden")
    ok = _call(keyed, route, {"Authorization": f"Bearer {keyed.keys['all']}"})
    assert ok.status_code in (200, 201, 202, 204), ok.text


def test_401_says_the_same_whatever_the_key(keyed: Keyed) -> None:
    """No key, garbage, an unknown prefix, a known prefix with a wrong secret, a revoked key: one answer."""
    real = keyed.keys["read"]
    wrong_secret = real.split(".")[0] + "." + "B" * 43
    tokens = [None, "x", "cxp_00000000." + "A" * 43, wrong_secret, keyed.keys["revoked"], real + "x"]
    bodies = set()
    for token in tokens:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = httpx.get(f"{keyed.url}/v1/pulse", headers=headers)
        assert response.status_code == 401
        bodies.add((response.text, response.headers["www-authenticate"]))
    assert len(bodies) == 1, bodies


def test_query_key_only_where_a_browser_needs_it(keyed: Keyed) -> None:
    for route in PROTECTED:
        key = keyed.keys["all"]
        response = _call(keyed, route, {}, query_key=key)
        if route in BROWSER:
            assert response.status_code == 200, (route, response.text)
        else:
            _assert_error(response, 401, "unauthorized")


def test_dashboard_opened_with_a_key_passes_it_on(keyed: Keyed) -> None:
    key = keyed.keys["read"]
    page = httpx.get(f"{keyed.url}/", params={"key": key})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    assert len(assets) == 4 and all(a.endswith(f"?key={key}") for a in assets), assets
    for asset in assets:
        assert httpx.get(keyed.url + asset).status_code == 200
    assert httpx.get(f"{keyed.url}/static/dashboard.js").status_code == 401
    script = httpx.get(f"{keyed.url}/static/dashboard.js", params={"key": key}).text
    assert "Authorization" in script and "new EventSource(`/v1/stream?${withKey(query())}`)" in script


def test_health_and_docs_stay_open(keyed: Keyed) -> None:
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
        assert httpx.get(keyed.url + path).status_code == 200, path


def test_openapi_declares_the_bearer_scheme(keyed: Keyed) -> None:
    spec = httpx.get(f"{keyed.url}/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["apiKey"]["type"] == "http" and schemes["apiKey"]["scheme"] == "bearer"
    assert schemes["apiKeyQuery"] == {
        **schemes["apiKeyQuery"],
        "type": "apiKey",
        "in": "query",
        "name": "key",
    }
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if ("GET" if method == "get" else method.upper(), path) in OPEN:
                assert "security" not in op, path
            else:
                assert {"apiKey": [SCOPE[(method.upper(), path)]]} in op["security"], (method, path)
    docs = httpx.get(f"{keyed.url}/docs")  # Swagger UI shows Authorize for the schemes above
    assert docs.status_code == 200 and "/openapi.json" in docs.text


def test_a_revoked_key_is_refused_within_seconds_without_a_restart(keyed: Keyed) -> None:
    """`cxpulse keys revoke` (a separate process) while the service runs: refused at once."""
    key = keyed.key_file.create("short-lived", frozenset({"read"}))
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{keyed.url}/v1/metrics", headers=headers).status_code == 200
    done = cxpulse(["keys", "--keys-file", str(keyed.key_file.path), "revoke", "short-lived"])
    assert done.returncode == 0, done.stderr
    revoked_at = time.monotonic()
    while httpx.get(f"{keyed.url}/v1/metrics", headers=headers).status_code != 401:
        assert time.monotonic() - revoked_at < 3, "the revoked key still works"
        time.sleep(0.05)


def test_a_key_created_while_running_works_at_once(keyed: Keyed) -> None:
    done = cxpulse(
        ["keys", "--keys-file", str(keyed.key_file.path), "create", "--name", "new", "--scopes", "read"]
    )
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    response = httpx.get(f"{keyed.url}/v1/metrics", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200


def test_cli_create_prints_the_key_alone_and_stores_only_its_hash(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    done = cxpulse(
        ["keys", "--keys-file", str(keys_file), "create", "--name", "etl", "--scopes", "ingest,read"]
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and KEY_SHAPE.match(done.stdout.strip()), done.stdout
    key = done.stdout.strip()
    secret = key.split(".")[1]
    stored = keys_file.read_text()
    assert secret not in stored and key not in stored
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    listed = cxpulse(["keys", "--keys-file", str(keys_file), "list"])
    assert listed.returncode == 0 and secret not in listed.stdout
    assert re.search(r"^etl\tcxp_[0-9a-f]{8}\tingest,read\tcreated \S+\tactive$", listed.stdout, re.M), (
        listed.stdout
    )
    again = cxpulse(["keys", "--keys-file", str(keys_file), "create", "--name", "etl", "--scopes", "read"])
    assert again.returncode == 2 and "exists" in again.stderr and again.stdout == ""
    bad = cxpulse(["keys", "--keys-file", str(keys_file), "create", "--name", "x", "--scopes", "read,write"])
    assert bad.returncode == 2 and "write" in bad.stderr and "ingest, read, admin" in bad.stderr
    assert cxpulse(["keys", "--keys-file", str(keys_file), "revoke", "etl"]).returncode == 0
    assert "revoked" in cxpulse(["keys", "--keys-file", str(keys_file), "list"]).stdout
    missing = cxpulse(["keys", "--keys-file", str(keys_file), "revoke", "etl"])
    assert missing.returncode == 1 and "no active key" in missing.stderr


def test_keys_default_to_the_data_dir(tmp_path: Path) -> None:
    done = cxpulse(["keys", "--data-dir", str(tmp_path), "create", "--name", "a", "--scopes", "read"])
    assert done.returncode == 0 and (tmp_path / "keys").exists()
    env_file = tmp_path / "elsewhere"
    done = cxpulse(["keys", "create", "--name", "b", "--scopes", "read"], CXPULSE_KEYS_FILE=str(env_file))
    assert done.returncode == 0 and env_file.exists()


@pytest.mark.parametrize("command", ["run", "api"])
def test_a_public_bind_without_keys_is_refused(tmp_path: Path, command: str) -> None:
    """Refused before anything is opened or bound; the message says what to do."""
    args = [command, "--host", "0.0.0.0", "--port", str(free_port()), "--data-dir", str(tmp_path / "d")]
    done = cxpulse(args, CXPULSE_KEYS_FILE=str(tmp_path / "keys"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refusing to serve without API keys on 0.0.0.0" in done.stderr
    assert "cxpulse keys create" in done.stderr and "CXPULSE_ALLOW_OPEN=true" in done.stderr
    assert not (tmp_path / "d").exists()


def test_a_webhook_target_on_a_private_address_is_a_422_naming_url(settings: Settings) -> None:
    """With the default policy (CXPULSE_WEBHOOK_ALLOW_PRIVATE unset); literal addresses, so no DNS query."""
    settings = settings.model_copy(update={"webhook_allow_private": False})
    runtime = EmbeddedRuntime.open(settings)
    try:
        with served(runtime.app(settings)) as url:
            for target in (
                "http://169.254.169.254/latest/meta-data",
                "http://127.0.0.1:9/hook",
                "http://[::1]/x",
                "http://10.0.0.7/hook",
                "http://192.168.1.20/hook",
                "ftp://93.184.216.34/x",
            ):
                rule = {**RULE, "notify": [{"type": "webhook", "url": target}]}
                response = httpx.post(f"{url}/v1/alert-rules", json=rule)
                error = _assert_error(response, 422, "invalid_rule")
                assert [d["field"] for d in error["details"]] == ["notify[0].url"], error
            # a public address is fine (disabled, and no evaluator runs here: nothing is ever sent to it)
            ok = {
                **RULE,
                "enabled": False,
                "notify": [{"type": "webhook", "url": "https://93.184.216.34/hook"}],
            }
            assert httpx.post(f"{url}/v1/alert-rules", json=ok).status_code == 201
    finally:
        runtime.processor.flush()
        runtime.store.execute(f"DROP DATABASE IF EXISTS {settings.database} SYNC")
        runtime.store.close()
