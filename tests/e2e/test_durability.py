"""Kill -9 and restart: every acknowledged event counts exactly once (SPEC §3: 202 only once durable).

Real processes and real HTTP: `cxpulse run` is started as a subprocess on a free port with its own data
directory, killed with SIGKILL and restarted on the same directory. Counts are read back through
`/v1/pulse` of the restarted service (chDB allows one data directory per process and this test process
already has the session's open, so the store is never opened here).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import event, iso
from tests.server_support import CxpulseRun as Service

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
#: Subscribers (u*) and trials (t*) created by the setup request; request k cancels u{k} / converts t{k}.
POPULATION = 200
METRICS = "nps,csat,fcr,resolution_time,trial_conversion,churn,active_customers"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path / "data", tmp_path / "service.log")
    yield svc
    svc.stop()


@dataclass
class Workload:
    """Deterministic requests and the readings they must produce, for any set of stored requests."""

    now: int = field(default_factory=lambda: int(time.time() * 1000) // 1000 * 1000)

    @property
    def at(self) -> str:
        return iso(self.now)

    def setup(self) -> list[dict[str, Any]]:
        """Subscribers 20 days ago (active at the start of a 7d window) and 1-day trials 3 days ago."""
        subs = [
            event(f"sub-u{i}", "subscription_start", self.now - 20 * DAY, f"u{i}") for i in range(POPULATION)
        ]
        trials = [
            event(f"trial-t{i}", "trial_start", self.now - 3 * DAY, f"t{i}", trial_days=1, plan="pro")
            for i in range(POPULATION)
        ]
        return subs + trials

    def request(self, k: int) -> list[dict[str, Any]]:
        """Request k: two NPS and one CSAT answer, a support case, a cancellation and a trial conversion."""
        assert k < POPULATION
        t = self.now - HOUR - k * 10
        contact = self.now - 2 * HOUR - k * 10
        events = [
            event(f"nps-a{k}", "survey_answer", t, f"a{k}", survey="nps", score=k % 11),
            event(f"nps-b{k}", "survey_answer", t, f"b{k}", survey="nps", score=(3 * k + 5) % 11),
            event(f"csat-a{k}", "survey_answer", t, f"a{k}", survey="csat", score=k % 5 + 1),
            event(f"contact-s{k}", "support_contact", contact, f"s{k}", case_id=f"case{k}"),
        ]
        if k % 4 == 0:  # a second contact before resolution: not first-contact
            events.append(
                event(f"contact2-s{k}", "support_contact", contact + MINUTE, f"s{k}", case_id=f"case{k}")
            )
        events += [
            event(f"resolved-s{k}", "support_resolved", contact + 10 * MINUTE, f"s{k}", case_id=f"case{k}"),
            event(f"cancel-u{k}", "subscription_cancel", self.now - DAY, f"u{k}", reason="price"),
            event(f"convert-t{k}", "subscription_start", self.now - 3 * DAY + HOUR, f"t{k}", plan="pro"),
        ]
        return events

    def expected(self, stored: set[int]) -> dict[str, tuple[Any, Any]]:
        """(value, n) of each metric over the 7 days before `now`, given the requests that are stored."""
        scores = [s for k in stored for s in (k % 11, (3 * k + 5) % 11)]
        n = len(stored)
        promoters, detractors = sum(s >= 9 for s in scores), sum(s <= 6 for s in scores)
        satisfied = sum(k % 5 + 1 >= 4 for k in stored)
        first_contact = sum(k % 4 != 0 for k in stored)

        def pct(x: int, total: int) -> float | None:
            return None if total == 0 else 100 * x / total

        return {
            "nps": (pct(promoters - detractors, 2 * n), 2 * n),
            "csat": (pct(satisfied, n), n),
            "fcr": (pct(first_contact, n), n),
            "resolution_time": (600.0 if n else None, n),
            "trial_conversion": (pct(n, POPULATION), POPULATION),
            "churn": (pct(n, POPULATION), POPULATION),
            # trial customers (setup, 3 days ago) + a*, b*, s* and the cancelling u* of each request
            "active_customers": (POPULATION + 4 * n, POPULATION + 4 * n),
        }


def readings(svc: Service, work: Workload) -> dict[str, tuple[Any, Any]]:
    response = httpx.get(
        f"{svc.url}/v1/pulse", params={"metrics": METRICS, "window": "7d", "at": work.at}, timeout=30
    )
    assert response.status_code == 200, response.text
    out: dict[str, tuple[Any, Any]] = {}
    for metric, r in response.json()["readings"].items():
        value = None if r["value"] is None else round(float(r["value"]), 6)
        out[metric] = (value, r["n"])
    return out


def rounded(expected: dict[str, tuple[Any, Any]]) -> dict[str, tuple[Any, Any]]:
    return {m: (None if v is None else round(float(v), 6), n) for m, (v, n) in expected.items()}


def post(svc: Service, events: list[dict[str, Any]]) -> dict[str, Any]:
    response = httpx.post(f"{svc.url}/v1/events", json=events, timeout=30)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert body["rejected"] == []
    return body


def test_acknowledged_events_survive_kill_9_exactly_once(service: Service) -> None:
    work = Workload()
    service.start()
    assert post(service, work.setup())["accepted"] == 2 * POPULATION
    sent = list(range(25))
    for k in sent:
        assert post(service, work.request(k)) == {
            "accepted": len(work.request(k)),
            "duplicates": 0,
            "rejected": [],
        }
    before = readings(service, work)
    assert before == rounded(work.expected(set(sent)))

    service.kill()
    service.start()
    assert readings(service, work) == before

    # Re-sending everything after the restart is recognized as duplicates: nothing counts twice.
    assert post(service, work.setup()) == {"accepted": 0, "duplicates": 2 * POPULATION, "rejected": []}
    for k in sent:
        assert post(service, work.request(k)) == {
            "accepted": 0,
            "duplicates": len(work.request(k)),
            "rejected": [],
        }
    assert readings(service, work) == before

    # A clean stop and a second start read the same store.
    service.stop()
    service.start()
    assert readings(service, work) == before
    assert service.starts == 3


@dataclass
class Poster:
    """Posts request after request from another thread until the service goes away; records each outcome."""

    svc: Service
    work: Workload
    first: int
    acked: list[int] = field(default_factory=list)
    unacked: list[int] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.svc.url, timeout=30) as client:
            for k in range(self.first, POPULATION):
                try:
                    response = client.post("/v1/events", json=self.work.request(k))
                except httpx.TransportError:
                    self.unacked.append(k)  # in flight when the process died: stored or not, never half
                    return
                if response.status_code != 202:
                    self.unexpected.append(f"request {k}: {response.status_code} {response.text}")
                    return
                body = response.json()
                if body != {"accepted": len(self.work.request(k)), "duplicates": 0, "rejected": []}:
                    self.unexpected.append(f"request {k}: {body}")
                self.acked.append(k)

    def wait_for_acks(self, count: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.acked) < count and time.monotonic() < deadline and not self.unexpected:
            time.sleep(0.005)
        assert len(self.acked) >= count, (self.acked, self.unexpected)

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
        assert not self.unexpected, self.unexpected


def test_kill_9_while_a_client_posts_continuously(service: Service) -> None:
    work = Workload()
    rng = random.Random(20261125)
    service.start()
    post(service, work.setup())
    acked: set[int] = set()
    attempted: set[int] = set()
    next_k = 0
    for _ in range(3):  # three crashes at different points of a continuous stream
        poster = Poster(service, work, next_k)
        poster.start()
        poster.wait_for_acks(12)
        time.sleep(rng.uniform(0, 0.2))  # land anywhere in a request: before, during or after its insert
        service.kill()
        poster.join()
        assert poster.acked == list(range(next_k, next_k + len(poster.acked)))
        assert len(poster.unacked) <= 1
        acked |= set(poster.acked)
        attempted |= set(poster.acked) | set(poster.unacked)
        next_k = max(attempted) + 1

        service.start()
        after_restart = readings(service, work)
        # Every 202 is there exactly once; the one request in flight is either wholly stored or absent.
        assert after_restart in (rounded(work.expected(acked)), rounded(work.expected(attempted))), (
            after_restart,
            work.expected(acked),
            poster.unacked,
        )

        # The client retries what it got no answer for: the retry must not double count.
        for k in poster.unacked:
            body = post(service, work.request(k))
            assert body["accepted"] + body["duplicates"] == len(work.request(k))
            assert body["accepted"] in (0, len(work.request(k)))
        acked = set(attempted)
        assert readings(service, work) == rounded(work.expected(acked))

    # After all of it, a final restart still agrees, and a full replay of the stream adds nothing.
    service.kill()
    service.start()
    assert readings(service, work) == rounded(work.expected(acked))
    for k in sorted(acked):
        assert post(service, work.request(k))["accepted"] == 0
    assert readings(service, work) == rounded(work.expected(acked))
