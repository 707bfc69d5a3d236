"""Writes the feed format v2 test vectors in this folder, one JSON file per vector.

Run ``.venv/bin/python schemas/vectors/feeds/generate.py``. Every byte comes from fixed
seeds through ``bus.testing.DeterministicRng`` (its algorithm is in ENVELOPE.md), drawn in
the order FEEDS.md 6.1 states, so running it twice writes identical files, and
``tests/test_vectors_feeds.py`` checks that the files on disk are what this script would
write today, that every outcome holds, and that the grant's intermediate values follow
FEEDS.md as re-derived there from the text.

Each vector is one item (an epoch record or a grant) that a member judges, with what the
member holds before it (each with its witness time), the owner key's window as the
member's directory states it, the item's own witness time, and the expected outcome (see
FEEDS.md section 15).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack
import nacl.bindings as nb

from bus.feeds import (
    GENESIS,
    EpochRecord,
    FeedOwner,
    Grant,
    SignedFeedItem,
    decode_item,
    epoch_hash,
    grant_kek,
    key_check,
    make_grant,
    sign_epoch,
    sign_grant,
)
from bus.keys import BoxKeyPair, Identity, PeerKeys
from bus.testing import DeterministicRng, render_vector, write_vectors
from bus.timing import MAX_FUTURE_SKEW_MS, REVOCATION_GRACE_MS

HERE = Path(__file__).resolve().parent
#: 2026-11-18T08:26:40Z: epoch 1 begins then.
NOW = 1_795_000_000_000
HOUR = 3_600_000
FEED = "mekong-border"
OWNER = "TH-TCCC"
MEMBERS = ("LA-SVK", "TH-MUK")

Vector = dict[str, Any]


def owner_identity() -> Identity:
    return Identity.generate(OWNER, DeterministicRng(f"blo-bus feed vector identity {OWNER}"))


def inbox(office: str) -> BoxKeyPair:
    """The office's current inbox key (DIRECTORY.md): what the grants are wrapped to."""
    return BoxKeyPair.generate(DeterministicRng(f"blo-bus feed vector inbox {office}"))


class Inboxes:
    """The owner's directory: each office's current inbox key, no window problem."""

    def recipient_keys(self, office_id: str, now_ms: int) -> PeerKeys:
        box = inbox(office_id)
        return PeerKeys(office_id, b"\x00" * 32, b"\x00" * 8, box.public, box.kid)


def _hex(b: bytes) -> str:
    return b.hex()


def _fields(item: EpochRecord | Grant) -> dict[str, Any]:
    """The payload's fields by name, bytes as hex, arrays as lists."""
    names = [
        "feed", "epoch", "previous", "owner", "owner_sign_kid", "created_at", "reason", "countries", "members",
        "writers", "key_check",
    ] if isinstance(item, EpochRecord) else [
        "feed", "epoch", "record_hash", "member", "member_inbox_kid", "owner", "owner_sign_kid", "ephemeral_public",
        "issued_at", "nonce", "wrapped",
    ]  # fmt: skip
    out: dict[str, Any] = {}
    for name, value in zip(names, item.fields(), strict=True):
        out[name] = _hex(value) if isinstance(value, bytes) else value
    return out


def _held(*pairs: tuple[bytes, int]) -> list[dict[str, Any]]:
    return [{"item": _hex(raw), "witnessed_at": w} for raw, w in pairs]


def _vector(
    name: str,
    description: str,
    *,
    member: str,
    item: bytes,
    witnessed_at: int,
    expected: dict[str, Any],
    held: list[dict[str, Any]] | None = None,
    window: dict[str, Any] | None = None,
    intermediate: dict[str, Any] | None = None,
    pinned: bool = True,
) -> Vector:
    centre = owner_identity()
    box = inbox(member)
    try:
        payload: dict[str, Any] | None = _fields(decode_item(item).item)
    except Exception:  # a malformed item has no decoded payload to show
        payload = None
    return {
        "name": name,
        "description": description,
        "keys": {
            "owner": OWNER,
            "owner_sign_public": _hex(centre.signing.public),
            "owner_sign_kid": _hex(centre.signing.kid),
            "member": member,
            "member_inbox_public": _hex(box.public),
            "member_inbox_secret": _hex(box.secret),
            "member_inbox_kid": _hex(box.kid),
        },
        "directory": {
            "pinned": pinned,
            **(window or {"valid_from": NOW - HOUR, "valid_until": None, "revoked_at": None}),
        },
        "held": held or [],
        "item": _hex(item),
        "witnessed_at": witnessed_at,
        "payload": payload,
        "intermediate": intermediate or {},
        "expected": expected,
    }


def _grant_steps(centre: Identity, record: SignedFeedItem, grant: Grant, e: bytes, epoch_key: bytes) -> dict[str, Any]:
    box = inbox(grant.member)
    shared = nb.crypto_scalarmult(e, box.public)
    kek = grant_kek(
        shared, feed=grant.feed, epoch=grant.epoch, owner=grant.owner, member=grant.member,
        ephemeral_public=grant.ephemeral_public, inbox_public=box.public,
    )  # fmt: skip
    return {
        "ephemeral_secret": _hex(e),
        "ephemeral_public": _hex(grant.ephemeral_public),
        "shared": _hex(shared),
        "grant_kek": _hex(kek),
        "ad": _hex(record.hash),
        "nonce": _hex(grant.nonce),
        "wrapped": _hex(grant.wrapped),
        "epoch_key": _hex(epoch_key),
    }


def build_vectors() -> dict[str, Vector]:
    centre = owner_identity()
    seed1, seed2 = "blo-bus feed vector epoch 1", "blo-bus feed vector epoch 2"
    owner = FeedOwner(centre)
    first = owner.create(FEED, MEMBERS, Inboxes(), now_ms=NOW, rng=DeterministicRng(seed1), writers=["TH-MUK"])
    second = owner.remove_member(FEED, "LA-SVK", Inboxes(), now_ms=NOW + HOUR, rng=DeterministicRng(seed2))
    r1, r2 = decode_item(first.record), decode_item(second.record)
    w1, w2 = NOW + 1000, NOW + HOUR + 1000
    held1 = _held((first.record, w1))
    draws = DeterministicRng(seed1)
    epoch_key_1 = draws(32)
    draws_by_member = {m: (draws(32), draws(24)) for m in MEMBERS}  # ascending office ids: ephemeral, nonce
    assert epoch_key_1 == first.epoch_key
    vectors: list[Vector] = []

    # -- accepted -------------------------------------------------------------------------
    vectors.append(_vector(
        "ok-epoch-1", "The first epoch record of feed mekong-border: members LA-SVK and TH-MUK, TH-MUK a writer. "
        "intermediate.rng_seed and draws give the owner's random draws in the order of FEEDS.md 6.1.",
        member="TH-MUK", item=first.record, witnessed_at=w1, expected={"outcome": "epoch"},
        intermediate={
            "epoch_hash": _hex(r1.hash), "key_check": _hex(key_check(FEED, 1, first.epoch_key)),
            "epoch_key": _hex(first.epoch_key), "rng_seed": seed1,
            "draws": [
                ["epoch_key", _hex(epoch_key_1)],
                *[[f"{what} {m}", _hex(v)] for m in MEMBERS for what, v in zip(("ephemeral_secret", "nonce"), draws_by_member[m], strict=True)],
            ],
        },
    ))  # fmt: skip
    vectors.append(_vector(
        "ok-epoch-2", "Its successor: LA-SVK removed (member_removed), previous = epoch_hash of epoch 1's payload.",
        member="TH-MUK", item=second.record, witnessed_at=w2, held=held1, expected={"outcome": "epoch"},
        intermediate={"epoch_hash": _hex(r2.hash), "previous": _hex(epoch_hash(r1.payload)),
                      "key_check": _hex(key_check(FEED, 2, second.epoch_key)), "epoch_key": _hex(second.epoch_key)},
    ))  # fmt: skip
    for member in MEMBERS:
        grant = decode_item(first.grant_for(member)).item
        assert isinstance(grant, Grant)
        vectors.append(_vector(
            f"ok-grant-1-{member}", f"The grant of epoch 1 to {member}, wrapped from a one-time key to its inbox key; "
            "intermediate holds every value of FEEDS.md 5.3.",
            member=member, item=first.grant_for(member), witnessed_at=w1 + 5, held=held1,
            expected={"outcome": "key", "epoch_key": _hex(first.epoch_key)},
            intermediate=_grant_steps(centre, r1, grant, draws_by_member[member][0], first.epoch_key),
        ))  # fmt: skip
    revoked_at = NOW + 2 * HOUR
    revoked = {"valid_from": NOW - HOUR, "valid_until": None, "revoked_at": revoked_at}
    vectors.append(_vector(
        "ok-stored-within-grace", "The owner's key is revoked at R = revoked_at; this record was signed before R and "
        "stored before R + REVOCATION_GRACE_MS (T3 does not refuse it).",
        member="TH-MUK", item=second.record, witnessed_at=revoked_at + REVOCATION_GRACE_MS - 1, held=held1,
        window=revoked, expected={"outcome": "epoch"},
    ))  # fmt: skip

    # -- refused --------------------------------------------------------------------------
    flipped = first.record[:-1] + bytes([first.record[-1] ^ 0x01])
    vectors.append(_vector(
        "fail-bad-signature", "Epoch 1's record with the last byte of its signature flipped.",
        member="TH-MUK", item=flipped, witnessed_at=w1, expected={"outcome": "refused", "reason": "bad_signature"},
    ))  # fmt: skip
    vectors.append(_vector(
        "fail-untrusted-signer", "Epoch 1's record, at a member whose directory has the key but does not pin it as a "
        "centre key (an office key, say).",
        member="TH-MUK", item=first.record, witnessed_at=w1, pinned=False,
        expected={"outcome": "refused", "reason": "untrusted_signer"},
    ))  # fmt: skip
    other = replace(r2.item, reason="manual", members=("LA-SVK", "TH-MUK"), countries=("LA", "TH"))
    vectors.append(_vector(
        "fail-fork", "A second, different record for epoch 2 (same predecessor), after the first was held.",
        member="TH-MUK", item=sign_epoch(other, centre.signing), witnessed_at=w2 + 5,
        held=_held((first.record, w1), (second.record, w2)), expected={"outcome": "refused", "reason": "feed_fork"},
    ))  # fmt: skip
    vectors.append(_vector(
        "fail-signer-revoked", "The owner's key was revoked at R (stolen). A record signed by it and dated R - 1 "
        "(backdated), stored at R + REVOCATION_GRACE_MS: refused by the stored time, whatever created_at says (T3).",
        member="TH-MUK", item=sign_epoch(replace(r2.item, created_at=revoked_at - 1), centre.signing),
        witnessed_at=revoked_at + REVOCATION_GRACE_MS, held=held1, window=revoked,
        expected={"outcome": "refused", "reason": "signer_key_invalid"},
    ))  # fmt: skip
    vectors.append(_vector(
        "fail-from-future", "A record whose created_at is more than MAX_FUTURE_SKEW_MS after it was stored (T1).",
        member="TH-MUK", item=second.record, witnessed_at=NOW + HOUR - MAX_FUTURE_SKEW_MS - 1, held=held1,
        expected={"outcome": "refused", "reason": "from_future"},
    ))  # fmt: skip
    not_a_member = make_grant(centre, r2, Inboxes().recipient_keys("LA-SVK", NOW), second.epoch_key,
                              now_ms=NOW + HOUR, rng=DeterministicRng("blo-bus feed vector not a member"))  # fmt: skip
    vectors.append(_vector(
        "fail-not-member", "A grant of epoch 2 to LA-SVK, which epoch 2's record no longer lists.",
        member="LA-SVK", item=not_a_member, witnessed_at=w2 + 5, held=_held((first.record, w1), (second.record, w2)),
        expected={"outcome": "refused", "reason": "not_member"},
    ))  # fmt: skip
    other_key = DeterministicRng("blo-bus feed vector another key")(32)
    mismatch = make_grant(centre, r1, Inboxes().recipient_keys("TH-MUK", NOW), other_key, now_ms=NOW,
                          rng=DeterministicRng("blo-bus feed vector key mismatch"))  # fmt: skip
    vectors.append(_vector(
        "fail-key-mismatch", "A grant of epoch 1 to TH-MUK, validly wrapped and signed, of a key other than the one "
        "the record's key_check commits to.",
        member="TH-MUK", item=mismatch, witnessed_at=w1 + 5, held=held1,
        expected={"outcome": "refused", "reason": "key_mismatch"},
    ))  # fmt: skip
    g1 = decode_item(first.grant_for("TH-MUK")).item
    vectors.append(_vector(
        "fail-wrap-failed", "The grant of epoch 1 to TH-MUK with 48 zero bytes as its wrap, signed again.",
        member="TH-MUK", item=sign_grant(replace(g1, wrapped=bytes(48)), centre.signing), witnessed_at=w1 + 5,
        held=held1, expected={"outcome": "refused", "reason": "wrap_failed"},
    ))  # fmt: skip
    vectors.append(_vector(
        "fail-unknown-inbox-key", "The grant of epoch 1 to TH-MUK naming an inbox key id TH-MUK does not hold.",
        member="TH-MUK", item=sign_grant(replace(g1, member_inbox_kid=bytes(8)), centre.signing),
        witnessed_at=w1 + 5, held=held1, expected={"outcome": "refused", "reason": "unknown_inbox_key"},
    ))  # fmt: skip
    outsider = replace(r1.item, writers=("TH-NKP",))
    bad_writers = msgpack.packb([2, 1, msgpack.packb(outsider.fields(), use_bin_type=True),
                                 centre.signing.sign(b"blo-bus/v2 feed epoch\x00" + msgpack.packb(outsider.fields(), use_bin_type=True))],
                                use_bin_type=True)  # fmt: skip
    vectors.append(_vector(
        "fail-writer-not-a-member", "Epoch 1's record with writers [TH-NKP], which is not a member (signed as it is).",
        member="TH-MUK", item=bad_writers, witnessed_at=w1, expected={"outcome": "refused", "reason": "malformed"},
    ))  # fmt: skip
    _, kind, payload, signature = msgpack.unpackb(first.record)
    vectors.append(_vector(
        "fail-unsupported-version", "Epoch 1's record in an outer array that says version 1 (withdrawn).",
        member="TH-MUK", item=msgpack.packb([1, kind, payload, signature], use_bin_type=True), witnessed_at=w1,
        expected={"outcome": "refused", "reason": "unsupported_version"},
    ))  # fmt: skip
    genesis_twice = replace(r2.item, previous=GENESIS)
    vectors.append(_vector(
        "fail-epoch-2-with-genesis", "An epoch 2 record whose previous is 32 zero bytes (only epoch 1's is).",
        member="TH-MUK",
        item=msgpack.packb([2, 1, msgpack.packb(genesis_twice.fields(), use_bin_type=True), bytes(64)], use_bin_type=True),
        witnessed_at=w2, held=held1, expected={"outcome": "refused", "reason": "malformed"},
    ))  # fmt: skip
    return {v["name"]: v for v in vectors}




def main() -> None:
    write_vectors(HERE, build_vectors())


render = render_vector  # what the tests compare the files with


if __name__ == "__main__":
    main()
