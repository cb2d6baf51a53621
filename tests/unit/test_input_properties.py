"""Hypothesis on what every request's input goes through: the body decoder (JSON / NDJSON), the event
validator, the window and duration parsers, the timestamp parameters and the key check. For any input they
answer or refuse with their own error — never another exception (a 500) — and they round-trip what they
should. (`test_fast_validation.py` checks the validator's fast path against jsonschema.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxpulse.domain.events import Event
from cxpulse.domain.validation import FieldError, validate_batch, validate_event
from cxpulse.domain.windows import (
    MAX_WINDOW_MS,
    UNIT_MS,
    WindowError,
    format_duration,
    iso_ms,
    parse_duration,
    parse_window,
)
from cxpulse.http.body import BodyError, decode_items
from cxpulse.http.errors import ApiError
from cxpulse.http.keys import KeyFile, KeyRing
from cxpulse.http.params import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, timestamp_ms
from cxpulse.store.base import compact_rows
from tests.unit.test_fast_validation import mutated_events, timestamps, valid_events

NOW = 1_800_000_000_000
RELAXED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON the decoder can produce: orjson turns integers beyond 64 bits into floats, and has no NaN/inf.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
content_types = st.sampled_from(
    ["application/json", "application/x-ndjson", "application/jsonl", "", "text/plain"]
)


# ---------------------------------------------------------------------------------------------- body


@RELAXED
@given(st.binary(max_size=300), content_types)
def test_any_body_decodes_or_is_a_body_error(body: bytes, content_type: str) -> None:
    try:
        items = decode_items(body, content_type)
    except BodyError as exc:
        assert str(exc)
        return
    assert isinstance(items, list) and items


@RELAXED
@given(st.lists(json_values, min_size=1, max_size=8), st.sampled_from([b"\n", b"\r\n"]), st.booleans())
def test_ndjson_round_trips(values: list[Any], newline: bytes, blank_lines: bool) -> None:
    lines = [orjson.dumps(v) for v in values]
    if blank_lines:
        lines = [b"", *[x for line in lines for x in (line, b"  ")]]
    body = newline.join(lines) + newline
    assert decode_items(body, "application/x-ndjson") == values


@RELAXED
@given(st.lists(json_values, min_size=1, max_size=8))
def test_a_json_array_round_trips(values: list[Any]) -> None:
    assert decode_items(orjson.dumps(values), "application/json") == values
    assert decode_items(json.dumps(values, indent=1).encode(), "application/json") == values


def test_a_bad_ndjson_line_is_named() -> None:
    with pytest.raises(BodyError, match="line 3"):
        decode_items(b'{"a": 1}\n\n{"a": \n', "application/x-ndjson")


# ------------------------------------------------------------------------------------------ validator


def _check_outcome(items: list[Any]) -> None:
    accepted, rejected = validate_batch(items, NOW, 400)
    assert len(accepted) + len(rejected) == len(items)
    assert [r.index for r in rejected] == sorted({r.index for r in rejected})
    for r in rejected:
        assert r.errors and all(isinstance(e, FieldError) and e.field and e.message for e in r.errors)
    if accepted:
        rows = [{**e.to_row(), "received_ms": NOW, "batch_seq": 1} for e in accepted]
        compact_rows(rows)  # what the store insert does with them: must serialize


@RELAXED
@given(st.lists(st.one_of(json_values, mutated_events(), valid_events()), min_size=1, max_size=6))
def test_the_validator_answers_every_item(items: list[Any]) -> None:
    """Through the real decoder, as ingest sees them (sent by a producer whose JSON may hold NaN, or
    integers past 64 bits)."""
    try:
        decoded = decode_items(json.dumps(items).encode(), "application/json")
    except BodyError:
        return  # NaN / Infinity are not JSON: a 400
    _check_outcome(decoded)


def test_an_unknown_field_with_an_empty_name_is_named() -> None:
    """Found by hypothesis: `{"": 1}` was reported with an empty field name."""
    item = {"event_id": "e", "type": "login", "occurred_at": iso_ms(NOW), "customer_id": "c", "": 1}
    result = validate_event(item, NOW, 400)
    assert isinstance(result, list) and [e.field for e in result] == ['""']


@RELAXED
@given(valid_events(), timestamps())
def test_any_timestamp_is_accepted_or_named(item: dict[str, Any], occurred_at: str) -> None:
    item = orjson.loads(json.dumps({**item, "occurred_at": occurred_at}))  # as the decoder hands it over
    result = validate_event(item, NOW, 400)
    if isinstance(result, Event):
        assert NOW - 400 * UNIT_MS["d"] <= result.occurred_ms <= NOW + 5 * 60_000
    else:
        assert [e.field for e in result] == ["occurred_at"] * len(result)


@RELAXED
@given(valid_events(), st.integers(0, 399 * UNIT_MS["d"]))
def test_a_valid_event_keeps_its_identity(item: dict[str, Any], age_ms: int) -> None:
    item = {**item, "occurred_at": iso_ms(NOW - age_ms)}
    result = validate_event(orjson.loads(json.dumps(item)), NOW, 400)
    assert isinstance(result, Event), result
    assert (result.event_id, result.customer_id, result.type) == (
        item["event_id"],
        item["customer_id"],
        item["type"],
    )


# ---------------------------------------------------------------------------------- windows, durations

units = st.sampled_from(sorted(UNIT_MS))


@RELAXED
@given(st.text(max_size=12))
def test_any_window_text_parses_or_is_a_window_error(text: str) -> None:
    try:
        ms = parse_window(text)
    except WindowError as exc:
        assert "window" in str(exc)
        return
    assert 0 < ms <= MAX_WINDOW_MS


@RELAXED
@given(st.integers(0, 10**10), units, st.sampled_from(["", " ", "\t"]))
def test_windows_mean_what_they_say(n: int, unit: str, pad: str) -> None:
    text = f"{pad}{n}{unit}{pad}"
    expected = n * UNIT_MS[unit]
    if n == 0 or expected > MAX_WINDOW_MS or len(str(n)) > 9:
        with pytest.raises(WindowError):
            parse_window(text)
    else:
        assert parse_window(text) == expected


@RELAXED
@given(st.one_of(st.text(max_size=12), json_values), st.booleans())
def test_any_duration_parses_or_is_a_window_error(value: Any, allow_zero: bool) -> None:
    try:
        ms = parse_duration(value, name="for", allow_zero=allow_zero)
    except WindowError as exc:
        assert str(exc).startswith("for ")
        return
    assert (0 if allow_zero else 1) <= ms <= MAX_WINDOW_MS
    assert parse_duration(format_duration(ms), name="for", allow_zero=True) == ms


# ---------------------------------------------------------------------------------- timestamps, keys


@RELAXED
@given(st.one_of(st.text(max_size=40), timestamps()))
def test_any_timestamp_parameter_is_a_time_the_api_can_print_or_a_400(text: str) -> None:
    try:
        ms = timestamp_ms(text)
    except ApiError as exc:
        assert exc.status == 400 and exc.details[0]["field"] == "at"
        return
    if text:
        assert MIN_TIMESTAMP_MS <= ms < MAX_TIMESTAMP_MS
    # every edge a reading computes from it (400d windows, their previous window, a bucket past `to`)
    for edge in (ms - 2 * MAX_WINDOW_MS, ms + MAX_WINDOW_MS):
        iso_ms(edge)


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    path: Path = tmp_path_factory.mktemp("keys") / "keys"
    KeyFile(path).create("k", frozenset({"read"}))
    return KeyRing(path)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    token=st.one_of(
        st.text(max_size=80), st.from_regex(r"cxp_[0-9a-f]{8}\.[A-Za-z0-9_-]{43}", fullmatch=True)
    )
)
def test_any_token_is_refused_without_an_error(ring: KeyRing, token: str) -> None:
    assert ring.verify(token) is None
