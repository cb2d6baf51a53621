"""The embedded processor on the real engine: group commit results, write-behind facts and recovery."""

from __future__ import annotations

from typing import Any

from cxpulse.domain.events import Event
from cxpulse.domain.metrics import Filters
from cxpulse.pipeline.processor import Processor
from cxpulse.reading import PulseReader
from cxpulse.store.repository import Repository
from services.embedded import EmbeddedRuntime
from tests.conftest import T0, event, ms, validated

DAY = 86_400_000
AT = ms(T0)


def events(*items: dict[str, Any]) -> list[Event]:
    return validated(list(items), AT)


def case(prefix: str, customer: str) -> list[Event]:
    return events(
        event(f"{prefix}-c", "support_contact", AT - 2 * DAY, customer, case_id=prefix),
        event(f"{prefix}-r", "support_resolved", AT - DAY, customer, case_id=prefix),
    )


def fcr_n(runtime: EmbeddedRuntime) -> int:
    n: int = PulseReader(runtime.store).pulse(["fcr"], 7 * DAY, AT, Filters())["fcr"]["n"]
    return n


def test_group_commit_reports_each_batch_and_the_first_wins(runtime: EmbeddedRuntime) -> None:
    a = case("A", "c1")
    repeat = events(event("A-c", "support_contact", AT - 3 * DAY, "c1", case_id="A"))  # same id, other time
    results = runtime.processor.process_many([a, repeat, case("B", "c2")])
    assert [(r.accepted, r.duplicates) for r in results] == [(2, 0), (0, 1), (2, 0)]
    assert fcr_n(runtime) == 2


def test_facts_wait_while_work_is_queued_and_are_written_when_idle(runtime: EmbeddedRuntime) -> None:
    runtime.processor.flush_interval_s = 3600
    runtime.processor.process_many([case("A", "c1")], flush=False)
    assert fcr_n(runtime) == 0  # written behind: the case's fact is pending
    runtime.processor.process_many([case("B", "c2")], flush=True)
    assert fcr_n(runtime) == 2


def test_recovery_replays_what_the_last_flush_did_not_cover(runtime: EmbeddedRuntime) -> None:
    runtime.processor.flush_interval_s = 3600
    runtime.processor.process_many([case("A", "c1")], flush=True)
    runtime.processor.process_many([case("B", "c2"), case("C", "c1")], flush=False)
    assert fcr_n(runtime) == 1
    # A crash here loses nothing: a new processor on the same store replays the unflushed batch.
    fresh = Processor(Repository(runtime.store))
    assert fresh.recover() == 4
    assert fcr_n(runtime) == 3
    assert Processor(Repository(runtime.store)).recover() == 0  # the replay was checkpointed
    assert fcr_n(runtime) == 3


def test_recovery_in_parts_gives_the_same_facts(runtime: EmbeddedRuntime) -> None:
    runtime.processor.flush_interval_s = 3600
    batches = [case(f"K{i}", f"c{i % 3}") for i in range(6)]
    runtime.processor.process_many(batches, flush=False)
    assert fcr_n(runtime) == 0
    # replayed a few events at a time (disjoint sets of customers), the checkpoint moved at the end only
    assert Processor(Repository(runtime.store)).recover(part_size=2) == 12
    assert fcr_n(runtime) == 6
    assert Processor(Repository(runtime.store)).recover(part_size=2) == 0
