"""`cxpulse` — the command line.

`run` is the embedded mode (one process; `--kafka` puts Kafka between ingest and processing). The
distributed shape is `ingest` (HTTP → Kafka), `aggregator` × N (Faust workers) and `api` (reads and alerts;
with Kafka it publishes the alert rules to the workers, and without a ClickHouse server it also loads the
workers' output into its chDB store). `demo` (`services/demo_cli.py`) and `rules` (`services/rules_cli.py`)
are clients of a running service; `keys` (`services/keys_cli.py`) edits the keys file the services read.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from cxpulse.config import Settings
from cxpulse.store.base import StoreError
from services import demo_cli, keys_cli, rules_cli
from services.cli_settings import settings_from_args

if TYPE_CHECKING:
    from cxpulse.http.auth import Access
    from services.embedded import EmbeddedRuntime


def _access(settings: Settings) -> Access | None:
    """The service's keys and limits, or None (after saying why on stderr) when it must not start: no keys
    and an address other than loopback, without CXPULSE_ALLOW_OPEN=true (SPEC §8)."""
    from cxpulse.http.auth import Access, OpenBindRefused, check_bind
    from cxpulse.http.keys import KeyFileError

    try:
        access = Access(settings)
        print(f"access: {check_bind(settings.host, access, settings.allow_open)}", flush=True)
    except (OpenBindRefused, KeyFileError) as exc:
        print(f"cxpulse: {exc}", file=sys.stderr)
        return None
    return access


def cmd_run(args: argparse.Namespace) -> int:
    from services.embedded import EmbeddedRuntime
    from services.serving import exit_cleanly_on_signals, serve

    exit_cleanly_on_signals()
    settings = settings_from_args(args)
    access = _access(settings)
    if access is None:
        return 2
    try:
        runtime = EmbeddedRuntime.open(settings, roll_up_later=True)
    except StoreError as exc:
        print(f"cxpulse: {exc}", file=sys.stderr)
        return 2
    if settings.kafka_bootstrap:
        return _run_with_kafka(runtime, settings, access)
    app = runtime.app(settings, access=access)
    print(
        f"CX Pulse (embedded) on http://{settings.host}:{settings.port}  data: {settings.data_dir}",
        flush=True,
    )
    try:
        return asyncio.run(serve(app, settings.host, settings.port, loops=runtime.loops()))
    finally:
        runtime.close()


def _run_with_kafka(runtime: EmbeddedRuntime, settings: Settings, access: Access) -> int:
    """`run --kafka`: ingest publishes to Kafka; an in-process consumer feeds the embedded processor."""
    from cxpulse.bus.kafka import KafkaBus, ensure_topics
    from services.aggregator.kafka_embedded import KafkaFeeder
    from services.serving import serve

    assert settings.kafka_bootstrap
    bootstrap = settings.kafka_bootstrap
    bus = KafkaBus(settings)
    app = runtime.app(settings, bus=bus, access=access)  # the processor's commits drive the stream and gauges
    feeder = KafkaFeeder(settings, runtime.processor, on_dead=runtime.metrics.events_dlq.inc)

    async def topics() -> None:
        await ensure_topics(bootstrap, [settings.topic, settings.dlq_topic], settings.kafka_partitions)

    print(
        f"CX Pulse (embedded, Kafka bus {bootstrap}) on http://{settings.host}:{settings.port}  "
        f"data: {settings.data_dir}",
        flush=True,
    )
    try:
        return asyncio.run(
            serve(
                app,
                settings.host,
                settings.port,
                loops=[feeder.run, *runtime.loops()],
                startup=[topics, bus.start],
                shutdown=[bus.stop],
            )
        )
    finally:
        runtime.close()


def cmd_ingest(args: argparse.Namespace) -> int:
    from cxpulse.bus.kafka import KafkaBus
    from services.ingest.app import create_ingest_app
    from services.serving import exit_cleanly_on_signals, serve

    exit_cleanly_on_signals()
    settings = settings_from_args(args)
    if not settings.kafka_bootstrap:
        print("cxpulse ingest: set --kafka HOST:PORT or CXPULSE_KAFKA_BOOTSTRAP", file=sys.stderr)
        return 2
    access = _access(settings)
    if access is None:
        return 2
    bus = KafkaBus(settings)
    app = create_ingest_app(bus, settings, access)
    print(
        f"CX Pulse ingest on http://{settings.host}:{settings.port} → Kafka {settings.kafka_bootstrap} "
        f"topic {settings.topic}",
        flush=True,
    )
    return asyncio.run(serve(app, settings.host, settings.port, startup=[bus.start], shutdown=[bus.stop]))


def cmd_aggregator(args: argparse.Namespace) -> int:
    from services.aggregator.faust_app import run_worker

    settings = settings_from_args(args)
    if not settings.kafka_bootstrap:
        print("cxpulse aggregator: set --kafka HOST:PORT or CXPULSE_KAFKA_BOOTSTRAP", file=sys.stderr)
        return 2
    from cxpulse.http.auth import OpenBindRefused
    from cxpulse.http.keys import KeyFileError

    try:
        return run_worker(settings)
    except (OpenBindRefused, KeyFileError) as exc:  # its /metrics port would be open on a public address
        print(f"cxpulse aggregator: {exc}", file=sys.stderr)
        return 2


def cmd_api(args: argparse.Namespace) -> int:
    """The read and alert API. With Kafka: it publishes the alert rules to the workers, evaluates and
    delivers (alone with chDB, as the elected leader with a ClickHouse server — see docs/distributed.md),
    and with chDB also loads the workers' output (cx.store) into its store."""
    from cxpulse.alerts.service import AlertService
    from cxpulse.bus.kafka import ensure_topics
    from cxpulse.live.feed import ChangeFeed
    from cxpulse.live.poll import poll_changes
    from cxpulse.observability.metrics import ServiceMetrics, parse_metrics_windows
    from cxpulse.reading import PulseReader
    from cxpulse.store import migrate, open_store
    from cxpulse.store.changes import write_marker
    from cxpulse.store.instrumented import InstrumentedStore
    from services.aggregator.loader import Loader
    from services.api.app import create_app
    from services.api.distributed import DistributedAlerting
    from services.serving import Hook, Loop, exit_cleanly_on_signals, serve

    exit_cleanly_on_signals()
    settings = settings_from_args(args)
    access = _access(settings)
    if access is None:
        return 2
    try:
        store = open_store(settings)
        migrate(store)
    except StoreError as exc:
        print(f"cxpulse: {exc}", file=sys.stderr)
        return 2
    feed = ChangeFeed()
    loops: list[Loop] = []
    metrics = ServiceMetrics(parse_metrics_windows(settings.metrics_windows))
    startup: list[Hook] = []
    shutdown: list[Hook] = []
    bootstrap = settings.kafka_bootstrap
    loading = ""
    if bootstrap:
        alerting = DistributedAlerting(settings, store, feed, elect=bool(settings.clickhouse_url))
        alerts = alerting.service
        if not settings.clickhouse_url:

            async def topics() -> None:
                await ensure_topics(bootstrap, [settings.store_topic], settings.kafka_partitions)

            startup.append(topics)
            writes = InstrumentedStore(store, on_insert=metrics.observe_insert)
            loader = Loader(
                settings,
                writes,
                outbox=alerts.outbox,
                after_write=alerting.after_write,
                on_commit=feed.notify,
            )
            loops.append(loader.run)
            loading = f", loading {settings.store_topic} from {bootstrap}"
        startup.append(alerting.start)
        shutdown.append(alerting.stop)
        loops += alerting.loops()
    else:  # no workers to feed: one process evaluates and delivers
        alerts = AlertService(store, PulseReader(store), settings, feed=feed)
        loops += alerts.loops()
    if settings.clickhouse_url:  # the workers write straight to the server: watch it for their writes
        loops.append(partial(poll_changes, partial(write_marker, store), feed))
        loading = ", watching it for writes"
    app = create_app(store, settings, feed=feed, metrics=metrics, alerts=alerts, access=access)
    where = settings.clickhouse_url or f"chDB {settings.data_dir}"
    print(f"CX Pulse API on http://{settings.host}:{settings.port}  store: {where}{loading}", flush=True)
    try:
        return asyncio.run(serve(app, settings.host, settings.port, loops, startup, shutdown))
    finally:
        store.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxpulse", description="CX Pulse — a live pulse on customer experience"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="embedded mode: ingest + processing + API in one process (chDB store)")
    run.add_argument("--host", help="bind address (default 127.0.0.1, env CXPULSE_HOST)")
    run.add_argument("--port", type=int, help="port (default 8000, env CXPULSE_PORT)")
    run.add_argument(
        "--data-dir", dest="data_dir", help="store directory (default ./data, env CXPULSE_DATA_DIR)"
    )
    _kafka_option(run, "use Kafka as the bus (ingest → Kafka → the embedded processor)")
    run.set_defaults(func=cmd_run)

    ingest = sub.add_parser("ingest", help="distributed: POST /v1/events → Kafka (acks=all)")
    _http_options(ingest)
    _kafka_option(ingest, "Kafka bootstrap servers (env CXPULSE_KAFKA_BOOTSTRAP)")
    ingest.set_defaults(func=cmd_ingest)

    aggregator = sub.add_parser("aggregator", help="distributed: a Faust worker (run several)")
    _kafka_option(aggregator, "Kafka bootstrap servers (env CXPULSE_KAFKA_BOOTSTRAP)")
    aggregator.add_argument(
        "--metrics-port",
        dest="metrics_port",
        type=int,
        help="serve Prometheus /metrics (DLQ, store inserts, lag) on this port (env CXPULSE_METRICS_PORT)",
    )
    aggregator.add_argument(
        "--metrics-host",
        dest="metrics_host",
        help="address of the metrics port (default 127.0.0.1, env CXPULSE_METRICS_HOST)",
    )
    aggregator.set_defaults(func=cmd_aggregator)

    api = sub.add_parser(
        "api", help="distributed: the read API; with Kafka and no ClickHouse server it also loads cx.store"
    )
    _http_options(api)
    api.add_argument(
        "--data-dir", dest="data_dir", help="chDB store directory (default ./data, env CXPULSE_DATA_DIR)"
    )
    _kafka_option(api, "load the workers' output (cx.store) from this Kafka into the chDB store")
    api.set_defaults(func=cmd_api)
    demo_cli.add_parser(sub)
    keys_cli.add_parser(sub)
    rules_cli.add_parser(sub)
    return parser


def _http_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (default 127.0.0.1, env CXPULSE_HOST)")
    parser.add_argument("--port", type=int, help="port (default 8000, env CXPULSE_PORT)")


def _kafka_option(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--kafka", dest="kafka_bootstrap", metavar="HOST:PORT", help=text)


def main(argv: Sequence[str] | None = None) -> int:
    from pydantic import ValidationError

    from cxpulse.observability.logs import configure_logging

    try:
        env = Settings()
    except ValidationError as exc:
        print(f"cxpulse: invalid setting: {exc}", file=sys.stderr)
        return 2
    configure_logging(env.log_format, getattr(logging, env.log_level.upper()))
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
