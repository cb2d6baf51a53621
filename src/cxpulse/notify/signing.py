"""Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`).

The signature is the maintained `standardwebhooks` library's: HMAC-SHA256 over `id.timestamp.body`. The id
is the notification's (the same on every retry, the receiver's dedup key); the timestamp is per attempt.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from standardwebhooks import Webhook


def webhook_headers(msg_id: str, body: str, now_s: float, secret: str | None) -> dict[str, str]:
    """The headers of one attempt; `webhook-signature` only when the target has a secret."""
    at = datetime.fromtimestamp(math.floor(now_s), UTC)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(math.floor(now_s))}
    if secret:
        headers["webhook-signature"] = Webhook(secret).sign(msg_id=msg_id, timestamp=at, data=body)
    return headers
