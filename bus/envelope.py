"""Sealing and opening bulletins: wire format v1. Bytes in, values out; no I/O.

The one rule: **a recipient accepts a bulletin only if the exact bytes that travelled
were signed by the sender's current key, together with the header that names sender,
recipients, id and time.** Everything below serves that rule; ``schemas/ENVELOPE.md``
specifies the bytes for other implementations and ``schemas/vectors/`` pins them.

Sealing, in order:

1. draw a fresh 32-byte content key K and a 24-byte content nonce;
2. wrap K for each recipient: an office under a key-encryption key derived from the
   static X25519 secret it shares with the sender (cached, so a wrap is one short AEAD
   call rather than a scalar multiplication); a feed under its current epoch key;
3. encode the header (id, sender, sender key ids, sent-at, precedence, content nonce,
   the recipient entries with their wraps) once, with msgpack: these are *the* bytes;
4. sign ``label || len(header) || header || body`` with Ed25519, the label naming the
   purpose and wire version, so the signature covers who it is to as well as what it says;
5. encrypt ``signature || body`` under K with XChaCha20-Poly1305, the header as
   associated data: the signature is hidden, and no header can be swapped in.

Opening checks in the reverse order and fails with exactly one typed error from
``bus.errors`` (the first check that fails), never a raw library exception.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack
import nacl.bindings as nb
import nacl.exceptions
import nacl.utils

from bus import errors
from bus.bulletin import PRECEDENCES, Bulletin, body_from_dict, is_feed_name, is_office_id
from bus.ids import BULLETIN_ID_BYTES, KEY_ID_BYTES, Rng, bulletin_id_from_bytes, bulletin_id_to_bytes
from bus.keys import BoxKeyPair, Identity, PeerKeys

WIRE_VERSION = 1
#: Hard limit on a sealed bulletin, checked by seal (output) and open (input) alike.
#: Well under NATS's default 1 MiB max_payload; attachments travel by reference.
MAX_ENVELOPE_BYTES = 256 * 1024
MAX_RECIPIENTS = 1024

RECIPIENT_OFFICE = 1
RECIPIENT_FEED = 2

SIGNATURE_LABEL = b"blo-bus/v1 bulletin signature\x00"
OFFICE_KEK_LABEL = b"blo-bus/v1 office wrap key\x00"
FEED_KEK_LABEL = b"blo-bus/v1 feed wrap key\x00"
WRAP_AD_LABEL = b"blo-bus/v1 content key wrap\x00"

KEY_BYTES = 32
NONCE_BYTES = 24
TAG_BYTES = 16
SIGNATURE_BYTES = 64

_aead_encrypt = nb.crypto_aead_xchacha20poly1305_ietf_encrypt
_aead_decrypt = nb.crypto_aead_xchacha20poly1305_ietf_decrypt
_sign = nb.crypto_sign
_sign_open = nb.crypto_sign_open
_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_u32 = struct.Struct(">I").pack


class KeyResolver(Protocol):
    """Where ``open`` learns a sender's public keys: the verified directory."""

    def sender_keys(self, office_id: str, sign_kid: bytes) -> PeerKeys | None: ...


@dataclass(frozen=True, slots=True)
class OfficeRecipient:
    keys: PeerKeys


@dataclass(frozen=True, slots=True)
class FeedRecipient:
    feed: str
    epoch: int
    epoch_key: bytes


Recipient = OfficeRecipient | FeedRecipient


@dataclass(frozen=True, slots=True)
class RecipientRef:
    """One recipient entry of a header, as the receiver sees it (without the wrap)."""

    kind: int  # RECIPIENT_OFFICE or RECIPIENT_FEED
    id: str  # office id or feed name
    ref: bytes | int  # the office's box key id, or the feed epoch


@dataclass(frozen=True, slots=True)
class Opened:
    """A verified bulletin and the facts of its envelope.

    ``header``, ``body`` and ``signature`` are kept so the bulletin can be re-verified
    later or forwarded with its original signature intact (see ``verify_detached``).
    """

    bulletin: Bulletin
    sent_at: int
    sender_sign_kid: bytes
    sender_box_kid: bytes
    opened_via: RecipientRef
    header: bytes
    body: bytes
    signature: bytes
    #: The whole envelope as it arrived (the node's store keeps the exact bytes).
    sealed: bytes = b""

    @property
    def recipients(self) -> tuple[RecipientRef, ...]:
        return tuple(RecipientRef(e[0], e[1], e[2]) for e in _parse_header(self.header).entries)


# -- small crypto helpers; every derivation names its purpose ---------------------------


def _kdf(key: bytes, label: bytes, *parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=KEY_BYTES, key=key)
    h.update(label)
    for part in parts:
        h.update(part)
    return h.digest()


def office_kek(own: BoxKeyPair, peer_public: bytes, *, sending: bool) -> bytes:
    """The key-encryption key for content keys between two offices' box keys.

    Derived from the X25519 shared secret; sender's public key first, then the
    recipient's, so both sides derive the same key and the direction is bound.
    """
    # PyNaCl passes these buffers to libsodium unchecked: a short key would be over-read.
    if type(peer_public) is not bytes or len(peer_public) != KEY_BYTES or len(own.secret) != KEY_BYTES:
        raise errors.DecryptionFailed("the peer's encryption key is not a 32-byte X25519 key")
    try:
        shared = nb.crypto_scalarmult(own.secret, peer_public)
    except nacl.exceptions.RuntimeError as exc:  # low-order point: all-zero output
        raise errors.DecryptionFailed("the peer's encryption key is not a usable X25519 key") from exc
    first, second = (own.public, peer_public) if sending else (peer_public, own.public)
    return _kdf(shared, OFFICE_KEK_LABEL, first, second)


def feed_kek(feed: str, epoch: int, epoch_key: bytes) -> bytes:
    return _kdf(epoch_key, FEED_KEK_LABEL, feed.encode(), struct.pack(">Q", epoch))


def _wrap_ad(bulletin_id: bytes, kind: int, rid: str, ref: bytes | int) -> bytes:
    ref_bytes = ref if isinstance(ref, bytes) else struct.pack(">Q", ref)
    return b"".join((WRAP_AD_LABEL, bulletin_id, bytes((kind,)), rid.encode(), b"\x00", ref_bytes))


def signed_message(header: bytes, body: bytes) -> bytes:
    return b"".join((SIGNATURE_LABEL, _u32(len(header)), header, body))


def encode_body(bulletin: Bulletin) -> bytes:
    return _packb(bulletin.body_dict())


# -- sealing ---------------------------------------------------------------------------


class Sealer:
    """Seals bulletins as one office. Keeps the per-peer wrap keys it derives (the
    expensive X25519 step) so a bulletin to N offices costs N short AEAD calls."""

    def __init__(self, identity: Identity, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> None:
        self.identity = identity
        self.max_bytes = max_bytes
        self._keks: dict[bytes, bytes] = {}
        self._sender_prefix = (identity.office_id, identity.signing.kid, identity.box.kid)

    def _office_kek(self, peer: PeerKeys) -> bytes:
        kek = self._keks.get(peer.box_public)
        if kek is None:
            try:
                kek = office_kek(self.identity.box, peer.box_public, sending=True)
            except errors.DecryptionFailed as exc:
                raise errors.RecipientKeyInvalid(f"cannot seal to {peer.office_id}: {exc.message}") from exc
            self._keks[peer.box_public] = kek
        return kek

    def seal(
        self,
        bulletin: Bulletin,
        recipients: Sequence[Recipient],
        *,
        now_ms: int,
        rng: Rng = nacl.utils.random,
    ) -> bytes:
        """The sealed bytes of ``bulletin`` for ``recipients``, sent at ``now_ms``."""
        if bulletin.sender != self.identity.office_id:
            raise errors.ValidationError("from", f"is {bulletin.sender} but this node signs as {self.identity.office_id}")
        if not recipients:
            raise errors.ValidationError("recipients", "a bulletin needs at least one recipient")
        if len(recipients) > MAX_RECIPIENTS:
            raise errors.ValidationError("recipients", f"{len(recipients)} recipients; the limit is {MAX_RECIPIENTS}")
        # Refuse here what every receiver would refuse as malformed, rather than send it.
        if type(now_ms) is not int or not 0 <= now_ms < 1 << 48:
            raise errors.ValidationError("sent_at", f"{now_ms!r} is not a time in ms within the 48-bit range")
        bid = bulletin_id_to_bytes(bulletin.id)
        content_key = rng(KEY_BYTES)
        content_nonce = rng(NONCE_BYTES)
        entries: list[list[Any]] = []
        seen: set[tuple[int, str]] = set()
        for r in recipients:
            if isinstance(r, OfficeRecipient):
                keys = r.keys
                if not is_office_id(keys.office_id):
                    raise errors.ValidationError("recipients", f"{keys.office_id!r} is not an office id")
                problem = keys.problem_at(now_ms)
                if problem is not None:
                    raise errors.RecipientKeyInvalid(f"cannot seal to {keys.office_id}: {problem}")
                kind, rid, ref, kek = RECIPIENT_OFFICE, keys.office_id, keys.box_kid, self._office_kek(keys)
            else:
                if not is_feed_name(r.feed):
                    raise errors.ValidationError("recipients", f"{r.feed!r} is not a feed name (a-z, 0-9, hyphens)")
                if type(r.epoch) is not int or not 0 <= r.epoch < 1 << 64:
                    raise errors.ValidationError("recipients", f"feed {r.feed} epoch {r.epoch!r} is not a 64-bit unsigned integer")
                # An empty key would make BLAKE2b unkeyed: anyone could derive the wrap key.
                if type(r.epoch_key) is not bytes or len(r.epoch_key) != KEY_BYTES:
                    raise errors.ValidationError("recipients", f"feed {r.feed} epoch key must be {KEY_BYTES} bytes")
                kind, rid, ref = RECIPIENT_FEED, r.feed, r.epoch
                kek = feed_kek(r.feed, r.epoch, r.epoch_key)
            if (kind, rid) in seen:
                raise errors.ValidationError("recipients", f"{rid} is named twice")
            seen.add((kind, rid))
            nonce = rng(NONCE_BYTES)
            wrapped = _aead_encrypt(content_key, _wrap_ad(bid, kind, rid, ref), nonce, kek)
            entries.append([kind, rid, ref, nonce, wrapped])
        office, sign_kid, box_kid = self._sender_prefix
        header = _packb([bid, office, sign_kid, box_kid, now_ms, bulletin.precedence, content_nonce, entries])
        body = encode_body(bulletin)
        signature = _sign(signed_message(header, body), self.identity.signing.secret)[:SIGNATURE_BYTES]
        ciphertext = _aead_encrypt(signature + body, header, content_nonce, content_key)
        sealed = _packb([WIRE_VERSION, header, ciphertext])
        if len(sealed) > self.max_bytes:
            raise errors.TooLarge(
                f"the sealed bulletin is {len(sealed)} bytes; the limit is {self.max_bytes}. "
                "Shorten the body or send large files as attachment references."
            )
        return sealed


# -- opening ---------------------------------------------------------------------------


def _unpack(data: bytes, what: str, **kwargs: Any) -> Any:
    # msgpack's exception set is wide (ValueError subclasses, TypeError, UnicodeDecodeError,
    # RecursionError on deep nesting...) and not all documented; this call is the whole
    # try-body, so catching broadly here cannot hide a bug elsewhere.
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, **kwargs)
    except Exception as exc:
        raise errors.MalformedEnvelope(f"the {what} is not valid msgpack ({type(exc).__name__})") from exc


def _no_duplicate_keys(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate map key")
    return out


def _bad(what: str) -> errors.MalformedEnvelope:
    return errors.MalformedEnvelope(f"the header's {what} is missing or of the wrong type")


@dataclass(frozen=True, slots=True)
class _Header:
    bulletin_id: bytes
    sender: str
    sign_kid: bytes
    box_kid: bytes
    sent_at: int
    precedence: str
    content_nonce: bytes
    entries: list[list[Any]]


def _parse_header(header: bytes) -> _Header:
    h = _unpack(header, "header")
    if type(h) is not list or len(h) != 8:
        raise errors.MalformedEnvelope("the header must be a msgpack array of 8 fields")
    bid, sender, sign_kid, box_kid, sent_at, precedence, nonce, entries = h
    if type(bid) is not bytes or len(bid) != BULLETIN_ID_BYTES:
        raise _bad("bulletin id")
    if not is_office_id(sender):
        raise _bad("sender")
    if type(sign_kid) is not bytes or len(sign_kid) != KEY_ID_BYTES:
        raise _bad("sender signing key id")
    if type(box_kid) is not bytes or len(box_kid) != KEY_ID_BYTES:
        raise _bad("sender encryption key id")
    if type(sent_at) is not int or not 0 <= sent_at < 1 << 48:
        raise _bad("sent-at time")
    if precedence not in PRECEDENCES:
        raise _bad("precedence")
    if type(nonce) is not bytes or len(nonce) != NONCE_BYTES:
        raise _bad("content nonce")
    if type(entries) is not list or not 0 < len(entries) <= MAX_RECIPIENTS:
        raise _bad("recipient list")
    for e in entries:
        if (
            type(e) is not list
            or len(e) != 5
            or type(e[0]) is not int
            or not (
                is_office_id(e[1]) and type(e[2]) is bytes and len(e[2]) == KEY_ID_BYTES
                if e[0] == RECIPIENT_OFFICE
                else e[0] == RECIPIENT_FEED and is_feed_name(e[1]) and type(e[2]) is int and 0 <= e[2] < 1 << 64
            )
            or type(e[3]) is not bytes
            or len(e[3]) != NONCE_BYTES
            or type(e[4]) is not bytes
            or len(e[4]) != KEY_BYTES + TAG_BYTES
        ):
            raise _bad("recipient entry")
    return _Header(bid, sender, sign_kid, box_kid, sent_at, precedence, nonce, entries)


def split_envelope(data: bytes, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> tuple[bytes, bytes]:
    """Check size, shape and version; return ``(header, ciphertext)`` bytes."""
    if len(data) > max_bytes:
        raise errors.TooLarge(f"the sealed bulletin is {len(data)} bytes; the limit is {max_bytes}")
    outer = _unpack(data, "envelope")
    # The version is read before the arity: every version starts [version, ...], and a
    # later one may carry more fields; a v1 node must answer "upgrade", not "malformed".
    if type(outer) is not list or not outer or type(outer[0]) is not int:
        raise errors.MalformedEnvelope("a sealed bulletin must be a msgpack array [version, header, ciphertext]")
    version = outer[0]
    if version != WIRE_VERSION:
        raise errors.UnsupportedVersion(
            f"wire version {version} is not supported by this node (it speaks {WIRE_VERSION}); upgrade it"
        )
    if len(outer) != 3:
        raise errors.MalformedEnvelope("a v1 sealed bulletin must be a msgpack array of 3: [version, header, ciphertext]")
    _, header, ciphertext = outer
    if type(header) is not bytes or type(ciphertext) is not bytes:
        raise errors.MalformedEnvelope("the header and ciphertext must be msgpack bin values")
    if len(ciphertext) < TAG_BYTES + SIGNATURE_BYTES:
        raise errors.MalformedEnvelope("the ciphertext is too short to hold a signature")
    return header, ciphertext


def read_routing(data: bytes) -> tuple[str, str, str, int, tuple[RecipientRef, ...]]:
    """What anyone (a NATS server, a router) can read without keys:
    ``(bulletin_id, sender, precedence, sent_at, recipients)``. Nothing here is verified."""
    header, _ = split_envelope(data)
    h = _parse_header(header)
    refs = tuple(RecipientRef(e[0], e[1], e[2]) for e in h.entries)
    return bulletin_id_from_bytes(h.bulletin_id), h.sender, h.precedence, h.sent_at, refs


class Opener:
    """Opens bulletins addressed to one office (and the feeds whose epoch keys it holds).

    ``feed_keys`` maps ``(feed, epoch)`` to the 32-byte epoch key; it is read on every
    open, so a caller may add epochs to it as they arrive.
    """

    def __init__(
        self,
        office_id: str,
        box_keys: Iterable[BoxKeyPair],
        resolver: KeyResolver,
        *,
        feed_keys: dict[tuple[str, int], bytes] | None = None,
        max_bytes: int = MAX_ENVELOPE_BYTES,
    ) -> None:
        self.office_id = office_id
        self.box_keys = {k.kid: k for k in box_keys}
        self.resolver = resolver
        self.feed_keys = feed_keys if feed_keys is not None else {}
        self.max_bytes = max_bytes
        self._keks: dict[tuple[bytes, bytes], bytes] = {}

    @classmethod
    def for_identity(cls, identity: Identity, resolver: KeyResolver, **kwargs: Any) -> Opener:
        return cls(identity.office_id, identity.box_keys, resolver, **kwargs)

    def _kek_for(self, entry: list[Any], sender: PeerKeys) -> bytes:
        kind, rid, ref = entry[0], entry[1], entry[2]
        if kind == RECIPIENT_FEED:
            return feed_kek(rid, ref, self.feed_keys[(rid, ref)])
        cache_key = (ref, sender.box_public)
        kek = self._keks.get(cache_key)
        if kek is None:
            kek = self._keks[cache_key] = office_kek(self.box_keys[ref], sender.box_public, sending=False)
        return kek

    def _addressed_to_us(self, entry: list[Any]) -> bool:
        if entry[0] == RECIPIENT_OFFICE:
            return entry[1] == self.office_id and entry[2] in self.box_keys
        return (entry[1], entry[2]) in self.feed_keys

    def open(self, data: bytes) -> Opened:
        """Verify and decrypt; returns ``Opened`` or raises one ``EnvelopeError``.

        Key validity is judged at the header's sent-at time, which the signature covers.
        """
        header, ciphertext = split_envelope(data, max_bytes=self.max_bytes)
        h = _parse_header(header)
        entry = next((e for e in h.entries if self._addressed_to_us(e)), None)
        if entry is None:
            raise errors.NotAddressedToUs(f"this bulletin is not addressed to {self.office_id} or a feed it holds keys for")
        sender = self.resolver.sender_keys(h.sender, h.sign_kid)
        if sender is None or sender.box_kid != h.box_kid:
            raise errors.UnknownSender(
                f"no directory record for {h.sender} with signing key {h.sign_kid.hex()} and encryption key "
                f"{h.box_kid.hex()}; kept for retry when the directory updates"
            )
        problem = sender.problem_at(h.sent_at)
        if problem is not None:
            raise errors.SenderKeyInvalid(f"rejected: signed at {h.sent_at} ms, but {problem}")
        kek = self._kek_for(entry, sender)
        try:
            content_key = _aead_decrypt(entry[4], _wrap_ad(h.bulletin_id, *entry[:3]), entry[3], kek)
            plaintext = _aead_decrypt(ciphertext, header, h.content_nonce, content_key)
        except nacl.exceptions.CryptoError as exc:
            raise errors.DecryptionFailed(
                "the bulletin failed authentication: it was altered in transit, or its header does not match its content"
            ) from exc
        signature, body = plaintext[:SIGNATURE_BYTES], plaintext[SIGNATURE_BYTES:]
        verify_detached(sender.sign_public, header, body, signature)
        return Opened(
            bulletin=decode_body(h, body),
            sent_at=h.sent_at,
            sender_sign_kid=h.sign_kid,
            sender_box_kid=h.box_kid,
            opened_via=RecipientRef(entry[0], entry[1], entry[2]),
            header=header,
            body=body,
            signature=signature,
            sealed=data,
        )


def verify_detached(sign_public: bytes, header: bytes, body: bytes, signature: bytes) -> None:
    """Check a bulletin signature over exact header and body bytes (also used for forwards)."""
    # As above: libsodium would read 32 bytes of public key whatever length it is given.
    if type(sign_public) is not bytes or len(sign_public) != KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        raise errors.BadSignature("the sender's signing key or the signature has the wrong length")
    try:
        _sign_open(signature + signed_message(header, body), sign_public)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError) as exc:
        raise errors.BadSignature(
            "the signature does not verify for the claimed sender: the bulletin was forged or re-sent under another name"
        ) from exc


def decode_body(h: _Header, body: bytes) -> Bulletin:
    try:
        raw = _unpack(body, "bulletin body", object_pairs_hook=_no_duplicate_keys)
        return Bulletin._assemble(bulletin_id_from_bytes(h.bulletin_id), h.sender, h.precedence, body_from_dict(raw))
    except (errors.ValidationError, errors.MalformedEnvelope) as exc:
        raise errors.InvalidContent(f"the signed bulletin is malformed: {exc.message}") from exc


# Convenience for one-off use (scripts, vectors); long-lived nodes keep a Sealer/Opener
# so derived wrap keys are cached.
def seal(
    identity: Identity,
    bulletin: Bulletin,
    recipients: Sequence[Recipient],
    *,
    now_ms: int,
    rng: Rng = nacl.utils.random,
) -> bytes:
    return Sealer(identity).seal(bulletin, recipients, now_ms=now_ms, rng=rng)


def open_sealed(
    identity: Identity,
    data: bytes,
    resolver: KeyResolver,
    *,
    feed_keys: dict[tuple[str, int], bytes] | None = None,
) -> Opened:
    return Opener.for_identity(identity, resolver, feed_keys=feed_keys).open(data)

