"""`cxpulse keys create | list | revoke`: edit the keys file the services re-read (SPEC §8).

It edits the file, not a running service: the services re-read it, so a key created or revoked here takes
effect in every service reading the file within seconds, without a restart. Only a key's hash is stored,
which is why `create` prints the key, alone on stdout, this once.
"""

from __future__ import annotations

import argparse
import sys

from services.cli_settings import settings_from_args


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="API keys: create (printed once), list, revoke")
    keys.add_argument(
        "--keys-file", dest="keys_file", help="keys file (default <data dir>/keys, env CXPULSE_KEYS_FILE)"
    )
    keys.add_argument("--data-dir", dest="data_dir", help="data dir (default ./data, env CXPULSE_DATA_DIR)")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="add a key and print it, alone, on stdout (the only time)")
    create.add_argument("--name", required=True, help="a name to list and revoke it by")
    create.add_argument("--scopes", required=True, help="comma-separated: ingest, read, admin")
    actions.add_parser("list", help="name, prefix, scopes, created, revoked (never the key)")
    revoke = actions.add_parser("revoke", help="revoke a key: refused within seconds, no restart")
    revoke.add_argument("name")
    keys.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from cxpulse.http.keys import KeyFile, KeyFileError, parse_scopes

    settings = settings_from_args(args)
    keys = KeyFile(settings.keys_path)
    try:
        if args.action == "create":
            key = keys.create(args.name, parse_scopes(args.scopes))
            print(key, flush=True)  # alone on stdout: the only time it is shown
            print(f"created key {args.name!r} ({args.scopes}) in {keys.path}; store it now", file=sys.stderr)
        elif args.action == "list":
            for r in keys.records():
                state = f"revoked {r.revoked_at}" if r.revoked_at else "active"
                print(f"{r.name}\t{r.prefix}\t{','.join(sorted(r.scopes))}\tcreated {r.created_at}\t{state}")
        elif not keys.revoke(args.name):
            print(f"cxpulse keys: no active key named {args.name!r} in {keys.path}", file=sys.stderr)
            return 1
        else:
            print(f"revoked {args.name!r}; services reading {keys.path} refuse it now", file=sys.stderr)
    except (KeyFileError, OSError) as exc:
        print(f"cxpulse keys: {exc}", file=sys.stderr)
        return 2
    return 0
