"""A deterministic (seeded) synthetic workload of SPEC §1 events, as dicts or NDJSON batches.

The mix is built from *scenarios* so the stateful facts look real: a support case is 1–3 contacts then
(usually) a resolution and sometimes a re-contact; a trial converts (subscription start or purchase) in
~40% of cases; a subscription start is cancelled later in ~30%. Everything lands in
`[end − days, end)`, never in the future. The same seed and arguments always give the same bytes.

`BULK_SELECT` is the SQL twin used to bulk-load millions of rows straight into chDB with roughly the same
per-event distribution (`numbers(N)` + `cityHash64`), since 10M events through HTTP is too slow for a bench.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson

from cxpulse.domain.windows import DAY_MS

HOUR_MS = 3_600_000

#: scenario → weight (a scenario yields one or more events)
SCENARIOS = {
    "login": 40,
    "survey": 24,
    "purchase": 13,
    "case": 8,
    "trial": 3,
    "subscription": 3,
}
SURVEY_TOUCHPOINTS = ["website", "checkout", "onboarding", "support", "survey", "usage"]
CHANNELS = ["web", "web", "web", "mobile", "mobile", "email", "phone", "chat", "store"]
SEGMENTS = ["free", "free", "pro", "pro", "enterprise", "smb"]
NPS_SCORES = [0, 1, 2, 3, 4, 5, 6, 7, 7, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10]
CSAT_SCORES = [1, 2, 3, 3, 4, 4, 4, 5, 5, 5]
CES_SCORES = [1, 1, 2, 2, 2, 3, 3, 4, 5, 6, 7]
CURRENCIES = ["EUR", "USD", "GBP"]
PLANS = ["basic", "pro", "enterprise"]


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Workload:
    def __init__(
        self,
        seed: int = 42,
        customers: int = 10_000,
        days: int = 60,
        end_ms: int | None = None,
        id_prefix: str = "w",
    ) -> None:
        self.rng = random.Random(seed)
        self.customers = customers
        # a minute in the past: nothing may be "more than 5 minutes in the future", whatever the clock skew
        self.end_ms = end_ms if end_ms is not None else int(time.time() * 1000) - 60_000
        self.start_ms = self.end_ms - days * DAY_MS
        self.prefix = id_prefix
        self._seq = 0
        self._case_seq = 0
        self._names = list(SCENARIOS)
        self._weights = list(SCENARIOS.values())

    # -- one event --------------------------------------------------------------------------------
    def _base(self, etype: str, customer: str, at_ms: int, touchpoint: str | None = None) -> dict:
        self._seq += 1
        r = self.rng
        ev = {
            "event_id": f"{self.prefix}-{self._seq}",
            "type": etype,
            "occurred_at": iso(min(at_ms, self.end_ms - 1)),
            "customer_id": customer,
            "channel": r.choice(CHANNELS),
            "segment": r.choice(SEGMENTS),
        }
        if touchpoint:
            ev["touchpoint"] = touchpoint
        return ev

    def _scenario(self) -> list[dict]:
        r = self.rng
        customer = f"cust-{r.randrange(self.customers)}"
        t = r.randrange(self.start_ms, self.end_ms)
        kind = r.choices(self._names, self._weights)[0]
        if kind == "login":
            return [self._base("login", customer, t)]
        if kind == "survey":
            ev = self._base("survey_answer", customer, t, r.choice(SURVEY_TOUCHPOINTS))
            s = r.random()
            if s < 0.5:
                ev.update(survey="nps", score=r.choice(NPS_SCORES))
            elif s < 0.8:
                ev.update(survey="csat", score=r.choice(CSAT_SCORES))
            else:
                ev.update(survey="ces", score=r.choice(CES_SCORES))
            if r.random() < 0.1:
                ev["comment"] = "synthetic comment " * r.randint(1, 5)
            return [ev]
        if kind == "purchase":
            ev = self._base("purchase", customer, t)
            ev.update(
                order_id=f"o-{self._seq}", amount=round(r.uniform(5, 500), 2), currency=r.choice(CURRENCIES)
            )
            if r.random() < 0.15:
                if r.random() < 0.5:
                    ev["referral"] = True
                else:
                    ev["referrer_id"] = f"cust-{r.randrange(self.customers)}"
            return [ev]
        if kind == "case":
            self._case_seq += 1
            case_id = f"case-{self._case_seq}"
            out = []
            for _ in range(r.randint(1, 3)):
                out.append({**self._base("support_contact", customer, t), "case_id": case_id})
                t += r.randrange(10 * 60_000, 30 * HOUR_MS)
            if r.random() < 0.8:
                out.append({**self._base("support_resolved", customer, t), "case_id": case_id})
                if r.random() < 0.15:
                    t += r.randrange(HOUR_MS, 10 * DAY_MS)
                    out.append({**self._base("support_contact", customer, t), "case_id": case_id})
            return [e for e in out if _ms(e) < self.end_ms]
        if kind == "trial":
            days = r.choice([14, 14, 14, 30])
            ev = self._base("trial_start", customer, t)
            ev.update(trial_days=days, plan=r.choice(PLANS))
            out = [ev]
            if r.random() < 0.4:
                conv = t + r.randrange(0, days * DAY_MS)
                if conv < self.end_ms:
                    out.append({**self._base("subscription_start", customer, conv), "plan": ev["plan"]})
            return out
        # subscription
        out = [{**self._base("subscription_start", customer, t), "plan": r.choice(PLANS)}]
        if r.random() < 0.3:
            t += r.randrange(DAY_MS, 45 * DAY_MS)
            if t < self.end_ms:
                out.append({**self._base("subscription_cancel", customer, t), "reason": "price"})
        return out

    # -- streams ----------------------------------------------------------------------------------
    def events(self, n: int) -> Iterator[dict]:
        """Exactly `n` events (scenario order, so event time is not monotonic — like real late data)."""
        made = 0
        while made < n:
            for ev in self._scenario():
                if made == n:
                    return
                made += 1
                yield ev

    def ndjson_batches(self, n: int, batch: int = 1000) -> list[bytes]:
        """`n` events as NDJSON bodies of `batch` events each."""
        out: list[bytes] = []
        buf: list[bytes] = []
        for ev in self.events(n):
            buf.append(orjson.dumps(ev))
            if len(buf) == batch:
                out.append(b"\n".join(buf) + b"\n")
                buf = []
        if buf:
            out.append(b"\n".join(buf) + b"\n")
        return out


def _ms(ev: dict) -> int:
    return int(datetime.fromisoformat(ev["occurred_at"].replace("Z", "+00:00")).timestamp() * 1000)


def type_mix(n: int = 100_000, seed: int = 1) -> dict[str, float]:
    """The per-event type shares of the scenario mix (used to keep `BULK_SELECT` in line)."""
    counts: dict[str, int] = {}
    for ev in Workload(seed=seed).events(n):
        counts[ev["type"]] = counts.get(ev["type"], 0) + 1
    return {k: round(v / n, 4) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}


def _pick(options: list, h: str) -> str:
    return (
        f"[{', '.join(repr(o) if isinstance(o, str) else str(o) for o in options)}][1 + {h} % {len(options)}]"
    )


#: Columns of `events`, in the order `BULK_SELECT` produces them.
BULK_COLUMNS = (
    "event_id, type, occurred_ms, customer_id, touchpoint, channel, segment, survey, score, scale, comment, "
    "case_id, order_id, amount, currency, referral, referrer_id, trial_days, plan, reason, properties, "
    "received_ms, batch_seq"
)


def bulk_select(n: int, customers: int, end_ms: int, days: int = 60, offset: int = 0) -> str:
    """A `SELECT` of `n` synthetic event rows (columns = `BULK_COLUMNS`), batch_seq = 1.

    Per-event type shares follow `type_mix()` (per mille thresholds below). Support events get
    `case_id = case-<customer-week>` so a customer's contacts in one week form a case (1–3 events
    typically); conversions and cancels fall on random customers, so facts are plausible, not scripted.
    """
    span = days * DAY_MS
    h = lambda k: f"cityHash64(number, {k})"  # noqa: E731
    return f"""
SELECT
  concat('bulk-', toString(number)) AS event_id,
  multiIf(t < 369, 'login', t < 592, 'survey_answer', t < 713, 'purchase', t < 870, 'support_contact',
          t < 930, 'support_resolved', t < 958, 'trial_start', t < 995, 'subscription_start',
          'subscription_cancel') AS type,
  toInt64({end_ms} - 1 - ({h(1)} % {span})) AS occurred_ms,
  concat('cust-', toString({h(2)} % {customers})) AS customer_id,
  multiIf(type = 'survey_answer', {_pick(SURVEY_TOUCHPOINTS, h(3))}, type = 'login', 'usage',
          type = 'purchase', 'checkout', type IN ('support_contact', 'support_resolved'), 'support',
          type = 'trial_start', 'onboarding', 'subscription') AS touchpoint,
  {_pick(CHANNELS, h(4))} AS channel,
  {_pick(SEGMENTS, h(5))} AS segment,
  if(type = 'survey_answer', multiIf(sv < 5, 'nps', sv < 8, 'csat', 'ces'), '') AS survey,
  if(type = 'survey_answer',
     toNullable(toInt16(multiIf(survey = 'nps', {_pick(NPS_SCORES, h(7))},
                                survey = 'csat', {_pick(CSAT_SCORES, h(7))}, {_pick(CES_SCORES, h(7))}))),
     NULL) AS score,
  toUInt8(multiIf(survey = 'nps', 10, survey = 'csat', 5, survey = 'ces', 7, 0)) AS scale,
  '' AS comment,
  if(type IN ('support_contact', 'support_resolved'),
     concat('case-', toString(intDiv(occurred_ms, {7 * DAY_MS}))), '') AS case_id,
  if(type = 'purchase', concat('o-', toString(number)), '') AS order_id,
  if(type = 'purchase', toNullable(round(5 + ({h(8)} % 49500) / 100, 2)), NULL) AS amount,
  if(type = 'purchase', {_pick(CURRENCIES, h(9))}, '') AS currency,
  toUInt8(type = 'purchase' AND {h(10)} % 100 < 15) AS referral,
  '' AS referrer_id,
  toUInt16(if(type = 'trial_start', {_pick([14, 14, 14, 30], h(11))}, 0)) AS trial_days,
  if(type IN ('trial_start', 'subscription_start'), {_pick(PLANS, h(12))}, '') AS plan,
  if(type = 'subscription_cancel', 'price', '') AS reason,
  '{{}}' AS properties,
  toInt64({end_ms}) AS received_ms,
  toUInt64(1) AS batch_seq
FROM (SELECT number + {offset} AS number, {h(0)} % 1000 AS t, {h(6)} % 10 AS sv FROM numbers({n}))
"""
