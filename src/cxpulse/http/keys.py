"""API keys (SPEC §8): created once, shown once, kept only as hashes in the keys file.

A key looks like `cxp_3f9a1c2e.<secret>`: the part before the dot is a lookup prefix (stored in clear),
the secret is 256 random bits. The file holds one JSON object per line — name, prefix, SHA-256 of the whole
key, scopes, created / revoked times — never the key. Keys are high-entropy random strings, so a fast hash
is enough (as djangorestframework-api-key does): nobody can brute-force 256 bits, slow hashing only guards
low-entropy passwords.

Writers (`cxpulse keys …`) take a lock file and replace the file atomically; readers (`KeyRing`) re-read it
when its stat signature changes, so a created or revoked key is in effect at the next request, no restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("cxpulse.keys")

SCOPES = ("ingest", "read", "admin")
PREFIX_TAG = "cxp_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEY = re.compile(r"^(cxp_[0-9a-f]{8})\.([A-Za-z0-9_-]{43})$")
#: Compared against when the prefix is unknown, so a miss costs what a wrong secret costs.
_DUMMY_DIGEST = hashlib.sha256(b"cxpulse: no such key").hexdigest()


class KeyFileError(ValueError):
    """A keys-file operation that cannot be done (bad name or scope, duplicate, unreadable file)."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    name: str
    prefix: str
    digest: str
    scopes: frozenset[str]
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "prefix": self.prefix,
            "sha256": self.digest,
            "scopes": sorted(self.scopes),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyRecord:
        return cls(
            name=str(data["name"]),
            prefix=str(data["prefix"]),
            digest=str(data["sha256"]),
            scopes=frozenset(str(s) for s in data["scopes"]),
            created_at=str(data["created_at"]),
            revoked_at=None if data.get("revoked_at") is None else str(data["revoked_at"]),
        )


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(text: str) -> frozenset[str]:
    """`ingest,read` → the scope set; an unknown or empty list is an error that lists the known ones."""
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown or not scopes:
        what = f"unknown scope(s) {', '.join(unknown)}" if unknown else "no scope given"
        raise KeyFileError(f"{what}; scopes are {', '.join(SCOPES)} (comma-separated)")
    return scopes


def read_records(path: Path) -> list[KeyRecord]:
    """Every record in the file (none when it does not exist)."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return []
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(KeyRecord.from_json(orjson.loads(line)))
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise KeyFileError(f"{path}: line {lineno} is not a key record ({exc})") from None
    return records


class KeyFile:
    """The writer side: create, list, revoke (the `cxpulse keys` commands)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self) -> list[KeyRecord]:
        return read_records(self.path)

    def create(self, name: str, scopes: frozenset[str]) -> str:
        """Add a key and return it — the only time it exists in clear."""
        if not _NAME.match(name):
            raise KeyFileError(f"name must be 1–64 characters of A-Z, a-z, 0-9, '_', '.', '-'; got {name!r}")
        if not scopes or not scopes <= set(SCOPES):
            raise KeyFileError(f"scopes must be a non-empty subset of {', '.join(SCOPES)}")
        with self._locked():
            records = self.records()
            if any(r.name == name and r.active for r in records):
                raise KeyFileError(f"a key named {name!r} exists; revoke it first or pick another name")
            taken = {r.prefix for r in records}
            while True:
                prefix = PREFIX_TAG + secrets.token_hex(4)
                if prefix not in taken:
                    break
            key = f"{prefix}.{secrets.token_urlsafe(32)}"
            records.append(KeyRecord(name, prefix, digest(key), scopes, _now()))
            self._write(records)
        return key

    def revoke(self, name: str) -> int:
        """Revoke the active key(s) called `name`; returns how many (0: no such active key)."""
        with self._locked():
            records = self.records()
            now = _now()
            out = [
                KeyRecord(r.name, r.prefix, r.digest, r.scopes, r.created_at, now)
                if r.name == name and r.active
                else r
                for r in records
            ]
            revoked = sum(1 for old, new in zip(records, out, strict=True) if old is not new)
            if revoked:
                self._write(out)
        return revoked

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time (two `keys create` at once must not lose one of them)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, records: Sequence[KeyRecord]) -> None:
        """Replace the file atomically (readers see the old or the new file, never half of one), 0600."""
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(b"".join(orjson.dumps(r.to_json()) + b"\n" for r in records))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class KeyRing:
    """The reader side: which key a token is, re-reading the file whenever it changes.

    `enforced` turns on the first time the file holds any record (even a revoked one) and never turns off
    in this process: revoking the last key, or deleting the file, locks the service rather than opening it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._signature: tuple[int, int, int] | None = None
        self._by_prefix: dict[str, KeyRecord] = {}
        self.enforced = False
        self.refresh()

    def refresh(self) -> None:
        """Re-read the file if its (inode, size, mtime) changed since the last read."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._signature, self._by_prefix = None, {}
            return
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        if signature == self._signature:
            return
        self._signature = signature
        try:
            records = read_records(self.path)
        except (KeyFileError, OSError) as exc:  # a hand-edited file: keep the last good set, say so once
            log.error("keys file not re-read, keeping the previous keys: %s", exc)
            self.enforced = True
            return
        self._by_prefix = {r.prefix: r for r in records}
        self.enforced = self.enforced or bool(records)

    def verify(self, token: str) -> KeyRecord | None:
        """The active key `token` is, or None. Unknown prefix, wrong secret and revoked key take the same
        path (a constant-time digest comparison), so the answer does not tell whether a key exists."""
        self.refresh()
        match = _KEY.match(token)
        record = self._by_prefix.get(match.group(1)) if match else None
        expected = record.digest if record is not None else _DUMMY_DIGEST
        ok = hmac.compare_digest(digest(token), expected)
        return record if ok and record is not None and record.active else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
