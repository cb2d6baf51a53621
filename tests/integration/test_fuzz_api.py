"""Schemathesis against the OpenAPI document of the running embedded service, with an admin key (every
scope) so no answer is a 401: for every operation, generated requests — valid and invalid — never get a
5xx, and every answer matches what the document declares (status, content type, body schema).

Bounded for CI: a fixed number of examples per operation (`FUZZ_EXAMPLES`, default 40), no deadline.
`GET /v1/stream` never ends, so its cases are sent with a streaming client that checks the status and
headers, and the body only when it is an error.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cxpulse.config import Settings
from cxpulse.http.keys import KeyFile
from services.embedded import EmbeddedRuntime
from tests.server_support import placeholder_app, served

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class Fuzzed:
    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module")
def fuzzed(chdb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    keys = tmp_path_factory.mktemp("fuzz") / "keys"
    settings = Settings(
        data_dir=str(chdb_dir),
        database=f"t_{uuid.uuid4().hex[:12]}",
        keys_file=str(keys),
        ingest_rate=0,
        read_rate=0,
        max_streams_per_key=1000,
        webhook_allow_private=True,  # generated hostnames must not become DNS queries
    )
    key = KeyFile(keys).create("fuzz", frozenset({"ingest", "read", "admin"}))
    runtime = EmbeddedRuntime.open(settings)
    try:
        with served(runtime.app(settings)) as url:
            yield Fuzzed(url, key)
    finally:
        runtime.processor.flush()
        runtime.store.execute(f"DROP DATABASE IF EXISTS {settings.database} SYNC")
        runtime.store.close()


def _openapi() -> dict[str, Any]:
    """The document the service serves at /openapi.json (built over placeholders: it does not depend on
    the store). Loaded at import, since the operations become the test's parameters."""
    return placeholder_app().openapi()


schema = schemathesis.openapi.from_dict(_openapi())


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    """The document declares the NDJSON body as a string: send the generated text as the body."""
    if isinstance(value, str):
        return value.encode()
    return b"\n".join(orjson.dumps(item) for item in (value if isinstance(value, list) else [value]))


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_and_never_fails(case: schemathesis.Case[Any], fuzzed: Fuzzed) -> None:
    if case.path == "/v1/stream":
        _check_stream(case, fuzzed)
        return
    case.call_and_validate(base_url=fuzzed.url, headers=fuzzed.headers, checks=CHECKS, timeout=60)


def _check_stream(case: schemathesis.Case[Any], fuzzed: Fuzzed) -> None:
    kwargs = case.as_transport_kwargs(base_url=fuzzed.url, headers=fuzzed.headers)
    with httpx.stream(
        "GET", kwargs["url"], params=kwargs.get("params"), headers=kwargs.get("headers"), timeout=30
    ) as response:
        assert response.status_code < 500, response.status_code
        if response.status_code == 200:
            assert response.headers["content-type"].startswith("text/event-stream")
        else:
            response.read()
            body = response.json()
            assert response.status_code in (400, 404, 422), response.text
            assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}


#: What the fuzzer found, kept as plain requests: each was a 500 (a date the API could not print).
FOUND = [
    ("/v1/series/nps?step=1d&from=9999-12-30T00:00:00Z&to=9999-12-31T23:59:59Z", "to"),
    ("/v1/series/nps?step=1h&from=0001-01-01T00:00:00Z&to=0001-01-01T05:00:00Z", "to"),
    ("/v1/pulse?metrics=nps&at=0001-01-01T00:00:00%2B01:00", "at"),
    ("/v1/pulse/nps/breakdown?by=channel&at=9999-12-31T23:59:59-01:00", "at"),
]


@pytest.mark.parametrize(("path", "field"), FOUND)
def test_what_the_fuzzer_found_is_a_400_naming_the_parameter(fuzzed: Fuzzed, path: str, field: str) -> None:
    response = httpx.get(fuzzed.url + path, headers=fuzzed.headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"][0]["field"] == field


VALID_RULES = st.one_of(
    st.fixed_dictionaries(
        {
            "name": st.text(min_size=1, max_size=30).filter(str.strip),
            "metric": st.sampled_from(["nps", "csat", "ces", "fcr", "churn"]),
            "window": st.sampled_from(["1h", "24h", "7d"]),
            "condition": st.one_of(
                st.fixed_dictionaries(
                    {"op": st.sampled_from(["below", "above"]), "threshold": st.integers(-100, 100)}
                ),
                st.fixed_dictionaries(
                    {"op": st.sampled_from(["worsen", "improve"]), "by": st.integers(1, 50)}
                ),
            ),
            "enabled": st.booleans(),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("response"),
            "name": st.just("call detractors"),
            "survey": st.sampled_from(["nps", "ces"]),
        }
    ),
)


def test_alert_rules_stateful(fuzzed: Fuzzed) -> None:
    """Sequences over the rules collection, following the document's links (create → get / replace /
    delete the created rule): no 5xx and no answer outside the document, whatever the order."""
    rules = schema.include(path_regex=r"^/v1/alert-rules")

    @rules.hook
    def before_generate_body(context: Any, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        """The document types the rule body loosely (`Any`): mix in valid rules, so that creates succeed
        and the links (get / replace / delete the created rule) get followed."""
        return st.one_of(strategy, VALID_RULES, VALID_RULES)

    base = rules.as_state_machine()

    class Rules(base):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            return {"base_url": fuzzed.url, "headers": fuzzed.headers, "timeout": 60}

        def validate_response(self, response: Any, case: schemathesis.Case[Any], **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    Rules.run(
        settings=settings(
            max_examples=max(5, EXAMPLES // 4),
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
