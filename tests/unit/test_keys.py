"""The keys file and the key ring: hashes only, lookup by prefix, revocation, re-reading, open vs locked."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from cxpulse.config import Settings
from cxpulse.http.auth import Access, OpenBindRefused, check_bind
from cxpulse.http.keys import KeyFile, KeyFileError, KeyRing, digest, parse_scopes


def test_keys_are_random_prefixed_and_stored_as_hashes(tmp_path: Path) -> None:
    keys = KeyFile(tmp_path / "keys")
    made = [keys.create(f"k{i}", frozenset({"read"})) for i in range(20)]
    assert len(set(made)) == 20
    for key in made:
        prefix, secret = key.split(".")
        assert re.fullmatch(r"cxp_[0-9a-f]{8}", prefix)
        assert len(secret) == 43  # 32 random bytes, base64url: 256 bits
    text = (tmp_path / "keys").read_text()
    for key in made:
        assert key.split(".")[1] not in text and digest(key) in text


def test_ring_verifies_by_prefix_and_refuses_the_rest(tmp_path: Path) -> None:
    keys = KeyFile(tmp_path / "keys")
    key = keys.create("a", frozenset({"read", "ingest"}))
    ring = KeyRing(keys.path)
    record = ring.verify(key)
    assert record is not None and record.name == "a" and record.scopes == {"read", "ingest"}
    prefix, secret = key.split(".")
    for token in [
        "",
        "x",
        key + "x",
        f"{prefix}.{secret[::-1]}",
        f"cxp_ffffffff.{secret}",
        f"{prefix}{secret}",
    ]:
        assert ring.verify(token) is None, token


def test_revoking_and_creating_take_effect_at_the_next_lookup(tmp_path: Path) -> None:
    keys = KeyFile(tmp_path / "keys")
    key = keys.create("a", frozenset({"read"}))
    ring = KeyRing(keys.path)
    assert ring.verify(key) is not None
    assert keys.revoke("a") == 1
    assert ring.verify(key) is None
    again = keys.create("a", frozenset({"read"}))  # the name is free again once revoked
    assert ring.verify(again) is not None and ring.verify(key) is None
    assert keys.revoke("nope") == 0


def test_no_keys_is_open_and_the_first_key_locks_it_for_good(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    ring = KeyRing(path)
    assert not ring.enforced
    keys = KeyFile(path)
    keys.create("a", frozenset({"read"}))
    ring.refresh()
    assert ring.enforced
    keys.revoke("a")  # revoking the last key locks the service, it does not open it
    ring.refresh()
    assert ring.enforced
    path.unlink()  # nor does deleting the file
    ring.refresh()
    assert ring.enforced
    assert KeyRing(path).enforced is False  # a process started without keys is open (local only)


def test_a_broken_file_keeps_the_previous_keys(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    keys = KeyFile(tmp_path / "keys")
    key = keys.create("a", frozenset({"read"}))
    ring = KeyRing(keys.path)
    with open(keys.path, "a") as f:
        f.write("{not json\n")
    assert ring.verify(key) is not None
    assert "keys file not re-read" in caplog.text
    assert key not in caplog.text and key.split(".")[1] not in caplog.text


def test_names_and_scopes_are_checked(tmp_path: Path) -> None:
    keys = KeyFile(tmp_path / "keys")
    with pytest.raises(KeyFileError, match="name"):
        keys.create("has space", frozenset({"read"}))
    with pytest.raises(KeyFileError, match="scopes are ingest, read, admin"):
        parse_scopes("read,write")
    with pytest.raises(KeyFileError, match="no scope"):
        parse_scopes(" , ")
    assert parse_scopes("ingest, read") == {"ingest", "read"}
    keys.create("a", frozenset({"read"}))
    with pytest.raises(KeyFileError, match="exists"):
        keys.create("a", frozenset({"ingest"}))
    assert not list(tmp_path.glob(".keys.*")), "no temp file left behind"
    assert os.stat(keys.path).st_mode & 0o077 == 0


def test_open_mode_binds_loopback_only(tmp_path: Path) -> None:
    settings = Settings(keys_file=str(tmp_path / "keys"))
    access = Access(settings)
    assert "OPEN" in check_bind("127.0.0.1", access, allow_open=False)
    assert "OPEN" in check_bind("::1", access, allow_open=False)
    assert "OPEN" in check_bind("localhost", access, allow_open=False)
    for host in ("0.0.0.0", "::", "10.1.2.3", "example.org"):
        with pytest.raises(OpenBindRefused, match="CXPULSE_ALLOW_OPEN=true"):
            check_bind(host, access, allow_open=False)
    assert "CXPULSE_ALLOW_OPEN" in check_bind("0.0.0.0", access, allow_open=True)
    KeyFile(settings.keys_path).create("a", frozenset({"read"}))
    assert "keys required" in check_bind("0.0.0.0", access, allow_open=False)
