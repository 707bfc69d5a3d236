"""The shared wire-format v2 envelope vectors in schemas/vectors/envelope/, checked both ways,
for the reference (``bus.envelope``) and the fast classes (``bus.envelope_fast``), each on
both libsodium paths (``bus.sodium``: PyNaCl's wrappers, and its direct cffi calls).

* Sealing with the recorded inputs reproduces the recorded bytes exactly.
* Opening the bytes at the recorded witness time, through the recorded subject's
  recipient, gives exactly the recorded outcome: the bulletin, or the typed error.
* The intermediate values agree with a second, minimal reading of schemas/ENVELOPE.md
  written here from the spec's text with hashlib, msgpack and libsodium only (no
  bus.envelope), so the spec and the code cannot drift apart unnoticed.
* The files on disk are what schemas/vectors/envelope/generate.py writes today.
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

from bus import errors, sodium
from bus.bulletin import Bulletin
from bus.envelope import FeedRecipient, OfficeRecipient, Opener, Recipient, Sealer
from bus.envelope_fast import FastOpener, FastSealer
from bus.ids import bulletin_id_from_bytes
from bus.keys import BoxKeyPair, Identity, PeerBook, PeerKeys, SigningKeyPair
from bus.testing import DeterministicRng

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
VECTOR_DIR = SCHEMAS / "vectors" / "envelope"
VECTORS = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(VECTOR_DIR.glob("*.json"))}
UNMUTATED = [name for name, v in VECTORS.items() if v["mutation"] is None]
WITH_STEPS = [name for name, v in VECTORS.items() if "steps" in v["seal"]]
OPENINGS = [(name, i) for name, v in VECTORS.items() for i in range(len(v["open"]))]


def _b(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text)


#: Every implementation the vectors hold to the spec: (sealer, opener, direct libsodium calls).
IMPLEMENTATIONS = {
    "reference-plain": (Sealer, Opener, False),
    "reference-direct": (Sealer, Opener, True),
    "fast-plain": (FastSealer, FastOpener, False),
    "fast-direct": (FastSealer, FastOpener, True),
}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def impl(request):
    sealer, opener_class, direct = IMPLEMENTATIONS[request.param]
    if direct and not sodium.direct_available():
        pytest.fail("PyNaCl has no cffi module here: the direct path the node uses is missing")
    before = sodium.use_direct(direct)
    try:
        yield sealer, opener_class
    finally:
        sodium.use_direct(before)


def sender_identity(s: dict[str, Any]) -> Identity:
    # v2 senders wrap with an ephemeral key: the identity's own encryption key takes no part.
    ident = Identity(s["office_id"], SigningKeyPair.from_seed(_b(s["sign_seed"])), BoxKeyPair.from_secret(bytes(32)))
    assert ident.signing.public.hex() == s["sign_public"] and ident.signing.kid.hex() == s["sign_kid"]
    return ident


def peer(p: dict[str, Any], inbox: dict[str, Any] | None = None) -> PeerKeys:
    box_public, box_kid = (_b(inbox["inbox_public"]), _b(inbox["inbox_kid"])) if inbox else (bytes(32), bytes(8))
    return PeerKeys(p["office_id"], _b(p["sign_public"]), _b(p["sign_kid"]), box_public, box_kid,
                    p["valid_from"], p["valid_until"], p["revoked_at"])


def recipient(r: dict[str, Any], directory: list[dict[str, Any]]) -> Recipient:
    if r["kind"] == "feed":
        return FeedRecipient(r["feed"], r["epoch"], _b(r["epoch_key"]))
    (record,) = [p for p in directory if p["office_id"] == r["office_id"]]
    return OfficeRecipient(peer(record, r))


def opener(v: dict[str, Any], case: dict[str, Any], opener_class: type[Opener] = Opener) -> Opener:
    receiver = case["receiver"]
    boxes = [BoxKeyPair.from_secret(_b(k["secret"])) for k in receiver["inbox_keys"]]
    assert [(k.public.hex(), k.kid.hex()) for k in boxes] == [(k["public"], k["kid"]) for k in receiver["inbox_keys"]]
    feed_keys = {(f["feed"], f["epoch"]): _b(f["key"]) for f in receiver["feed_keys"]}
    return opener_class(receiver["office_id"], boxes, PeerBook([peer(p) for p in v["directory"]]), feed_keys=feed_keys)


def open_case(o: Opener, v: dict[str, Any], case: dict[str, Any], data: bytes | None = None) -> Any:
    via = None if case["via"] is None else (case["via"]["kind"], case["via"]["id"])
    return o.open(sealed_bytes(v) if data is None else data, witnessed_at=case["witnessed_at"], via=via)


def sealed_bytes(v: dict[str, Any]) -> bytes:
    raw = base64.b64decode(v["sealed"], validate=True)
    assert hashlib.sha256(raw).hexdigest() == v["sealed_sha256"]
    return raw


# -- both directions ---------------------------------------------------------------------


@pytest.mark.parametrize("name", UNMUTATED)
def test_sealing_the_recorded_inputs_reproduces_the_recorded_bytes(name, impl):
    sealer_class, _ = impl
    v = VECTORS[name]
    s = v["seal"]
    recipients = [recipient(r, v["directory"]) for r in s["recipients"]]
    sealed = sealer_class(sender_identity(s["sender"])).seal(
        Bulletin.from_dict(s["bulletin"]), recipients, now_ms=s["now_ms"], rng=DeterministicRng(s["rng_seed"])
    )
    assert sealed == sealed_bytes(v)


@pytest.mark.parametrize(("name", "index"), OPENINGS)
def test_opening_the_recorded_bytes_gives_the_recorded_outcome(name, index, impl):
    _, opener_class = impl
    v = VECTORS[name]
    case = v["open"][index]
    expect = case["expect"]
    o = opener(v, case, opener_class)
    for _ in range(3):  # a fast opener learns a header's layout on the second sighting
        if expect["outcome"] == "error":
            with pytest.raises(errors.EnvelopeError) as info:
                open_case(o, v, case)
            assert type(info.value) is getattr(errors, expect["error"])
            assert info.value.reason == expect["reason"]
            continue
        check_opened(open_case(o, v, case), v, expect)


def check_opened(opened: Any, v: dict[str, Any], expect: dict[str, Any]) -> None:
    assert opened.bulletin == Bulletin.from_dict(expect["bulletin"])
    assert json.loads(json.dumps(opened.bulletin.to_dict())) == expect["bulletin"]
    assert opened.bulletin == Bulletin.from_dict(v["seal"]["bulletin"])
    assert opened.sent_at == expect["sent_at"] == v["seal"]["now_ms"]
    assert (opened.sender_sign_kid.hex(), opened.ephemeral_public.hex()) == (expect["sender_sign_kid"], expect["ephemeral_public"])
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
        errors.PrecedenceMismatch.reason,  # likewise, the subject's precedence token (SUBJECTS.md)
        errors.FeedKeyPending.reason,  # the node's feed keyring says a key may still arrive: transport state
        errors.Untimely.reason,  # the base of FromFuture and TooOld, never raised itself
        errors.FeedPostRefused.reason, errors.StaleEpoch.reason, errors.NotAWriter.reason,  # the feed's rules (FEEDS.md)
    }
    assert receiver_errors <= seen


def test_the_vectors_cover_one_office_three_offices_a_feed_and_five_scripts():
    assert {"ok-office-1", "ok-office-3", "ok-feed"} <= set(VECTORS)
    assert len(VECTORS["ok-office-3"]["seal"]["recipients"]) == 3
    assert {n for n in VECTORS if n.startswith("ok-script-")} == {
        f"ok-script-{s}" for s in ("thai", "lao", "khmer", "burmese", "vietnamese")
    }


# -- the spec's own words, re-implemented ------------------------------------------------

SIGNATURE_LABEL = b"blo-bus/v2 bulletin signature\x00"
OFFICE_KEK_LABEL = b"blo-bus/v2 office wrap key\x00"
FEED_KEK_LABEL = b"blo-bus/v2 feed wrap key\x00"
WRAP_AD_LABEL = b"blo-bus/v2 content key wrap\x00"


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
    draws = spec_rng(s["rng_seed"], [32, 32, 24] + [24] * len(s["recipients"]))
    ephemeral_secret, key, nonce = draws[0], draws[1], draws[2]
    ephemeral_public = nb.crypto_scalarmult_base(ephemeral_secret)
    assert (ephemeral_secret.hex(), ephemeral_public.hex()) == (steps["ephemeral_secret"], steps["ephemeral_public"])
    assert (key.hex(), nonce.hex()) == (steps["content_key"], steps["content_nonce"])

    version, header, ciphertext = msgpack.unpackb(sealed_bytes(v), raw=True)
    assert version == 2 and header.hex() == steps["header"]
    bid, office, sign_kid, eph, sent_at, precedence, content_nonce, entries = msgpack.unpackb(header, raw=False)
    assert (bulletin_id_from_bytes(bid), office, precedence) == (s["bulletin"]["id"], sender["office_id"], s["bulletin"]["precedence"])
    assert (sign_kid.hex(), eph, sent_at, content_nonce) == (sender["sign_kid"], ephemeral_public, s["now_ms"], nonce)
    for entry, wrap, r, wrap_nonce in zip(entries, steps["wraps"], s["recipients"], draws[3:], strict=True):
        kind, rid, ref, entry_nonce, wrapped = entry
        if r["kind"] == "office":
            assert spec_key_id(b"blo-kid-x25519", _b(r["inbox_public"])).hex() == r["inbox_kid"]
            shared = nb.crypto_scalarmult(ephemeral_secret, _b(r["inbox_public"]))
            kek = hashlib.blake2b(OFFICE_KEK_LABEL + ephemeral_public + _b(r["inbox_public"]), key=shared, digest_size=32).digest()
            assert (kind, rid, ref.hex()) == (1, r["office_id"], r["inbox_kid"])
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
    assert hashlib.blake2b(message, digest_size=32).hexdigest() == steps["signed_message_blake2b32"]
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
SVK_KEYS = recipient(VECTORS["ok-office-1"]["seal"]["recipients"][0], VECTORS["ok-office-1"]["directory"]).keys  # type: ignore[union-attr]
FIRST = VECTORS["ok-office-1"]["open"][0]
THAI = Bulletin.from_dict(VECTORS["ok-office-1"]["seal"]["bulletin"])


def _seal(recipients, now_ms=None):
    return Sealer(MUK).seal(THAI, recipients, now_ms=VECTORS["ok-office-1"]["seal"]["now_ms"] if now_ms is None else now_ms,
                            rng=DeterministicRng("refusals"))


@pytest.mark.parametrize(
    ("recipients", "now_ms", "words"),
    [
        ([FeedRecipient("mekong-border", 1, b"")], None, "epoch key must be 32 bytes"),
        ([FeedRecipient("mekong-border", 0, bytes(32))], None, "1 to 2\\^63-1"),
        ([FeedRecipient("mekong-border", -1, bytes(32))], None, "1 to 2\\^63-1"),
        ([FeedRecipient("mekong-border", 1 << 63, bytes(32))], None, "1 to 2\\^63-1"),
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


def test_a_directory_key_of_the_wrong_length_is_a_typed_refusal_not_an_over_read(impl):
    from dataclasses import replace

    _, opener_class = impl
    v = VECTORS["ok-office-1"]
    boxes = [BoxKeyPair.from_secret(_b(k["secret"])) for k in FIRST["receiver"]["inbox_keys"]]
    muk = next(p for p in DIRECTORY if p.office_id == "TH-MUK")
    o = opener_class("LA-SVK", boxes, PeerBook([replace(muk, sign_public=muk.sign_public[:31])]))
    with pytest.raises(errors.BadSignature):
        open_case(o, v, FIRST)


def test_an_unusable_ephemeral_key_is_a_decryption_failure(impl):
    _, opener_class = impl
    v = VECTORS["ok-office-1"]
    _, header, ciphertext = msgpack.unpackb(sealed_bytes(v))
    h = msgpack.unpackb(header)
    h[3] = bytes(32)  # a low-order point: the X25519 output is all zero
    forged = msgpack.packb([2, msgpack.packb(h, use_bin_type=True), ciphertext], use_bin_type=True)
    with pytest.raises(errors.DecryptionFailed):
        open_case(opener(v, FIRST, opener_class), v, FIRST, forged)


def test_the_size_limit_is_inclusive(impl):
    _, opener_class = impl
    v = VECTORS["ok-office-1"]
    _, header, _ = msgpack.unpackb(sealed_bytes(v))
    o = opener(v, FIRST, opener_class)
    framing = len(msgpack.packb([2, header, b"\x00" * 100_000], use_bin_type=True)) - 100_000  # ciphertext as bin 32
    exactly = msgpack.packb([2, header, b"\x00" * (262_144 - framing)], use_bin_type=True)
    assert len(exactly) == 262_144
    with pytest.raises(errors.DecryptionFailed):
        open_case(o, v, FIRST, exactly)
    with pytest.raises(errors.TooLarge):
        open_case(o, v, FIRST, exactly + b"\x00")


@pytest.mark.parametrize("outer", [[3], [3, b"h"], [99, b"h", b"c", b"d", b"e"], [-1, b"", b""], [1, b"h", b"c"]])
def test_any_array_starting_with_another_version_is_unsupported_not_malformed(outer):
    v = VECTORS["ok-office-1"]
    with pytest.raises(errors.UnsupportedVersion, match="upgrade"):
        open_case(opener(v, FIRST), v, FIRST, msgpack.packb(outer, use_bin_type=True))


def test_the_label_table_in_the_spec_is_the_code_s_labels():
    from bus import envelope

    spec = (SCHEMAS / "ENVELOPE.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+_LABEL)` \| `([^`]+)` \| (\d+) \|", spec, flags=re.MULTILINE)
    assert {name for name, _, _ in rows} == {"SIGNATURE_LABEL", "OFFICE_KEK_LABEL", "FEED_KEK_LABEL", "WRAP_AD_LABEL"}
    for name, ascii_text, length in rows:
        assert getattr(envelope, name) == ascii_text.encode() + b"\x00" == globals()[name]
        assert len(getattr(envelope, name)) == int(length)
    for constant in ("262144", "1024"):
        assert constant in spec
    assert envelope.MAX_ENVELOPE_BYTES == 262_144 and envelope.MAX_RECIPIENTS == 1024


def test_the_receiver_check_table_in_the_spec_names_real_errors_and_reasons():
    spec = (SCHEMAS / "ENVELOPE.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| .+ \| (`\w+`(?:; `\w+`)?) \| (`\w+`(?:; `\w+`)?) \|$", spec, flags=re.MULTILINE)
    assert [int(n) for n, _, _ in rows] == list(range(1, 14))
    names = []
    for _, classes, reasons in rows:
        for name, reason in zip(re.findall(r"`(\w+)`", classes), re.findall(r"`(\w+)`", reasons), strict=True):
            cls = getattr(errors, name)
            assert issubclass(cls, errors.EnvelopeError) and cls.reason == reason
            names.append(name)
    assert names[-9:] == [
        "NotAddressedToUs", "RecipientMismatch", "FromFuture", "TooOld", "UnknownSender", "SenderKeyInvalid",
        "DecryptionFailed", "BadSignature", "InvalidContent",
    ]
