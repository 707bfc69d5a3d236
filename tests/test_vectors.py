"""The shared wire-format v1 vectors in schemas/vectors/, checked both ways.

* Sealing with the recorded inputs reproduces the recorded bytes exactly.
* Opening the bytes gives exactly the recorded outcome: the bulletin, or the typed error.
* The intermediate values agree with a second, minimal reading of schemas/ENVELOPE.md
  written here from the spec's text with hashlib, msgpack and libsodium only (no
  bus.envelope), so the spec and the code cannot drift apart unnoticed.
* The files on disk are what schemas/vectors/generate.py writes today.
"""

from __future__ import annotations

import base64
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

from bus import errors
from bus.bulletin import Bulletin
from bus.envelope import FeedRecipient, OfficeRecipient, Opener, Recipient, Sealer
from bus.ids import bulletin_id_from_bytes
from bus.keys import BoxKeyPair, Identity, PeerBook, PeerKeys, SigningKeyPair
from bus.testing import DeterministicRng

VECTOR_DIR = Path(__file__).resolve().parent.parent / "schemas" / "vectors"
VECTORS = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(VECTOR_DIR.glob("*.json"))}
UNMUTATED = [name for name, v in VECTORS.items() if v["mutation"] is None]
WITH_STEPS = [name for name, v in VECTORS.items() if "steps" in v["seal"]]
OPENINGS = [(name, i) for name, v in VECTORS.items() for i in range(len(v["open"]))]


def _b(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text)


def sender_identity(s: dict[str, Any]) -> Identity:
    ident = Identity(s["office_id"], SigningKeyPair.from_seed(_b(s["sign_seed"])), BoxKeyPair.from_secret(_b(s["box_secret"])))
    assert ident.signing.public.hex() == s["sign_public"] and ident.signing.kid.hex() == s["sign_kid"]
    assert ident.box.public.hex() == s["box_public"] and ident.box.kid.hex() == s["box_kid"]
    return ident


def peer(p: dict[str, Any]) -> PeerKeys:
    return PeerKeys(p["office_id"], _b(p["sign_public"]), _b(p["sign_kid"]), _b(p["box_public"]), _b(p["box_kid"]),
                    p["valid_from"], p["valid_until"], p["revoked_at"])


def recipient(r: dict[str, Any], directory: list[PeerKeys]) -> Recipient:
    if r["kind"] == "feed":
        return FeedRecipient(r["feed"], r["epoch"], _b(r["epoch_key"]))
    (keys,) = [p for p in directory if p.office_id == r["office_id"] and p.box_kid.hex() == r["box_kid"]]
    return OfficeRecipient(keys)


def opener(v: dict[str, Any], receiver: dict[str, Any]) -> Opener:
    boxes = [BoxKeyPair.from_secret(_b(k["secret"])) for k in receiver["box_keys"]]
    assert [(k.public.hex(), k.kid.hex()) for k in boxes] == [(k["public"], k["kid"]) for k in receiver["box_keys"]]
    feed_keys = {(f["feed"], f["epoch"]): _b(f["key"]) for f in receiver["feed_keys"]}
    return Opener(receiver["office_id"], boxes, PeerBook([peer(p) for p in v["directory"]]), feed_keys=feed_keys)


def sealed_bytes(v: dict[str, Any]) -> bytes:
    raw = base64.b64decode(v["sealed"], validate=True)
    assert hashlib.sha256(raw).hexdigest() == v["sealed_sha256"]
    return raw


# -- both directions ---------------------------------------------------------------------


@pytest.mark.parametrize("name", UNMUTATED)
def test_sealing_the_recorded_inputs_reproduces_the_recorded_bytes(name):
    v = VECTORS[name]
    s = v["seal"]
    directory = [peer(p) for p in v["directory"]]
    recipients = [recipient(r, directory) for r in s["recipients"]]
    sealed = Sealer(sender_identity(s["sender"])).seal(
        Bulletin.from_dict(s["bulletin"]), recipients, now_ms=s["now_ms"], rng=DeterministicRng(s["rng_seed"])
    )
    assert sealed == sealed_bytes(v)


@pytest.mark.parametrize(("name", "index"), OPENINGS)
def test_opening_the_recorded_bytes_gives_the_recorded_outcome(name, index):
    v = VECTORS[name]
    case = v["open"][index]
    expect = case["expect"]
    o = opener(v, case["receiver"])
    if expect["outcome"] == "error":
        with pytest.raises(errors.EnvelopeError) as info:
            o.open(sealed_bytes(v))
        assert type(info.value) is getattr(errors, expect["error"])
        assert info.value.reason == expect["reason"]
        return
    opened = o.open(sealed_bytes(v))
    assert opened.bulletin == Bulletin.from_dict(expect["bulletin"])
    assert json.loads(json.dumps(opened.bulletin.to_dict())) == expect["bulletin"]
    assert opened.bulletin == Bulletin.from_dict(v["seal"]["bulletin"])
    assert opened.sent_at == expect["sent_at"] == v["seal"]["now_ms"]
    assert (opened.sender_sign_kid.hex(), opened.sender_box_kid.hex()) == (expect["sender_sign_kid"], expect["sender_box_kid"])
    via = expect["opened_via"]
    ref = via["ref"] if isinstance(via["ref"], int) else _b(via["ref"])
    assert (opened.opened_via.kind, opened.opened_via.id, opened.opened_via.ref) == (via["kind"], via["id"], ref)


def test_the_vectors_cover_every_refusal_a_receiver_can_make():
    seen = {c["expect"].get("reason") for v in VECTORS.values() for c in v["open"]}
    receiver_errors = {
        cls.reason for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.EnvelopeError) and cls is not errors.EnvelopeError
    } - {
        errors.RecipientKeyInvalid.reason,  # a seal-side refusal; no bytes exist to open
        errors.Misrouted.reason,  # a check of the NATS subject against the opened sender, outside the envelope
        errors.FeedKeyPending.reason,  # the node's feed keyring says a key may still arrive: transport state
    }
    assert receiver_errors <= seen


def test_the_vectors_cover_one_office_three_offices_a_feed_and_five_scripts():
    assert {"ok-office-1", "ok-office-3", "ok-feed"} <= set(VECTORS)
    assert len(VECTORS["ok-office-3"]["seal"]["recipients"]) == 3
    assert {n for n in VECTORS if n.startswith("ok-script-")} == {
        f"ok-script-{s}" for s in ("thai", "lao", "khmer", "burmese", "vietnamese")
    }


# -- the spec's own words, re-implemented ------------------------------------------------

SIGNATURE_LABEL = b"blo-bus/v1 bulletin signature\x00"
OFFICE_KEK_LABEL = b"blo-bus/v1 office wrap key\x00"
FEED_KEK_LABEL = b"blo-bus/v1 feed wrap key\x00"
WRAP_AD_LABEL = b"blo-bus/v1 content key wrap\x00"


def spec_key_id(person: bytes, public: bytes) -> bytes:
    return hashlib.blake2b(public, digest_size=8, person=person).digest()


def spec_rng(seed: str, sizes: list[int]) -> list[bytes]:
    """ENVELOPE.md, "Reproducing the vectors": one 64-byte block per draw, keyed BLAKE2b-512."""
    out = []
    for counter, n in enumerate(sizes):
        block = hashlib.blake2b(struct.pack(">Q", counter), key=seed.encode()[:64], digest_size=64, person=b"blo-test-rng")
        out.append(block.digest()[:n])
    return out


@pytest.mark.parametrize("name", WITH_STEPS)
def test_intermediate_values_follow_the_written_spec(name):
    v = VECTORS[name]
    s, steps = v["seal"], v["seal"]["steps"]
    sender = s["sender"]
    assert spec_key_id(b"blo-kid-ed25519", _b(sender["sign_public"])).hex() == sender["sign_kid"]
    assert spec_key_id(b"blo-kid-x25519", _b(sender["box_public"])).hex() == sender["box_kid"]
    draws = spec_rng(s["rng_seed"], [32, 24] + [24] * len(s["recipients"]))
    key, nonce = draws[0], draws[1]
    assert (key.hex(), nonce.hex()) == (steps["content_key"], steps["content_nonce"])

    version, header, ciphertext = msgpack.unpackb(sealed_bytes(v), raw=True)
    assert version == 1 and header.hex() == steps["header"]
    bid, office, sign_kid, box_kid, sent_at, precedence, content_nonce, entries = msgpack.unpackb(header, raw=False)
    assert (bulletin_id_from_bytes(bid), office, precedence) == (s["bulletin"]["id"], sender["office_id"], s["bulletin"]["precedence"])
    assert (sign_kid.hex(), box_kid.hex(), sent_at, content_nonce) == (sender["sign_kid"], sender["box_kid"], s["now_ms"], nonce)
    for entry, wrap, r, wrap_nonce in zip(entries, steps["wraps"], s["recipients"], draws[2:], strict=True):
        kind, rid, ref, entry_nonce, wrapped = entry
        if r["kind"] == "office":
            shared = nb.crypto_scalarmult(_b(sender["box_secret"]), _b(r["box_public"]))
            kek = hashlib.blake2b(OFFICE_KEK_LABEL + _b(sender["box_public"]) + _b(r["box_public"]), key=shared, digest_size=32).digest()
            assert (kind, rid, ref.hex()) == (1, r["office_id"], r["box_kid"])
            assert shared.hex() == wrap["x25519_shared"]
            ad = WRAP_AD_LABEL + bid + b"\x01" + rid.encode() + b"\x00" + ref
        else:
            kek = hashlib.blake2b(FEED_KEK_LABEL + r["feed"].encode() + struct.pack(">Q", r["epoch"]), key=_b(r["epoch_key"]), digest_size=32).digest()
            assert (kind, rid, ref) == (2, r["feed"], r["epoch"])
            ad = WRAP_AD_LABEL + bid + b"\x02" + rid.encode() + b"\x00" + struct.pack(">Q", ref)
        assert (kek.hex(), ad.hex(), entry_nonce, wrapped.hex()) == (wrap["kek"], wrap["wrap_ad"], wrap_nonce, wrap["wrapped_key"])
        assert nb.crypto_aead_xchacha20poly1305_ietf_decrypt(wrapped, ad, entry_nonce, kek) == key

    plaintext = nb.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, header, nonce, key)
    signature, body = plaintext[:64], plaintext[64:]
    assert (signature.hex(), body.hex()) == (steps["signature"], steps["body"])
    message = SIGNATURE_LABEL + struct.pack(">I", len(header)) + header + body
    assert hashlib.blake2b(message, digest_size=32).hexdigest() == steps["signed_message_blake2b256"]
    assert nb.crypto_sign_open(signature + message, _b(sender["sign_public"])) == message
    assert nb.crypto_sign(message, nb.crypto_sign_seed_keypair(_b(sender["sign_seed"]))[1])[:64] == signature
    # The body is the dict form without id, from and precedence, keys in the order the spec gives.
    expected_body = {k: val for k, val in s["bulletin"].items() if k not in ("id", "from", "precedence")}
    assert msgpack.unpackb(body, raw=False) == expected_body
    assert msgpack.packb(expected_body, use_bin_type=True) == body


def test_deterministic_rng_is_the_one_the_spec_describes():
    rng = DeterministicRng("blo-bus vector seal ok-office-1")
    assert [rng(32), rng(24), rng(100)[:64]] == spec_rng("blo-bus vector seal ok-office-1", [32, 24, 64])
    assert len(DeterministicRng("x")(100)) == 100  # a draw longer than a block spans two


# -- freshness ---------------------------------------------------------------------------


def _generator():
    spec = importlib.util.spec_from_file_location("blo_vector_generator", VECTOR_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vector_files_on_disk_are_what_the_generator_writes_today():
    gen = _generator()
    fresh = gen.build_vectors()
    assert set(fresh) == set(VECTORS), "run .venv/bin/python schemas/vectors/generate.py"
    for name, v in fresh.items():
        on_disk = (VECTOR_DIR / f"{name}.json").read_text(encoding="utf-8")
        assert gen.render(v) == on_disk, f"{name}.json is stale: run .venv/bin/python schemas/vectors/generate.py"


def test_the_generator_is_deterministic():
    gen = _generator()
    assert {k: gen.render(v) for k, v in gen.build_vectors().items()} == {
        k: gen.render(v) for k, v in gen.build_vectors().items()
    }


# -- promises of the spec that no single vector shows -------------------------------------

MUK = sender_identity(VECTORS["ok-office-1"]["seal"]["sender"])
DIRECTORY = [peer(p) for p in VECTORS["ok-office-1"]["directory"]]
SVK_KEYS = next(p for p in DIRECTORY if p.office_id == "LA-SVK")
THAI = Bulletin.from_dict(VECTORS["ok-office-1"]["seal"]["bulletin"])


def _seal(recipients, now_ms=None):
    return Sealer(MUK).seal(THAI, recipients, now_ms=VECTORS["ok-office-1"]["seal"]["now_ms"] if now_ms is None else now_ms,
                            rng=DeterministicRng("refusals"))


@pytest.mark.parametrize(
    ("recipients", "now_ms", "words"),
    [
        ([FeedRecipient("mekong-border", 1, b"")], None, "epoch key must be 32 bytes"),
        ([FeedRecipient("mekong-border", -1, bytes(32))], None, "64-bit unsigned"),
        ([FeedRecipient("mekong-border", 1 << 64, bytes(32))], None, "64-bit unsigned"),
        ([FeedRecipient("Mekong", 1, bytes(32))], None, "not a feed name"),
        ([OfficeRecipient(PeerKeys("la-svk", bytes(32), bytes(8), bytes(32), bytes(8)))], None, "not an office id"),
        ([OfficeRecipient(SVK_KEYS)], -1, "48-bit range"),
        ([OfficeRecipient(SVK_KEYS)], 1 << 48, "48-bit range"),
    ],
)
def test_sealing_refuses_what_every_receiver_would_refuse(recipients, now_ms, words):
    with pytest.raises(errors.ValidationError, match=words):
        _seal(recipients, now_ms)


@pytest.mark.parametrize("box_public", [bytes(32), bytes(31), b""])
def test_sealing_refuses_an_unusable_recipient_encryption_key(box_public):
    from dataclasses import replace

    with pytest.raises(errors.RecipientKeyInvalid):
        _seal([OfficeRecipient(replace(SVK_KEYS, box_public=box_public))])


def test_a_directory_key_of_the_wrong_length_is_a_typed_refusal_not_an_over_read():
    from dataclasses import replace

    v = VECTORS["ok-office-1"]
    receiver = v["open"][0]["receiver"]
    boxes = [BoxKeyPair.from_secret(_b(k["secret"])) for k in receiver["box_keys"]]
    muk = next(p for p in DIRECTORY if p.office_id == "TH-MUK")
    for changed, error in ((replace(muk, box_public=muk.box_public[:31]), errors.DecryptionFailed),
                           (replace(muk, sign_public=muk.sign_public[:31]), errors.BadSignature)):
        o = Opener("LA-SVK", boxes, PeerBook([changed]))
        with pytest.raises(error):
            o.open(sealed_bytes(v))


def test_the_size_limit_is_inclusive():
    v = VECTORS["ok-office-1"]
    _, header, _ = msgpack.unpackb(sealed_bytes(v))
    o = opener(v, v["open"][0]["receiver"])
    framing = len(msgpack.packb([1, header, b"\x00" * 100_000], use_bin_type=True)) - 100_000  # ciphertext as bin 32
    exactly = msgpack.packb([1, header, b"\x00" * (262_144 - framing)], use_bin_type=True)
    assert len(exactly) == 262_144
    with pytest.raises(errors.DecryptionFailed):
        o.open(exactly)
    with pytest.raises(errors.TooLarge):
        o.open(exactly + b"\x00")


@pytest.mark.parametrize("outer", [[2], [2, b"h"], [99, b"h", b"c", b"d", b"e"], [-1, b"", b""]])
def test_any_array_starting_with_another_version_is_unsupported_not_malformed(outer):
    v = VECTORS["ok-office-1"]
    with pytest.raises(errors.UnsupportedVersion, match="upgrade"):
        opener(v, v["open"][0]["receiver"]).open(msgpack.packb(outer, use_bin_type=True))


def test_the_label_table_in_the_spec_is_the_code_s_labels():
    from bus import envelope

    spec = (VECTOR_DIR.parent / "ENVELOPE.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+_LABEL)` \| `([^`]+)` \| (\d+) \|", spec, flags=re.MULTILINE)
    assert {name for name, _, _ in rows} == {"SIGNATURE_LABEL", "OFFICE_KEK_LABEL", "FEED_KEK_LABEL", "WRAP_AD_LABEL"}
    for name, ascii_text, length in rows:
        assert getattr(envelope, name) == ascii_text.encode() + b"\x00" == globals()[name]
        assert len(getattr(envelope, name)) == int(length)
    for constant in ("262144", "1024"):
        assert constant in spec
    assert envelope.MAX_ENVELOPE_BYTES == 262_144 and envelope.MAX_RECIPIENTS == 1024


def test_the_receiver_check_table_in_the_spec_names_real_errors_and_reasons():
    spec = (VECTOR_DIR.parent / "ENVELOPE.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| .+ \| `(\w+)` \| `(\w+)` \|$", spec, flags=re.MULTILINE)
    assert [int(n) for n, _, _ in rows] == list(range(1, 13))
    for _, name, reason in rows:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.EnvelopeError) and cls.reason == reason
    assert [name for _, name, _ in rows][-6:] == [
        "NotAddressedToUs", "UnknownSender", "SenderKeyInvalid", "DecryptionFailed", "BadSignature", "InvalidContent"
    ]
