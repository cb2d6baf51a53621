"""The `cx.events` wire format and the worker's per-batch logic, without a broker (pure units)."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from bench.workload import Workload
from cxpulse.bus.codec import DeadLetter, dead_letter_headers, decode_event, encode_event
from cxpulse.domain.events import Event
from cxpulse.domain.state import apply, current_facts, new_state
from cxpulse.domain.validation import validate_event
from services.aggregator.faust_app import BatchProcessor, BatchResult

NOW = int(time.time() * 1000)


def _events(n: int = 3000) -> list[Event]:
    out = []
    for item in Workload(seed=7, customers=200, days=30, end_ms=NOW - 60_000).events(n):
        result = validate_event(item, NOW, 400)
        assert isinstance(result, Event), result
        out.append(result)
    return out


def test_encode_then_validate_gives_back_the_same_event() -> None:
    events = _events()
    assert {e.type for e in events} >= {"survey_answer", "purchase", "support_resolved", "trial_start"}
    for e in events:
        assert decode_event(encode_event(e), NOW, 400) == e


@pytest.mark.parametrize(
    "extra",
    [
        {"type": "survey_answer", "survey": "csat", "score": 6, "scale": "1-7", "comment": "ok"},
        {"type": "purchase", "referral": True, "amount": 0, "properties": {"a": [1, {"b": None}]}},
        {"type": "purchase", "referrer_id": "cust-9", "currency": "EUR"},
        {"type": "trial_start", "plan": "pro"},
        {"type": "subscription_cancel", "reason": "price"},
    ],
)
def test_round_trip_of_optional_fields(extra: dict[str, Any]) -> None:
    item = {"event_id": "e", "occurred_at": "2026-11-20T10:11:12.345Z", "customer_id": "c", **extra}
    event = validate_event(item, NOW, 400)
    assert isinstance(event, Event)
    assert decode_event(encode_event(event), NOW, 400) == event


def test_bad_messages_become_dead_letters_with_a_reason() -> None:
    not_json = decode_event(b"\xff{not json", NOW, 400)
    assert isinstance(not_json, DeadLetter) and not_json.reason == "undecodable"
    invalid = decode_event(b'{"event_id": "x", "type": "survey_answer"}', NOW, 400)
    assert isinstance(invalid, DeadLetter) and invalid.reason == "invalid"
    assert {e["field"] for e in invalid.errors} >= {"occurred_at", "customer_id"}
    headers = dict(dead_letter_headers(invalid, "cx.events", 2, 17))
    assert headers["cx.dlq.reason"] == b"invalid"
    assert headers["cx.dlq.source"] == b"cx.events/2/17"
    assert orjson.loads(headers["cx.dlq.errors"]) == invalid.errors


def test_current_facts_are_the_last_emitted_facts_at_the_current_version() -> None:
    state = new_state()
    emitted: dict[tuple[str, str], dict[str, Any]] = {}
    for e in _events():
        if e.customer_id != "cust-1":
            continue
        for table, row in apply(state, e):
            key = row.get("case_id") or row.get("trial_id") or row.get("start_id")
            emitted[(table, key)] = row
    assert emitted, "the workload has stateful events for cust-1"
    again = current_facts(state, "cust-1")
    strip = {k: {f: v for f, v in r.items() if f != "version"} for k, r in emitted.items()}
    assert {
        (t, r.get("case_id") or r.get("trial_id") or r.get("start_id")): {
            f: v for f, v in r.items() if f != "version"
        }
        for t, r in again
    } == strip
    assert {r["version"] for _, r in again} == {state["seq"]}


@dataclass
class _Msg:
    topic: str
    partition: int
    offset: int
    timestamp: float
    key: bytes | None
    value: bytes | None


@dataclass(eq=False)
class _Event:  # what BatchProcessor reads of a Faust event (weak-referenceable like the real one)
    message: _Msg


def _batch(values: list[tuple[int, int, Event | bytes]]) -> list[Any]:
    return [
        _Event(_Msg("t", p, o, NOW / 1000, b"k", v if isinstance(v, bytes) else encode_event(v)))
        for p, o, v in values
    ]


def test_batch_dedups_by_first_offset_and_reprocesses_a_redelivery() -> None:
    contact = Event("e1", "support_contact", NOW - 10_000, "c1", "support", case_id="k")
    resolved = Event("e2", "support_resolved", NOW - 5_000, "c1", "support", case_id="k")
    table: dict[str, Any] = {}  # what the worker persists (changelog + in-memory table)
    batch = BatchProcessor(table.get, 400)

    def persist(result: BatchResult) -> None:
        table.update({cid: copy.deepcopy(entry) for cid, (_, entry) in result.entries.items()})

    result = batch.process(_batch([(2, 0, contact), (2, 1, resolved), (2, 2, resolved), (2, 3, b"x")]))
    persist(result)
    out = result.outputs["c1"]
    assert [r["event_id"] for r in out.events] == ["e1", "e2"]  # offset 2 is a duplicate
    assert [t for t, _ in out.facts] == ["cases"]
    assert [d.reason for _, d in result.dead] == ["undecodable"]
    assert {cid: p for cid, (p, _) in result.entries.items()} == {"c1": 2}  # the changelog partition
    assert table["c1"]["ids"] == {"e1": "2:0", "e2": "2:1"}
    assert table["c1"]["state"]["seq"] == 2

    # The same offsets again (a crash before the commit): processed again, and the case fact, already
    # folded into the recovered state, is re-emitted rather than lost.
    result = batch.process(_batch([(2, 1, resolved)]))
    out = result.outputs["c1"]
    assert [r["event_id"] for r in out.events] == ["e2"]
    assert [(t, r["case_id"], r["contacts"], r["version"]) for t, r in out.facts] == [("cases", "k", 1, 2)]

    # A later copy of e1 in a new batch is still a duplicate.
    result = batch.process(_batch([(2, 9, contact)]))
    assert result.outputs == {}
