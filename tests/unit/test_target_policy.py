"""Where notifications may go (SSRF): http(s) only; no loopback, link-local, private or other non-public
address unless CXPULSE_WEBHOOK_ALLOW_PRIVATE=true; a host is judged by every address it resolves to."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from cxpulse.config import Settings
from cxpulse.domain.alerts.rules.errors import RuleError
from cxpulse.domain.alerts.rules.rule import parse_rule
from cxpulse.domain.alerts.rules.targets import TargetPolicy, check_target_url
from cxpulse.domain.metrics import Direction
from cxpulse.notify.targets import resolve_host, target_policy

DIRECTIONS = {"nps": Direction.HIGHER_IS_BETTER}
FAKE_DNS = {
    "internal.corp.test": ["10.0.0.5"],
    "metadata.cloud.test": ["169.254.169.254"],
    "half.test": ["93.184.216.34", "192.168.1.1"],
    "v6only.test": ["fd12:3456::1"],
    "hooks.public.test": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
}


def fake_resolve(host: str) -> Sequence[str]:
    if host in FAKE_DNS:
        return FAKE_DNS[host]
    raise OSError(f"{host}: no such host")


POLICY = TargetPolicy(fake_resolve)
REAL = target_policy(Settings())

REFUSED = [
    # literal addresses
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("http://127.9.9.9/", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://10.1.2.3/", "private"),
    ("http://172.16.0.1/", "private"),
    ("https://192.168.0.10/", "private"),
    ("http://[fd00::1]/", "private"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://100.64.0.1/", "non-public"),
    ("http://224.0.0.1/", "non-public"),
    # names that resolve to such addresses (any one of them is enough)
    ("https://internal.corp.test/hook", "private"),
    ("https://metadata.cloud.test/", "link-local"),
    ("https://half.test/", "private"),
    ("https://v6only.test/", "private"),
    # does not resolve
    ("https://nowhere.invalid/", "does not resolve"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_non_public_targets_are_refused(url: str, why: str) -> None:
    problem = check_target_url(url, POLICY)
    assert problem is not None and why in problem, problem
    if why != "does not resolve":
        assert "CXPULSE_WEBHOOK_ALLOW_PRIVATE=true" in problem
        assert check_target_url(url, TargetPolicy(fake_resolve, allow_private=True)) is None


@pytest.mark.parametrize(
    "url", ["http://localhost:9000/x", "http://2130706433/", "http://0x7f000001/", "http://0/"]
)
def test_the_real_resolver_sees_through_spellings_of_loopback(url: str) -> None:
    """`localhost` (from /etc/hosts) and numeric spellings that the C resolver turns into 127.0.0.1."""
    problem = check_target_url(url, REAL)
    assert problem is not None and ("loopback" in problem or "unspecified" in problem), problem


def test_resolve_host_gives_addresses() -> None:
    """(Only names the machine answers itself: no DNS query leaves it.)"""
    assert "127.0.0.1" in resolve_host("localhost") or "::1" in resolve_host("localhost")
    assert resolve_host("10.1.2.3") == ["10.1.2.3"]


def test_public_targets_pass_and_only_http_s() -> None:
    assert check_target_url("https://hooks.public.test/x", POLICY) is None
    assert check_target_url("https://93.184.216.34/x", POLICY) is None
    for url in (
        "ftp://93.184.216.34/",
        "file:///etc/passwd",
        "gopher://93.184.216.34/",
        "javascript:alert(1)",
    ):
        assert check_target_url(url, POLICY) == "must be an http or https URL"


def test_without_a_policy_only_the_syntax_is_checked() -> None:
    """A rule read back from the store is not re-judged against DNS."""
    assert check_target_url("http://127.0.0.1:9/x") is None


def test_allow_private_comes_from_the_settings() -> None:
    assert not target_policy(Settings()).allow_private
    assert target_policy(Settings(webhook_allow_private=True)).allow_private


def test_parse_rule_names_the_url_field() -> None:
    rule = {
        "name": "r",
        "metric": "nps",
        "condition": {"op": "below", "threshold": 10},
        "notify": [
            {"type": "webhook", "url": "https://hooks.public.test/ok"},
            {"type": "webhook", "url": "http://169.254.169.254/"},
            {"type": "slack", "url": "http://10.0.0.1/slack"},
        ],
    }
    with pytest.raises(RuleError) as caught:
        parse_rule(rule, metrics=DIRECTIONS, rule_id="r1", target_policy=POLICY)
    fields = {e["field"]: e["message"] for e in caught.value.errors}
    assert set(fields) == {"notify[1].url", "notify[2].url"}
    assert "link-local" in fields["notify[1].url"] and "private" in fields["notify[2].url"]
    allowed = TargetPolicy(fake_resolve, allow_private=True)
    assert (
        parse_rule(rule, metrics=DIRECTIONS, rule_id="r1", target_policy=allowed)
        .notify[1]
        .url.startswith("http")
    )
