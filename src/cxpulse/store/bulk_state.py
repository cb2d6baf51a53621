"""Facts derived in SQL, in bulk, and keyed state left to be folded lazily: for large replays.

After a bulk import (or any recovery with many stateful events to replay) folding event by event in
Python costs minutes and gigabytes. This derives, for every customer with stateful events after the
checkpoint and from *all* their stateful events, the facts folding them would give (cases, trials,
subscription intervals — upserted, and as signed rows), and leaves each such customer's state as its
stateful events (`customer_events_bulk`, the saved state a `{"bulk": true}` mark): the processor folds them
the first time it needs the customer (`fold_bulk_state`), which gives the same state — facts are functions
of the set of events, which is what makes a set-based derivation possible;
`tests/integration/test_bulk_state.py` holds it equal to the fold on random streams.

Customers are processed in parts (by customer key), so the engine's memory stays bounded; nothing is
checkpointed until every part is written, and redoing a part is harmless (signed rows are rewritten as
differences from what the tables hold). An event id repeated in the import is folded once.
"""

from __future__ import annotations

from typing import Any

from cxpulse.domain.events import STATEFUL_TYPES, Event
from cxpulse.domain.state import RECONTACT_WINDOW_MS, CustomerState, apply, new_state
from cxpulse.domain.windows import DAY_MS
from cxpulse.store.base import Store

_TYPES = ", ".join(f"'{t}'" for t in sorted(STATEFUL_TYPES))


class BulkState:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.database

    def customers_after(self, checkpoint: int) -> int:
        """How many customers have stateful events in batches after `checkpoint`."""
        rows = self.store.rows(
            f"SELECT uniqExact(customer_id) FROM {self.db}.events "
            f"WHERE batch_seq > {int(checkpoint)} AND type IN ({_TYPES})"
        )
        return int(rows[0][0])

    def derive(self, checkpoint: int, parts: int) -> None:
        """Facts and state of every customer with stateful events after `checkpoint`, part by part."""
        for part in range(parts):
            self._part(checkpoint, part, parts)

    def _execute(self, sql: str) -> None:
        self.store.execute(sql)

    def _temp(self, name: str, select: str) -> str:
        table = f"{self.db}.bulk_{name}"
        self._execute(f"DROP TABLE IF EXISTS {table}")
        self._execute(f"CREATE TABLE {table} ENGINE = Memory AS {select}")
        return table

    def _part(self, checkpoint: int, part: int, parts: int) -> None:
        db = self.db
        who = self._temp(
            "who",
            f"SELECT DISTINCT customer_id FROM {db}.events WHERE batch_seq > {int(checkpoint)} "
            f"AND type IN ({_TYPES}) AND cityHash64(customer_id) % {parts} = {part}",
        )
        ev = self._temp(
            "events",
            "SELECT event_id, type, customer_id, occurred_ms AS ms, case_id, trial_days AS days,"
            f" touchpoint AS tp, channel AS ch, segment AS seg FROM {db}.events"
            f" WHERE type IN ({_TYPES}) AND customer_id IN (SELECT customer_id FROM {who})",
        )
        try:
            seq = self._temp(
                "seq",
                "SELECT customer_id, toUInt64(uniqExact(event_id) + uniqExactIf(event_id,"
                f" type = 'subscription_start')) AS seq FROM {ev} GROUP BY customer_id",
            )
            cases = self._cases(ev)
            trials = self._trials(ev)
            subs = self._subscriptions(ev)
            self._write_facts(cases, trials, subs, who, seq)
            # the state is left as its events, folded when first needed (then saved as usual)
            self._execute(
                f"INSERT INTO {db}.customer_events_bulk SELECT customer_id, event_id, type, ms, case_id,"
                " days,"
                f" tp, ch, seg FROM {ev}"
            )
            # close-the-loop cooldowns are not a function of the events: they are carried over
            self._execute(
                f"INSERT INTO {db}.customer_state_kv (customer_id, version, state)"
                f" SELECT w.customer_id, 0, if(JSONHas(o.state, 'notified'),"
                f" concat('{{\"bulk\":true,\"notified\":', JSONExtractRaw(o.state, 'notified'), '}}'),"
                f" '{BULK_MARK}') FROM {who} AS w LEFT JOIN {db}.customer_state_kv AS o"
                " ON o.customer_id = w.customer_id"
            )
        finally:
            for name in ("who", "events", "seq", "cases", "trials", "subscriptions"):
                self._execute(f"DROP TABLE IF EXISTS {db}.bulk_{name}")

    def _cases(self, ev: str) -> str:
        """One row per (customer, case) with a resolution: its fact."""
        return self._temp(
            "cases",
            "SELECT customer_id, case_id, resolved.2 AS resolved_ms,"
            " if(empty(cms), resolved_ms, least(resolved_ms, arrayMin(cms))) AS first_ms,"
            " toUInt32(arrayCount(c -> c <= resolved_ms, cms)) AS contacts,"
            f" arrayFilter(c -> c > resolved_ms AND c <= resolved_ms + {RECONTACT_WINDOW_MS}, cms) AS re,"
            " if(empty(re), NULL, arrayMin(re)) AS recontact_ms,"
            " resolved.3 AS touchpoint, resolved.4 AS channel, resolved.5 AS segment"
            " FROM ("
            "  SELECT customer_id, case_id,"
            "  argMinIf((event_id, ms, tp, ch, seg), (ms, event_id), type = 'support_resolved') AS resolved,"
            "  arrayMap(x -> x.2, groupUniqArrayIf((event_id, ms), type = 'support_contact')) AS cms"
            f"  FROM {ev} WHERE type IN ('support_contact', 'support_resolved') GROUP BY customer_id, case_id"
            "  HAVING countIf(type = 'support_resolved') > 0"
            " )",
        )

    def _trials(self, ev: str) -> str:
        """One row per trial: its outcome (first conversion within its days, else expiry)."""
        return self._temp(
            "trials",
            "SELECT t.customer_id AS customer_id, t.event_id AS trial_id, t.ms AS started_ms,"
            f" t.ms + toInt64(t.days) * {DAY_MS} AS ends,"
            " arrayFilter(c -> c >= started_ms AND c <= ends, c.conv) AS hits,"
            " if(empty(hits), ends, arrayMin(hits)) AS outcome_ms, toUInt8(notEmpty(hits)) AS converted,"
            " t.tp AS touchpoint, t.ch AS channel, t.seg AS segment"
            f" FROM (SELECT * FROM {ev} WHERE type = 'trial_start' LIMIT 1 BY customer_id, event_id) AS t"
            " LEFT JOIN (SELECT customer_id, groupArray(ms) AS conv FROM "
            f" {ev} WHERE type IN ('purchase', 'subscription_start') GROUP BY customer_id) AS c"
            " ON t.customer_id = c.customer_id",
        )

    def _subscriptions(self, ev: str) -> str:
        """One row per subscription start: its interval (next start, first cancel at or after it)."""
        return self._temp(
            "subscriptions",
            "SELECT s.customer_id AS customer_id, s.event_id AS start_id, s.ms AS started_ms,"
            " s.next_start_ms AS next_start_ms, arrayFilter(c -> c >= started_ms, x.cancels) AS after,"
            " if(empty(after), NULL, arrayMin(after)) AS cancel_ms,"
            " s.tp AS touchpoint, s.ch AS channel, s.seg AS segment"
            " FROM ("
            "  SELECT customer_id, st.1 AS event_id, st.2 AS ms, st.3 AS tp, st.4 AS ch, st.5 AS seg,"
            "  if(i < length(starts), toNullable(starts[i + 1].2), NULL) AS next_start_ms"
            "  FROM ("
            "   SELECT customer_id,"
            "   arraySort(x -> (x.2, x.1), groupUniqArray((event_id, ms, tp, ch, seg))) AS starts"
            f"   FROM {ev} WHERE type = 'subscription_start' GROUP BY customer_id"
            "  ) ARRAY JOIN starts AS st, arrayEnumerate(starts) AS i"
            " ) AS s"
            f" LEFT JOIN (SELECT customer_id, groupArray(ms) AS cancels FROM {ev}"
            "  WHERE type = 'subscription_cancel' GROUP BY customer_id) AS x"
            " ON s.customer_id = x.customer_id",
        )

    def _write_facts(self, cases: str, trials: str, subs: str, who: str, seq: str) -> None:
        db = self.db
        # signed rows: retract whatever the tables hold for these customers, then add the derived facts
        for signed, columns, derived in (
            (
                "case_facts",
                "resolved_ms, customer_id, case_id, first_ms, contacts, recontact_ms, touchpoint, channel,"
                " segment",
                cases,
            ),
            (
                "trial_facts",
                "outcome_ms, customer_id, trial_id, started_ms, converted, touchpoint, channel, segment",
                trials,
            ),
        ):
            if self.store.rows(f"SELECT count() FROM {db}.{signed}")[0][0]:  # not a first import
                self._execute(
                    f"INSERT INTO {db}.{signed} ({columns}, sign) SELECT {columns}, -s FROM ("
                    f" SELECT {columns}, sum(sign) AS s FROM {db}.{signed}"
                    f" WHERE customer_id IN (SELECT customer_id FROM {who})"
                    f" GROUP BY {columns} HAVING s != 0)"
                )
            self._execute(f"INSERT INTO {db}.{signed} ({columns}, sign) SELECT {columns}, 1 FROM {derived}")
        far = "9223372036854775807"
        cols = "started, ends, cancels, touchpoints, channels, segments, start_ids"
        if self.store.rows(f"SELECT count() FROM {db}.subscriber_facts")[0][0]:  # not a first import
            self._execute(
                f"INSERT INTO {db}.subscriber_facts SELECT customer_id, {cols}, -s FROM (SELECT customer_id,"
                f" {cols}, sum(sign) AS s FROM {db}.subscriber_facts WHERE customer_id IN"
                f" (SELECT customer_id FROM {who}) GROUP BY customer_id, {cols} HAVING s != 0)"
            )
        arrays = ", ".join(f"arrayMap(x -> x.{i + 1}, v)" for i in range(7))
        self._execute(
            f"INSERT INTO {db}.subscriber_facts SELECT customer_id, {arrays}, 1 FROM ("
            " SELECT customer_id, arraySort(x -> (x.1, x.7), groupArray((started_ms,"
            f" least(ifNull(next_start_ms, {far}), ifNull(cancel_ms, {far})), ifNull(cancel_ms, {far}),"
            " toString(touchpoint), toString(channel), toString(segment), start_id))) AS v"
            f" FROM {subs} GROUP BY customer_id)"
        )
        self._execute(
            f"INSERT INTO {db}.cases (customer_id, case_id, first_ms, resolved_ms, contacts, recontact_ms,"
            " touchpoint, channel, segment, version) SELECT c.customer_id, case_id, first_ms, resolved_ms,"
            f" contacts, recontact_ms, touchpoint, channel, segment, q.seq FROM {cases} AS c"
            f" JOIN {seq} AS q ON c.customer_id = q.customer_id"
        )
        self._execute(
            f"INSERT INTO {db}.trials (customer_id, trial_id, started_ms, outcome_ms, converted, touchpoint,"
            " channel, segment, version) SELECT t.customer_id, trial_id, started_ms, outcome_ms, converted,"
            f" touchpoint, channel, segment, q.seq FROM {trials} AS t"
            f" JOIN {seq} AS q ON t.customer_id = q.customer_id"
        )
        self._execute(
            f"INSERT INTO {db}.subscriptions (customer_id, start_id, started_ms, next_start_ms, cancel_ms,"
            " touchpoint, channel, segment, version) SELECT s.customer_id, start_id, started_ms,"
            f" next_start_ms, cancel_ms, touchpoint, channel, segment, q.seq FROM {subs} AS s"
            f" JOIN {seq} AS q ON s.customer_id = q.customer_id"
        )


#: A customer_state_kv value meaning "fold this customer's events in customer_events_bulk".
BULK_MARK = '{"bulk":true}'
BULK_COLUMNS = "event_id, type, occurred_ms, case_id, trial_days, touchpoint, channel, segment"


def is_bulk(saved: dict[str, Any]) -> bool:
    return bool(saved.get("bulk"))


def fold_bulk_state(customer_id: str, saved: dict[str, Any], events: list[list[Any]]) -> CustomerState:
    """The state a bulk derivation left as the customer's events (rows of `BULK_COLUMNS`), folded, with
    the cooldowns it carried over from `saved`. Every fact it emits is the one the derivation wrote
    (`flushed` = `emitted`)."""
    state = new_state()
    if "notified" in saved:
        state["notified"] = saved["notified"]
    names = BULK_COLUMNS.split(", ")
    for fields in events:
        apply(state, Event(customer_id=customer_id, **dict(zip(names, fields, strict=True))))
    for key in ("cases", "trials", "starts"):
        for holder in state[key].values():
            holder["flushed"] = holder["emitted"]
    return state
