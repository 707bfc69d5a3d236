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
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack
import msgspec
import nacl.bindings as nb
import nacl.exceptions
import nacl.utils

from bus import errors
from bus.bulletin import PRECEDENCES, Bulletin, body_from_dict, bulletin_from_wire_body, is_feed_name, is_office_id
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
WRAP_BYTES = KEY_BYTES + TAG_BYTES

_aead_encrypt = nb.crypto_aead_xchacha20poly1305_ietf_encrypt
_aead_decrypt = nb.crypto_aead_xchacha20poly1305_ietf_decrypt
_sign = nb.crypto_sign
try:  # libsodium through PyNaCl's own cffi binding, without its wrappers (see _seal_encrypt)
    from nacl._sodium import ffi as _ffi
    from nacl._sodium import lib as _lib

    _lib_encrypt = _lib.crypto_aead_xchacha20poly1305_ietf_encrypt
    _lib_decrypt = _lib.crypto_aead_xchacha20poly1305_ietf_decrypt
    _lib_sign = _lib.crypto_sign
    _lib_sign_open = _lib.crypto_sign_open
except (ImportError, AttributeError):  # another PyNaCl layout: its public wrappers only
    _lib_encrypt = _lib_decrypt = _lib_sign = _lib_sign_open = None
_sign_open = nb.crypto_sign_open
_system_rng = nacl.utils.random
_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_encode_msgpack = msgspec.msgpack.Encoder().encode
_unpackb = msgpack.unpackb
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


class Opened(msgspec.Struct, frozen=True):
    """A verified bulletin and the facts of its envelope.

    ``header``, ``body`` and ``signature`` are kept so the bulletin can be re-verified
    later or forwarded with its original signature intact (see ``verify_detached``).
    A frozen Struct, like ``Bulletin``, as one is built for every bulletin opened.
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
    return WRAP_AD_LABEL + bulletin_id + _wrap_ad_tail(kind, rid, ref)


def _wrap_ad_tail(kind: int, rid: str, ref: bytes | int) -> bytes:
    """What follows the label and bulletin id in a wrap's associated data (section 7.4):
    the same for every bulletin to one recipient entry, so it is built once."""
    ref_bytes = ref if isinstance(ref, bytes) else struct.pack(">Q", ref)
    return b"".join((bytes((kind,)), rid.encode(), b"\x00", ref_bytes))


# The header is msgpack (section 6), written here by concatenation: each recipient's
# entry starts with the same bytes in every bulletin, encoded once, and a header to 50
# offices costs half of what encoding its nested lists does. It is byte for byte what
# msgpack.packb gives for the header's list form (tests/test_envelope.py holds that).
_BIN_NONCE = b"\xc4\x18"  # msgpack bin8 of NONCE_BYTES
_BIN_WRAP = b"\xc4\x30"  # msgpack bin8 of WRAP_BYTES
#: A header opens with an array-of-8 head and the bulletin id's bin8 head; the id ends here.
_ID_END = 3 + BULLETIN_ID_BYTES


def _entry_head(kind: int, rid: str, ref: bytes | int) -> bytes:
    """A recipient entry's first bytes: array of 5, then kind, id and key ref."""
    return b"\x95" + _packb(kind) + _packb(rid) + _packb(ref)


def _array_head(n: int) -> bytes:
    """The msgpack array header of ``n`` (< 65536) items."""
    return bytes((0x90 + n,)) if n < 16 else b"\xdc" + n.to_bytes(2, "big")


#: What sealing to one office needs, checked once: (keys, (kind, id) as seal's repeat
#: check names it, kek, wrap-ad tail, entry head, valid from, valid before).
_Target = tuple[PeerKeys, tuple[int, str], bytes, bytes, bytes, int, float]
#: One recipient entry as sealing writes it: (entry head, kek, wrap-ad tail).
_PlanEntry = tuple[bytes, bytes, bytes]
#: A checked recipient list: (its records, kept alive; valid from; valid before; entries).
_Plan = tuple[tuple[PeerKeys, ...], int, float, tuple[_PlanEntry, ...]]


def _aead_args(data: bytes, aad: bytes, nonce: bytes, key: bytes) -> bool:
    """What libsodium needs of an XChaCha20-Poly1305 call's arguments (exact bytes, key and
    nonce lengths, so nothing is over-read): the direct calls below check this and leave
    anything else to PyNaCl's wrappers, which raise as they always did."""
    return (
        type(data) is bytes
        and type(aad) is bytes
        and type(nonce) is bytes
        and type(key) is bytes
        and len(nonce) == NONCE_BYTES
        and len(key) == KEY_BYTES
    )


def _seal_encrypt(message: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes:
    """XChaCha20-Poly1305 encryption, the same call and bytes as PyNaCl's
    ``crypto_aead_xchacha20poly1305_ietf_encrypt``. Its wrapper's argument checks cost
    more than encrypting a content key, and a seal makes one call per recipient; the
    checks libsodium needs are made here (``_aead_args``)."""
    if _lib_encrypt is None or not _aead_args(message, aad, nonce, key):
        return _aead_encrypt(message, aad, nonce, key)
    clen = len(message) + TAG_BYTES
    out = _ffi.new("unsigned char[]", clen)
    if _lib_encrypt(out, _ffi.NULL, message, len(message), aad, len(aad), _ffi.NULL, nonce, key) != 0:
        return _aead_encrypt(message, aad, nonce, key)  # libsodium refused: let the wrapper raise
    return _ffi.buffer(out, clen)[:]


def _seal_sign(message: bytes, secret: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``message`` (what ``crypto_sign(...)[:64]`` gives),
    without copying the signed message out twice; checks as ``_seal_encrypt``."""
    if _lib_sign is None or type(message) is not bytes or type(secret) is not bytes or len(secret) != 64:
        return _sign(message, secret)[:SIGNATURE_BYTES]
    out = _ffi.new("unsigned char[]", len(message) + SIGNATURE_BYTES)
    if _lib_sign(out, _ffi.NULL, message, len(message), secret) != 0:
        return _sign(message, secret)[:SIGNATURE_BYTES]
    return _ffi.buffer(out, SIGNATURE_BYTES)[:]


def _open_decrypt(ciphertext: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes:
    """XChaCha20-Poly1305 decryption: the bytes of PyNaCl's
    ``crypto_aead_xchacha20poly1305_ietf_decrypt``, and its ``CryptoError`` when the
    ciphertext does not authenticate. Every bulletin opened makes two such calls, and the
    wrapper's checks (with their messages formatted in advance) cost more than
    decrypting a content key; the checks libsodium needs are made here (``_aead_args``)."""
    if _lib_decrypt is None or not _aead_args(ciphertext, aad, nonce, key) or len(ciphertext) < TAG_BYTES:
        return _aead_decrypt(ciphertext, aad, nonce, key)
    mlen = len(ciphertext) - TAG_BYTES  # always, for this AEAD
    out = _ffi.new("unsigned char[]", mlen)
    if _lib_decrypt(out, _ffi.NULL, _ffi.NULL, ciphertext, len(ciphertext), aad, len(aad), nonce, key) != 0:
        raise nacl.exceptions.CryptoError("Decryption failed. Ciphertext failed verification")
    return _ffi.buffer(out, mlen)[:]


def _verify(signed: bytes, public: bytes) -> bool:
    """Whether ``signed`` (signature || message) verifies under the Ed25519 key ``public``
    (32 bytes, checked by the caller): libsodium's ``crypto_sign_open`` without an output
    buffer, so the message is neither allocated nor copied out again."""
    if _lib_sign_open is None or type(signed) is not bytes:
        try:
            _sign_open(signed, public)
        except nacl.exceptions.BadSignatureError:
            return False
        return True
    return _lib_sign_open(_ffi.NULL, _ffi.NULL, signed, len(signed), public) == 0


def signed_message(header: bytes, body: bytes) -> bytes:
    return b"".join((SIGNATURE_LABEL, _u32(len(header)), header, body))


def encode_body(bulletin: Bulletin) -> bytes:
    # msgspec writes the same bytes as msgpack.packb here (what section 8 specifies), in
    # half the time; tests/test_envelope.py holds the two equal.
    return _encode_msgpack(bulletin.body_dict())


# -- sealing ---------------------------------------------------------------------------


class Sealer:
    """Seals bulletins as one office. Keeps the per-peer wrap keys it derives (the
    expensive X25519 step) so a bulletin to N offices costs N short AEAD calls."""

    def __init__(self, identity: Identity, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> None:
        self.identity = identity
        self.max_bytes = max_bytes
        self._keks: dict[bytes, bytes] = {}
        self._feed_keks: dict[tuple[str, int, bytes], bytes] = {}
        #: id(PeerKeys) -> what sealing to it needs, checked once (see _office_target)
        self._targets: dict[int, _Target] = {}
        #: ids of a recipient list's directory records -> its plan (see _plan)
        self._plans: dict[tuple[int | None, ...], _Plan] = {}
        #: header fields 2-4 (sender, signing key id, encryption key id), encoded once
        self._sender_fields = _packb(identity.office_id) + _packb(identity.signing.kid) + _packb(identity.box.kid)

    def _office_kek(self, peer: PeerKeys) -> bytes:
        kek = self._keks.get(peer.box_public)
        if kek is None:
            try:
                kek = office_kek(self.identity.box, peer.box_public, sending=True)
            except errors.DecryptionFailed as exc:
                raise errors.RecipientKeyInvalid(f"cannot seal to {peer.office_id}: {exc.message}") from exc
            self._keks[peer.box_public] = kek
        return kek

    def _office_target(self, keys: PeerKeys, now_ms: int) -> _Target:
        """What sealing to an office needs (see ``_Target``), after the checks seal makes
        of an office recipient, in its order. Kept per
        PeerKeys object (a frozen value, held by the cache so its id stays its own): the
        next seal to the same record only compares ``now_ms`` with the validity window."""
        if not is_office_id(keys.office_id):
            raise errors.ValidationError("recipients", f"{keys.office_id!r} is not an office id")
        problem = keys.problem_at(now_ms)
        if problem is not None:
            raise errors.RecipientKeyInvalid(f"cannot seal to {keys.office_id}: {problem}")
        kek = self._office_kek(keys)
        ends = [t for t in (keys.revoked_at, keys.valid_until) if t is not None]
        tail = _wrap_ad_tail(RECIPIENT_OFFICE, keys.office_id, keys.box_kid)
        valid_before = min(ends, default=float("inf"))
        entry_head = _entry_head(RECIPIENT_OFFICE, keys.office_id, keys.box_kid)
        target = (keys, (RECIPIENT_OFFICE, keys.office_id), kek, tail, entry_head, keys.valid_from, valid_before)
        if len(self._targets) >= 4096:  # bounded: directory records come and go
            self._targets.clear()
        self._targets[id(keys)] = target
        return target

    def _plan(self, recipients: Sequence[Recipient], now_ms: int) -> tuple[_PlanEntry, ...]:
        """What sealing to ``recipients`` needs, entry by entry, after the checks seal
        makes of them (in their order). A list of offices recurs (a node posts to the
        same counterparts and centre again and again), so its plan is kept, by the
        identities of the directory records it was checked against: the plan holds those
        records, so no other object can take their ids while it is kept. Then the next
        seal to the same records only compares ``now_ms`` with their common validity
        window; outside it, the checks run again and name the record at fault."""
        key = tuple([id(r.keys) if type(r) is OfficeRecipient else None for r in recipients])
        plan = self._plans.get(key)
        if plan is not None and plan[1] <= now_ms < plan[2]:
            return plan[3]
        entries: list[_PlanEntry] = []
        records: list[PeerKeys] = []
        seen: set[tuple[int, str]] = set()
        valid_from, valid_before = 0, float("inf")
        for r in recipients:
            if isinstance(r, OfficeRecipient):
                keys = r.keys
                target = self._targets.get(id(keys))
                if target is None or target[0] is not keys:
                    target = self._office_target(keys, now_ms)
                elif not target[5] <= now_ms < target[6]:
                    raise errors.RecipientKeyInvalid(f"cannot seal to {keys.office_id}: {keys.problem_at(now_ms)}")
                _, named, kek, tail, entry_head, starts, ends = target
                records.append(keys)
                valid_from, valid_before = max(valid_from, starts), min(valid_before, ends)
            else:
                if not is_feed_name(r.feed):
                    raise errors.ValidationError("recipients", f"{r.feed!r} is not a feed name (a-z, 0-9, hyphens)")
                if type(r.epoch) is not int or not 0 <= r.epoch < 1 << 64:
                    raise errors.ValidationError("recipients", f"feed {r.feed} epoch {r.epoch!r} is not a 64-bit unsigned integer")
                # An empty key would make BLAKE2b unkeyed: anyone could derive the wrap key.
                if type(r.epoch_key) is not bytes or len(r.epoch_key) != KEY_BYTES:
                    raise errors.ValidationError("recipients", f"feed {r.feed} epoch key must be {KEY_BYTES} bytes")
                named = (RECIPIENT_FEED, r.feed)
                cache_key = (r.feed, r.epoch, r.epoch_key)
                kek = self._feed_keks.get(cache_key)  # type: ignore[assignment]
                if kek is None:
                    kek = self._feed_keks[cache_key] = feed_kek(r.feed, r.epoch, r.epoch_key)
                tail = _wrap_ad_tail(RECIPIENT_FEED, r.feed, r.epoch)
                entry_head = _entry_head(RECIPIENT_FEED, r.feed, r.epoch)
            if named in seen:
                raise errors.ValidationError("recipients", f"{named[1]} is named twice")
            seen.add(named)
            entries.append((entry_head, kek, tail))
        checked = tuple(entries)
        if None not in key:  # feed recipients are values, built afresh for each post: not kept
            if len(self._plans) >= 256:  # bounded: recipient lists and records come and go
                self._plans.clear()
            self._plans[key] = (tuple(records), valid_from, valid_before, checked)
        return checked

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
        plan = self._plan(recipients, now_ms)
        bid = bulletin_id_to_bytes(bulletin.id)
        ad_head = WRAP_AD_LABEL + bid
        parts: list[bytes] = []  # the recipient entries' bytes, in order
        if rng is _system_rng:  # one draw for the whole seal: each call costs more than its bytes
            pool = rng(KEY_BYTES + NONCE_BYTES * (len(recipients) + 1))
            content_key, content_nonce = pool[:KEY_BYTES], pool[KEY_BYTES : KEY_BYTES + NONCE_BYTES]
            at = KEY_BYTES + NONCE_BYTES
            for entry_head, kek, tail in plan:
                nonce = pool[at : at + NONCE_BYTES]
                at += NONCE_BYTES
                parts += (entry_head, _BIN_NONCE, nonce, _BIN_WRAP, _seal_encrypt(content_key, ad_head + tail, nonce, kek))
        else:  # a caller's generator (test vectors) sees the draws the spec lists, in order
            content_key = rng(KEY_BYTES)
            content_nonce = rng(NONCE_BYTES)
            for entry_head, kek, tail in plan:
                nonce = rng(NONCE_BYTES)
                wrapped = _seal_encrypt(content_key, ad_head + tail, nonce, kek)
                if len(nonce) == NONCE_BYTES and len(wrapped) == WRAP_BYTES:
                    parts += (entry_head, _BIN_NONCE, nonce, _BIN_WRAP, wrapped)
                else:  # other lengths: encode them as msgpack does
                    parts += (entry_head, _packb(nonce), _packb(wrapped))
        header = b"".join((
            b"\x98\xc4\x10", bid, self._sender_fields, _packb(now_ms), _packb(bulletin.precedence),
            _packb(content_nonce), _array_head(len(recipients)), *parts,
        ))  # fmt: skip
        body = encode_body(bulletin)
        signature = _seal_sign(signed_message(header, body), self.identity.signing.secret)
        ciphertext = _seal_encrypt(signature + body, header, content_nonce, content_key)
        sealed = _packb([WIRE_VERSION, header, ciphertext])
        if len(sealed) > self.max_bytes:
            raise errors.TooLarge(
                f"the sealed bulletin is {len(sealed)} bytes; the limit is {self.max_bytes}. "
                "Shorten the body or send large files as attachment references."
            )
        return sealed


# -- opening ---------------------------------------------------------------------------


def _unpack(data: bytes, what: str, object_pairs_hook: Callable[[Any], Any] | None = None) -> Any:
    # msgpack's exception set is wide (ValueError subclasses, TypeError, UnicodeDecodeError,
    # RecursionError on deep nesting...) and not all documented; this call is the whole
    # try-body, so catching broadly here cannot hide a bug elsewhere. raw=False (str as
    # str) and strict_map_key=True (str or bytes keys only) are msgpack's defaults since
    # 1.0, which pyproject requires; passing them costs more than unpacking a header.
    try:
        if object_pairs_hook is None:
            return _unpackb(data)
        return _unpackb(data, object_pairs_hook=object_pairs_hook)
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


# The canonical msgpack encoding of a well-formed header, as one regular expression over
# its bytes (section 6; strings by length, since a msgpack str carries its length in
# front). A header that matches it and that msgpack decodes passes every check of step
# 6 but the entry count, so _header_fields skips the field-by-field checks below for
# it; anything else (a wider encoding, a malformed header) takes them.
# tests/test_fuzz_open.py holds both ways to the same answers.
def _msgpack_str(lengths: range, text: Callable[[int], bytes]) -> bytes:
    """A msgpack str (fixstr or str8) of any of ``lengths``, its text matching ``text(n)``."""
    heads = {n: bytes((0xA0 + n,)) if n < 32 else b"\xd9" + bytes((n,)) for n in lengths}
    return b"(?:" + b"|".join(re.escape(heads[n]) + text(n) for n in lengths) + b")"


_OFFICE_STR = _msgpack_str(range(5, 16), lambda n: b"[A-Z]{2}-[A-Z0-9]{%d}" % (n - 3))  # section 4.3
_FEED_STR = _msgpack_str(range(1, 64), lambda n: b"[a-z0-9][a-z0-9-]{%d}" % (n - 1))
_UINT = rb"(?:[\x00-\x7f]|\xcc.|\xcd.{2}|\xce.{4}|\xcf.{8})"
_UINT48 = rb"(?:[\x00-\x7f]|\xcc.|\xcd.{2}|\xce.{4}|\xcf\x00\x00.{6})"
_PRECEDENCE = b"(?:" + b"|".join(bytes((0xA0 + len(p),)) + p.encode() for p in PRECEDENCES) + b")"
_ENTRY = (
    rb"\x95(?:\x01" + _OFFICE_STR + rb"\xc4\x08.{8}|\x02" + _FEED_STR + _UINT + rb")\xc4\x18.{24}\xc4\x30.{48}"
)
_CANONICAL_HEADER = re.compile(
    rb"\x98\xc4\x10.{16}" + _OFFICE_STR + rb"\xc4\x08.{8}\xc4\x08.{8}" + _UINT48 + _PRECEDENCE
    + rb"\xc4\x18.{24}(?:[\x91-\x9f]|\xdc.{2})(?:" + _ENTRY + rb")+",
    re.DOTALL,
)  # fmt: skip


def _header_fields(header: bytes) -> list[Any]:
    """The 8 header fields, checked as step 6 says (MalformedEnvelope otherwise)."""
    return _checked_header(header)[0]


def _checked_header(header: bytes) -> tuple[list[Any], bool]:
    """``_header_fields``, and whether the header is the canonical encoding of them
    (then it may have a layout, see _Layout)."""
    h = _unpack(header, "header")
    if _CANONICAL_HEADER.fullmatch(header) is not None and len(h[7]) <= MAX_RECIPIENTS:
        return h, True
    return _check_header(h), False


def _parse_header(header: bytes) -> _Header:
    return _Header(*_header_fields(header))


def _check_header(h: Any) -> list[Any]:
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
            or len(e[4]) != WRAP_BYTES
        ):
            raise _bad("recipient entry")
    return h


# -- recurring headers ------------------------------------------------------------------
# Beyond the crypto, checking the header is most of what opening a bulletin to many
# offices costs (~11 us for 50 entries: decoding 250 values and matching the pattern).
# A sender's headers to the same recipients differ only in the bulletin id, the low
# bytes of sent-at, the nonces and the wraps: bin contents of fixed length, and a uint
# whose top bytes are fixed. So once such a header has passed the canonical check twice
# in the same shape, the Opener keeps its *layout*: a struct format that reads every
# other byte (msgpack heads, sender and key ids, precedence, each entry's kind, id and
# key ref) in one C call. A later header of the same length that reads the same has the
# same structure and the same values in every field but those listed, whose types and
# lengths the layout fixes, so it passes step 6 as its model did; and step 7 picks the
# same entry, as a layout is kept only when every entry before ours names an office
# (whether an office entry is ours never changes for an Opener; a feed entry's does as
# epoch keys arrive). Anything else takes the full check. tests/test_fuzz_open.py holds
# a warmed Opener to the same outcomes as a fresh one on mutated headers.


@dataclass(frozen=True, slots=True)
class _Layout:
    shape: struct.Struct  # reads the shared bytes, skips the varying ones
    shared: tuple[Any, ...]  # what it read from the model header
    sender: tuple[str, bytes, bytes, str]  # sender, signing and encryption key ids, precedence
    sent_at_at: int  # where sent-at's low 6 bytes start (its head and top 2 bytes are shared)
    nonce_at: int  # where the content nonce starts
    entry: tuple[int, str, bytes | int]  # our entry's kind, id and key ref
    entry_at: int  # where our entry's nonce starts (its wrap follows its bin8 head)


def _header_key(header: bytes) -> tuple[int, bytes]:
    """What tells recurring headers apart cheaply: the length, and the 26 bytes after the
    id (the sender and its signing key id, for every office id up to 15 characters)."""
    return len(header), header[_ID_END : _ID_END + 26]


def _layout(header: bytes, h: list[Any], index: int) -> _Layout | None:
    """The layout of a canonical header (``_checked_header``) whose entry ``index`` is the
    first addressed to us, or None when it cannot have one."""
    _, sender, sign_kid, box_kid, _, precedence, _, entries = h
    if any(e[0] != RECIPIENT_OFFICE for e in entries[:index]):
        return None
    at = _ID_END + len(_packb(sender)) + 2 * (2 + KEY_ID_BYTES)  # after the id, sender and key ids
    if header[at] != 0xCF:  # sent-at as uint 64: every time from 1970-02-19 on
        return None
    fmt = ["<3s16x", f"{at + 3 - _ID_END}s6x"]  # heads, the id; sender to sent-at's top bytes, its low 6
    sent_at_at, at = at + 3, at + 9
    shared = len(_packb(precedence)) + 2  # precedence, the nonce's bin8 head
    fmt.append(f"{shared}s24x")
    nonce_at = at + shared
    at = nonce_at + NONCE_BYTES
    head = len(_array_head(len(entries)))  # the recipient list's head, read with the first entry
    entry_at = 0
    for i, e in enumerate(entries):
        shared = head + len(_entry_head(e[0], e[1], e[2])) + 2  # array, kind, id, ref; nonce's bin8 head
        if i == index:
            entry_at = at + shared
        fmt.append(f"{shared}s24xBB48x")  # ...; the nonce; the wrap's bin8 head; the wrap
        at += shared + NONCE_BYTES + 2 + WRAP_BYTES
        head = 0
    shape = struct.Struct("".join(fmt))
    if shape.size != len(header):  # not canonical after all: no layout
        return None
    e = entries[index]
    return _Layout(shape, shape.unpack(header), (sender, sign_kid, box_kid, precedence), sent_at_at, nonce_at, (e[0], e[1], e[2]), entry_at)


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
        self._feed_keks: dict[tuple[str, int, bytes], bytes] = {}
        #: (kind, id, ref) of an entry addressed to us -> its RecipientRef and wrap-ad tail
        self._vias: dict[tuple[int, str, bytes | int], tuple[RecipientRef, bytes]] = {}
        #: _header_key -> the layout of headers that recur in that shape (see _Layout), or
        #: False when a header of that key was seen once (or its layout stopped fitting)
        self._layouts: dict[tuple[int, bytes], _Layout | bool] = {}

    @classmethod
    def for_identity(cls, identity: Identity, resolver: KeyResolver, **kwargs: Any) -> Opener:
        return cls(identity.office_id, identity.box_keys, resolver, **kwargs)

    def _kek_for(self, entry: list[Any], sender: PeerKeys) -> bytes:
        kind, rid, ref = entry[0], entry[1], entry[2]
        if kind == RECIPIENT_FEED:
            epoch_key = self.feed_keys[(rid, ref)]
            feed_key = (rid, ref, epoch_key)
            kek = self._feed_keks.get(feed_key)
            if kek is None:
                kek = self._feed_keks[feed_key] = feed_kek(rid, ref, epoch_key)
            return kek
        cache_key = (ref, sender.box_public)
        kek = self._keks.get(cache_key)
        if kek is None:
            kek = self._keks[cache_key] = office_kek(self.box_keys[ref], sender.box_public, sending=False)
        return kek

    def _addressed_to_us(self, entry: list[Any]) -> bool:
        if entry[0] == RECIPIENT_OFFICE:
            return entry[1] == self.office_id and entry[2] in self.box_keys
        return (entry[1], entry[2]) in self.feed_keys

    def _first_addressed(self, entries: list[list[Any]]) -> list[Any] | None:
        """The first entry addressed to us, in header order (step 7); ``_addressed_to_us``
        inlined, as it runs for every entry of every bulletin."""
        office, kids, feeds = self.office_id, self.box_keys, self.feed_keys
        for e in entries:
            if e[0] == RECIPIENT_OFFICE:
                if e[1] == office and e[2] in kids:
                    return e
            elif (e[1], e[2]) in feeds:
                return e
        return None

    def _via(self, entry: list[Any]) -> tuple[RecipientRef, bytes]:
        """The entry's RecipientRef and wrap-ad tail: the same few for every bulletin."""
        key = (entry[0], entry[1], entry[2])
        found = self._vias.get(key)
        if found is None:
            if len(self._vias) >= 1024:  # bounded: feed epochs come and go
                self._vias.clear()
            found = self._vias[key] = (RecipientRef(*key), _wrap_ad_tail(*key))
        return found

    def _learn(self, key: tuple[int, bytes], prior: _Layout | bool | None, header: bytes, h: list[Any], entry: list[Any]) -> None:
        """Keep the layout of a header seen twice in this shape (see _Layout), so that
        one-off recipient lists cost nothing more; a kept layout that stops matching is
        forgotten, and relearnt if its successor recurs."""
        if prior is not False:  # first sighting, or a layout that no longer fits
            if len(self._layouts) >= 256:  # bounded: senders and recipient lists come and go
                self._layouts.clear()
            self._layouts[key] = False
            return
        index = next(i for i, e in enumerate(h[7]) if e is entry)
        self._layouts[key] = _layout(header, h, index) or False

    def open(self, data: bytes) -> Opened:
        """Verify and decrypt; returns ``Opened`` or raises one ``EnvelopeError``.

        Key validity is judged at the header's sent-at time, which the signature covers.
        """
        header, ciphertext = split_envelope(data, max_bytes=self.max_bytes)
        key = _header_key(header)
        layout = self._layouts.get(key)
        if (
            layout
            and layout.shape.unpack(header) == layout.shared
            and (layout.entry[0] == RECIPIENT_OFFICE or layout.entry[1:] in self.feed_keys)
        ):  # steps 6 and 7 for a header of a known layout
            sender_id, sign_kid, box_kid, precedence = layout.sender
            bid = header[3:_ID_END]
            sent_at = int.from_bytes(header[layout.sent_at_at : layout.sent_at_at + 6], "big")
            content_nonce = header[layout.nonce_at : layout.nonce_at + NONCE_BYTES]
            at = layout.entry_at
            entry = [*layout.entry, header[at : at + NONCE_BYTES], header[at + NONCE_BYTES + 2 : at + NONCE_BYTES + 2 + WRAP_BYTES]]
        else:
            h, canonical = _checked_header(header)
            bid, sender_id, sign_kid, box_kid, sent_at, precedence, content_nonce, entries = h
            entry = self._first_addressed(entries)
            if entry is None:
                raise errors.NotAddressedToUs(f"this bulletin is not addressed to {self.office_id} or a feed it holds keys for")
            if canonical:
                self._learn(key, layout, header, h, entry)
        sender = self.resolver.sender_keys(sender_id, sign_kid)
        if sender is None or sender.box_kid != box_kid:
            raise errors.UnknownSender(
                f"no directory record for {sender_id} with signing key {sign_kid.hex()} and encryption key "
                f"{box_kid.hex()}; kept for retry when the directory updates"
            )
        problem = sender.problem_at(sent_at)
        if problem is not None:
            raise errors.SenderKeyInvalid(f"rejected: signed at {sent_at} ms, but {problem}")
        kek = self._kek_for(entry, sender)
        via, tail = self._via(entry)
        try:
            content_key = _open_decrypt(entry[4], WRAP_AD_LABEL + bid + tail, entry[3], kek)
            plaintext = _open_decrypt(ciphertext, header, content_nonce, content_key)
        except nacl.exceptions.CryptoError as exc:
            raise errors.DecryptionFailed(
                "the bulletin failed authentication: it was altered in transit, or its header does not match its content"
            ) from exc
        signature, body = plaintext[:SIGNATURE_BYTES], plaintext[SIGNATURE_BYTES:]
        verify_detached(sender.sign_public, header, body, signature)
        bulletin = _decode_body(bid, sender_id, precedence, body)
        return Opened(bulletin, sent_at, sign_kid, box_kid, via, header, body, signature, data)


def verify_detached(sign_public: bytes, header: bytes, body: bytes, signature: bytes) -> None:
    """Check a bulletin signature over exact header and body bytes (also used for forwards)."""
    # As above: libsodium would read 32 bytes of public key whatever length it is given.
    if type(sign_public) is not bytes or len(sign_public) != KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        raise errors.BadSignature("the sender's signing key or the signature has the wrong length")
    try:  # signature || signed_message(header, body), joined once
        good = _verify(b"".join((signature, SIGNATURE_LABEL, _u32(len(header)), header, body)), sign_public)
    except (nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        good = False
    if not good:
        raise errors.BadSignature(
            "the signature does not verify for the claimed sender: the bulletin was forged or re-sent under another name"
        )


def decode_body(h: _Header, body: bytes) -> Bulletin:
    return _decode_body(h.bulletin_id, h.sender, h.precedence, body)


def _decode_body(bulletin_id: bytes, sender: str, precedence: str, body: bytes) -> Bulletin:
    bid = bulletin_id_from_bytes(bulletin_id)
    bulletin = bulletin_from_wire_body(bid, sender, precedence, body)
    if bulletin is not None:  # the fast path, taken by canonical bodies (bus.bulletin)
        return bulletin
    try:
        raw = _unpack(body, "bulletin body", object_pairs_hook=_no_duplicate_keys)
        return Bulletin._assemble(bid, sender, precedence, body_from_dict(raw))
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

