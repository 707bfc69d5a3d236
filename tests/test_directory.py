"""The signed directory's trust rules, pure (no NATS): bytes in, verdicts out.

Every item is applied with a witness time (schemas/TRUST.md): ``take`` witnesses it when
it was signed (a record's or inbox key's ``issued_at``, a revocation's ``revoked_at``),
unless the test says when it was stored.
"""

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
from bus.envelope import OfficeRecipient, Opener, Sealer, read_routing
from bus.keys import Identity
from bus.testing import inbox_key
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


def signed_time(data: bytes) -> int:
    item = decode_item(data).item
    return item.revoked_at if isinstance(item, Revocation) else item.issued_at


def take(d: Directory, data: bytes, at: int | None = None):
    """Apply ``data`` witnessed at ``at`` (default: when it was signed)."""
    return d.apply(data, witnessed_at=signed_time(data) if at is None else at)


def new_directory() -> Directory:
    """A node that pins both centres, with both centres and one office per country enrolled,
    each office with an inbox key its node made at NOW."""
    d = Directory({"TH-TCCC": TH_C.signing.public, "LA-TCCC": LA_C.signing.public})
    for data in (centre_record(TH_C), centre_record(LA_C), enrol(MUK, TH_C), enrol(SVK, LA_C)):
        take(d, data)
    for who in (MUK, SVK):
        take(d, inbox_key(who, now_ms=NOW)[0])
    return d


def rejected(d: Directory, data: bytes, at: int | None = None) -> errors.DirectoryError:
    with pytest.raises(errors.DirectoryError) as info:
        take(d, data, at)
    return info.value


def seal_at(sender: Identity, recipient: Identity, at: int) -> bytes:
    return Sealer(sender).seal(bulletin(sender.office_id, now=at), [OfficeRecipient(recipient.public())], now_ms=at)


def stored_at(sealed: bytes) -> int:
    """When the server stored a bulletin here: a second after it was sealed."""
    return read_routing(sealed)[3] + 1_000


def opened(o: Opener, sealed: bytes):
    return o.open(sealed, witnessed_at=stored_at(sealed))


def receiver(who: Identity, d: Directory) -> Opener:
    """``who``'s opener, holding its inbox key of NOW beside its identity keys."""
    return Opener.for_identity(inbox_key(who, now_ms=NOW)[1], d)


# -- trust anchors and the chain ---------------------------------------------------------


def test_enrolled_office_keys_resolve_for_open_and_seal() -> None:
    d = new_directory()
    keys = d.sender_keys("TH-MUK", MUK.signing.kid)
    assert keys is not None and keys.sign_public == MUK.signing.public and keys.box_public == MUK.box.public
    svk_inbox = inbox_key(SVK, now_ms=NOW)[1].old_box[-1]
    to_svk = d.recipient_keys("LA-SVK", NOW + 1)
    assert to_svk.box_kid == svk_inbox.kid != SVK.box.kid  # sealed to its inbox key, not its identity key
    sealed = Sealer(MUK).seal(bulletin("TH-MUK", now=NOW + 5), [OfficeRecipient(to_svk)], now_ms=NOW + 5)
    assert opened(receiver(SVK, d), sealed).bulletin.sender == "TH-MUK"
    with pytest.raises(errors.NotAddressedToUs):
        opened(Opener.for_identity(SVK, d), sealed)  # without the inbox secret: nothing
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
    tampered = msgpack.packb([2, 1, msgpack.packb(evil.fields(), use_bin_type=True), good.signature], use_bin_type=True)
    assert rejected(d, tampered).reason == "bad_signature"
    assert d.sender_keys("TH-MUK", MUK.signing.kid) is None
    assert d.rejected == {"bad_signature": 1}


def test_a_record_signature_is_not_accepted_as_a_revocation_signature() -> None:
    d = new_directory()
    item = decode_item(enrol(MUK, TH_C, seq=2))
    swapped = msgpack.packb([2, 2, item.payload, item.signature], use_bin_type=True)
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
    assert take(d, data) is not None
    assert take(d, data) is None


def test_a_lower_sequence_for_a_held_key_is_refused() -> None:
    d = new_directory()
    take(d, enrol(MUK, TH_C, seq=5, regions=("mekong",)))
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
    change = take(d, enrol_office(req, TH_C, sequence=2, now_ms=rotate_at + DAY, valid_until=rotate_at + YEAR))
    assert change is not None and change.status == "updated"
    with pytest.raises(errors.RecipientKeyInvalid, match="no inbox key signed with its current key"):
        d.recipient_keys("TH-MUK", rotate_at + DAY)  # its inbox keys were signed by the old key
    item, muk2_node = inbox_key(muk2, now_ms=rotate_at + DAY)
    take(d, item)
    to_muk = d.recipient_keys("TH-MUK", rotate_at + DAY)
    assert to_muk.sign_kid == muk2.signing.kid and to_muk.box_kid == muk2_node.old_box[-1].kid
    old = d.sender_keys("TH-MUK", MUK.signing.kid)
    assert old is not None and old.valid_until == rotate_at  # the old key ends where the new one starts
    svk = Opener.for_identity(SVK, d)
    assert opened(svk, seal_at(MUK, SVK, rotate_at - 1)).bulletin.sender == "TH-MUK"
    with pytest.raises(errors.SenderKeyInvalid):
        opened(svk, seal_at(MUK, SVK, rotate_at + 1))
    assert opened(svk, seal_at(muk2, SVK, rotate_at + 1)).sender_sign_kid == muk2.signing.kid
    # The office still opens what was sealed to its old encryption key.
    sealed_to_old = Sealer(SVK).seal(bulletin("LA-SVK"), [OfficeRecipient(MUK.public())], now_ms=NOW + 1)
    assert opened(Opener.for_identity(muk2, d), sealed_to_old).bulletin.sender == "LA-SVK"


def test_an_old_record_arriving_after_its_successor_is_history_not_current() -> None:
    d = Directory({"TH-TCCC": TH_C.signing.public})
    muk2 = rotated(MUK, "muk rotated")
    first = enrol(MUK, TH_C, seq=1)
    second = enrol_office(
        read_request(request(muk2, at=NOW + DAY)), TH_C, sequence=2, now_ms=NOW + DAY, valid_until=None
    )
    assert take(d, second).status == "added"  # type: ignore[union-attr]
    assert take(d, first).status == "history"  # type: ignore[union-attr]
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
    change = take(d, revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=revoked_at, reason="laptop stolen"))
    assert change is not None and change.status == "revoked"
    svk = Opener.for_identity(SVK, d)
    assert opened(svk, seal_at(MUK, SVK, revoked_at - 1)).bulletin.sender == "TH-MUK"
    with pytest.raises(errors.SenderKeyInvalid, match="revoked"):
        opened(svk, seal_at(MUK, SVK, revoked_at))


def test_revoking_the_encryption_key_id_revokes_the_whole_record() -> None:
    d = new_directory()
    take(d, revoke_key(TH_C, "TH-MUK", MUK.box.kid, revoked_at=NOW + 50, reason="box key leaked"))
    assert d.sender_keys("TH-MUK", MUK.signing.kid).revoked_at == NOW + 50  # type: ignore[union-attr]


def test_seal_refuses_a_revoked_or_expired_recipient_and_names_an_unknown_one() -> None:
    d = new_directory()
    with pytest.raises(errors.RecipientKeyInvalid, match="expired"):
        d.recipient_keys("TH-MUK", NOW + 2 * YEAR)
    take(d, revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=NOW + 10, reason="compromised"))
    assert d.recipient_keys("TH-MUK", NOW + 9).sign_kid == MUK.signing.kid
    with pytest.raises(errors.RecipientKeyInvalid, match="revoked"):
        d.recipient_keys("TH-MUK", NOW + 10)
    with pytest.raises(errors.DirectoryError, match="not in the directory") as info:
        d.recipient_keys("TH-NKP", NOW)
    assert info.value.reason == "unknown_office"


def test_revocation_arriving_before_its_record_still_applies() -> None:
    d = Directory({"TH-TCCC": TH_C.signing.public})
    take(d, revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=NOW + 7, reason="compromised"))
    take(d, enrol(MUK, TH_C))
    assert d.sender_keys("TH-MUK", MUK.signing.kid).revoked_at == NOW + 7  # type: ignore[union-attr]


def test_a_later_dated_revocation_cannot_loosen_an_earlier_one() -> None:
    d = new_directory()
    take(d, revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=NOW + 5, reason="compromised"))
    take(d, revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=NOW + 500, reason="again"))
    assert d.revoked_at("TH-MUK", MUK.signing.kid) == NOW + 5
    assert take(d, revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=NOW + 5, reason="compromised")) is None


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
    take(d, late)
    take(d, revoke_key(TH_C, "TH-TCCC", TH_C.signing.kid, revoked_at=NOW + DAY, reason="centre key compromised"))
    assert d.record("TH-NKP") is None  # dropped: issued after the revocation time
    assert d.record("TH-MUK") is not None  # issued before: stands
    assert rejected(d, enrol(identity("TH-BKN"), TH_C, at=NOW + 3 * DAY)).reason == "signer_revoked"


# -- listeners ---------------------------------------------------------------------------


def test_listeners_hear_accepted_changes_only() -> None:
    d = new_directory()
    heard: list[str] = []
    d.add_listener(lambda change: heard.append(f"{change.status}:{change.office_id}"))
    nkp = enrol(identity("TH-NKP"), TH_C)
    take(d, nkp)
    take(d, nkp)  # unchanged
    with pytest.raises(errors.DirectoryError):
        take(d, nkp[:-1] + bytes([nkp[-1] ^ 1]))
    take(d, revoke_key(TH_C, "TH-NKP", identity("TH-NKP").signing.kid, revoked_at=NOW, reason="closed"))
    assert heard == ["added:TH-NKP", "revoked:TH-NKP"]


def test_signed_items_rebuild_the_same_state_in_reverse_order() -> None:
    d = new_directory()
    take(d, enrol(rotated(MUK, "r"), TH_C, seq=2, at=NOW + DAY))
    take(d, revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=NOW + 2 * DAY, reason="retired"))
    copy = Directory({"TH-TCCC": TH_C.signing.public, "LA-TCCC": LA_C.signing.public})
    for item in reversed(d.signed_items()):
        take(copy, item.raw)
    assert copy.records() == d.records()
    for r in d.history("TH-MUK"):
        assert copy.sender_keys("TH-MUK", r.sign_kid) == d.sender_keys("TH-MUK", r.sign_kid)


# -- decoders never leak library exceptions ----------------------------------------------


GOOD = enrol(MUK, TH_C, seq=2)
GOOD_REVOCATION = revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=NOW, reason="test")
GOOD_INBOX_KEY = inbox_key(MUK, now_ms=NOW + 1)[0]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_give_only_directory_errors(data: bytes) -> None:
    d = new_directory()
    with pytest.raises(errors.DirectoryError):
        d.apply(data, witnessed_at=NOW)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([GOOD, GOOD_REVOCATION, GOOD_INBOX_KEY]), st.data())
def test_mutated_items_are_refused_or_decode_to_the_original(original: bytes, data: st.DataObject) -> None:
    raw = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    mutated = bytes(raw[:cut]) if data.draw(st.booleans()) else bytes(raw)
    d = new_directory()
    try:
        change = d.apply(mutated, witnessed_at=NOW + 2)
    except errors.DirectoryError:
        return
    if change is not None and change.status == "waiting":  # names a signing key not held: nothing trusts it
        assert d.inbox_keys("TH-MUK") == [decode_item(k).item for k in [inbox_key(MUK, now_ms=NOW)[0]]]
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
        take(d, enrol(identity("TH-NKP"), TH_C))
    assert heard == ["TH-NKP"] and d.record("TH-NKP") is not None


# -- witness time: a revoked key signs nothing accepted afterwards (schemas/TRUST.md) ----

HOUR = 3_600_000
THIEF = identity("TH-MUK", seed="the thief's own keys")


def thief_record(at: int) -> bytes:
    """A record for TH-MUK binding the thief's keys, signed with TH_C's (stolen) key at ``at``."""
    return enrol(THIEF, TH_C, seq=2, at=at)


def test_revoked_centre_key_cannot_backdate_an_office_record() -> None:
    d = new_directory()
    compromised_since = NOW + DAY
    take(d, revoke_key(TH_C, "TH-TCCC", TH_C.signing.kid, revoked_at=compromised_since, reason="centre key stolen"))
    # The thief dates the record just before the revocation; the bucket stores it a day later.
    err = rejected(d, thief_record(compromised_since - 1), at=compromised_since + DAY)
    assert err.reason == "signer_revoked" and "revoked" in err.message
    assert d.record("TH-MUK").sign_kid == MUK.signing.kid  # type: ignore[union-attr]
    assert d.sender_keys("TH-MUK", THIEF.signing.kid) is None
    assert d.recipient_keys("TH-MUK", NOW + 2 * DAY).box_kid == inbox_key(MUK, now_ms=NOW)[1].old_box[-1].kid


def test_a_backdated_record_stored_before_the_revocation_arrived_is_dropped_when_it_does() -> None:
    d = new_directory()
    compromised_since = NOW + DAY
    # Stored an hour after the key was stolen, before the centre noticed.
    assert take(d, thief_record(compromised_since - 1), at=compromised_since + HOUR).status == "updated"  # type: ignore[union-attr]
    assert d.record("TH-MUK").sign_kid == THIEF.signing.kid  # type: ignore[union-attr]
    take(d, revoke_key(TH_C, "TH-TCCC", TH_C.signing.kid, revoked_at=compromised_since, reason="stolen"), NOW + 2 * DAY)
    assert d.record("TH-MUK").sign_kid == MUK.signing.kid  # type: ignore[union-attr]
    assert d.sender_keys("TH-MUK", THIEF.signing.kid) is None
    # What was stored in time, within the grace, stands.
    grace = Directory({"TH-TCCC": TH_C.signing.public})
    take(grace, centre_record(TH_C))
    take(grace, enrol(identity("TH-NKP"), TH_C, at=compromised_since - 10), at=compromised_since + 60_000)
    take(grace, revoke_key(TH_C, "TH-TCCC", TH_C.signing.kid, revoked_at=compromised_since, reason="stolen"))
    assert grace.record("TH-NKP") is not None


TH_C2 = identity("TH-TCCC", seed="the TH centre's second pinned key")
TWO_KEYS = {"TH-TCCC": [TH_C.signing.public, TH_C2.signing.public], "LA-TCCC": LA_C.signing.public}


def test_revoked_centre_key_cannot_sign_revocations() -> None:
    d = Directory(TWO_KEYS)
    for data in (centre_record(TH_C), enrol(MUK, TH_C)):
        take(d, data)
    # The TH centre revokes its stolen first key with its second one.
    take(d, revoke_key(TH_C2, "TH-TCCC", TH_C.signing.kid, revoked_at=NOW + DAY, reason="stolen"))
    # The thief revokes the centre's good key and an office key with the stolen one.
    for kid, office in ((TH_C2.signing.kid, "TH-TCCC"), (MUK.signing.kid, "TH-MUK")):
        forged = revoke_key(TH_C, office, kid, revoked_at=NOW, reason="spite")
        assert rejected(d, forged, at=NOW + 2 * DAY).reason == "signer_revoked"
        assert d.revoked_at(office, kid) is None
    assert d.sender_keys("TH-MUK", MUK.signing.kid).revoked_at is None  # type: ignore[union-attr]


def test_a_revocation_by_a_stolen_key_held_before_that_key_was_revoked_is_dropped() -> None:
    d = Directory(TWO_KEYS)
    for data in (centre_record(TH_C), enrol(MUK, TH_C)):
        take(d, data)
    take(d, revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=NOW, reason="spite"), NOW + DAY + HOUR)
    take(d, revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=NOW + 5, reason="also"), NOW + HOUR)  # in time
    assert d.revoked_at("TH-MUK", MUK.signing.kid) == NOW
    take(d, revoke_key(TH_C2, "TH-TCCC", TH_C.signing.kid, revoked_at=NOW + DAY, reason="stolen"))
    # The thief's earlier-dated revocation is gone; the one stored before the key was lost stands.
    assert d.revoked_at("TH-MUK", MUK.signing.kid) == NOW + 5
    assert [v.reason for v in d.revocations() if v.office_id == "TH-MUK"] == ["also"]


def test_a_centre_key_may_revoke_itself_whenever_the_revocation_is_stored() -> None:
    d = new_directory()
    take(d, revoke_key(TH_C, "TH-TCCC", TH_C.signing.kid, revoked_at=NOW + DAY, reason="lost"), NOW + 30 * DAY)
    assert d.revoked_at("TH-TCCC", TH_C.signing.kid) == NOW + DAY


def test_a_record_signed_in_the_future_is_refused() -> None:
    d = new_directory()
    err = rejected(d, enrol(identity("TH-NKP"), TH_C, at=NOW + 2 * YEAR), at=NOW + DAY)
    assert err.reason == "from_future"


def test_a_record_signed_outside_the_centre_keys_window_is_refused() -> None:
    d = new_directory()  # TH_C's own record: valid from NOW for 5 years
    assert rejected(d, enrol(identity("TH-NKP"), TH_C, at=NOW - DAY), at=NOW).reason == "signer_key_invalid"


def test_the_same_item_again_keeps_its_earlier_witness_time() -> None:
    d = new_directory()
    data = enrol(identity("TH-NKP"), TH_C, at=NOW + HOUR)
    take(d, data, at=NOW + 2 * HOUR)
    assert take(d, data, at=NOW + 3 * DAY) is None
    assert take(d, data, at=NOW + HOUR) is None
    [held] = [h for h in d.held_items() if h.raw == data]
    assert held.witnessed_at == NOW + HOUR


# -- inbox keys (DIRECTORY.md 3.3; INBOX.md) ----------------------------------------------


def muk_inbox(at: int, **kw) -> bytes:
    return inbox_key(MUK, now_ms=at, **kw)[0]


def current_inbox(d: Directory, office: str, at: int) -> bytes:
    return d.recipient_keys(office, at).box_kid


def test_inbox_key_signed_by_another_offices_key_is_refused() -> None:
    d = new_directory()
    # LA-SVK's key signs an inbox key claiming to be TH-MUK's, naming TH-MUK's signing key.
    from bus.directory import InboxKey, sign_inbox_key
    from bus.keys import BoxKeyPair
    from bus.testing import DeterministicRng

    evil = BoxKeyPair.generate(DeterministicRng("evil inbox"))
    claim = InboxKey("TH-MUK", MUK.signing.kid, evil.public, evil.kid, NOW + 1, NOW + DAY, NOW + 1)
    forged = decode_item(sign_inbox_key(replace(claim, sign_kid=SVK.signing.kid), SVK.signing))
    swapped = msgpack.packb([2, 3, msgpack.packb(claim.fields(), use_bin_type=True), forged.signature], use_bin_type=True)
    assert rejected(d, swapped).reason == "bad_signature"
    # Named as what it is (signed by LA-SVK's key for TH-MUK): no record of TH-MUK has that key.
    assert take(d, forged.raw).status == "waiting"  # type: ignore[union-attr]
    assert evil.kid not in [k.box_kid for k in d.inbox_keys("TH-MUK")]
    assert current_inbox(d, "TH-MUK", NOW + 2) != evil.kid


def test_inbox_key_signed_by_a_revoked_signing_key_is_refused() -> None:
    d = new_directory()
    take(d, revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=NOW + DAY, reason="laptop stolen"))
    # The thief backdates a new inbox key to just before the revocation; stored a day later.
    err = rejected(d, muk_inbox(NOW + DAY - 1), at=NOW + 2 * DAY)
    assert err.reason == "signer_revoked"
    assert [k.issued_at for k in d.inbox_keys("TH-MUK")] == [NOW]


def test_inbox_keys_held_before_their_signing_key_was_revoked_as_compromised_are_dropped() -> None:
    d = new_directory()
    take(d, muk_inbox(NOW + HOUR), at=NOW + DAY + HOUR)  # stored after the key was out of the office's hands
    take(d, revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=NOW + DAY, reason="stolen"), NOW + 2 * DAY)
    assert [k.issued_at for k in d.inbox_keys("TH-MUK")] == [NOW]  # the one stored in time stays listed
    with pytest.raises(errors.RecipientKeyInvalid, match="revoked"):
        d.recipient_keys("TH-MUK", NOW + 2 * DAY)


def test_inbox_key_living_longer_than_the_limit_is_refused() -> None:
    from bus.directory import InboxKey
    from bus.timing import MAX_INBOX_KEY_LIFETIME_MS

    d = new_directory()
    with pytest.raises(errors.DirectoryError, match="at most 31 days"):
        muk_inbox(NOW + 1, lifetime_ms=MAX_INBOX_KEY_LIFETIME_MS + 1)
    ok = decode_item(muk_inbox(NOW + 1, lifetime_ms=MAX_INBOX_KEY_LIFETIME_MS))
    longer = replace(ok.item, valid_until=ok.item.valid_until + 1)
    assert isinstance(longer, InboxKey)
    payload = msgpack.packb(longer.fields(), use_bin_type=True)
    signed = msgpack.packb([2, 3, payload, MUK.signing.sign(b"blo-bus/v2 directory inbox key\x00" + payload)])
    err = rejected(d, signed)
    assert err.reason == "malformed" and "31 days" in err.message
    assert take(d, ok.raw).status == "inbox_key"  # type: ignore[union-attr]


def test_inbox_key_from_the_future_is_refused() -> None:
    d = new_directory()
    assert rejected(d, muk_inbox(NOW + DAY), at=NOW).reason == "from_future"


def test_the_current_inbox_key_is_the_newest_valid_one_signed_by_the_current_record() -> None:
    d = new_directory()  # TH-MUK's inbox key of NOW
    week = 7 * DAY
    keys = {at: decode_item(muk_inbox(at)).item for at in (NOW, NOW + week, NOW + 2 * week)}
    for at in (NOW + 2 * week, NOW + week):  # any order
        take(d, muk_inbox(at))
    assert current_inbox(d, "TH-MUK", NOW + 1) == keys[NOW].box_kid
    assert current_inbox(d, "TH-MUK", NOW + week + 1) == keys[NOW + week].box_kid
    to_muk = d.recipient_keys("TH-MUK", NOW + 2 * week)
    assert to_muk.box_kid == keys[NOW + 2 * week].box_kid and to_muk.valid_until == NOW + 2 * week + 30 * DAY
    # Its centre revokes the newest: senders fall back to the one before.
    take(d, revoke_key(TH_C, "TH-MUK", keys[NOW + 2 * week].box_kid, revoked_at=NOW + 2 * week + 1, reason="leak"))
    assert current_inbox(d, "TH-MUK", NOW + 2 * week + 1) == keys[NOW + week].box_kid
    assert d.sender_keys("TH-MUK", MUK.signing.kid).revoked_at is None  # type: ignore[union-attr]  # an inbox key only
    assert [k.valid_from for k in d.inbox_keys("TH-MUK")] == [NOW, NOW + week, NOW + 2 * week]


def test_sealing_to_an_office_whose_inbox_keys_expired_says_since_when() -> None:
    d = new_directory()
    with pytest.raises(errors.RecipientKeyInvalid) as info:
        d.recipient_keys("LA-SVK", NOW + 40 * DAY)
    message = info.value.message
    assert "LA-SVK has no inbox key valid now" in message
    assert "not been online since 2026-11-18T" in message and "until it comes back" in message


def test_an_office_that_never_published_an_inbox_key_cannot_be_sealed_to_and_says_why() -> None:
    d = new_directory()
    take(d, enrol(identity("TH-NKP"), TH_C))
    with pytest.raises(errors.RecipientKeyInvalid, match="TH-NKP has no inbox key signed with its current key yet"):
        d.recipient_keys("TH-NKP", NOW + 1)


def test_an_inbox_key_waits_for_its_record_and_keeps_its_witness_time() -> None:
    d = Directory({"TH-TCCC": TH_C.signing.public})
    nkp = identity("TH-NKP")
    early = inbox_key(nkp, now_ms=NOW + HOUR)[0]
    assert take(d, early).status == "waiting" and d.waiting == 1  # type: ignore[union-attr]
    assert take(d, early) is None and d.waiting == 1
    change = take(d, enrol(nkp, TH_C))
    assert change is not None and [c.status for c in change.released] == ["inbox_key"] and d.waiting == 0
    [held] = [h for h in d.held_items() if h.raw == early]
    assert held.witnessed_at == NOW + HOUR
    # Released but refused: counted, reported with its reason, not held.
    later = Directory({"TH-TCCC": TH_C.signing.public})
    take(later, revoke_key(TH_C, "TH-NKP", nkp.signing.kid, revoked_at=NOW, reason="stolen"))
    take(later, early)
    change = take(later, enrol(nkp, TH_C))
    assert [(c.status, c.error.reason) for c in change.released] == [("refused", "signer_revoked")]  # type: ignore[union-attr]
    assert later.inbox_keys("TH-NKP") == [] and later.rejected["signer_revoked"] == 1


def test_waiting_inbox_keys_are_bounded() -> None:
    d = Directory({"TH-TCCC": TH_C.signing.public}, max_waiting=3)
    for n, office in enumerate(("TH-AAA", "TH-BBB", "TH-CCC")):
        take(d, inbox_key(identity(office), now_ms=NOW + n)[0])
    err = rejected(d, inbox_key(identity("TH-DDD"), now_ms=NOW)[0])
    assert err.reason == "too_many_waiting" and d.waiting == 3


def test_a_different_item_for_a_held_inbox_key_is_refused() -> None:
    from bus.directory import sign_inbox_key

    d = new_directory()
    held = decode_item(muk_inbox(NOW)).item
    other = sign_inbox_key(replace(held, valid_until=held.valid_until - 1), MUK.signing)
    assert rejected(d, other).reason == "inbox_key_conflict"


def test_an_office_holds_at_most_64_inbox_keys_the_newest() -> None:
    from bus.directory import MAX_INBOX_KEYS_PER_OFFICE

    d = new_directory()
    for n in range(1, MAX_INBOX_KEYS_PER_OFFICE + 2):
        take(d, muk_inbox(NOW + n))
    kept = d.inbox_keys("TH-MUK")
    assert len(kept) == MAX_INBOX_KEYS_PER_OFFICE and kept[0].valid_from == NOW + 2
    assert take(d, muk_inbox(NOW)) is None  # older than all kept: not held again


def test_a_node_lists_its_own_published_inbox_keys() -> None:
    d = new_directory()
    take(d, muk_inbox(NOW + DAY))
    assert [(k.office_id, k.valid_from) for k in d.inbox_keys("TH-MUK")] == [("TH-MUK", NOW), ("TH-MUK", NOW + DAY)]
    assert d.find_key(d.inbox_keys("TH-MUK")[1].box_kid).office_id == "TH-MUK"  # type: ignore[union-attr]
    assert d.inbox_keys("TH-NKP") == []


def test_the_local_copy_order_rebuilds_the_same_inbox_keys_from_any_order() -> None:
    d = new_directory()
    take(d, muk_inbox(NOW + DAY))
    take(d, revoke_key(TH_C, "TH-MUK", decode_item(muk_inbox(NOW)).item.box_kid, revoked_at=NOW + 2, reason="x"))
    for items in (d.held_items(), list(reversed(d.held_items()))):
        copy = Directory({"TH-TCCC": TH_C.signing.public, "LA-TCCC": LA_C.signing.public})
        for h in items:
            copy.apply(h.raw, witnessed_at=h.witnessed_at)
        assert copy.inbox_keys("TH-MUK") == d.inbox_keys("TH-MUK")
        assert copy.recipient_keys("TH-MUK", NOW + DAY) == d.recipient_keys("TH-MUK", NOW + DAY)
        assert [(h.raw, h.witnessed_at) for h in copy.held_items()] == [(h.raw, h.witnessed_at) for h in d.held_items()]


# -- the format's edges (DIRECTORY.md 2, 3) -----------------------------------------------


def test_a_v1_item_is_refused_as_an_unsupported_version() -> None:
    item = decode_item(enrol(identity("TH-NKP"), TH_C))
    v1 = msgpack.packb([1, 1, item.payload, item.signature], use_bin_type=True)
    err = rejected(new_directory(), v1, at=NOW)
    assert err.reason == "unsupported_version" and "upgrade" in err.message
    longer = msgpack.packb([3, 1, item.payload, item.signature, "more"], use_bin_type=True)
    assert rejected(new_directory(), longer, at=NOW).reason == "unsupported_version"


@pytest.mark.parametrize("depth", [3, 50, 5000])
def test_items_nested_deeper_than_the_format_are_malformed(depth: int) -> None:
    fields = decode_item(enrol(identity("TH-NKP"), TH_C)).item.fields()
    # The payload array (depth 1) holds regions (depth 2) holding arrays down to ``depth``.
    regions = b"\x91" * (depth - 1) + msgpack.packb("mekong")
    packed = [regions if i == 4 else msgpack.packb(f, use_bin_type=True) for i, f in enumerate(fields)]
    payload = b"\xdc\x00\x10" + b"".join(packed)
    data = msgpack.packb([2, 1, payload, TH_C.signing.sign(b"blo-bus/v2 directory record\x00" + payload)])
    assert rejected(new_directory(), data, at=NOW).reason == "malformed"


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("ด่านมุกดาหาร", True),  # Thai, with combining vowels (Mn): printable
        ("Mukdahan BLO", True),
        ("", False),
        (" Mukdahan", False),
        ("Mukdahan ", False),
        ("Muk\u200bdahan", False),  # Cf: zero width space
        ("Muk\u00a0dahan", False),  # Zs other than U+0020
        ("Muk\ndahan", False),  # Cc
        ("Muk\ue000", False),  # Co
        ("x" * 201, False),
        ("x" * 200, True),
    ],
)
def test_text_fields_are_1_to_n_printable_characters_without_outer_spaces(name: str, ok: bool) -> None:
    req = read_request(request(identity("TH-NKP")))
    record = decode_item(enrol_office(req, TH_C, sequence=1, now_ms=NOW, valid_until=None)).item
    if ok:
        assert decode_item(sign_record(replace(record, name=name), TH_C.signing)).item.name == name  # type: ignore[union-attr]
        return
    with pytest.raises(errors.DirectoryError) as info:
        sign_record(replace(record, name=name), TH_C.signing)
    assert info.value.reason == "malformed"
    payload = msgpack.packb(replace(record, name=name).fields(), use_bin_type=True)
    forged = msgpack.packb([2, 1, payload, TH_C.signing.sign(b"blo-bus/v2 directory record\x00" + payload)])
    assert rejected(new_directory(), forged, at=NOW).reason == "malformed"
    revocation = Revocation("TH-MUK", MUK.signing.kid, NOW, name, "TH-TCCC", TH_C.signing.kid)
    if name != "x" * 201:  # 201 is fine for a reason (up to 500)
        with pytest.raises(errors.DirectoryError):
            sign_revocation(revocation, TH_C.signing)


INBOX_FIELDS = decode_item(muk_inbox(NOW)).item.fields()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.booleans(), st.integers(-1, 1 << 49), st.binary(max_size=40), st.text(max_size=20)),
        min_size=0,
        max_size=9,
    )
    | st.builds(lambda i, v: [*INBOX_FIELDS[:i], v, *INBOX_FIELDS[i + 1 :]], st.integers(0, 6), st.from_type(object))
)
def test_inbox_key_payloads_of_any_shape_give_only_directory_errors(fields: list) -> None:
    try:
        payload = msgpack.packb(fields, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return  # not even msgpack
    data = msgpack.packb([2, 3, payload, MUK.signing.sign(b"blo-bus/v2 directory inbox key\x00" + payload)])
    d = new_directory()
    try:
        change = d.apply(data, witnessed_at=NOW + 1)
    except errors.DirectoryError:
        return
    assert fields == INBOX_FIELDS or change is None or change.status in ("inbox_key", "waiting")
    assert decode_item(data).item.fields() == fields
