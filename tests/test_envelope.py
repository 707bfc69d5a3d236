"""Seal and open: round trips, every refusal, and the Davis sign-and-encrypt attacks."""

from __future__ import annotations

from typing import Any

import msgpack
import nacl.utils
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import errors
from bus.bulletin import Bulletin
from bus.envelope import (
    MAX_ENVELOPE_BYTES,
    RECIPIENT_FEED,
    RECIPIENT_OFFICE,
    FeedRecipient,
    OfficeRecipient,
    Opener,
    Sealer,
    encode_body,
    read_routing,
    split_envelope,
    verify_detached,
)
from bus.envelope_fast import FastSealer
from bus.keys import PeerBook
from bus.testing import DeterministicRng
from tests.helpers import NOW, STORED, bulletin, identity
from tests.test_schema import valid_bulletins

MUK, SVK, TCCC, NKP = (identity(o) for o in ("TH-MUK", "LA-SVK", "TH-TCCC", "TH-NKP"))
BOOK = PeerBook([p.public() for p in (MUK, SVK, TCCC, NKP)])
FEED_KEY = bytes(range(32))


def seal_to(*recipients, sender=MUK, b=None, rng_seed="seal", **kw):
    return Sealer(sender).seal(b or bulletin(sender.office_id), list(recipients), now_ms=NOW, rng=DeterministicRng(rng_seed), **kw)


def opener(who=SVK, book=BOOK, **kw):
    return Opener.for_identity(who, book, **kw)


def test_round_trip_to_each_recipient_gives_the_same_bulletin():
    b = bulletin()
    sealed = seal_to(OfficeRecipient(SVK.public()), OfficeRecipient(TCCC.public()), b=b)
    for who in (SVK, TCCC):
        opened = opener(who).open(sealed, witnessed_at=STORED)
        assert opened.bulletin == b
        assert opened.sent_at == NOW
        assert opened.sender_sign_kid == MUK.signing.kid
        assert opened.opened_via.id == who.office_id


@pytest.mark.parametrize(
    "title",
    [
        "ยึดยาบ้า 200,000 เม็ด",  # Thai
        "ແຈ້ງເຕືອນ: ຜູ້ຕ້ອງສົງໄສ",  # Lao
        "ការចាប់យកសត្វព្រៃ",  # Khmer
        "မူးယစ်ဆေးဝါး",  # Burmese
        "Hộ chiếu bị đánh cắp",  # Vietnamese (precomposed and combining marks must survive)
        "Ho\u0323 chie\u0302\u0301u",
    ],
)
def test_text_in_every_script_round_trips_exactly(title):
    b = bulletin(title=title, body=title * 3)
    opened = opener().open(seal_to(OfficeRecipient(SVK.public()), b=b), witnessed_at=STORED)
    assert opened.bulletin.title == title
    assert opened.bulletin.body == title * 3


def test_feed_recipient_opens_with_epoch_key_and_not_without():
    sealed = seal_to(FeedRecipient("mekong-border", 7, FEED_KEY))
    member = Opener("LA-THK", [], BOOK, feed_keys={("mekong-border", 7): FEED_KEY})
    assert member.open(sealed, witnessed_at=STORED).opened_via.kind == RECIPIENT_FEED
    wrong_epoch = Opener("LA-THK", [], BOOK, feed_keys={("mekong-border", 8): FEED_KEY})
    with pytest.raises(errors.NotAddressedToUs):
        wrong_epoch.open(sealed, witnessed_at=STORED)


def test_feed_wrap_costs_the_same_bytes_whatever_the_member_count():
    # One wrap under the epoch key: the header does not grow with the feed.
    sealed = seal_to(FeedRecipient("mekong-border", 1, FEED_KEY))
    _, _, _, _, recipients = read_routing(sealed)
    assert len(recipients) == 1


def test_wrong_recipient_is_told_it_is_not_addressed():
    sealed = seal_to(OfficeRecipient(SVK.public()))
    with pytest.raises(errors.NotAddressedToUs):
        opener(NKP).open(sealed, witnessed_at=STORED)


def test_unknown_sender_is_retryable():
    sealed = seal_to(OfficeRecipient(SVK.public()))
    with pytest.raises(errors.UnknownSender) as info:
        opener(book=PeerBook([SVK.public()])).open(sealed, witnessed_at=STORED)
    assert info.value.retryable


def test_revoked_sender_is_rejected_after_revocation_time_but_not_before():
    sealed = seal_to(OfficeRecipient(SVK.public()))
    revoked_after = PeerBook([SVK.public(), _replace(MUK.public(), revoked_at=NOW + 1)])
    assert opener(book=revoked_after).open(sealed, witnessed_at=STORED).bulletin.sender == "TH-MUK"
    revoked_before = PeerBook([SVK.public(), _replace(MUK.public(), revoked_at=NOW)])
    with pytest.raises(errors.SenderKeyInvalid, match="revoked"):
        opener(book=revoked_before).open(sealed, witnessed_at=STORED)


def test_seal_refuses_revoked_or_expired_recipients():
    with pytest.raises(errors.RecipientKeyInvalid, match="revoked"):
        seal_to(OfficeRecipient(_replace(SVK.public(), revoked_at=NOW - 1)))
    with pytest.raises(errors.RecipientKeyInvalid, match="expired"):
        seal_to(OfficeRecipient(_replace(SVK.public(), valid_until=NOW)))


def test_seal_refuses_a_bulletin_claiming_another_sender():
    with pytest.raises(errors.ValidationError, match="from"):
        seal_to(OfficeRecipient(SVK.public()), b=bulletin("TH-NKP"))


def test_seal_refuses_duplicate_and_missing_recipients():
    with pytest.raises(errors.ValidationError, match="named twice"):
        seal_to(OfficeRecipient(SVK.public()), OfficeRecipient(SVK.public()))
    with pytest.raises(errors.ValidationError, match="at least one"):
        seal_to()


def test_a_recipient_list_sealed_to_again_is_checked_against_each_send_time():
    # The sealer keeps a checked plan per list of directory records (bus.envelope
    # Sealer._plan); a later seal must still refuse a record outside its validity window.
    sealer = Sealer(MUK)
    svk = SVK.public(valid_from=NOW - 10, valid_until=NOW + 10)
    tccc = TCCC.public()
    for at in (NOW - 10, NOW, NOW + 9):  # fresh wrapper objects each time, as a node builds them
        sealed = sealer.seal(bulletin(), [OfficeRecipient(svk), OfficeRecipient(tccc)], now_ms=at)
        assert opener(SVK).open(sealed, witnessed_at=STORED).sent_at == at
    with pytest.raises(errors.RecipientKeyInvalid, match=r"LA-SVK.*expired"):
        sealer.seal(bulletin(), [OfficeRecipient(svk), OfficeRecipient(tccc)], now_ms=NOW + 10)
    with pytest.raises(errors.RecipientKeyInvalid, match=r"LA-SVK.*not valid before"):
        sealer.seal(bulletin(), [OfficeRecipient(svk), OfficeRecipient(tccc)], now_ms=NOW - 11)
    for _ in range(2):  # a refused list is refused every time, never remembered as checked
        with pytest.raises(errors.ValidationError, match="named twice"):
            sealer.seal(bulletin(), [OfficeRecipient(tccc), OfficeRecipient(tccc)], now_ms=NOW)


def test_a_sealer_follows_a_recipient_list_in_order_and_a_rotated_record():
    sealer = Sealer(MUK)
    svk, tccc = SVK.public(), TCCC.public()
    for order in ([svk, tccc], [tccc, svk], [svk, tccc]):
        sealed = sealer.seal(bulletin(), [OfficeRecipient(k) for k in order], now_ms=NOW)
        assert [r.id for r in read_routing(sealed)[4]] == [k.office_id for k in order]
    rotated = identity("LA-SVK", seed="rotated")  # new keys for the same office
    sealed = sealer.seal(bulletin(), [OfficeRecipient(rotated.public()), OfficeRecipient(tccc)], now_ms=NOW)
    assert Opener.for_identity(rotated, BOOK).open(sealed, witnessed_at=STORED).opened_via.id == "LA-SVK"
    with pytest.raises(errors.NotAddressedToUs):
        opener(SVK).open(sealed, witnessed_at=STORED)


def test_size_limit_is_enforced_by_seal_and_by_open():
    with pytest.raises(errors.TooLarge, match="limit is 1000"):
        Sealer(MUK, max_bytes=1000).seal(bulletin(body="x" * 2000), [OfficeRecipient(SVK.public())], now_ms=NOW)
    sealed = seal_to(OfficeRecipient(SVK.public()))
    with pytest.raises(errors.TooLarge):
        Opener.for_identity(SVK, BOOK, max_bytes=len(sealed) - 1).open(sealed, witnessed_at=STORED)
    with pytest.raises(errors.TooLarge):
        opener().open(b"\x00" * (MAX_ENVELOPE_BYTES + 1), witnessed_at=STORED)


def _outer(sealed):
    return msgpack.unpackb(sealed)


def _reseal_outer(version, header, ct):
    return msgpack.packb([version, header, ct], use_bin_type=True)


def test_tampered_ciphertext_fails_authentication():
    version, header, ct = _outer(seal_to(OfficeRecipient(SVK.public())))
    flipped = ct[:40] + bytes([ct[40] ^ 1]) + ct[41:]
    with pytest.raises(errors.DecryptionFailed):
        opener().open(_reseal_outer(version, header, flipped), witnessed_at=STORED)


def test_tampered_header_fails_authentication():
    version, header, ct = _outer(seal_to(OfficeRecipient(SVK.public())))
    h = msgpack.unpackb(header)
    h[5] = "FLASH"  # upgrade the precedence in transit
    with pytest.raises(errors.DecryptionFailed):
        opener().open(_reseal_outer(version, msgpack.packb(h, use_bin_type=True), ct), witnessed_at=STORED)


def test_unknown_version_is_refused_with_upgrade_advice():
    _, header, ct = _outer(seal_to(OfficeRecipient(SVK.public())))
    with pytest.raises(errors.UnsupportedVersion, match="upgrade"):
        opener().open(_reseal_outer(3, header, ct), witnessed_at=STORED)


@pytest.mark.parametrize("cut", [0, 1, 5, 50, -1])
def test_truncated_envelope_is_malformed(cut):
    sealed = seal_to(OfficeRecipient(SVK.public()))
    with pytest.raises(errors.MalformedEnvelope):
        opener().open(sealed[:cut], witnessed_at=STORED)


def test_resent_under_another_sender_fails_the_signature():
    """Davis's attack: SVK, a legitimate recipient, re-encrypts MUK's signed bulletin to
    NKP under a header naming itself. The signature was over MUK's header, so it fails."""
    sealed = seal_to(OfficeRecipient(SVK.public()))
    opened = opener(SVK).open(sealed, witnessed_at=STORED)
    forged = _forge(opened, new_sender=SVK, to=NKP)
    with pytest.raises(errors.BadSignature):
        opener(NKP).open(forged, witnessed_at=STORED)


def test_resent_to_another_recipient_under_the_original_sender_fails_the_signature():
    """Re-addressing MUK's bulletin to NKP keeping MUK as sender. The test grants the
    forger even MUK's encryption key (so every wrap is valid): the signed header named
    SVK as recipient, so the new header still does not match the signature."""
    opened = opener(SVK).open(seal_to(OfficeRecipient(SVK.public())), witnessed_at=STORED)
    forged = _forge(opened, new_sender=MUK, to=NKP)
    with pytest.raises(errors.BadSignature):
        opener(NKP).open(forged, witnessed_at=STORED)


def test_signature_over_header_and_body_verifies_detached_for_forwarding():
    opened = opener().open(seal_to(OfficeRecipient(SVK.public())), witnessed_at=STORED)
    verify_detached(MUK.signing.public, opened.header, opened.body, opened.signature)
    with pytest.raises(errors.BadSignature):
        verify_detached(MUK.signing.public, opened.header, opened.body + b" ", opened.signature)


def test_read_routing_exposes_only_routing_metadata():
    b = bulletin()
    sealed = seal_to(OfficeRecipient(SVK.public()), OfficeRecipient(TCCC.public()), b=b)
    bid, sender, precedence, sent_at, recipients = read_routing(sealed)
    assert (bid, sender, precedence, sent_at) == (b.id, "TH-MUK", "IMMEDIATE", NOW)
    assert [(r.kind, r.id) for r in recipients] == [(RECIPIENT_OFFICE, "LA-SVK"), (RECIPIENT_OFFICE, "TH-TCCC")]
    assert b.title.encode() not in sealed and b"P0847211" not in sealed


def test_deterministic_rng_makes_sealing_reproducible_and_real_rng_does_not():
    assert seal_to(OfficeRecipient(SVK.public())) == seal_to(OfficeRecipient(SVK.public()))
    a = Sealer(MUK).seal(bulletin(), [OfficeRecipient(SVK.public())], now_ms=NOW)
    b = Sealer(MUK).seal(bulletin(), [OfficeRecipient(SVK.public())], now_ms=NOW)
    assert a != b


def test_rotated_recipient_still_opens_bulletins_sealed_to_its_old_key():
    from bus.keys import BoxKeyPair, Identity

    old = SVK
    sealed = seal_to(OfficeRecipient(old.public()))
    rotated = Identity("LA-SVK", old.signing, BoxKeyPair.generate(DeterministicRng("new box")), old_box=(old.box,))
    assert Opener.for_identity(rotated, BOOK).open(sealed, witnessed_at=STORED).bulletin.sender == "TH-MUK"


# -- helpers -----------------------------------------------------------------------------


def _replace(peer, **changes):
    from dataclasses import replace

    return replace(peer, **changes)


def _forge(opened, *, new_sender, to):
    """Build a v2 envelope by hand around an opened bulletin's signature and body,
    the way an insider holding the plaintext would."""
    import nacl.bindings as nb

    from bus.envelope import office_kek, wrap_ad
    from bus.keys import BoxKeyPair

    packb = msgpack.Packer(use_bin_type=True).pack
    rng = DeterministicRng("forger")
    bid = msgpack.unpackb(opened.header)[0]
    ephemeral = BoxKeyPair.from_secret(rng(32))
    key, nonce, wnonce = rng(32), rng(24), rng(24)
    kek = office_kek(nb.crypto_scalarmult(ephemeral.secret, to.box.public), ephemeral.public, to.box.public)
    wrapped = nb.crypto_aead_xchacha20poly1305_ietf_encrypt(key, wrap_ad(bid, 1, to.office_id, to.box.kid), wnonce, kek)
    header = packb(
        [bid, new_sender.office_id, new_sender.signing.kid, ephemeral.public, NOW, "IMMEDIATE", nonce,
         [[1, to.office_id, to.box.kid, wnonce, wrapped]]]
    )
    ct = nb.crypto_aead_xchacha20poly1305_ietf_encrypt(opened.signature + opened.body, header, nonce, key)
    return packb([2, header, ct])


# The sealer writes the header by concatenation and the body with msgspec; both must be
# exactly what msgpack.packb gives for their list and dict forms (ENVELOPE.md 6 and 8).
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    offices=st.integers(0, 20),
    feeds=st.lists(st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True), max_size=3, unique=True),
    epoch=st.integers(1, 2**63 - 1),
    system_rng=st.booleans(),
    data=valid_bulletins(),
)
def test_sealed_headers_and_bodies_are_the_msgpack_encoding_of_their_fields(
    offices: int, feeds: list[str], epoch: int, system_rng: bool, data: dict[str, Any]
) -> None:
    sender = identity(data["from"])
    targets: list[Any] = [OfficeRecipient(identity(f"LA-R{i:03d}").public()) for i in range(offices)]
    targets += [FeedRecipient(f, epoch, bytes(32)) for f in feeds]
    if not targets:
        targets = [OfficeRecipient(identity("LA-SVK").public())]
    b = Bulletin.from_dict(data)
    rng = nacl.utils.random if system_rng else DeterministicRng("header")
    header, _ = split_envelope(FastSealer(sender).seal(b, targets, now_ms=NOW, rng=rng))
    assert header == msgpack.packb(msgpack.unpackb(header), use_bin_type=True)
    assert split_envelope(Sealer(sender).seal(b, targets, now_ms=NOW, rng=DeterministicRng("header")))[0] == (
        header if not system_rng else split_envelope(Sealer(sender).seal(b, targets, now_ms=NOW, rng=DeterministicRng("header")))[0]
    )
    assert len(msgpack.unpackb(header)[7]) == len(targets)
    assert encode_body(b) == msgpack.packb(b.body_dict(), use_bin_type=True)


@settings(max_examples=200, deadline=None)
@given(
    message=st.binary(max_size=300),
    aad=st.binary(max_size=64),
    nonce=st.binary(min_size=24, max_size=24),
    key=st.binary(min_size=32, max_size=32),
    flip=st.integers(min_value=-1, max_value=400),
)
def test_the_direct_decrypt_gives_the_wrappers_answer_for_intact_and_altered_ciphertexts(message, aad, nonce, key, flip):
    import nacl.bindings as nb
    import nacl.exceptions

    from bus import sodium

    ciphertext = nb.crypto_aead_xchacha20poly1305_ietf_encrypt(message, aad, nonce, key)
    if 0 <= flip < len(ciphertext):  # one bit changed: both must refuse it
        ciphertext = ciphertext[:flip] + bytes([ciphertext[flip] ^ 1]) + ciphertext[flip + 1 :]

    def outcome(decrypt):
        try:
            return decrypt(ciphertext, aad, nonce, key)
        except nacl.exceptions.CryptoError:
            return "refused"

    before = sodium.use_direct(True)
    try:
        assert outcome(sodium.aead_decrypt) == outcome(nb.crypto_aead_xchacha20poly1305_ietf_decrypt)
        assert outcome(sodium.aead_decrypt) == (message if flip < 0 or flip >= len(ciphertext) else "refused")
    finally:
        sodium.use_direct(before)


@settings(max_examples=100, deadline=None)
@given(message=st.binary(max_size=300), flip=st.integers(min_value=-1, max_value=400))
def test_the_direct_verify_accepts_exactly_what_crypto_sign_open_accepts(message, flip):
    import nacl.bindings as nb
    import nacl.exceptions

    from bus import sodium

    who = identity("TH-MUK")
    signed = nb.crypto_sign(message, who.signing.secret)
    if 0 <= flip < len(signed):
        signed = signed[:flip] + bytes([signed[flip] ^ 0x20]) + signed[flip + 1 :]
    try:
        nb.crypto_sign_open(signed, who.signing.public)
        expected = True
    except nacl.exceptions.BadSignatureError:
        expected = False
    before = sodium.use_direct(True)
    try:
        assert sodium.verify(signed[:64], signed[64:], who.signing.public) is expected
    finally:
        sodium.use_direct(before)
    assert expected is (flip < 0 or flip >= len(signed))
