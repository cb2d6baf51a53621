"""`cxpulse demo`: stream synthetic touchpoint events into a running service over HTTP.

The generator decides *what* happens (`cxpulse.demo.generator`); this runner only paces it: every tick it
posts, as one NDJSON batch, the events due so far at the target rate, so a slow answer makes the next batch
larger instead of lowering the rate. A service that answers 503 gets the same batch again after its
`Retry-After` (same event ids: nothing counts twice).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import orjson

from cxpulse.demo.generator import DemoGenerator, utc_now

TICK_S = 0.2
MAX_BATCH = 5000
MAX_RETRY_AFTER_S = 10.0


class DemoError(Exception):
    """The service cannot take the demo's events: unreachable, refused the key, or answered an error."""


@dataclass(slots=True)
class DemoTotals:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0

    def line(self, elapsed_s: float) -> str:
        rate = self.sent / elapsed_s if elapsed_s > 0 else 0.0
        return (
            f"{elapsed_s:7.1f} s  sent {self.sent}  accepted {self.accepted}  duplicates {self.duplicates}  "
            f"rejected {self.rejected}  ({rate:.1f} events/s)"
        )


async def run_demo(
    url: str,
    rate: float = 20.0,
    customers: int = 500,
    duration_s: float | None = None,
    incident: str | None = None,
    key: str | None = None,
    *,
    seed: int | None = None,
    history_s: float = 0.0,
    progress_every_s: float = 5.0,
    out: Callable[[str], None] = print,
) -> DemoTotals:
    """Send about `rate` events/s for `duration_s` seconds (None: until cancelled); return the totals.

    `history_s` first backfills that much healthy history (no incident) as fast as the service takes it,
    so windows, previous windows, sparklines and outcome cohorts have data from the first minute."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    generator = DemoGenerator(customers, seed=seed, incident=incident)
    headers = {"Content-Type": "application/x-ndjson"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    totals = DemoTotals()
    async with httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=30.0) as client:
        await _check_reachable(client, url)
        until = f"for {duration_s:g} s" if duration_s is not None else "until Ctrl-C"
        trouble = f", incident at {incident}" if incident else ""
        if history_s > 0:
            await _backfill(client, generator, history_s, customers, totals, out)
        out(f"demo: ~{rate:g} events/s from {customers} customers into {url}{trouble}, {until}")
        backfilled = totals.sent
        start = time.monotonic()
        next_progress = start + progress_every_s
        try:
            while True:
                elapsed = time.monotonic() - start
                finished = duration_s is not None and elapsed >= duration_s
                due = int(rate * (min(elapsed, duration_s) if duration_s is not None else elapsed))
                while due > totals.sent - backfilled:
                    missing = due - (totals.sent - backfilled)
                    await _send(client, generator.take(min(missing, MAX_BATCH)), totals)
                if finished:
                    break
                now = time.monotonic()
                if now >= next_progress:
                    out(totals.line(now - start))
                    next_progress += progress_every_s
                await asyncio.sleep(TICK_S)
        finally:
            out(f"demo done: {totals.line(time.monotonic() - start).strip()}")
    return totals


#: Backfilled events per customer and day of history, and the most a backfill sends.
HISTORY_EVENTS_PER_CUSTOMER_DAY = 2.0
MAX_HISTORY_EVENTS = 200_000


async def _backfill(
    client: httpx.AsyncClient,
    generator: DemoGenerator,
    history_s: float,
    customers: int,
    totals: DemoTotals,
    out: Callable[[str], None],
) -> None:
    """Events spread evenly over the past `history_s`, oldest first, without the incident (so a live
    incident shows as a fall against its own history)."""
    count = max(
        1, min(MAX_HISTORY_EVENTS, int(customers * HISTORY_EVENTS_PER_CUSTOMER_DAY * history_s / 86_400))
    )
    end = utc_now()
    start = end - timedelta(seconds=history_s)
    times = (start + (end - start) * (i / count) for i in range(count))
    incident, generator.incident = generator.incident, None
    live_clock, generator.clock = generator.clock, lambda: next(times)
    out(f"demo: backfilling {count:,} events over the last {history_s / 86_400:g} days …")
    try:
        for first in range(0, count, MAX_BATCH):
            await _send(client, generator.take(min(MAX_BATCH, count - first)), totals)
    finally:
        generator.incident, generator.clock = incident, live_clock
    out(f"demo: history in ({totals.accepted:,} accepted)")


async def _check_reachable(client: httpx.AsyncClient, url: str) -> None:
    try:
        await client.get("/healthz")
    except httpx.TransportError as exc:
        raise DemoError(
            f"cannot reach CX Pulse at {url} ({exc or type(exc).__name__}); start it first "
            "(`make run` or `cxpulse run`) or pass --url"
        ) from None


async def _send(client: httpx.AsyncClient, items: list[dict[str, Any]], totals: DemoTotals) -> None:
    body = b"".join(orjson.dumps(item) + b"\n" for item in items)
    while True:
        try:
            response = await client.post("/v1/events", content=body)
        except httpx.TransportError as exc:
            raise DemoError(f"lost the service at {client.base_url} ({exc or type(exc).__name__})") from None
        if response.status_code != 503:
            break
        await asyncio.sleep(_retry_after(response))
    totals.sent += len(items)
    if response.status_code == 202:
        answer = response.json()
        totals.accepted += int(answer["accepted"])
        totals.duplicates += int(answer["duplicates"])
        totals.rejected += len(answer["rejected"])
    elif response.status_code == 422:  # no item valid: every one is rejected
        totals.rejected += len(items)
    elif response.status_code in (401, 403):
        raise DemoError(
            f"the service refused the events ({response.status_code}): {_message(response)}; "
            "pass an API key with the ingest scope (--key)"
        )
    else:
        raise DemoError(f"POST /v1/events answered {response.status_code}: {_message(response)}")


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(MAX_RETRY_AFTER_S, max(0.1, float(response.headers.get("retry-after", "1"))))
    except ValueError:
        return 1.0


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:300]
