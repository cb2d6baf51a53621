"""`cxpulse` — the command line: `run` (embedded, one process), later `ingest`, `aggregator`, `api`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import uvicorn

from cxpulse.config import Settings
from cxpulse.store.base import StoreError


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    return Settings(**overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from services.aggregator.embedded import EmbeddedRuntime
    from services.api.app import create_app

    settings = _settings(args)
    try:
        runtime = EmbeddedRuntime.open(settings)
    except StoreError as exc:
        print(f"cxpulse: {exc}", file=sys.stderr)
        return 2
    app = create_app(runtime.store, settings, bus=runtime.bus)
    print(
        f"CX Pulse (embedded) on http://{settings.host}:{settings.port}  data: {settings.data_dir}",
        flush=True,
    )
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    finally:
        runtime.close()
    return 0


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
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
