"""The network side of the notification-target policy: DNS resolution, and the policy the settings ask for
(`CXPULSE_WEBHOOK_ALLOW_PRIVATE`). The rule itself is `domain.alerts.rules.targets.check_target_url`."""

from __future__ import annotations

import socket

from cxpulse.config import Settings
from cxpulse.domain.alerts.rules.targets import TargetPolicy


def resolve_host(host: str) -> list[str]:
    """Every address `host` resolves to (IPv4 and IPv6); raises OSError when it does not resolve."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def target_policy(settings: Settings) -> TargetPolicy:
    """The policy `parse_rule` applies to rules sent to the API."""
    return TargetPolicy(resolve=resolve_host, allow_private=settings.webhook_allow_private)
