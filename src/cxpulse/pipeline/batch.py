"""The one batch step both runtimes run — embedded `Processor` and the Faust agent alike.

Pure: no store, no Kafka, no Faust. Given a batch of deliveries, what is already known, and the keyed
state (any mutable mapping: a dict, or a view over a Faust table), it decides per event:

- **new**: its id was never seen → stored, folded into the customer's state;
- **duplicate**: its id was seen at another position (or anywhere, when positions are unknown), or
  earlier in this batch → dropped (the first accepted copy wins);
- **redelivery**: the same copy again (same Kafka position, after a crash or a rebalance) → processed
  again: its row is written again (writes are idempotent) and, when its effect is already in the state,
  the customer's current facts are re-emitted, since the first attempt's output may not have landed.

Close-the-loop (SPEC §4) runs here too, so both runtimes match answers as they are accepted: every new or
redelivered `survey_answer` is judged against the response rules passed in `responses`, as of the copy's
`received_ms` (so a replay decides the same). A match yields a `Notification` in `Step.notifications`, with
an id derived from the rule and the event id (`responses.notification_id`): a duplicate or a replay can only
ever produce the same id, which the outbox ignores. The per-customer cooldown lives in the keyed state, as
`state["notified"] = {rule_id: answer_ms}` (the event time of the latest notified answer; created when
first needed, so states saved before it existed load unchanged); a customer it changes is in
`Step.changed`, so the runtime saves it like any other state change.

Interface the runtimes rely on: `step(deliveries, known, states, *, batch_seq, responses=())` →
`Step` with `rows`, `first_seen`, `facts`, `changed`, `stored` and `notifications` (add them to the
outbox after the events are durable).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cxpulse.domain.alerts.payloads import response_payload
from cxpulse.domain.alerts.responses import cooldown_allows, notification_id, response_matches
from cxpulse.domain.alerts.rules.response import ResponseRule
from cxpulse.domain.events import STATEFUL_TYPES, Event, EventType
from cxpulse.domain.state import FACT_ID, CustomerState, FactRow, apply, current_facts, new_state
from cxpulse.notify.outbox import Notification

EventRow = dict[str, Any]
FactKey = tuple[str, str, str]  # (table, customer_id, fact id)


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What became of one request's events: stored now, or dropped as duplicates."""

    accepted: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """One copy of an event as a runtime received it."""

    event: Event
    received_ms: int
    #: Where this copy was read (`"partition:offset"`); None in-process, where a copy has no position.
    position: str | None = None


@dataclass
class Step:
    """The outcome of one batch."""

    #: Rows for the events table: new events and redeliveries, first copies only, in arrival order.
    rows: list[EventRow] = field(default_factory=list)
    #: Deliveries of events never seen before (the runtime records their ids as seen).
    first_seen: list[Delivery] = field(default_factory=list)
    #: Changed facts, newest per (table, customer, fact id).
    facts: dict[FactKey, FactRow] = field(default_factory=dict)
    #: Customers whose keyed state changed.
    changed: set[str] = field(default_factory=set)
    #: Ids of the events stored by this step (new or redelivered), to tell callers what was accepted.
    stored: set[int] = field(default_factory=set)
    #: Close-the-loop notifications of matching answers (to the outbox once the events are durable).
    notifications: list[Notification] = field(default_factory=list)

    def result_of(self, request: Sequence[Event]) -> PublishResult:
        accepted = sum(1 for e in request if id(e) in self.stored)
        return PublishResult(accepted=accepted, duplicates=len(request) - accepted)


_UNSEEN = object()


def step(
    deliveries: Sequence[Delivery],
    known: Mapping[str, str | None],
    states: MutableMapping[str, CustomerState],
    *,
    batch_seq: int,
    responses: Sequence[ResponseRule] = (),
) -> Step:
    """Dedup, fold and output one batch. `known` maps the ids seen before this batch to the position of
    their first copy (None: position unknown, so any copy is a duplicate); `states` is updated in place.
    `responses`: the response rules every stored survey answer is matched against."""
    out = Step()
    this_batch: set[str] = set()
    for delivery in deliveries:
        event = delivery.event
        eid = event.event_id
        if eid in this_batch:
            continue
        this_batch.add(eid)
        first = known.get(eid, _UNSEEN)
        if first is not _UNSEEN and (delivery.position is None or first != delivery.position):
            continue
        if first is _UNSEEN:
            out.first_seen.append(delivery)
        out.stored.add(id(event))
        out.rows.append({**event.to_row(), "received_ms": delivery.received_ms, "batch_seq": batch_seq})
        fold(event, states, out)
        if responses and event.type == EventType.SURVEY_ANSWER:
            close_loop(event, delivery.received_ms, states, responses, out, again=first is not _UNSEEN)
    return out


def fold(event: Event, states: MutableMapping[str, CustomerState], out: Step) -> None:
    """Apply a stateful event to its customer's state; collect the facts it changed."""
    if event.type not in STATEFUL_TYPES:
        return
    cid = event.customer_id
    state = states.get(cid) or new_state()
    before = state["seq"]
    facts = apply(state, event)
    if state["seq"] == before:  # already folded in: re-emit what the state says (idempotent writes)
        facts = current_facts(state, cid)
    else:
        states[cid] = state
        out.changed.add(cid)
    for table, row in facts:
        out.facts[(table, cid, row[FACT_ID[table]])] = row


def close_loop(
    event: Event,
    received_ms: int,
    states: MutableMapping[str, CustomerState],
    responses: Sequence[ResponseRule],
    out: Step,
    *,
    again: bool = False,
) -> None:
    """Match one stored answer against the response rules, as of `received_ms`; notify the matches the
    customer's cooldown allows and remember them in the keyed state.

    `again`: the answer was stored before (a redelivery, or a replay after a crash). If the state already
    holds it as the rule's latest notified answer, its notification is emitted again: the first attempt's
    may not have reached the outbox, and the same id makes a second copy harmless.
    """
    cid, answer_ms = event.customer_id, event.occurred_ms
    for rule in responses:
        if not response_matches(rule, event, received_ms):
            continue
        state = states.get(cid)
        notified: dict[str, int] = (state or {}).get("notified", {})
        last = notified.get(rule.id)
        repeat = again and last == answer_ms
        if not repeat and not cooldown_allows(last, answer_ms, rule.cooldown_ms):
            continue
        if not repeat:
            if state is None:
                state = new_state()
            # The latest notified answer wins, whatever the arrival order; `seq` is the state's version.
            state.setdefault("notified", {})[rule.id] = answer_ms if last is None else max(last, answer_ms)
            state["seq"] += 1
            states[cid] = state
            out.changed.add(cid)
        out.notifications.append(
            Notification(
                notification_id(rule.id, event.event_id),
                rule.id,
                "response",
                response_payload(rule, event),
                rule.notify,
            )
        )
