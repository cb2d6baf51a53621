"""The arrows point inward: the pure domain imports no infrastructure, so Faust agents and the embedded
runner can call exactly the same code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[2] / "src" / "cxpulse" / "domain"
FORBIDDEN = (
    "faust",
    "aiokafka",
    "kafka",
    "chdb",
    "clickhouse_connect",
    "fastapi",
    "starlette",
    "uvicorn",
    "cxpulse.store",
    "cxpulse.bus",
    "cxpulse.pipeline",
    "cxpulse.http",
    "services",
)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", sorted(DOMAIN.glob("*.py")), ids=lambda p: p.name)
def test_domain_module_imports_no_infrastructure(module: Path) -> None:
    bad = {m for m in imported_modules(module) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{module.name} imports {sorted(bad)}"


def test_the_domain_package_is_not_empty() -> None:
    assert len(list(DOMAIN.glob("*.py"))) >= 6
