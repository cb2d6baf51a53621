"""`cxpulse aggregator`: the Faust worker that turns `cx.events` into stored events and facts.

One agent (concurrency=1: faust-streaming#606 can skip an offset with more) reads `cx.events` in
`take_events` batches, acked after the loop body, which returns only once the batch's output is
durable, so delivery is at-least-once; every write is idempotent (see `pipeline.output`), so a
redelivered batch changes nothing. Offsets the stream leaves out (a Faust bug around rebalances) are read
back by `gaps.GapGuard`: in front of a batch, or as a batch of their own when the stream stops short of a
partition's end. Per message:

1. decode + `validate_event` (judged at the message timestamp, so a redelivery is judged the same);
   undecodable / invalid → `cx.events.dlq` (original key and bytes, reason in headers) and go on;
2. dedup by the customer's seen ids (event_id → "partition:offset" of its first copy): another offset is
   a duplicate and is dropped; the *same* offset is a redelivery and is processed again;
3. fold stateful events into the customer's keyed state with `domain.state.apply`; when the event is
   already in the state (the changelog was flushed before a crash, the output maybe not), the customer's
   current facts are re-emitted instead.

The `customers` table (customer_id → {"ids", "state"}) is changelog-backed: memory store, rebuilt from
the changelog on start and on rebalance. The keyed state also holds each customer's close-the-loop
cooldowns (`state["notified"]`, see `pipeline.batch`), so they move with the customer's partition.

Close-the-loop: a `RulesFollower` task keeps the response rules from the compacted rules topic (which the
API publishes); the first batch waits until it has read the topic up to its end, and every batch gets the
rules of the moment. The notifications a batch raises travel with its output (`Output`).

Output per batch, per customer: the event rows, fact rows and notifications, written to a ClickHouse server
directly when `CXPULSE_CLICKHOUSE_URL` is set (the notifications into the outbox, and to `cx.alerts`), else
published to `cx.store` for the chDB-owning process to load.

The worker writes the table's changelog itself — one record per customer per batch, to the partition of
the customer's events, acked before the batch ends — and updates the in-memory table directly; Faust
recovers it (start, rebalance) as usual. Not `table[key] = value`: that routes the record to the partition
of Faust's *current event* (inside a batch, the batch's last event, possibly another
partition: a rebalance would then recover the key on the wrong worker), and Faust's write buffer drains
one record at a time, which made it the worker's bottleneck.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.types import EventT

from cxpulse.bus.alerts_topic import alert_message
from cxpulse.bus.codec import DeadLetter, decode_event
from cxpulse.bus.dlq import Headers, Send, route_dead_letters
from cxpulse.bus.rules_topic import RulesFollower
from cxpulse.config import Settings
from cxpulse.domain.alerts.rules.response import ResponseRule
from cxpulse.domain.state import CustomerState, new_state
from cxpulse.observability.metrics import ServiceMetrics
from cxpulse.pipeline.batch import Delivery, step
from cxpulse.pipeline.output import DISTRIBUTED_BATCH_SEQ, Output, StoreWriter
from cxpulse.store.instrumented import InstrumentedStore
from services.aggregator.gaps import GapGuard
from services.aggregator.metrics_server import serve_metrics
from services.aggregator.retrying import retrying

log = logging.getLogger("cxpulse.aggregator")

CUSTOMERS = "customers"
TABLES = (CUSTOMERS,)
#: How often the worker looks for messages the stream left undelivered (see `gaps`).
TAIL_CHECK_S = 1.0

#: A `customers` table value: {"ids": {event_id: "partition:offset"}, "state": CustomerState}.
Entry = dict[str, Any]
Sink = Callable[[dict[str, Output]], Awaitable[None]]


@dataclass
class BatchResult:
    outputs: dict[str, Output] = field(default_factory=dict)
    dead: list[tuple[EventT[Any], DeadLetter]] = field(default_factory=list)
    #: customer_id → (partition, table entry) for every customer the batch touched
    entries: dict[str, tuple[int, Entry]] = field(default_factory=dict)


class _EntryStates(MutableMapping[str, CustomerState]):
    """The keyed state inside the batch's table entries, as the mapping `batch.step` folds into."""

    def __init__(self, entries: dict[str, Entry]) -> None:
        self.entries = entries

    def __getitem__(self, cid: str) -> CustomerState:
        state: CustomerState = self.entries[cid]["state"]
        return state

    def __setitem__(self, cid: str, state: CustomerState) -> None:
        self.entries[cid]["state"] = state

    def __delitem__(self, cid: str) -> None:
        raise TypeError("keyed state is never deleted")

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


class BatchProcessor:
    """Faust glue around `batch.step`: decode, entries of the `customers` table (read through `lookup`).

    One entry per customer holds both the keyed state and the ids of the customer's events seen so far
    (event_id → "partition:offset" of the first copy), so a batch costs one changelog record per customer
    it touches; a copy at the recorded position is a redelivery, elsewhere a duplicate. Events are keyed
    by customer, so a repeat of an event is always in the same partition, under the same entry. Entries
    are updated in place; the caller persists `BatchResult.entries` (all touched customers, so a batch
    retried after a partial run still writes every change).
    """

    def __init__(self, lookup: Callable[[str], Entry | None], retention_days: int) -> None:
        self.lookup = lookup
        self.retention_days = retention_days

    def process(self, events: Sequence[EventT[Any]], responses: Sequence[ResponseRule] = ()) -> BatchResult:
        """One batch; `responses`: the response rules its survey answers are matched against."""
        result = BatchResult()
        deliveries: list[Delivery] = []
        for fevent in events:
            msg = fevent.message
            ts_ms = round(msg.timestamp * 1000)  # Faust gives the Kafka timestamp in seconds
            decoded = decode_event(msg.value, ts_ms, self.retention_days)
            if isinstance(decoded, DeadLetter):
                result.dead.append((fevent, decoded))
                continue
            cid = decoded.customer_id
            if cid not in result.entries:
                result.entries[cid] = (msg.partition, self.lookup(cid) or {"ids": {}, "state": new_state()})
            deliveries.append(Delivery(decoded, ts_ms, f"{msg.partition}:{msg.offset}"))
        entries = {cid: entry for cid, (_, entry) in result.entries.items()}
        known = {}
        for d in deliveries:
            ids = entries[d.event.customer_id]["ids"]
            if d.event.event_id in ids:
                known[d.event.event_id] = ids[d.event.event_id]
        done = step(
            deliveries, known, _EntryStates(entries), batch_seq=DISTRIBUTED_BATCH_SEQ, responses=responses
        )
        for d in done.first_seen:
            entries[d.event.customer_id]["ids"][d.event.event_id] = d.position
        result.outputs = Output.per_customer(done)
        return result


def build_app(settings: Settings, partitions: int, metrics: ServiceMetrics | None = None) -> faust.App:
    """The Faust app; `partitions` must equal the source topic's (the tables are co-partitioned with it).
    `metrics` counts dead letters and times the direct store writes (see `run_worker`)."""
    metrics = metrics or ServiceMetrics((), alerts=False)
    datadir = Path(settings.data_dir) / "faust" / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        # Faust keeps table metadata in `datadir` (default: ./<app id>-data); keep it under the data dir
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=partitions,
        topic_replication_factor=1,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # Faust's default is 20 minutes: a produce request that gets no answer would hold the batch that
        # long without a word; failing sooner lets `retrying` log it and send again.
        producer_request_timeout=30.0,
        # Faust's default is 60 s: a SIGKILLed worker's partitions would wait that long for a new owner.
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_s / 5),
    )
    source = app.topic(
        settings.topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    # no value_type: plain JSON dicts (`value_type=dict` breaks changelog recovery: no `from_data`)
    customers = app.Table(CUSTOMERS, key_type=str, partitions=partitions)
    changelog = customers.changelog_topic.get_topic_name()
    batch = BatchProcessor(customers.data.get, settings.retention_days)
    assert settings.kafka_bootstrap
    guard = GapGuard(settings.kafka_bootstrap, settings.app_id, settings.topic)
    rules = RulesFollower(settings.kafka_bootstrap, settings.rules_topic)

    async def send(topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        await (await app.producer.send(topic, key, value, None, None, headers))

    direct = settings.clickhouse_url is not None
    sink = _store_sink(settings, send, metrics) if direct else _topic_sink(app, settings.store_topic)

    async def follow_rules() -> None:
        await retrying("following the rules topic", rules.run)

    app.task(follow_rules)

    async def persist(entries: dict[str, tuple[int, Entry]]) -> None:
        """Write touched entries to the changelog (their events' partition) and wait for the acks."""
        acks = []
        for cid, (partition, entry) in entries.items():
            customers.data[cid] = entry
            key, value = orjson.dumps(cid), orjson.dumps(entry)  # Faust's json codec reads these back
            acks.append(await app.producer.send(changelog, key, value, partition, None, None))
        await asyncio.gather(*acks)

    steps = asyncio.Lock()  # one batch at a time: the stream's, or one the guard read back

    async def handle(events: list[EventT[Any]]) -> None:
        """A batch's steps after the gap check; each retried until it works (a partly applied batch is
        just a redelivery), so a batch never ends half written."""
        process = partial(batch.process, responses=rules.response_rules())
        result = await retrying("processing a batch", partial(_now, process, events))
        if result.entries:
            await retrying("writing the table changelog", partial(persist, result.entries))
        if result.dead:
            dead = [(fevent.message, letter) for fevent, letter in result.dead]
            await retrying(
                "publishing to the DLQ", partial(route_dead_letters, send, settings.dlq_topic, dead)
            )
            metrics.events_dlq.inc(len(dead))
        if result.outputs:
            await retrying("writing the batch output", partial(sink, result.outputs))

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        mine = sorted(tp.partition for tp in assigned if tp.topic == settings.topic)
        log.info("assigned %s partitions %s", settings.topic, mine)
        async with steps:
            await guard.on_assigned(mine)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        # after the batch in progress, if the guard is handling one: its writes land before the new owner
        # of the partitions recovers them
        async with steps:
            guard.on_revoked(tp.partition for tp in revoked if tp.topic == settings.topic)

    @app.agent(source, concurrency=1)
    async def process(stream: faust.StreamT[bytes]) -> None:
        # take_events (not take): the batch's events, for their partition/offset/timestamp. It acks the
        # batch after the body (on a graceful stop Faust waits for unacked events first), but also in a
        # `finally`: an exception escaping the body would skip the batch, hence the retries in `handle`.
        # (noack_take + acking ourselves looked safer, but stalled a worker after a rebalance once.)
        take = stream.take_events  # type: ignore[attr-defined]
        async for fetched in take(settings.batch_size, within=settings.batch_within_s):
            # The first batch waits until every rule published so far is known. Inside the loop, not
            # before it: messages Faust dispatches before the agent iterates its stream are lost.
            await rules.ready.wait()
            async with steps:
                events = await retrying("checking for skipped offsets", partial(guard.fill, fetched))
                await handle(events)

    async def read_stalled_tails() -> None:
        """Every second: messages the stream has left undelivered for `gaps.STALL_S` are read by the
        guard and handled here (Faust can drop buffered messages on a rebalance with nothing after them
        to reveal the hole)."""
        try:
            while True:
                await asyncio.sleep(TAIL_CHECK_S)
                async with steps:
                    # only while the streams flow: during a rebalance or table recovery the state is not
                    # whole (checked under the lock: a revoke waits for it)
                    if app.rebalancing or not app.flow_control.is_active() or not rules.ready.is_set():
                        continue
                    try:
                        holes = await guard.stalled()
                        events = await guard.read(holes) if holes else []
                    except Exception as exc:  # a broker hiccup: look again at the next check
                        log.warning("checking the stream's tail failed: %r", exc)
                        continue
                    if events:
                        await handle(events)
        finally:
            await guard.close()

    app.task(read_stalled_tails)

    return app


async def _now(fn: Callable[[list[EventT[Any]]], BatchResult], events: list[EventT[Any]]) -> BatchResult:
    """A synchronous batch step as the awaitable `retrying` takes (run in the loop, like Faust's)."""
    return fn(events)


def _topic_sink(app: faust.App, topic: str) -> Sink:
    async def publish(outputs: dict[str, Output]) -> None:
        acks = [
            await app.producer.send(topic, cid.encode(), out.encode(), None, None, None)
            for cid, out in outputs.items()
        ]
        await asyncio.gather(*acks)

    return publish


def _store_sink(settings: Settings, send: Send, metrics: ServiceMetrics) -> Sink:
    """Write to the ClickHouse server; the notifications into its outbox, then to `cx.alerts` (after the
    write, before the batch is acked: a crash in between redelivers the batch and publishes again)."""
    from cxpulse.store import migrate
    from cxpulse.store.server import ServerStore

    assert settings.clickhouse_url
    store = ServerStore(settings.clickhouse_url, settings.database)
    migrate(store)
    writer = StoreWriter(InstrumentedStore(store, on_insert=metrics.observe_insert))

    async def write(outputs: dict[str, Output]) -> None:
        written = await asyncio.to_thread(writer.write, list(outputs.values()))
        messages = [alert_message(n) for n in written.notifications]
        await asyncio.gather(*(send(settings.alerts_topic, k, v, h) for k, v, h in messages))

    return write


async def source_partitions(settings: Settings) -> int:
    """Create the topics the worker needs (source first: Faust never consumes a topic created later)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from cxpulse.bus.kafka import ensure_topics

    assert settings.kafka_bootstrap
    topics = [settings.topic, settings.dlq_topic]
    topics.append(settings.alerts_topic if settings.clickhouse_url else settings.store_topic)
    await ensure_topics(settings.kafka_bootstrap, topics, settings.kafka_partitions)
    await ensure_topics(settings.kafka_bootstrap, [settings.rules_topic], 1, {"cleanup.policy": "compact"})
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        partitions = 0
        for _ in range(100):  # a topic created a moment ago may not show its partitions yet
            (described,) = await admin.describe_topics([settings.topic])
            partitions = len(described["partitions"])
            if partitions:
                break
            await asyncio.sleep(0.1)
        if not partitions:
            raise RuntimeError(f"topic {settings.topic} has no partitions in the cluster metadata")
    finally:
        await admin.close()
    # The changelogs too, before Faust starts: created by Faust during startup they can be missing from
    # the consumer's metadata at the first table write (PartitionsMismatch, "0 partitions").
    changelogs = [f"{settings.app_id}-{table}-changelog" for table in TABLES]
    await ensure_topics(settings.kafka_bootstrap, changelogs, partitions, {"cleanup.policy": "compact"})
    return partitions


def run_worker(settings: Settings, loglevel: str = "INFO") -> int:
    """Run one worker until SIGTERM / SIGINT (several share the partitions through the app id); with
    `CXPULSE_METRICS_PORT` it serves its Prometheus counters there (see `metrics_server`)."""
    from faust.worker import Worker

    metrics = ServiceMetrics((), alerts=False)
    if settings.metrics_port is not None:
        # The worker has no HTTP API: its counters (DLQ, store inserts, lag) get their own small port,
        # on loopback unless CXPULSE_METRICS_HOST says otherwise, behind a read key once keys exist.
        _, access = serve_metrics(settings, metrics.registry)
        log.info("metrics on http://%s:%d/metrics (%s)", settings.metrics_host, settings.metrics_port, access)
    partitions = asyncio.run(source_partitions(settings))
    app = build_app(settings, partitions, metrics)
    log.info(
        "worker %s: %s (%d partitions) → %s",
        settings.app_id,
        settings.topic,
        partitions,
        "ClickHouse server" if settings.clickhouse_url else settings.store_topic,
    )
    worker = Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0
