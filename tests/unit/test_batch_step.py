"""`pipeline.batch.step`, the one batch step of both runtimes: dedup, redelivery, fold, output rows."""

from __future__ import annotations

from typing import Any

from cxpulse.domain.events import Event
from cxpulse.domain.state import CustomerState
from cxpulse.pipeline.batch import Delivery, Step, fold, step

NOW = 1_790_000_000_000


def contact(eid: str, at: int, cid: str = "c1", case: str = "k") -> Event:
    return Event(eid, "support_contact", at, cid, "support", case_id=case)


def resolved(eid: str, at: int, cid: str = "c1", case: str = "k") -> Event:
    return Event(eid, "support_resolved", at, cid, "support", case_id=case)


def login(eid: str, at: int, cid: str = "c1") -> Event:
    return Event(eid, "login", at, cid, "usage")


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["event_id"] for r in rows]


def test_new_events_are_stored_once_in_arrival_order_and_folded() -> None:
    states: dict[str, CustomerState] = {}
    a, b, c = contact("a", NOW - 3000), resolved("b", NOW - 2000), login("c", NOW - 1000, "c2")
    done = step([Delivery(a, NOW), Delivery(b, NOW), Delivery(c, NOW)], {}, states, batch_seq=7)
    assert ids(done.rows) == ["a", "b", "c"]
    assert {r["batch_seq"] for r in done.rows} == {7} and {r["received_ms"] for r in done.rows} == {NOW}
    assert [d.event.event_id for d in done.first_seen] == ["a", "b", "c"]
    assert list(done.facts) == [("cases", "c1", "k")]
    assert done.changed == {"c1"}  # a login changes no keyed state
    assert states["c1"]["seq"] == 2 and "c2" not in states
    assert done.result_of([a, b]).accepted == 2 and done.result_of([c]).duplicates == 0


def test_repeats_in_a_batch_and_known_ids_are_duplicates_when_positions_are_unknown() -> None:
    states: dict[str, CustomerState] = {}
    first, again, known = login("x", NOW), login("x", NOW - 5), login("old", NOW)
    done = step(
        [Delivery(first, NOW), Delivery(again, NOW), Delivery(known, NOW)], {"old": None}, states, batch_seq=1
    )
    assert ids(done.rows) == ["x"]
    result = done.result_of([first, again, known])
    assert (result.accepted, result.duplicates) == (1, 2)


def test_same_position_is_a_redelivery_and_another_position_a_duplicate() -> None:
    states: dict[str, CustomerState] = {}
    a, b = contact("a", NOW - 3000), resolved("b", NOW - 2000)
    first = step([Delivery(a, NOW, "0:1"), Delivery(b, NOW, "0:2")], {}, states, batch_seq=0)
    assert ids(first.rows) == ["a", "b"] and len(first.facts) == 1
    known = {d.event.event_id: d.position for d in first.first_seen}
    # the same copies again (a crash before the commit): stored again, and the case fact — already in the
    # state — re-emitted, not lost; nothing is recorded as newly seen
    again = step([Delivery(b, NOW, "0:2")], known, states, batch_seq=0)
    assert ids(again.rows) == ["b"] and again.first_seen == []
    assert [(t, row["version"]) for (t, _, _), row in again.facts.items()] == [("cases", 2)]
    assert again.changed == set() and states["c1"]["seq"] == 2
    # a later copy of `a` at another offset is a duplicate
    later = step([Delivery(a, NOW, "0:9")], known, states, batch_seq=0)
    assert later.rows == [] and later.facts == {}


def test_fold_alone_replays_stateful_events_idempotently() -> None:
    states: dict[str, CustomerState] = {}
    done = step(
        [Delivery(contact("a", NOW - 10), NOW), Delivery(resolved("b", NOW), NOW)], {}, states, batch_seq=1
    )
    replay = step([], {}, states, batch_seq=1)  # an empty step changes nothing
    assert replay.rows == [] and replay.facts == {}
    out = Step()
    fold(resolved("b", NOW), states, out)  # already folded: the same fact again, same version
    assert out.facts == done.facts and out.changed == set()
