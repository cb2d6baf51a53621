"""Close-the-loop in the embedded processor on chDB: the notification is in the outbox when `process`
returns (before the 202), the cooldown is saved with the keyed state, and a crash before that state was
flushed is repaired by recovery, which replays the answers without a second message."""

from __future__ import annotations

import time
from typing import Any

from cxpulse.domain.alerts.responses import notification_id
from cxpulse.domain.alerts.rules.response import ResponseRule
from cxpulse.domain.alerts.rules.rule import parse_rule
from cxpulse.domain.events import Event
from cxpulse.domain.metrics import Direction
from cxpulse.notify.outbox import StoreOutbox
from cxpulse.pipeline.processor import Processor
from cxpulse.store.repository import Repository
from services.embedded import EmbeddedRuntime
from tests.conftest import event, validated

HOUR = 3_600_000


def rule() -> ResponseRule:
    parsed = parse_rule(
        {
            "type": "response",
            "name": "detractors",
            "survey": "nps",
            "notify": [{"url": "https://hooks.example/x"}],
        },
        metrics={"nps": Direction.HIGHER_IS_BETTER},
        rule_id="rr",
    )
    assert isinstance(parsed, ResponseRule)
    return parsed


def answers(now: int, *items: tuple[str, str, int]) -> list[Event]:
    raw: list[dict[str, Any]] = [
        event(eid, "survey_answer", now - HOUR, customer, survey="nps", score=score)
        for eid, customer, score in items
    ]
    return validated(raw, now)


def processor(runtime: EmbeddedRuntime, woken: list[int] | None = None) -> Processor:
    p = Processor(
        Repository(runtime.store),
        flush_interval_s=3600,
        responses=lambda: [rule()],
        outbox=StoreOutbox(runtime.store),
        on_notify=None if woken is None else (lambda: woken.append(1)),
    )
    p.recover()
    return p


def test_the_notification_is_in_the_outbox_when_process_returns(runtime: EmbeddedRuntime) -> None:
    woken: list[int] = []
    p = processor(runtime, woken)
    now = int(time.time() * 1000)
    result = p.process_many([answers(now, ("e1", "c1", 2), ("e2", "c2", 9))], flush=False)[0]
    assert result.accepted == 2
    outbox = StoreOutbox(runtime.store)
    assert [d.id for d in outbox.deliveries()] == [notification_id("rr", "e1")]
    assert woken == [1]
    p.flush()
    assert Repository(runtime.store).load_states()["c1"]["notified"] == {"rr": now - HOUR}


def test_recovery_restores_the_cooldown_and_never_notifies_twice(runtime: EmbeddedRuntime) -> None:
    now = int(time.time() * 1000)
    first = processor(runtime)
    first.process_many([answers(now, ("e1", "c1", 2))], flush=False)  # state not flushed: a crash here
    outbox = StoreOutbox(runtime.store)
    assert len(outbox.deliveries()) == 1

    second = processor(runtime)  # recovery replays the answer: same id, the outbox ignores it
    assert second.states["c1"]["notified"] == {"rr": now - HOUR}
    assert len(outbox.deliveries()) == 1
    # Within the cooldown the same customer's next detractor answer does not notify.
    second.process_many([answers(now, ("e3", "c1", 1))])
    assert [d.id for d in outbox.deliveries()] == [notification_id("rr", "e1")]
    assert processor(runtime).recover() == 0  # checkpointed


def test_without_rules_recovery_counts_only_stateful_events(runtime: EmbeddedRuntime) -> None:
    now = int(time.time() * 1000)
    plain = Processor(Repository(runtime.store), flush_interval_s=3600)
    plain.process_many([answers(now, ("e1", "c1", 2))], flush=False)
    assert Processor(Repository(runtime.store)).recover() == 0  # answers are replayed only for rules


def test_a_saved_cooldown_is_loaded_for_an_answer_of_a_customer_not_in_memory(
    runtime: EmbeddedRuntime,
) -> None:
    """Keyed state is loaded lazily: an answer (not a stateful event) must still bring its customer's
    saved cooldown into memory, or a second message would go out within the cooldown."""
    now = int(time.time() * 1000)
    first = processor(runtime)
    first.process(answers(now, ("e1", "c1", 2)))
    first.flush()
    second = processor(runtime)  # a restart: nothing in memory
    assert "c1" not in second.states
    second.process(answers(now + 1, ("e2", "c1", 3)))
    assert [d.id for d in StoreOutbox(runtime.store).deliveries()] == [notification_id("rr", "e1")]
