"""Alerting in the distributed API process (`cxpulse api --kafka`): the same `AlertService` as the embedded
mode, plus what the distribution needs.

- **Rules to the workers**: after every rule change (`on_rules_changed`), and at least every alert
  interval, the rule set is published to the compacted rules topic (`RulesPublisher`; all of it at start).
- **One evaluator and one dispatcher.** With chDB the API process owns the store — a second one on the
  same data dir cannot start — so it simply runs them. With a ClickHouse server several API processes
  may run: they elect a leader through a Kafka consumer group (`LeaderElection`), and only the leader
  runs them, each term with a fresh `AlertService` (states and rules loaded from the store, as the
  previous leader left them).
- **cx.alerts**: the evaluator's outbox is mirrored to the topic; the close-the-loop notifications that
  the loader puts in the outbox are published by `after_write` before the loader commits.
- **Freshness**: `after_write` bumps the change feed, so the evaluator runs within a second of loaded
  events (and the live stream refreshes), and wakes the dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cxpulse.alerts.service import AlertService, Loop
from cxpulse.bus.alerts_topic import AlertsTopic, MirroredOutbox
from cxpulse.bus.kafka import ensure_topics
from cxpulse.bus.leader import LeaderElection
from cxpulse.bus.rules_topic import RulesPublisher
from cxpulse.config import Settings
from cxpulse.domain.alerts.rules.rule import Rule
from cxpulse.live.feed import ChangeFeed
from cxpulse.pipeline.output import Written
from cxpulse.reading import PulseReader
from cxpulse.store.base import Store

log = logging.getLogger("cxpulse.api.alerting")


class DistributedAlerting:
    def __init__(self, settings: Settings, store: Store, feed: ChangeFeed, *, elect: bool) -> None:
        if not settings.kafka_bootstrap:
            raise ValueError("distributed alerting needs CXPULSE_KAFKA_BOOTSTRAP")
        self.settings = settings
        self.bootstrap = settings.kafka_bootstrap
        self.store = store
        self.feed = feed
        #: Several API processes share a ClickHouse server: elect the one that evaluates and delivers.
        self.elect = elect
        self.reader = PulseReader(store)
        #: The service the HTTP routes use (and, without an election, the one that evaluates).
        self.service = AlertService(store, self.reader, settings, feed=feed)
        self.service.on_rules_changed.append(self._rules_changed)
        self.alerts = AlertsTopic(self.bootstrap, settings.alerts_topic)
        self.rules = RulesPublisher(self.bootstrap, settings.rules_topic)
        #: The service of the current leadership term (None while this process does not lead).
        self.term: AlertService | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirty = asyncio.Event()

    async def start(self) -> None:
        """Create the topics, connect, publish the whole rule set (a `serving` startup hook)."""
        s = self.settings
        await ensure_topics(self.bootstrap, [s.rules_topic], 1, {"cleanup.policy": "compact"})
        await ensure_topics(self.bootstrap, [s.alerts_topic], s.kafka_partitions)
        if self.elect:
            await ensure_topics(self.bootstrap, [s.leader_topic], 1)
        self._loop = asyncio.get_running_loop()
        self._dirty = asyncio.Event()
        await self.alerts.start()
        await self.rules.start(await asyncio.to_thread(self._current_rules))

    async def stop(self) -> None:
        await self.rules.stop()
        await self.alerts.stop()

    def loops(self) -> list[Loop]:
        loops: list[Loop] = [self.alerts.run, self._keep_rules]
        if self.elect:
            s = self.settings
            election = LeaderElection(
                self.bootstrap,
                s.leader_topic,
                s.leader_group,
                self._lead,
                session_timeout_s=s.kafka_session_timeout_s,
            )
            loops.append(election.run)
        else:
            loops.append(self._lead)  # the only API process: it owns the chDB store
        return loops

    async def after_write(self, written: Written) -> None:
        """The loader's hook, after a batch is in the store and before its offsets are committed."""
        if written.notifications:
            await self.alerts.publish(written.notifications)
            self.service.wake_dispatcher()
        self.feed.notify()

    # ---------------------------------------------------------------------------------------- leading

    async def _lead(self, deposed: asyncio.Event) -> None:
        """Evaluate metric rules and deliver notifications until `deposed`."""
        term = self.service
        if self.elect:  # a fresh start each term: the previous leader may have moved the states on
            term = await asyncio.to_thread(
                AlertService, self.store, self.reader, self.settings, feed=self.feed
            )
            term.evaluator.listeners.extend(self.service.evaluator.listeners)  # the SSE hub
        term.evaluator.outbox = MirroredOutbox(term.evaluator.outbox, self.alerts)
        self.term = term
        log.info("evaluating %d metric rule(s) and delivering notifications", len(term.metric_rules()))
        try:
            await asyncio.gather(term.run_evaluator(deposed), term.run_dispatcher(deposed))
        finally:
            self.term = None
            term.evaluator.outbox = term.outbox  # unwrap, for a service used again (no election)

    # ------------------------------------------------------------------------------------------ rules

    def _rules_changed(self) -> None:
        """`on_rules_changed` hook (called from a request thread): publish soon."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._dirty.set)

    def _current_rules(self) -> list[Rule]:
        """The rule set to publish. With an election other API processes may change rules too, so read
        the store; alone, this process's cache is the store."""
        if self.elect:
            self.service.refresh()
        return [*self.service.metric_rules(), *self.service.response_rules()]

    async def _keep_rules(self, stop: asyncio.Event) -> None:
        """Publish rule changes; every alert interval also re-read and re-sync (changes made by another
        API process, a publish that failed), and refresh the leading term's rules."""
        interval = self.settings.alert_interval_s
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await _first(stop, self._dirty)
            if stop.is_set():
                break
            self._dirty.clear()
            try:
                await self.rules.sync(await asyncio.to_thread(self._current_rules))
                term = self.term
                if term is not None and term is not self.service:
                    await asyncio.to_thread(term.refresh)
                    term.evaluator.wake()
            except Exception:  # Kafka or the store away: the next turn tries again
                log.exception("publishing the alert rules failed")


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
