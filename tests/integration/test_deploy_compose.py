"""deploy/docker-compose.yml is valid and describes the whole cluster; Prometheus scrapes the services and
the Grafana dashboard only asks for metrics the service exports.

Validated with the v1 python `docker-compose config`, which needs no Docker
engine (Debian: `apt-get install -y docker-compose`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cxpulse.domain.metrics import METRICS
from cxpulse.observability.metrics import ServiceMetrics

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "cxpulse.json"
EXPECTED_SERVICES = {"kafka", "clickhouse", "ingest", "aggregator", "api", "prometheus", "grafana"}

DOCKER_COMPOSE = shutil.which("docker-compose")

needs_compose = pytest.mark.skipif(
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


@needs_compose
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


@needs_compose
def test_prometheus_and_grafana_mount_files_that_exist() -> None:
    proc = _config()
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    mounts = {
        name: [v.split(":")[:2] for v in services[name]["volumes"] if v.startswith("/")]
        for name in ("prometheus", "grafana")
    }
    assert [target for _, target in mounts["prometheus"]] == ["/etc/prometheus/prometheus.yml"]
    assert {"/etc/grafana/provisioning", "/etc/grafana/dashboards"} == {t for _, t in mounts["grafana"]}
    for source, _ in mounts["prometheus"] + mounts["grafana"]:
        assert Path(source).exists(), source
    for name in ("prometheus", "grafana"):
        image = services[name]["image"]
        assert re.fullmatch(r"(prom/prometheus|grafana/grafana):v?[0-9]+\.[0-9]+\.[0-9]+", image), image


def test_prometheus_scrapes_the_api_ingest_and_aggregator_services() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    compose = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    targets = {
        (sd["names"][0], sd["port"])
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for sd in job.get("dns_sd_configs", [])
    }
    assert targets == {("api", 8000), ("ingest", 8001), ("aggregator", 9100)}
    assert {"api", "ingest", "aggregator"} <= compose.keys()
    assert compose["aggregator"]["environment"]["CXPULSE_METRICS_PORT"].endswith(":-9100}")


def _exported_names() -> set[str]:
    """Every sample name the service exposes once each instrument has seen data."""
    metrics = ServiceMetrics()
    full = {"value": 1.0, "n": 3, "ci": [0.5, 1.5]}
    metrics.kpis.update({"1h": {"readings": dict.fromkeys(METRICS, full)}})
    metrics.count_ingest(1, 1, 1)
    metrics.events_dlq.inc()
    metrics.notifications.labels(result="sent").inc()
    metrics.ingest_latency.observe(0.01)
    metrics.store_insert_latency.observe(0.01)
    text = generate_latest(metrics.registry).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for top in dashboard["panels"] for p in (top, *top.get("panels", []))]


def test_the_grafana_dashboard_uses_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]
    used = {name for e in exprs for name in re.findall(r"\bcxpulse_[a-z0-9_]+", e)}
    assert used <= _exported_names(), f"not exported: {sorted(used - _exported_names())}"
    assert {
        "cxpulse_kpi",
        "cxpulse_kpi_ci_low",
        "cxpulse_kpi_ci_high",
        "cxpulse_kpi_samples",
        "cxpulse_events_accepted_total",
        "cxpulse_events_rejected_total",
        "cxpulse_ingest_request_duration_seconds_bucket",
        "cxpulse_processing_lag_seconds",
        "cxpulse_alerts",
        "cxpulse_notifications_total",
    } <= used
    kpis = {m for e in exprs for m in re.findall(r'metric="([a-z_]+)"', e)}
    assert {"nps", "csat", "ces", "fcr"} <= kpis <= METRICS.keys()


def test_grafana_provisioning_points_the_dashboard_at_the_compose_prometheus() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "cxpulse.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {p["datasource"]["uid"] for p in _panels(dashboard) if "datasource" in p}
    uids |= {t["datasource"]["uid"] for p in _panels(dashboard) for t in p.get("targets", [])}
    assert uids == {source["uid"]}


CXPULSE_SERVICES = ("ingest", "api", "aggregator")


@needs_compose
def test_ingest_api_and_aggregators_share_one_keys_volume() -> None:
    """SPEC §8 distributed: ingest and the API (and the workers' metrics port) read the same keys file."""
    proc = _config()
    assert proc.returncode == 0, proc.stderr
    rendered = yaml.safe_load(proc.stdout)
    services = rendered["services"]
    for name in CXPULSE_SERVICES:
        keys_file = Path(services[name]["environment"]["CXPULSE_KEYS_FILE"])
        mounts = {v.split(":")[1]: v.split(":")[0] for v in services[name]["volumes"]}
        assert mounts.get(str(keys_file.parent)) == "cxpulse-keys", (name, mounts)
    assert "cxpulse-keys" in rendered["volumes"]
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "chown -R cxpulse /var/lib/cxpulse" in dockerfile  # a new volume is writable by the service user


@needs_compose
def test_the_services_settings_parse_and_their_public_bind_needs_a_key_or_allow_open(tmp_path: Path) -> None:
    """The rendered environment of each CX Pulse service is valid `Settings` (every variable a known field),
    and its 0.0.0.0 bind starts only with a key in the keys file or CXPULSE_ALLOW_OPEN=true."""
    from cxpulse.config import Settings
    from cxpulse.http.auth import Access, OpenBindRefused, check_bind
    from cxpulse.http.keys import KeyFile

    proc = _config()
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    keys_file = tmp_path / "keys"
    for name in CXPULSE_SERVICES:
        env = {k.removeprefix("CXPULSE_").lower(): v for k, v in services[name]["environment"].items()}
        assert env.keys() <= Settings.model_fields.keys(), sorted(env.keys() - Settings.model_fields.keys())
        settings = Settings(**{**env, "keys_file": str(keys_file)})
        host = settings.metrics_host if name == "aggregator" else settings.host
        assert host == "0.0.0.0" and settings.allow_open is False
        with pytest.raises(OpenBindRefused):
            check_bind(host, Access(settings), settings.allow_open)
        opened = settings.model_copy(update={"allow_open": True})
        assert check_bind(host, Access(opened), opened.allow_open).startswith("OPEN on 0.0.0.0")
    KeyFile(keys_file).create("admin", frozenset({"ingest", "read", "admin"}))
    for name in CXPULSE_SERVICES:
        env = {k.removeprefix("CXPULSE_").lower(): v for k, v in services[name]["environment"].items()}
        settings = Settings(**{**env, "keys_file": str(keys_file)})
        host = settings.metrics_host if name == "aggregator" else settings.host
        assert check_bind(host, Access(settings), settings.allow_open).startswith("API keys required")
