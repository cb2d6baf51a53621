"""The hand-written fast path accepts nothing the schema rejects, and every valid event it is shown.

`fast_validation.check` lets valid events skip fastjsonschema/jsonschema; a False only sends the item down
the full path (which words the errors). So the property that matters is one-sided — fast says valid ⇒
`jsonschema.Draft7Validator` and fastjsonschema say valid — plus "valid events do take the fast path",
which is what makes it fast. Valid items are generated from the SPEC's rules (checked against jsonschema,
so a wrong generator fails loudly), then mutated the ways producers get events wrong.
"""

from __future__ import annotations

import copy
import math
import string
from typing import Any

import fastjsonschema
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxpulse.domain import fast_validation
from cxpulse.domain.event_schema import event_schema
from cxpulse.domain.events import EventType
from cxpulse.domain.validation import KNOWN_TYPES, _fast_validator, validate_event

SCHEMA = event_schema()
REFERENCE = jsonschema.Draft7Validator(SCHEMA)
NOW = 1_800_000_000_000
TYPES = [str(t) for t in EventType]
FIELDS = sorted(SCHEMA["properties"])

Item = dict[str, Any]


def fastjsonschema_valid(item: Any) -> bool:
    event_type = item.get("type") if isinstance(item, dict) else None
    if not isinstance(event_type, str) or event_type not in KNOWN_TYPES:
        return False
    try:
        _fast_validator(event_type)(item)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def assert_agrees(item: Any) -> bool:
    """The one-sided contract; returns the fast path's answer."""
    fast = fast_validation.check(item)
    if fast:
        assert REFERENCE.is_valid(item), f"fast path accepted what jsonschema rejects: {item!r}"
        assert fastjsonschema_valid(item), f"fast path accepted what fastjsonschema rejects: {item!r}"
    return fast


# ------------------------------------------------------------------------------------------ strategies
dimension = st.from_regex(r"[a-z0-9_.-]{1,64}", fullmatch=True)
ident = st.text(min_size=1, max_size=128)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """RFC 3339 as the schema's pattern allows it: T/t/space, 0–9 fraction digits, Z/z/±hh:mm."""
    y, mo, d = draw(st.integers(1, 9999)), draw(st.integers(1, 12)), draw(st.integers(1, 28))
    h, mi, s = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
    sep = draw(st.sampled_from("Tt "))
    frac = draw(st.one_of(st.just(""), st.from_regex(r"\.[0-9]{1,9}", fullmatch=True)))
    off = draw(
        st.one_of(
            st.sampled_from("Zz"),
            st.builds(
                lambda sign, oh, om: f"{sign}{oh:02d}:{om:02d}",
                st.sampled_from("+-"),
                st.integers(0, 23),
                st.integers(0, 59),
            ),
        )
    )
    return f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{frac}{off}"


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def valid_events(draw: st.DrawFn) -> Item:
    etype = draw(st.sampled_from(TYPES))
    item: Item = {
        "event_id": draw(ident),
        "type": etype,
        "occurred_at": draw(timestamps()),
        "customer_id": draw(ident),
    }
    for name in ("touchpoint", "channel", "segment"):
        if draw(st.booleans()):
            item[name] = draw(dimension)
    if draw(st.booleans()):
        item["properties"] = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4))
    if etype == "survey_answer":
        survey = draw(st.sampled_from(["nps", "csat", "ces"]))
        item["survey"] = survey
        lo, hi = {"nps": (0, 10), "ces": (1, 7), "csat": (1, 5)}[survey]
        if survey == "csat" and draw(st.booleans()):
            item["scale"] = draw(st.sampled_from(["1-5", "1-7"]))
            hi = 7 if item["scale"] == "1-7" else 5
        score = draw(st.integers(lo, hi))
        item["score"] = float(score) if draw(st.integers(0, 9)) == 0 else score  # 9.0 is an integer
        if draw(st.booleans()):
            item["comment"] = draw(st.text(max_size=2000))
    elif etype == "purchase":
        for name, value in (
            ("order_id", ident),
            ("amount", st.one_of(st.integers(0, 10**9), st.floats(0, 1e12))),
            ("currency", st.from_regex(r"[A-Z]{3}", fullmatch=True)),
            ("referral", st.booleans()),
            ("referrer_id", ident),
        ):
            if draw(st.booleans()):
                item[name] = draw(value)
    elif etype in ("support_contact", "support_resolved"):
        item["case_id"] = draw(ident)
    elif etype == "trial_start":
        if draw(st.booleans()):
            item["trial_days"] = draw(st.integers(1, 365))
        if draw(st.booleans()):
            item["plan"] = draw(st.text(min_size=1, max_size=64))
    elif etype == "subscription_start":
        if draw(st.booleans()):
            item["plan"] = draw(st.text(min_size=1, max_size=64))
    elif etype == "subscription_cancel" and draw(st.booleans()):
        item["reason"] = draw(st.text(max_size=2000))
    return item


#: Values that are wrong (or right) in the ways that matter: bool-is-int, 9.0 vs 9.5, nan, edges, newlines.
tricky_values = st.one_of(
    json_values,
    st.sampled_from(
        [
            True,
            False,
            0,
            -1,
            1,
            5,
            6,
            7,
            8,
            10,
            11,
            365,
            366,
            9.0,
            9.5,
            -0.0,
            1e308,
            math.inf,
            -math.inf,
            math.nan,
            "",
            "9",
            "checkout\n",
            "EUR\n",
            "eur",
            "EURO",
            "Checkout",
            "a" * 64,
            "a" * 65,
            "x" * 128,
            "x" * 129,
            "x" * 2000,
            "x" * 2001,
            "2026-02-30T08:00:00Z",
            "2026-11-20T08:00:00",
            "2026-11-20T08:00:00Z\n",
            "2026-11-20T08:00Z",
            "2026-11-20T24:00:00+24:00",
            "nps",
            "csat",
            "ces",
            "1-5",
            "1-7",
            "1-10",
            *TYPES,
            [],
            {},
        ]
    ),
    timestamps(),
    dimension,
)


@st.composite
def mutated_events(draw: st.DrawFn) -> Any:
    item = draw(valid_events())
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "drop", "foreign", "retype", "unknown", "whole"]))
        if op == "set":
            item[draw(st.sampled_from(FIELDS))] = draw(tricky_values)
        elif op == "drop" and item:
            del item[draw(st.sampled_from(sorted(item)))]
        elif op == "foreign":  # a field of some other event type, with a plausible value
            donor = draw(valid_events())
            extra = sorted(set(donor) - set(item))
            if extra:
                name = draw(st.sampled_from(extra))
                item[name] = donor[name]
        elif op == "retype":
            item["type"] = draw(st.sampled_from([*TYPES, "refund", "Login", 3, None]))
        elif op == "unknown":
            item[draw(st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=12))] = 1
        else:
            return draw(st.one_of(json_values, st.just(item)))
    return item


# ------------------------------------------------------------------------------------------ properties
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_events())
def test_valid_events_take_the_fast_path(item: Item) -> None:
    assert REFERENCE.is_valid(item), list(REFERENCE.iter_errors(item))  # the generator follows the schema
    assert assert_agrees(item), f"fast path refused a valid event: {item!r}"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_events())
def test_the_fast_path_accepts_nothing_the_schema_rejects(item: Any) -> None:
    assert_agrees(item)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(valid_events(), mutated_events()))
def test_validate_event_answers_the_same_with_and_without_the_fast_path(item: Any) -> None:
    fast = outcome(item)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fast_validation, "check", lambda _item: False)
        full = outcome(item)
    assert fast == full


def outcome(item: Any) -> object:
    """The result of `validate_event`, or the type of what it raises (e.g. orjson on a > 64-bit integer)."""
    try:
        return validate_event(copy.deepcopy(item), NOW, 100_000)
    except Exception as exc:
        return type(exc)


# ------------------------------------------------------------------------------------------ table
def nps(**fields: Any) -> Item:
    base: Item = {
        "event_id": "e1",
        "type": "survey_answer",
        "occurred_at": "2026-11-20T08:00:00Z",
        "customer_id": "c1",
        "survey": "nps",
        "score": 9,
    }
    return {**base, **fields}


@pytest.mark.parametrize(
    ("item", "fast", "jsonschema_ok", "fastjsonschema_ok"),
    [
        pytest.param(nps(), True, True, True, id="nps 9"),
        pytest.param(nps(score=9.0), True, True, True, id="9.0 is an integer"),
        pytest.param(nps(score=9.5), False, False, False, id="9.5 is not"),
        pytest.param(nps(score=True), False, False, False, id="bool is not an integer"),
        pytest.param(nps(score=10), True, True, True, id="nps 10"),
        pytest.param(nps(score=11), False, False, False, id="nps 11"),
        pytest.param(nps(scale="1-7"), False, False, False, id="scale on nps"),
        pytest.param(nps(survey="csat", score=6), False, False, False, id="csat 6 on 1-5"),
        pytest.param(nps(survey="csat", score=7, scale="1-7"), True, True, True, id="csat 7 on 1-7"),
        pytest.param(nps(survey="csat", score=5, scale="1-5"), True, True, True, id="csat 5 on 1-5"),
        pytest.param(nps(survey="ces", score=7), True, True, True, id="ces 7"),
        pytest.param(nps(survey="ces", score=0), False, False, False, id="ces 0"),
        pytest.param(nps(touchpoint="a" * 64), True, True, True, id="touchpoint at 64"),
        pytest.param(nps(touchpoint="a" * 65), False, False, False, id="touchpoint at 65"),
        pytest.param(nps(occurred_at="2026-11-20t08:00:00.123456789z"), True, True, True, id="lowercase t/z"),
        pytest.param(nps(occurred_at="2026-02-30T08:00:00Z"), True, True, True, id="Feb 30 matches pattern"),
        pytest.param(nps(occurred_at="2026-11-20T08:00:00"), False, False, False, id="no offset"),
        pytest.param(nps(case_id="k1"), False, False, False, id="foreign field"),
        pytest.param(nps(utm="x"), False, False, False, id="unknown field"),
        pytest.param(nps(properties=[]), False, False, False, id="properties array"),
        pytest.param(nps(type="refund"), False, False, False, id="unknown type"),
        pytest.param(["not", "an", "object"], False, False, False, id="array item"),
        # jsonschema's `$` also matches before a final newline; fastjsonschema's (`\Z`) does not
        pytest.param(nps(touchpoint="checkout\n"), False, True, False, id="trailing newline"),
        pytest.param(nps(occurred_at="2026-11-20T08:00:00Z\n"), False, True, False, id="timestamp newline"),
    ],
)
def test_table(item: Any, fast: bool, jsonschema_ok: bool, fastjsonschema_ok: bool) -> None:
    assert fast_validation.check(item) is fast
    assert REFERENCE.is_valid(item) is jsonschema_ok
    assert fastjsonschema_valid(item) is fastjsonschema_ok


@pytest.mark.parametrize("etype", [[], {}, 3, None])
def test_a_type_that_is_not_a_string_is_a_field_error_not_a_crash(etype: Any) -> None:
    result = validate_event(nps(type=etype), NOW, 100_000)
    assert isinstance(result, list) and result[0].field == "type", result


def test_nan_amount_is_left_to_the_full_path() -> None:
    item: Item = {
        "event_id": "e1",
        "type": "purchase",
        "occurred_at": "2026-11-20T08:00:00Z",
        "customer_id": "c",
    }
    item["amount"] = math.nan
    assert REFERENCE.is_valid(item) and fastjsonschema_valid(item)
    assert not fast_validation.check(item)


def test_every_event_type_has_a_fast_rule() -> None:
    tree = fast_validation.compile_schema(SCHEMA)
    assert isinstance(tree, fast_validation.Switch) and tree.fields == ("type",)
    assert set(TYPES) <= set(tree.table)


def test_the_limits_come_from_the_schema() -> None:
    """Change the schema, and the fast path follows: nothing is retyped by hand."""
    schema = copy.deepcopy(SCHEMA)
    schema["definitions"]["id"]["maxLength"] = 3
    schema["allOf"][0]["then"]["allOf"][0]["then"]["properties"]["score"]["maximum"] = 5
    tree = fast_validation.compile_schema(schema)
    assert fast_validation.accepts(tree, nps(event_id="abc", score=5))
    assert not fast_validation.accepts(tree, nps(event_id="abcd", score=5))
    assert not fast_validation.accepts(tree, nps(event_id="abc", score=6))


def test_a_keyword_it_does_not_know_disables_it_rather_than_being_ignored() -> None:
    schema = copy.deepcopy(SCHEMA)
    schema["properties"]["comment"]["format"] = "email"
    with pytest.raises(fast_validation.Unsupported):
        fast_validation.compile_schema(schema)
    assert not fast_validation.accepts(None, nps())
