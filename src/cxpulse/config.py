"""Configuration from environment variables (prefix `CXPULSE_`), with the defaults documented in README."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cxpulse.domain.windows import WindowError, parse_duration, parse_window


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CXPULSE_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(8000, description="Port the HTTP server listens on.")
    data_dir: str = Field("./data", description="Embedded mode: where chDB keeps the store.")
    clickhouse_url: str | None = Field(
        None, description="ClickHouse server URL (http://user:pass@host:8123); unset = embedded chDB store."
    )
    database: str = Field("cxpulse", description="ClickHouse database name.")
    retention_days: int = Field(400, ge=1, le=3650, description="Events older than this are rejected.")
    max_body_bytes: int = Field(16 * 1024 * 1024, description="Largest POST /v1/events body (413 above).")
    fsync: bool = Field(False, description="fsync every insert (survive power loss, not only kill -9).")
    kafka_bootstrap: str | None = Field(None, description="Kafka bootstrap servers; unset = in-process bus.")
    topic: str = Field("cx.events", description="Kafka topic of touchpoint events.")
    dlq_topic: str = Field("cx.events.dlq", description="Kafka topic for undecodable / invalid messages.")
    publish_timeout_s: float = Field(
        10.0, description="Ingest answers 503 when the bus does not ack in time."
    )
    store_topic: str = Field(
        "cx.store",
        description="Kafka topic of worker output (event and fact rows) that the chDB-owning process loads; "
        "unused when the workers write to a ClickHouse server (CXPULSE_CLICKHOUSE_URL).",
    )
    app_id: str = Field(
        "cxpulse-aggregator",
        description="Faust app id: the workers' consumer group and the prefix of their table changelogs.",
    )
    loader_group: str = Field("cxpulse-loader", description="Consumer group of the cx.store loader.")
    run_group: str = Field("cxpulse-run", description="Consumer group of `cxpulse run --kafka`.")
    kafka_partitions: int = Field(
        4, ge=1, description="Partitions of the topics cxpulse creates when they are missing."
    )
    kafka_compression: str | None = Field(
        "gzip",
        description="Producer compression: gzip (built in), lz4 / zstd / snappy (need `cramjam`), or none.",
    )
    kafka_linger_ms: int = Field(5, ge=0, description="Producer linger: wait this long to fill batches.")
    batch_size: int = Field(1000, ge=1, description="Worker / loader: most messages handled per batch.")
    batch_within_s: float = Field(
        0.2, gt=0, description="Worker / loader: longest wait to fill a batch (bounds freshness)."
    )
    kafka_session_timeout_s: float = Field(
        10.0,
        ge=6,
        description="Consumer-group session timeout: how soon a crashed worker's partitions move to another.",
    )

    # --- access (SPEC §8) and limits; README "Security" ---------------------------------------------------
    keys_file: str | None = Field(
        None,
        description="API keys file (hashes only; `cxpulse keys create|list|revoke`), re-read when it "
        "changes. Default: <data dir>/keys. Distributed: ingest and API must read the same file.",
    )
    allow_open: bool = Field(
        False,
        description="Allow serving without keys on an address other than 127.0.0.1 (anyone who can reach it "
        "may ingest and read).",
    )
    ingest_rate: float = Field(
        50.0, ge=0, description="Per key: POST /v1/events requests per second (token bucket; 0 = no limit)."
    )
    ingest_burst: int = Field(100, ge=1, description="Per key: ingest requests at once (bucket size).")
    read_rate: float = Field(
        20.0, ge=0, description="Per key: read requests per second (token bucket; 0 = no limit)."
    )
    read_burst: int = Field(60, ge=1, description="Per key: read requests allowed at once (bucket size).")
    max_streams_per_key: int = Field(
        10, ge=1, description="Per key: concurrent GET /v1/stream connections (429 above)."
    )
    max_breakdown_groups: int = Field(
        1000, ge=1, description="Most groups one breakdown answers (400 above: add a filter or shorten it)."
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="A request that has not started its answer within this long gets a 503."
    )
    webhook_allow_private: bool = Field(
        False,
        description="Allow webhook / Slack targets on loopback, link-local and private addresses "
        "(refused by default: SSRF).",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text, or as JSON objects (one a line, with the request id)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least severe log line written; debug adds one line per HTTP request."
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: object) -> object:
        """`INFO` as well as `info` (the usual spelling of log levels in environments)."""
        return value.lower() if isinstance(value, str) else value

    @property
    def keys_path(self) -> Path:
        """Where the API keys live: `keys_file`, or `keys` in the data dir."""
        return Path(self.keys_file) if self.keys_file else Path(self.data_dir) / "keys"

    metrics_windows: str = Field(
        "1h,24h",
        description="Windows of the KPI gauges on /metrics (comma-separated; empty = no KPI gauges).",
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="`cxpulse aggregator` (no HTTP API): serve /metrics on this port; unset = off.",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="`cxpulse aggregator`: address its /metrics port binds to (not CXPULSE_HOST); it takes "
        "a read key once keys exist, and without keys binds only loopback unless CXPULSE_ALLOW_OPEN=true.",
    )

    @field_validator("metrics_windows")
    @classmethod
    def _windows(cls, text: str) -> str:
        """Fail at start on a bad window, not at the first gauge refresh."""
        for window in (w.strip() for w in text.split(",")):
            if window:
                try:
                    parse_window(window, name="CXPULSE_METRICS_WINDOWS")
                except WindowError as exc:
                    raise ValueError(str(exc)) from None
        return text

    rules_topic: str = Field(
        "cx.rules",
        description="Distributed: compacted Kafka topic (key rule id, tombstone on delete) through which the "
        "API hands the alert rules (secrets stripped) to the workers.",
    )
    alerts_topic: str = Field(
        "cx.alerts", description="Distributed: every notification is also published here (key: rule id)."
    )
    leader_topic: str = Field(
        "cx.alerts.leader",
        description="Distributed, ClickHouse server: one-partition topic whose consumer group elects the API "
        "process that evaluates metric rules and delivers notifications.",
    )
    leader_group: str = Field("cxpulse-alerts-leader", description="Consumer group of that election.")
    alert_interval: str = Field(
        "10s",
        description="Metric alert rules are evaluated this often (and within a second of new events).",
    )
    notify_retry_base_s: float = Field(
        5.0, gt=0, description="Notification retries: the first delay; each further one doubles (±20%)."
    )
    notify_max_attempts: int = Field(
        8, ge=1, description="Notification attempts per target before giving up."
    )
    notify_timeout_s: float = Field(10.0, gt=0, description="How long one notification attempt may take.")

    @field_validator("alert_interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        try:
            parse_duration(value, name="CXPULSE_ALERT_INTERVAL")
        except WindowError as exc:
            raise ValueError(str(exc)) from None
        return value.strip()

    @property
    def alert_interval_s(self) -> float:
        return parse_duration(self.alert_interval, name="CXPULSE_ALERT_INTERVAL") / 1000
