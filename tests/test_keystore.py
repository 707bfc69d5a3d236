"""Key files at rest: passphrase protection, caps on hostile parameters, file modes."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import nacl.pwhash.argon2id as argon2id
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.errors import KeyStoreError
from bus.keys import Identity
from bus.keystore import (
    DEFAULT_KDF,
    FAST_KDF,
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
    save_identity(path, me, PASS, kdf=FAST_KDF)
    assert load_identity(path, PASS) == me
    text = path.read_text()
    assert me.signing.seed.hex() not in text and me.box.secret.hex() not in text
    assert is_protected(path.read_bytes())


def test_wrong_passphrase_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "identity.json"
    save_identity(path, identity("TH-MUK"), PASS, kdf=FAST_KDF)
    with pytest.raises(KeyStoreError, match="wrong passphrase") as info:
        load_identity(path, b"Tr0ub4dor&3")
    assert str(path) in info.value.message and "Tr0ub4dor" not in info.value.message


def test_protected_file_without_a_passphrase_says_how_to_give_one() -> None:
    data = encode_identity(identity("TH-MUK"), PASS, kdf=FAST_KDF)
    with pytest.raises(KeyStoreError, match="BLO_PASSPHRASE"):
        decode_identity(data, None)


def test_unprotected_file_is_explicit_and_round_trips() -> None:
    me = rotated_identity()
    data = encode_identity(me, None)
    assert json.loads(data)["protection"] == "none"
    assert decode_identity(data, None) == me
    assert not is_protected(data)


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(KeyStoreError, match="empty passphrase"):
        encode_identity(identity("TH-MUK"), b"", kdf=FAST_KDF)


@pytest.mark.parametrize(("ops", "mem"), [(3, 64 << 30), (10**6, argon2id.MEMLIMIT_MIN), (0, argon2id.MEMLIMIT_MIN)])
def test_hostile_kdf_parameters_are_refused_before_any_work(ops: int, mem: int) -> None:
    doc = json.loads(encode_identity(identity("TH-MUK"), PASS, kdf=FAST_KDF))
    doc["kdf"].update(opslimit=ops, memlimit=mem)
    started = time.monotonic()
    with pytest.raises(KeyStoreError, match="at most"):
        decode_identity(json.dumps(doc).encode(), PASS)
    assert time.monotonic() - started < 1.0


def test_editing_the_clear_public_keys_breaks_the_file() -> None:
    other = identity("TH-NKP")
    doc = json.loads(encode_identity(identity("TH-MUK"), PASS, kdf=FAST_KDF))
    doc["sign_public"] = other.signing.public.hex()
    with pytest.raises(KeyStoreError):
        decode_identity(json.dumps(doc).encode(), PASS)
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


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_random_bytes_give_only_keystore_errors(data: bytes) -> None:
    with pytest.raises(KeyStoreError):
        decode_identity(data, PASS)


PROTECTED = encode_identity(identity("TH-MUK"), PASS, kdf=FAST_KDF, rng=DeterministicRng("salt"))
UNPROTECTED = encode_identity(identity("TH-MUK"), None)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([PROTECTED, UNPROTECTED]), st.data())
def test_mutated_key_files_give_keystore_errors_or_the_same_identity(original: bytes, data: st.DataObject) -> None:
    raw = bytearray(original)
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        got = decode_identity(bytes(raw), PASS)
    except KeyStoreError:
        return
    assert got == identity("TH-MUK")
