"""Leader election on the real broker, between separate processes (`tests/leader_probe.py`): at most one
member runs the leader's duty at any time, a follower takes over after the leader is SIGKILLed (within the
session timeout plus a rebalance), and at once after a graceful stop."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cxpulse.bus.kafka import ensure_topics
from tests.kafka_support import ROOT, require_broker, wait_until

pytestmark = pytest.mark.kafka

SESSION_TIMEOUT_S = 6.0  # the broker's minimum (group.min.session.timeout.ms)
GAP_S = 0.5  # ticks come every 50 ms: a longer silence ends a term


@dataclass
class Member:
    name: str
    ticks: Path
    log: Path
    popen: subprocess.Popen[bytes]

    def terms(self) -> list[tuple[float, float]]:
        """[first tick, last tick] of each spell as leader."""
        if not self.ticks.exists():
            return []
        times = [float(line.split()[1]) for line in self.ticks.read_text().splitlines() if line.strip()]
        terms: list[tuple[float, float]] = []
        for t in times:
            if terms and t - terms[-1][1] <= GAP_S:
                terms[-1] = (terms[-1][0], t)
            else:
                terms.append((t, t))
        return terms

    def leading_now(self) -> bool:
        terms = self.terms()
        return bool(terms) and time.time() - terms[-1][1] < GAP_S and self.popen.poll() is None


@pytest.fixture
def election(tmp_path: Path) -> Iterator[tuple[str, str, str, Path]]:
    bootstrap = require_broker()
    uid = uuid.uuid4().hex[:10]
    topic, group = f"t-{uid}.alerts.leader", f"leader-{uid}"
    asyncio.run(ensure_topics(bootstrap, [topic], 1))
    yield bootstrap, topic, group, tmp_path


def start(name: str, election: tuple[str, str, str, Path], started: list[Member]) -> Member:
    bootstrap, topic, group, tmp = election
    ticks, log = tmp / f"{name}.ticks", tmp / f"{name}.log"
    popen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.leader_probe",
            bootstrap,
            topic,
            group,
            str(ticks),
            str(SESSION_TIMEOUT_S),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    member = Member(name, ticks, log, popen)
    started.append(member)
    return member


def assert_never_two(members: list[Member]) -> None:
    """No two members' terms overlap (each tick is written while leading, so a term spans its ticks)."""
    spans = sorted((a, b, m.name) for m in members for a, b in m.terms())
    for (_a1, b1, n1), (a2, _b2, n2) in itertools.pairwise(spans):
        assert a2 > b1 or n1 == n2, f"{n1} led until {b1:.3f} but {n2} already from {a2:.3f}: {spans}"


def leader_of(members: list[Member]) -> Member | None:
    leading = [m for m in members if m.leading_now()]
    assert len(leading) <= 1, [m.name for m in leading]
    return leading[0] if leading else None


def await_leader(members: list[Member], timeout_s: float, what: str) -> Member:
    leader = wait_until(lambda: leader_of(members), timeout_s, what)
    assert leader is not None
    return leader


def test_one_leader_at_a_time_and_takeover_after_sigkill(election: tuple[str, str, str, Path]) -> None:
    members: list[Member] = []
    try:
        start("a", election, members)
        start("b", election, members)
        await_leader(members, 60, "a leader")
        time.sleep(SESSION_TIMEOUT_S)  # b's join may move the leadership once; then it stays put
        first = await_leader(members, 30, "a leader once both joined")
        time.sleep(SESSION_TIMEOUT_S)
        assert leader_of(members) is first

        first.popen.send_signal(signal.SIGKILL)
        first.popen.wait(10)
        killed_at = time.time()
        second = await_leader(members, 4 * SESSION_TIMEOUT_S, "a new leader after SIGKILL")
        assert second is not first
        takeover_s = second.terms()[-1][0] - killed_at
        print(f"takeover after SIGKILL: {takeover_s:.1f} s (session timeout {SESSION_TIMEOUT_S:g} s)")
        assert takeover_s < 3 * SESSION_TIMEOUT_S, takeover_s

        third = start("c", election, members)  # a new member joins: a rebalance, still one at a time
        wait_until(lambda: "takes part in the election" in third.log.read_text(), 30, "c joined")
        time.sleep(SESSION_TIMEOUT_S)
        current = await_leader(members, 30, "a leader after c joined")

        current.popen.send_signal(signal.SIGTERM)  # graceful: leaves the group, hands over at once
        current.popen.wait(30)
        stopped_at = time.time()
        successor = await_leader(members, 30, "a leader after SIGTERM")
        assert successor is not current
        assert successor.terms()[-1][0] - stopped_at < SESSION_TIMEOUT_S
        assert_never_two(members)
    finally:
        for m in members:
            if m.popen.poll() is None:
                m.popen.kill()
                m.popen.wait(10)
        for m in members:
            sys.stderr.write(f"\n---- {m.name} ----\n{m.log.read_text()[-3000:]}\n")
