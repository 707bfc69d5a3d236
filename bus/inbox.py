"""A node's inbox key ring: the short-lived X25519 keys senders seal to, and their schedule. Pure.

An office's node makes a fresh X25519 key pair every ``INBOX_KEY_ROTATE_MS``, signs it with
its identity signing key into a directory item (``bus.directory.make_inbox_key``), and
keeps the secret for as long as something sealed to it may still arrive. Senders seal to
the newest one (``Directory.recipient_keys``), so a thief who later takes the node's
secrets opens only what the ring still held, and nothing sealed to a key made after the
theft. ``schemas/INBOX.md`` is the schedule and the ring file byte for byte;
``schemas/TRUST.md`` says why these lifetimes.

``InboxRing`` answers: is a new key due (``due``), make one (``make``), which secrets to
erase (``erase``), what to publish (``published``), and what this node opens with
(``box_keys``, a live read-only mapping by key id). ``to_bytes``/``from_bytes`` are the
ring file; writing it (0600, before publishing) is the caller's (``bus.transport.inbox_keys``).
Time and randomness are passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import nacl.bindings as nb
import nacl.exceptions

from bus import errors, signed
from bus.directory import InboxKey, SignedItem, decode_item, make_inbox_key
from bus.ids import KEY_ID_BYTES, Rng
from bus.keys import BoxKeyPair, Identity
from bus.timing import INBOX_KEY_KEPT_MS, INBOX_KEY_LIFETIME_MS, INBOX_KEY_ROTATE_MS

RING_FORMAT = "blo-inbox-ring/v2"
RING_KEY_LABEL = b"blo-bus/v2 inbox key ring\x00"
#: More than a node ever keeps (about 13 at a time, plus those a feed grant still needs).
MAX_RING_KEYS = 1024
MAX_RING_FILE_BYTES = 1 << 20
NONCE_BYTES = 24
SECRET_BYTES = 32

_packb = signed.packb
_aead_encrypt = nb.crypto_aead_xchacha20poly1305_ietf_encrypt
_aead_decrypt = nb.crypto_aead_xchacha20poly1305_ietf_decrypt

#: Whether an inbox key's secret is still needed past its keeping time (by its key id):
#: the feed keyring says so while it holds an epoch key granted to it.
StillNeeded = Callable[[bytes], bool]


@dataclass(frozen=True, slots=True)
class RingKey:
    """One inbox key of the ring: its signed item, as published, and its key pair."""

    signed: SignedItem
    pair: BoxKeyPair

    @property
    def item(self) -> InboxKey:
        assert isinstance(self.signed.item, InboxKey)
        return self.signed.item

    @property
    def raw(self) -> bytes:
        return self.signed.raw

    @property
    def kid(self) -> bytes:
        return self.pair.kid


def _rank(key: RingKey) -> tuple[int, bytes]:
    return (key.item.valid_from, key.kid)


class InboxRing:
    """The inbox keys ``identity``'s node holds the secrets of (INBOX.md 2, 3)."""

    def __init__(self, identity: Identity, keys: tuple[RingKey, ...] | list[RingKey] = ()) -> None:
        self.identity = identity
        self._keys: dict[bytes, RingKey] = {}
        self._box_keys: dict[bytes, BoxKeyPair] = {}
        for key in keys:
            self._add(key)

    def _add(self, key: RingKey) -> None:
        self._keys[key.kid] = key
        self._box_keys[key.kid] = key.pair

    @property
    def box_keys(self) -> Mapping[bytes, BoxKeyPair]:
        """Every key pair of the ring by key id, current and kept: what this node opens
        bulletins and feed grants with. A live view: it follows ``make`` and ``erase``."""
        return MappingProxyType(self._box_keys)

    def keys(self) -> list[RingKey]:
        """The ring, oldest ``valid_from`` first."""
        return sorted(self._keys.values(), key=_rank)

    def __len__(self) -> int:
        return len(self._keys)

    def _current_signed(self) -> list[RingKey]:
        return [k for k in self._keys.values() if k.item.sign_kid == self.identity.signing.kid]

    def newest(self) -> RingKey | None:
        """The current-signed key with the greatest ``valid_from`` (None: there is none)."""
        return max(self._current_signed(), key=_rank, default=None)

    def due(self, now_ms: int) -> bool:
        """Whether a new key is due at ``now_ms``: no current-signed key, or the newest one
        is ``INBOX_KEY_ROTATE_MS`` old, or it stays valid less than
        ``INBOX_KEY_LIFETIME_MS - INBOX_KEY_ROTATE_MS`` more."""
        newest = self.newest()
        if newest is None:
            return True
        k = newest.item
        return (
            now_ms - k.valid_from >= INBOX_KEY_ROTATE_MS
            or k.valid_until - now_ms < INBOX_KEY_LIFETIME_MS - INBOX_KEY_ROTATE_MS
        )

    def make(self, now_ms: int, rng: Rng) -> RingKey:
        """A new inbox key, valid ``INBOX_KEY_LIFETIME_MS`` from ``now_ms``, signed with the
        identity's signing key and added to the ring. Save the ring before publishing it."""
        pair = BoxKeyPair.generate(rng)
        raw = make_inbox_key(self.identity.office_id, self.identity.signing, pair, now_ms=now_ms)
        key = RingKey(decode_item(raw), pair)
        self._add(key)
        return key

    def expired(self, now_ms: int, still_needed: StillNeeded | None = None) -> list[RingKey]:
        """The keys whose secrets are to be erased at ``now_ms``: ``INBOX_KEY_KEPT_MS`` past
        their ``valid_until``, and not ``still_needed``."""
        return [
            k
            for k in self.keys()
            if now_ms >= k.item.valid_until + INBOX_KEY_KEPT_MS and not (still_needed is not None and still_needed(k.kid))
        ]

    def erase(self, now_ms: int, still_needed: StillNeeded | None = None) -> list[RingKey]:
        """Remove the ``expired`` keys from the ring (and ``box_keys``); returns them.
        Write the ring file afterwards, so the secrets leave the disk too."""
        gone = self.expired(now_ms, still_needed)
        for key in gone:
            del self._keys[key.kid]
            del self._box_keys[key.kid]
        return gone

    def published(self, now_ms: int) -> list[bytes]:
        """The items of the keys still valid at ``now_ms`` (``now < valid_until``), oldest
        first: what belongs in the directory bucket and the node's own directory."""
        return [k.raw for k in self.keys() if now_ms < k.item.valid_until]

    # -- the ring file (INBOX.md 4) ----------------------------------------------------

    def to_bytes(self, rng: Rng) -> bytes:
        """The ring file: every key's item and secret, encrypted to the identity's current
        encryption key. Write it 0600 (``bus.keystore.write_private_file``)."""
        plain = _packb([[k.raw, k.pair.secret] for k in self.keys()])
        box = self.identity.box
        nonce = rng(NONCE_BYTES)
        sealed = _aead_encrypt(plain, _ad(self.identity.office_id, box.kid), nonce, _ring_key(box))
        return _packb([RING_FORMAT, self.identity.office_id, box.kid, nonce, sealed])

    @classmethod
    def from_bytes(cls, data: bytes, identity: Identity) -> InboxRing:
        """The ring ``to_bytes`` wrote, checked on the way in; only ``KeyStoreError``."""
        office = identity.office_id

        def damaged(problem: str) -> errors.KeyStoreError:
            return errors.KeyStoreError(
                f"the inbox key ring is damaged or not {office}'s: {problem}. Move keys/inbox.keys aside to start "
                "with a new ring (bulletins sealed to the old inbox keys will then not open)"
            )

        if type(data) is not bytes or len(data) > MAX_RING_FILE_BYTES:
            raise damaged(f"not a ring file of at most {MAX_RING_FILE_BYTES} bytes")
        outer = _unpack(data, damaged, "not msgpack")
        if type(outer) is not list or len(outer) != 5 or outer[0] != RING_FORMAT:
            raise damaged(f"not a {RING_FORMAT} file")
        _, owner, box_kid, nonce, sealed = outer
        if owner != office:
            raise errors.KeyStoreError(f"this inbox key ring belongs to {str(owner)[:40]!r}, not {office}")
        if type(box_kid) is not bytes or len(box_kid) != KEY_ID_BYTES:
            raise damaged("no encryption key id")
        box = next((k for k in identity.box_keys if k.kid == box_kid), None)
        if box is None:
            raise errors.KeyStoreError(
                f"the inbox key ring is encrypted to encryption key {box_kid.hex()}, which this identity does not hold "
                "(keep retired keys in old_box after a rotation)"
            )
        if type(nonce) is not bytes or len(nonce) != NONCE_BYTES or type(sealed) is not bytes:
            raise damaged("nonce or ciphertext missing")
        try:
            plain = _aead_decrypt(sealed, _ad(office, box_kid), nonce, _ring_key(box))
        except nacl.exceptions.CryptoError:
            raise damaged("it does not decrypt (altered, or written by another identity)") from None
        entries = _unpack(plain, damaged, "the decrypted ring is not msgpack")
        if type(entries) is not list or len(entries) > MAX_RING_KEYS:
            raise damaged(f"the ring is not a list of at most {MAX_RING_KEYS} keys")
        ring = cls(identity)
        for entry in entries:
            key = _ring_key_from(entry, office, damaged)
            if key.kid in ring._keys:
                raise damaged(f"inbox key {key.kid.hex()} is listed twice")
            ring._add(key)
        return ring


def _ring_key(box: BoxKeyPair) -> bytes:
    return hashlib.blake2b(RING_KEY_LABEL, digest_size=32, key=box.secret).digest()


def _ad(office: str, box_kid: bytes) -> bytes:
    return RING_FORMAT.encode() + b"\x00" + office.encode() + b"\x00" + box_kid


def _unpack(data: bytes, damaged: Callable[[str], errors.KeyStoreError], problem: str) -> Any:
    return signed.unpack(data, "ring", lambda _, __: damaged(problem))


def _ring_key_from(entry: Any, office: str, damaged: Callable[[str], errors.KeyStoreError]) -> RingKey:
    if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not bytes:
        raise damaged("an entry is not [item, secret]")
    raw, secret = entry
    try:
        signed = decode_item(raw)
    except errors.DirectoryError as exc:
        raise damaged(f"an inbox key item does not decode ({exc.reason})") from None
    item = signed.item
    if not isinstance(item, InboxKey) or item.office_id != office:
        raise damaged(f"an entry is not an inbox key of {office}")
    if type(secret) is not bytes or len(secret) != SECRET_BYTES:
        raise damaged(f"the secret of inbox key {item.box_kid.hex()} is not {SECRET_BYTES} bytes")
    pair = BoxKeyPair.from_secret(secret)
    if pair.public != item.box_public:
        raise damaged(f"the secret of inbox key {item.box_kid.hex()} is not that key's")
    return RingKey(signed, pair)
