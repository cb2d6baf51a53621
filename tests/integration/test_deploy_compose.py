"""deploy/docker-compose.yml is valid and describes the whole cluster.

Validated with the v1 python `docker-compose config`, which needs no Docker
engine (Debian: `apt-get install -y docker-compose`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
EXPECTED_SERVICES = {"kafka", "clickhouse", "ingest", "aggregator", "api"}

DOCKER_COMPOSE = shutil.which("docker-compose")

pytestmark = pytest.mark.skipif(
    DOCKER_COMPOSE is None,
    reason="docker-compose (v1) not on PATH; install it with `apt-get install -y docker-compose`",
)


def _config(*extra: str) -> subprocess.CompletedProcess[str]:
    assert DOCKER_COMPOSE is not None
    return subprocess.run(
        [
            DOCKER_COMPOSE,
            "--project-directory",
            str(COMPOSE_FILE.parent),
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(ENV_EXAMPLE),
            "config",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_compose_config_is_valid_and_names_all_services() -> None:
    proc = _config()
    assert proc.returncode == 0, f"docker-compose config failed:\n{proc.stderr}\n{proc.stdout}"
    rendered = proc.stdout
    assert "cxpulse" in rendered

    services = _config("--services")
    assert services.returncode == 0, services.stderr
    names = {line.strip() for line in services.stdout.splitlines() if line.strip()}
    assert names >= EXPECTED_SERVICES, f"missing services: {EXPECTED_SERVICES - names}"

    for name in EXPECTED_SERVICES:
        assert f"  {name}:\n" in rendered, f"service {name!r} not in rendered config"


def test_env_example_documents_every_variable_used() -> None:
    """Every ${VAR} in the compose file is listed (with a comment) in .env.example."""
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    lines = ENV_EXAMPLE.read_text().splitlines()
    documented: dict[str, bool] = {}
    for i, line in enumerate(lines):
        m = re.match(r"^([A-Z0-9_]+)=", line)
        if m:
            documented[m.group(1)] = i > 0 and lines[i - 1].startswith("#")
    assert used <= documented.keys(), f"undocumented: {sorted(used - documented.keys())}"
    assert all(documented[v] for v in used), [v for v in used if not documented[v]]
    assert {
        "CXPULSE_KAFKA_BOOTSTRAP",
        "CXPULSE_CLICKHOUSE_URL",
        "CXPULSE_HOST",
        "CXPULSE_PORT",
        "CXPULSE_TOPIC",
        "CXPULSE_AGGREGATOR_REPLICAS",
    } <= used
