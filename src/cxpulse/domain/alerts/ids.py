"""Deterministic notification ids: the same cause always yields the same id (the Standard Webhooks
`webhook-id`), so a replay, a retry or a second insert into the outbox is recognisably the same message."""

from __future__ import annotations

import hashlib


def notification_id(rule_id: str, key: str) -> str:
    """`msg_<32 hex>` from the rule and what caused the message (an event id, a transition)."""
    digest = hashlib.sha256(f"{rule_id}\x1f{key}".encode()).hexdigest()[:32]
    return f"msg_{digest}"
