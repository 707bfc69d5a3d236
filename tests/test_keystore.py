"""Key files at rest: passphrase protection, the cost floor and cap, passphrase length, file modes."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import nacl.pwhash.argon2id as argon2id
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.errors import KeyStoreError
from bus.inbox import InboxRing
from bus.keys import Identity
from bus.keystore import (
    DEFAULT_KDF,
    FAST_KDF,
    FLOOR_KDF,
    MIN_PASSPHRASE_CHARS,
    KdfParams,
    check_cost,
    decode_identity,
    encode_identity,
    is_protected,
    load_identity,
    save_identity,
)
from bus.testing import DeterministicRng
from tests.helpers import identity

PASS = b"correct horse battery staple"


def rotated_identity() -> Identity:
    old, new = identity("TH-MUK"), identity("TH-MUK", seed="second")
    return Identity("TH-MUK", new.signing, new.box, old_box=(old.box,))


def test_protected_file_round_trips_with_the_right_passphrase(tmp_path: Path) -> None:
    me = rotated_identity()
    path = tmp_path / "keys" / "identity.json"
    save_identity(path, me, PASS, kdf=FAST_KDF, min_kdf=FAST_KDF)
    assert load_identity(path, PASS, min_kdf=FAST_KDF) == me
    text = path.read_text()
    assert me.signing.seed.hex() not in text and me.box.secret.hex() not in text
    assert is_protected(path.read_bytes())


def test_wrong_passphrase_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "identity.json"
    save_identity(path, identity("TH-MUK"), PASS, kdf=FAST_KDF, min_kdf=FAST_KDF)
    with pytest.raises(KeyStoreError, match="wrong passphrase") as info:
        load_identity(path, b"Tr0ub4dor&3", min_kdf=FAST_KDF)
    assert str(path) in info.value.message and "Tr0ub4dor" not in info.value.message


def test_protected_file_without_a_passphrase_says_how_to_give_one() -> None:
    data = encode_identity(identity("TH-MUK"), PASS, kdf=FAST_KDF, min_kdf=FAST_KDF)
    with pytest.raises(KeyStoreError, match="BLO_PASSPHRASE"):
        decode_identity(data, None, min_kdf=FAST_KDF)


def test_unprotected_file_is_explicit_and_round_trips() -> None:
    me = rotated_identity()
    data = encode_identity(me, None)
    assert json.loads(data)["protection"] == "none"
    assert decode_identity(data, None) == me
    assert not is_protected(data)


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(KeyStoreError, match="empty passphrase"):
        encode_identity(identity("TH-MUK"), b"", kdf=FAST_KDF, min_kdf=FAST_KDF)


@pytest.mark.parametrize(("ops", "mem"), [(3, 64 << 30), (10**6, argon2id.MEMLIMIT_MIN)])
def test_hostile_kdf_parameters_are_refused_before_any_work(ops: int, mem: int) -> None:
    doc = json.loads(encode_identity(identity("TH-MUK"), PASS, kdf=FAST_KDF, min_kdf=FAST_KDF))
    doc["kdf"].update(opslimit=ops, memlimit=mem)
    started = time.monotonic()
    with pytest.raises(KeyStoreError, match="at most"):
        decode_identity(json.dumps(doc).encode(), PASS, min_kdf=FAST_KDF)
    assert time.monotonic() - started < 1.0


def test_editing_the_clear_public_keys_breaks_the_file() -> None:
    other = identity("TH-NKP")
    doc = json.loads(encode_identity(identity("TH-MUK"), PASS, kdf=FAST_KDF, min_kdf=FAST_KDF))
    doc["sign_public"] = other.signing.public.hex()
    with pytest.raises(KeyStoreError):
        decode_identity(json.dumps(doc).encode(), PASS, min_kdf=FAST_KDF)
    plain = json.loads(encode_identity(identity("TH-MUK"), None))
    plain["box_public"] = other.box.public.hex()
    with pytest.raises(KeyStoreError, match="do not match"):
        decode_identity(json.dumps(plain).encode(), None)


def test_key_file_is_0600_in_a_0700_folder_and_never_overwritten_by_default(tmp_path: Path) -> None:
    path = tmp_path / "home" / "keys" / "identity.json"
    save_identity(path, identity("TH-MUK"), None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with pytest.raises(KeyStoreError, match="already exists"):
        save_identity(path, identity("TH-MUK", seed="other"), None)
    assert load_identity(path, None) == identity("TH-MUK")
    save_identity(path, identity("TH-MUK", seed="other"), None, overwrite=True)
    assert load_identity(path, None) == identity("TH-MUK", seed="other")
    assert sorted(p.name for p in path.parent.iterdir()) == ["identity.json"]  # no temp files left


def test_missing_key_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="blo init"):
        load_identity(tmp_path / "nope.json", None)


def test_default_cost_is_a_real_one() -> None:
    assert DEFAULT_KDF.memlimit >= argon2id.MEMLIMIT_INTERACTIVE
    assert DEFAULT_KDF.opslimit >= argon2id.OPSLIMIT_INTERACTIVE


def test_the_floor_is_above_owasps_argon2id_minimum_and_the_default_above_the_floor() -> None:
    # OWASP's Password Storage Cheat Sheet: argon2id at least 19 MiB and 2 passes.
    assert FLOOR_KDF.memlimit >= 19 << 20 and FLOOR_KDF.opslimit >= 2
    assert (FLOOR_KDF.opslimit, FLOOR_KDF.memlimit) == (3, 64 << 20)  # as schemas/DIRECTORY.md 8 states
    assert DEFAULT_KDF.opslimit >= FLOOR_KDF.opslimit and DEFAULT_KDF.memlimit >= FLOOR_KDF.memlimit


@pytest.mark.parametrize(
    "cost",
    [
        FAST_KDF,  # libsodium's minimum: what the reader accepted before
        KdfParams(argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE),  # 2 passes: one short
        KdfParams(argon2id.OPSLIMIT_SENSITIVE, (64 << 20) - 1024),  # many passes cannot buy back memory
    ],
)
def test_a_stolen_key_file_written_below_the_cost_floor_is_refused_with_how_to_re_encrypt_it(cost: KdfParams) -> None:
    weak = encode_identity(identity("TH-MUK"), PASS, kdf=cost, min_kdf=FAST_KDF)
    started = time.monotonic()
    for refuse in (lambda: decode_identity(weak, PASS), lambda: check_cost(weak)):
        with pytest.raises(KeyStoreError, match="below this build's floor") as info:
            refuse()
        assert "blo keys passwd" in info.value.message and PASS.decode() not in info.value.message
    # Refused on the numbers alone, before any key derivation (and so before a passphrase is needed).
    with pytest.raises(KeyStoreError, match="floor"):
        decode_identity(weak, None)
    assert time.monotonic() - started < 1.0
    # Only a reader that says so (tests; `blo keys passwd`, to re-encrypt it) opens it.
    assert decode_identity(weak, PASS, min_kdf=FAST_KDF) == identity("TH-MUK")


def test_a_key_file_at_the_floor_opens_with_the_default_reader(tmp_path: Path) -> None:
    path = tmp_path / "identity.json"
    save_identity(path, identity("TH-MUK"), PASS, kdf=FLOOR_KDF)
    check_cost(path.read_bytes())
    assert load_identity(path, PASS) == identity("TH-MUK")


def test_writing_a_key_file_below_the_floor_is_refused_unless_the_caller_lowers_it() -> None:
    with pytest.raises(KeyStoreError, match="floor"):
        encode_identity(identity("TH-MUK"), PASS, kdf=FAST_KDF)


@pytest.mark.parametrize(
    "short",
    [
        "a" * (MIN_PASSPHRASE_CHARS - 1),
        "รหัสผ่าน",  # 8 code points, 24 bytes of UTF-8: counted in code points, not bytes
        "ລະຫັດຜ່ານ",  # Lao, 9 code points
    ],
)
def test_a_short_passphrase_is_refused_when_a_key_file_is_made(short: str) -> None:
    assert len(short) < MIN_PASSPHRASE_CHARS
    with pytest.raises(KeyStoreError, match=f"at least {MIN_PASSPHRASE_CHARS}") as info:
        encode_identity(identity("TH-MUK"), short.encode(), kdf=FAST_KDF, min_kdf=FAST_KDF)
    assert short not in info.value.message


def test_a_passphrase_of_the_minimum_length_in_any_script_is_accepted() -> None:
    for enough in ("a" * MIN_PASSPHRASE_CHARS, "รหัสผ่านของด่าน"):
        assert len(enough) >= MIN_PASSPHRASE_CHARS
        data = encode_identity(identity("TH-MUK"), enough.encode(), kdf=FAST_KDF, min_kdf=FAST_KDF)
        assert decode_identity(data, enough.encode(), min_kdf=FAST_KDF) == identity("TH-MUK")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o610])
@pytest.mark.parametrize("protected", [True, False])
def test_a_key_file_other_users_can_read_or_write_is_refused_with_the_chmod_to_run(
    tmp_path: Path, mode: int, protected: bool
) -> None:
    path = tmp_path / "my keys" / "identity.json"
    save_identity(path, identity("TH-MUK"), PASS if protected else None, kdf=FAST_KDF, min_kdf=FAST_KDF)
    path.chmod(mode)
    with pytest.raises(KeyStoreError) as info:
        load_identity(path, PASS, min_kdf=FAST_KDF)
    assert f"chmod 600 '{path}'" in info.value.message and f"{mode:04o}" in info.value.message
    path.chmod(0o600)
    assert load_identity(path, PASS, min_kdf=FAST_KDF) == identity("TH-MUK")


@pytest.mark.parametrize("mode", [0o720, 0o702, 0o777])
def test_a_keys_folder_other_users_can_write_to_is_refused_with_the_chmod_to_run(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "keys" / "identity.json"
    save_identity(path, identity("TH-MUK"), None)
    path.parent.chmod(mode)
    try:
        with pytest.raises(KeyStoreError) as info:
            load_identity(path, None)
        assert f"chmod 700 {path.parent}" in info.value.message
    finally:
        path.parent.chmod(0o700)
    assert load_identity(path, None) == identity("TH-MUK")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_random_bytes_give_only_keystore_errors(data: bytes) -> None:
    with pytest.raises(KeyStoreError):
        decode_identity(data, PASS)


PROTECTED = encode_identity(identity("TH-MUK"), PASS, kdf=FAST_KDF, min_kdf=FAST_KDF, rng=DeterministicRng("salt"))
UNPROTECTED = encode_identity(identity("TH-MUK"), None)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([PROTECTED, UNPROTECTED]), st.data())
def test_mutated_key_files_give_keystore_errors_or_the_same_identity(original: bytes, data: st.DataObject) -> None:
    raw = bytearray(original)
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        got = decode_identity(bytes(raw), PASS, min_kdf=FAST_KDF)
    except KeyStoreError:
        return
    assert got == identity("TH-MUK")


def _secret_readers(tmp_path: Path) -> list[tuple[str, Path, bytes, Callable[[], object]]]:
    """Each file a node keeps a secret in, a valid content, and the call that reads it."""
    from bus.transport.inbox_keys import load_ring
    from bus.transport.nkey import new_user_seed, read_seed
    from office_node.audit import load_or_create_key
    from office_node.client import find_token, token_path
    from office_node.home import NodeHome

    home = NodeHome(tmp_path / "home")
    ring = InboxRing(identity("TH-MUK"))
    return [
        ("nkey seed", tmp_path / "keys" / "TH-MUK.nk", new_user_seed(os.urandom), lambda: read_seed(tmp_path / "keys" / "TH-MUK.nk")),
        ("API token", token_path(home), b"blo_token_value", lambda: find_token(home)),
        ("audit key", tmp_path / "data" / "audit.key", os.urandom(32), lambda: load_or_create_key(tmp_path / "data" / "audit.key", create=False)),
        ("inbox key ring", tmp_path / "keys" / "inbox.keys", ring.to_bytes(os.urandom), lambda: load_ring(tmp_path / "keys" / "inbox.keys", identity("TH-MUK"))),
    ]  # fmt: skip


def test_every_secret_a_node_reads_from_disk_is_refused_when_other_users_can_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only the key file: a NATS seed, the API token, the audit key and the inbox key
    ring are as good as the keys to whoever can read them."""
    monkeypatch.delenv("BLO_TOKEN", raising=False)
    for what, path, content, read in _secret_readers(tmp_path):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(0o644)
        with pytest.raises(KeyStoreError, match=f"open to other users.*the {what}.*chmod 600"):
            read()
        path.chmod(0o600)
        read()  # the same file, private: read
