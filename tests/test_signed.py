"""The one codec of signed items (bus/signed.py): what it accepts, what it refuses and as
whose error, hammered with arbitrary bytes. The per-kind tests (directory, feeds,
receipts, heartbeats) and their vectors run it through each caller."""

from __future__ import annotations

import os

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus import errors, signed
from bus.keys import SigningKeyPair


class Refused(errors.BloError):
    reason = "test"


def fail(problem: str, message: str) -> Refused:
    return Refused(f"{problem}: {message}")


KEY = SigningKeyPair.generate(os.urandom)
KINDS = {1: "first payload", 2: "second payload"}


def test_a_pair_round_trips_and_its_signature_covers_label_and_body() -> None:
    data = signed.seal_pair(b"label-v1\x00", [3, "x", b"\x01"], KEY)
    pair = signed.decode_pair(data, what="thing", limit=1024, version=3, arity=3, fail=fail)
    assert pair.fields == [3, "x", b"\x01"]
    assert signed.verifies(pair.signature, b"label-v1\x00", pair.body, KEY.public)
    assert not signed.verifies(pair.signature, b"label-v2\x00", pair.body, KEY.public)  # another kind's label


def test_an_item_round_trips_and_its_signature_covers_label_and_payload() -> None:
    payload = signed.packb(["a", 1])
    item = signed.decode_item(
        signed.seal_item(2, 1, b"L\x00", payload, KEY), what="thing", limit=1024, version=2, kinds=KINDS, fail=fail
    )
    assert (item.kind, item.fields, item.payload) == (1, ["a", 1], payload)
    assert signed.verifies(item.signature, b"L\x00", payload, KEY.public)
    assert not signed.verifies(item.signature, b"L\x00", payload + b"\x00", KEY.public)


def test_a_later_version_with_more_fields_is_told_to_upgrade_not_called_malformed() -> None:
    pair = signed.seal_pair(b"l", [4, 1, 2, 3, 4, 5], KEY)
    with pytest.raises(Refused, match=r"^unsupported_version: .*upgrade it"):
        signed.decode_pair(pair, what="thing", limit=1024, version=3, arity=3, fail=fail)
    item = msgpack.packb([3, 1, b"", bytes(64), "more"], use_bin_type=True)
    with pytest.raises(Refused, match=r"^unsupported_version: "):
        signed.decode_item(item, what="thing", limit=1024, version=2, kinds=KINDS, fail=fail)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x00" * 2000, "too_large"),
        (b"\xc1", "malformed"),  # never used by msgpack
        (msgpack.packb([b"body"], use_bin_type=True), "malformed"),
        (msgpack.packb([msgpack.packb([3, 1]), bytes(63)], use_bin_type=True), "malformed"),  # short signature
        (msgpack.packb([msgpack.packb([3, 1, 2, 3]), bytes(64)], use_bin_type=True), "malformed"),  # arity
    ],
)
def test_a_bad_pair_is_refused_with_the_callers_error_naming_the_problem(data: bytes, problem: str) -> None:
    with pytest.raises(Refused, match=rf"^{problem}: "):
        signed.decode_pair(data, what="thing", limit=1024, version=3, arity=3, fail=fail)


def test_an_unknown_item_kind_names_the_kinds_there_are() -> None:
    data = signed.seal_item(2, 9, b"L", signed.packb([]), KEY)
    with pytest.raises(Refused, match=r"unknown thing kind 9 \(1 = first payload, 2 = second payload"):
        signed.decode_item(data, what="thing", limit=1024, version=2, kinds=KINDS, fail=fail)


def test_receipts_and_heartbeats_fail_with_the_envelopes_own_errors() -> None:
    assert type(signed.envelope_fail(signed.TOO_LARGE, "m")) is errors.TooLarge
    assert type(signed.envelope_fail(signed.UNSUPPORTED, "m")) is errors.UnsupportedVersion
    assert type(signed.envelope_fail(signed.MALFORMED, "m")) is errors.MalformedEnvelope


@given(st.binary(max_size=300))
def test_any_bytes_decode_as_a_pair_or_raise_only_the_callers_error(data: bytes) -> None:
    try:
        signed.decode_pair(data, what="thing", limit=256, version=3, arity=3, fail=fail)
    except Refused:
        pass


@given(st.binary(max_size=300))
def test_any_bytes_decode_as_an_item_or_raise_only_the_callers_error(data: bytes) -> None:
    try:
        signed.decode_item(data, what="thing", limit=256, version=2, kinds=KINDS, fail=fail)
    except Refused:
        pass


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=80) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=12,
)


@given(st.lists(_values, max_size=6), st.binary(max_size=70))
def test_any_well_formed_msgpack_pair_decodes_or_raises_only_the_callers_error(fields: list, signature: bytes) -> None:
    data = msgpack.packb([msgpack.packb(fields, use_bin_type=True), signature], use_bin_type=True)
    try:
        pair = signed.decode_pair(data, what="thing", limit=4096, version=3, arity=3, fail=fail)
    except Refused:
        return
    assert pair.fields == fields and len(pair.signature) == 64 and fields[0] == 3
