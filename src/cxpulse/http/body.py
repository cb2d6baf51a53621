"""Decoding a POST body into items: one JSON object, a JSON array, or NDJSON (SPEC §3)."""

from __future__ import annotations

from typing import Any

import orjson

MAX_BATCH_ITEMS = 10_000


class BodyError(ValueError):
    """The body cannot be decoded into event items (HTTP 400), or has too many items (HTTP 413)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def decode_items(body: bytes, content_type: str) -> list[Any]:
    """Split a body into JSON items; an NDJSON line that is not JSON is a body error naming the line."""
    if not body.strip():
        raise BodyError("the request body is empty; send an event object, a JSON array or NDJSON")
    if "ndjson" in content_type or "jsonl" in content_type:
        items = []
        for lineno, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise BodyError(f"line {lineno} is not valid JSON: {exc}") from exc
    else:
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            hint = " (for NDJSON, send Content-Type: application/x-ndjson)" if b"\n{" in body.strip() else ""
            raise BodyError(f"the body is not valid JSON: {exc}{hint}") from exc
        if isinstance(decoded, list):
            if not decoded:
                raise BodyError("the JSON array is empty; send at least one event")
            items = decoded
        elif isinstance(decoded, dict):
            items = [decoded]
        else:
            raise BodyError("the body must be an event object, a JSON array of events or NDJSON")
    if len(items) > MAX_BATCH_ITEMS:
        raise BodyError(f"a batch holds at most {MAX_BATCH_ITEMS} events; got {len(items)}", too_large=True)
    return items
