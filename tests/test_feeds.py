"""Feed epoch keys, pure (no NATS): the owner's issues, the member's checks, the chain."""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import replace

import msgpack
import nacl.bindings as nb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import errors
from bus.directory import Directory, centre_self_record, revoke_key
from bus.envelope import FeedRecipient, Opener, Sealer
from bus.feeds import (
    EPOCH_HASH_LABEL,
    GENESIS,
    GRANT_KEK_LABEL,
    KEY_CHECK_LABEL,
    REASONS,
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
)
from bus.keys import BoxKeyPair, Identity
from bus.testing import DeterministicRng, add_inbox_key
from tests.feed_helpers import FEED, HOUR, LA_C, MUK, NKP, SVK, TH_C, THK, YEAR, new_directory
from tests.helpers import NOW, bulletin, identity

#: The witness time of every item in these tests unless a test says otherwise: after every
#: operation of the owner in them (the latest is at NOW + HOUR), within the skew of none.
W = NOW + 2 * HOUR


def keyring(who: Identity, d: Directory | None = None, **kwargs) -> FeedKeyring:
    return FeedKeyring.for_identity(who, d or new_directory(), **kwargs)


def apply_all(ring: FeedKeyring, *issues, witnessed_at: int = W) -> None:
    for issue in issues:
        for item in issue.items():
            ring.apply(item, witnessed_at=witnessed_at)


def rng(seed: str = "feeds") -> DeterministicRng:
    return DeterministicRng(seed)


def new_owner(d: Directory, members=("TH-MUK", "LA-SVK"), **kwargs):
    owner = FeedOwner(TH_C)
    return owner, owner.create(FEED, members, d, now_ms=NOW, rng=rng(), **kwargs)


def sealed_to_feed(epoch: int, key: bytes, n: int = 0) -> bytes:
    b = bulletin("TH-TCCC", rng_seed=f"feed-bulletin-{n}", now=NOW + n)
    return Sealer(TH_C).seal(b, [FeedRecipient(FEED, epoch, key)], now_ms=NOW + n + 1, rng=rng(f"seal-{n}"))


def opener(who: Identity, ring: FeedKeyring, d: Directory) -> Opener:
    return Opener.for_identity(who, d, feed_keys=ring.feed_keys)


# -- the owner's issues and the members' keys -------------------------------------------


def test_every_member_of_a_new_feed_gets_the_same_epoch_key_and_opens_its_bulletins() -> None:
    d = new_directory()
    owner, issue = new_owner(d)
    assert issue.epoch == 1 and sorted(m for m, _ in issue.grants) == ["LA-SVK", "TH-MUK"]
    sealed = sealed_to_feed(1, issue.epoch_key)
    for who in (MUK, SVK):
        ring = keyring(who, d)
        apply_all(ring, issue)
        assert ring.feed_keys == {(FEED, 1): issue.epoch_key}
        assert ring.member_feeds() == [FEED] and ring.current_epoch(FEED) == 1
        assert ring.countries(FEED) == ("LA", "TH") and ring.members(FEED) == ("LA-SVK", "TH-MUK")
        assert opener(who, ring, d).open(sealed, witnessed_at=W).bulletin.sender == "TH-TCCC"
    assert owner.epoch_keys() == {(FEED, 1): issue.epoch_key}


def test_removed_member_gets_no_grant_and_cannot_open_the_next_epoch() -> None:
    d = new_directory()
    owner, first = new_owner(d, ("TH-MUK", "TH-NKP", "LA-SVK"))
    second = owner.remove_member(FEED, "LA-SVK", d, now_ms=NOW + 10, rng=rng("2"))
    assert second.epoch == 2 and second.grant_for("LA-SVK") is None and second.epoch_key != first.epoch_key
    rings = {who.office_id: keyring(who, d) for who in (MUK, NKP, SVK)}
    for ring in rings.values():
        apply_all(ring, first, second)
    old, new = sealed_to_feed(1, first.epoch_key, 1), sealed_to_feed(2, second.epoch_key, 2)
    for who in (MUK, NKP):
        assert opener(who, rings[who.office_id], d).open(new, witnessed_at=W).bulletin.title
    removed = opener(SVK, rings["LA-SVK"], d)
    with pytest.raises(errors.NotAddressedToUs):
        removed.open(new, witnessed_at=W)
    assert removed.open(old, witnessed_at=W).bulletin.sender == "TH-TCCC"  # what it could read before, it still can
    assert rings["LA-SVK"].epochs_with_keys(FEED) == [1] and rings["LA-SVK"].member_feeds() == []
    assert rings["LA-SVK"].record(FEED, 2).reason == "member_removed"


def test_a_bulletin_of_an_epoch_not_yet_granted_is_worth_a_retry_only_for_a_member() -> None:
    d = new_directory()
    owner, first = new_owner(d)
    second = owner.remove_member(FEED, "LA-SVK", d, now_ms=NOW + 1, rng=rng("2"))
    stays, leaves = keyring(MUK, d), keyring(SVK, d)
    for ring in (stays, leaves):
        apply_all(ring, first)
        assert ring.key_may_arrive(FEED, 2) and not ring.key_may_arrive(FEED, 1)
    stays.apply(second.record, witnessed_at=W)
    leaves.apply(second.record, witnessed_at=W)
    assert stays.key_may_arrive(FEED, 2)  # its grant is on the way
    assert not leaves.key_may_arrive(FEED, 2)  # the record does not name it: final
    stays.apply(second.grant_for("TH-MUK"), witnessed_at=W)
    assert not stays.key_may_arrive(FEED, 2) and stays.key_may_arrive(FEED, 3)


def test_a_new_member_reads_from_the_epoch_it_joined_and_nothing_before() -> None:
    d = new_directory()
    owner, first = new_owner(d)
    second = owner.add_member(FEED, "TH-NKP", d, now_ms=NOW + 10, rng=rng("2"))
    ring = keyring(NKP, d)
    apply_all(ring, first, second)
    assert ring.epochs_with_keys(FEED) == [2] and ring.member_feeds() == [FEED]
    with pytest.raises(errors.NotAddressedToUs):
        opener(NKP, ring, d).open(sealed_to_feed(1, first.epoch_key), witnessed_at=W)
    assert opener(NKP, ring, d).open(sealed_to_feed(2, second.epoch_key), witnessed_at=W).bulletin


def test_rotation_on_a_timer_gives_the_same_members_a_fresh_key_and_due_says_when() -> None:
    d = new_directory()
    owner, first = new_owner(d)
    assert owner.due(NOW + HOUR - 1, HOUR) == [] and owner.due(NOW + HOUR, HOUR) == [FEED]
    second = owner.rotate(FEED, d, now_ms=NOW + HOUR, rng=rng("2"))
    assert owner.due(NOW + HOUR + 1, HOUR) == []
    assert second.epoch_key != first.epoch_key and owner.members(FEED) == ("LA-SVK", "TH-MUK")
    assert owner.record(FEED).reason == "timer" and owner.current_epoch(FEED) == 2
    ring = keyring(MUK, d)
    apply_all(ring, first, second)
    assert ring.feed_keys == {(FEED, 1): first.epoch_key, (FEED, 2): second.epoch_key}


def test_each_record_names_the_hash_of_the_exact_bytes_of_the_one_before() -> None:
    d = new_directory()
    owner, first = new_owner(d)
    second = owner.rotate(FEED, d, now_ms=NOW + 1, rng=rng("2"))
    third = owner.add_member(FEED, "LA-THK", d, now_ms=NOW + 2, rng=rng("3"))
    records = [decode_item(i.record) for i in (first, second, third)]
    assert records[0].item.previous == GENESIS
    assert records[1].item.previous == epoch_hash(records[0].payload)
    assert records[2].item.previous == epoch_hash(records[1].payload)
    assert owner.record_items(FEED) == [first.record, second.record, third.record]


def test_remove_everywhere_starts_a_new_epoch_in_every_feed_of_a_revoked_office() -> None:
    d = new_directory()
    owner, _ = new_owner(d)
    owner.create("mekong-drugs", ["LA-SVK"], d, now_ms=NOW, rng=rng("d"))
    owner.create("th-only", ["TH-MUK"], d, now_ms=NOW, rng=rng("t"))
    issues = owner.remove_everywhere("LA-SVK", d, now_ms=NOW + 5, rng=rng("r"))
    assert sorted(i.feed for i in issues) == ["mekong-border", "mekong-drugs"]
    assert all(decode_item(i.record).item.reason == "member_revoked" for i in issues)
    assert owner.members("mekong-drugs") == () and owner.current_epoch("th-only") == 1


def test_the_owner_refuses_a_member_it_cannot_grant_and_changes_nothing() -> None:
    d = new_directory()
    owner, _ = new_owner(d)
    d.apply(revoke_key(LA_C, "LA-THK", THK.signing.kid, revoked_at=NOW, reason="laptop stolen"), witnessed_at=NOW)
    with pytest.raises(errors.RecipientKeyInvalid, match="LA-THK"):
        owner.add_member(FEED, "LA-THK", d, now_ms=NOW + 1, rng=rng())
    with pytest.raises(errors.DirectoryError, match="TH-XYZ"):
        owner.add_member(FEED, "TH-XYZ", d, now_ms=NOW + 1, rng=rng())
    assert owner.current_epoch(FEED) == 1 and owner.members(FEED) == ("LA-SVK", "TH-MUK")
    with pytest.raises(errors.ValidationError, match="already a member"):
        owner.add_member(FEED, "TH-MUK", d, now_ms=NOW + 1, rng=rng())
    with pytest.raises(errors.NotFound):
        owner.rotate("no-such-feed", d, now_ms=NOW + 1, rng=rng())


def test_a_feed_scoped_to_thailand_never_takes_a_lao_member() -> None:
    d = new_directory()
    owner = FeedOwner(TH_C)
    owner.create("th-only", ["TH-MUK"], d, now_ms=NOW, rng=rng(), scope=["TH"])
    with pytest.raises(errors.ValidationError, match="outside the scope"):
        owner.add_member("th-only", "LA-SVK", d, now_ms=NOW + 1, rng=rng())
    assert owner.record("th-only").countries == ("TH",)


def test_a_member_with_a_new_inbox_key_gets_a_new_grant_for_the_same_epoch() -> None:
    d = new_directory()
    owner, first = new_owner(d)
    rotated = add_inbox_key(d, MUK, now_ms=NOW + 1)  # its node made a new inbox key
    new_key = rotated.old_box[-1]
    again = owner.regrant(FEED, d, now_ms=NOW + 5, rng=rng("again"), offices=["TH-MUK"])
    assert again.epoch == 1 and again.record == first.record and again.epoch_key == first.epoch_key
    grant = decode_item(again.grant_for("TH-MUK")).item
    old_kid = decode_item(first.grant_for("TH-MUK")).item.member_inbox_kid
    assert grant.member_inbox_kid == new_key.kid != old_kid
    # Only the new key: the old grant is useless, the new one gives the same epoch key.
    only_new = FeedKeyring("TH-MUK", {new_key.kid: new_key}, d)
    only_new.apply(first.record, witnessed_at=W)
    with pytest.raises(errors.FeedError) as info:
        only_new.apply(first.grant_for("TH-MUK"), witnessed_at=W)
    assert info.value.reason == "unknown_inbox_key"
    assert [c.status for c in only_new.apply(again.grant_for("TH-MUK"), witnessed_at=W)] == ["key"]
    assert only_new.feed_keys[(FEED, 1)] == first.epoch_key
    # Current and retired keys: both grants open, the second changes nothing.
    both = keyring(rotated, d)
    apply_all(both, first)
    assert both.apply(again.grant_for("TH-MUK"), witnessed_at=W) == []
    with pytest.raises(errors.ValidationError, match="not a member"):
        owner.regrant(FEED, d, now_ms=NOW + 5, rng=rng(), offices=["TH-NKP"])


def test_owner_state_round_trips_and_the_chain_continues_after_a_restart() -> None:
    d = new_directory()
    owner, first = new_owner(d, scope=["TH", "LA"])
    second = owner.add_member(FEED, "TH-NKP", d, now_ms=NOW + 1, rng=rng("2"))
    data = owner.to_bytes(rng=rng("state"))
    assert first.epoch_key not in data and second.epoch_key not in data  # encrypted at rest
    restored = FeedOwner.from_bytes(data, TH_C)
    assert restored.epoch_keys() == owner.epoch_keys() and restored.scope(FEED) == ("LA", "TH")
    assert restored.record_items(FEED) == owner.record_items(FEED)
    third = restored.rotate(FEED, d, now_ms=NOW + 2, rng=rng("3"))
    ring = keyring(NKP, d)
    apply_all(ring, first, second, third)
    assert ring.epochs_with_keys(FEED) == [2, 3] and ring.rejected == {}


def test_owner_state_from_another_identity_or_altered_is_refused() -> None:
    d = new_directory()
    owner, _ = new_owner(d)
    data = owner.to_bytes(rng=rng("state"))
    with pytest.raises(errors.KeyStoreError, match="belongs to 'TH-TCCC'"):
        FeedOwner.from_bytes(data, LA_C)
    impostor = identity("TH-TCCC", seed="another TH centre key")
    with pytest.raises(errors.KeyStoreError, match="encryption key this identity does not hold"):
        FeedOwner.from_bytes(data, impostor)
    flipped = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(errors.KeyStoreError, match="does not decrypt"):
        FeedOwner.from_bytes(flipped, TH_C)
    # After the centre rotates its encryption key, the retired key still opens the state.
    rotated = Identity("TH-TCCC", TH_C.signing, BoxKeyPair.generate(rng("centre box 2")), old_box=(TH_C.box,))
    assert FeedOwner.from_bytes(data, rotated).epoch_keys() == owner.epoch_keys()


# -- the member's checks -----------------------------------------------------------------


def test_a_grant_for_another_member_is_ignored_without_error() -> None:
    d = new_directory()
    _, issue = new_owner(d)
    ring = keyring(SVK, d)
    ring.apply(issue.record, witnessed_at=W)
    assert ring.apply(issue.grant_for("TH-MUK"), witnessed_at=W) == []
    assert ring.feed_keys == {} and ring.rejected == {} and ring.waiting == 0


def test_a_grant_that_arrives_before_its_record_waits_for_it() -> None:
    d = new_directory()
    _, issue = new_owner(d)
    ring = keyring(MUK, d)
    heard = []
    ring.add_listener(lambda change: heard.append((change.status, change.epoch)))
    assert [c.status for c in ring.apply(issue.grant_for("TH-MUK"), witnessed_at=W)] == ["waiting"]
    assert ring.waiting == 1 and ring.feed_keys == {}
    assert [c.status for c in ring.apply(issue.record, witnessed_at=W)] == ["epoch", "key"]
    assert ring.waiting == 0 and ring.feed_keys[(FEED, 1)] == issue.epoch_key
    assert heard == [("epoch", 1), ("key", 1)]  # waiting is not a change listeners hear of


def test_items_arriving_in_any_order_give_the_same_keys() -> None:
    d = new_directory()
    owner, first = new_owner(d)
    issues = [first]
    issues.append(owner.add_member(FEED, "TH-NKP", d, now_ms=NOW + 1, rng=rng("2")))
    issues.append(owner.remove_member(FEED, "TH-MUK", d, now_ms=NOW + 2, rng=rng("3")))
    issues.append(owner.add_member(FEED, "TH-MUK", d, now_ms=NOW + 3, rng=rng("4")))
    issues.append(owner.rotate(FEED, d, now_ms=NOW + 4, rng=rng("5"), reason="manual"))
    items = [item for i in issues for item in i.items()]
    expected = {(FEED, i.epoch): i.epoch_key for i in issues if i.grant_for("TH-MUK")}
    assert sorted(e for _, e in expected) == [1, 2, 4, 5]  # not 3: removed, then added again
    shuffler = random.Random(8)
    for _ in range(20):
        shuffler.shuffle(items)
        ring = keyring(MUK, d)
        for item in items:
            ring.apply(item, witnessed_at=W)
        assert ring.feed_keys == expected and ring.waiting == 0 and ring.current_epoch(FEED) == 5


def test_a_long_history_arriving_newest_first_attaches_without_deep_recursion() -> None:
    d = new_directory()
    owner = FeedOwner(TH_C)
    records = [owner.create(FEED, [], d, now_ms=NOW, rng=rng()).record]
    records += [owner.rotate(FEED, d, now_ms=NOW + n, rng=rng(str(n))).record for n in range(1, 1500)]
    ring = keyring(MUK, d)
    for record in reversed(records[1:]):
        ring.apply(record, witnessed_at=W)
    assert ring.current_epoch(FEED) is None and ring.waiting == 1499
    assert len(ring.apply(records[0], witnessed_at=W)) == 1500 and ring.current_epoch(FEED) == 1500


def test_a_second_different_record_for_a_held_epoch_is_refused_as_a_fork_and_the_first_kept() -> None:
    d = new_directory()
    owner, first = new_owner(d)
    saved = owner.to_bytes(rng=rng("state"))
    second = owner.rotate(FEED, d, now_ms=NOW + 1, rng=rng("2"))
    # The centre restored an old copy of its state and issued epoch 2 again, differently.
    forked = FeedOwner.from_bytes(saved, TH_C).add_member(FEED, "TH-NKP", d, now_ms=NOW + 2, rng=rng("fork"))
    assert forked.epoch == 2 and forked.record != second.record
    ring = keyring(MUK, d)
    apply_all(ring, first, second)
    with pytest.raises(errors.FeedError) as info:
        ring.apply(forked.record, witnessed_at=W)
    assert info.value.reason == "feed_fork" and "forked" in info.value.message
    assert ring.record(FEED, 2) == decode_item(second.record).item and ring.rejected["feed_fork"] == 1
    # Its grant is for a record this member does not hold: refused too, the key unchanged.
    with pytest.raises(errors.FeedError) as info:
        ring.apply(forked.grant_for("TH-MUK"), witnessed_at=W)
    assert info.value.reason == "feed_fork" and ring.feed_keys[(FEED, 2)] == second.epoch_key


def test_a_record_that_does_not_follow_the_held_predecessor_is_a_fork() -> None:
    d = new_directory()
    owner, first = new_owner(d)
    real = decode_item(owner.rotate(FEED, d, now_ms=NOW + 1, rng=rng("2")).record).item
    stray = replace(real, previous=hashlib.blake2b(b"another history", digest_size=32).digest())
    ring = keyring(MUK, d)
    apply_all(ring, first)
    with pytest.raises(errors.FeedError) as info:
        ring.apply(sign_epoch(stray, TH_C.signing), witnessed_at=W)
    assert info.value.reason == "feed_fork" and ring.current_epoch(FEED) == 1


def test_two_different_records_waiting_for_the_same_predecessor_are_a_fork() -> None:
    d = new_directory()
    owner, first = new_owner(d)
    real = decode_item(owner.rotate(FEED, d, now_ms=NOW + 1, rng=rng("2")).record).item
    third = owner.rotate(FEED, d, now_ms=NOW + 2, rng=rng("3"))
    other = replace(decode_item(third.record).item, created_at=NOW + 3)
    ring = keyring(MUK, d)
    ring.apply(third.record, witnessed_at=W)
    with pytest.raises(errors.FeedError) as info:
        ring.apply(sign_epoch(other, TH_C.signing), witnessed_at=W)
    assert info.value.reason == "feed_fork"
    ring.apply(first.record, witnessed_at=W)
    ring.apply(sign_epoch(real, TH_C.signing), witnessed_at=W)
    assert ring.record(FEED, 3) == decode_item(third.record).item


def test_a_feed_record_signed_by_an_office_is_refused_as_untrusted() -> None:
    d = new_directory()
    issue = FeedOwner(MUK).create(FEED, ["LA-SVK"], d, now_ms=NOW, rng=rng())  # an office posing as owner
    ring = keyring(SVK, d)
    for item in issue.items():
        with pytest.raises(errors.FeedError) as info:
            ring.apply(item, witnessed_at=W)
        assert info.value.reason == "untrusted_signer"
    assert ring.feeds() == [] and ring.feed_keys == {}


def test_another_pinned_centre_cannot_take_over_a_feed() -> None:
    d = new_directory()
    _, first = new_owner(d)
    rival = FeedOwner(LA_C).create(FEED, ["TH-MUK", "LA-SVK"], d, now_ms=NOW + 1, rng=rng("la"))
    ring = keyring(MUK, d)
    apply_all(ring, first)
    for item in (rival.record, rival.grant_for("TH-MUK")):
        with pytest.raises(errors.FeedError) as info:
            ring.apply(item, witnessed_at=W)
        assert info.value.reason == "not_owner"
    assert ring.feed_keys == {(FEED, 1): first.epoch_key}
    # With owners pinned, the rival is refused even when it comes first.
    pinned = keyring(MUK, d, owners={FEED: "TH-TCCC"})
    with pytest.raises(errors.FeedError) as info:
        pinned.apply(rival.record, witnessed_at=W)
    assert info.value.reason == "not_owner"


def test_records_wait_until_the_directory_knows_the_centre_then_apply() -> None:
    d = new_directory(with_centres=False)  # the TH centre is pinned but its record has not arrived
    _, issue = new_owner(new_directory())
    ring = keyring(MUK, d)
    assert [c.status for c in ring.apply(issue.record, witnessed_at=W)] == ["waiting"]
    assert [c.status for c in ring.apply(issue.grant_for("TH-MUK"), witnessed_at=W)] == ["waiting"]
    assert ring.retry_held() == [] and ring.waiting == 2
    d.apply(centre_self_record(TH_C, name="centre", now_ms=NOW - HOUR, valid_until=NOW + YEAR), witnessed_at=NOW)
    assert [c.status for c in ring.retry_held()] == ["epoch", "key"]
    assert ring.waiting == 0 and ring.feed_keys[(FEED, 1)] == issue.epoch_key


def test_a_tampered_record_or_grant_is_refused_for_its_signature() -> None:
    d = new_directory()
    _, issue = new_owner(d)
    record = decode_item(issue.record)
    bigger = replace(record.item, members=("LA-SVK", "LA-THK", "TH-MUK"), countries=("LA", "TH"))
    tampered = msgpack.packb([2, 1, msgpack.packb(bigger.fields(), use_bin_type=True), record.signature])
    ring = keyring(THK, d)
    with pytest.raises(errors.FeedError) as info:
        ring.apply(tampered, witnessed_at=W)
    assert info.value.reason == "bad_signature" and ring.feeds() == []


def test_records_signed_after_the_centre_key_was_revoked_are_refused() -> None:
    d = new_directory()
    owner, first = new_owner(d)
    second = owner.rotate(FEED, d, now_ms=NOW + 100, rng=rng("2"))
    d.apply(
        revoke_key(TH_C, "TH-TCCC", TH_C.signing.kid, revoked_at=NOW + 50, reason="key compromised"), witnessed_at=NOW + 60
    )
    ring = keyring(MUK, d)
    apply_all(ring, first, witnessed_at=NOW + 10)  # signed and stored before the revocation: stands
    with pytest.raises(errors.FeedError) as info:
        ring.apply(second.record, witnessed_at=NOW + 110)  # signed after it: refused however soon it is stored
    assert info.value.reason == "signer_key_invalid" and ring.epochs_with_keys(FEED) == [1]


def test_a_grant_for_a_member_the_record_does_not_list_is_refused() -> None:
    d = new_directory()
    _, issue = new_owner(d)
    record = decode_item(issue.record)
    sneaked = make_grant(TH_C, record, d.recipient_keys("TH-NKP", NOW), issue.epoch_key, now_ms=NOW, rng=rng("x"))
    ring = keyring(NKP, d)
    ring.apply(issue.record, witnessed_at=W)
    with pytest.raises(errors.FeedError) as info:
        ring.apply(sneaked, witnessed_at=W)
    assert info.value.reason == "not_member" and ring.feed_keys == {}


def test_a_grant_of_another_key_than_the_record_commits_to_is_refused() -> None:
    d = new_directory()
    _, issue = new_owner(d)
    record = decode_item(issue.record)
    other_key = bytes(32)
    odd = make_grant(TH_C, record, d.recipient_keys("TH-MUK", NOW), other_key, now_ms=NOW, rng=rng("y"))
    ring = keyring(MUK, d)
    ring.apply(issue.record, witnessed_at=W)
    with pytest.raises(errors.FeedError) as info:
        ring.apply(odd, witnessed_at=W)
    assert info.value.reason == "key_mismatch" and ring.feed_keys == {}


def test_a_grant_whose_wrap_was_replaced_fails_to_unwrap() -> None:
    d = new_directory()
    _, issue = new_owner(d)
    grant = decode_item(issue.grant_for("TH-MUK")).item
    resigned = sign_grant(replace(grant, wrapped=bytes(48)), TH_C.signing)
    ring = keyring(MUK, d)
    ring.apply(issue.record, witnessed_at=W)
    with pytest.raises(errors.FeedError) as info:
        ring.apply(resigned, witnessed_at=W)
    assert info.value.reason == "wrap_failed"


def test_a_later_format_version_is_told_to_upgrade() -> None:
    d = new_directory()
    _, issue = new_owner(d)
    _, kind, payload, signature = msgpack.unpackb(issue.record)
    with pytest.raises(errors.FeedError) as info:
        keyring(MUK, d).apply(msgpack.packb([3, kind, payload, signature, "more"]), witnessed_at=W)
    assert info.value.reason == "unsupported_version" and "upgrade" in info.value.message


def test_the_waiting_pool_is_bounded() -> None:
    d = new_directory()
    owner, _ = new_owner(d)
    later = [owner.rotate(FEED, d, now_ms=NOW + n, rng=rng(str(n))) for n in range(1, 5)]
    ring = keyring(MUK, d, max_waiting=3)
    for issue in later[:3]:
        ring.apply(issue.record, witnessed_at=W)
    with pytest.raises(errors.FeedError) as info:
        ring.apply(later[3].record, witnessed_at=W)
    assert info.value.reason == "too_many_waiting" and ring.waiting == 3


def test_a_failing_listener_does_not_undo_the_change_or_silence_the_others() -> None:
    d = new_directory()
    _, issue = new_owner(d)
    ring = keyring(MUK, d)
    heard = []

    def broken(change) -> None:
        raise RuntimeError("listener bug")

    ring.add_listener(broken)
    ring.add_listener(lambda change: heard.append(change.status))
    for item in (issue.record, issue.grant_for("TH-MUK")):
        with pytest.raises(RuntimeError):
            ring.apply(item, witnessed_at=W)
    assert heard == ["epoch", "key"] and ring.feed_keys[(FEED, 1)] == issue.epoch_key


def test_the_signed_items_of_a_keyring_rebuild_it_exactly() -> None:
    d = new_directory()
    owner, first = new_owner(d)
    second = owner.rotate(FEED, d, now_ms=NOW + 1, rng=rng("2"))
    ring = keyring(MUK, d)
    apply_all(ring, second, first)
    copy = keyring(MUK, d)
    for item, witnessed_at in ring.signed_items():
        assert all(c.status != "waiting" for c in copy.apply(item, witnessed_at=witnessed_at))
    assert copy.feed_keys == ring.feed_keys and copy.signed_items() == ring.signed_items()


# -- the derivations, as FEEDS.md writes them --------------------------------------------


def test_derivations_follow_the_spec_byte_for_byte() -> None:
    d = new_directory()
    _, issue = new_owner(d)
    record = decode_item(issue.record)
    assert record.hash == hashlib.blake2b(EPOCH_HASH_LABEL + record.payload, digest_size=32).digest()
    expected_check = hashlib.blake2b(
        KEY_CHECK_LABEL + FEED.encode() + b"\x00" + struct.pack(">Q", 1), key=issue.epoch_key, digest_size=32
    ).digest()
    assert record.item.key_check == expected_check == key_check(FEED, 1, issue.epoch_key)
    grant: Grant = decode_item(issue.grant_for("LA-SVK")).item
    svk_inbox = next(k for k in SVK.box_keys if k.kid == grant.member_inbox_kid)  # wrapped to LA-SVK's inbox key
    shared = nb.crypto_scalarmult(svk_inbox.secret, grant.ephemeral_public)
    kek = hashlib.blake2b(
        GRANT_KEK_LABEL
        + FEED.encode()
        + b"\x00"
        + struct.pack(">Q", 1)
        + b"TH-TCCC\x00LA-SVK\x00"
        + grant.ephemeral_public
        + svk_inbox.public,
        key=shared,
        digest_size=32,
    ).digest()
    plain = nb.crypto_aead_xchacha20poly1305_ietf_decrypt(grant.wrapped, record.hash, grant.nonce, kek)
    assert plain == issue.epoch_key
    _, _, payload, signature = msgpack.unpackb(issue.grant_for("LA-SVK"))
    nb.crypto_sign_open(signature + b"blo-bus/v2 feed grant\x00" + payload, TH_C.signing.public)
    assert msgpack.unpackb(payload)[:4] == [FEED, 1, record.hash, "LA-SVK"]


def test_issues_are_deterministic_given_the_random_source() -> None:
    d = new_directory()
    a = FeedOwner(TH_C).create(FEED, ["TH-MUK"], d, now_ms=NOW, rng=rng("same"))
    b = FeedOwner(TH_C).create(FEED, ["TH-MUK"], d, now_ms=NOW, rng=rng("same"))
    assert a == b
    assert repr(a.epoch_key) not in repr(a)  # secrets stay out of logs and tracebacks


# -- decoders never leak library exceptions ----------------------------------------------

D = new_directory()
_OWNER, ISSUE = new_owner(D)
GOOD = [ISSUE.record, ISSUE.grant_for("TH-MUK")]
STATE = _OWNER.to_bytes(rng=rng("state"))
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=40),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=12)),
)
_values = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=11),
        st.dictionaries(st.one_of(st.text(max_size=8), st.binary(max_size=8)), inner, max_size=4),
    ),
    max_leaves=14,
)


def _mutate(original: bytes, data: st.DataObject) -> bytes:
    raw = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    return bytes(raw[:cut]) if data.draw(st.booleans()) else bytes(raw)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_give_only_feed_errors(data: bytes) -> None:
    with pytest.raises(errors.FeedError):
        keyring(MUK, D).apply(data, witnessed_at=W)


@FUZZ
@given(_values, st.sampled_from([1, 2]))
def test_random_msgpack_payloads_give_only_feed_errors(value, kind: int) -> None:
    payload = msgpack.packb(value, use_bin_type=True)
    for data in (msgpack.packb(value, use_bin_type=True), msgpack.packb([1, kind, payload, bytes(64)])):
        with pytest.raises(errors.FeedError):
            keyring(MUK, D).apply(data, witnessed_at=W)


@FUZZ
@given(st.sampled_from(GOOD), st.data())
def test_mutated_items_are_refused_or_decode_to_the_original(original: bytes, data: st.DataObject) -> None:
    mutated = _mutate(original, data)
    ring = keyring(MUK, D)
    if original is GOOD[1]:
        ring.apply(GOOD[0], witnessed_at=W)
    before = (dict(ring.feed_keys), ring.signed_items())
    try:
        changes = ring.apply(mutated, witnessed_at=W)
    except errors.FeedError:
        return
    if all(c.status == "waiting" for c in changes):  # e.g. a signer key id the directory does not know
        assert (ring.feed_keys, ring.signed_items()) == before  # held back, not taken
        return
    assert decode_item(mutated).item == decode_item(original).item


@settings(FUZZ, max_examples=200)
@given(st.one_of(st.binary(max_size=400), _values.map(lambda v: msgpack.packb(v, use_bin_type=True))))
def test_random_owner_state_gives_only_keystore_errors(data: bytes) -> None:
    with pytest.raises(errors.KeyStoreError):
        FeedOwner.from_bytes(data, TH_C)


@settings(FUZZ, max_examples=200)
@given(st.data())
def test_mutated_owner_state_is_refused_or_unchanged(data: st.DataObject) -> None:
    try:
        got = FeedOwner.from_bytes(_mutate(STATE, data), TH_C)
    except errors.KeyStoreError:
        return
    assert got.epoch_keys() == _OWNER.epoch_keys() and got.record_items(FEED) == _OWNER.record_items(FEED)


def _state_with_inside(value) -> bytes:
    """A state file that authenticates (encrypted with the centre's own key) around ``value``."""
    owner, box, nonce = FeedOwner(TH_C), TH_C.box, bytes(24)
    plain = msgpack.packb(value, use_bin_type=True)
    sealed = nb.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plain, owner._state_ad(box.kid), nonce, owner._state_key(box)
    )
    return msgpack.packb(["blo-feed-owner/v2", "TH-TCCC", box.kid, nonce, sealed], use_bin_type=True)


@settings(FUZZ, max_examples=150)
@given(_values)
def test_a_decrypting_owner_state_with_a_hostile_inside_gives_only_keystore_errors(value) -> None:
    try:
        FeedOwner.from_bytes(_state_with_inside(value), TH_C)
    except errors.KeyStoreError:
        pass


def test_a_decrypting_owner_state_whose_chain_or_keys_do_not_hold_is_refused() -> None:
    owner, _ = new_owner(D)
    owner.rotate(FEED, D, now_ms=NOW + 1, rng=rng("2"))
    (r1, r2), keys = owner.record_items(FEED), owner.epoch_keys()
    k1, k2 = keys[(FEED, 1)], keys[(FEED, 2)]
    for epochs in ([[r2, k2], [r1, k1]], [[r1, k2], [r2, k2]], [[r1, k1], [r1, k1]], []):
        with pytest.raises(errors.KeyStoreError, match="damaged"):
            FeedOwner.from_bytes(_state_with_inside([[FEED, None, epochs]]), TH_C)
    assert FeedOwner.from_bytes(_state_with_inside([[FEED, None, [[r1, k1], [r2, k2]]]]), TH_C).epoch_keys() == keys


def test_epoch_records_are_canonical_members_sorted_and_countries_derived() -> None:
    record = decode_item(ISSUE.record).item
    for bad in (
        replace(record, members=("TH-MUK", "LA-SVK")),  # not sorted
        replace(record, members=("LA-SVK", "LA-SVK", "TH-MUK")),  # twice
        replace(record, countries=("TH",)),  # not the members' countries
        replace(record, epoch=2),  # epoch 2 with the genesis hash and reason created
        replace(record, reason="timer"),  # epoch 1 must be created
        replace(record, feed="Mekong_Border"),
    ):
        with pytest.raises(errors.FeedError) as info:
            sign_epoch(bad, TH_C.signing)
        assert info.value.reason == "malformed"
    assert isinstance(record, EpochRecord)


_office_ids = st.from_regex(r"[A-Z]{2}-[A-Z0-9]{2,12}", fullmatch=True)
_feed_names = st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True)


@st.composite
def _records(draw: st.DrawFn) -> EpochRecord:
    members = tuple(sorted(set(draw(st.lists(_office_ids, max_size=12)))))
    writers = tuple(sorted(set(draw(st.lists(st.sampled_from(members), max_size=len(members)))))) if members else ()
    epoch = draw(st.integers(1, 2**63 - 1))
    return EpochRecord(
        feed=draw(_feed_names), epoch=epoch,
        previous=bytes(32) if epoch == 1 else draw(st.binary(min_size=32, max_size=32).filter(any)),
        owner="TH-TCCC", owner_sign_kid=TH_C.signing.kid, created_at=draw(st.integers(0, 2**48 - 1)),
        reason="created" if epoch == 1 else draw(st.sampled_from(REASONS[1:])),
        countries=tuple(sorted({m[:2] for m in members})), members=members, writers=writers,
        key_check=draw(st.binary(min_size=32, max_size=32)),
    )  # fmt: skip


@FUZZ
@given(_records())
def test_every_well_formed_v2_record_decodes_to_itself(record: EpochRecord) -> None:
    item = decode_item(sign_epoch(record, TH_C.signing))
    assert item.item == record and item.signed_at == record.created_at
    fields = msgpack.unpackb(item.payload)
    assert len(fields) == 11 and fields[9] == list(record.writers)


@FUZZ
@given(_records(), st.sampled_from(["writers", "epoch", "members"]), st.data())
def test_a_v2_record_that_breaks_one_rule_is_refused_as_malformed(record: EpochRecord, what: str, data) -> None:
    if what == "writers":
        bad = replace(record, writers=(*record.writers, "ZZ-NOTAMEMBER"))  # not a member (and out of order)
    elif what == "epoch":
        bad = replace(record, epoch=data.draw(st.sampled_from([0, -1, 2**63])))
    else:
        bad = (
            replace(record, members=record.members + record.members[:1])
            if record.members
            else replace(record, members=("th-muk",))
        )
    payload = msgpack.packb(bad.fields(), use_bin_type=True)
    with pytest.raises(errors.FeedError) as info:
        decode_item(msgpack.packb([2, 1, payload, bytes(64)], use_bin_type=True))
    assert info.value.reason == "malformed"


@settings(FUZZ, max_examples=100)
@given(st.integers(0, 3), st.data())
def test_owner_state_with_erased_keys_round_trips_and_damage_is_refused(erased: int, data: st.DataObject) -> None:
    owner = FeedOwner(TH_C)
    owner.create(FEED, ["TH-MUK"], D, now_ms=NOW, rng=rng("1"))
    for n in range(2, 6):
        owner.rotate(FEED, D, now_ms=NOW + n, rng=rng(str(n)))
    owner.erase_expired(NOW + erased + 1 + 31 * 86_400_000)  # epochs 1..erased lose their keys
    assert sorted(e for _, e in owner.epoch_keys()) == list(range(erased + 1, 6))
    state = owner.to_bytes(rng=rng("state"))
    back = FeedOwner.from_bytes(state, TH_C)
    assert back.epoch_keys() == owner.epoch_keys() and back.record_items(FEED) == owner.record_items(FEED)
    try:
        got = FeedOwner.from_bytes(_mutate(state, data), TH_C)
    except errors.KeyStoreError:
        return
    assert got.epoch_keys() == owner.epoch_keys()


def test_an_owner_state_whose_last_key_is_erased_is_refused() -> None:
    owner, _ = new_owner(D)
    owner.rotate(FEED, D, now_ms=NOW + 1, rng=rng("2"))
    (r1, r2), keys = owner.record_items(FEED), owner.epoch_keys()
    assert FeedOwner.from_bytes(_state_with_inside([[FEED, None, [[r1, None], [r2, keys[(FEED, 2)]]]]]), TH_C)
    with pytest.raises(errors.KeyStoreError, match="never erased"):
        FeedOwner.from_bytes(_state_with_inside([[FEED, None, [[r1, keys[(FEED, 1)]], [r2, None]]]]), TH_C)
