"""Per-event cost of event validation: the fastjsonschema path it had vs the hand-written fast path.

    python -m bench.validation [--events 100000] [--reps 5]

On `--events` events of the synthetic workload (`bench.workload`: logins, survey answers, purchases, support
cases, trials, subscriptions), times in one process, interleaved, best of `--reps`:
  * schema check only: fastjsonschema specialized per type vs `fast_validation.check`;
  * the whole `validate_event`: the previous implementation (kept below as `old_validate_event`) vs today's.
Both must produce the same Events. Prints µs/event and the ratio against the baseline.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import fastjsonschema
import orjson

from bench.workload import Workload
from cxpulse.domain import fast_validation
from cxpulse.domain.events import DEFAULT_TOUCHPOINT, DEFAULT_TRIAL_DAYS, UNKNOWN, Event, EventType
from cxpulse.domain.validation import (
    DAY_MS,
    KNOWN_TYPES,
    MAX_FUTURE_MS,
    MAX_PROPERTIES_BYTES,
    FieldError,
    _fast_validator,
    _schema_errors,
    parse_timestamp_ms,
    validate_event,
)


def old_validate_event(item: Any, now_ms: int, retention_days: int) -> Event | list[FieldError]:
    """`validate_event` as it was before the hand-written fast path (the baseline)."""
    event_type = item.get("type") if isinstance(item, dict) else None
    try:
        if event_type not in KNOWN_TYPES:
            raise fastjsonschema.JsonSchemaException("unknown type")
        _fast_validator(event_type)(item)
    except fastjsonschema.JsonSchemaException:
        errors = _schema_errors(item)
        return errors or [FieldError("(root)", "does not match the event schema")]
    try:
        occurred_ms = parse_timestamp_ms(item["occurred_at"])
    except ValueError as exc:
        return [FieldError("occurred_at", f"not a valid RFC 3339 timestamp: {exc}")]
    errors = []
    if occurred_ms > now_ms + MAX_FUTURE_MS:
        errors.append(FieldError("occurred_at", "is more than 5 minutes in the future"))
    if occurred_ms < now_ms - retention_days * DAY_MS:
        errors.append(FieldError("occurred_at", f"is older than the retention of {retention_days} days"))
    props = item.get("properties")
    properties = "{}" if props is None else orjson.dumps(props).decode()
    if len(properties.encode()) > MAX_PROPERTIES_BYTES:
        errors.append(FieldError("properties", f"is larger than {MAX_PROPERTIES_BYTES} bytes serialized"))
    if errors:
        return errors
    etype = item["type"]
    scale = 0
    if etype == EventType.SURVEY_ANSWER:
        scale = (
            10
            if item["survey"] == "nps"
            else 7
            if item.get("scale") == "1-7" or item["survey"] == "ces"
            else 5
        )
    return Event(
        event_id=item["event_id"],
        type=etype,
        occurred_ms=occurred_ms,
        customer_id=item["customer_id"],
        touchpoint=item.get("touchpoint") or DEFAULT_TOUCHPOINT[etype],
        channel=item.get("channel") or UNKNOWN,
        segment=item.get("segment") or UNKNOWN,
        survey=item.get("survey", ""),
        score=None if item.get("score") is None else int(item["score"]),
        scale=scale,
        comment=item.get("comment", ""),
        case_id=item.get("case_id", ""),
        order_id=item.get("order_id", ""),
        amount=None if item.get("amount") is None else float(item["amount"]),
        currency=item.get("currency", ""),
        referral=bool(item.get("referral", False)) or "referrer_id" in item,
        referrer_id=item.get("referrer_id", ""),
        trial_days=int(item.get("trial_days", DEFAULT_TRIAL_DAYS)) if etype == EventType.TRIAL_START else 0,
        plan=item.get("plan", ""),
        reason=item.get("reason", ""),
        properties=properties,
    )


def events(n: int) -> list[dict[str, Any]]:
    """The workload mix; one event in ten carries a small `properties` object, as producers often send."""
    out: list[dict[str, Any]] = []
    for i, ev in enumerate(Workload(seed=7).events(n)):
        if i % 10 == 0:
            ev["properties"] = {"app_version": "4.2.1", "ab": "b", "n": i}
        out.append(ev)
    return out


def per_event_us(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    items = events(args.events)
    now_ms = int(time.time() * 1000)
    types = [ev["type"] for ev in items]
    old_results = [old_validate_event(ev, now_ms, 400) for ev in items]  # also warms every cache
    new_results = [validate_event(ev, now_ms, 400) for ev in items]
    assert new_results == old_results, "the fast path changed a result"
    assert all(isinstance(r, Event) for r in new_results), "the workload should be all valid"
    assert all(fast_validation.check(ev) for ev in items), "the fast path should take every workload event"

    def old_schema() -> None:
        for ev, t in zip(items, types, strict=True):
            _fast_validator(t)(ev)

    def new_schema() -> None:
        check = fast_validation.check
        for ev in items:
            check(ev)

    def old_whole() -> None:
        for ev in items:
            old_validate_event(ev, now_ms, 400)

    def new_whole() -> None:
        for ev in items:
            validate_event(ev, now_ms, 400)

    runs: dict[str, Callable[[], None]] = {
        "schema check: fastjsonschema (specialized per type)": old_schema,
        "schema check: fast_validation.check": new_schema,
        "validate_event: before (fastjsonschema)": old_whole,
        "validate_event: now (fast path)": new_whole,
    }
    best = {name: float("inf") for name in runs}
    for _ in range(args.reps):  # interleaved, so a noisy neighbour hurts every variant alike
        for name, fn in runs.items():
            best[name] = min(best[name], per_event_us(fn, len(items)))
    mix = {t: round(types.count(t) / len(types), 3) for t in sorted(set(types))}
    print(f"{len(items)} events, best of {args.reps}; mix {mix}")
    names = list(runs)
    for base, new in ((names[0], names[1]), (names[2], names[3])):
        print(f"  {base:<52} {best[base]:7.2f} µs/event")
        print(f"  {new:<52} {best[new]:7.2f} µs/event  ({best[base] / best[new]:.1f}× faster)")
    print(f"  → {1e6 / best[names[3]]:,.0f} validated events/s on one core (was {1e6 / best[names[2]]:,.0f})")


if __name__ == "__main__":
    main()
