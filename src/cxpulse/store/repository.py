"""The processing side's SQL: event ids, events, facts, keyed state and checkpoints."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from cxpulse.domain.alerts.responses import LATE_MS
from cxpulse.domain.events import STATEFUL_TYPES, Event
from cxpulse.domain.state import CustomerState, FactRow
from cxpulse.store.base import Store
from cxpulse.store.bulk_state import BULK_COLUMNS
from cxpulse.store.idset import wait_for_event_ids

EVENT_COLUMNS = tuple(Event("", "", 0, "", "").to_row())
CHECKPOINT_KEY = ""


class Repository:
    def __init__(self, store: Store) -> None:
        self.store = store

    def existing_ids(self, event_ids: Sequence[str]) -> set[str]:
        """The ids among `event_ids` that the events table already holds."""
        if not event_ids:
            return set()
        wait_for_event_ids(self.store)
        rows = self.store.rows(
            "SELECT id FROM (SELECT arrayJoin({ids:Array(String)}) AS id) "
            "WHERE sipHash128(id) IN {db:Identifier}.event_ids",
            {"db": self.store.database, "ids": list(event_ids)},
        )
        return {r[0] for r in rows}

    def insert_events(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert event rows (`Event.to_row()` plus received_ms and batch_seq): the durable point."""
        self.store.insert("events", rows)

    def upsert_facts(self, facts: Iterable[tuple[str, FactRow]]) -> None:
        by_table: dict[str, list[FactRow]] = {}
        for table, row in facts:
            by_table.setdefault(table, []).append(row)
        for table, rows in by_table.items():
            self.store.insert(table, rows)

    def save_states(self, states: dict[str, CustomerState], *, checkpoint: int) -> None:
        """Upsert changed states together with the checkpoint row (customer_id '' is never a customer), in
        one write to the key-value table."""
        rows = [
            {"customer_id": cid, "version": state["seq"], "state": orjson.dumps(state).decode()}
            for cid, state in states.items()
        ]
        rows.append({"customer_id": CHECKPOINT_KEY, "version": checkpoint, "state": ""})
        self.store.insert("customer_state_kv", rows)

    def load_states(self, customer_ids: Sequence[str] | None = None) -> dict[str, CustomerState]:
        """The saved states of these customers (key lookups; a customer never saved is absent), or of
        every customer (None: inspection and tests; the processor loads only what a batch needs)."""
        if customer_ids is None:
            rows = self.store.rows(
                "SELECT customer_id, state FROM {db:Identifier}.customer_state_kv WHERE customer_id != ''",
                {"db": self.store.database},
            )
            return {cid: orjson.loads(state) for cid, state in rows}
        if not customer_ids:
            return {}
        rows = self.store.rows(
            "SELECT customer_id, state FROM {db:Identifier}.customer_state_kv "
            "WHERE customer_id IN {ids:Array(String)}",
            {"db": self.store.database, "ids": [c for c in customer_ids if c != CHECKPOINT_KEY]},
        )
        return {cid: orjson.loads(state) for cid, state in rows}

    def bulk_events(self, customer_ids: Sequence[str]) -> dict[str, list[list[Any]]]:
        """The stateful events a bulk derivation left for these customers (rows of `BULK_COLUMNS`)."""
        out: dict[str, list[list[Any]]] = {}
        if not customer_ids:
            return out
        rows = self.store.rows(
            f"SELECT customer_id, {BULK_COLUMNS} FROM {{db:Identifier}}.customer_events_bulk "
            "WHERE customer_id IN {ids:Array(String)}",
            {"db": self.store.database, "ids": list(customer_ids)},
        )
        for cid, *event in rows:
            out.setdefault(cid, []).append(event)
        return out

    def checkpoint(self) -> int:
        """The last batch whose facts and state are fully written."""
        rows = self.store.rows(
            "SELECT version FROM {db:Identifier}.customer_state_kv WHERE customer_id = ''",
            {"db": self.store.database},
        )
        return int(rows[0][0]) if rows else 0

    def last_batch_seq(self) -> int:
        rows = self.store.rows(
            "SELECT max(batch_seq) FROM {db:Identifier}.events", {"db": self.store.database}
        )
        return int(rows[0][0]) if rows else 0

    def count_stateful_after(self, batch_seq: int, *, answers: bool = False, stateful: bool = True) -> int:
        """How many events of batches after `batch_seq` recovery replays: the stateful events (unless
        `stateful` is false: a bulk derivation did them) and, with `answers`, the survey answers that were
        not yet late when received (for close-the-loop)."""
        params = self._replay_params(batch_seq, answers, stateful)
        rows = self.store.rows(
            f"SELECT count() FROM {{db:Identifier}}.events WHERE {_REPLAYED}",
            params,
        )
        return int(rows[0][0])

    def stateful_events_after(
        self,
        batch_seq: int,
        part: int = 0,
        parts: int = 1,
        *,
        answers: bool = False,
        stateful: bool = True,
    ) -> list[tuple[Event, int]]:
        """`(event, received_ms)` of the events recovery replays from batches after `batch_seq` (see
        `count_stateful_after`), for one of `parts` disjoint sets of customers — keyed state is per
        customer, so a replay can go part by part in bounded memory. In processing order (batch by
        batch), so close-the-loop cooldowns decide as they did the first time."""
        columns = ", ".join(EVENT_COLUMNS)
        params = self._replay_params(batch_seq, answers, stateful) | {"part": part, "parts": parts}
        rows = self.store.rows(
            f"SELECT {columns}, received_ms FROM {{db:Identifier}}.events "
            f"WHERE {_REPLAYED} AND customer_key % {{parts:UInt64}} = {{part:UInt64}} "
            "ORDER BY batch_seq, occurred_ms, event_id",
            params,
        )
        width = len(EVENT_COLUMNS)
        return [
            (Event.from_row(dict(zip(EVENT_COLUMNS, r[:width], strict=True))), int(r[width])) for r in rows
        ]

    def _replay_params(self, batch_seq: int, answers: bool, stateful: bool) -> dict[str, Any]:
        return {
            "db": self.store.database,
            "after": batch_seq,
            "types": sorted(STATEFUL_TYPES) if stateful else [],
            "answers": int(answers),
            "late": LATE_MS,
        }


#: The rows recovery replays: stateful events, and (when `answers`) answers received in time to notify.
_REPLAYED = (
    "batch_seq > {after:UInt64} AND (type IN {types:Array(String)} OR ({answers:UInt8} = 1 "
    "AND type = 'survey_answer' AND received_ms - occurred_ms <= {late:Int64}))"
)
