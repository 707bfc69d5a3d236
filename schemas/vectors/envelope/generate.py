"""Writes the wire-format v2 envelope test vectors in this folder, one JSON file per vector.

Run ``.venv/bin/python schemas/vectors/envelope/generate.py`` (or
``schemas/vectors/generate.py`` for every family). Every byte comes from fixed
seeds through ``bus.testing.DeterministicRng`` (whose algorithm ENVELOPE.md states),
so running it twice writes identical files, and ``tests/test_vectors.py`` checks that
the files on disk are what this script would write today.

Positive vectors are sealed by the reference ``Sealer`` (a fresh one per vector, so its
first draw is the ephemeral secret); an implementation that seals with the recorded
inputs (and draws its randomness in the order ENVELOPE.md gives) must reproduce
``sealed`` exactly. Every office recipient is sealed to an inbox key of its own, distinct
from its identity keys, as a node does. Negative vectors are a positive one damaged in a
stated way, or an envelope built by hand to pass every check but one; each says which
typed error a receiver must raise.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack
import nacl.bindings as nb

from bus import errors
from bus.bulletin import Bulletin
from bus.envelope import (
    MAX_ENVELOPE_BYTES,
    RECIPIENT_FEED,
    RECIPIENT_OFFICE,
    WIRE_VERSION,
    FeedRecipient,
    OfficeRecipient,
    Opener,
    Recipient,
    Sealer,
    Via,
    feed_kek,
    office_kek,
    signed_message,
    wrap_ad,
)
from bus.ids import new_bulletin_id
from bus.keys import BoxKeyPair, Identity, PeerBook, PeerKeys, SigningKeyPair
from bus.testing import DeterministicRng, render_vector, write_vectors
from bus.timing import MAX_AGE_MS, MAX_FUTURE_SKEW_MS, REVOCATION_GRACE_MS

HERE = Path(__file__).resolve().parent


def _photo_entry() -> dict[str, Any]:
    """The attachment entry of the photo in ../attachments/ (vector ok-photo)."""
    spec = importlib.util.spec_from_file_location("blo_vectors_attachments", HERE.parent / "attachments" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.photo_entry().as_dict()

SAMPLES = HERE.parent.parent.parent / "office_node" / "data" / "sample-bulletins.json"
_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
#: 2026-11-18T11:06:40Z; every vector is sealed at this instant unless it says otherwise.
NOW = 1_795_000_000_000
#: Every receiver opens at this witness time unless the vector says otherwise: stored a
#: second after it was sealed.
STORED = NOW + 1_000
FEED, EPOCH = "mekong-border", 7

Vector = dict[str, Any]


# -- inputs ------------------------------------------------------------------------------


def office(office_id: str) -> Identity:
    return Identity.generate(office_id, DeterministicRng(f"blo-bus vector identity {office_id}"))


def inbox(ident: Identity) -> BoxKeyPair:
    """The office's inbox key (DIRECTORY.md 3.3): its own, not its identity key."""
    return BoxKeyPair.from_secret(DeterministicRng(f"blo-bus vector inbox key {ident.office_id}")(32))


def to(ident: Identity) -> OfficeRecipient:
    """``ident`` as a recipient: its signing key's record, sealed to its inbox key."""
    key = inbox(ident)
    return OfficeRecipient(replace(ident.public(), box_public=key.public, box_kid=key.kid))


def feed_key(feed: str, epoch: int) -> bytes:
    return DeterministicRng(f"blo-bus vector feed {feed} epoch {epoch}")(32)


def samples() -> list[dict[str, Any]]:
    return json.loads(SAMPLES.read_text(encoding="utf-8"))["bulletins"]


def sample_bulletin(sample: dict[str, Any], name: str, releasable_to: list[str]) -> Bulletin:
    """A sample as a bulletin, the way office_node.samples.sample_to_bulletin builds it."""
    return Bulletin.from_dict(
        {
            "id": new_bulletin_id(NOW, DeterministicRng(f"blo-bus vector id {name}")),
            "from": sample["from"],
            "precedence": sample["precedence"],
            "kind": sample["kind"],
            "tlp": sample["tlp"],
            "releasable_to": releasable_to,
            "grading": f"{sample['source']}{sample['information']}",
            "title": sample["title"],
            "body": sample["body"],
            "created": NOW,
            "entities": sample.get("entities", []),
        }
    )


def every_field_bulletin() -> Bulletin:
    """A bulletin using every optional field and every entity type, so the vectors pin the
    encoding of each (including float64 coordinates and the fixed key order)."""
    return Bulletin.from_dict(
        {
            "id": new_bulletin_id(NOW, DeterministicRng("blo-bus vector id every-field")),
            "from": "TH-MUK",
            "precedence": "FLASH",
            "kind": "lookout",
            "tlp": "AMBER",
            "releasable_to": ["TH", "LA"],
            "grading": "A1",
            "title": "Lookout: stolen passport and vehicle expected at Friendship Bridge 2",
            "body": "Subject may attempt the crossing within 48 hours.\nDo not approach; notify TH-MUK.",
            "created": NOW,
            "expires": NOW + 7 * 24 * 3600 * 1000,
            "in_reply_to": new_bulletin_id(NOW - 3_600_000, DeterministicRng("blo-bus vector id earlier")),
            "entities": [
                {"type": "person", "name": "Somchai Example", "aliases": ["Chai", "ชาย"], "dob": "1980-02-29",
                 "nationality": "TH", "sex": "M", "note": "fictional"},
                {"type": "document", "doc_type": "passport", "number": "AA1234567", "country": "TH",
                 "status": "stolen", "expiry": "2031-05", "holder": "Somchai Example"},
                {"type": "vehicle", "plate": "กข 1234", "country": "TH", "make": "Toyota", "model": "Hilux",
                 "colour": "white", "vin": "MR0FZ29G000000001"},
                {"type": "vessel", "name": "Mekong Star", "imo": "9123456", "mmsi": "567000001", "flag": "LA"},
                {"type": "phone", "number": "+66 81 234 5678"},
                {"type": "organisation", "name": "Example Logistics Co.", "country": "LA"},
                {"type": "location", "name": "Friendship Bridge 2", "country": "TH", "lat": 16.5957, "lon": 104.7334},
            ],
            "attachments": [_photo_entry()],
            "tags": ["stolen-passport", "ยาเสพติด"],
        }
    )


# -- JSON forms of keys and recipients ---------------------------------------------------


def _hex(b: bytes) -> str:
    return b.hex()


def sender_json(ident: Identity) -> dict[str, Any]:
    return {
        "office_id": ident.office_id,
        "sign_seed": _hex(ident.signing.seed),
        "sign_public": _hex(ident.signing.public),
        "sign_kid": _hex(ident.signing.kid),
    }


def peer_json(peer: PeerKeys) -> dict[str, Any]:
    return {
        "office_id": peer.office_id,
        "sign_public": _hex(peer.sign_public),
        "sign_kid": _hex(peer.sign_kid),
        "valid_from": peer.valid_from,
        "valid_until": peer.valid_until,
        "revoked_at": peer.revoked_at,
    }


def recipient_json(r: Recipient) -> dict[str, Any]:
    if isinstance(r, OfficeRecipient):
        return {"kind": "office", "office_id": r.keys.office_id, "inbox_public": _hex(r.keys.box_public),
                "inbox_kid": _hex(r.keys.box_kid)}
    return {"kind": "feed", "feed": r.feed, "epoch": r.epoch, "epoch_key": _hex(r.epoch_key)}


def receiver_json(ident: Identity | None, office_id: str, feed_keys: dict[tuple[str, int], bytes]) -> dict[str, Any]:
    boxes = [inbox(ident)] if ident is not None else []
    return {
        "office_id": office_id,
        "inbox_keys": [{"secret": _hex(k.secret), "public": _hex(k.public), "kid": _hex(k.kid)} for k in boxes],
        "feed_keys": [{"feed": f, "epoch": e, "key": _hex(k)} for (f, e), k in feed_keys.items()],
    }


# -- building vectors --------------------------------------------------------------------


class Receiver:
    def __init__(self, office_id: str, ident: Identity | None = None,
                 feed_keys: dict[tuple[str, int], bytes] | None = None, *,
                 witnessed_at: int = STORED, via: Via | None = None) -> None:
        self.office_id, self.ident, self.feed_keys = office_id, ident, dict(feed_keys or {})
        self.witnessed_at, self.via = witnessed_at, via

    def opener(self, directory: list[PeerKeys]) -> Opener:
        boxes = [inbox(self.ident)] if self.ident is not None else []
        return Opener(self.office_id, boxes, PeerBook(directory), feed_keys=dict(self.feed_keys))

    def open(self, directory: list[PeerKeys], sealed: bytes) -> Any:
        return self.opener(directory).open(sealed, witnessed_at=self.witnessed_at, via=self.via)

    def json(self) -> dict[str, Any]:
        via = None if self.via is None else {"kind": self.via[0], "id": self.via[1]}
        return {"receiver": receiver_json(self.ident, self.office_id, self.feed_keys),
                "witnessed_at": self.witnessed_at, "via": via}


def _expect(receiver: Receiver, directory: list[PeerKeys], sealed: bytes) -> dict[str, Any]:
    """What the reference Opener makes of ``sealed``: the vector's expected outcome."""
    try:
        opened = receiver.open(directory, sealed)
    except errors.EnvelopeError as exc:
        return {"outcome": "error", "error": type(exc).__name__, "reason": exc.reason}
    via = opened.opened_via
    return {
        "outcome": "ok",
        "bulletin": opened.bulletin.to_dict(),
        "sent_at": opened.sent_at,
        "sender_sign_kid": _hex(opened.sender_sign_kid),
        "ephemeral_public": _hex(opened.ephemeral_public),
        "opened_via": {"kind": via.kind, "id": via.id, "ref": via.ref if isinstance(via.ref, int) else _hex(via.ref)},
    }


def _steps(sender: Identity, recipients: list[Recipient], rng_seed: str, opened_header: bytes,
           body: bytes, signature: bytes) -> dict[str, Any]:
    """The intermediate values of a seal, for implementers to check themselves step by step."""
    rng = DeterministicRng(rng_seed)
    ephemeral = BoxKeyPair.from_secret(rng(32))
    content_key, content_nonce = rng(32), rng(24)
    bid = msgpack.unpackb(opened_header)[0]
    wraps = []
    for r in recipients:
        nonce = rng(24)
        if isinstance(r, OfficeRecipient):
            kind, rid, ref = RECIPIENT_OFFICE, r.keys.office_id, r.keys.box_kid
            shared = nb.crypto_scalarmult(ephemeral.secret, r.keys.box_public)
            kek = office_kek(shared, ephemeral.public, r.keys.box_public)
        else:
            kind, rid, ref = RECIPIENT_FEED, r.feed, r.epoch
            shared = None
            kek = feed_kek(r.feed, r.epoch, r.epoch_key)
        ad = wrap_ad(bid, kind, rid, ref)
        wraps.append({
            "x25519_shared": _hex(shared) if shared is not None else None,
            "kek": _hex(kek),
            "wrap_ad": _hex(ad),
            "wrap_nonce": _hex(nonce),
            "wrapped_key": _hex(nb.crypto_aead_xchacha20poly1305_ietf_encrypt(content_key, ad, nonce, kek)),
        })
    return {
        "ephemeral_secret": _hex(ephemeral.secret),
        "ephemeral_public": _hex(ephemeral.public),
        "content_key": _hex(content_key),
        "content_nonce": _hex(content_nonce),
        "wraps": wraps,
        "header": _hex(opened_header),
        "body": _hex(body),
        "signed_message_blake2b32": hashlib.blake2b(signed_message(opened_header, body), digest_size=32).hexdigest(),
        "signature": _hex(signature),
    }


def vector(
    name: str,
    description: str,
    *,
    sender: Identity,
    bulletin: Bulletin,
    recipients: list[Recipient],
    directory: list[PeerKeys],
    receivers: list[Receiver],
    sealed: bytes | None = None,
    mutation: str | None = None,
    now_ms: int = NOW,
    steps: bool = False,
    rng_seed: str | None = None,
) -> Vector:
    rng_seed = rng_seed or f"blo-bus vector seal {name}"
    if sealed is None:
        sealed = Sealer(sender, max_bytes=4 * MAX_ENVELOPE_BYTES).seal(
            bulletin, recipients, now_ms=now_ms, rng=DeterministicRng(rng_seed)
        )
    v: Vector = {
        "name": name,
        "description": description,
        "wire_version": WIRE_VERSION,
        "seal": {
            "sender": sender_json(sender),
            "bulletin": bulletin.to_dict(),
            "recipients": [recipient_json(r) for r in recipients],
            "now_ms": now_ms,
            "rng_seed": rng_seed,
        },
        "mutation": mutation,
        "sealed": base64.b64encode(sealed).decode(),
        "sealed_sha256": hashlib.sha256(sealed).hexdigest(),
        "directory": [peer_json(p) for p in directory],
        "open": [{**r.json(), "expect": _expect(r, directory, sealed)} for r in receivers],
    }
    if steps and mutation is None:
        opened = receivers[0].open(directory, sealed)
        v["seal"]["steps"] = _steps(sender, recipients, rng_seed, opened.header, opened.body, opened.signature)
    return json.loads(json.dumps(v))  # tuples -> lists, as a reader of the file sees it


def _outer(sealed: bytes) -> list[Any]:
    return msgpack.unpackb(sealed)


def _repack_header(sealed: bytes, change: Callable[[list[Any]], None]) -> bytes:
    version, header, ct = _outer(sealed)
    h = msgpack.unpackb(header)
    change(h)
    return _packb([version, _packb(h), ct])


def _seal_raw(sender: Identity, bid: bytes, precedence: str, recipient: Identity, body: bytes, rng_seed: str,
              *, signature: bytes | None = None) -> bytes:
    """v2 sealing spelled out step by step (ENVELOPE.md 10), for envelopes the Sealer refuses
    to make: a body that breaks the schema, or a signature lifted from another envelope."""
    rng = DeterministicRng(rng_seed)
    ephemeral = BoxKeyPair.from_secret(rng(32))
    key, nonce, wrap_nonce = rng(32), rng(24), rng(24)
    box = inbox(recipient)
    kek = office_kek(nb.crypto_scalarmult(ephemeral.secret, box.public), ephemeral.public, box.public)
    wrapped = nb.crypto_aead_xchacha20poly1305_ietf_encrypt(
        key, wrap_ad(bid, RECIPIENT_OFFICE, recipient.office_id, box.kid), wrap_nonce, kek
    )
    header = _packb([bid, sender.office_id, sender.signing.kid, ephemeral.public, NOW, precedence, nonce,
                     [[RECIPIENT_OFFICE, recipient.office_id, box.kid, wrap_nonce, wrapped]]])
    if signature is None:
        signature = nb.crypto_sign(signed_message(header, body), sender.signing.secret)[:64]
    ct = nb.crypto_aead_xchacha20poly1305_ietf_encrypt(signature + body, header, nonce, key)
    return _packb([WIRE_VERSION, header, ct])


def build_vectors() -> dict[str, Vector]:
    """Every vector, by file stem."""
    MUK, SVK, TCCC, LTCCC, NKP = (office(o) for o in ("TH-MUK", "LA-SVK", "TH-TCCC", "LA-TCCC", "TH-NKP"))
    fkey = feed_key(FEED, EPOCH)
    directory = [p.public() for p in (MUK, SVK, TCCC, LTCCC, NKP)]
    svk = Receiver("LA-SVK", SVK)
    out: list[Vector] = []

    # -- positive -----------------------------------------------------------------------
    thai = sample_bulletin(samples()[0], "office-1", ["TH", "LA"])
    base = vector(
        "ok-office-1", "TH-MUK seals a Thai incident bulletin to one office, LA-SVK, which opens it.",
        sender=MUK, bulletin=thai, recipients=[to(SVK)], directory=directory,
        receivers=[svk], steps=True,
    )
    out.append(base)
    base_sealed = base64.b64decode(base["sealed"])
    every = every_field_bulletin()
    three = [to(SVK), to(TCCC), to(LTCCC)]
    out.append(vector(
        "ok-office-3",
        "A FLASH lookout using every optional field and every entity type, sealed to three offices; "
        "each opens it through its own recipient entry.",
        sender=MUK, bulletin=every, recipients=three, directory=directory,
        receivers=[svk, Receiver("TH-TCCC", TCCC), Receiver("LA-TCCC", LTCCC)], steps=True,
    ))
    out.append(vector(
        "ok-feed",
        f"TH-TCCC writes strategic intelligence to the feed {FEED!r} at epoch {EPOCH}: one wrap under the "
        "epoch key, opened by a member that holds that key and no office key of its own in the entries.",
        sender=TCCC, bulletin=sample_bulletin(samples()[5], "feed", ["TH", "LA", "KH", "MM", "VN"]),
        recipients=[FeedRecipient(FEED, EPOCH, fkey)], directory=directory,
        receivers=[Receiver("LA-SVK", SVK, {(FEED, EPOCH): fkey})], steps=True,
    ))
    scripts = [
        ("thai", 0, MUK, "TH-MUK", SVK),
        ("lao", 1, SVK, "LA-SVK", MUK),
        ("khmer", 2, office("KH-PPT"), "KH-PPT", office("TH-AYT")),
        ("burmese", 3, office("MM-TCL"), "MM-TCL", office("TH-MSI")),
        ("vietnamese", 4, office("VN-LBO"), "VN-LBO", office("LA-DSV")),
    ]
    for script, index, snd, sender_id, rcp in scripts:
        assert snd.office_id == sender_id
        b = sample_bulletin(samples()[index], f"script-{script}", sorted({sender_id[:2], rcp.office_id[:2]}))
        out.append(vector(
            f"ok-script-{script}",
            f"A sample bulletin in {script.capitalize()} script from {sender_id} to {rcp.office_id}; the text "
            "must come out code point for code point (no normalisation).",
            sender=snd, bulletin=b, recipients=[to(rcp)],
            directory=[snd.public(), rcp.public()], receivers=[Receiver(rcp.office_id, rcp)],
        ))

    # -- negative: a positive vector damaged in one way -----------------------------------
    def damaged(name: str, description: str, sealed: bytes, mutation: str | None, *,
                receivers: list[Receiver] | None = None, dir_: list[PeerKeys] | None = None) -> Vector:
        """A vector whose 'seal' inputs are ok-office-1's, and whose bytes are those, changed by ``mutation``."""
        return vector(name, description, sender=MUK, bulletin=thai, recipients=[to(SVK)],
                      directory=directory if dir_ is None else dir_, receivers=receivers or [svk],
                      sealed=sealed, mutation=mutation, rng_seed=base["seal"]["rng_seed"])

    version, header, ct = _outer(base_sealed)
    flipped = ct[:40] + bytes([ct[40] ^ 0x01]) + ct[40 + 1:]
    out.append(damaged("fail-tampered-ciphertext", "One bit of the ciphertext flipped in transit.",
                       _packb([version, header, flipped]), "ok-office-1 with bit 0 of ciphertext byte 40 flipped"))

    def to_flash(h: list[Any]) -> None:
        h[5] = "FLASH"

    out.append(damaged("fail-tampered-header",
                       "The precedence in the header raised to FLASH in transit; the header is the content AEAD's "
                       "associated data, so decryption fails.",
                       _repack_header(base_sealed, to_flash), "ok-office-1 with header field 5 set to \"FLASH\""))
    out.append(damaged("fail-wrong-recipient", "Opened by TH-NKP, which no recipient entry names.", base_sealed,
                       None, receivers=[Receiver("TH-NKP", NKP)]))
    out.append(damaged("fail-truncated", "The last byte cut off.", base_sealed[:-1],
                       "ok-office-1 without its last byte"))
    out.append(damaged("fail-trailing-bytes", "One zero byte after the envelope.", base_sealed + b"\x00",
                       "ok-office-1 followed by 0x00"))
    out.append(damaged("fail-unknown-version", "The same header and ciphertext under wire version 3.",
                       _packb([3, header, ct]), "ok-office-1 with the outer version set to 3"))
    out.append(damaged("fail-unknown-version-longer", "A future version with a fourth outer element: still "
                       "'unsupported version', never 'malformed'.",
                       _packb([3, header, ct, b"future"]), "[3, header, ciphertext, b\"future\"]"))
    out.append(damaged("fail-old-version", "Wire version 1: refused as unsupported (the sender must upgrade).",
                       _packb([1, header, ct]), "ok-office-1 with the outer version set to 1"))
    out.append(damaged("fail-unknown-sender", "LA-SVK's directory has no record of TH-MUK yet (retryable).",
                       base_sealed, None,
                       dir_=[p for p in directory if p.office_id != "TH-MUK"]))
    revoked = [replace(p, revoked_at=NOW) if p.office_id == "TH-MUK" else p for p in directory]
    out.append(damaged("fail-revoked-sender", "TH-MUK's keys were revoked at exactly the sent-at time.",
                       base_sealed, None, dir_=revoked))
    # TRUST.md T3: a thief holding TH-MUK's key after it was revoked (at NOW + 1 s) keeps
    # sent_at before the revocation; the bulletin is stored after revocation + grace.
    later = [replace(p, revoked_at=NOW + 1_000) if p.office_id == "TH-MUK" else p for p in directory]
    out.append(damaged(
        "fail-revoked-before-stored",
        "Backdated past a revocation: TH-MUK's key was revoked 1 s after the signed sent-at, and the bulletin was "
        "stored at the revocation plus the grace; refused by its witness time, whatever its sent-at says. "
        "The same bytes stored just inside the grace open (the second receiver).",
        base_sealed, None, dir_=later,
        receivers=[Receiver("LA-SVK", SVK, witnessed_at=NOW + 1_000 + REVOCATION_GRACE_MS),
                   Receiver("LA-SVK", SVK, witnessed_at=NOW + 1_000 + REVOCATION_GRACE_MS - 1)],
    ))
    out.append(damaged(
        "fail-from-the-future",
        "Sealed with a sent-at more than the allowed skew after the time it was stored (a forged date two years "
        "ahead looks the same); the second receiver, stored exactly at the limit, opens it.",
        base_sealed, None,
        receivers=[Receiver("LA-SVK", SVK, witnessed_at=NOW - MAX_FUTURE_SKEW_MS - 1),
                   Receiver("LA-SVK", SVK, witnessed_at=NOW - MAX_FUTURE_SKEW_MS)],
    ))
    out.append(damaged(
        "fail-too-old",
        "A captured envelope stored again (replayed) more than the maximum age after it was signed; the second "
        "receiver, stored exactly at the limit, opens it.",
        base_sealed, None,
        receivers=[Receiver("LA-SVK", SVK, witnessed_at=NOW + MAX_AGE_MS + 1),
                   Receiver("LA-SVK", SVK, witnessed_at=NOW + MAX_AGE_MS)],
    ))
    out.append(damaged(
        "fail-recipient-mismatch",
        "An office bulletin to LA-SVK re-published on a feed subject: LA-SVK holds the feed's key, but the bulletin "
        "has no entry for the feed, so it does not open through it.",
        base_sealed, None,
        receivers=[Receiver("LA-SVK", SVK, {(FEED, EPOCH): fkey}, via=(RECIPIENT_FEED, FEED)),
                   Receiver("LA-SVK", SVK, via=(RECIPIENT_OFFICE, "LA-SVK"))],
    ))
    early = [replace(p, valid_from=NOW + 1) if p.office_id == "TH-MUK" else p for p in directory]
    out.append(damaged("fail-sender-not-yet-valid", "TH-MUK's keys become valid 1 ms after the sent-at time.",
                       base_sealed, None, dir_=early))

    def header_change(index: int, value: Any) -> Callable[[list[Any]], None]:
        def change(h: list[Any]) -> None:
            h[index] = value
        return change

    bid = msgpack.unpackb(header)[0]
    malformed = [
        ("id-as-str", 0, bid.hex(), "the bulletin id as a str (hex) instead of 16 bytes of bin"),
        ("sign-kid-short", 2, MUK.signing.kid[:7], "a 7-byte signing key id"),
        ("sent-at-str", 4, str(NOW), "sent-at as a decimal str instead of an unsigned integer"),
        ("precedence-lowercase", 5, "flash", "precedence \"flash\" (lower case)"),
        ("no-recipients", 7, [], "an empty recipient list"),
        ("ephemeral-short", 3, b"\x00" * 31, "a 31-byte ephemeral key"),
    ]
    for suffix, index, value, what in malformed:
        out.append(damaged(f"fail-malformed-header-{suffix}", f"Header field {index}: {what}.",
                           _repack_header(base_sealed, header_change(index, value)),
                           f"ok-office-1 with header field {index} replaced: {what}"))

    def entry_kind_as_str(h: list[Any]) -> None:
        h[7][0][0] = "1"

    out.append(damaged("fail-malformed-recipient-kind", "The recipient kind as the str \"1\" instead of the integer 1.",
                       _repack_header(base_sealed, entry_kind_as_str), "ok-office-1 with header[7][0][0] = \"1\""))

    def epoch_zero(h: list[Any]) -> None:
        h[7][0] = [RECIPIENT_FEED, FEED, 0, h[7][0][3], h[7][0][4]]

    out.append(damaged("fail-malformed-epoch-zero", "A feed entry with epoch 0 (epochs start at 1).",
                       _repack_header(base_sealed, epoch_zero),
                       f"ok-office-1 with header[7][0] replaced by a feed entry for {FEED} epoch 0"))
    filler = DeterministicRng("blo-bus vector fail-oversize")(MAX_ENVELOPE_BYTES)
    oversize = _packb([version, header, filler])
    out.append(damaged(
        "fail-oversize",
        f"A {len(oversize)}-byte envelope, over the {MAX_ENVELOPE_BYTES}-byte limit: refused on its length "
        "alone, before any parsing.",
        oversize,
        f"ok-office-1's header with the ciphertext replaced by the first {MAX_ENVELOPE_BYTES} bytes of "
        "DeterministicRng(\"blo-bus vector fail-oversize\")",
    ))

    # -- negative: built by hand to pass every check but one ------------------------------
    mallory = SigningKeyPair.from_seed(DeterministicRng("blo-bus vector identity mallory")(32))
    forged_key = Identity("TH-MUK", replace(MUK.signing, secret=mallory.secret), MUK.box)
    out.append(vector(
        "fail-bad-signature",
        "Correctly wrapped and encrypted, header naming TH-MUK's keys, but the inner signature is by another "
        "Ed25519 key.",
        sender=MUK, bulletin=thai, recipients=[to(SVK)], directory=directory,
        receivers=[svk],
        sealed=Sealer(forged_key).seal(thai, [to(SVK)], now_ms=NOW,
                                       rng=DeterministicRng("blo-bus vector seal fail-bad-signature")),
        mutation=f"sealed as in 'seal' but signed with the Ed25519 seed {mallory.seed.hex()}",
    ))
    opened = svk.open(directory, base_sealed)
    forged = _seal_raw(SVK, bid, "IMMEDIATE", NKP, opened.body, "blo-bus vector seal fail-resent-under-another-sender",
                       signature=opened.signature)
    out.append(vector(
        "fail-resent-under-another-sender",
        "Davis's attack: LA-SVK, a legitimate recipient, takes TH-MUK's signature and body and re-encrypts them to "
        "TH-NKP under a header naming itself as sender. The signature covered TH-MUK's header, so it fails.",
        sender=MUK, bulletin=thai, recipients=[to(SVK)], directory=directory,
        receivers=[Receiver("TH-NKP", NKP)], sealed=forged,
        mutation="ok-office-1's signature||body re-encrypted by LA-SVK to TH-NKP under a new header with sender LA-SVK",
    ))
    bad_body = _packb({**thai.body_dict(), "grading": "G7"})
    out.append(vector(
        "fail-invalid-content",
        "Encrypted and signed by TH-MUK, but the body's grading is G7 (the Admiralty scale stops at F6).",
        sender=MUK, bulletin=thai, recipients=[to(SVK)], directory=directory,
        receivers=[svk], sealed=_seal_raw(MUK, bid, "IMMEDIATE", SVK, bad_body, "blo-bus vector seal fail-invalid-content"),
        mutation="built by hand: the body map has grading \"G7\"",
    ))
    # msgpack map with "title" twice: fixmap header then the pairs, written byte by byte.
    pairs = [*thai.body_dict().items(), ("title", "second title")]
    dup_body = bytes([0x80 | len(pairs)]) + b"".join(_packb(k) + _packb(v) for k, v in pairs)
    out.append(vector(
        "fail-duplicate-body-key",
        "Encrypted and signed by TH-MUK, but the body map names \"title\" twice.",
        sender=MUK, bulletin=thai, recipients=[to(SVK)], directory=directory,
        receivers=[svk], sealed=_seal_raw(MUK, bid, "IMMEDIATE", SVK, dup_body, "blo-bus vector seal fail-duplicate-body-key"),
        mutation="built by hand: the body map has the key \"title\" twice",
    ))
    feed_sealed = base64.b64decode(out[2]["sealed"])
    out.append(vector(
        "fail-feed-wrong-epoch",
        f"A feed bulletin at epoch {EPOCH} opened by a member holding only epoch {EPOCH + 1}'s key "
        "(a removed member keeps old epochs, a new member gets only new ones).",
        sender=TCCC, bulletin=sample_bulletin(samples()[5], "feed", ["TH", "LA", "KH", "MM", "VN"]),
        recipients=[FeedRecipient(FEED, EPOCH, fkey)], directory=directory,
        receivers=[Receiver("LA-SVK", SVK, {(FEED, EPOCH + 1): feed_key(FEED, EPOCH + 1)})],
        sealed=feed_sealed, rng_seed=out[2]["seal"]["rng_seed"],
    ))
    return {v["name"]: v for v in out}




def main() -> None:
    write_vectors(HERE, build_vectors())


render = render_vector  # what the tests compare the files with


if __name__ == "__main__":
    main()
