"""The outcomes SQL (SPEC §7): from the cohort's latest answers to counts per group, in the store.

The cohort: each customer's latest answer of the survey (ties by occurred_ms, then event_id) among the
answers matching the filters in `[at − horizon − window, at − horizon)`. An outcome counts when it falls
in `(answer, answer + horizon]`: purchases and cancellations by the customer, and purchases naming the
customer as `referrer_id`. Two ways, equal results:

- the snapshot (`outcome_snapshot`, kept by the embedded writer): each answer's next outcome of each kind
  is stored, so the cohort's rows are read with no join, plus the outcomes of batches stored after the
  snapshot (they can only bring a next outcome earlier), after one look at those batches — ≈ 65 ms at
  10M events in-process;
- the raw SQL: the cohort joined with every outcome of the period (≈ 460 ms) — whenever no snapshot is
  readable (another process, a distributed store), or when an answer of the window was stored after it.

Customers are joined on the 64-bit `customer_key` (`cityHash64(customer_id)`, the key the
active-customer counts use): several times cheaper than joining strings.
"""

from __future__ import annotations

from typing import Any

from cxpulse.domain.metrics import Filters
from cxpulse.domain.outcomes import GroupCounts, SurveyGroups
from cxpulse.store.base import Store
from cxpulse.store.kpi_queries import filter_sql
from cxpulse.store.snapshot import outcome_view

#: (kind, customer, time) of every outcome in `(lo, hi + horizon]`, the only range they can count in.
_ACTS = (
    "SELECT if(type = 'purchase', 1, 2) AS kind, customer_key AS cid, occurred_ms"
    " FROM {db:Identifier}.events WHERE type IN ('purchase', 'subscription_cancel')"
    " AND occurred_ms > {lo:Int64} AND occurred_ms <= {hi:Int64} + {horizon:Int64}{batches}"
    " UNION ALL SELECT 3 AS kind, cityHash64(referrer_id) AS cid, occurred_ms FROM {db:Identifier}.events"
    " WHERE type = 'purchase' AND referrer_id != ''"
    " AND occurred_ms > {lo:Int64} AND occurred_ms <= {hi:Int64} + {horizon:Int64}{batches}"
)
_ANSWERS = " WHERE survey = {survey:String} AND occurred_ms >= {lo:Int64} AND occurred_ms < {hi:Int64}"
_SINCE = " AND batch_seq > {built:UInt64} AND batch_seq <= {stored:UInt64}"


def outcome_counts(
    store: Store, survey: SurveyGroups, window_ms: int, horizon_ms: int, at_ms: int, filters: Filters
) -> GroupCounts:
    """(customers, repurchased, churned, referred) per group of the cohort."""
    params: dict[str, Any] = {
        "db": store.database,
        "survey": survey.survey,
        "lo": at_ms - horizon_ms - window_ms,
        "hi": at_ms - horizon_ms,
        "horizon": horizon_ms,
    }
    filtered = filter_sql(filters, params)
    with outcome_view(store) as view:
        sql = _raw(survey, filtered)
        if view is not None:
            params.update(built=view.watermark, stored=view.stored)
            answered, acted = _since(store, filtered, params)
            if not answered:
                sql = _from_snapshot(survey, filtered, acted)
        rows = store.rows(sql, params)
    return {str(grp): (int(n), int(rep), int(churn), int(ref)) for grp, n, rep, churn, ref in rows}


def _since(store: Store, filtered: str, params: dict[str, Any]) -> tuple[bool, bool]:
    """Whether batches stored after the snapshot hold an answer of the cohort's window (then the raw SQL
    answers), and an outcome that may count (then the snapshot's next outcomes are corrected)."""
    sql = (
        "SELECT countIf(type = 'survey_answer' AND survey = {survey:String}"
        f" AND occurred_ms >= {{lo:Int64}} AND occurred_ms < {{hi:Int64}}{filtered}) > 0,"
        " countIf(type IN ('purchase', 'subscription_cancel')"
        " AND occurred_ms > {lo:Int64} AND occurred_ms <= {hi:Int64} + {horizon:Int64}) > 0"
        " FROM {db:Identifier}.events WHERE batch_seq > {built:UInt64} AND batch_seq <= {stored:UInt64}"
    )
    answered, acted = store.rows(sql, params)[0]
    return bool(answered), bool(acted)


def _from_snapshot(survey: SurveyGroups, filtered: str, acted: bool) -> str:
    """The cohort's rows of the snapshot counted as they are, plus — when batches stored since hold
    outcomes (`acted`) — what those add (`delta`: the cohort joined with the outcomes stored since, a
    small table; the answers whose next stored outcome of a kind was outside the horizon and one of
    those is inside)."""
    since = (
        "SELECT cid, groupArray((kind, occurred_ms)) AS acts FROM ("
        + _ACTS.replace("{batches}", _SINCE)
        + ") GROUP BY cid"
    )
    rows = " FROM {db:Identifier}.answer_outcomes" + _ANSWERS + " AND gen = {built:UInt64}" + filtered
    columns = ("score", "scale", "next_purchase_ms", "next_cancel_ms", "next_referral_ms")
    listed = ", ".join(columns)

    if not filtered:  # the latest answer is the one whose next answer is not inside: a plain filter
        latest = " AND next_answer_ms >= {hi:Int64}"
        cohort = f"SELECT customer_key, occurred_ms AS answered_ms, {listed}{rows}{latest}"
    else:  # the latest answer among those matching the filters: by `latest`, one integer
        cohort = (
            "SELECT customer_key, max(occurred_ms) AS answered_ms, "
            + ", ".join(f"argMax({c}, latest) AS {c}" for c in columns)
            + f"{rows} GROUP BY customer_key"
        )

    end = "answered_ms + {horizon:Int64}"
    nexts = {"p": "next_purchase_ms", "x": "next_cancel_ms", "r": "next_referral_ms"}
    stored = ", ".join(f"countIf({n} <= {end}) AS {a}" for a, n in nexts.items())
    inside = f"t.2 > answered_ms AND t.2 <= {end}"
    added = ", ".join(
        f"countIf({n} > {end} AND arrayExists(t -> t.1 = {kind} AND {inside}, acts)) AS {a}"
        for kind, (a, n) in enumerate(nexts.items(), 1)
    )
    main = f"SELECT {survey.group_sql} AS grp, count() AS n, {stored} FROM ({cohort}) GROUP BY grp"
    if not acted:
        return main
    delta = (
        f"SELECT {survey.group_sql} AS grp, 0 AS n, {added}"
        f" FROM ({cohort}) AS c"
        f" INNER JOIN ({since}) AS s ON s.cid = c.customer_key GROUP BY grp"
    )
    return f"SELECT grp, sum(n), sum(p), sum(x), sum(r) FROM ({main} UNION ALL {delta}) GROUP BY grp"


def _raw(survey: SurveyGroups, filtered: str) -> str:
    """The cohort joined with every outcome of the period."""
    # the latest answer by sorting, one row per customer: `argMax` by (occurred_ms, event_id) compares
    # tuples holding a string and cost twice as much (≈ 320 against 150 ms at 10M events)
    cohort = (
        f"SELECT customer_key, {survey.group_sql} AS grp, occurred_ms AS answered_ms FROM ("
        " SELECT customer_key, occurred_ms, score, scale FROM {db:Identifier}.events"
        f"{_ANSWERS} AND type = 'survey_answer'{filtered}"
        " ORDER BY customer_key, occurred_ms DESC, event_id DESC LIMIT 1 BY customer_key)"
    )
    inside = "a.occurred_ms > c.answered_ms AND a.occurred_ms <= c.answered_ms + {horizon:Int64}"
    return (
        "SELECT grp, count(), countIf(bitTest(m, 1)), countIf(bitTest(m, 2)), countIf(bitTest(m, 3)) FROM ("
        f" SELECT c.customer_key, any(c.grp) AS grp, groupBitOr(if({inside}, bitShiftLeft(1, a.kind), 0)) m"
        f" FROM ({cohort}) AS c LEFT JOIN ({_ACTS.replace('{batches}', '')}) AS a"
        " ON a.cid = c.customer_key GROUP BY c.customer_key) GROUP BY grp"
    )
