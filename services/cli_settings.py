"""The settings a `cxpulse` subcommand runs with: the environment (`CXPULSE_*`, `.env`) overridden by the
options given on the command line — an option's `dest` is the setting's name, so one rule serves them all."""

from __future__ import annotations

import argparse

from cxpulse.config import Settings


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    return Settings(**overrides)
