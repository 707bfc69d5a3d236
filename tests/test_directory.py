"""The signed directory's trust rules, pure (no NATS): bytes in, verdicts out."""

from __future__ import annotations

import json
from dataclasses import replace

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import errors
from bus.directory import (
    Directory,
    DirectoryRecord,
    Revocation,
    centre_self_record,
    decode_item,
    enrol_office,
    make_request,
    read_request,
    revoke_key,
    sign_record,
    sign_revocation,
)
from bus.envelope import OfficeRecipient, Opener, Sealer
from bus.keys import Identity
from tests.helpers import NOW, bulletin, identity

DAY = 86_400_000
YEAR = 365 * DAY

TH_C = identity("TH-TCCC")
LA_C = identity("LA-TCCC")
MUK = identity("TH-MUK")
SVK = identity("LA-SVK")


def request(ident: Identity, *, name: str = "Border Liaison Office", at: int = NOW, previous=None) -> bytes:
    return make_request(ident, name=name, country=ident.office_id[:2], role="office", now_ms=at, previous=previous)


def enrol(ident: Identity, centre: Identity, *, seq: int = 1, at: int = NOW, created: int | None = None, **kw) -> bytes:
    req = read_request(request(ident, at=created if created is not None else at))
    return enrol_office(req, centre, sequence=seq, now_ms=at, valid_until=at + YEAR, **kw)


def centre_record(centre: Identity, at: int = NOW) -> bytes:
    return centre_self_record(centre, name=f"{centre.office_id} centre", now_ms=at, valid_until=at + 5 * YEAR)


def new_directory() -> Directory:
    """A node that pins both centres, with both centres and one office per country enrolled."""
    d = Directory({"TH-TCCC": TH_C.signing.public, "LA-TCCC": LA_C.signing.public})
    for data in (centre_record(TH_C), centre_record(LA_C), enrol(MUK, TH_C), enrol(SVK, LA_C)):
        d.apply(data)
    return d


def rejected(d: Directory, data: bytes) -> errors.DirectoryError:
    with pytest.raises(errors.DirectoryError) as info:
        d.apply(data)
    return info.value


def seal_at(sender: Identity, recipient: Identity, at: int) -> bytes:
    return Sealer(sender).seal(bulletin(sender.office_id, now=at), [OfficeRecipient(recipient.public())], now_ms=at)


# -- trust anchors and the chain ---------------------------------------------------------


def test_enrolled_office_keys_resolve_for_open_and_seal() -> None:
    d = new_directory()
    keys = d.sender_keys("TH-MUK", MUK.signing.kid)
    assert keys is not None and keys.sign_public == MUK.signing.public and keys.box_public == MUK.box.public
    assert d.recipient_keys("LA-SVK", NOW + 1).box_kid == SVK.box.kid
    opened = Opener.for_identity(SVK, d).open(seal_at(MUK, SVK, NOW + 5))
    assert opened.bulletin.sender == "TH-MUK"
    assert [r.office_id for r in d.records()] == ["LA-SVK", "LA-TCCC", "TH-MUK", "TH-TCCC"]


def test_centre_record_is_refused_unless_its_key_is_pinned() -> None:
    d = Directory({"TH-TCCC": TH_C.signing.public})
    assert rejected(d, centre_record(LA_C)).reason == "unpinned_centre"
    impostor = identity("TH-TCCC", seed="someone else")
    assert rejected(d, centre_record(impostor)).reason == "unpinned_centre"
    assert d.record("TH-TCCC") is None
    assert d.rejected["unpinned_centre"] == 2


def test_office_record_signed_by_an_unpinned_centre_is_refused() -> None:
    d = Directory({"LA-TCCC": LA_C.signing.public})
    err = rejected(d, enrol(MUK, TH_C))
    assert err.reason == "untrusted_signer" and "TH-TCCC" in err.message
    assert d.sender_keys("TH-MUK", MUK.signing.kid) is None


def test_th_centre_cannot_enrol_a_la_office() -> None:
    with pytest.raises(errors.DirectoryError) as info:
        enrol(SVK, TH_C)
    assert info.value.reason == "cross_country" and "LA-SVK" in info.value.message


def test_record_for_a_la_office_signed_by_the_th_centre_is_refused_by_nodes() -> None:
    d = Directory({"TH-TCCC": TH_C.signing.public, "LA-TCCC": LA_C.signing.public})
    forged = DirectoryRecord(
        "LA-SVK",
        "Savannakhet",
        "LA",
        "office",
        (),
        (),
        SVK.signing.public,
        SVK.signing.kid,
        SVK.box.public,
        SVK.box.kid,
        NOW,
        None,
        1,
        NOW,
        "TH-TCCC",
        TH_C.signing.kid,
    )
    assert rejected(d, sign_record(forged, TH_C.signing)).reason == "cross_country"
    assert d.rejected["cross_country"] == 1


def test_tampered_record_is_refused_with_bad_signature() -> None:
    d = Directory({"TH-TCCC": TH_C.signing.public})
    good = decode_item(enrol(MUK, TH_C))
    evil = replace(good.item, box_public=SVK.box.public, box_kid=SVK.box.kid)  # type: ignore[type-var]
    tampered = msgpack.packb([1, 1, msgpack.packb(evil.fields(), use_bin_type=True), good.signature], use_bin_type=True)
    assert rejected(d, tampered).reason == "bad_signature"
    assert d.sender_keys("TH-MUK", MUK.signing.kid) is None
    assert d.rejected == {"bad_signature": 1}


def test_a_record_signature_is_not_accepted_as_a_revocation_signature() -> None:
    d = new_directory()
    item = decode_item(enrol(MUK, TH_C, seq=2))
    swapped = msgpack.packb([1, 2, item.payload, item.signature], use_bin_type=True)
    assert rejected(d, swapped).reason == "malformed"


def test_office_record_may_not_take_a_pinned_centre_id() -> None:
    d = new_directory()
    fake = identity("TH-TCCC", seed="office claiming the centre id")
    req = read_request(request(fake))
    forged = enrol_office(req, TH_C, sequence=2, now_ms=NOW, valid_until=None)
    assert rejected(d, forged).reason == "role_conflict"


# -- sequences ------------------------------------------------------------------------------


def test_the_same_record_twice_is_not_a_change() -> None:
    d = new_directory()
    data = enrol(MUK, TH_C, seq=2)
    assert d.apply(data) is not None
    assert d.apply(data) is None


def test_a_lower_sequence_for_a_held_key_is_refused() -> None:
    d = new_directory()
    d.apply(enrol(MUK, TH_C, seq=5, regions=("mekong",)))
    err = rejected(d, enrol(MUK, TH_C, seq=3))
    assert err.reason == "stale_sequence"
    assert d.record("TH-MUK").regions == ("mekong",)  # type: ignore[union-attr]


def test_two_different_records_with_one_sequence_are_a_conflict() -> None:
    d = new_directory()
    assert rejected(d, enrol(MUK, TH_C, seq=1, regions=("mekong",))).reason == "sequence_conflict"


# -- rotation ----------------------------------------------------------------------------


def rotated(old: Identity, seed: str) -> Identity:
    new = identity(old.office_id, seed=seed)
    return Identity(old.office_id, new.signing, new.box, old_box=(old.box,))


def test_after_rotation_old_bulletins_verify_and_new_seals_use_the_new_key() -> None:
    d = new_directory()
    muk2 = rotated(MUK, "muk rotated")
    rotate_at = NOW + 10 * DAY
    req = read_request(request(muk2, at=rotate_at, previous=MUK.signing))
    change = d.apply(enrol_office(req, TH_C, sequence=2, now_ms=rotate_at + DAY, valid_until=rotate_at + YEAR))
    assert change is not None and change.status == "updated"
    assert d.recipient_keys("TH-MUK", rotate_at + DAY).box_kid == muk2.box.kid
    old = d.sender_keys("TH-MUK", MUK.signing.kid)
    assert old is not None and old.valid_until == rotate_at  # the old key ends where the new one starts
    svk = Opener.for_identity(SVK, d)
    assert svk.open(seal_at(MUK, SVK, rotate_at - 1)).bulletin.sender == "TH-MUK"
    with pytest.raises(errors.SenderKeyInvalid):
        svk.open(seal_at(MUK, SVK, rotate_at + 1))
    assert svk.open(seal_at(muk2, SVK, rotate_at + 1)).sender_sign_kid == muk2.signing.kid
    # The office still opens what was sealed to its old encryption key.
    sealed_to_old = Sealer(SVK).seal(bulletin("LA-SVK"), [OfficeRecipient(MUK.public())], now_ms=NOW + 1)
    assert Opener.for_identity(muk2, d).open(sealed_to_old).bulletin.sender == "LA-SVK"


def test_an_old_record_arriving_after_its_successor_is_history_not_current() -> None:
    d = Directory({"TH-TCCC": TH_C.signing.public})
    muk2 = rotated(MUK, "muk rotated")
    first = enrol(MUK, TH_C, seq=1)
    second = enrol_office(
        read_request(request(muk2, at=NOW + DAY)), TH_C, sequence=2, now_ms=NOW + DAY, valid_until=None
    )
    assert d.apply(second).status == "added"  # type: ignore[union-attr]
    assert d.apply(first).status == "history"  # type: ignore[union-attr]
    assert d.record("TH-MUK").sign_kid == muk2.signing.kid  # type: ignore[union-attr]
    assert d.sender_keys("TH-MUK", MUK.signing.kid).valid_until == NOW + DAY  # type: ignore[union-attr]


def test_rotation_request_must_be_endorsed_by_the_previous_key() -> None:
    muk2 = rotated(MUK, "muk rotated")
    assert read_request(request(muk2, previous=MUK.signing)).previous_sign_kid == MUK.signing.kid
    doc = json.loads(request(muk2, previous=MUK.signing))
    doc["endorsement"] = None
    with pytest.raises(errors.DirectoryError, match="endorsed"):
        read_request(json.dumps(doc).encode())
    doc = json.loads(request(muk2, previous=MUK.signing))
    doc["endorsement"] = SVK.signing.sign(b"x").hex()
    with pytest.raises(errors.DirectoryError) as info:
        read_request(json.dumps(doc).encode())
    assert info.value.reason == "bad_signature"


# -- revocation ---------------------------------------------------------------------------


def test_revoked_sender_is_rejected_after_revocation_time_and_accepted_before() -> None:
    d = new_directory()
    revoked_at = NOW + 100
    change = d.apply(revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=revoked_at, reason="laptop stolen"))
    assert change is not None and change.status == "revoked"
    svk = Opener.for_identity(SVK, d)
    assert svk.open(seal_at(MUK, SVK, revoked_at - 1)).bulletin.sender == "TH-MUK"
    with pytest.raises(errors.SenderKeyInvalid, match="revoked"):
        svk.open(seal_at(MUK, SVK, revoked_at))


def test_revoking_the_encryption_key_id_revokes_the_whole_record() -> None:
    d = new_directory()
    d.apply(revoke_key(TH_C, "TH-MUK", MUK.box.kid, revoked_at=NOW + 50, reason="box key leaked"))
    assert d.sender_keys("TH-MUK", MUK.signing.kid).revoked_at == NOW + 50  # type: ignore[union-attr]


def test_seal_refuses_a_revoked_or_expired_recipient_and_names_an_unknown_one() -> None:
    d = new_directory()
    with pytest.raises(errors.RecipientKeyInvalid, match="expired"):
        d.recipient_keys("TH-MUK", NOW + 2 * YEAR)
    d.apply(revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=NOW + 10, reason="compromised"))
    assert d.recipient_keys("TH-MUK", NOW + 9).sign_kid == MUK.signing.kid
    with pytest.raises(errors.RecipientKeyInvalid, match="revoked"):
        d.recipient_keys("TH-MUK", NOW + 10)
    with pytest.raises(errors.DirectoryError, match="not in the directory") as info:
        d.recipient_keys("TH-NKP", NOW)
    assert info.value.reason == "unknown_office"


def test_revocation_arriving_before_its_record_still_applies() -> None:
    d = Directory({"TH-TCCC": TH_C.signing.public})
    d.apply(revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=NOW + 7, reason="compromised"))
    d.apply(enrol(MUK, TH_C))
    assert d.sender_keys("TH-MUK", MUK.signing.kid).revoked_at == NOW + 7  # type: ignore[union-attr]


def test_a_later_dated_revocation_cannot_loosen_an_earlier_one() -> None:
    d = new_directory()
    d.apply(revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=NOW + 5, reason="compromised"))
    assert d.apply(revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=NOW + 500, reason="again")) is None
    assert d.revoked_at("TH-MUK", MUK.signing.kid) == NOW + 5


def test_la_centre_cannot_revoke_a_th_key() -> None:
    d = new_directory()
    forged = sign_revocation(
        Revocation("TH-MUK", MUK.signing.kid, NOW, "spite", "LA-TCCC", LA_C.signing.kid), LA_C.signing
    )
    assert rejected(d, forged).reason == "cross_country"
    assert d.sender_keys("TH-MUK", MUK.signing.kid).revoked_at is None  # type: ignore[union-attr]


def test_records_issued_by_a_revoked_centre_key_after_its_revocation_are_refused() -> None:
    d = new_directory()
    nkp = identity("TH-NKP")
    late = enrol(nkp, TH_C, at=NOW + 2 * DAY)
    d.apply(late)
    d.apply(revoke_key(TH_C, "TH-TCCC", TH_C.signing.kid, revoked_at=NOW + DAY, reason="centre key compromised"))
    assert d.record("TH-NKP") is None  # dropped: issued after the revocation time
    assert d.record("TH-MUK") is not None  # issued before: stands
    assert rejected(d, enrol(identity("TH-BKN"), TH_C, at=NOW + 3 * DAY)).reason == "signer_revoked"


# -- listeners ---------------------------------------------------------------------------


def test_listeners_hear_accepted_changes_only() -> None:
    d = new_directory()
    heard: list[str] = []
    d.add_listener(lambda change: heard.append(f"{change.status}:{change.office_id}"))
    nkp = enrol(identity("TH-NKP"), TH_C)
    d.apply(nkp)
    d.apply(nkp)  # unchanged
    with pytest.raises(errors.DirectoryError):
        d.apply(nkp[:-1] + bytes([nkp[-1] ^ 1]))
    d.apply(revoke_key(TH_C, "TH-NKP", identity("TH-NKP").signing.kid, revoked_at=NOW, reason="closed"))
    assert heard == ["added:TH-NKP", "revoked:TH-NKP"]


def test_signed_items_rebuild_the_same_state_in_reverse_order() -> None:
    d = new_directory()
    d.apply(enrol(rotated(MUK, "r"), TH_C, seq=2, at=NOW + DAY))
    d.apply(revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=NOW + 2 * DAY, reason="retired"))
    copy = Directory({"TH-TCCC": TH_C.signing.public, "LA-TCCC": LA_C.signing.public})
    for item in reversed(d.signed_items()):
        copy.apply(item.raw)
    assert copy.records() == d.records()
    for r in d.history("TH-MUK"):
        assert copy.sender_keys("TH-MUK", r.sign_kid) == d.sender_keys("TH-MUK", r.sign_kid)


# -- decoders never leak library exceptions ----------------------------------------------


GOOD = enrol(MUK, TH_C)
GOOD_REVOCATION = revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=NOW, reason="test")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_give_only_directory_errors(data: bytes) -> None:
    d = new_directory()
    with pytest.raises(errors.DirectoryError):
        d.apply(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([GOOD, GOOD_REVOCATION]), st.data())
def test_mutated_items_are_refused_or_decode_to_the_original(original: bytes, data: st.DataObject) -> None:
    raw = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    mutated = bytes(raw[:cut]) if data.draw(st.booleans()) else bytes(raw)
    d = Directory({"TH-TCCC": TH_C.signing.public})
    try:
        d.apply(mutated)
    except errors.DirectoryError:
        return
    assert decode_item(mutated).item == decode_item(original).item


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=400), st.text(max_size=200).map(str.encode)))
def test_random_enrolment_requests_give_only_directory_errors(data: bytes) -> None:
    with pytest.raises(errors.DirectoryError):
        read_request(data)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_mutated_enrolment_requests_are_refused_or_unchanged(data: st.DataObject) -> None:
    original = request(MUK)
    raw = bytearray(original)
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    try:
        got = read_request(bytes(raw))
    except errors.DirectoryError:
        return
    assert got == read_request(original)


def test_a_failing_listener_does_not_undo_the_change_or_silence_the_others() -> None:
    d = new_directory()
    heard: list[str] = []

    def broken(change: object) -> None:
        raise RuntimeError("listener bug")

    d.add_listener(broken)
    d.add_listener(lambda change: heard.append(change.office_id))
    with pytest.raises(RuntimeError):
        d.apply(enrol(identity("TH-NKP"), TH_C))
    assert heard == ["TH-NKP"] and d.record("TH-NKP") is not None
