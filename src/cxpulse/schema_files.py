"""Where `schemas/` is: the source tree's top level, or `share/cxpulse/schemas` of an installed wheel."""

from __future__ import annotations

import sys
from pathlib import Path

_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "schemas",
    Path(sys.prefix) / "share" / "cxpulse" / "schemas",
)


def schema_file(*parts: str) -> Path:
    """Path of a file under `schemas/`; raises FileNotFoundError naming the places looked at."""
    for root in _CANDIDATES:
        path = root.joinpath(*parts)
        if path.exists():
            return path
    raise FileNotFoundError(f"{'/'.join(parts)} not found under {' or '.join(map(str, _CANDIDATES))}")
