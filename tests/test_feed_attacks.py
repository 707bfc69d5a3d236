"""Feeds under compromise, pure (no NATS): each test is named after an attack of
schemas/TRUST.md section 6 (or a rule of schemas/FEEDS.md that stops one) and fails on
the v1 feed code, which judged items at the time their signer wrote, let any key holder
post under any epoch it held, and wrapped grants between the centre's static key and
the member's."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bus import errors
from bus.directory import Directory, centre_self_record, revoke_key
from bus.envelope import FeedRecipient, Opened, Opener, Sealer
from bus.feeds import (
    EpochRecord,
    FeedKeyring,
    FeedOwner,
    Grant,
    decode_item,
    epoch_hash,
    key_check,
    make_grant,
    sign_epoch,
    sign_grant,
    unwrap_grant,
)
from bus.keys import BoxKeyPair, Identity, PeerKeys, SigningKeyPair
from bus.testing import DeterministicRng
from bus.timing import EPOCH_GRACE_MS, EPOCH_KEY_KEPT_MS, REVOCATION_GRACE_MS
from tests.feed_helpers import (
    ANCHORS,
    FEED,
    HOUR,
    LA_C,
    MUK,
    NKP,
    SVK,
    TH_C,
    THK,
    YEAR,
    apply_inbox_keys,
    enrol,
    new_directory,
)
from tests.helpers import NOW, bulletin

MINUTE = 60_000


def rng(seed: str) -> DeterministicRng:
    return DeterministicRng(seed)


def ring_of(who: Identity, d: Directory, **kwargs) -> FeedKeyring:
    return FeedKeyring.for_identity(who, d, **kwargs)


def take(ring: FeedKeyring, *items: bytes, at: int) -> None:
    for item in items:
        ring.apply(item, witnessed_at=at)


def seal_on_feed(sender: Identity, epoch: int, key: bytes, *, at: int, n: int = 0) -> bytes:
    b = bulletin(sender.office_id, rng_seed=f"attack-{sender.office_id}-{n}", now=at)
    return Sealer(sender).seal(b, [FeedRecipient(FEED, epoch, key)], now_ms=at, rng=rng(f"seal-{n}"))


def opened_by(who: Identity, ring: FeedKeyring, d: Directory, sealed: bytes, *, stored: int) -> Opened:
    return Opener.for_identity(who, d, feed_keys=ring.feed_keys).open(sealed, witnessed_at=stored)


class Offline:
    """A directory in which some offices have no usable inbox key right now (switched off
    for longer than an inbox key lives): ``recipient_keys`` refuses them as the directory
    does a key past its lifetime."""

    def __init__(self, directory: Directory, *offline: str) -> None:
        self.directory = directory
        self.offline = set(offline)

    def recipient_keys(self, office_id: str, now_ms: int) -> PeerKeys:
        if office_id in self.offline:
            raise errors.RecipientKeyInvalid(f"cannot seal to {office_id}: its inbox key expired")
        return self.directory.recipient_keys(office_id, now_ms)


class InboxKeys:
    """A directory answering ``recipient_keys`` with each office's current *inbox* key (a
    short-lived X25519 key, not the identity's), as DIRECTORY.md v2 does."""

    def __init__(self, directory: Directory, inboxes: dict[str, BoxKeyPair]) -> None:
        self.directory = directory
        self.inboxes = inboxes

    def recipient_keys(self, office_id: str, now_ms: int) -> PeerKeys:
        keys = self.directory.recipient_keys(office_id, now_ms)
        inbox = self.inboxes[office_id]
        return replace(keys, box_public=inbox.public, box_kid=inbox.kid)


# -- T3 on feed items --------------------------------------------------------------------


def _thief_epoch(first: bytes, members: tuple[str, ...], *, signed_at: int, key: bytes) -> bytes:
    """Epoch 2 of the feed as a thief with TH-TCCC's signing key makes it: its own key, any
    members, dated whenever it likes."""
    previous = decode_item(first)
    record = EpochRecord(
        feed=FEED, epoch=2, previous=previous.hash, owner="TH-TCCC", owner_sign_kid=TH_C.signing.kid,
        created_at=signed_at, reason="manual", countries=tuple(sorted({m[:2] for m in members})),
        members=members, writers=(), key_check=key_check(FEED, 2, key),
    )  # fmt: skip
    return sign_epoch(record, TH_C.signing)


def test_revoked_centre_key_cannot_backdate_feed_items() -> None:
    """A thief holds TH-TCCC's signing key; the centre revokes it at R. The thief signs an
    epoch record (with a key of its choosing) and a grant, both dated just before R, and
    stores them after R: members refuse both, whatever time they carry."""
    d = new_directory()
    owner = FeedOwner(TH_C)
    first = owner.create(FEED, ["TH-MUK", "LA-SVK"], d, now_ms=NOW, rng=rng("1"))
    revoked_at = NOW + HOUR
    d.apply(revoke_key(TH_C, "TH-TCCC", TH_C.signing.kid, revoked_at=revoked_at, reason="key stolen"), witnessed_at=NOW)
    ring = ring_of(MUK, d)
    take(ring, *first.items(), at=NOW + 1000)  # stored long before the revocation: stands
    thief_key = bytes(range(32))
    backdated = revoked_at - 1
    record = _thief_epoch(first.record, ("LA-SVK", "TH-MUK"), signed_at=backdated, key=thief_key)
    # The thief's grant of its key to TH-MUK, also backdated (made as the owner makes grants).
    grant = make_grant(
        TH_C, decode_item(record), d.recipient_keys("TH-MUK", NOW), thief_key, now_ms=backdated, rng=rng("g")
    )
    stored = revoked_at + REVOCATION_GRACE_MS
    for item in (record, grant):
        with pytest.raises(errors.FeedError) as info:
            ring.apply(item, witnessed_at=stored)
        assert info.value.reason == "signer_key_invalid" and "revoked" in info.value.message
    assert ring.current_epoch(FEED) == 1 and ring.feed_keys == {(FEED, 1): first.epoch_key}
    # Inside the grace (clock differences between the centre and the servers) it stands:
    # the grace is stated, not open-ended.
    late = ring_of(MUK, d)
    take(late, *first.items(), at=NOW + 1000)
    take(late, record, grant, at=stored - 1)
    assert late.feed_keys[(FEED, 2)] == thief_key


def test_feed_items_a_later_revocation_refuses_are_dropped_with_their_keys() -> None:
    """The thief's items reached a member before the revocation did: when it arrives, the
    member drops the forged epoch (and every one after it) with its key."""
    d = new_directory()
    owner = FeedOwner(TH_C)
    first = owner.create(FEED, ["TH-MUK"], d, now_ms=NOW, rng=rng("1"))
    revoked_at = NOW + HOUR
    thief_key = bytes(range(32))
    record = _thief_epoch(first.record, ("TH-MUK",), signed_at=revoked_at - 1, key=thief_key)
    grant = make_grant(
        TH_C, decode_item(record), d.recipient_keys("TH-MUK", NOW), thief_key, now_ms=revoked_at - 1, rng=rng("g")
    )
    third = replace(
        decode_item(record).item,
        epoch=3,
        previous=epoch_hash(decode_item(record).payload),
        key_check=key_check(FEED, 3, thief_key),
    )
    ring = ring_of(MUK, d)
    dropped = []
    ring.add_listener(lambda c: dropped.append((c.status, c.epoch)) if c.status == "dropped" else None)
    take(ring, *first.items(), at=NOW + 1000)
    take(ring, record, grant, sign_epoch(third, TH_C.signing), at=revoked_at + HOUR)
    assert ring.current_epoch(FEED) == 3 and ring.feed_keys[(FEED, 2)] == thief_key
    d.apply(revoke_key(TH_C, "TH-TCCC", TH_C.signing.kid, revoked_at=revoked_at, reason="key stolen"), witnessed_at=NOW)
    changes = ring.recheck()
    assert sorted(dropped) == [("dropped", 2), ("dropped", 3)]  # record 2 (its grant and key with it), record 3
    assert all(c.error is not None and c.error.reason == "signer_key_invalid" for c in changes)
    assert ring.current_epoch(FEED) == 1 and ring.feed_keys == {(FEED, 1): first.epoch_key}
    assert [raw for raw, _ in ring.signed_items()] == first.items()  # the local copy forgets them too


# -- who may post, under which epoch (FEEDS.md 6.2, 7.2) ---------------------------------


def test_removed_member_cannot_post_under_its_last_epoch() -> None:
    """LA-SVK, a writer, is removed at epoch 2. It keeps epoch 1's key and seals under it:
    the envelope opens (the key is right), and the feed's rule refuses it by witness time."""
    d = new_directory()
    owner = FeedOwner(TH_C)
    first = owner.create(FEED, ["TH-MUK", "LA-SVK"], d, now_ms=NOW, rng=rng("1"), writers=["LA-SVK"])
    second = owner.remove_member(FEED, "LA-SVK", d, now_ms=NOW + HOUR, rng=rng("2"))
    muk = ring_of(MUK, d)
    take(muk, *first.items(), at=NOW + 1000)
    epoch_2_stored = NOW + HOUR + 500
    take(muk, *second.items(), at=epoch_2_stored)
    # After its removal, dated before it: sent_at is the thief's to choose, the stored time is not.
    stored = epoch_2_stored + EPOCH_GRACE_MS
    sealed = seal_on_feed(SVK, 1, first.epoch_key, at=NOW + 2000)
    opened = opened_by(MUK, muk, d, sealed, stored=stored)  # the envelope alone would believe it
    via = opened.opened_via
    assert (via.id, via.ref, opened.bulletin.sender) == (FEED, 1, "LA-SVK")
    with pytest.raises(errors.StaleEpoch) as info:
        muk.check_post(via.id, via.ref, opened.bulletin.sender, stored)
    assert info.value.reason == "stale_epoch" and "epoch 2" in info.value.message
    # What was in flight when epoch 2 was stored (within the grace) still stands.
    muk.check_post(FEED, 1, "LA-SVK", stored - 1)
    # And the removed member is no writer of epoch 2 (it holds no key of it anyway).
    with pytest.raises(errors.NotAWriter):
        muk.check_post(FEED, 2, "LA-SVK", stored)


def test_member_without_post_rights_cannot_post() -> None:
    """TH-NKP reads the feed but may not post: its bulletin opens (it holds the key) and
    every member refuses it. The owner and a writer post."""
    d = new_directory()
    issue = FeedOwner(TH_C).create(
        FEED, ["TH-MUK", "TH-NKP", "LA-SVK"], d, now_ms=NOW, rng=rng("1"), writers=["TH-MUK"]
    )
    svk = ring_of(SVK, d)
    take(svk, *issue.items(), at=NOW + 1000)
    sealed = seal_on_feed(NKP, 1, issue.epoch_key, at=NOW + 2000)
    opened = opened_by(SVK, svk, d, sealed, stored=NOW + 2100)
    with pytest.raises(errors.NotAWriter) as info:
        svk.check_post(FEED, opened.opened_via.ref, opened.bulletin.sender, NOW + 2100)
    assert info.value.reason == "not_a_writer" and "TH-NKP" in info.value.message
    for sender in ("TH-MUK", "TH-TCCC"):
        svk.check_post(FEED, 1, sender, NOW + 2100)
    nkp = ring_of(NKP, d)
    take(nkp, *issue.items(), at=NOW + 1000)
    with pytest.raises(errors.FeedPostForbidden, match="without post rights"):
        nkp.post_epoch(FEED, "TH-NKP")  # and its own node does not post it in the first place


def test_post_rights_change_with_a_new_epoch_and_are_judged_per_epoch() -> None:
    d = new_directory()
    owner = FeedOwner(TH_C)
    first = owner.create(FEED, ["TH-MUK", "TH-NKP"], d, now_ms=NOW, rng=rng("1"))
    second = owner.set_writers(FEED, ["TH-NKP"], d, now_ms=NOW + HOUR, rng=rng("2"))
    assert decode_item(second.record).item.reason == "writers_changed" and second.epoch_key != first.epoch_key
    ring = ring_of(MUK, d)
    take(ring, *first.items(), at=NOW + 1000)
    take(ring, *second.items(), at=NOW + HOUR + 1000)
    ring.check_post(FEED, 2, "TH-NKP", NOW + HOUR + 2000)
    with pytest.raises(errors.NotAWriter):
        ring.check_post(FEED, 1, "TH-NKP", NOW + 2000)  # it had no post rights in epoch 1
    with pytest.raises(errors.ValidationError, match="must be members"):
        owner.set_writers(FEED, ["LA-SVK"], d, now_ms=NOW + HOUR, rng=rng("3"))
    third = owner.remove_member(FEED, "TH-NKP", d, now_ms=NOW + 2 * HOUR, rng=rng("4"))
    assert decode_item(third.record).item.writers == ()  # a removed member leaves the writers


def test_sender_waits_for_the_new_epoch_rather_than_post_under_the_old() -> None:
    """TH-MUK holds epoch 1's key; epoch 2 (LA-SVK removed) has arrived, its grant not yet.
    Posting under epoch 1 would hand LA-SVK the bulletin: the sender waits instead."""
    d = new_directory()
    owner = FeedOwner(TH_C)
    first = owner.create(FEED, ["TH-MUK", "LA-SVK"], d, now_ms=NOW, rng=rng("1"), writers=["TH-MUK", "LA-SVK"])
    muk, svk = ring_of(MUK, d), ring_of(SVK, d)
    for ring in (muk, svk):
        take(ring, *first.items(), at=NOW + 1000)
    assert muk.post_epoch(FEED, "TH-MUK") == 1 and svk.post_epoch(FEED, "LA-SVK") == 1
    second = owner.remove_member(FEED, "LA-SVK", d, now_ms=NOW + HOUR, rng=rng("2"))
    for ring in (muk, svk):
        take(ring, second.record, at=NOW + HOUR + 100)
    # The newest epoch is 2, whose key has not arrived: the sender waits for it (the node
    # holds the copy), never seals under epoch 1, whose key it holds.
    assert muk.post_epoch(FEED, "TH-MUK") == 2
    assert (FEED, 2) not in muk.feed_keys and (FEED, 1) in muk.feed_keys
    with pytest.raises(errors.FeedPostForbidden, match="not a member"):
        svk.post_epoch(FEED, "LA-SVK")
    take(muk, second.grant_for("TH-MUK"), at=NOW + HOUR + 200)
    assert muk.post_epoch(FEED, "TH-MUK") == 2
    # The owner seals under its newest epoch as soon as it holds its own record.
    centre = ring_of(TH_C, d, feed_keys=dict(owner.epoch_keys()))
    for record in owner.record_items(FEED):
        centre.apply(record, witnessed_at=decode_item(record).signed_at)
    assert centre.post_epoch(FEED, "TH-TCCC") == 2
    with pytest.raises(errors.FeedPostForbidden, match="holds no record"):
        centre.post_epoch("no-such-feed", "TH-TCCC")


# -- what stolen secrets open ------------------------------------------------------------


def test_stolen_centre_secrets_open_no_epoch_created_after_rotation() -> None:
    """A thief copies TH-TCCC's identity secrets (signing and encryption) and reads the
    public bucket. No grant opens with them (each is wrapped from a one-time key to the
    member's inbox key); after the centre rotates its identity keys, the owner state it
    writes opens with none of the stolen secrets, and its new epochs are in nothing the
    thief can open."""
    d = Directory(
        {
            "TH-TCCC": (TH_C.signing.public, SigningKeyPair.generate(rng("new sign")).public),
            "LA-TCCC": ANCHORS["LA-TCCC"],
        }
    )
    d.apply(centre_self_record(TH_C, name="centre", now_ms=NOW - HOUR, valid_until=NOW + YEAR), witnessed_at=NOW)
    d.apply(centre_self_record(LA_C, name="centre", now_ms=NOW - HOUR, valid_until=NOW + YEAR), witnessed_at=NOW)
    for office, centre in ((MUK, TH_C), (NKP, TH_C), (SVK, LA_C), (THK, LA_C)):
        d.apply(enrol(office, centre), witnessed_at=NOW)
    apply_inbox_keys(d)
    owner = FeedOwner(TH_C)
    first = owner.create(FEED, ["TH-MUK", "LA-SVK"], d, now_ms=NOW, rng=rng("1"))
    stolen = TH_C  # everything the centre's key file holds
    for member, grant in first.grants:
        g = decode_item(grant).item
        assert isinstance(g, Grant)
        for box in stolen.box_keys:
            with pytest.raises(errors.FeedError) as info:
                unwrap_grant(g, box)
            assert info.value.reason == "wrap_failed", member
    # The centre rotates both identity keys (the old box key kept only to read old state).
    rotated = Identity(
        "TH-TCCC", SigningKeyPair.generate(rng("new sign")), BoxKeyPair.generate(rng("new box")), old_box=(TH_C.box,)
    )
    d.apply(centre_self_record(rotated, name="centre", now_ms=NOW + HOUR, valid_until=NOW + YEAR, sequence=2), witnessed_at=NOW + HOUR)
    restarted = FeedOwner.from_bytes(owner.to_bytes(rng=rng("state 1")), rotated)
    second = restarted.rotate(FEED, d, now_ms=NOW + 2 * HOUR, rng=rng("2"), reason="manual")
    state = restarted.to_bytes(rng=rng("state 2"))
    with pytest.raises(errors.KeyStoreError, match="does not hold"):
        FeedOwner.from_bytes(state, stolen)  # the new state is under the new key only
    for _, grant in second.grants:
        for box in stolen.box_keys:
            with pytest.raises(errors.FeedError):
                unwrap_grant(decode_item(grant).item, box)
    old_copy = FeedOwner.from_bytes(owner.to_bytes(rng=rng("state 1")), stolen)  # what the thief could read
    assert second.epoch_key not in old_copy.epoch_keys().values()
    # The new epoch is real: a member opens it, and it is signed by the new key.
    ring = ring_of(MUK, d)
    take(ring, *first.items(), at=NOW + 1000)
    take(ring, *second.items(), at=NOW + 2 * HOUR + 1000)
    assert ring.feed_keys[(FEED, 2)] == second.epoch_key
    assert decode_item(second.record).item.owner_sign_kid == rotated.signing.kid


def test_grants_are_wrapped_to_the_members_inbox_key_from_a_fresh_one_time_key() -> None:
    d = new_directory()
    inboxes = {"TH-MUK": BoxKeyPair.generate(rng("muk inbox")), "LA-SVK": BoxKeyPair.generate(rng("svk inbox"))}
    keys = InboxKeys(d, inboxes)
    issue = FeedOwner(TH_C).create(FEED, ["TH-MUK", "LA-SVK"], keys, now_ms=NOW, rng=rng("1"))
    grants = {m: decode_item(g).item for m, g in issue.grants}
    assert grants["TH-MUK"].member_inbox_kid == inboxes["TH-MUK"].kid != MUK.box.kid
    assert grants["TH-MUK"].ephemeral_public != grants["LA-SVK"].ephemeral_public  # one per grant
    assert TH_C.box.public not in (g.ephemeral_public for g in grants.values())
    ring = FeedKeyring("TH-MUK", {inboxes["TH-MUK"].kid: inboxes["TH-MUK"]}, d)
    take(ring, *issue.items(), at=NOW + 1000)
    assert ring.feed_keys == {(FEED, 1): issue.epoch_key}
    # The office's identity encryption key opens none of it (it wraps nothing in v2).
    identity_only = ring_of(MUK, d)
    take(identity_only, issue.record, at=NOW + 1000)
    with pytest.raises(errors.FeedError) as info:
        identity_only.apply(issue.grant_for("TH-MUK"), witnessed_at=NOW + 1000)
    assert info.value.reason == "unknown_inbox_key"
    with pytest.raises(errors.FeedError) as info:
        unwrap_grant(grants["TH-MUK"], MUK.box)
    assert info.value.reason == "wrap_failed"


# -- members that cannot be reached ------------------------------------------------------


def test_a_member_offline_without_an_inbox_key_does_not_block_removal_of_another() -> None:
    d = new_directory()
    owner = FeedOwner(TH_C)
    owner.create(FEED, ["TH-MUK", "TH-NKP", "LA-SVK"], d, now_ms=NOW, rng=rng("1"))
    # LA-SVK has been switched off longer than an inbox key lives; TH-NKP must go now.
    removal = owner.remove_member(FEED, "TH-NKP", Offline(d, "LA-SVK"), now_ms=NOW + HOUR, rng=rng("2"))
    assert removal.epoch == 2 and decode_item(removal.record).item.members == ("LA-SVK", "TH-MUK")
    assert [m for m, _ in removal.grants] == ["TH-MUK"] and removal.ungranted == ("LA-SVK",)
    assert owner.ungranted(FEED) == ("LA-SVK",)
    # An office being added must be reachable now: nothing changes otherwise.
    with pytest.raises(errors.RecipientKeyInvalid, match="LA-THK"):
        owner.add_member(FEED, "LA-THK", Offline(d, "LA-THK"), now_ms=NOW + HOUR, rng=rng("3"))
    assert owner.current_epoch(FEED) == 2
    # LA-SVK is back with an inbox key: it is granted the current epoch, nothing else changes.
    again = owner.regrant(FEED, d, now_ms=NOW + 2 * HOUR, rng=rng("4"), offices=owner.ungranted(FEED))
    assert again.epoch == 2 and again.record == removal.record and [m for m, _ in again.grants] == ["LA-SVK"]
    assert again.ungranted == () and owner.ungranted(FEED) == ()
    svk = ring_of(SVK, d)
    take(svk, *owner.record_items(FEED), again.grant_for("LA-SVK"), at=NOW + 2 * HOUR)
    assert svk.feed_keys[(FEED, 2)] == removal.epoch_key


# -- how long keys are kept (FEEDS.md 7.3) -----------------------------------------------


def test_a_member_erases_an_epoch_key_once_kept_long_enough_after_the_next_epoch() -> None:
    d = new_directory()
    owner = FeedOwner(TH_C)
    first = owner.create(FEED, ["TH-MUK"], d, now_ms=NOW, rng=rng("1"))
    second = owner.rotate(FEED, d, now_ms=NOW + HOUR, rng=rng("2"))
    ring = ring_of(MUK, d)
    take(ring, *first.items(), at=NOW + 1000)
    next_stored = NOW + HOUR + 1000
    take(ring, *second.items(), at=next_stored)
    assert ring.erase_expired(next_stored + EPOCH_KEY_KEPT_MS - 1) == []
    erased = ring.erase_expired(next_stored + EPOCH_KEY_KEPT_MS)
    assert [(c.status, c.epoch) for c in erased] == [("erased", 1)]
    assert ring.feed_keys == {(FEED, 2): second.epoch_key}  # the newest key is never erased
    assert first.grant_for("TH-MUK") not in [raw for raw, _ in ring.signed_items()]
    # The bucket still holds the old grant: it is not taken again.
    assert ring.apply(first.grant_for("TH-MUK"), witnessed_at=NOW + 1000) == []
    assert (FEED, 1) not in ring.feed_keys and not ring.key_may_arrive(FEED, 1)
    # Nor after a restart from the local copy and the bucket, once the time is known.
    again = ring_of(MUK, d)
    for raw, w in ring.signed_items():
        again.apply(raw, witnessed_at=w)
    again.erase_expired(next_stored + EPOCH_KEY_KEPT_MS)
    take(again, first.grant_for("TH-MUK"), at=NOW + 1000)
    assert again.feed_keys == {(FEED, 2): second.epoch_key}


def test_the_owner_erases_old_epoch_keys_and_its_state_keeps_the_records() -> None:
    d = new_directory()
    owner = FeedOwner(TH_C)
    first = owner.create(FEED, ["TH-MUK"], d, now_ms=NOW, rng=rng("1"))
    second = owner.rotate(FEED, d, now_ms=NOW + HOUR, rng=rng("2"))
    assert owner.erase_expired(NOW + HOUR + EPOCH_KEY_KEPT_MS - 1) == []
    assert owner.erase_expired(NOW + HOUR + EPOCH_KEY_KEPT_MS) == [(FEED, 1)]
    assert owner.epoch_keys() == {(FEED, 2): second.epoch_key}
    data = owner.to_bytes(rng=rng("state"))
    assert first.epoch_key not in data
    restored = FeedOwner.from_bytes(data, TH_C)
    assert restored.epoch_keys() == {(FEED, 2): second.epoch_key}
    assert restored.record_items(FEED) == [first.record, second.record]
    third = restored.rotate(FEED, d, now_ms=NOW + HOUR + EPOCH_KEY_KEPT_MS + 1, rng=rng("3"))
    assert third.epoch == 3 and decode_item(third.record).item.previous == epoch_hash(
        decode_item(second.record).payload
    )


def test_inbox_keys_are_in_use_while_a_grant_of_an_epoch_in_use_is_wrapped_to_them() -> None:
    d = new_directory()
    old_inbox, new_inbox = BoxKeyPair.generate(rng("inbox 1")), BoxKeyPair.generate(rng("inbox 2"))
    inboxes = {"TH-MUK": old_inbox}
    keys = InboxKeys(d, inboxes)
    owner = FeedOwner(TH_C)
    first = owner.create(FEED, ["TH-MUK"], keys, now_ms=NOW, rng=rng("1"))
    inboxes["TH-MUK"] = new_inbox  # the member made a new inbox key meanwhile
    second = owner.rotate(FEED, keys, now_ms=NOW + HOUR, rng=rng("2"))
    third = owner.rotate(FEED, keys, now_ms=NOW + 2 * HOUR, rng=rng("3"))
    ring = FeedKeyring("TH-MUK", {k.kid: k for k in (old_inbox, new_inbox)}, d)
    take(ring, *first.items(), at=NOW + 1000)
    take(ring, *second.items(), at=NOW + HOUR + 1000)
    take(ring, third.grant_for("TH-MUK"), at=NOW + 2 * HOUR + 1000)  # waiting for its record
    assert ring.inbox_kids_in_use(NOW + HOUR + 1000) == {old_inbox.kid, new_inbox.kid}
    # Once epoch 1 (the only one wrapped to the old key) is kept long enough, the old key is free.
    assert ring.inbox_kids_in_use(NOW + HOUR + 1000 + EPOCH_KEY_KEPT_MS) == {new_inbox.kid}


def test_an_inbox_key_erased_while_its_grant_waited_is_refused_not_crashed() -> None:
    d = new_directory()
    inbox = BoxKeyPair.generate(rng("inbox"))
    issue = FeedOwner(TH_C).create(FEED, ["TH-MUK"], InboxKeys(d, {"TH-MUK": inbox}), now_ms=NOW, rng=rng("1"))
    live = {inbox.kid: inbox}
    ring = FeedKeyring("TH-MUK", live, d)
    take(ring, issue.grant_for("TH-MUK"), at=NOW + 1000)
    live.clear()  # the inbox ring erased it meanwhile (it should not have: it was in use)
    changes = ring.apply(issue.record, witnessed_at=NOW + 1000)
    assert [c.status for c in changes] == ["epoch", "refused"] and changes[1].error.reason == "unknown_inbox_key"


def test_a_grant_signed_in_the_future_is_refused() -> None:
    d = new_directory()
    owner = FeedOwner(TH_C)
    issue = owner.create(FEED, ["TH-MUK"], d, now_ms=NOW, rng=rng("1"))
    g = decode_item(issue.grant_for("TH-MUK")).item
    future = sign_grant(replace(g, issued_at=NOW + 2 * YEAR), TH_C.signing)
    ring = ring_of(MUK, d)
    take(ring, issue.record, at=NOW + 1000)
    with pytest.raises(errors.FeedError) as info:
        ring.apply(future, witnessed_at=NOW + 1000)
    assert info.value.reason == "from_future"
    minute_ahead = sign_grant(replace(g, issued_at=NOW + 1000 + MINUTE), TH_C.signing)
    assert [c.status for c in ring.apply(minute_ahead, witnessed_at=NOW + 1000)] == ["key"]
