"""Notification targets (a rule's `notify`, SPEC §4): where an alert may be sent and the credentials it
carries. A webhook's secret and a Slack URL (itself the credential) are masked whenever shown, and a masked
value sent back for one of the rule's own targets keeps the stored one — so GET, edit, PUT works without
ever handing the credential out."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from cxpulse.domain.alerts.rules.errors import FieldErrors

MAX_URL = 2048
MAX_TARGETS = 10
_TARGET_FIELDS = frozenset({"type", "url", "secret"})

TargetType = Literal["webhook", "slack"]


@dataclass(frozen=True, slots=True)
class Target:
    type: TargetType
    url: str
    secret: str | None = None


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """Where notifications may be sent (SSRF). `resolve` gives a host's addresses (the network side passes
    a DNS lookup in, so the domain stays pure); `allow_private` lifts the address check — for local
    receivers (`CXPULSE_WEBHOOK_ALLOW_PRIVATE=true`)."""

    resolve: Callable[[str], Sequence[str]]
    allow_private: bool = False


def check_target_url(url: str, policy: TargetPolicy | None = None) -> str | None:
    """Why `url` cannot be a notification target, or None. The one place the network policy lives: http(s)
    only, and with a `policy` (what the API applies to rules it is sent) no loopback, link-local, private
    or otherwise non-public address — the host's every address is checked, a host that does not resolve
    is refused. Without a policy (a rule read back from the store) only the syntax is checked."""
    if len(url) > MAX_URL:
        return f"must be at most {MAX_URL} characters"
    if any(c.isspace() for c in url):
        return "must not contain whitespace"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 — raises ValueError on a malformed port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must be an http or https URL"
    if not parts.hostname:
        return "must name a host"
    if policy is not None and not policy.allow_private:
        return _address_problem(parts.hostname, policy.resolve)
    return None


def _address_problem(host: str, resolve: Callable[[str], Sequence[str]]) -> str | None:
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a) for a in resolve(host)]
        except (OSError, ValueError, UnicodeError):
            addresses = []
        if not addresses:
            return f"host {host!r} does not resolve"
    for address in addresses:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_global and not address.is_multicast:
            continue
        kinds = ("loopback", "link_local", "unspecified", "private")
        kind = next((k for k in kinds if getattr(address, f"is_{k}")), "non-public").replace("_", "-")
        where = str(address) if host == str(address) else f"{host} is {address}"
        allow = "set CXPULSE_WEBHOOK_ALLOW_PRIVATE=true to allow it"
        return f"must not point at a {kind} address ({where}); {allow}"
    return None


def check_secret(secret: str) -> str | None:
    """Standard Webhooks secrets are base64 (optionally prefixed `whsec_`) of 24–64 random bytes."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return "must be base64, optionally prefixed whsec_ (e.g. whsec_ + 32 random bytes in base64)"
    if not 24 <= len(key) <= 64:
        return f"must decode to 24–64 bytes; got {len(key)}"
    return None


def mask_secret(secret: str) -> str:
    """`whsec_…abcd`: enough to tell secrets apart, never enough to use one."""
    prefix = "whsec_" if secret.startswith("whsec_") else ""
    return f"{prefix}…{secret[-4:]}"


def mask_url(url: str) -> str:
    """A Slack incoming-webhook URL is itself the credential: show its host and last 4 characters only
    (`https://hooks.slack.com/…x9Qz`)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…{url[-4:]}"


def parse_targets(
    data: object,
    errors: FieldErrors,
    previous: Sequence[Target] = (),
    policy: TargetPolicy | None = None,
) -> tuple[Target, ...]:
    """A rule's `notify` list. `previous` are the targets of the rule being replaced: a secret or Slack URL
    sent back masked (as GET shows it) is one of theirs, and keeps its stored value."""
    if not isinstance(data, list):
        errors.add("notify", "must be a list of targets")
        return ()
    if len(data) > MAX_TARGETS:
        errors.add("notify", f"at most {MAX_TARGETS} targets")
    secrets, slack_urls = _secrets_of(previous), _slack_urls_of(previous)
    out = []
    for i, item in enumerate(data):
        path = f"notify[{i}]"
        if not isinstance(item, Mapping):
            errors.add(path, "must be an object such as {'type': 'webhook', 'url': 'https://…'}")
            continue
        errors.unknown(item, _TARGET_FIELDS, f"{path}.")
        kind = item.get("type", "webhook")
        if kind not in ("webhook", "slack"):
            errors.add(f"{path}.type", "must be webhook or slack")
        url = errors.string(item, "url", f"{path}.url")
        if url is not None and kind == "slack" and "…" in url:  # as GET shows it
            if url in slack_urls:
                url = slack_urls[url]
            else:
                errors.add(
                    f"{path}.url",
                    "is masked: send the full Slack webhook URL, or the masked value GET shows for one of "
                    "this rule's own targets",
                )
                url = None
        problem = None if url is None else check_target_url(url, policy)
        if problem:
            errors.add(f"{path}.url", problem)
        secret = item.get("secret")
        if secret is not None and url is not None:
            secret = secrets.get((url, secret), secret)
        if secret is not None:
            if kind == "slack":
                errors.add(f"{path}.secret", "only applies to webhook targets")
            elif not isinstance(secret, str):
                errors.add(f"{path}.secret", "must be a string")
            elif problem := check_secret(secret):
                errors.add(f"{path}.secret", problem)
        if url is not None and kind in ("webhook", "slack"):
            out.append(Target(kind, url, secret if isinstance(secret, str) else None))
    return tuple(out)


def _slack_urls_of(targets: Sequence[Target]) -> dict[str, str]:
    """masked URL → URL of the Slack targets of the rule being replaced."""
    return {mask_url(t.url): t.url for t in targets if t.type == "slack"}


def _secrets_of(targets: Sequence[Target]) -> dict[tuple[str, str], str]:
    """(url, masked secret) → secret of the rule being replaced."""
    return {(t.url, mask_secret(t.secret)): t.secret for t in targets if t.secret}


def target_to_json(target: Target, *, mask_secrets: bool = True) -> dict[str, Any]:
    """A target as shown: its secret masked, and a Slack URL (the credential itself) masked too."""
    slack = mask_secrets and target.type == "slack"
    out: dict[str, Any] = {"type": target.type, "url": mask_url(target.url) if slack else target.url}
    if target.secret is not None:
        out["secret"] = mask_secret(target.secret) if mask_secrets else target.secret
    return out
