"""A fixed event set and the HTTP answers of every read endpoint over it — the readings-unchanged guard.

`python -m tests.golden.readings_dump` rewrites `readings.json.gz` from the current code (do that only when
a reading is meant to change, and say why in the commit); `tests/integration/test_readings_golden.py`
compares today's answers with it.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.workload import Workload

GOLDEN = Path(__file__).with_name("readings.json.gz")
END_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
N_EVENTS = 6_000
METRIC_IDS = [
    "nps", "csat", "ces", "fcr", "resolution_time", "active_customers", "dau", "wau", "mau",
    "stickiness", "churn", "retention", "trial_conversion", "referral_rate",
]  # fmt: skip
FILTERS: list[dict[str, str]] = [{}, {"touchpoint": "checkout"}, {"channel": "web"}, {"segment": "pro"}]
AT = "2026-10-31T12:00:00Z"
AT_EDGE = "2026-11-01T00:00:00Z"


def events() -> list[dict[str, Any]]:
    return list(Workload(seed=7, customers=400, days=40, end_ms=END_MS, id_prefix="g").events(N_EVENTS))


def events_digest(items: list[dict[str, Any]]) -> str:
    return hashlib.sha256(b"\n".join(orjson.dumps(e) for e in items)).hexdigest()


def queries() -> list[tuple[str, dict[str, str]]]:
    """Every (path, params) the guard compares."""
    out: list[tuple[str, dict[str, str]]] = []
    for at in (AT, AT_EDGE):
        for window in ("1h", "24h", "7d", "30d"):
            for flt in FILTERS:
                out.append(("/v1/pulse", {"window": window, "at": at, **flt}))
    for metric in METRIC_IDS:
        for by in ("touchpoint", "channel", "segment"):
            for window in ("24h", "7d"):
                out.append((f"/v1/pulse/{metric}/breakdown", {"by": by, "window": window, "at": AT}))
        out.append((f"/v1/series/{metric}", {"step": "1d", "from": "2026-10-01T00:00:00Z", "to": AT_EDGE}))
        recent = {"step": "6h", "from": "2026-10-25T00:00:00Z", "to": AT, "channel": "web"}
        out.append((f"/v1/series/{metric}", recent))
    return out


def key(path: str, params: dict[str, str]) -> str:
    return path + "?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))


def dump(get: Callable[[str, dict[str, str]], Any]) -> dict[str, Any]:
    return {key(path, params): get(path, params) for path, params in queries()}


def load() -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(gzip.decompress(GOLDEN.read_bytes()))
    return data


def main() -> None:
    import tempfile

    from fastapi.testclient import TestClient

    from tests.golden.harness import client_over

    items = events()
    with tempfile.TemporaryDirectory() as tmp, client_over(tmp, items) as client:
        assert isinstance(client, TestClient)

        def get(path: str, params: dict[str, str]) -> Any:
            response = client.get(path, params=params)
            assert response.status_code == 200, (path, params, response.text)
            return response.json()

        answers = dump(get)
    payload = {"events_sha256": events_digest(items), "answers": answers}
    GOLDEN.write_bytes(gzip.compress(orjson.dumps(payload), mtime=0))
    print(f"wrote {GOLDEN} ({len(answers)} answers)")


if __name__ == "__main__":
    main()
