"""`cxpulse demo`: stream realistic synthetic touchpoint events into a running service (`services.demo`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from cxpulse.demo.generator import TOUCHPOINTS
from cxpulse.domain.windows import WindowError, parse_window


def main(args: argparse.Namespace) -> int:
    from services.demo import DemoError, run_demo

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one log line per batch
    demo = run_demo(
        args.url,
        args.rate,
        args.customers,
        args.duration,
        args.incident,
        args.key,
        seed=args.seed,
        history_s=args.history,
    )
    try:
        asyncio.run(demo)
    except DemoError as exc:
        print(f"cxpulse demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass  # Ctrl-C is how an unlimited demo ends; the totals are already printed
    return 0


def _duration_s(text: str) -> float:
    try:
        return parse_window(text, name="duration") / 1000
    except WindowError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rate(text: str) -> float:
    rate = float(text)
    if not rate > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of events per second; got {text}")
    return rate


def _customers(text: str) -> int:
    size = int(text)
    if size < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2; got {text}")
    return size


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="stream realistic synthetic touchpoint events into a running service")
    demo.add_argument("--url", default="http://127.0.0.1:8000", help="the service (default %(default)s)")
    demo.add_argument("--rate", type=_rate, default=20.0, help="events per second (default %(default)g)")
    demo.add_argument(
        "--customers", type=_customers, default=500, help="population size (default %(default)s)"
    )
    demo.add_argument(
        "--duration", type=_duration_s, help="how long, e.g. 90s or 10m (default: until Ctrl-C)"
    )
    demo.add_argument(
        "--incident",
        metavar="TOUCHPOINT",
        choices=TOUCHPOINTS,
        help=f"make NPS and CSAT fall and FCR drop at one touchpoint ({', '.join(TOUCHPOINTS)})",
    )
    demo.add_argument(
        "--history",
        type=_duration_s,
        default=0.0,
        help="first backfill this much healthy history, e.g. 30d (so every window and cohort has data)",
    )
    demo.add_argument("--seed", type=int, help="random seed (same seed, same story)")
    demo.add_argument("--key", help="API key with the ingest scope, when the service requires keys")
    demo.set_defaults(func=main)
