"""Sealing and opening bulletins: wire format v2, the reference. Bytes in, values out; no I/O.

The one rule: **a recipient accepts a bulletin only if the exact bytes that travelled
were signed by the sender's key, valid when it was signed and not revoked when it was
stored, together with the header that names sender, recipients, id and time.**
``schemas/ENVELOPE.md`` specifies the bytes and ``schemas/vectors/envelope/`` pins them;
this module follows the text step by step (sections 10 and 11) and is meant to be read
beside it. ``bus.envelope_fast`` seals and opens the same bytes faster, behind the same
interface; the vectors and the property tests hold the two to the same answers.

Sealing, in order (ENVELOPE.md section 10):

1. check the bulletin and the recipients;
2. take the sender's current *ephemeral* X25519 key (drawn when none is younger than
   ``EPHEMERAL_KEY_LIFETIME_MS``; kept in memory only, so nothing the sender keeps can
   unwrap what it sent);
3. draw a fresh content key K and content nonce;
4. wrap K for each recipient: an office under a key derived from X25519(ephemeral,
   the office's *inbox key*); a feed under its current epoch key;
5. encode the header, sign ``label || len(header) || header || body`` (Ed25519), and
   encrypt ``signature || body`` under K (XChaCha20-Poly1305) with the header as
   associated data.

Opening checks in the order of section 11 and fails with exactly one typed error from
``bus.errors`` (the first check that fails), never a raw library exception. Its times
are judged by the rules of schemas/TRUST.md: the signed ``sent_at`` against the
*witness time* (when the server stored the bulletin), which the sender cannot choose.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack
import msgspec
import nacl.utils

from bus import errors, sodium, timing
from bus.bulletin import PRECEDENCES, Bulletin, body_from_dict, bulletin_from_wire_body, is_feed_name, is_office_id
from bus.ids import BULLETIN_ID_BYTES, KEY_ID_BYTES, Rng, bulletin_id_from_bytes, bulletin_id_to_bytes, key_id
from bus.keys import BoxKeyPair, Identity, PeerKeys

WIRE_VERSION = 2
#: Hard limit on a sealed bulletin, checked by seal (output) and open (input) alike.
#: Well under NATS's default 1 MiB max_payload; attachments travel by reference.
MAX_ENVELOPE_BYTES = 256 * 1024
MAX_RECIPIENTS = 1024
MIN_EPOCH = 1
MAX_EPOCH = (1 << 63) - 1
MAX_TIME = (1 << 48) - 1

RECIPIENT_OFFICE = 1
RECIPIENT_FEED = 2

SIGNATURE_LABEL = b"blo-bus/v2 bulletin signature\x00"
OFFICE_KEK_LABEL = b"blo-bus/v2 office wrap key\x00"
FEED_KEK_LABEL = b"blo-bus/v2 feed wrap key\x00"
WRAP_AD_LABEL = b"blo-bus/v2 content key wrap\x00"

KEY_BYTES = sodium.KEY_BYTES
NONCE_BYTES = sodium.NONCE_BYTES
TAG_BYTES = sodium.TAG_BYTES
SIGNATURE_BYTES = sodium.SIGNATURE_BYTES
WRAP_BYTES = KEY_BYTES + TAG_BYTES
PUBLIC_KEY_BYTES = 32

_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


class KeyResolver(Protocol):
    """Where ``open`` learns a sender's public keys: the verified directory."""

    def sender_keys(self, office_id: str, sign_kid: bytes) -> PeerKeys | None: ...


@dataclass(frozen=True, slots=True)
class OfficeRecipient:
    """An office to seal to. ``keys.box_public`` / ``keys.box_kid`` are its current inbox
    key, as ``Directory.recipient_keys`` gives them."""

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
    ref: bytes | int  # the office's inbox key id, or the feed epoch


@dataclass(frozen=True, slots=True)
class Header:
    """The 8 fields of a header (section 6), after the checks of step 6."""

    bulletin_id: bytes
    sender: str
    sign_kid: bytes
    ephemeral_public: bytes
    sent_at: int
    precedence: str
    content_nonce: bytes
    entries: list[list[Any]]  # each [kind, id, ref, wrap_nonce, wrapped]

    @property
    def recipients(self) -> tuple[RecipientRef, ...]:
        return tuple(RecipientRef(e[0], e[1], e[2]) for e in self.entries)


class Opened(msgspec.Struct, frozen=True):
    """A verified bulletin and the facts of its envelope.

    ``header``, ``body`` and ``signature`` are kept so the bulletin can be re-verified
    later or forwarded with its original signature intact (see ``verify_detached``).
    A frozen Struct, like ``Bulletin``, as one is built for every bulletin opened.
    """

    bulletin: Bulletin
    sent_at: int
    #: When it was stored (the server's clock), the time its validity was judged by.
    witnessed_at: int
    sender_sign_kid: bytes
    ephemeral_public: bytes
    opened_via: RecipientRef
    header: bytes
    body: bytes
    signature: bytes
    #: The whole envelope as it arrived (the node's store keeps the exact bytes).
    sealed: bytes = b""

    @property
    def recipients(self) -> tuple[RecipientRef, ...]:
        return parse_header(self.header).recipients


# -- derivations (section 7); every one names its purpose --------------------------------


def kdf(key: bytes, label: bytes, *parts: bytes) -> bytes:
    """``BLAKE2b-32(key=key; label || parts...)``."""
    h = hashlib.blake2b(digest_size=KEY_BYTES, key=key)
    h.update(label)
    for part in parts:
        h.update(part)
    return h.digest()


def office_kek(shared: bytes, ephemeral_public: bytes, inbox_public: bytes) -> bytes:
    """7.2: the key-encryption key of an office entry, from the X25519 output of the
    sender's ephemeral key and the recipient's inbox key, both public keys bound in order."""
    return kdf(shared, OFFICE_KEK_LABEL, ephemeral_public, inbox_public)


def sender_office_kek(ephemeral: BoxKeyPair, inbox_public: bytes, office_id: str) -> bytes:
    """7.2 on the sender's side; ``RecipientKeyInvalid`` for an unusable inbox key."""
    shared = sodium.x25519(ephemeral.secret, inbox_public)
    if shared is None:
        raise errors.RecipientKeyInvalid(f"cannot seal to {office_id}: its inbox key is not a usable X25519 key")
    return office_kek(shared, ephemeral.public, inbox_public)


def receiver_office_kek(inbox: BoxKeyPair, ephemeral_public: bytes) -> bytes:
    """7.2 on the recipient's side; ``DecryptionFailed`` for an unusable ephemeral key."""
    shared = sodium.x25519(inbox.secret, ephemeral_public)
    if shared is None:
        raise errors.DecryptionFailed("the sender's ephemeral key is not a usable X25519 key")
    return office_kek(shared, ephemeral_public, inbox.public)


def feed_kek(feed: str, epoch: int, epoch_key: bytes) -> bytes:
    """7.3."""
    return kdf(epoch_key, FEED_KEK_LABEL, feed.encode(), struct.pack(">Q", epoch))


def wrap_ad(bulletin_id: bytes, kind: int, rid: str, ref: bytes | int) -> bytes:
    """7.4: the associated data of one wrap."""
    ref_bytes = ref if isinstance(ref, bytes) else struct.pack(">Q", ref)
    return WRAP_AD_LABEL + bulletin_id + bytes((kind,)) + rid.encode() + b"\x00" + ref_bytes


def signed_message(header: bytes, body: bytes) -> bytes:
    """9.1."""
    return SIGNATURE_LABEL + struct.pack(">I", len(header)) + header + body


def encode_body(bulletin: Bulletin) -> bytes:
    """Section 8. msgspec writes the same bytes as ``msgpack.packb`` of the body dict (what
    section 8 specifies), in half the time; tests/test_envelope.py holds the two equal."""
    return msgspec.msgpack.encode(bulletin.body_dict())


# -- sealing (section 10) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ephemeral:
    """The sender's ephemeral X25519 key and when it was drawn."""

    key: BoxKeyPair
    drawn_at: int


class Sealer:
    """Seals bulletins as one office: the reference, one step of section 10 after another.

    It keeps only its current ephemeral key (``ephemeral``), in memory, and replaces it
    when it is ``ephemeral_lifetime_ms`` old; a replaced key is dropped, so nothing this
    node keeps can open what it sealed earlier."""

    def __init__(
        self,
        identity: Identity,
        *,
        max_bytes: int = MAX_ENVELOPE_BYTES,
        ephemeral_lifetime_ms: int = timing.EPHEMERAL_KEY_LIFETIME_MS,
    ) -> None:
        self.identity = identity
        self.max_bytes = max_bytes
        self.ephemeral_lifetime_ms = ephemeral_lifetime_ms
        self._ephemeral: Ephemeral | None = None

    def ephemeral(self, now_ms: int, rng: Rng) -> BoxKeyPair:
        """The ephemeral key to seal with at ``now_ms``: a new one (its 32-byte secret the
        first draw of this seal) when there is none, it is ``ephemeral_lifetime_ms`` old,
        or the clock went back past when it was drawn."""
        e = self._ephemeral
        if e is None or not e.drawn_at <= now_ms < e.drawn_at + self.ephemeral_lifetime_ms:
            e = self._ephemeral = Ephemeral(BoxKeyPair.from_secret(rng(KEY_BYTES)), now_ms)
            self._new_ephemeral()
        return e.key

    def _new_ephemeral(self) -> None:
        """Called when the ephemeral key was replaced (``bus.envelope_fast`` drops its caches)."""

    def seal(
        self,
        bulletin: Bulletin,
        recipients: Sequence[Recipient],
        *,
        now_ms: int,
        rng: Rng = nacl.utils.random,
    ) -> bytes:
        """The sealed bytes of ``bulletin`` for ``recipients``, sent at ``now_ms``."""
        # Step 1: refuse what every receiver would refuse.
        check_seal_inputs(self.identity, bulletin, recipients, now_ms)
        # Step 2: each office recipient's inbox key is valid now.
        for r in recipients:
            if isinstance(r, OfficeRecipient):
                check_office_recipient(r.keys, now_ms)
        # Step 3: draws, in this order: the ephemeral secret (when a new one is due), the
        # content key, the content nonce, then one wrap nonce per recipient.
        ephemeral = self.ephemeral(now_ms, rng)
        content_key = rng(KEY_BYTES)
        content_nonce = rng(NONCE_BYTES)
        bid = bulletin_id_to_bytes(bulletin.id)
        # Step 4: one entry per recipient, in the order given.
        entries: list[list[Any]] = []
        for r in recipients:
            wrap_nonce = rng(NONCE_BYTES)
            if isinstance(r, OfficeRecipient):
                kind, rid, ref = RECIPIENT_OFFICE, r.keys.office_id, r.keys.box_kid
                kek = sender_office_kek(ephemeral, r.keys.box_public, rid)
            else:
                kind, rid, ref = RECIPIENT_FEED, r.feed, r.epoch
                kek = feed_kek(r.feed, r.epoch, r.epoch_key)
            wrapped = sodium.aead_encrypt(content_key, wrap_ad(bid, kind, rid, ref), wrap_nonce, kek)
            entries.append([kind, rid, ref, wrap_nonce, wrapped])
        # Step 5: the header and the body.
        header = _packb([
            bid, self.identity.office_id, self.identity.signing.kid, ephemeral.public, now_ms,
            bulletin.precedence, content_nonce, entries,
        ])  # fmt: skip
        body = encode_body(bulletin)
        # Step 6: sign, encrypt, frame.
        signature = sodium.sign(signed_message(header, body), self.identity.signing.secret)
        ciphertext = sodium.aead_encrypt(signature + body, header, content_nonce, content_key)
        sealed = _packb([WIRE_VERSION, header, ciphertext])
        # Step 7: the size limit.
        return check_sealed_size(sealed, self.max_bytes)


def check_seal_inputs(identity: Identity, bulletin: Bulletin, recipients: Sequence[Recipient], now_ms: int) -> None:
    """Step 1 of section 10 (``ValidationError``)."""
    if bulletin.sender != identity.office_id:
        raise errors.ValidationError("from", f"is {bulletin.sender} but this node signs as {identity.office_id}")
    check_recipients(recipients, now_ms)


def check_recipients(recipients: Sequence[Recipient], now_ms: int) -> None:
    """Step 1 of section 10 for the recipient list and the time."""
    if not recipients:
        raise errors.ValidationError("recipients", "a bulletin needs at least one recipient")
    if len(recipients) > MAX_RECIPIENTS:
        raise errors.ValidationError("recipients", f"{len(recipients)} recipients; the limit is {MAX_RECIPIENTS}")
    if type(now_ms) is not int or not 0 <= now_ms <= MAX_TIME:
        raise errors.ValidationError("sent_at", f"{now_ms!r} is not a time in ms within the 48-bit range")
    seen: set[tuple[int, str]] = set()
    for r in recipients:
        if isinstance(r, OfficeRecipient):
            named = (RECIPIENT_OFFICE, r.keys.office_id)
            if not is_office_id(r.keys.office_id):
                raise errors.ValidationError("recipients", f"{r.keys.office_id!r} is not an office id")
        else:
            named = (RECIPIENT_FEED, r.feed)
            check_feed_recipient(r)
        if named in seen:
            raise errors.ValidationError("recipients", f"{named[1]} is named twice")
        seen.add(named)


def check_feed_recipient(r: FeedRecipient) -> None:
    if not is_feed_name(r.feed):
        raise errors.ValidationError("recipients", f"{r.feed!r} is not a feed name (a-z, 0-9, hyphens)")
    if type(r.epoch) is not int or not MIN_EPOCH <= r.epoch <= MAX_EPOCH:
        raise errors.ValidationError("recipients", f"feed {r.feed} epoch {r.epoch!r} is not an epoch (1 to 2^63-1)")
    # An empty key would make BLAKE2b unkeyed: anyone could derive the wrap key.
    if type(r.epoch_key) is not bytes or len(r.epoch_key) != KEY_BYTES:
        raise errors.ValidationError("recipients", f"feed {r.feed} epoch key must be {KEY_BYTES} bytes")


def check_office_recipient(keys: PeerKeys, now_ms: int) -> None:
    """Step 2 of section 10: the inbox key is in its window and not revoked at ``now_ms``,
    and it is a 32-byte key whose id is the one the header will name."""
    problem = keys.problem_at(now_ms)
    if problem is not None:
        raise errors.RecipientKeyInvalid(f"cannot seal to {keys.office_id}: {problem}")
    if type(keys.box_public) is not bytes or len(keys.box_public) != PUBLIC_KEY_BYTES:
        raise errors.RecipientKeyInvalid(f"cannot seal to {keys.office_id}: its inbox key is not 32 bytes")
    if key_id("box", keys.box_public) != keys.box_kid:
        raise errors.RecipientKeyInvalid(f"cannot seal to {keys.office_id}: its inbox key id does not match the key")


def check_sealed_size(sealed: bytes, max_bytes: int) -> bytes:
    if len(sealed) > max_bytes:
        raise errors.TooLarge(
            f"the sealed bulletin is {len(sealed)} bytes; the limit is {max_bytes}. "
            "Shorten the body or send large files as attachment references."
        )
    return sealed


# -- opening (section 11) ----------------------------------------------------------------


def unpack(data: bytes, what: str) -> Any:
    """One msgpack value (``MalformedEnvelope`` otherwise). msgpack's exception set is wide
    (ValueError kin, TypeError, UnicodeDecodeError, RecursionError on deep nesting...) and
    not all documented; this call is the whole try-body, so catching broadly cannot hide a
    bug elsewhere. Trailing bytes are refused (``ExtraData``)."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:
        raise errors.MalformedEnvelope(f"the {what} is not valid msgpack ({type(exc).__name__})") from exc


def split_envelope(data: bytes, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> tuple[bytes, bytes]:
    """Steps 1-5: size, shape and version; returns ``(header, ciphertext)`` bytes."""
    if len(data) > max_bytes:
        raise errors.TooLarge(f"the sealed bulletin is {len(data)} bytes; the limit is {max_bytes}")
    outer = unpack(data, "envelope")
    # The version is read before the arity: every version starts [version, ...], and a
    # later one may carry more fields; this node must answer "upgrade", not "malformed".
    if type(outer) is not list or not outer or type(outer[0]) is not int:
        raise errors.MalformedEnvelope("a sealed bulletin must be a msgpack array [version, header, ciphertext]")
    version = outer[0]
    if version != WIRE_VERSION:
        raise errors.UnsupportedVersion(
            f"wire version {version} is not supported by this node (it speaks {WIRE_VERSION}); "
            + ("upgrade it" if version > WIRE_VERSION else "the sender must upgrade")
        )
    if len(outer) != 3:
        raise errors.MalformedEnvelope("a v2 sealed bulletin must be a msgpack array of 3: [version, header, ciphertext]")
    _, header, ciphertext = outer
    if type(header) is not bytes or type(ciphertext) is not bytes:
        raise errors.MalformedEnvelope("the header and ciphertext must be msgpack bin values")
    if len(ciphertext) < TAG_BYTES + SIGNATURE_BYTES:
        raise errors.MalformedEnvelope("the ciphertext is too short to hold a signature")
    return header, ciphertext


def _bad(what: str) -> errors.MalformedEnvelope:
    return errors.MalformedEnvelope(f"the header's {what} is missing or of the wrong type")


def _is_bin(value: Any, size: int) -> bool:
    return type(value) is bytes and len(value) == size


def _is_entry(e: Any) -> bool:
    if type(e) is not list or len(e) != 5 or type(e[0]) is not int:
        return False
    kind, rid, ref, nonce, wrapped = e
    if kind == RECIPIENT_OFFICE:
        ok = is_office_id(rid) and _is_bin(ref, KEY_ID_BYTES)
    elif kind == RECIPIENT_FEED:
        ok = is_feed_name(rid) and type(ref) is int and MIN_EPOCH <= ref <= MAX_EPOCH
    else:
        return False
    return ok and _is_bin(nonce, NONCE_BYTES) and _is_bin(wrapped, WRAP_BYTES)


def check_header(h: Any) -> Header:
    """Step 6 on the decoded header value."""
    if type(h) is not list or len(h) != 8:
        raise errors.MalformedEnvelope("the header must be a msgpack array of 8 fields")
    bid, sender, sign_kid, ephemeral_public, sent_at, precedence, nonce, entries = h
    if not _is_bin(bid, BULLETIN_ID_BYTES):
        raise _bad("bulletin id")
    if not is_office_id(sender):
        raise _bad("sender")
    if not _is_bin(sign_kid, KEY_ID_BYTES):
        raise _bad("sender signing key id")
    if not _is_bin(ephemeral_public, PUBLIC_KEY_BYTES):
        raise _bad("sender ephemeral key")
    if type(sent_at) is not int or not 0 <= sent_at <= MAX_TIME:
        raise _bad("sent-at time")
    if precedence not in PRECEDENCES:
        raise _bad("precedence")
    if not _is_bin(nonce, NONCE_BYTES):
        raise _bad("content nonce")
    if type(entries) is not list or not 0 < len(entries) <= MAX_RECIPIENTS:
        raise _bad("recipient list")
    for e in entries:
        if not _is_entry(e):
            raise _bad("recipient entry")
    return Header(bid, sender, sign_kid, ephemeral_public, sent_at, precedence, nonce, entries)


def parse_header(header: bytes) -> Header:
    """Step 6: the header bytes decoded and checked."""
    return check_header(unpack(header, "header"))


def read_routing(data: bytes) -> tuple[str, str, str, int, tuple[RecipientRef, ...]]:
    """What anyone (a NATS server, a router) can read without keys:
    ``(bulletin_id, sender, precedence, sent_at, recipients)``. Nothing here is verified."""
    header, _ = split_envelope(data)
    h = parse_header(header)
    return bulletin_id_from_bytes(h.bulletin_id), h.sender, h.precedence, h.sent_at, h.recipients


def check_times(h: Header, witnessed_at: int) -> None:
    """Step 8 (TRUST.md T1, T2): the signed sent-at against the witness time."""
    problem = timing.signed_time_problem(h.sent_at, witnessed_at, max_age_ms=timing.MAX_AGE_MS)
    if problem is not None:
        cls = errors.FromFuture if problem.kind == "from_future" else errors.TooOld
        raise cls(f"bulletin from {h.sender} refused: {problem.message}")


def check_sender_key(h: Header, sender: PeerKeys | None, witnessed_at: int) -> PeerKeys:
    """Steps 9 and 10: the directory's record of the signing key, and its validity (TRUST.md
    T3, T4: not revoked by sent-at or by witness time, in its window at sent-at)."""
    if sender is None:
        raise errors.UnknownSender(
            f"no directory record for {h.sender} with signing key {h.sign_kid.hex()}; kept for retry when the "
            "directory updates"
        )
    problem = timing.key_problem(sender, h.sent_at, witnessed_at, who=h.sender)
    if problem is not None:
        raise errors.SenderKeyInvalid(f"rejected: {problem.message}")
    return sender


def verify_detached(sign_public: bytes, header: bytes, body: bytes, signature: bytes) -> None:
    """Check a bulletin signature over exact header and body bytes (step 12; also used for forwards)."""
    signed = b"".join((signature, SIGNATURE_LABEL, struct.pack(">I", len(header)), header, body))  # 9.1, joined once
    if len(signature) != SIGNATURE_BYTES or not sodium.verify_signed(signed, sign_public):
        raise errors.BadSignature(
            "the signature does not verify for the claimed sender: the bulletin was forged or re-sent under another name"
        )


def decode_body(h: Header, body: bytes) -> Bulletin:
    """Step 13: the body decoded and valid, with id, sender and precedence from the header."""
    return _decode_body(h.bulletin_id, h.sender, h.precedence, body)


def _decode_body(bulletin_id: bytes, sender: str, precedence: str, body: bytes) -> Bulletin:
    bid = bulletin_id_from_bytes(bulletin_id)
    bulletin = bulletin_from_wire_body(bid, sender, precedence, body)
    if bulletin is not None:  # the fast path of validation, taken by canonical bodies (bus.bulletin)
        return bulletin
    try:
        raw = _unpack_body(body)
        return Bulletin.assemble(bid, sender, precedence, body_from_dict(raw))
    except (errors.ValidationError, errors.MalformedEnvelope) as exc:
        raise errors.InvalidContent(f"the signed bulletin is malformed: {exc.message}") from exc


def _no_duplicate_keys(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate map key")
    return out


def _unpack_body(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True, object_pairs_hook=_no_duplicate_keys)
    except Exception as exc:  # as ``unpack``: the call is the whole try-body
        raise errors.MalformedEnvelope(f"the bulletin body is not valid msgpack ({type(exc).__name__})") from exc


#: A ``via`` for ``Opener.open``: the (kind, id) of the entry the bulletin must open through.
Via = tuple[int, str]


class Opener:
    """Opens bulletins addressed to one office (and the feeds whose epoch keys it holds):
    the reference, one step of section 11 after another.

    ``box_keys`` are the office's inbox keys by key id (current and kept); pass the
    node's live mapping (``bus.inbox``'s ring), which is read on every open, so keys
    added or erased take effect at once. ``feed_keys`` maps ``(feed, epoch)`` to the
    32-byte epoch key, likewise read on every open.
    """

    def __init__(
        self,
        office_id: str,
        box_keys: Mapping[bytes, BoxKeyPair] | Iterable[BoxKeyPair],
        resolver: KeyResolver,
        *,
        feed_keys: dict[tuple[str, int], bytes] | None = None,
        max_bytes: int = MAX_ENVELOPE_BYTES,
    ) -> None:
        self.office_id = office_id
        self.box_keys: Mapping[bytes, BoxKeyPair] = (
            box_keys if isinstance(box_keys, Mapping) else {k.kid: k for k in box_keys}
        )
        self.resolver = resolver
        self.feed_keys = feed_keys if feed_keys is not None else {}
        self.max_bytes = max_bytes

    @classmethod
    def for_identity(cls, identity: Identity, resolver: KeyResolver, **kwargs: Any) -> Opener:
        return cls(identity.office_id, identity.box_keys, resolver, **kwargs)

    def addressed_to_us(self, entry: list[Any]) -> bool:
        """Step 7's test of one entry: our office and one of our inbox key ids, or a feed
        epoch whose key we hold."""
        if entry[0] == RECIPIENT_OFFICE:
            return entry[1] == self.office_id and entry[2] in self.box_keys
        return (entry[1], entry[2]) in self.feed_keys

    def entry_for(self, entries: list[list[Any]], via: Via | None) -> list[Any]:
        """Step 7: the first entry addressed to us, in header order; with ``via``, the first
        addressed to us *through that recipient* (the subject it came on names it)."""
        ours = [e for e in entries if self.addressed_to_us(e)]
        if not ours:
            raise errors.NotAddressedToUs(f"this bulletin is not addressed to {self.office_id} or a feed it holds keys for")
        if via is None:
            return ours[0]
        for e in ours:
            if (e[0], e[1]) == via:
                return e
        name = "feed " + via[1] if via[0] == RECIPIENT_FEED else "the inbox of " + via[1]
        raise errors.RecipientMismatch(
            f"it came through {name}, but none of its entries addressed to {self.office_id} is for that recipient: "
            "replayed from another inbox or feed"
        )

    def kek_for(self, entry: list[Any], ephemeral_public: bytes) -> bytes:
        """Step 11's key-encryption key for our entry."""
        kind, rid, ref = entry[0], entry[1], entry[2]
        if kind == RECIPIENT_FEED:
            return feed_kek(rid, ref, self.feed_keys[(rid, ref)])
        return receiver_office_kek(self.box_keys[ref], ephemeral_public)

    def open(self, data: bytes, *, witnessed_at: int, via: Via | None = None) -> Opened:
        """Verify and decrypt; returns ``Opened`` or raises one ``EnvelopeError``.

        ``witnessed_at`` is when the server stored the bulletin (TRUST.md 2.1): the time its
        sender's key validity is judged by, with the signed sent-at. ``via`` is the
        recipient the subject it came on names: ``(RECIPIENT_OFFICE, our id)`` for our
        inbox, ``(RECIPIENT_FEED, feed)`` for a feed; None where there is no subject.
        """
        header, ciphertext = split_envelope(data, max_bytes=self.max_bytes)  # steps 1-5
        h = parse_header(header)  # step 6
        entry = self.entry_for(h.entries, via)  # step 7
        check_times(h, witnessed_at)  # step 8
        sender = check_sender_key(h, self.resolver.sender_keys(h.sender, h.sign_kid), witnessed_at)  # steps 9-10
        try:  # step 11
            kek = self.kek_for(entry, h.ephemeral_public)
            content_key = sodium.aead_decrypt(entry[4], wrap_ad(h.bulletin_id, entry[0], entry[1], entry[2]), entry[3], kek)
            plaintext = sodium.aead_decrypt(ciphertext, header, h.content_nonce, content_key)
        except sodium.CryptoError as exc:
            raise errors.DecryptionFailed(
                "the bulletin failed authentication: it was altered in transit, or its header does not match its content"
            ) from exc
        signature, body = plaintext[:SIGNATURE_BYTES], plaintext[SIGNATURE_BYTES:]
        verify_detached(sender.sign_public, header, body, signature)  # step 12
        bulletin = decode_body(h, body)  # step 13
        via_ref = RecipientRef(entry[0], entry[1], entry[2])
        return Opened(bulletin, h.sent_at, witnessed_at, h.sign_kid, h.ephemeral_public, via_ref, header, body, signature, data)


# Convenience for one-off use (scripts, vectors); long-lived nodes keep a Sealer/Opener
# (bus.envelope_fast's) so derived wrap keys are cached.
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
    witnessed_at: int,
    via: Via | None = None,
    feed_keys: dict[tuple[str, int], bytes] | None = None,
) -> Opened:
    return Opener.for_identity(identity, resolver, feed_keys=feed_keys).open(data, witnessed_at=witnessed_at, via=via)
