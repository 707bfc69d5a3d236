"""The feed format v2 vectors in schemas/vectors/feeds/, checked three ways.

* Every vector's outcome holds: a member holding what the vector says it holds, with the
  owner key's window it states, takes in the item at its witness time and reaches exactly
  the recorded outcome (the epoch, the key, or the refusal and its reason).
* The grant's key-encryption key, wrap and key check, the record hash and the owner's
  random draws agree with a second, minimal reading of schemas/FEEDS.md written here from
  the text with hashlib, msgpack and libsodium only (no bus.feeds).
* The files on disk are what schemas/vectors/feeds/generate.py writes today.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import struct
from pathlib import Path
from typing import Any

import msgpack
import nacl.bindings as nb
import pytest

from bus import errors, feeds
from bus.feeds import FeedKeyring
from bus.keys import BoxKeyPair, PeerKeys
from bus.testing import DeterministicRng

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
VECTOR_DIR = SCHEMAS / "vectors" / "feeds"
VECTORS = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(VECTOR_DIR.glob("*.json"))}
GRANTS = [n for n, v in VECTORS.items() if "grant_kek" in v["intermediate"]]
RECORDS = [n for n, v in VECTORS.items() if "key_check" in v["intermediate"]]


class VectorDirectory:
    """The member's directory as a vector states it: the owner's key, its window, and
    whether it is pinned as a centre key."""

    def __init__(self, v: dict[str, Any]) -> None:
        k, d = v["keys"], v["directory"]
        self.owner, self.public, self.pinned = k["owner"], bytes.fromhex(k["owner_sign_public"]), d["pinned"]
        self.keys = PeerKeys(
            k["owner"], self.public, bytes.fromhex(k["owner_sign_kid"]), b"\x00" * 32, b"\x00" * 8,
            valid_from=d["valid_from"], valid_until=d["valid_until"], revoked_at=d["revoked_at"],
        )  # fmt: skip

    def sender_keys(self, office_id: str, sign_kid: bytes) -> PeerKeys | None:
        return self.keys if (office_id, sign_kid) == (self.owner, self.keys.sign_kid) else None

    def is_pinned(self, centre_id: str, public: bytes) -> bool:
        return self.pinned and (centre_id, public) == (self.owner, self.public)


def member_ring(v: dict[str, Any]) -> FeedKeyring:
    k = v["keys"]
    box = BoxKeyPair.from_secret(bytes.fromhex(k["member_inbox_secret"]))
    assert box.public.hex() == k["member_inbox_public"] and box.kid.hex() == k["member_inbox_kid"]
    ring = FeedKeyring(k["member"], {box.kid: box}, VectorDirectory(v))
    for held in v["held"]:
        ring.apply(bytes.fromhex(held["item"]), witnessed_at=held["witnessed_at"])
    return ring


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_each_vector_gives_its_recorded_outcome(name: str) -> None:
    v = VECTORS[name]
    ring = member_ring(v)
    expected = v["expected"]
    item = bytes.fromhex(v["item"])
    if expected["outcome"] == "refused":
        with pytest.raises(errors.FeedError) as info:
            ring.apply(item, witnessed_at=v["witnessed_at"])
        assert info.value.reason == expected["reason"]
        return
    changes = ring.apply(item, witnessed_at=v["witnessed_at"])
    assert [c.status for c in changes] == [expected["outcome"]]
    payload = v["payload"]
    if expected["outcome"] == "key":
        assert ring.feed_keys == {(payload["feed"], payload["epoch"]): bytes.fromhex(expected["epoch_key"])}
    else:
        assert ring.current_epoch(payload["feed"]) == payload["epoch"]


def test_the_vectors_cover_the_refusals_of_the_member_s_checks() -> None:
    refused = {v["expected"]["reason"] for v in VECTORS.values() if v["expected"]["outcome"] == "refused"}
    assert refused >= {
        "malformed", "unsupported_version", "untrusted_signer", "bad_signature", "from_future", "signer_key_invalid",
        "feed_fork", "unknown_inbox_key", "not_member", "wrap_failed", "key_mismatch",
    }  # fmt: skip
    assert refused <= set(feeds.REJECT_REASONS)
    outcomes = {v["expected"]["outcome"] for v in VECTORS.values()}
    assert outcomes == {"epoch", "key", "refused"}


# -- a second reading of FEEDS.md, from its text ------------------------------------------

#: FEEDS.md section 3, as the text writes each label: ASCII, then one zero byte.
LABEL_ROW = re.compile(r"^\| `([A-Z_]+)` \| `([^`]+)` \| (\d+) \|", re.M)


def spec_labels() -> dict[str, bytes]:
    text = (SCHEMAS / "FEEDS.md").read_text(encoding="utf-8")
    rows = {name: ascii_text.encode() + b"\x00" for name, ascii_text, _ in LABEL_ROW.findall(text)}
    for name, ascii_text, length in LABEL_ROW.findall(text):
        assert len(ascii_text) + 1 == int(length), name
    return rows


LABELS = spec_labels()


def test_the_label_table_in_the_spec_is_the_code_s_labels() -> None:
    assert set(LABELS) == {
        "EPOCH_LABEL", "GRANT_LABEL", "EPOCH_HASH_LABEL", "KEY_CHECK_LABEL", "GRANT_KEK_LABEL", "OWNER_STATE_KEY_LABEL",
    }  # fmt: skip
    for name, label in LABELS.items():
        assert getattr(feeds, name) == label, name


def outer(raw_hex: str) -> tuple[int, int, bytes, bytes]:
    version, kind, payload, signature = unpack(bytes.fromhex(raw_hex))
    return version, kind, payload, signature


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False)


def blake2b_32(message: bytes, key: bytes = b"") -> bytes:
    return hashlib.blake2b(message, key=key, digest_size=32).digest()


def u64be(n: int) -> bytes:
    return struct.pack(">Q", n)


@pytest.mark.parametrize("name", RECORDS)
def test_record_hash_key_check_and_signature_follow_the_written_spec(name: str) -> None:
    v = VECTORS[name]
    _, kind, payload, signature = outer(v["item"])
    fields = unpack(payload)
    assert kind == 1 and len(fields) == 11
    feed, epoch, previous, owner = fields[0], fields[1], fields[2], fields[3]
    nb.crypto_sign_open(signature + LABELS["EPOCH_LABEL"] + payload, bytes.fromhex(v["keys"]["owner_sign_public"]))
    steps = v["intermediate"]
    assert blake2b_32(LABELS["EPOCH_HASH_LABEL"] + payload).hex() == steps["epoch_hash"]
    epoch_key = bytes.fromhex(steps["epoch_key"])
    check = blake2b_32(LABELS["KEY_CHECK_LABEL"] + feed.encode() + b"\x00" + u64be(epoch), key=epoch_key)
    assert check.hex() == steps["key_check"] == fields[10].hex()
    # Countries derived from members; writers a subset of the members.
    assert fields[7] == sorted({m[:2] for m in fields[8]}) and set(fields[9]) <= set(fields[8])
    if epoch == 1:
        assert previous == bytes(32) and owner == v["keys"]["owner"]
    else:
        _, _, held_payload, _ = outer(v["held"][-1]["item"])
        assert previous == blake2b_32(LABELS["EPOCH_HASH_LABEL"] + held_payload) == bytes.fromhex(steps["previous"])


def test_the_owner_draws_its_randomness_in_the_order_the_spec_gives() -> None:
    steps = VECTORS["ok-epoch-1"]["intermediate"]
    rng = DeterministicRng(steps["rng_seed"])
    members = unpack(outer(VECTORS["ok-epoch-1"]["item"])[2])[8]
    expected = [("epoch_key", rng(32))]
    for member in sorted(members):  # ascending office id: the one-time secret, then the nonce
        expected += [(f"ephemeral_secret {member}", rng(32)), (f"nonce {member}", rng(24))]
    assert [(what, bytes.fromhex(value)) for what, value in steps["draws"]] == expected
    assert expected[0][1].hex() == steps["epoch_key"]
    for name in GRANTS:
        g = VECTORS[name]
        member = g["keys"]["member"]
        assert g["intermediate"]["ephemeral_secret"] == dict(steps["draws"])[f"ephemeral_secret {member}"]
        assert g["intermediate"]["nonce"] == dict(steps["draws"])[f"nonce {member}"]


@pytest.mark.parametrize("name", GRANTS)
def test_the_grant_wrap_follows_the_written_spec(name: str) -> None:
    v = VECTORS[name]
    steps, keys = v["intermediate"], v["keys"]
    _, kind, payload, signature = outer(v["item"])
    assert kind == 2
    nb.crypto_sign_open(signature + LABELS["GRANT_LABEL"] + payload, bytes.fromhex(keys["owner_sign_public"]))
    feed, epoch, record_hash, member, inbox_kid, owner, _, ephemeral_public, _, nonce, wrapped = unpack(payload)
    # 5.3: the one-time key pair, the X25519 secret both sides compute, the KEK, the wrap.
    e = bytes.fromhex(steps["ephemeral_secret"])
    assert nb.crypto_scalarmult_base(e) == ephemeral_public == bytes.fromhex(steps["ephemeral_public"])
    m_public, m_secret = bytes.fromhex(keys["member_inbox_public"]), bytes.fromhex(keys["member_inbox_secret"])
    assert (
        inbox_kid.hex()
        == keys["member_inbox_kid"]
        == hashlib.blake2b(m_public, digest_size=8, person=b"blo-kid-x25519").hexdigest()
    )
    shared = nb.crypto_scalarmult(e, m_public)
    assert shared == nb.crypto_scalarmult(m_secret, ephemeral_public) == bytes.fromhex(steps["shared"])
    kek = blake2b_32(
        LABELS["GRANT_KEK_LABEL"] + feed.encode() + b"\x00" + u64be(epoch) + owner.encode() + b"\x00"
        + member.encode() + b"\x00" + ephemeral_public + m_public,
        key=shared,
    )  # fmt: skip
    assert kek.hex() == steps["grant_kek"]
    # The associated data is the record hash, of the held record's exact payload.
    _, _, record_payload, _ = outer(v["held"][-1]["item"])
    assert record_hash == blake2b_32(LABELS["EPOCH_HASH_LABEL"] + record_payload) == bytes.fromhex(steps["ad"])
    epoch_key = bytes.fromhex(steps["epoch_key"])
    assert nonce.hex() == steps["nonce"] and wrapped.hex() == steps["wrapped"]
    assert nb.crypto_aead_xchacha20poly1305_ietf_encrypt(epoch_key, record_hash, nonce, kek) == wrapped
    # And the key is the one the record commits to.
    record_fields = unpack(record_payload)
    check = blake2b_32(LABELS["KEY_CHECK_LABEL"] + feed.encode() + b"\x00" + u64be(epoch), key=epoch_key)
    assert check == record_fields[10]


def test_the_record_example_in_the_spec_is_the_bytes_of_a_record() -> None:
    """FEEDS.md 4.1's annotated example: 142-byte payload (bin8 `c4 8e`), 213 bytes in all."""
    v = VECTORS["ok-epoch-1"]
    item = bytes.fromhex(v["item"])
    _, _, payload, _ = outer(v["item"])
    with_writer = len(payload)  # this vector's record names one writer (TH-MUK: `a6` and 6 bytes)
    assert item[:3] == bytes([0x94, 0x02, 0x01]) and item[3] == 0xC4
    assert with_writer - 7 == 142 and len(item) - 7 == 213


# -- freshness ---------------------------------------------------------------------------


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("blo_feed_vector_generator", VECTOR_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vector_files_on_disk_are_what_the_generator_writes_today() -> None:
    gen = _generator()
    fresh = gen.build_vectors()
    assert set(fresh) == set(VECTORS), "run .venv/bin/python schemas/vectors/feeds/generate.py"
    for name, v in fresh.items():
        on_disk = (VECTOR_DIR / f"{name}.json").read_text(encoding="utf-8")
        assert gen.render(v) == on_disk, f"{name}.json is stale: run .venv/bin/python schemas/vectors/feeds/generate.py"
