"""Synthetic touchpoint events: a population of customers living through their journey.

Pure (no I/O): a seeded `random.Random` and an injected clock, so a test can check the mix, the validity
and the effect of an incident without a service. Every event happens *now* (the clock), so follow-ups — a
case's resolution, the survey after a purchase, a trial's outcome — are scheduled a number of *events*
ahead, not seconds: a seeded run is reproducible whatever the clock (at 20 events/s a case resolves within
a few seconds to a minute).

Scores follow each customer's experience: a latent `mood` plus how good the touchpoint is, minus a large
penalty at the incident touchpoint; a bad support case (re-contacted) lowers the customer's mood, so their
later answers fall too.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cxpulse.demo.comments import Sentiment, comment

Item = dict[str, Any]
Clock = Callable[[], datetime]

TOUCHPOINTS = ("website", "checkout", "onboarding", "usage", "support", "subscription")
#: Monthly price per plan (purchases are add-ons priced around it).
PLANS = {"free": 9.0, "starter": 19.0, "pro": 49.0, "business": 199.0}
PLAN_WEIGHTS = (40, 30, 20, 10)
REGIONS = {"eu": "EUR", "na": "USD", "apac": "AUD", "latam": "BRL"}
REGION_WEIGHTS = (35, 35, 20, 10)
CHANNELS = ("web", "mobile", "email", "chat", "phone", "store")
CHANNEL_WEIGHTS = (45, 30, 8, 8, 6, 3)
SUPPORT_CHANNELS = ("chat", "phone", "email")
CANCEL_REASONS = ("too expensive", "missing features", "switched provider", "bad support", "no longer needed")

#: How good each touchpoint is on a normal day (added to the customer's mood before scoring).
QUALITY = {
    "website": 0.3,
    "checkout": 0.2,
    "onboarding": 0.0,
    "usage": 0.4,
    "support": -0.1,
    "subscription": 0.1,
}
INCIDENT_PENALTY = 2.5
#: Chance that an interaction at the incident touchpoint makes the customer open a support case about it.
INCIDENT_CASE_P = 0.3
FCR_P = 0.82
FCR_P_INCIDENT = 0.1
SURVEY_P = 0.35
COMMENT_P = 0.3


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Customer:
    id: str
    plan: str
    region: str
    channel: str
    mood: float
    baseline: float
    status: str = "visitor"  # visitor | trial | subscriber | churned

    @property
    def segment(self) -> str:
        return f"{self.plan}-{self.region}"


def population(size: int) -> list[Customer]:
    """The same customers in every run (ids, segments, channels, temper), whatever the seed."""
    out = []
    for i in range(size):
        rng = random.Random(f"cxpulse-demo-customer-{i}")
        baseline = rng.gauss(0.2, 0.5)
        customer = Customer(
            id=f"cust-{i:05d}",
            plan=rng.choices(list(PLANS), PLAN_WEIGHTS)[0],
            region=rng.choices(list(REGIONS), REGION_WEIGHTS)[0],
            channel=rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0],
            mood=baseline,
            baseline=baseline,
        )
        customer.status = rng.choices(("visitor", "subscriber", "churned"), (50, 40, 10))[0]
        out.append(customer)
    return out


class DemoGenerator:
    """An endless stream of valid event items (`dict`s ready to be sent as JSON)."""

    def __init__(
        self,
        customers: int = 500,
        *,
        seed: int | None = None,
        incident: str | None = None,
        clock: Clock = utc_now,
        run_id: str | None = None,
    ) -> None:
        if customers < 2:
            raise ValueError("customers must be at least 2")
        if incident is not None and incident not in TOUCHPOINTS:
            raise ValueError(f"incident must be one of {', '.join(TOUCHPOINTS)}; got {incident!r}")
        self.rng = random.Random(seed)
        self.incident = incident
        self.clock = clock
        #: Prefix of event, case and order ids: a second run against the same data adds, never collides.
        self.run_id = run_id or f"demo{int(clock().timestamp() * 1000):x}{self.rng.getrandbits(16):04x}"
        self.customers = population(customers)
        self._step = 0
        self._ids = itertools.count(1)  # events
        self._refs = itertools.count(1)  # cases and orders
        self._seq = itertools.count()  # keeps the follow-up heap stable
        self._ready: list[Item] = []
        self._later: list[tuple[int, int, Callable[[], list[Item]]]] = []

    # -- the stream -------------------------------------------------------------------------------------

    def take(self, n: int) -> list[Item]:
        return [self.next_event() for _ in range(n)]

    def next_event(self) -> Item:
        while not self._ready:
            if self._later and self._later[0][0] <= self._step:
                self._ready.extend(heapq.heappop(self._later)[2]())
            else:
                self._ready.extend(self._spontaneous())
        self._step += 1
        item = self._ready.pop(0)
        stamped = datetime.fromtimestamp(self.clock().timestamp(), UTC).isoformat(timespec="milliseconds")
        return {"event_id": f"{self.run_id}-{next(self._ids)}", "occurred_at": stamped[:-6] + "Z", **item}

    def _after(self, lo: int, hi: int, action: Callable[[], list[Item]]) -> None:
        heapq.heappush(self._later, (self._step + self.rng.randint(lo, hi), next(self._seq), action))

    def _spontaneous(self) -> list[Item]:
        c = self.rng.choice(self.customers)
        actions: dict[str, tuple[Callable[[Customer], list[Item]], float]] = {
            "visitor": (self._visit_website, 5),
            "trial": (self._use_app, 5),
            "subscriber": (self._use_app, 6),
            "churned": (self._visit_website, 3),
        }
        table = [
            actions[c.status],
            (self._visit_website, 1.0),
            (self._purchase, 1.5),
            (self._support_case, 0.8),
            (self._start_trial, 2.0 if c.status == "visitor" else 0.0),
            (self._subscribe, 0.6 if c.status == "churned" else 0.0),
            (self._cancel, 0.15 + max(0.0, -c.mood) * 0.6 if c.status == "subscriber" else 0.0),
        ]
        action = self.rng.choices([a for a, _ in table], [w for _, w in table])[0]
        return action(c)

    # -- journey steps --------------------------------------------------------------------------------

    def _event(
        self, c: Customer, type_: str, touchpoint: str, channel: str | None = None, **fields: Any
    ) -> Item:
        return {
            "type": type_,
            "customer_id": c.id,
            "touchpoint": touchpoint,
            "channel": channel or self._channel(c),
            "segment": c.segment,
            **fields,
        }

    def _channel(self, c: Customer) -> str:
        return c.channel if self.rng.random() < 0.8 else self.rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0]

    def _interaction(self, c: Customer, touchpoint: str) -> None:
        """What touching a touchpoint does besides its event: mood drifts home, the incident hurts (and
        sends some customers to support), and some customers are asked for a survey."""
        c.mood += 0.05 * (c.baseline - c.mood)
        if touchpoint == self.incident:
            c.mood = max(-3.0, c.mood - 0.1)
            if touchpoint != "support" and self.rng.random() < INCIDENT_CASE_P:
                self._after(2, 30, lambda: self._support_case(c, topic=touchpoint))
        if self.rng.random() < SURVEY_P:
            self._after(5, 60, lambda: [self._survey(c, touchpoint)])

    def _visit_website(self, c: Customer) -> list[Item]:
        self._interaction(c, "website")
        return [self._event(c, "login", "website")]

    def _use_app(self, c: Customer) -> list[Item]:
        self._interaction(c, "usage")
        return [self._event(c, "login", "usage", self.rng.choice(("web", "mobile")))]

    def _start_trial(self, c: Customer) -> list[Item]:
        c.status = "trial"
        self._interaction(c, "onboarding")
        self._after(200, 2000, lambda: self._trial_outcome(c))
        days = self.rng.choices((7, 14, 30), (2, 6, 2))[0]
        return [self._event(c, "trial_start", "onboarding", trial_days=days, plan=c.plan)]

    def _trial_outcome(self, c: Customer) -> list[Item]:
        if c.status != "trial":
            return []
        if self.rng.random() < 0.45 + 0.15 * c.mood:
            return self._subscribe(c)
        c.status = "visitor"  # expired: no event, the trial's outcome is its end
        return []

    def _subscribe(self, c: Customer) -> list[Item]:
        c.status = "subscriber"
        self._interaction(c, "subscription")
        return [self._event(c, "subscription_start", "subscription", plan=c.plan)]

    def _cancel(self, c: Customer) -> list[Item]:
        c.status = "churned"
        self._interaction(c, "subscription")
        reason = "bad support" if c.mood < -0.5 else self.rng.choice(CANCEL_REASONS)
        return [self._event(c, "subscription_cancel", "subscription", reason=reason)]

    def _purchase(self, c: Customer) -> list[Item]:
        self._interaction(c, "checkout")
        fields: dict[str, Any] = {
            "order_id": f"{self.run_id}-o{next(self._refs)}",
            "amount": round(PLANS[c.plan] * self.rng.uniform(0.5, 3.0), 2),
            "currency": REGIONS[c.region],
        }
        if c.status == "visitor" and self.rng.random() < 0.3:
            fields["referrer_id"] = self._referrer(c).id
        return [self._event(c, "purchase", "checkout", **fields)]

    def _referrer(self, buyer: Customer) -> Customer:
        """Referrers are mostly happy customers."""
        for _ in range(10):
            candidate = self.rng.choice(self.customers)
            if candidate is not buyer and candidate.mood > 0.3:
                return candidate
        return next(x for x in self.customers if x is not buyer)

    def _support_case(self, c: Customer, topic: str | None = None) -> list[Item]:
        """A case: one contact and its resolution, or (not first contact) a second contact before or a
        re-contact after it. A case about the incident is rarely solved at once."""
        topic = topic or self.rng.choice([t for t in TOUCHPOINTS if t != "support"])
        case_id = f"{self.run_id}-k{next(self._refs)}"
        channel = c.channel if c.channel in SUPPORT_CHANNELS else self.rng.choice(SUPPORT_CHANNELS)
        hard = self.incident in (topic, "support")
        first_contact = self.rng.random() < (FCR_P_INCIDENT if hard else FCR_P)

        def event(type_: str) -> Item:
            return self._event(c, type_, "support", channel, case_id=case_id, properties={"topic": topic})

        def resolve() -> list[Item]:
            self._interaction(c, "support")
            return [event("support_resolved")]

        def contact_again() -> list[Item]:
            self._after(20, 150, resolve)
            return [event("support_contact")]

        def resolve_then_recontacted() -> list[Item]:
            self._after(20, 200, lambda: [event("support_contact")])  # within 7 days: not first contact
            return resolve()

        if first_contact:
            c.mood = min(2.0, c.mood + 0.2)
            self._after(10, 200, resolve)
        else:
            c.mood = max(-3.0, c.mood - 0.6)
            if self.rng.random() < 0.5:
                self._after(20, 150, contact_again)  # a second contact, then the resolution
            else:
                self._after(10, 150, resolve_then_recontacted)
        return [event("support_contact")]

    # -- surveys --------------------------------------------------------------------------------------

    def _survey(self, c: Customer, touchpoint: str) -> Item:
        weights = (20, 50, 30) if touchpoint == "support" else (45, 35, 20)
        survey = self.rng.choices(("nps", "csat", "ces"), weights)[0]
        x = c.mood + QUALITY[touchpoint] + self.rng.gauss(0.0, 0.8)
        if touchpoint == self.incident:
            x -= INCIDENT_PENALTY
        fields: dict[str, Any] = {"survey": survey}
        sentiment: Sentiment
        if survey == "nps":
            score = _clamp(7.5 + 1.7 * x, 0, 10)
            sentiment = "positive" if score >= 9 else "negative" if score <= 6 else "neutral"
        elif survey == "ces":
            score = _clamp(2.8 - 1.1 * x, 1, 7)
            sentiment = "positive" if score <= 2 else "negative" if score >= 5 else "neutral"
        elif self.rng.random() < 0.2:
            fields["scale"] = "1-7"
            score = _clamp(5.4 + 1.2 * x, 1, 7)
            sentiment = "positive" if score >= 6 else "negative" if score <= 3 else "neutral"
        else:
            score = _clamp(3.9 + 0.9 * x, 1, 5)
            sentiment = "positive" if score >= 4 else "negative" if score <= 2 else "neutral"
        fields["score"] = score
        if self.rng.random() < COMMENT_P:
            fields["comment"] = comment(touchpoint, sentiment, self.rng.getrandbits(16))
        return self._event(c, "survey_answer", touchpoint, **fields)


def _clamp(raw: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, round(raw)))
