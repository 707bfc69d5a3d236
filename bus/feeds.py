"""Feed epoch keys: how the centre that owns a feed gives its members the key that feed
bulletins are wrapped under. Pure; no I/O.

The one rule: **a member takes an epoch key only from a grant signed by a pinned centre
that owns the feed, for an epoch record that centre signed, that names the member, and
that chains by hash to the record of the epoch before it.** Anything else is refused
with a ``FeedError`` whose ``reason`` names the rule; ``schemas/FEEDS.md`` specifies the
bytes.

A feed bulletin carries one wrap of its content key, under the feed's current epoch key
(``bus.envelope.FeedRecipient``), however many members the feed has. The owning centre:

* starts epoch 1 with a fresh random key when it creates the feed, and a new epoch with a
  new key on every membership change and on a timer, so a removed or revoked member has
  no key for anything sent after its removal, and a new member none for anything before
  it joined;
* signs one **epoch record** per epoch: feed, epoch number, hash of the previous record,
  owner, time, reason, the members and their countries, and a check value of the key.
  The history of a feed is therefore a hash chain, and a member refuses a second,
  different record for an epoch it already holds (``feed_fork``);
* signs one **grant** per member per epoch: the epoch key wrapped under a key derived
  from the centre's X25519 key and the member's.

``FeedOwner`` is the centre's side (its state holds every epoch key and is persisted
encrypted under a key derived from the centre's own secret); ``FeedKeyring`` is the
member's (verify, chain, unwrap into the very ``feed_keys`` dict the node's ``Opener``
reads, so a new epoch is usable the moment its grant is applied). Time and randomness
are passed in (``now_ms=``, ``rng=``).
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack
import nacl.bindings as nb
import nacl.exceptions
import nacl.utils

from bus import errors
from bus.bulletin import is_feed_name, is_office_id
from bus.ids import KEY_ID_BYTES, Rng
from bus.keys import BoxKeyPair, Identity, PeerKeys, SigningKeyPair

FORMAT_VERSION = 1
KIND_EPOCH = 1
KIND_GRANT = 2

EPOCH_LABEL = b"blo-bus/v1 feed epoch\x00"
GRANT_LABEL = b"blo-bus/v1 feed grant\x00"
EPOCH_HASH_LABEL = b"blo-bus/v1 feed epoch hash\x00"
KEY_CHECK_LABEL = b"blo-bus/v1 feed epoch key check\x00"
GRANT_KEK_LABEL = b"blo-bus/v1 feed grant wrap key\x00"
OWNER_STATE_KEY_LABEL = b"blo-bus/v1 feed owner state key\x00"
OWNER_STATE_FORMAT = "blo-feed-owner/v1"

#: Why an epoch began. ``created`` is epoch 1's reason and no other epoch's.
REASONS = ("created", "member_added", "member_removed", "member_revoked", "timer", "manual")

#: Every ``reason`` a refused item can carry (metrics labels; see schemas/FEEDS.md).
REJECT_REASONS = (
    "malformed",
    "unsupported_version",
    "untrusted_signer",
    "bad_signature",
    "signer_key_invalid",
    "not_owner",
    "feed_fork",
    "unknown_box_key",
    "not_member",
    "wrap_failed",
    "key_mismatch",
    "too_many_waiting",
)

MAX_MEMBERS = 2048
#: A record naming MAX_MEMBERS members of the longest office ids is about 33 KiB.
MAX_ITEM_BYTES = 64 * 1024
MAX_TIME_MS = 1 << 48
MAX_EPOCH = (1 << 63) - 1
#: Verified items a keyring holds back (grant before its record, record before its
#: predecessor, signer not yet in the directory) before it refuses more.
MAX_WAITING = 4096
GENESIS = bytes(32)

KEY_BYTES = 32
HASH_BYTES = 32
NONCE_BYTES = 24
WRAPPED_BYTES = KEY_BYTES + 16
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32

_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_u64 = struct.Struct(">Q").pack
_aead_encrypt = nb.crypto_aead_xchacha20poly1305_ietf_encrypt
_aead_decrypt = nb.crypto_aead_xchacha20poly1305_ietf_decrypt


def _reject(reason: str, message: str) -> errors.FeedError:
    return errors.FeedError(message, reason)


def _bad(what: str, problem: str) -> errors.FeedError:
    return _reject("malformed", f"feed {what}: {problem}")


# -- the values --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """One epoch of a feed, as its owning centre signed it."""

    feed: str
    epoch: int  # 1, 2, ...
    previous: bytes  # epoch_hash of epoch - 1's payload; 32 zero bytes for epoch 1
    owner: str  # the owning centre's id
    owner_sign_kid: bytes  # the centre key that signs this record
    created_at: int
    reason: str  # one of REASONS
    countries: tuple[str, ...]  # the members' countries, sorted, distinct
    members: tuple[str, ...]  # office ids, sorted, distinct
    key_check: bytes  # key_check(feed, epoch, epoch_key): every member gets the same key

    def fields(self) -> list[Any]:
        return [
            self.feed,
            self.epoch,
            self.previous,
            self.owner,
            self.owner_sign_kid,
            self.created_at,
            self.reason,
            list(self.countries),
            list(self.members),
            self.key_check,
        ]


@dataclass(frozen=True, slots=True)
class Grant:
    """One epoch key, wrapped for one member's encryption key, as the owner signed it."""

    feed: str
    epoch: int
    record_hash: bytes  # epoch_hash of the record this grant belongs to
    member: str
    member_box_kid: bytes
    owner: str
    owner_sign_kid: bytes
    owner_box_public: bytes  # the centre's X25519 key the wrap key is derived from
    issued_at: int
    nonce: bytes
    wrapped: bytes = field(repr=False)

    def fields(self) -> list[Any]:
        return [
            self.feed,
            self.epoch,
            self.record_hash,
            self.member,
            self.member_box_kid,
            self.owner,
            self.owner_sign_kid,
            self.owner_box_public,
            self.issued_at,
            self.nonce,
            self.wrapped,
        ]


@dataclass(frozen=True, slots=True)
class SignedFeedItem:
    """A decoded epoch record or grant with the exact bytes that were signed and travelled.
    Decoding checks shape only; ``FeedKeyring.apply`` decides trust."""

    item: EpochRecord | Grant
    payload: bytes
    signature: bytes
    raw: bytes

    @property
    def label(self) -> bytes:
        return EPOCH_LABEL if isinstance(self.item, EpochRecord) else GRANT_LABEL

    @property
    def hash(self) -> bytes:
        """``epoch_hash`` of the payload: what the next record and the grants refer to."""
        return epoch_hash(self.payload)

    @property
    def signed_at(self) -> int:
        i = self.item
        return i.created_at if isinstance(i, EpochRecord) else i.issued_at


@dataclass(frozen=True, slots=True)
class Issue:
    """What one owner operation produced: publish ``record`` and every grant (in that order),
    and give ``epoch_key`` to the centre's own node (its ``feed_keys[(feed, epoch)]``)."""

    feed: str
    epoch: int
    record: bytes
    grants: tuple[tuple[str, bytes], ...]  # (member office id, signed grant)
    epoch_key: bytes = field(repr=False)

    def items(self) -> list[bytes]:
        return [self.record, *(g for _, g in self.grants)]

    def grant_for(self, office_id: str) -> bytes | None:
        return next((g for m, g in self.grants if m == office_id), None)


@dataclass(frozen=True, slots=True)
class FeedChange:
    """One outcome of ``FeedKeyring.apply``; listeners get ``epoch`` and ``key`` changes.

    ``status``: ``epoch`` (a record joined the chain), ``key`` (an epoch key for this
    member was unwrapped), ``waiting`` (a verified item held until what it needs arrives),
    ``refused`` (an item held back earlier turned out bad once its turn came; ``error``).
    """

    status: str
    feed: str
    epoch: int
    item: EpochRecord | Grant
    error: errors.FeedError | None = None


# -- small crypto helpers; every derivation names its purpose ---------------------------


def _kdf(key: bytes, label: bytes, *parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=KEY_BYTES, key=key)
    h.update(label)
    for part in parts:
        h.update(part)
    return h.digest()


def epoch_hash(payload: bytes) -> bytes:
    """The 32-byte hash that names an epoch record: of its exact signed payload bytes."""
    return hashlib.blake2b(EPOCH_HASH_LABEL + payload, digest_size=HASH_BYTES).digest()


def key_check(feed: str, epoch: int, epoch_key: bytes) -> bytes:
    """A commitment to the epoch key, published in the record: a grant whose key does not
    match it is refused, so the owner cannot give different members different keys."""
    if type(epoch_key) is not bytes or len(epoch_key) != KEY_BYTES:
        raise errors.ValidationError("epoch_key", f"must be {KEY_BYTES} bytes")
    return _kdf(epoch_key, KEY_CHECK_LABEL, feed.encode(), b"\x00", _u64(epoch))


def _x25519(secret: bytes, public: bytes) -> bytes | None:
    """The raw X25519 output, or None for a key that is not a usable X25519 key."""
    # libsodium reads 32 bytes whatever it is given; check lengths first.
    if type(public) is not bytes or len(public) != PUBLIC_KEY_BYTES or len(secret) != KEY_BYTES:
        return None
    try:
        return nb.crypto_scalarmult(secret, public)
    except nacl.exceptions.RuntimeError:  # low-order point: all-zero output
        return None


def grant_kek(
    shared: bytes, *, feed: str, epoch: int, owner: str, member: str, owner_box_public: bytes, member_box_public: bytes
) -> bytes:
    """The key-encryption key of one grant: from the centre-member X25519 secret, bound to
    the feed, the epoch, both parties and both public keys (owner's first)."""
    return _kdf(
        shared,
        GRANT_KEK_LABEL,
        feed.encode(),
        b"\x00",
        _u64(epoch),
        owner.encode(),
        b"\x00",
        member.encode(),
        b"\x00",
        owner_box_public,
        member_box_public,
    )


# -- encoding and decoding ---------------------------------------------------------------


def _is_int(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value < high


def _is_bytes(value: Any, size: int) -> bool:
    return type(value) is bytes and len(value) == size


def _countries(members: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({m[:2] for m in members}))


def _ascending(values: tuple[str, ...]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


def check_epoch(r: EpochRecord) -> None:
    """Raise ``FeedError`` (malformed) unless every field of the record is well-formed."""
    if not is_feed_name(r.feed):
        raise _bad("epoch record", "the feed name must be 1-63 of a-z, 0-9 and '-', starting with a letter or digit")
    if not _is_int(r.epoch, 1, MAX_EPOCH + 1):
        raise _bad("epoch record", "the epoch must be an integer from 1 to 2^63-1")
    if not _is_bytes(r.previous, HASH_BYTES):
        raise _bad("epoch record", f"the previous-record hash must be {HASH_BYTES} bytes")
    if (r.epoch == 1) != (r.previous == GENESIS):
        raise _bad("epoch record", "epoch 1, and only epoch 1, has the all-zero previous-record hash")
    if not is_office_id(r.owner):
        raise _bad("epoch record", "the owner must be a centre id such as TH-TCCC")
    if not _is_bytes(r.owner_sign_kid, KEY_ID_BYTES):
        raise _bad("epoch record", f"the owner's key id must be {KEY_ID_BYTES} bytes")
    if not _is_int(r.created_at, 0, MAX_TIME_MS):
        raise _bad("epoch record", "created-at must be a time in ms")
    if type(r.reason) is not str or r.reason not in REASONS:
        raise _bad("epoch record", f"the reason must be one of {', '.join(REASONS)}")
    if (r.epoch == 1) != (r.reason == "created"):
        raise _bad("epoch record", "epoch 1, and only epoch 1, has the reason 'created'")
    m = r.members
    if type(m) is not tuple or len(m) > MAX_MEMBERS or not all(map(is_office_id, m)) or not _ascending(m):
        raise _bad("epoch record", f"members must be up to {MAX_MEMBERS} distinct office ids in ascending order")
    if type(r.countries) is not tuple or r.countries != _countries(m):
        raise _bad("epoch record", "countries must be the members' countries, sorted, each once")
    if not _is_bytes(r.key_check, HASH_BYTES):
        raise _bad("epoch record", f"the key check must be {HASH_BYTES} bytes")


def check_grant(g: Grant) -> None:
    """Raise ``FeedError`` (malformed) unless every field of the grant is well-formed."""
    if not is_feed_name(g.feed):
        raise _bad("grant", "the feed name must be 1-63 of a-z, 0-9 and '-', starting with a letter or digit")
    if not _is_int(g.epoch, 1, MAX_EPOCH + 1):
        raise _bad("grant", "the epoch must be an integer from 1 to 2^63-1")
    if not _is_bytes(g.record_hash, HASH_BYTES):
        raise _bad("grant", f"the record hash must be {HASH_BYTES} bytes")
    if not is_office_id(g.member) or not is_office_id(g.owner):
        raise _bad("grant", "member and owner must be office ids")
    if not _is_bytes(g.member_box_kid, KEY_ID_BYTES) or not _is_bytes(g.owner_sign_kid, KEY_ID_BYTES):
        raise _bad("grant", f"key ids must be {KEY_ID_BYTES} bytes")
    if not _is_bytes(g.owner_box_public, PUBLIC_KEY_BYTES):
        raise _bad("grant", f"the owner's encryption key must be {PUBLIC_KEY_BYTES} bytes")
    if not _is_int(g.issued_at, 0, MAX_TIME_MS):
        raise _bad("grant", "issued-at must be a time in ms")
    if not _is_bytes(g.nonce, NONCE_BYTES) or not _is_bytes(g.wrapped, WRAPPED_BYTES):
        raise _bad("grant", f"the nonce must be {NONCE_BYTES} bytes and the wrapped key {WRAPPED_BYTES}")


def _unpack(data: bytes, what: str) -> Any:
    # msgpack raises a wide, partly undocumented set (ValueError kin, TypeError,
    # UnicodeDecodeError, RecursionError); the call is the whole try-body.
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:
        raise _bad(what, f"not valid msgpack ({type(exc).__name__})") from exc


def _epoch_from(fields: Any) -> EpochRecord:
    if type(fields) is not list or len(fields) != 10:
        raise _bad("epoch record", "must be a msgpack array of 10 fields")
    countries, members = fields[7], fields[8]
    if type(countries) is not list or type(members) is not list:
        raise _bad("epoch record", "countries and members must be arrays")
    record = EpochRecord(*fields[:7], tuple(countries), tuple(members), fields[9])  # type: ignore[arg-type]
    check_epoch(record)
    return record


def _grant_from(fields: Any) -> Grant:
    if type(fields) is not list or len(fields) != 11:
        raise _bad("grant", "must be a msgpack array of 11 fields")
    grant = Grant(*fields)
    check_grant(grant)
    return grant


def decode_item(data: bytes) -> SignedFeedItem:
    """Parse a signed epoch record or grant. Checks shape, not trust; only ``FeedError``."""
    if type(data) is not bytes:
        raise _bad("item", "must be bytes")
    if len(data) > MAX_ITEM_BYTES:
        raise _bad("item", f"is {len(data)} bytes; the limit is {MAX_ITEM_BYTES}")
    outer = _unpack(data, "item")
    # The version is read before the arity, as in the envelope: a later version may have
    # more elements and must get "upgrade", not "malformed".
    if type(outer) is not list or not outer or type(outer[0]) is not int:
        raise _bad("item", "must be a msgpack array [version, kind, payload, signature]")
    if outer[0] != FORMAT_VERSION:
        raise _reject(
            "unsupported_version",
            f"feed item format {outer[0]} is not supported (this node speaks {FORMAT_VERSION}); upgrade it",
        )
    if len(outer) != 4:
        raise _bad("item", "a v1 item must be a msgpack array of 4: [version, kind, payload, signature]")
    _, kind, payload, signature = outer
    if type(payload) is not bytes or not _is_bytes(signature, SIGNATURE_BYTES):
        raise _bad("item", "the payload must be bytes and the signature 64 bytes")
    if type(kind) is not int or kind not in (KIND_EPOCH, KIND_GRANT):
        raise _bad("item", f"unknown kind {kind!r} (1 = epoch record, 2 = grant)")
    fields = _unpack(payload, "epoch record" if kind == KIND_EPOCH else "grant")
    item: EpochRecord | Grant = _epoch_from(fields) if kind == KIND_EPOCH else _grant_from(fields)
    return SignedFeedItem(item=item, payload=payload, signature=signature, raw=data)


def _item(kind: int, label: bytes, payload: bytes, signing: SigningKeyPair) -> bytes:
    return _packb([FORMAT_VERSION, kind, payload, signing.sign(label + payload)])


def sign_epoch(record: EpochRecord, signing: SigningKeyPair) -> bytes:
    """The wire bytes of ``record`` signed by ``signing`` (which must be ``record.owner_sign_kid``)."""
    if signing.kid != record.owner_sign_kid:
        raise _bad("epoch record", "the signing key is not the key the record names as the owner's")
    check_epoch(record)
    return _item(KIND_EPOCH, EPOCH_LABEL, _packb(record.fields()), signing)


def sign_grant(grant: Grant, signing: SigningKeyPair) -> bytes:
    """The wire bytes of ``grant`` signed by ``signing`` (which must be ``grant.owner_sign_kid``)."""
    if signing.kid != grant.owner_sign_kid:
        raise _bad("grant", "the signing key is not the key the grant names as the owner's")
    check_grant(grant)
    return _item(KIND_GRANT, GRANT_LABEL, _packb(grant.fields()), signing)


def make_grant(
    centre: Identity, record: SignedFeedItem, member: PeerKeys, epoch_key: bytes, *, now_ms: int, rng: Rng
) -> bytes:
    """The signed grant of ``epoch_key`` (the key of ``record``) to ``member``'s current
    encryption key. Draws one 24-byte nonce from ``rng``."""
    r = record.item
    assert isinstance(r, EpochRecord)
    shared = _x25519(centre.box.secret, member.box_public)
    if shared is None:
        raise errors.RecipientKeyInvalid(
            f"cannot grant feed {r.feed} to {member.office_id}: its encryption key is unusable"
        )
    kek = grant_kek(
        shared,
        feed=r.feed,
        epoch=r.epoch,
        owner=centre.office_id,
        member=member.office_id,
        owner_box_public=centre.box.public,
        member_box_public=member.box_public,
    )
    nonce = rng(NONCE_BYTES)
    record_hash = record.hash
    grant = Grant(
        feed=r.feed,
        epoch=r.epoch,
        record_hash=record_hash,
        member=member.office_id,
        member_box_kid=member.box_kid,
        owner=centre.office_id,
        owner_sign_kid=centre.signing.kid,
        owner_box_public=centre.box.public,
        issued_at=now_ms,
        nonce=nonce,
        wrapped=_aead_encrypt(epoch_key, record_hash, nonce, kek),
    )
    return sign_grant(grant, centre.signing)


def unwrap_grant(grant: Grant, box: BoxKeyPair) -> bytes:
    """The epoch key inside ``grant``, with the member's box key pair named by its kid.
    ``FeedError(wrap_failed)`` when it does not authenticate."""
    shared = _x25519(box.secret, grant.owner_box_public)
    if shared is None:
        raise _reject("wrap_failed", f"the grant for feed {grant.feed} names an unusable owner encryption key")
    kek = grant_kek(
        shared,
        feed=grant.feed,
        epoch=grant.epoch,
        owner=grant.owner,
        member=grant.member,
        owner_box_public=grant.owner_box_public,
        member_box_public=box.public,
    )
    try:
        return _aead_decrypt(grant.wrapped, grant.record_hash, grant.nonce, kek)
    except nacl.exceptions.CryptoError as exc:
        raise _reject(
            "wrap_failed",
            f"the grant of feed {grant.feed} epoch {grant.epoch} does not unwrap with this office's encryption key",
        ) from exc


# -- the owning centre -------------------------------------------------------------------


class RecipientKeys(Protocol):
    """Where the owner learns members' current keys (``bus.directory.Directory`` implements
    it; its ``recipient_keys`` refuses revoked and expired keys)."""

    def recipient_keys(self, office_id: str, now_ms: int) -> PeerKeys | None: ...


@dataclass(slots=True)
class _Epoch:
    signed: SignedFeedItem
    key: bytes = field(repr=False)

    @property
    def record(self) -> EpochRecord:
        assert isinstance(self.signed.item, EpochRecord)
        return self.signed.item


@dataclass(slots=True)
class _Owned:
    scope: tuple[str, ...] | None  # countries members may come from; None = any
    epochs: list[_Epoch]

    @property
    def current(self) -> _Epoch:
        return self.epochs[-1]


def _check_now(now_ms: int) -> None:
    if type(now_ms) is not int or not 0 <= now_ms < MAX_TIME_MS:
        raise errors.ValidationError("now_ms", f"{now_ms!r} is not a time in ms within the 48-bit range")


def _check_scope(scope: Iterable[str]) -> tuple[str, ...]:
    out = tuple(sorted(set(scope)))
    if not out or not all(type(c) is str and len(c) == 2 and c.isascii() and c.isupper() for c in out):
        raise errors.ValidationError("scope", "must be one or more two-letter country codes such as TH")
    return out


class FeedOwner:
    """The feeds one centre owns: every epoch with its key, and what each operation issues.

    Every operation that changes membership, and ``rotate``, starts a new epoch with a key
    drawn from ``rng`` and returns an ``Issue``. Members' keys are looked up through
    ``keys.recipient_keys(office, now_ms)`` when grants are made; if any member cannot be
    granted (unknown, revoked, expired), the operation raises and changes nothing.

    The caller persists ``to_bytes()`` **before** publishing an issue: a centre that
    published epoch n and then lost it would sign a different epoch n, which members
    refuse as a fork. If publishing fails, ``regrant`` re-issues the current epoch.
    """

    def __init__(self, centre: Identity) -> None:
        self.centre = centre
        self._feeds: dict[str, _Owned] = {}

    # -- operations ------------------------------------------------------------------

    def create(
        self,
        feed: str,
        members: Iterable[str],
        keys: RecipientKeys,
        *,
        now_ms: int,
        rng: Rng = nacl.utils.random,
        scope: Iterable[str] | None = None,
    ) -> Issue:
        """Epoch 1 of a new feed. ``scope`` (countries) bounds who may ever be a member."""
        if not is_feed_name(feed):
            raise errors.ValidationError("feed", f"{feed!r} is not a feed name (1-63 of a-z, 0-9, '-')"[:200])
        if feed in self._feeds:
            raise errors.ValidationError("feed", f"{feed} already exists; change its members or rotate it instead")
        owned = _Owned(None if scope is None else _check_scope(scope), [])
        return self._new_epoch(feed, owned, members, "created", keys, now_ms, rng)

    def add_member(
        self, feed: str, office_id: str, keys: RecipientKeys, *, now_ms: int, rng: Rng = nacl.utils.random
    ) -> Issue:
        """A new epoch with ``office_id`` added; it reads from this epoch on."""
        owned = self._owned(feed)
        members = owned.current.record.members
        if office_id in members:
            raise errors.ValidationError("members", f"{office_id} is already a member of {feed}")
        return self._new_epoch(feed, owned, (*members, office_id), "member_added", keys, now_ms, rng)

    def remove_member(
        self,
        feed: str,
        office_id: str,
        keys: RecipientKeys,
        *,
        now_ms: int,
        rng: Rng = nacl.utils.random,
        reason: str = "member_removed",
    ) -> Issue:
        """A new epoch without ``office_id`` (``reason``: member_removed or member_revoked).
        It keeps the keys of earlier epochs and gets none from this one on."""
        if reason not in ("member_removed", "member_revoked"):
            raise errors.ValidationError("reason", "must be member_removed or member_revoked")
        owned = self._owned(feed)
        members = owned.current.record.members
        if office_id not in members:
            raise errors.ValidationError("members", f"{office_id} is not a member of {feed}")
        rest = tuple(m for m in members if m != office_id)
        return self._new_epoch(feed, owned, rest, reason, keys, now_ms, rng)

    def set_members(
        self,
        feed: str,
        members: Iterable[str],
        keys: RecipientKeys,
        *,
        reason: str,
        now_ms: int,
        rng: Rng = nacl.utils.random,
    ) -> Issue:
        """A new epoch with exactly ``members`` (several changes at once, one epoch)."""
        if reason not in REASONS or reason == "created":
            raise errors.ValidationError("reason", f"must be one of {', '.join(REASONS[1:])}")
        return self._new_epoch(feed, self._owned(feed), members, reason, keys, now_ms, rng)

    def rotate(
        self, feed: str, keys: RecipientKeys, *, now_ms: int, rng: Rng = nacl.utils.random, reason: str = "timer"
    ) -> Issue:
        """A new epoch with the same members and a fresh key (``reason``: timer or manual)."""
        if reason not in ("timer", "manual"):
            raise errors.ValidationError("reason", "a rotation's reason is timer or manual")
        owned = self._owned(feed)
        return self._new_epoch(feed, owned, owned.current.record.members, reason, keys, now_ms, rng)

    def remove_everywhere(
        self,
        office_id: str,
        keys: RecipientKeys,
        *,
        now_ms: int,
        rng: Rng = nacl.utils.random,
        reason: str = "member_revoked",
    ) -> list[Issue]:
        """Remove ``office_id`` from every feed it belongs to (after a revocation)."""
        return [
            self.remove_member(feed, office_id, keys, now_ms=now_ms, rng=rng, reason=reason)
            for feed in self.feeds()
            if office_id in self.members(feed)
        ]

    def regrant(
        self,
        feed: str,
        keys: RecipientKeys,
        *,
        now_ms: int,
        rng: Rng = nacl.utils.random,
        offices: Iterable[str] | None = None,
    ) -> Issue:
        """Fresh grants of the **current** epoch (for ``offices``, default every member): after
        a member's encryption key rotated, or when publishing an issue failed. The record is
        the same bytes as before, so publishing it again is harmless. (A member whose key
        was compromised calls for removal and a new epoch instead.)"""
        _check_now(now_ms)
        owned = self._owned(feed)
        current = owned.current
        members = current.record.members
        chosen = members if offices is None else tuple(sorted(set(offices)))
        strangers = [o for o in chosen if o not in members]
        if strangers:
            raise errors.ValidationError("offices", f"{', '.join(strangers)} not a member of {feed}")
        peers = [self._peer(keys, o, now_ms, feed) for o in chosen]
        grants = tuple(
            (p.office_id, make_grant(self.centre, current.signed, p, current.key, now_ms=now_ms, rng=rng))
            for p in peers
        )
        return Issue(feed, current.record.epoch, current.signed.raw, grants, current.key)

    def _new_epoch(
        self, feed: str, owned: _Owned, members: Iterable[str], reason: str, keys: RecipientKeys, now_ms: int, rng: Rng
    ) -> Issue:
        chosen = tuple(sorted(set(members)))
        for office in chosen:
            if not is_office_id(office):
                raise errors.ValidationError("members", f"{office!r} is not an office id"[:200])
            if owned.scope is not None and office[:2] not in owned.scope:
                raise errors.ValidationError(
                    "members", f"{office} is outside the scope of {feed} ({', '.join(owned.scope)})"
                )
        if len(chosen) > MAX_MEMBERS:
            raise errors.ValidationError("members", f"{len(chosen)} members; a feed has at most {MAX_MEMBERS}")
        _check_now(now_ms)
        peers = [self._peer(keys, o, now_ms, feed) for o in chosen]  # before any change
        previous = owned.epochs[-1] if owned.epochs else None
        epoch = 1 if previous is None else previous.record.epoch + 1
        epoch_key = rng(KEY_BYTES)
        record = EpochRecord(
            feed=feed,
            epoch=epoch,
            previous=GENESIS if previous is None else previous.signed.hash,
            owner=self.centre.office_id,
            owner_sign_kid=self.centre.signing.kid,
            created_at=now_ms,
            reason=reason,
            countries=_countries(chosen),
            members=chosen,
            key_check=key_check(feed, epoch, epoch_key),
        )
        signed = decode_item(sign_epoch(record, self.centre.signing))
        grants = tuple(
            (p.office_id, make_grant(self.centre, signed, p, epoch_key, now_ms=now_ms, rng=rng)) for p in peers
        )
        owned.epochs.append(_Epoch(signed, epoch_key))
        self._feeds[feed] = owned
        return Issue(feed, epoch, signed.raw, grants, epoch_key)

    def _peer(self, keys: RecipientKeys, office: str, now_ms: int, feed: str) -> PeerKeys:
        peer = keys.recipient_keys(office, now_ms)
        if peer is None or peer.office_id != office:
            raise errors.RecipientKeyInvalid(f"cannot grant feed {feed} to {office}: no current keys in the directory")
        problem = peer.problem_at(now_ms)
        if problem is not None:
            raise errors.RecipientKeyInvalid(f"cannot grant feed {feed} to {office}: {problem}")
        return peer

    def _owned(self, feed: str) -> _Owned:
        owned = self._feeds.get(feed)
        if owned is None:
            raise errors.NotFound(f"{self.centre.office_id} owns no feed named {feed!r}"[:200])
        return owned

    # -- questions -------------------------------------------------------------------

    def feeds(self) -> list[str]:
        return sorted(self._feeds)

    def current_epoch(self, feed: str) -> int:
        return self._owned(feed).current.record.epoch

    def record(self, feed: str, epoch: int | None = None) -> EpochRecord:
        """The record of ``epoch`` (default: the current one)."""
        owned = self._owned(feed)
        if epoch is None:
            return owned.current.record
        if not 1 <= epoch <= len(owned.epochs):
            raise errors.NotFound(f"feed {feed} has no epoch {epoch}")
        return owned.epochs[epoch - 1].record

    def members(self, feed: str) -> tuple[str, ...]:
        return self._owned(feed).current.record.members

    def scope(self, feed: str) -> tuple[str, ...] | None:
        return self._owned(feed).scope

    def epoch_keys(self) -> dict[tuple[str, int], bytes]:
        """Every epoch key of every owned feed, for the centre's own node (``feed_keys``)."""
        return {(f, e.record.epoch): e.key for f, o in self._feeds.items() for e in o.epochs}

    def record_items(self, feed: str) -> list[bytes]:
        """The signed record of every epoch, oldest first (a republish after bucket damage)."""
        return [e.signed.raw for e in self._owned(feed).epochs]

    def due(self, now_ms: int, max_age_ms: int) -> list[str]:
        """Feeds whose current epoch began ``max_age_ms`` or more ago: rotate them."""
        return [f for f in self.feeds() if now_ms - self._feeds[f].current.record.created_at >= max_age_ms]

    # -- persistence -----------------------------------------------------------------

    def _state_key(self, box: BoxKeyPair) -> bytes:
        return _kdf(box.secret, OWNER_STATE_KEY_LABEL)

    def _state_ad(self, box_kid: bytes) -> bytes:
        return OWNER_STATE_FORMAT.encode() + b"\x00" + self.centre.office_id.encode() + b"\x00" + box_kid

    def to_bytes(self, *, rng: Rng = nacl.utils.random) -> bytes:
        """The state (every epoch record and key), encrypted under a key derived from the
        centre's encryption secret. Write it with ``bus.keystore.write_private_file``."""
        plain = _packb(
            [
                [feed, None if o.scope is None else list(o.scope), [[e.signed.raw, e.key] for e in o.epochs]]
                for feed, o in sorted(self._feeds.items())
            ]
        )
        box = self.centre.box
        nonce = rng(NONCE_BYTES)
        sealed = _aead_encrypt(plain, self._state_ad(box.kid), nonce, self._state_key(box))
        return _packb([OWNER_STATE_FORMAT, self.centre.office_id, box.kid, nonce, sealed])

    @classmethod
    def from_bytes(cls, data: bytes, centre: Identity) -> FeedOwner:
        """The state ``to_bytes`` wrote, checked (chain, keys) on the way in; only
        ``KeyStoreError`` on bad input."""
        owner = cls(centre)

        def damaged(problem: str) -> errors.KeyStoreError:
            return errors.KeyStoreError(f"the feed owner state is damaged or not {centre.office_id}'s: {problem}")

        try:
            outer = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except Exception as exc:  # the unpack call is the whole try-body (see _unpack)
            raise damaged("not msgpack") from exc
        if type(outer) is not list or len(outer) != 5 or outer[0] != OWNER_STATE_FORMAT:
            raise damaged(f"not a {OWNER_STATE_FORMAT} file")
        _, office, box_kid, nonce, sealed = outer
        if office != centre.office_id:
            raise errors.KeyStoreError(f"this feed owner state belongs to {office!r}, not {centre.office_id}"[:300])
        box = next((k for k in centre.box_keys if type(box_kid) is bytes and k.kid == box_kid), None)
        if box is None:
            raise errors.KeyStoreError(
                "the feed owner state is encrypted to an encryption key this identity does not hold (keep retired "
                "keys in old_box after a rotation)"
            )
        if not _is_bytes(nonce, NONCE_BYTES) or type(sealed) is not bytes:
            raise damaged("nonce or ciphertext missing")
        try:
            plain = _aead_decrypt(sealed, owner._state_ad(box.kid), nonce, owner._state_key(box))
        except nacl.exceptions.CryptoError:
            raise damaged("it does not decrypt (altered, or written by another identity)") from None
        try:
            feeds = msgpack.unpackb(plain, raw=False, strict_map_key=True)
        except Exception as exc:
            raise damaged("the decrypted state is not msgpack") from exc
        if type(feeds) is not list:
            raise damaged("no feed list")
        for entry in feeds:
            owner._load_feed(entry, damaged)
        return owner

    def _load_feed(self, entry: Any, damaged: Callable[[str], errors.KeyStoreError]) -> None:
        if type(entry) is not list or len(entry) != 3 or not is_feed_name(entry[0]) or type(entry[2]) is not list:
            raise damaged("a feed entry is not [name, scope, epochs]")
        feed, scope, epochs = entry
        try:
            owned = _Owned(None if scope is None else _check_scope(scope), [])
        except (errors.ValidationError, TypeError):
            raise damaged(f"feed {feed}: the scope is not a list of country codes") from None
        if not epochs or feed in self._feeds:
            raise damaged(f"feed {feed}: no epochs, or listed twice")
        for n, pair in enumerate(epochs, start=1):
            if (
                type(pair) is not list
                or len(pair) != 2
                or type(pair[0]) is not bytes
                or not _is_bytes(pair[1], KEY_BYTES)
            ):
                raise damaged(f"feed {feed} epoch {n}: not [record, key]")
            try:
                signed = decode_item(pair[0])
            except errors.FeedError as exc:
                raise damaged(f"feed {feed} epoch {n}: {exc.message}") from None
            r = signed.item
            previous = owned.epochs[-1].signed.hash if owned.epochs else GENESIS
            if (
                not isinstance(r, EpochRecord)
                or r.feed != feed
                or r.epoch != n
                or r.owner != self.centre.office_id
                or r.previous != previous
                or r.key_check != key_check(feed, n, pair[1])
            ):
                raise damaged(f"feed {feed} epoch {n}: the record does not continue the chain or match its key")
            owned.epochs.append(_Epoch(signed, pair[1]))
        self._feeds[feed] = owned


# -- a member ----------------------------------------------------------------------------


class CentreKeys(Protocol):
    """What the keyring needs from the verified directory (``bus.directory.Directory``
    implements it): a signer's keys with their window, and whether a key is a pinned centre's."""

    def sender_keys(self, office_id: str, sign_kid: bytes) -> PeerKeys | None: ...

    def is_pinned(self, centre_id: str, public: bytes) -> bool: ...


class FeedKeyring:
    """One office's view of the feeds: verified epoch records (a chain per feed) and the
    epoch keys granted to it, in ``feed_keys`` (pass the node's dict: ``BusNode.feed_keys``).

    Feed it with ``apply(bytes)`` in any order: a grant before its record, a record before
    its predecessor, an item whose signer the directory does not know yet are verified as
    far as possible and held (``waiting``) until what they need arrives; call
    ``retry_held()`` after the directory changes. ``owners`` optionally pins which centre
    owns which feed name; otherwise the owner of a feed's first record held owns it.
    """

    def __init__(
        self,
        office_id: str,
        box_keys: Iterable[BoxKeyPair],
        resolver: CentreKeys,
        *,
        feed_keys: dict[tuple[str, int], bytes] | None = None,
        owners: Mapping[str, str] | None = None,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.office_id = office_id
        self.box_keys = {k.kid: k for k in box_keys}
        self.resolver = resolver
        #: (feed, epoch) -> epoch key; shared with the node's Opener when passed in.
        self.feed_keys = feed_keys if feed_keys is not None else {}
        self.owners = dict(owners or {})
        self.max_waiting = max_waiting
        self._records: dict[str, dict[int, SignedFeedItem]] = {}  # feed -> epoch -> record, always 1..n
        self._grants: dict[tuple[str, int], SignedFeedItem] = {}  # the grant each held key came from
        self._waiting_records: dict[tuple[str, int], SignedFeedItem] = {}  # verified, predecessor missing
        self._waiting_grants: dict[tuple[str, int], dict[bytes, SignedFeedItem]] = {}  # verified, record missing
        self._unknown_signer: dict[bytes, bytes] = {}  # digest -> raw; signer not in the directory yet
        self._listeners: list[Callable[[FeedChange], None]] = []
        #: refused items by reason, as the node's metrics report them
        self.rejected: Counter[str] = Counter()

    @classmethod
    def for_identity(cls, identity: Identity, resolver: CentreKeys, **kwargs: Any) -> FeedKeyring:
        return cls(identity.office_id, identity.box_keys, resolver, **kwargs)

    # -- feeding ---------------------------------------------------------------------

    def apply(self, data: bytes) -> list[FeedChange]:
        """Verify and take in one signed item; returns what changed (empty when the item is
        already held or is a grant for another member). Raises ``FeedError`` (and counts
        its reason) when the item itself is refused; items it released that fail are
        returned as ``refused`` changes."""
        try:
            changes = self._take(decode_item(data))
        except errors.FeedError as exc:
            self.rejected[exc.reason] += 1
            raise
        self._notify(changes)
        return changes

    def retry_held(self) -> list[FeedChange]:
        """Try again the items whose signer the directory did not know (call after it changed)."""
        held, self._unknown_signer = self._unknown_signer, {}
        changes: list[FeedChange] = []
        for raw in held.values():
            signed = decode_item(raw)  # decoded once before; cannot fail now
            try:
                changes += self._take(signed)
            except errors.FeedError as exc:
                changes.append(self._refused(signed, exc))
        self._notify(changes)
        return [c for c in changes if c.status != "waiting"]

    def add_listener(self, callback: Callable[[FeedChange], None]) -> None:
        """Call ``callback(change)`` after every ``epoch`` and ``key`` change. If a listener
        raises, the change still stands, the other listeners still run, and ``apply``
        re-raises it."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[FeedChange], None]) -> None:
        self._listeners.remove(callback)

    def _notify(self, changes: list[FeedChange]) -> None:
        failures = []
        for change in changes:
            if change.status not in ("epoch", "key"):
                continue
            for listener in list(self._listeners):
                try:
                    listener(change)
                except Exception as exc:  # one broken listener must not starve the others
                    failures.append(exc)
        if failures:
            raise failures[0]

    def _refused(self, signed: SignedFeedItem, exc: errors.FeedError) -> FeedChange:
        self.rejected[exc.reason] += 1
        return FeedChange("refused", signed.item.feed, signed.item.epoch, signed.item, exc)

    def _waiting_count(self) -> int:
        return (
            len(self._waiting_records) + sum(len(g) for g in self._waiting_grants.values()) + len(self._unknown_signer)
        )

    def _room(self, signed: SignedFeedItem) -> None:
        if self._waiting_count() >= self.max_waiting:
            i = signed.item
            raise _reject(
                "too_many_waiting",
                f"feed {i.feed} epoch {i.epoch}: {self.max_waiting} items already wait for their record, "
                "predecessor or signer; this one is dropped until the node next loads the bucket",
            )

    def _take(self, signed: SignedFeedItem) -> list[FeedChange]:
        item = signed.item
        if isinstance(item, Grant) and item.member != self.office_id:
            return []  # another member's: it cannot be unwrapped here, so it is not checked
        if not self._verify(signed):
            digest = hashlib.blake2b(signed.raw, digest_size=16).digest()
            if digest in self._unknown_signer:
                return []
            self._room(signed)
            self._unknown_signer[digest] = signed.raw
            return [FeedChange("waiting", item.feed, item.epoch, item)]
        if isinstance(item, EpochRecord):
            return self._take_record(signed, item)
        return self._take_grant(signed, item)

    def _verify(self, signed: SignedFeedItem) -> bool:
        """Checks 3-7 of FEEDS.md section 6; False when the signer is not known yet."""
        i = signed.item
        subject = f"the {'epoch record' if isinstance(i, EpochRecord) else 'grant'} of feed {i.feed} epoch {i.epoch}"
        keys = self.resolver.sender_keys(i.owner, i.owner_sign_kid)
        if keys is None:
            return False
        if not self.resolver.is_pinned(i.owner, keys.sign_public):
            raise _reject(
                "untrusted_signer",
                f"{subject} is signed by {i.owner} key {i.owner_sign_kid.hex()}, which is not a centre key pinned here",
            )
        if not _is_bytes(keys.sign_public, PUBLIC_KEY_BYTES):
            raise _reject("bad_signature", f"{subject}: the directory's key for {i.owner} is not 32 bytes")
        try:
            nb.crypto_sign_open(signed.signature + signed.label + signed.payload, keys.sign_public)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError) as exc:
            raise _reject(
                "bad_signature", f"the signature on {subject} does not verify for {i.owner}: altered or forged"
            ) from exc
        problem = keys.problem_at(signed.signed_at)
        if problem is not None:
            raise _reject("signer_key_invalid", f"{subject} was signed at {signed.signed_at} ms, but {problem}")
        expected = self.owners.get(i.feed)
        if expected is None:
            held = self._records.get(i.feed)
            expected = held[1].item.owner if held else None
        if expected is not None and i.owner != expected:
            raise _reject("not_owner", f"{subject} is signed by {i.owner}, but feed {i.feed} belongs to {expected}")
        return True

    def _take_record(self, signed: SignedFeedItem, r: EpochRecord) -> list[FeedChange]:
        slot = (r.feed, r.epoch)
        existing = self._records.get(r.feed, {}).get(r.epoch)
        if existing is not None:
            if existing.payload == signed.payload:
                return []
            raise self._fork(r, "a second, different record for an epoch already held; the first is kept")
        waiting = self._waiting_records.get(slot)
        if waiting is not None and waiting.payload != signed.payload:
            raise self._fork(r, "a second, different record for an epoch already waiting; the first is kept")
        if r.epoch > 1 and (r.epoch - 1) not in self._records.get(r.feed, {}):
            if waiting is not None:
                return []
            self._room(signed)
            self._waiting_records[slot] = signed
            return [FeedChange("waiting", r.feed, r.epoch, r)]
        self._waiting_records.pop(slot, None)
        # Attach, then every waiting successor in turn (a loop: a long chain arriving
        # newest first must not recurse thousands deep).
        changes: list[FeedChange] = []
        current: SignedFeedItem | None = signed
        while current is not None:
            record = current.item
            assert isinstance(record, EpochRecord)
            try:
                changes += self._attach_record(current, record)
            except errors.FeedError as exc:
                if current is signed:
                    raise
                changes.append(self._refused(current, exc))
                break
            current = self._waiting_records.pop((record.feed, record.epoch + 1), None)
        return changes

    def _fork(self, r: EpochRecord, problem: str) -> errors.FeedError:
        return _reject(
            "feed_fork",
            f"feed {r.feed} epoch {r.epoch} from {r.owner}: {problem}. The feed's history has forked: "
            f"report it to {r.owner}'s operators (its signing key may be misused)",
        )

    def _attach_record(self, signed: SignedFeedItem, r: EpochRecord) -> list[FeedChange]:
        held = self._records.setdefault(r.feed, {})
        if r.epoch > 1:
            previous = held[r.epoch - 1]
            if r.previous != previous.hash:
                raise self._fork(r, f"it does not follow the record of epoch {r.epoch - 1} held here")
            if r.owner != previous.item.owner:
                raise _reject(
                    "not_owner",
                    f"feed {r.feed} epoch {r.epoch} is signed by {r.owner}; the feed belongs to {previous.item.owner}",
                )
        held[r.epoch] = signed
        changes = [FeedChange("epoch", r.feed, r.epoch, r)]
        for grant in self._waiting_grants.pop((r.feed, r.epoch), {}).values():
            assert isinstance(grant.item, Grant)
            try:
                changes += self._attach_grant(grant, grant.item)
            except errors.FeedError as exc:
                changes.append(self._refused(grant, exc))
        return changes

    def _take_grant(self, signed: SignedFeedItem, g: Grant) -> list[FeedChange]:
        if g.member_box_kid not in self.box_keys:
            raise _reject(
                "unknown_box_key",
                f"the grant of feed {g.feed} epoch {g.epoch} is for encryption key {g.member_box_kid.hex()}, which "
                f"{self.office_id} does not hold (a retired key dropped, or a new one not loaded yet)",
            )
        if g.epoch not in self._records.get(g.feed, {}):
            pool = self._waiting_grants.setdefault((g.feed, g.epoch), {})
            if signed.payload in pool:
                return []
            self._room(signed)
            pool[signed.payload] = signed
            return [FeedChange("waiting", g.feed, g.epoch, g)]
        return self._attach_grant(signed, g)

    def _attach_grant(self, signed: SignedFeedItem, g: Grant) -> list[FeedChange]:
        record_item = self._records[g.feed][g.epoch]
        r = record_item.item
        assert isinstance(r, EpochRecord)
        subject = f"the grant of feed {g.feed} epoch {g.epoch}"
        if g.record_hash != record_item.hash:
            raise self._fork(r, "a grant for another record of this epoch than the one held here")
        if g.owner != r.owner:
            raise _reject("not_owner", f"{subject} is signed by {g.owner}; the epoch's record by {r.owner}")
        if self.office_id not in r.members:
            raise _reject("not_member", f"{subject} is for {self.office_id}, which the epoch's record does not list")
        epoch_key = unwrap_grant(g, self.box_keys[g.member_box_kid])
        if key_check(g.feed, g.epoch, epoch_key) != r.key_check:
            raise _reject(
                "key_mismatch", f"{subject} holds a key other than the one its record commits to; the key is not used"
            )
        slot = (g.feed, g.epoch)
        self._grants.setdefault(slot, signed)
        if self.feed_keys.get(slot) == epoch_key:
            return []
        self.feed_keys[slot] = epoch_key
        return [FeedChange("key", g.feed, g.epoch, g)]

    # -- questions -------------------------------------------------------------------

    def feeds(self) -> list[str]:
        """Every feed with at least its first record held."""
        return sorted(self._records)

    def current_epoch(self, feed: str) -> int | None:
        """The latest epoch of ``feed`` whose record (and every one before it) is held."""
        held = self._records.get(feed)
        return max(held) if held else None

    def record(self, feed: str, epoch: int | None = None) -> EpochRecord | None:
        """The record of ``epoch`` (default: the current one), or None."""
        held = self._records.get(feed, {})
        found = held.get(epoch if epoch is not None else max(held, default=0))
        return None if found is None else found.item  # type: ignore[return-value]

    def members(self, feed: str, epoch: int | None = None) -> tuple[str, ...]:
        r = self.record(feed, epoch)
        return () if r is None else r.members

    def countries(self, feed: str, epoch: int | None = None) -> tuple[str, ...]:
        """The countries whose offices can read ``feed`` in ``epoch`` (handling rules: a
        bulletin goes on a feed only if its releasability covers all of these)."""
        r = self.record(feed, epoch)
        return () if r is None else r.countries

    def member_feeds(self) -> list[str]:
        """The feeds this office belongs to now (its office id is in the current record)."""
        return [f for f in self.feeds() if self.office_id in self.members(f)]

    def key_may_arrive(self, feed: str, epoch: int) -> bool:
        """True when this office holds no key for ``(feed, epoch)`` yet but may still get one:
        the epoch's record has not arrived, or it names this office and the grant has not.
        A bulletin of such an epoch is worth keeping for a retry when a key arrives; one of
        an epoch whose record does not name this office will never open here."""
        if (feed, epoch) in self.feed_keys:
            return False
        r = self.record(feed, epoch)
        return r is None or self.office_id in r.members

    def epochs_with_keys(self, feed: str) -> list[int]:
        return sorted(e for f, e in self.feed_keys if f == feed)

    @property
    def waiting(self) -> int:
        """Items held back until their record, predecessor or signer arrives."""
        return self._waiting_count()

    def signed_items(self) -> list[bytes]:
        """What a local copy stores: every held record, feed by feed in epoch order, then the
        grants of the keys held (so reloading never has to wait for anything)."""
        records = [s.raw for f in sorted(self._records) for _, s in sorted(self._records[f].items())]
        return records + [s.raw for _, s in sorted(self._grants.items())]
