"""The outcome snapshot's writer: every survey answer with its customer's next outcomes (migration 008).

`/v1/outcomes` joined the cohort's customers with every purchase, cancellation and referral of the period
at each request (≈ 460 ms at 10M events: a hash lookup per outcome). An outcome counts when it falls in
`(answer, answer + horizon]`, i.e. when the *first* outcome after the answer does — so one time per
answer and kind, found once with ASOF joins, answers every horizon. The snapshot is rebuilt whole from
the events of batches up to `gen`: outcomes are never retracted and batches after `gen` can only bring
an answer's next outcome earlier, which readers add from those batches (`outcome_queries`); an answer of
the cohort's window stored after `gen` sends the reader to the raw SQL.

A rebuild reads every answer and outcome (≈ 2 s at 10M events), so it runs at most once per
`max(min_interval_s, 20 × its last duration)`: at most ≈ 5 % of a core, whatever the store's size.
Only the single embedded writer keeps it; any other reader reads the raw SQL (`snapshot.outcome_view`).
"""

from __future__ import annotations

import logging
import threading
import time

from cxpulse.store.base import Store, StoreError
from cxpulse.store.snapshot import writer_progress

log = logging.getLogger(__name__)

#: No outcome time: compares above any `answer + horizon`.
NONE_MS = 2**63 - 1
#: A rebuild may take this share of the time between rebuilds, at most.
SHARE = 0.05


class OutcomeSnapshot:
    """Rebuilds `answer_outcomes` for one store object; only its single writer uses it."""

    def __init__(self, store: Store, min_interval_s: float = 30.0) -> None:
        self.store = store
        self.db = store.database
        self.progress = writer_progress(store)
        self.min_interval_s = min_interval_s
        self._next_at = 0.0
        self._running = threading.Lock()

    def refresh(self, upto: int, *, force: bool = False) -> bool:
        """Rebuild from the batches up to `upto` when due (or `force`); True when it did. A call while
        another rebuilds returns False at once. A failed rebuild is logged and tried again when due:
        readings stay exact meanwhile (the previous build and its corrections, or the raw SQL), and the
        flush or loop that called it goes on."""
        if not self._running.acquire(blocking=False):
            return False
        try:
            return self._refresh(upto, force)
        except StoreError as exc:
            self._next_at = time.monotonic() + self.min_interval_s
            log.error("outcome snapshot rebuild failed (tried again later): %s", exc)
            return False
        finally:
            self._running.release()

    def _refresh(self, upto: int, force: bool) -> bool:
        progress = self.progress
        if progress.distributed or (progress.outcomes is not None and progress.outcomes >= upto):
            return False
        if not force and time.monotonic() < self._next_at:
            return False
        started = time.monotonic()
        self._drop(keep=progress.outcomes)  # what a crash or an earlier process left
        self.store.execute(self._build(upto))
        with progress.outcomes_lock.writing():
            progress.outcomes = upto
        self._drop(keep=upto)
        took = time.monotonic() - started
        self._next_at = time.monotonic() + max(self.min_interval_s, took / SHARE)
        log.info("outcome snapshot rebuilt up to batch %d in %.2f s", upto, took)
        return True

    def _drop(self, keep: int | None) -> None:
        gens = self.store.rows(f"SELECT DISTINCT gen FROM {self.db}.answer_outcomes")
        for (gen,) in gens:
            if gen != keep:
                self.store.execute(f"ALTER TABLE {self.db}.answer_outcomes DROP PARTITION {int(gen)}")

    def _build(self, upto: int) -> str:
        db, upto = self.db, int(upto)
        stored = f"batch_seq <= {upto}"

        def next_of(alias: str, key: str, where: str) -> str:
            return (
                f" ASOF LEFT JOIN (SELECT {key} AS k, occurred_ms AS t FROM {db}.events WHERE {where}"
                f" AND {stored}) AS {alias} ON a.customer_key = {alias}.k AND {alias}.t > a.occurred_ms"
            )

        order = (  # one window: the number and the next answer's time from the same sort
            "PARTITION BY customer_key, survey ORDER BY occurred_ms, event_id"
            " ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING"
        )
        return (
            f"INSERT INTO {db}.answer_outcomes SELECT toUInt64({upto}), a.survey, a.occurred_ms, a.latest,"
            " a.next_answer_ms, a.customer_key, a.score, a.scale, a.touchpoint, a.channel, a.segment,"
            f" ifNull(p.t, {NONE_MS}), ifNull(c.t, {NONE_MS}), ifNull(r.t, {NONE_MS})"
            " FROM (SELECT survey, occurred_ms, customer_key, score, scale, touchpoint, channel, segment,"
            f"  row_number() OVER ({order}) AS latest,"
            f"  leadInFrame(occurred_ms, 1, {NONE_MS}) OVER ({order}) AS next_answer_ms"
            f" FROM {db}.events WHERE type = 'survey_answer' AND {stored}) AS a"
            + next_of("p", "customer_key", "type = 'purchase'")
            + next_of("c", "customer_key", "type = 'subscription_cancel'")
            + next_of("r", "cityHash64(referrer_id)", "type = 'purchase' AND referrer_id != ''")
            + " SETTINGS join_use_nulls = 1"
        )
