"""Retry schedule and result classification: the pure parts of notification delivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from cxpulse.notify.delivery import Outcome, classify, classify_error, retry_after_s
from cxpulse.notify.schedule import Schedule

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def test_backoff_doubles_up_to_the_cap_and_stops_at_max_attempts() -> None:
    schedule = Schedule(base_s=5, cap_s=60, max_attempts=6, jitter=0)
    assert [schedule.delay_s(k) for k in range(1, 7)] == [5, 10, 20, 40, 60, None]


@pytest.mark.parametrize(("draw", "factor"), [(0.0, 0.8), (0.5, 1.0), (0.999999, 1.2)])
def test_jitter_is_plus_or_minus_twenty_percent(draw: float, factor: float) -> None:
    schedule = Schedule(base_s=10, jitter=0.2, rng=lambda: draw)
    assert schedule.delay_s(2) == pytest.approx(20 * factor, rel=1e-5)


@pytest.mark.parametrize(("retry_after", "expected"), [(1, 10), (15, 15), (3600, 20), (None, 10)])
def test_retry_after_is_clamped_to_one_to_two_delays(retry_after: float | None, expected: float) -> None:
    assert Schedule(base_s=10, jitter=0).delay_s(1, retry_after) == expected


def test_retry_after_seconds_or_http_date() -> None:
    assert retry_after_s("120", NOW) == 120
    assert retry_after_s(format_datetime(NOW + timedelta(seconds=90), usegmt=True), NOW) == 90
    assert retry_after_s(format_datetime(NOW - timedelta(seconds=90), usegmt=True), NOW) == 0
    assert retry_after_s("soon", NOW) is None and retry_after_s(None, NOW) is None


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (410, Outcome.DISABLE),
        (408, Outcome.RETRY),
        (425, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
        (400, Outcome.FAILED),
        (401, Outcome.FAILED),
        (404, Outcome.FAILED),
        (301, Outcome.FAILED),
    ],
)
def test_status_classification(status: int, outcome: Outcome) -> None:
    assert classify("webhook", status, {}, b"", NOW).outcome is outcome


def test_retry_keeps_the_receivers_retry_after() -> None:
    result = classify("webhook", 429, httpx.Headers({"Retry-After": "7"}), b"slow down", NOW)
    assert (result.outcome, result.retry_after_s, result.error) == (Outcome.RETRY, 7, "HTTP 429: slow down")


def test_slack_ok_false_fails_and_a_plain_ok_delivers() -> None:
    assert (
        classify("slack", 200, {}, b'{"ok": false, "error": "channel_not_found"}', NOW).outcome
        is Outcome.FAILED
    )
    assert classify("slack", 200, {}, b"ok", NOW).outcome is Outcome.DELIVERED
    assert classify("slack", 200, {}, b'{"ok": true}', NOW).outcome is Outcome.DELIVERED
    assert classify("webhook", 200, {}, b'{"ok": false}', NOW).outcome is Outcome.DELIVERED


def test_transport_errors() -> None:
    assert classify_error(httpx.ConnectError("refused")).outcome is Outcome.RETRY
    assert classify_error(httpx.ReadTimeout("slow")).outcome is Outcome.RETRY
    assert classify_error(TimeoutError()).outcome is Outcome.RETRY
    assert classify_error(httpx.UnsupportedProtocol("ftp")).outcome is Outcome.FAILED
