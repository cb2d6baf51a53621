"""The event JSON Schema (`schemas/event.schema.json`), loaded once: what both validators compile."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from cxpulse.schema_files import schema_file


@cache
def event_schema() -> dict[str, Any]:
    """The schema as a dict (bundled next to the package when installed)."""
    loaded: dict[str, Any] = json.loads(schema_file("event.schema.json").read_text())
    return loaded
