"""The alert rules on a compacted Kafka topic: how the API hands them to the distributed workers.

The API owns the rules (they live in its store). It publishes each rule under its id, a tombstone when it
is deleted, and at start it re-publishes every rule and tombstones ids the topic still has but the store
does not (a delete whose tombstone was lost in a crash). Compaction keeps the last record per id, so the
topic *is* the current rule set: a worker reads it from the beginning (every partition assigned, no
consumer group, nothing committed) and keeps a dict. Secrets are stripped: workers only match answers,
the notification's targets are resolved again where it enters the outbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from cxpulse.domain.alerts.rules.errors import RuleError
from cxpulse.domain.alerts.rules.response import ResponseRule
from cxpulse.domain.alerts.rules.rule import Rule, parse_rule, rule_to_json

log = logging.getLogger("cxpulse.bus.rules")

#: What the topic holds: rule id → the record's value (None: a tombstone).
Records = dict[str, bytes | None]


def rule_record(rule: Rule) -> bytes:
    """A rule as the topic carries it: its stored JSON without target secrets."""
    data = rule_to_json(rule, mask_secrets=False)
    data["notify"] = [{k: v for k, v in t.items() if k != "secret"} for t in data.get("notify", [])]
    return orjson.dumps(data)


def parse_record(rule_id: str, value: bytes) -> ResponseRule | None:
    """The response rule a record holds; None for a metric rule (workers do not evaluate those)."""
    data = orjson.loads(value)
    if data.get("type") != "response":
        return None
    rule = parse_rule(data, metrics={}, rule_id=rule_id)
    assert isinstance(rule, ResponseRule)
    return rule


class TopicReader:
    """All partitions of one topic from the beginning, without a group: `caught_up` once the end offsets
    seen at start are reached, then follows new records."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        self._ends: dict[TopicPartition, int] = {}

    async def start(self, metadata_timeout_s: float = 30.0) -> None:
        partitions = await _partitions(self.bootstrap, self.topic, metadata_timeout_s)
        await self.consumer.start()
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self._ends = await self.consumer.end_offsets(tps)

    async def caught_up(self) -> bool:
        for tp, end in self._ends.items():
            if await self.consumer.position(tp) < end:
                return False
        return True

    async def fetch(self, timeout_s: float) -> list[tuple[str, bytes | None]]:
        """The next records as (key, value), partition order kept."""
        fetched = await self.consumer.getmany(timeout_ms=int(timeout_s * 1000))
        return [
            ((r.key or b"").decode(), r.value)
            for batch in fetched.values()
            for r in batch
            if r.key is not None
        ]

    async def read_all(self) -> Records:
        """Everything up to the end offsets seen at start (last value per key)."""
        out: Records = {}
        while not await self.caught_up():
            out.update(await self.fetch(0.5))
        return out

    async def stop(self) -> None:
        await self.consumer.stop()


async def _partitions(bootstrap: str, topic: str, timeout_s: float) -> list[int]:
    """The topic's partition ids (waiting for a topic created a moment ago to show them)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                (described,) = await admin.describe_topics([topic])
                if described["partitions"]:
                    return [p["partition"] for p in described["partitions"]]
                await asyncio.sleep(0.2)
    finally:
        await admin.close()


class RulesPublisher:
    """The API side: keep the topic equal to the rule set, sending only what changed."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None  # made in start(): aiokafka wants a running loop
        self._published: Records = {}
        self._lock = asyncio.Lock()

    async def start(self, rules: Iterable[Rule]) -> None:
        """Read what the topic holds, then publish `rules` (the store's) over it: changed and new rules,
        and tombstones for the ids it holds that `rules` does not."""
        reader = TopicReader(self.bootstrap, self.topic)
        await reader.start()
        try:
            held = await reader.read_all()
        finally:
            await reader.stop()
        self._published = {k: v for k, v in held.items() if v is not None}
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True
        )
        await self._producer.start()
        await self.sync(rules, republish=True)

    async def sync(self, rules: Iterable[Rule], *, republish: bool = False) -> int:
        """Make the topic hold exactly `rules` (every rule there is); returns how many records were sent.
        `republish`: send every rule, changed or not (at start: the topic is re-published whole)."""
        wanted: Records = {rule.id: rule_record(rule) for rule in rules}
        producer = self._producer
        assert producer is not None, "start() first"
        async with self._lock:
            changes: Records = {
                rid: value for rid, value in wanted.items() if republish or self._published.get(rid) != value
            }
            changes.update({rid: None for rid in self._published if rid not in wanted})
            acks = [
                await producer.send(self.topic, value, key=rid.encode()) for rid, value in changes.items()
            ]
            await asyncio.gather(*acks)
            self._published = dict(wanted)
        if changes:
            log.info("published %d rule change(s) to %s", len(changes), self.topic)
        return len(changes)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


class RulesFollower:
    """The worker side: the current response rules, from the topic. `ready` is set once the topic has been
    read up to where it ended when the follower started, so the first batch sees every existing rule."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        on_change: Callable[[Mapping[str, ResponseRule]], None] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.rules: dict[str, ResponseRule] = {}
        self.ready = asyncio.Event()
        self._on_change = on_change

    def response_rules(self) -> list[ResponseRule]:
        return list(self.rules.values())

    def apply(self, records: Iterable[tuple[str, bytes | None]]) -> bool:
        """Fold records into `rules`; whether anything changed."""
        return _fold(self.rules, records)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Follow the topic until `stop` is set (or the task is cancelled). Each run reads the topic from
        the beginning into a fresh dict and swaps it in once caught up (a tombstone compacted away while
        this run was not following cannot leave a deleted rule behind)."""
        reader = TopicReader(self.bootstrap, self.topic)
        await reader.start()
        loading: dict[str, ResponseRule] | None = {}
        try:
            while stop is None or not stop.is_set():
                records = await reader.fetch(0.5)
                if loading is not None:
                    _fold(loading, records)
                    if not await reader.caught_up():
                        continue
                    self.rules, loading, changed = loading, None, True
                    self.ready.set()
                else:
                    changed = self.apply(records)
                if changed:
                    log.info("following %d response rule(s) from %s", len(self.rules), self.topic)
                    if self._on_change is not None:
                        self._on_change(dict(self.rules))
        finally:
            await reader.stop()


def _fold(rules: dict[str, ResponseRule], records: Iterable[tuple[str, bytes | None]]) -> bool:
    changed = False
    for rule_id, value in records:
        rule: ResponseRule | None = None
        if value is not None:
            try:
                rule = parse_record(rule_id, value)
            except (ValueError, RuleError) as exc:  # only the API writes here: a bug, not data
                log.error("ignoring an unreadable rule record %r: %s", rule_id, exc)
        if rule is None:
            changed |= rules.pop(rule_id, None) is not None
        elif rules.get(rule_id) != rule:
            rules[rule_id] = rule
            changed = True
    return changed
