"""Signed receipts (pure)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus import errors
from bus.ids import bulletin_id_from_bytes, bulletin_id_to_bytes
from bus.keys import PeerBook
from bus.receipt import (
    ACKNOWLEDGED,
    DELIVERED,
    MAX_RECEIPT_BYTES,
    MAX_RECEIPT_IDS,
    READ,
    RECEIPT_LABEL,
    decode_receipt,
    open_receipt,
    sign_receipt,
)
from tests.helpers import NOW, STORED, identity

BID = "01J9Z3K8W4N2V7Q5R6T1X0Y2ZA"
SVK = identity("LA-SVK")
MUK = identity("TH-MUK")
BOOK = PeerBook([SVK.public(), MUK.public()])


def test_a_receipt_verifies_and_says_who_received_what_when() -> None:
    r = open_receipt(sign_receipt(SVK, DELIVERED, BID, "TH-MUK", now_ms=NOW), BOOK, witnessed_at=STORED)
    assert (r.kind, r.bulletin_ids, r.bulletin_sender, r.office, r.at_ms) == (DELIVERED, (BID,), "TH-MUK", "LA-SVK", NOW)
    assert open_receipt(sign_receipt(SVK, READ, BID, "TH-MUK", now_ms=NOW + 1), BOOK, witnessed_at=STORED).kind == READ


def test_an_acknowledged_receipt_is_its_own_kind_and_its_kind_is_signed() -> None:
    data = sign_receipt(SVK, ACKNOWLEDGED, BID, "TH-MUK", now_ms=NOW + 2)
    assert open_receipt(data, BOOK, witnessed_at=STORED).kind == ACKNOWLEDGED
    body, sig = msgpack.unpackb(data)
    fields = msgpack.unpackb(body)
    assert fields[1] == "acknowledged"
    fields[1] = "delivered"  # a relay turning a person's acknowledgement into mere delivery, or back
    with pytest.raises(errors.BadSignature):
        open_receipt(msgpack.packb([msgpack.packb(fields, use_bin_type=True), sig], use_bin_type=True), BOOK, witnessed_at=STORED)


IDS = [bulletin_id_from_bytes(bytes([n]) * 16) for n in range(MAX_RECEIPT_IDS)]


def test_one_receipt_covers_a_batch_of_bulletins_with_one_signature() -> None:
    data = sign_receipt(SVK, DELIVERED, IDS, "TH-MUK", now_ms=NOW)
    assert open_receipt(data, BOOK, witnessed_at=STORED).bulletin_ids == tuple(IDS)
    assert len(data) <= MAX_RECEIPT_BYTES
    assert len(msgpack.unpackb(data)) == 2  # one body, one signature, however many ids


def test_removing_or_adding_an_id_breaks_the_signature() -> None:
    body, sig = msgpack.unpackb(sign_receipt(SVK, DELIVERED, IDS[:3], "TH-MUK", now_ms=NOW))
    for ids in (IDS[:2], IDS[:4], [IDS[0], IDS[2], IDS[1]]):
        fields = msgpack.unpackb(body)
        fields[2] = [bulletin_id_to_bytes(i) for i in ids]
        forged = msgpack.packb([msgpack.packb(fields, use_bin_type=True), sig], use_bin_type=True)
        with pytest.raises(errors.BadSignature):
            open_receipt(forged, BOOK, witnessed_at=STORED)


@pytest.mark.parametrize("version", [1, 2])
def test_a_receipt_of_wire_format_v1_is_refused_as_unsupported(version: int) -> None:
    ids = bulletin_id_to_bytes(BID) if version == 1 else [bulletin_id_to_bytes(BID)]
    body = msgpack.packb([version, READ, ids, "TH-MUK", "LA-SVK", SVK.signing.kid, NOW], use_bin_type=True)
    data = msgpack.packb([body, SVK.signing.sign(RECEIPT_LABEL + body)], use_bin_type=True)
    with pytest.raises(errors.UnsupportedVersion, match="must upgrade"):
        open_receipt(data, BOOK, witnessed_at=STORED)


def test_an_unknown_receipt_version_is_refused_as_unsupported() -> None:
    body = msgpack.packb([4, DELIVERED, [bulletin_id_to_bytes(BID)], "TH-MUK", "LA-SVK", SVK.signing.kid, NOW, 0])
    data = msgpack.packb([body, SVK.signing.sign(RECEIPT_LABEL + body)], use_bin_type=True)
    with pytest.raises(errors.UnsupportedVersion):
        decode_receipt(data)


@pytest.mark.parametrize(
    "ids",
    [[], [b"x" * 15], [b"x" * 16, b"x" * 16], [BID], [bytes([n]) * 16 for n in range(MAX_RECEIPT_IDS + 1)]],
)
def test_receipt_id_lists_that_are_empty_repeated_too_long_or_mistyped_are_malformed(ids: list) -> None:
    body = msgpack.packb([3, DELIVERED, ids, "TH-MUK", "LA-SVK", SVK.signing.kid, NOW], use_bin_type=True)
    data = msgpack.packb([body, SVK.signing.sign(RECEIPT_LABEL + body)], use_bin_type=True)
    with pytest.raises(errors.MalformedEnvelope):
        decode_receipt(data)


def test_a_receipt_from_an_office_not_in_the_directory_is_unknown_sender_and_retryable() -> None:
    stranger = identity("KH-POI")
    with pytest.raises(errors.UnknownSender) as caught:
        open_receipt(sign_receipt(stranger, DELIVERED, BID, "TH-MUK", now_ms=NOW), BOOK, witnessed_at=STORED)
    assert caught.value.retryable


def test_changing_any_signed_field_breaks_the_signature() -> None:
    body, sig = msgpack.unpackb(sign_receipt(SVK, DELIVERED, BID, "TH-MUK", now_ms=NOW))
    fields = msgpack.unpackb(body)
    fields[1] = READ  # claim "read" with a "delivered" signature
    forged = msgpack.packb([msgpack.packb(fields, use_bin_type=True), sig], use_bin_type=True)
    with pytest.raises(errors.BadSignature):
        open_receipt(forged, BOOK, witnessed_at=STORED)


def test_a_receipt_signed_by_one_office_cannot_claim_to_be_from_another() -> None:
    body, sig = msgpack.unpackb(sign_receipt(SVK, DELIVERED, BID, "TH-MUK", now_ms=NOW))
    fields = msgpack.unpackb(body)
    fields[4], fields[5] = "TH-MUK", MUK.signing.kid
    forged = msgpack.packb([msgpack.packb(fields, use_bin_type=True), sig], use_bin_type=True)
    with pytest.raises(errors.BadSignature):
        open_receipt(forged, BOOK, witnessed_at=STORED)


def test_a_signature_made_for_another_purpose_does_not_verify_as_a_receipt() -> None:
    body = msgpack.unpackb(sign_receipt(SVK, DELIVERED, BID, "TH-MUK", now_ms=NOW))[0]
    unlabelled = SVK.signing.sign(body)  # same bytes, no receipt label
    assert unlabelled != SVK.signing.sign(RECEIPT_LABEL + body)
    with pytest.raises(errors.BadSignature):
        open_receipt(msgpack.packb([body, unlabelled], use_bin_type=True), BOOK, witnessed_at=STORED)


def test_a_revoked_signer_is_refused() -> None:
    book = PeerBook([SVK.public().__class__(**{**_fields(SVK.public()), "revoked_at": NOW - 1})])
    with pytest.raises(errors.SenderKeyInvalid):
        open_receipt(sign_receipt(SVK, DELIVERED, BID, "TH-MUK", now_ms=NOW), book, witnessed_at=STORED)


def _fields(peer: object) -> dict:
    return {k: getattr(peer, k) for k in peer.__slots__}  # type: ignore[attr-defined]


def test_signing_refuses_bad_values() -> None:
    with pytest.raises(errors.ValidationError):
        sign_receipt(SVK, "seen", BID, "TH-MUK", now_ms=NOW)
    with pytest.raises(errors.ValidationError):
        sign_receipt(SVK, DELIVERED, "not-an-id", "TH-MUK", now_ms=NOW)
    for ids in ([], [BID, BID], [*IDS, BID]):
        with pytest.raises(errors.ValidationError, match="bulletin_ids"):
            sign_receipt(SVK, DELIVERED, ids, "TH-MUK", now_ms=NOW)


@given(st.binary(max_size=300))
def test_decoding_arbitrary_bytes_raises_only_envelope_errors(data: bytes) -> None:
    try:
        decode_receipt(data)
    except errors.EnvelopeError:
        pass


_good = sign_receipt(SVK, DELIVERED, BID, "TH-MUK", now_ms=NOW)


@given(st.integers(0, len(_good) - 1), st.integers(1, 255))
def test_any_flipped_byte_is_refused_with_an_envelope_error(pos: int, flip: int) -> None:
    data = bytearray(_good)
    data[pos] ^= flip
    with pytest.raises(errors.EnvelopeError):
        open_receipt(bytes(data), BOOK, witnessed_at=STORED)


@given(
    st.lists(
        st.one_of(st.integers(-3, 1 << 50), st.text(max_size=12), st.binary(max_size=20), st.none()),
        min_size=0,
        max_size=9,
    )
)
def test_decoding_wrong_shaped_bodies_raises_only_envelope_errors(fields: list) -> None:
    data = msgpack.packb([msgpack.packb(fields, use_bin_type=True), b"s" * 64], use_bin_type=True)
    try:
        decode_receipt(data)
    except errors.EnvelopeError:
        pass
