"""Per-customer keyed state and the facts it derives (support cases, trials, subscription intervals).

`apply(state, event)` folds one event into a customer's state and returns the fact rows that changed. The
state is a plain JSON-able dict, so a Python dict (embedded mode) or a Faust table (distributed mode) can
hold it. Every fact is a pure function of the *set* of events applied, never of their arrival order, and
applying an event twice is a no-op: that is what makes late, out-of-order and repeated delivery give the
same readings. Facts carry `version` (the count of distinct stateful events seen for the customer) so an
upsert store keeps the newest row per key.
"""

from __future__ import annotations

from typing import Any

from cxpulse.domain.events import Event, EventType
from cxpulse.domain.windows import DAY_MS

RECONTACT_WINDOW_MS = 7 * DAY_MS

CustomerState = dict[str, Any]
FactRow = dict[str, Any]

CASES, TRIALS, SUBSCRIPTIONS = "cases", "trials", "subscriptions"
#: What identifies a fact within its customer (the store keeps the newest version per key).
FACT_ID = {CASES: "case_id", TRIALS: "trial_id", SUBSCRIPTIONS: "start_id"}


def new_state() -> CustomerState:
    """An empty customer: cases by case_id, and the trial / conversion / start / cancel events by id."""
    return {"seq": 0, "cases": {}, "trials": {}, "conversions": {}, "starts": {}, "cancels": {}}


def apply(state: CustomerState, event: Event) -> list[tuple[str, FactRow]]:
    """Fold `event` into `state` (in place) and return `(table, row)` for every fact that changed."""
    kind = event.type
    dims = [event.touchpoint, event.channel, event.segment]
    if kind in (EventType.SUPPORT_CONTACT, EventType.SUPPORT_RESOLVED):
        case = state["cases"].setdefault(event.case_id, {"contacts": {}, "resolutions": {}, "emitted": None})
        bucket = case["contacts"] if kind == EventType.SUPPORT_CONTACT else case["resolutions"]
        if event.event_id in bucket:
            return []
        bucket[event.event_id] = (
            event.occurred_ms if kind == EventType.SUPPORT_CONTACT else [event.occurred_ms, *dims]
        )
        state["seq"] += 1
        return _emit(
            state, CASES, event.customer_id, case, _case_fact(event.customer_id, event.case_id, case)
        )
    if kind == EventType.TRIAL_START:
        if event.event_id in state["trials"]:
            return []
        state["trials"][event.event_id] = {
            "at": event.occurred_ms,
            "days": event.trial_days,
            "dims": dims,
            "emitted": None,
        }
        state["seq"] += 1
        return _trial_facts(state, event.customer_id)
    if kind == EventType.PURCHASE or kind == EventType.SUBSCRIPTION_START:
        changed: list[tuple[str, FactRow]] = []
        if event.event_id not in state["conversions"]:
            state["conversions"][event.event_id] = event.occurred_ms
            state["seq"] += 1
            changed += _trial_facts(state, event.customer_id)
        if kind == EventType.SUBSCRIPTION_START and event.event_id not in state["starts"]:
            state["starts"][event.event_id] = {"at": event.occurred_ms, "dims": dims, "emitted": None}
            state["seq"] += 1
            changed += _subscription_facts(state, event.customer_id)
        return changed
    if kind == EventType.SUBSCRIPTION_CANCEL:
        if event.event_id in state["cancels"]:
            return []
        state["cancels"][event.event_id] = event.occurred_ms
        state["seq"] += 1
        return _subscription_facts(state, event.customer_id)
    return []


def _emit(
    state: CustomerState, table: str, customer_id: str, holder: dict[str, Any], fact: FactRow | None
) -> list[tuple[str, FactRow]]:
    """Return the fact when it differs from what `holder` last emitted (its version aside)."""
    if fact is None or fact == holder["emitted"]:
        return []
    holder["emitted"] = fact
    return [(table, {**fact, "customer_id": customer_id, "version": state["seq"]})]


def _case_fact(customer_id: str, case_id: str, case: dict[str, Any]) -> FactRow | None:
    """A resolved case: its first resolution, contacts up to it and the first re-contact within 7 days."""
    if not case["resolutions"]:
        return None
    resolved_id = min(case["resolutions"], key=lambda eid: (case["resolutions"][eid][0], eid))
    resolved_ms, touchpoint, channel, segment = case["resolutions"][resolved_id]
    contacts = sorted(case["contacts"].values())
    first_ms = min([resolved_ms, *contacts])
    recontacts = [c for c in contacts if resolved_ms < c <= resolved_ms + RECONTACT_WINDOW_MS]
    return {
        "case_id": case_id,
        "first_ms": first_ms,
        "resolved_ms": resolved_ms,
        "contacts": sum(1 for c in contacts if c <= resolved_ms),
        "recontact_ms": recontacts[0] if recontacts else None,
        "touchpoint": touchpoint,
        "channel": channel,
        "segment": segment,
    }


def _trial_facts(state: CustomerState, customer_id: str) -> list[tuple[str, FactRow]]:
    """Each trial's outcome: the first conversion in [start, start + trial_days], else expiry then."""
    conversions = sorted(state["conversions"].values())
    changed: list[tuple[str, FactRow]] = []
    for trial_id, trial in state["trials"].items():
        start, end = trial["at"], trial["at"] + trial["days"] * DAY_MS
        converted_at = next((c for c in conversions if start <= c <= end), None)
        fact = {
            "trial_id": trial_id,
            "started_ms": start,
            "outcome_ms": end if converted_at is None else converted_at,
            "converted": 0 if converted_at is None else 1,
            "touchpoint": trial["dims"][0],
            "channel": trial["dims"][1],
            "segment": trial["dims"][2],
        }
        changed += _emit(state, TRIALS, customer_id, trial, fact)
    return changed


def _subscription_facts(state: CustomerState, customer_id: str) -> list[tuple[str, FactRow]]:
    """Subscription intervals: each start with the next start and the first cancel at or after it.

    A customer is active at t when their latest start before t is not followed by a cancel before t, i.e.
    for the interval with `started_ms < t <= min(next_start_ms, cancel_ms)`.
    """
    starts = sorted(state["starts"].items(), key=lambda kv: (kv[1]["at"], kv[0]))
    cancels = sorted(state["cancels"].values())
    changed: list[tuple[str, FactRow]] = []
    for i, (start_id, start) in enumerate(starts):
        fact = {
            "start_id": start_id,
            "started_ms": start["at"],
            "next_start_ms": starts[i + 1][1]["at"] if i + 1 < len(starts) else None,
            "cancel_ms": next((c for c in cancels if c >= start["at"]), None),
            "touchpoint": start["dims"][0],
            "channel": start["dims"][1],
            "segment": start["dims"][2],
        }
        changed += _emit(state, SUBSCRIPTIONS, customer_id, start, fact)
    return changed


def current_facts(state: CustomerState, customer_id: str) -> list[tuple[str, FactRow]]:
    """Every fact this customer's state last emitted, at the current version (read-only).

    A distributed worker re-emits these when a redelivered event finds its effect already in the state
    (the table changelog was flushed, the output may not have been): writing them again is idempotent.
    """
    seq = state["seq"]
    holders = [
        *((CASES, h) for h in state["cases"].values()),
        *((TRIALS, h) for h in state["trials"].values()),
        *((SUBSCRIPTIONS, h) for h in state["starts"].values()),
    ]
    return [
        (table, {**h["emitted"], "customer_id": customer_id, "version": seq})
        for table, h in holders
        if h["emitted"] is not None
    ]
