"""State and facts derived in SQL after a bulk import equal what folding the same events gives.

Each example stores a random stream twice: once through the processor (the Python fold, the reference),
once straight into `events` as a bulk import would, recovered with the SQL derivation. States, facts,
signed fact rows and readings must agree; then both take the same later events through the fold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxpulse.domain.events import STATEFUL_TYPES
from cxpulse.domain.metrics import METRICS, Filters
from cxpulse.domain.state import new_state
from cxpulse.pipeline.processor import Processor
from cxpulse.reading import PulseReader
from cxpulse.store.base import Store
from cxpulse.store.repository import Repository
from services.embedded import EmbeddedRuntime
from tests.conftest import iso, validated
from tests.integration.test_rollups import AT, DAY, NOW, _item, close, fresh_runtime

Item = dict[str, Any]
FACT_COLUMNS = {
    "cases": "customer_id, case_id, first_ms, resolved_ms, contacts, recontact_ms, touchpoint, channel,"
    " segment",
    "trials": "customer_id, trial_id, started_ms, outcome_ms, converted, touchpoint, channel, segment",
    "subscriptions": "customer_id, start_id, started_ms, next_start_ms, cancel_ms, touchpoint, channel,"
    " segment",
}
SIGNED = {"cases": "case_facts", "trials": "trial_facts"}


def facts(store: Store) -> dict[str, list[list[Any]]]:
    out = {}
    for table, cols in FACT_COLUMNS.items():
        out[table] = store.rows(f"SELECT {cols} FROM {store.database}.{table} FINAL ORDER BY {cols}")
        if table not in SIGNED:
            continue
        signed_cols = cols.replace("customer_id, ", "")
        out[SIGNED[table]] = store.rows(
            f"SELECT customer_id, {signed_cols}, sum(sign) AS s FROM {store.database}.{SIGNED[table]} "
            f"GROUP BY customer_id, {signed_cols} HAVING s != 0 ORDER BY customer_id, {signed_cols}"
        )
    arrays = "started, ends, cancels, touchpoints, channels, segments, start_ids"
    out["subscriber_facts"] = store.rows(
        f"SELECT customer_id, {arrays}, sum(sign) AS s FROM {store.database}.subscriber_facts "
        f"GROUP BY customer_id, {arrays} HAVING s != 0 ORDER BY customer_id"
    )
    return out


def states(rt: EmbeddedRuntime, customers: list[str]) -> dict[str, Any]:
    """The customers' states as a processor loads them (a bulk state is folded then)."""
    processor = Processor(Repository(rt.store))
    processor._load(customers)
    return processor.states


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    items=st.lists(_item(), min_size=1, max_size=60),
    later=st.lists(_item(), max_size=15),
    repeats=st.lists(st.integers(0, 59), max_size=4),
)
def test_bulk_derivation_equals_the_fold(
    chdb_dir: Path, items: list[Item], later: list[Item], repeats: list[int]
) -> None:
    stream = [{"event_id": f"e{i}", **it} for i, it in enumerate(items)]
    events = validated(stream, NOW)
    more = validated([{"event_id": f"m{i}", **it} for i, it in enumerate(later)], NOW)
    customers = sorted({e.customer_id for e in events + more})
    with fresh_runtime(chdb_dir) as folded, fresh_runtime(chdb_dir) as bulk:
        folded.processor.process(events)
        rows = [{**e.to_row(), "received_ms": NOW, "batch_seq": 1} for e in events]
        # a bulk file may repeat an event: the derivation must fold it once (readings count stored survey
        # answers and purchases, so only repeats of events that count through facts or distinct customers)
        once = STATEFUL_TYPES - {"purchase"}
        rows += [rows[i] for i in repeats if i < len(rows) and rows[i]["type"] in once]
        bulk.store.insert("events", rows)
        processor = Processor(Repository(bulk.store))
        assert processor.recover(bulk_threshold=0) == sum(r["type"] in STATEFUL_TYPES for r in rows)
        bulk.processor = processor
        assert states(bulk, customers) == states(folded, customers)
        assert facts(bulk.store) == facts(folded.store)
        for at in (AT, AT - 3 * DAY + 7):
            for window in (DAY, 30 * DAY):
                close(
                    PulseReader(bulk.store).pulse(list(METRICS), window, at, Filters()),
                    PulseReader(folded.store).pulse(list(METRICS), window, at, Filters()),
                )
        # both go on from there through the fold
        folded.processor.process(more)
        bulk.processor.process(more)
        assert states(bulk, customers) == states(folded, customers)
        assert facts(bulk.store) == facts(folded.store)


def test_a_bulk_derivation_keeps_close_the_loop_cooldowns(chdb_dir: Path) -> None:
    """Cooldowns are not a function of the events: the bulk mark carries them over to the folded state."""
    with fresh_runtime(chdb_dir) as rt:
        repo = Repository(rt.store)
        repo.save_states({"c1": {**new_state(), "notified": {"rr": NOW - DAY}}}, checkpoint=0)
        events = validated(
            [
                {"event_id": "s1", "type": "support_contact", "customer_id": "c1", "case_id": "k1",
                 "occurred_at": iso(NOW - 2 * DAY)},
                {"event_id": "s2", "type": "support_contact", "customer_id": "c2", "case_id": "k2",
                 "occurred_at": iso(NOW - 2 * DAY)},
            ],
            NOW,
        )  # fmt: skip
        rt.store.insert("events", [{**e.to_row(), "received_ms": NOW, "batch_seq": 1} for e in events])
        processor = Processor(Repository(rt.store))
        assert processor.recover(bulk_threshold=0) == 2
        rt.processor = processor
        loaded = states(rt, ["c1", "c2"])
        assert loaded["c1"]["notified"] == {"rr": NOW - DAY}
        assert list(loaded["c1"]["cases"]) == ["k1"]
        assert "notified" not in loaded["c2"] and list(loaded["c2"]["cases"]) == ["k2"]
