"""The rules topic on the real broker: the API's publisher keeps it equal to the rule set (puts, tombstones,
a full re-publish at start that also tombstones rules deleted while no tombstone got out), a follower
reading from the beginning sees exactly the current response rules, and no secret is ever on the topic."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest

from cxpulse.alerts.service import directions
from cxpulse.bus.kafka import ensure_topics
from cxpulse.bus.rules_topic import RulesFollower, RulesPublisher, TopicReader
from cxpulse.domain.alerts.rules.response import ResponseRule
from cxpulse.domain.alerts.rules.rule import Rule, parse_rule
from tests.kafka_support import require_broker

pytestmark = pytest.mark.kafka

SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
DIRECTIONS = directions()


def rule(rule_id: str, **fields: object) -> Rule:
    data = {
        "type": "response",
        "name": f"rule {rule_id}",
        "survey": "nps",
        "notify": [{"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": SECRET}],
        **fields,
    }
    return parse_rule(data, metrics=DIRECTIONS, rule_id=rule_id)


METRIC_RULE = {
    "type": "metric",
    "name": "low",
    "metric": "nps",
    "window": "1h",
    "condition": {"op": "below", "threshold": 0},
}


async def until(check: Callable[[], bool], timeout_s: float = 20) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.05)


async def following(bootstrap: str, topic: str, body: Callable[[RulesFollower], Awaitable[None]]) -> None:
    follower = RulesFollower(bootstrap, topic)
    stop = asyncio.Event()
    task = asyncio.create_task(follower.run(stop))
    try:
        async with asyncio.timeout(30):
            await follower.ready.wait()
        await body(follower)
    finally:
        stop.set()
        await task


def test_publisher_and_follower_agree_through_puts_deletes_and_restarts() -> None:
    bootstrap = require_broker()
    topic = f"t-{uuid.uuid4().hex[:10]}.rules"

    async def scenario() -> None:
        await ensure_topics(bootstrap, [topic], 1, {"cleanup.policy": "compact"})
        a, b = rule("a"), rule("b", scores=[0, 1])
        metric = parse_rule(METRIC_RULE, metrics=DIRECTIONS, rule_id="m")
        publisher = RulesPublisher(bootstrap, topic)
        await publisher.start([a, metric])

        async def live(follower: RulesFollower) -> None:
            assert set(follower.rules) == {"a"}  # metric rules are not the workers' business
            assert isinstance(follower.rules["a"], ResponseRule)
            assert follower.rules["a"].notify[0].secret is None
            assert await publisher.sync([a, b, metric]) == 1  # only what changed is sent
            await until(lambda: set(follower.rules) == {"a", "b"})
            assert follower.rules["b"].scores == frozenset({0, 1})
            disabled = rule("a", enabled=False)
            await publisher.sync([disabled, b, metric])
            await until(lambda: not follower.rules["a"].enabled)
            await publisher.sync([disabled, metric])  # b deleted: a tombstone
            await until(lambda: set(follower.rules) == {"a"})

        await following(bootstrap, topic, live)
        await publisher.stop()

        # The API restarts with a store in which `a` is gone and `c` is new (the tombstone of `a` was lost):
        restarted = RulesPublisher(bootstrap, topic)
        await restarted.start([rule("c"), metric])
        await restarted.stop()

        async def fresh(follower: RulesFollower) -> None:
            assert set(follower.rules) == {"c"}

        await following(bootstrap, topic, fresh)

        reader = TopicReader(bootstrap, topic)
        await reader.start()
        try:
            held = await reader.read_all()
        finally:
            await reader.stop()
        assert held["a"] is None and held["b"] is None and held["c"] is not None and held["m"] is not None
        assert all(SECRET.encode() not in (v or b"") for v in held.values())

    asyncio.run(scenario())
