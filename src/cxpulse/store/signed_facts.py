"""The signed fact rows (migration 003): a changed fact retracted and re-added, and what the tables hold.

Facts are written as signed rows: when a fact changes, its previous row is written again with sign −1
next to the new one (+1), in one insert, so a window reads only its time slice of `case_facts`,
`trial_facts` and `subscriber_facts` (one row per customer). The writer knows the previous row (its keyed
state remembers what it last flushed); after a crash, `net_facts` and `net_subscribers` tell what the
tables hold for the customers being replayed.

Apart from `rollups`: these rows follow the keyed state, not the batches of events, and need none of the
rollups' catch-up or read snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from cxpulse.domain.state import CASES, TRIALS, FactRow
from cxpulse.store.base import Store

#: fact table → (signed table, its content columns): the signed row of a fact is its content + sign.
SIGNED_FACTS: dict[str, tuple[str, tuple[str, ...]]] = {
    CASES: (
        "case_facts",
        (
            "resolved_ms", "customer_id", "case_id", "first_ms", "contacts", "recontact_ms",
            "touchpoint", "channel", "segment",
        ),
    ),
    TRIALS: (
        "trial_facts",
        (
            "outcome_ms", "customer_id", "trial_id", "started_ms", "converted",
            "touchpoint", "channel", "segment",
        ),
    ),
}  # fmt: skip

#: "No end" / "no cancel" in a subscriber row's intervals.
FAR = 9_223_372_036_854_775_807
#: A subscriber row: {"customer_id", and per interval, sorted by start: "started", "ends", …}.
Subscriber = dict[str, Any]
SUBSCRIBER_ARRAYS = ("started", "ends", "cancels", "touchpoints", "channels", "segments", "start_ids")


def content(table: str, row: FactRow) -> FactRow:
    """The part of a fact row that the signed table holds (no version)."""
    return {c: row[c] for c in SIGNED_FACTS[table][1]}


def subscriber(customer_id: str, intervals: Iterable[FactRow]) -> Subscriber | None:
    """A customer's subscriber row from its subscription interval facts (None without any)."""
    rows = [
        (
            f["started_ms"],
            min(_far(f["next_start_ms"]), _far(f["cancel_ms"])),
            _far(f["cancel_ms"]),
            f["touchpoint"],
            f["channel"],
            f["segment"],
            f["start_id"],
        )
        for f in intervals
    ]
    if not rows:
        return None
    columns = zip(*sorted(rows, key=lambda r: (r[0], r[6])), strict=True)
    return {
        "customer_id": customer_id,
        **{name: list(c) for name, c in zip(SUBSCRIBER_ARRAYS, columns, strict=True)},
    }


def _far(ms: int | None) -> int:
    return FAR if ms is None else ms


class SignedFacts:
    """The signed fact writes and reads of one store object; only its single writer uses it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.database

    def write_facts(self, changes: Iterable[tuple[str, FactRow | None, FactRow | None]]) -> None:
        """Per `(fact table, previous content, new content)`: −1 for the previous, +1 for the new."""
        rows: dict[str, list[dict[str, Any]]] = {}
        for table, old, new in changes:
            out = rows.setdefault(table, [])
            if old is not None:
                out.append({**old, "sign": -1})
            if new is not None:
                out.append({**new, "sign": 1})
        for table, signed in rows.items():
            self.store.insert(SIGNED_FACTS[table][0], signed)

    def write_subscribers(self, changes: Iterable[tuple[Subscriber | None, Subscriber | None]]) -> None:
        """Per customer `(previous row, new row)`: −1 for the previous, +1 for the new, in one insert."""
        rows = [{**row, "sign": sign} for old, new in changes for row, sign in ((old, -1), (new, 1)) if row]
        self.store.insert("subscriber_facts", rows)

    def net_subscribers(self, customer_ids: Sequence[str]) -> list[tuple[Subscriber, int]]:
        """What subscriber_facts holds for these customers: (row, net sign ≠ 0)."""
        if not customer_ids:
            return []
        columns = ", ".join(SUBSCRIBER_ARRAYS)
        rows = self.store.rows(
            f"SELECT customer_id, {columns}, sum(sign) AS s FROM {{db:Identifier}}.subscriber_facts "
            f"WHERE customer_id IN {{ids:Array(String)}} GROUP BY customer_id, {columns} HAVING s != 0",
            {"db": self.db, "ids": list(customer_ids)},
        )
        return [
            ({"customer_id": r[0], **dict(zip(SUBSCRIBER_ARRAYS, r[1:-1], strict=True))}, int(r[-1]))
            for r in rows
        ]

    def net_facts(self, customer_ids: Sequence[str]) -> list[tuple[str, FactRow, int]]:
        """What the signed tables hold for these customers: (fact table, content, net sign ≠ 0)."""
        if not customer_ids:
            return []
        out: list[tuple[str, FactRow, int]] = []
        for table, (signed, columns) in SIGNED_FACTS.items():
            cols = ", ".join(columns)
            rows = self.store.rows(
                f"SELECT {cols}, sum(sign) AS s FROM {{db:Identifier}}.{signed} "
                f"WHERE customer_id IN {{ids:Array(String)}} GROUP BY {cols} HAVING s != 0",
                {"db": self.db, "ids": list(customer_ids)},
            )
            out += [(table, dict(zip(columns, r[:-1], strict=True)), int(r[-1])) for r in rows]
        return out
