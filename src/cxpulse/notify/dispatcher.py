"""The delivery worker: poll the outbox for due rows, attempt each in its own task, write the outcome back.

Each attempt has its own deadline and runs concurrently with the others, and a row in flight is not
picked again, so a hanging target holds up only its own notifications. The outbox rows are the truth
(svix's model): nothing is queued in memory that a restart would lose.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import httpx

from cxpulse.notify.delivery import AttemptResult, Outcome, attempt, classify_error
from cxpulse.notify.outbox import AttemptRecord, Delivery, Outbox, Status, next_version
from cxpulse.notify.schedule import Schedule

log = logging.getLogger(__name__)

#: Called after a row is delivered (e.g. to also publish it to Kafka `cx.alerts` in distributed mode).
OnSent = Callable[[Delivery], Awaitable[None]]
#: Called after every attempt with its record (e.g. to count results on /metrics).
OnAttempt = Callable[[AttemptRecord], None]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def default_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(follow_redirects=False, limits=httpx.Limits(max_connections=100))


class Dispatcher:
    def __init__(
        self,
        outbox: Outbox,
        client_factory: Callable[[], httpx.AsyncClient] = default_client,
        schedule: Schedule | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        *,
        attempt_timeout_s: float = 10.0,
        poll_interval_s: float = 1.0,
        batch: int = 100,
        on_sent: OnSent | None = None,
        on_attempt: OnAttempt | None = None,
    ) -> None:
        self._outbox = outbox
        self._client_factory = client_factory
        self._client: httpx.AsyncClient | None = None
        self._schedule = schedule or Schedule()
        self._clock = clock
        self._timeout_s = attempt_timeout_s
        self._poll_s = poll_interval_s
        self._batch = batch
        self._on_sent = on_sent
        self.on_attempt = on_attempt
        self._in_flight: dict[tuple[str, int], asyncio.Task[AttemptRecord]] = {}
        #: Attempts that ended while a poll's query ran: that query may have read their rows as they were
        #: before the attempt was recorded, so the poll must not start them again.
        self._ended_during_poll: set[tuple[str, int]] = set()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Poll now instead of at the next interval (call after adding to the outbox)."""
        self._wake.set()

    async def deliver_due(self) -> list[AttemptRecord]:
        """Start an attempt for every due row not already in flight and wait for those attempts."""
        tasks = await self._start_due()
        return list(await asyncio.gather(*tasks)) if tasks else []

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set, then drain (see `drain`)."""
        try:
            while not stop.is_set():
                try:
                    await self._start_due()
                except Exception:  # a store hiccup must not end delivery for good
                    log.exception("notification outbox poll failed")
                self._wake.clear()
                waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
                await asyncio.wait(waits, timeout=self._poll_s, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waits:
                    waiter.cancel()
            await self.drain()
        finally:
            await self.aclose()

    async def drain(self) -> None:
        """At shutdown: wait for the attempts in flight and start what is due, until nothing is due.

        A poll starts at most `batch` rows, so a burst (the last batches acknowledged before SIGTERM) may
        still be waiting; it is delivered now rather than after a restart. Rows waiting for a retry stay in
        the outbox (the truth) for the next start; the caller bounds how long this may take."""
        while True:
            await self._start_due()
            if not self._in_flight:
                return
            await asyncio.wait(list(self._in_flight.values()))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _start_due(self) -> list[asyncio.Task[AttemptRecord]]:
        # rows in flight are still pending (so due): ask for that many more, or a burst of them would
        # hide everything behind it until they end
        self._ended_during_poll.clear()
        due = await asyncio.to_thread(self._outbox.due, self._clock(), self._batch + len(self._in_flight))
        started = []
        for delivery in due:
            key = (delivery.id, delivery.target_index)
            if key in self._in_flight or key in self._ended_during_poll:
                continue
            task = asyncio.create_task(self._deliver(delivery), name=f"notify {delivery.id}/{key[1]}")
            self._in_flight[key] = task
            task.add_done_callback(self._forget(key))
            started.append(task)
        return started

    def _forget(self, key: tuple[str, int]) -> Callable[[asyncio.Task[AttemptRecord]], None]:
        def done(_task: asyncio.Task[AttemptRecord]) -> None:
            self._in_flight.pop(key, None)
            self._ended_during_poll.add(key)

        return done

    async def _deliver(self, delivery: Delivery) -> AttemptRecord:
        if self._client is None:
            self._client = self._client_factory()
        at_ms = self._clock()
        try:
            result = await asyncio.wait_for(
                attempt(self._client, delivery, now_s=at_ms / 1000, timeout_s=self._timeout_s),
                timeout=self._timeout_s + 1,
            )
        except TimeoutError as exc:
            result = classify_error(exc)
        record, updated = self._outcome(delivery, result, at_ms)
        await asyncio.to_thread(self._outbox.record, record, updated)
        if self.on_attempt is not None:
            try:
                self.on_attempt(record)
            except Exception:
                log.exception("on_attempt hook failed for notification %s", delivery.id)
        if result.outcome is Outcome.DISABLE:
            reason = f"{result.error} (notification {delivery.id})"
            await asyncio.to_thread(
                self._outbox.disable_target, delivery.rule_id, delivery.target.url, at_ms, reason
            )
        if updated.status is Status.DELIVERED and self._on_sent is not None:
            try:
                await self._on_sent(updated)
            except Exception:
                log.exception("on_sent hook failed for notification %s", delivery.id)
        return record

    def _outcome(
        self, delivery: Delivery, result: AttemptResult, at_ms: int
    ) -> tuple[AttemptRecord, Delivery]:
        """The attempt's log line and the row's next version."""
        number = delivery.attempts + 1
        next_ms: int | None = None
        status = {
            Outcome.DELIVERED: Status.DELIVERED,
            Outcome.FAILED: Status.FAILED,
            Outcome.DISABLE: Status.DISABLED,
        }.get(result.outcome, Status.PENDING)
        summary = result.error or f"HTTP {result.status_code}"
        if result.outcome is Outcome.RETRY:
            delay = self._schedule.delay_s(number, result.retry_after_s)
            if delay is None:
                status, summary = Status.FAILED, f"{summary} (gave up after {number} attempts)"
            else:
                next_ms = at_ms + round(delay * 1000)
        record = AttemptRecord(
            id=delivery.id,
            target_index=delivery.target_index,
            rule_id=delivery.rule_id,
            kind=delivery.kind,
            target_type=delivery.target.type,
            url=delivery.target.url,
            attempt=number,
            at_ms=at_ms,
            duration_ms=result.duration_ms,
            outcome=str(result.outcome),
            status_code=result.status_code,
            error=result.error,
            next_attempt_ms=next_ms,
        )
        updated = next_version(
            delivery,
            status=status,
            attempts=number,
            next_attempt_ms=next_ms if next_ms is not None else delivery.next_attempt_ms,
            last_result=summary,
        )
        return record, updated
