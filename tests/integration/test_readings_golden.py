"""Readings never change by accident: every read endpoint over a fixed event set equals the stored answers.

The golden answers were dumped before the issue-6 restructuring (`python -m tests.golden.readings_dump`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.golden.harness import client_over
from tests.golden.readings_dump import events, events_digest, key, load, queries


def approx_equal(a: Any, b: Any) -> bool:
    """Exact structure; floats equal to 1e-9 relative (the engine may sum in another order)."""
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(approx_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(approx_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_every_answer_equals_the_golden_dump(chdb_dir: Path) -> None:
    golden = load()
    items = events()
    assert events_digest(items) == golden["events_sha256"], "the fixed event set itself changed"
    expected = golden["answers"]
    assert len(expected) == len(queries())
    with client_over(str(chdb_dir), items) as client:
        differing = []
        for path, params in queries():
            response = client.get(path, params=params)
            assert response.status_code == 200, (path, params, response.text)
            if not approx_equal(response.json(), expected[key(path, params)]):
                differing.append(key(path, params))
    assert not differing, f"{len(differing)} answers changed, e.g. {differing[:3]}"
