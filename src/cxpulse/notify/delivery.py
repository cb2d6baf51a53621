"""One delivery attempt over HTTP, and the one place that decides what its result means.

`classify` maps a response (or a transport error) to an outcome: delivered, retry, failed, or disable the
target. Notifiers never decide retries themselves, so a webhook and a Slack target fail the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

import httpx
import orjson

from cxpulse.notify.outbox import Delivery, wire_body
from cxpulse.notify.signing import webhook_headers

#: Statuses worth retrying besides 5xx: timeout, too early, too many requests.
RETRY_STATUSES = frozenset({408, 425, 429})
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "cxpulse-notify/1"


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    DISABLE = "disable"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    outcome: Outcome
    status_code: int | None = None
    error: str = ""
    retry_after_s: float | None = None
    duration_ms: int = 0


def classify(
    target_type: str, status_code: int, headers: httpx.Headers | dict[str, str], body: bytes, now: datetime
) -> AttemptResult:
    """2xx delivered (Slack: unless its JSON says `ok: false`); 410 disables the target; 408, 425, 429 and
    5xx retry (with the receiver's `Retry-After`); anything else fails for good."""
    retry_after = retry_after_s(headers.get("retry-after"), now)
    if 200 <= status_code < 300:
        if target_type == "slack" and _slack_refused(body):
            return AttemptResult(Outcome.FAILED, status_code, f"slack: {_snippet(body)}")
        return AttemptResult(Outcome.DELIVERED, status_code)
    error = f"HTTP {status_code}: {_snippet(body)}".rstrip(": ")
    if status_code == 410:
        return AttemptResult(Outcome.DISABLE, status_code, error)
    if status_code in RETRY_STATUSES or status_code >= 500:
        return AttemptResult(Outcome.RETRY, status_code, error, retry_after)
    if 300 <= status_code < 400:
        error += " (redirects are not followed)"
    return AttemptResult(Outcome.FAILED, status_code, error)


def classify_error(exc: Exception) -> AttemptResult:
    """Timeouts, connection and network errors are worth retrying; a request that cannot be made as
    configured (unsupported scheme, invalid URL) is not."""
    name = type(exc).__name__
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return AttemptResult(Outcome.RETRY, error=f"timeout ({name})")
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError | httpx.ProxyError):
        return AttemptResult(Outcome.RETRY, error=f"{name}: {exc}"[:300])
    return AttemptResult(Outcome.FAILED, error=f"{name}: {exc}"[:300])


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """`Retry-After` as seconds from `now`: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


async def attempt(
    client: httpx.AsyncClient, delivery: Delivery, *, now_s: float, timeout_s: float
) -> AttemptResult:
    """POST the delivery's body once (no redirects followed) and classify what came back."""
    body = wire_body(delivery)
    headers = {"content-type": "application/json", "user-agent": USER_AGENT}
    headers |= webhook_headers(delivery.id, body, now_s, delivery.target.secret)
    started = time.monotonic()
    try:
        async with client.stream(
            "POST",
            delivery.target.url,
            content=body.encode(),
            headers=headers,
            timeout=timeout_s,
            follow_redirects=False,
        ) as response:
            answer = await _read_capped(response)
    except Exception as exc:  # classify_error decides which failures are worth a retry
        result = classify_error(exc)
    else:
        now = datetime.fromtimestamp(now_s, UTC)
        result = classify(delivery.target.type, response.status_code, response.headers, answer, now)
    duration = int((time.monotonic() - started) * 1000)
    return AttemptResult(result.outcome, result.status_code, result.error, result.retry_after_s, duration)


async def _read_capped(response: httpx.Response) -> bytes:
    """At most MAX_RESPONSE_BYTES of the body: enough to classify, bounded whatever the receiver sends."""
    out = bytearray()
    async for chunk in response.aiter_bytes():
        out += chunk
        if len(out) >= MAX_RESPONSE_BYTES:
            break
    return bytes(out[:MAX_RESPONSE_BYTES])


def _slack_refused(body: bytes) -> bool:
    """Slack's Web-API style answer `{"ok": false, "error": …}` on a 200."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("ok") is False


def _snippet(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace").strip()
