"""Feed epoch keys: how the centre that owns a feed gives its members the key that feed
bulletins are wrapped under, and which bulletins on a feed its members believe. Pure; no I/O.

The one rule: **a member takes an epoch key only from a grant signed by a pinned centre
that owns the feed, for an epoch record that centre signed, that names the member, that
chains by hash to the record of the epoch before it, and whose signing key was not revoked
by the time the server stored them.** Anything else is refused with a ``FeedError`` whose
``reason`` names the rule; ``schemas/FEEDS.md`` (format v2) specifies the bytes.

A feed bulletin carries one wrap of its content key, under the feed's current epoch key
(``bus.envelope.FeedRecipient``), however many members the feed has. The owning centre:

* starts epoch 1 with a fresh random key when it creates the feed, and a new epoch with a
  new key on every change of members or writers and on a timer, so a removed or revoked
  member has no key for anything sent after its removal, and a new member none for
  anything before it joined;
* signs one **epoch record** per epoch: feed, epoch number, hash of the previous record,
  owner, time, reason, the members and their countries, the members that may post
  (``writers``), and a check value of the key. The history of a feed is therefore a hash
  chain, and a member refuses a second, different record for an epoch it already holds
  (``feed_fork``);
* signs one **grant** per member per epoch: the epoch key wrapped to the member's current
  inbox key from a one-time X25519 key drawn for that grant and dropped at once, so no
  secret of the centre's opens a grant.

Every item is judged with its *witness time* (when the server stored it, schemas/TRUST.md),
never only by the time its signer wrote: a revoked centre key signs nothing that is stored
after its revocation. The same clock decides which bulletins on a feed a member believes
(``FeedKeyring.check_post``: none under an epoch superseded before it was stored, only the
owner's and the writers') and under which epoch a sender seals (``FeedKeyring.post_epoch``:
the newest whose record it holds; until that key arrives, it waits).

``FeedOwner`` is the centre's side (its state holds the epoch keys not yet erased and is
persisted encrypted under a key derived from the centre's own secret); ``FeedKeyring`` is
the member's (verify, chain, unwrap into the very ``feed_keys`` dict the node's ``Opener``
reads, so a new epoch is usable the moment its grant is applied). Time and randomness are
passed in (``now_ms=``, ``witnessed_at=``, ``rng=``).
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import nacl.bindings as nb
import nacl.exceptions
import nacl.utils

from bus import errors, timing
from bus import signed as codec  # `signed` names a SignedFeedItem here
from bus.bulletin import is_feed_name, is_office_id
from bus.ids import KEY_ID_BYTES, Rng
from bus.keys import BoxKeyPair, Identity, PeerKeys, SigningKeyPair

FORMAT_VERSION = 2
KIND_EPOCH = 1
KIND_GRANT = 2

EPOCH_LABEL = b"blo-bus/v2 feed epoch\x00"
GRANT_LABEL = b"blo-bus/v2 feed grant\x00"
EPOCH_HASH_LABEL = b"blo-bus/v2 feed epoch hash\x00"
KEY_CHECK_LABEL = b"blo-bus/v2 feed epoch key check\x00"
GRANT_KEK_LABEL = b"blo-bus/v2 feed grant wrap key\x00"
OWNER_STATE_KEY_LABEL = b"blo-bus/v2 feed owner state key\x00"
OWNER_STATE_FORMAT = "blo-feed-owner/v2"

#: Why an epoch began. ``created`` is epoch 1's reason and no other epoch's.
REASONS = ("created", "member_added", "member_removed", "member_revoked", "writers_changed", "timer", "manual")

#: Every ``reason`` a refused item can carry (metrics labels; see schemas/FEEDS.md 7.1).
REJECT_REASONS = (
    "malformed",
    "unsupported_version",
    "untrusted_signer",
    "bad_signature",
    "from_future",
    "signer_key_invalid",
    "not_owner",
    "feed_fork",
    "unknown_inbox_key",
    "not_member",
    "wrap_failed",
    "key_mismatch",
    "too_many_waiting",
)

MAX_MEMBERS = 2048
#: A record naming MAX_MEMBERS members and as many writers of the longest office ids is
#: about 64 KiB less a little; typical records are a few hundred bytes.
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
SIGNATURE_BYTES = codec.SIGNATURE_BYTES
PUBLIC_KEY_BYTES = 32

_packb = codec.packb
_u64 = struct.Struct(">Q").pack
_aead_encrypt = nb.crypto_aead_xchacha20poly1305_ietf_encrypt
_aead_decrypt = nb.crypto_aead_xchacha20poly1305_ietf_decrypt


def _reject(reason: str, message: str) -> errors.FeedError:
    return errors.FeedError(message, reason)


def _bad(what: str, problem: str) -> errors.FeedError:
    return _reject("malformed", f"feed {what}: {problem}")


def _fail(problem: str, message: str) -> errors.FeedError:
    """``bus.signed``'s problems as feed reasons: too large is malformed here."""
    return _reject(codec.UNSUPPORTED if problem == codec.UNSUPPORTED else "malformed", message)


def is_epoch(value: object) -> bool:
    """Whether ``value`` is an epoch number: an int from 1 to 2^63-1 (FEEDS.md 2). A feed
    recipient entry of a bulletin names an epoch in this range or none at all."""
    return type(value) is int and 1 <= value <= MAX_EPOCH


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
    writers: tuple[str, ...]  # the members that may post, sorted, distinct (the owner always may)
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
            list(self.writers),
            self.key_check,
        ]

    def may_post(self, office_id: str) -> bool:
        """Whether ``office_id`` may post to the feed in this epoch: the owner or a writer."""
        return office_id == self.owner or office_id in self.writers


@dataclass(frozen=True, slots=True)
class Grant:
    """One epoch key, wrapped to one member's inbox key, as the owner signed it."""

    feed: str
    epoch: int
    record_hash: bytes  # epoch_hash of the record this grant belongs to
    member: str
    member_inbox_kid: bytes  # the member's inbox key the epoch key is wrapped to
    owner: str
    owner_sign_kid: bytes
    ephemeral_public: bytes  # the one-time X25519 key of this grant's wrap
    issued_at: int
    nonce: bytes
    wrapped: bytes = field(repr=False)

    def fields(self) -> list[Any]:
        return [
            self.feed,
            self.epoch,
            self.record_hash,
            self.member,
            self.member_inbox_kid,
            self.owner,
            self.owner_sign_kid,
            self.ephemeral_public,
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
    and give ``epoch_key`` to the centre's own node (its ``feed_keys[(feed, epoch)]``).

    ``ungranted``: members of the epoch that got no grant in this issue because the
    directory shows no usable inbox key for them now (offline too long). The owner grants
    them when their inbox key appears (``FeedOwner.regrant``; ``FeedOwner.ungranted``)."""

    feed: str
    epoch: int
    record: bytes
    grants: tuple[tuple[str, bytes], ...]  # (member office id, signed grant)
    epoch_key: bytes = field(repr=False)
    ungranted: tuple[str, ...] = ()

    def items(self) -> list[bytes]:
        return [self.record, *(g for _, g in self.grants)]

    def grant_for(self, office_id: str) -> bytes | None:
        return next((g for m, g in self.grants if m == office_id), None)


@dataclass(frozen=True, slots=True)
class FeedChange:
    """One outcome of ``FeedKeyring.apply`` (and ``retry_held``, ``recheck``,
    ``erase_expired``); listeners get ``epoch``, ``key``, ``dropped`` and ``erased``.

    ``status``: ``epoch`` (a record joined the chain), ``key`` (an epoch key for this
    member was unwrapped), ``waiting`` (a verified item held until what it needs arrives),
    ``refused`` (an item held back earlier turned out bad once its turn came; ``error``),
    ``dropped`` (a held item that a revocation now refuses was taken out, with its key;
    ``error``), ``erased`` (an epoch key kept long enough was erased, FEEDS.md 7.3).
    """

    status: str
    feed: str
    epoch: int
    item: EpochRecord | Grant | None
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
    shared: bytes, *, feed: str, epoch: int, owner: str, member: str, ephemeral_public: bytes, inbox_public: bytes
) -> bytes:
    """The key-encryption key of one grant (FEEDS.md 5.3): from the X25519 secret between
    the grant's one-time key and the member's inbox key, bound to the feed, the epoch, both
    parties and both public keys (the one-time key first)."""
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
        ephemeral_public,
        inbox_public,
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


def _office_list(values: Any) -> bool:
    """Up to MAX_MEMBERS office ids, strictly ascending (so sorted and distinct)."""
    return (
        type(values) is tuple and len(values) <= MAX_MEMBERS and all(map(is_office_id, values)) and _ascending(values)
    )


def check_epoch(r: EpochRecord) -> None:
    """Raise ``FeedError`` (malformed) unless every field of the record is well-formed."""
    if not is_feed_name(r.feed):
        raise _bad("epoch record", "the feed name must be 1-63 of a-z, 0-9 and '-', starting with a letter or digit")
    if not is_epoch(r.epoch):
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
    if not _office_list(r.members):
        raise _bad("epoch record", f"members must be up to {MAX_MEMBERS} distinct office ids in ascending order")
    if type(r.countries) is not tuple or r.countries != _countries(r.members):
        raise _bad("epoch record", "countries must be the members' countries, sorted, each once")
    if not _office_list(r.writers) or not set(r.writers) <= set(r.members):
        raise _bad("epoch record", "writers must be distinct members in ascending order")
    if not _is_bytes(r.key_check, HASH_BYTES):
        raise _bad("epoch record", f"the key check must be {HASH_BYTES} bytes")


def check_grant(g: Grant) -> None:
    """Raise ``FeedError`` (malformed) unless every field of the grant is well-formed."""
    if not is_feed_name(g.feed):
        raise _bad("grant", "the feed name must be 1-63 of a-z, 0-9 and '-', starting with a letter or digit")
    if not is_epoch(g.epoch):
        raise _bad("grant", "the epoch must be an integer from 1 to 2^63-1")
    if not _is_bytes(g.record_hash, HASH_BYTES):
        raise _bad("grant", f"the record hash must be {HASH_BYTES} bytes")
    if not is_office_id(g.member) or not is_office_id(g.owner):
        raise _bad("grant", "member and owner must be office ids")
    if not _is_bytes(g.member_inbox_kid, KEY_ID_BYTES) or not _is_bytes(g.owner_sign_kid, KEY_ID_BYTES):
        raise _bad("grant", f"key ids must be {KEY_ID_BYTES} bytes")
    if not _is_bytes(g.ephemeral_public, PUBLIC_KEY_BYTES):
        raise _bad("grant", f"the one-time public key must be {PUBLIC_KEY_BYTES} bytes")
    if not _is_int(g.issued_at, 0, MAX_TIME_MS):
        raise _bad("grant", "issued-at must be a time in ms")
    if not _is_bytes(g.nonce, NONCE_BYTES) or not _is_bytes(g.wrapped, WRAPPED_BYTES):
        raise _bad("grant", f"the nonce must be {NONCE_BYTES} bytes and the wrapped key {WRAPPED_BYTES}")


def _epoch_from(fields: Any) -> EpochRecord:
    if type(fields) is not list or len(fields) != 11:
        raise _bad("epoch record", "must be a msgpack array of 11 fields")
    countries, members, writers = fields[7], fields[8], fields[9]
    if type(countries) is not list or type(members) is not list or type(writers) is not list:
        raise _bad("epoch record", "countries, members and writers must be arrays")
    record = EpochRecord(*fields[:7], tuple(countries), tuple(members), tuple(writers), fields[10])  # type: ignore[arg-type]
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
    got = codec.decode_item(
        data, what="feed item", limit=MAX_ITEM_BYTES, version=FORMAT_VERSION, kinds=_KIND_NAMES, fail=_fail
    )
    item: EpochRecord | Grant = _epoch_from(got.fields) if got.kind == KIND_EPOCH else _grant_from(got.fields)
    return SignedFeedItem(item=item, payload=got.payload, signature=got.signature, raw=data)


_KIND_NAMES = {KIND_EPOCH: "epoch record", KIND_GRANT: "grant"}


def _item(kind: int, label: bytes, payload: bytes, signing: SigningKeyPair) -> bytes:
    return codec.seal_item(FORMAT_VERSION, kind, label, payload, signing)


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
    inbox key (``member.box_public``/``box_kid``, as ``Directory.recipient_keys`` gives it).
    Draws a 32-byte one-time X25519 secret, then a 24-byte nonce, from ``rng``; the secret
    lives only inside this call."""
    r = record.item
    assert isinstance(r, EpochRecord)
    one_time = BoxKeyPair.from_secret(rng(KEY_BYTES))
    shared = _x25519(one_time.secret, member.box_public)
    if shared is None:
        raise errors.RecipientKeyInvalid(f"cannot grant feed {r.feed} to {member.office_id}: its inbox key is unusable")
    kek = grant_kek(
        shared,
        feed=r.feed,
        epoch=r.epoch,
        owner=centre.office_id,
        member=member.office_id,
        ephemeral_public=one_time.public,
        inbox_public=member.box_public,
    )
    nonce = rng(NONCE_BYTES)
    record_hash = record.hash
    grant = Grant(
        feed=r.feed,
        epoch=r.epoch,
        record_hash=record_hash,
        member=member.office_id,
        member_inbox_kid=member.box_kid,
        owner=centre.office_id,
        owner_sign_kid=centre.signing.kid,
        ephemeral_public=one_time.public,
        issued_at=now_ms,
        nonce=nonce,
        wrapped=_aead_encrypt(epoch_key, record_hash, nonce, kek),
    )
    return sign_grant(grant, centre.signing)


def unwrap_grant(grant: Grant, inbox: BoxKeyPair) -> bytes:
    """The epoch key inside ``grant``, with the member's inbox key pair named by its kid.
    ``FeedError(wrap_failed)`` when it does not authenticate."""
    shared = _x25519(inbox.secret, grant.ephemeral_public)
    if shared is None:
        raise _reject("wrap_failed", f"the grant for feed {grant.feed} names an unusable one-time key")
    kek = grant_kek(
        shared,
        feed=grant.feed,
        epoch=grant.epoch,
        owner=grant.owner,
        member=grant.member,
        ephemeral_public=grant.ephemeral_public,
        inbox_public=inbox.public,
    )
    try:
        return _aead_decrypt(grant.wrapped, grant.record_hash, grant.nonce, kek)
    except nacl.exceptions.CryptoError as exc:
        raise _reject(
            "wrap_failed",
            f"the grant of feed {grant.feed} epoch {grant.epoch} does not unwrap with this office's inbox key",
        ) from exc


def _check_time(name: str, value: int) -> None:
    if type(value) is not int or not 0 <= value < MAX_TIME_MS:
        raise errors.ValidationError(name, f"{value!r} is not a time in ms within the 48-bit range")


# -- the owning centre -------------------------------------------------------------------


class RecipientKeys(Protocol):
    """Where the owner learns members' current inbox keys (``bus.directory.Directory``
    implements it: it raises ``DirectoryError`` for an office it does not know and
    ``RecipientKeyInvalid`` when the office has no usable key now)."""

    def recipient_keys(self, office_id: str, now_ms: int) -> PeerKeys: ...


@dataclass(slots=True)
class _Epoch:
    signed: SignedFeedItem
    key: bytes | None = field(repr=False)  # None once erased (FEEDS.md 7.3); never for the last epoch

    @property
    def record(self) -> EpochRecord:
        assert isinstance(self.signed.item, EpochRecord)
        return self.signed.item


@dataclass(slots=True)
class _Owned:
    scope: tuple[str, ...] | None  # countries members may come from; None = any
    epochs: list[_Epoch]
    #: members of the current epoch without a grant of it (no usable inbox key when it was
    #: issued); in memory only: a restarted centre re-grants every current epoch anyway
    ungranted: set[str] = field(default_factory=set)

    @property
    def current(self) -> _Epoch:
        return self.epochs[-1]


def _check_scope(scope: Iterable[str]) -> tuple[str, ...]:
    out = tuple(sorted(set(scope)))
    if not out or not all(type(c) is str and len(c) == 2 and c.isascii() and c.isupper() for c in out):
        raise errors.ValidationError("scope", "must be one or more two-letter country codes such as TH")
    return out


def _sorted_offices(what: str, offices: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(sorted(set(offices)))
    for office in chosen:
        if not is_office_id(office):
            raise errors.ValidationError(what, f"{office!r} is not an office id"[:200])
    if len(chosen) > MAX_MEMBERS:
        raise errors.ValidationError(what, f"{len(chosen)} offices; a feed has at most {MAX_MEMBERS}")
    return chosen


class FeedOwner:
    """The feeds one centre owns: every epoch record with its key (until erased), and what
    each operation issues.

    Every operation that changes members or writers, and ``rotate``, starts a new epoch with
    a key drawn from ``rng`` and returns an ``Issue``. Members' inbox keys are looked up
    through ``keys.recipient_keys(office, now_ms)`` when grants are made. An office being
    added must be grantable now, else the operation raises and changes nothing; a member
    that stays but has no usable inbox key now gets no grant (``Issue.ungranted``) and does
    not hold the epoch up: a removal is always possible. ``regrant`` grants it later.

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
        writers: Iterable[str] = (),
    ) -> Issue:
        """Epoch 1 of a new feed. ``scope`` (countries) bounds who may ever be a member;
        ``writers`` are the members that may post (the owner always may)."""
        if not is_feed_name(feed):
            raise errors.ValidationError(
                "feed", f"{feed!r} is not a feed name (1-63 of a-z, 0-9 and '-', starting with a letter or digit)"[:200]
            )
        if feed in self._feeds:
            raise errors.ValidationError("feed", f"{feed} already exists; change its members or rotate it instead")
        owned = _Owned(None if scope is None else _check_scope(scope), [])
        return self._new_epoch(feed, owned, members, writers, "created", keys, now_ms, rng)

    def add_member(
        self,
        feed: str,
        office_id: str,
        keys: RecipientKeys,
        *,
        now_ms: int,
        rng: Rng = nacl.utils.random,
        post: bool = False,
    ) -> Issue:
        """A new epoch with ``office_id`` added (a writer too when ``post``); it reads from
        this epoch on."""
        current = self._owned(feed).current.record
        if office_id in current.members:
            raise errors.ValidationError("members", f"{office_id} is already a member of {feed}")
        writers = (*current.writers, office_id) if post else current.writers
        return self.set_members(
            feed, (*current.members, office_id), keys, reason="member_added", now_ms=now_ms, rng=rng, writers=writers
        )

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
        It keeps the keys of earlier epochs, gets none from this one on, and may post no
        more."""
        if reason not in ("member_removed", "member_revoked"):
            raise errors.ValidationError("reason", "must be member_removed or member_revoked")
        members = self._owned(feed).current.record.members
        if office_id not in members:
            raise errors.ValidationError("members", f"{office_id} is not a member of {feed}")
        rest = tuple(m for m in members if m != office_id)
        return self.set_members(feed, rest, keys, reason=reason, now_ms=now_ms, rng=rng)

    def set_members(
        self,
        feed: str,
        members: Iterable[str],
        keys: RecipientKeys,
        *,
        reason: str,
        now_ms: int,
        rng: Rng = nacl.utils.random,
        writers: Iterable[str] | None = None,
    ) -> Issue:
        """A new epoch with exactly ``members`` (several changes at once, one epoch).
        ``writers`` None keeps the current writers that stay members."""
        if reason not in REASONS or reason == "created":
            raise errors.ValidationError("reason", f"must be one of {', '.join(REASONS[1:])}")
        owned = self._owned(feed)
        chosen = _sorted_offices("members", members)
        if writers is None:
            writers = [w for w in owned.current.record.writers if w in chosen]
        return self._new_epoch(feed, owned, chosen, writers, reason, keys, now_ms, rng)

    def set_writers(
        self, feed: str, writers: Iterable[str], keys: RecipientKeys, *, now_ms: int, rng: Rng = nacl.utils.random
    ) -> Issue:
        """A new epoch (``writers_changed``) with the same members and exactly ``writers``
        allowed to post; each must be a member."""
        owned = self._owned(feed)
        current = owned.current.record
        chosen = _sorted_offices("writers", writers)
        if chosen == current.writers:
            raise errors.ValidationError("writers", f"the writers of {feed} are already {', '.join(chosen) or 'none'}")
        return self._new_epoch(feed, owned, current.members, chosen, "writers_changed", keys, now_ms, rng)

    def rotate(
        self, feed: str, keys: RecipientKeys, *, now_ms: int, rng: Rng = nacl.utils.random, reason: str = "timer"
    ) -> Issue:
        """A new epoch with the same members and writers and a fresh key (``reason``: timer
        or manual)."""
        if reason not in ("timer", "manual"):
            raise errors.ValidationError("reason", "a rotation's reason is timer or manual")
        owned = self._owned(feed)
        current = owned.current.record
        return self._new_epoch(feed, owned, current.members, current.writers, reason, keys, now_ms, rng)

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
        """Fresh grants of the **current** epoch (for ``offices``, default every member): to
        an ungranted member whose inbox key appeared, or when publishing an issue failed.
        The record is the same bytes as before, so publishing it again is harmless. A member
        still without a usable inbox key is skipped and listed in ``Issue.ungranted``.
        (A member whose keys were compromised calls for removal and a new epoch instead.)"""
        _check_time("now_ms", now_ms)
        owned = self._owned(feed)
        current = owned.current
        members = current.record.members
        chosen = members if offices is None else tuple(sorted(set(offices)))
        strangers = [o for o in chosen if o not in members]
        if strangers:
            raise errors.ValidationError("offices", f"{', '.join(strangers)} not a member of {feed}")
        assert current.key is not None  # the current epoch's key is never erased
        grants, ungranted = self._grants(keys, feed, current.signed, current.key, chosen, now_ms, rng)
        owned.ungranted = (owned.ungranted - set(chosen)) | set(ungranted)
        return Issue(feed, current.record.epoch, current.signed.raw, grants, current.key, ungranted)

    def erase_expired(self, now_ms: int) -> list[tuple[str, int]]:
        """Erase the key of every epoch whose successor began ``EPOCH_KEY_KEPT_MS`` or more
        before ``now_ms`` (FEEDS.md 7.3); returns the ``(feed, epoch)`` erased, for the
        node to drop from its ``feed_keys`` too. Persist the state afterwards."""
        erased = []
        for feed, owned in sorted(self._feeds.items()):
            for older, newer in itertools.pairwise(owned.epochs):
                if older.key is not None and now_ms >= newer.record.created_at + timing.EPOCH_KEY_KEPT_MS:
                    older.key = None
                    erased.append((feed, older.record.epoch))
        return erased

    def _new_epoch(
        self,
        feed: str,
        owned: _Owned,
        members: Iterable[str],
        writers: Iterable[str],
        reason: str,
        keys: RecipientKeys,
        now_ms: int,
        rng: Rng,
    ) -> Issue:
        chosen = _sorted_offices("members", members)
        chosen_writers = _sorted_offices("writers", writers)
        outsiders = [w for w in chosen_writers if w not in chosen]
        if outsiders:
            raise errors.ValidationError("writers", f"{', '.join(outsiders)} must be members of {feed} to post to it")
        for office in chosen:
            _check_in_scope(feed, owned, office)
        _check_time("now_ms", now_ms)
        previous = owned.epochs[-1] if owned.epochs else None
        staying = set(previous.record.members) if previous is not None else set()
        # Before any change or draw: an office being added must be reachable now.
        for office in chosen:
            if office not in staying:
                self._peer(keys, office, now_ms, feed, strict=True)
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
            writers=chosen_writers,
            key_check=key_check(feed, epoch, epoch_key),
        )
        signed = decode_item(sign_epoch(record, self.centre.signing))
        grants, ungranted = self._grants(keys, feed, signed, epoch_key, chosen, now_ms, rng)
        owned.epochs.append(_Epoch(signed, epoch_key))
        owned.ungranted = set(ungranted)
        self._feeds[feed] = owned
        return Issue(feed, epoch, signed.raw, grants, epoch_key, ungranted)

    def _grants(
        self,
        keys: RecipientKeys,
        feed: str,
        signed: SignedFeedItem,
        epoch_key: bytes,
        offices: tuple[str, ...],
        now_ms: int,
        rng: Rng,
    ) -> tuple[tuple[tuple[str, bytes], ...], tuple[str, ...]]:
        """Grants to each of ``offices`` (ascending) that has a usable inbox key now, and
        the offices that have none."""
        grants: list[tuple[str, bytes]] = []
        ungranted: list[str] = []
        for office in offices:
            peer = self._peer(keys, office, now_ms, feed, strict=False)
            if peer is None:
                ungranted.append(office)
                continue
            grants.append((office, make_grant(self.centre, signed, peer, epoch_key, now_ms=now_ms, rng=rng)))
        return tuple(grants), tuple(ungranted)

    def _peer(self, keys: RecipientKeys, office: str, now_ms: int, feed: str, *, strict: bool) -> PeerKeys | None:
        """The inbox key to grant ``office``; None (``strict``: the error) when there is none now."""
        try:
            peer = keys.recipient_keys(office, now_ms)
            if peer is None or peer.office_id != office:
                raise errors.RecipientKeyInvalid(
                    f"cannot grant feed {feed} to {office}: no current keys in the directory"
                )
            problem = peer.problem_at(now_ms)
            if problem is not None:
                raise errors.RecipientKeyInvalid(f"cannot grant feed {feed} to {office}: {problem}")
            return peer
        except (errors.DirectoryError, errors.RecipientKeyInvalid):
            if strict:
                raise
            return None

    def check_addable(self, feed: str, office: str, keys: RecipientKeys, *, now_ms: int) -> None:
        """Raise what adding ``office`` to ``feed`` now would raise (outside the feed's
        scope, no usable keys in the directory), without starting an epoch: a request for
        several offices is applied for those that pass."""
        _check_in_scope(feed, self._owned(feed), office)
        self._peer(keys, office, now_ms, feed, strict=True)

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

    def writers(self, feed: str) -> tuple[str, ...]:
        """The members that may post in the current epoch (the owner always may)."""
        return self._owned(feed).current.record.writers

    def ungranted(self, feed: str) -> tuple[str, ...]:
        """Members of the current epoch that have no grant of it yet (no usable inbox key
        when it was issued): grant them with ``regrant(offices=...)`` when one appears."""
        return tuple(sorted(self._owned(feed).ungranted))

    def scope(self, feed: str) -> tuple[str, ...] | None:
        return self._owned(feed).scope

    def epoch_keys(self) -> dict[tuple[str, int], bytes]:
        """Every epoch key not yet erased, of every owned feed, for the centre's own node
        (``feed_keys``)."""
        return {(f, e.record.epoch): e.key for f, o in self._feeds.items() for e in o.epochs if e.key is not None}

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
        """The state (every epoch record, and the keys not erased), encrypted under a key
        derived from the centre's current encryption secret. Write it with
        ``bus.keystore.write_private_file``."""
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

        outer = codec.unpack(data, "feed owner state", lambda _, message: damaged(message))
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
        feeds = codec.unpack(plain, "decrypted state", lambda _, message: damaged(message))
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
            last = n == len(epochs)
            if (
                type(pair) is not list
                or len(pair) != 2
                or type(pair[0]) is not bytes
                or not (_is_bytes(pair[1], KEY_BYTES) or (pair[1] is None and not last))
            ):
                raise damaged(f"feed {feed} epoch {n}: not [record, key] (the last epoch's key is never erased)")
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
                or (pair[1] is not None and r.key_check != key_check(feed, n, pair[1]))
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


@dataclass(slots=True)
class _Held:
    """A verified item and its witness time (the earliest seen, FEEDS.md 7.1 R1)."""

    signed: SignedFeedItem
    witnessed_at: int

    @property
    def record(self) -> EpochRecord:
        assert isinstance(self.signed.item, EpochRecord)
        return self.signed.item

    @property
    def grant(self) -> Grant:
        assert isinstance(self.signed.item, Grant)
        return self.signed.item


def _check_in_scope(feed: str, owned: _Owned, office: str) -> None:
    if owned.scope is not None and office[:2] not in owned.scope:
        raise errors.ValidationError("members", f"{office} is outside the scope of {feed} ({', '.join(owned.scope)})")


def _subject(i: EpochRecord | Grant) -> str:
    return f"the {'epoch record' if isinstance(i, EpochRecord) else 'grant'} of feed {i.feed} epoch {i.epoch}"


class FeedKeyring:
    """One office's view of the feeds: verified epoch records (a chain per feed) and the
    epoch keys granted to it, in ``feed_keys`` (pass the node's dict: ``BusNode.feed_keys``).

    Feed it with ``apply(bytes, witnessed_at=W)`` in any order: a grant before its record,
    a record before its predecessor, an item whose signer the directory does not know yet
    are verified as far as possible and held (``waiting``), with their witness time, until
    what they need arrives; call ``retry_held()`` after the directory changes and
    ``recheck()`` after it takes in a revocation. ``owners`` optionally pins which centre
    owns which feed name; otherwise the owner of a feed's first record held owns it.

    ``inbox_keys`` maps key id to the office's inbox key pairs; it is read live (pass the
    inbox ring's own dict), so a key added or erased there is seen here at once.

    The feed's rules for bulletins are questions to it: ``check_post`` (a member receiving),
    ``post_epoch`` (a sender choosing the epoch). Epoch keys are erased by
    ``erase_expired(now_ms)``; ``inbox_kids_in_use(now_ms)`` tells the inbox ring which
    inbox secrets it must keep for the grants still in use.
    """

    def __init__(
        self,
        office_id: str,
        inbox_keys: Mapping[bytes, BoxKeyPair],
        resolver: CentreKeys,
        *,
        feed_keys: dict[tuple[str, int], bytes] | None = None,
        owners: Mapping[str, str] | None = None,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.office_id = office_id
        self.inbox_keys = inbox_keys
        self.resolver = resolver
        #: (feed, epoch) -> epoch key; shared with the node's Opener when passed in.
        self.feed_keys = feed_keys if feed_keys is not None else {}
        self.owners = dict(owners or {})
        self.max_waiting = max_waiting
        self._records: dict[str, dict[int, _Held]] = {}  # feed -> epoch -> record, always 1..n
        self._grants: dict[tuple[str, int], _Held] = {}  # the grant each held key came from
        self._waiting_records: dict[tuple[str, int], _Held] = {}  # verified, predecessor missing
        self._waiting_grants: dict[tuple[str, int], dict[bytes, _Held]] = {}  # verified, record missing
        self._unknown_signer: dict[bytes, _Held] = {}  # digest -> item; signer not in the directory yet
        self._erased: set[tuple[str, int]] = set()  # keys erased (7.3): never taken again
        self._now = 0  # the latest now_ms erase_expired was given
        self._listeners: list[Callable[[FeedChange], None]] = []
        #: refused items by reason, as the node's metrics report them
        self.rejected: Counter[str] = Counter()

    @classmethod
    def for_identity(
        cls,
        identity: Identity,
        resolver: CentreKeys,
        *,
        inbox_keys: Mapping[bytes, BoxKeyPair] | None = None,
        **kwargs: Any,
    ) -> FeedKeyring:
        """The keyring of ``identity``'s office. ``inbox_keys``: the inbox ring's live dict;
        without it, the identity's own encryption keys (what the directory hands out as the
        office's key to seal to until inbox keys are published)."""
        keys = inbox_keys if inbox_keys is not None else {k.kid: k for k in identity.box_keys}
        return cls(identity.office_id, keys, resolver, **kwargs)

    # -- feeding ---------------------------------------------------------------------

    def apply(self, data: bytes, *, witnessed_at: int) -> list[FeedChange]:
        """Verify and take in one signed item, stored (witnessed) at ``witnessed_at``
        (TRUST.md 2.1); returns what changed (empty when the item is already held or is a
        grant for another member). Raises ``FeedError`` (and counts its reason) when the
        item itself is refused; items it released that fail are returned as ``refused``."""
        _check_time("witnessed_at", witnessed_at)
        try:
            changes = self._take(_Held(decode_item(data), witnessed_at))
        except errors.FeedError as exc:
            self.rejected[exc.reason] += 1
            raise
        self._notify(changes)
        return changes

    def retry_held(self) -> list[FeedChange]:
        """Try again the items whose signer the directory did not know (call after it changed)."""
        held, self._unknown_signer = self._unknown_signer, {}
        changes: list[FeedChange] = []
        for item in held.values():
            try:
                changes += self._take(item)
            except errors.FeedError as exc:
                changes.append(self._refused(item.signed, exc))
        self._notify(changes)
        return [c for c in changes if c.status != "waiting"]

    def recheck(self) -> list[FeedChange]:
        """Judge again, with each item's kept witness time, every held record and grant:
        after the directory took in a revocation of a centre key, what that key signed and
        the server stored after the revocation (plus grace) is dropped (FEEDS.md 7.1). A
        refused record is dropped with every later record of its feed, and the keys and
        grants of the dropped epochs; a refused grant drops its key."""
        changes: list[FeedChange] = []
        for feed, held in sorted(self._records.items()):
            for epoch in sorted(held):
                problem = self._time_problem(held[epoch])
                if problem is None:
                    continue
                # The chain is cut here: what follows a dropped record follows nothing held.
                for cut in sorted(e for e in held if e >= epoch):
                    changes.append(self._drop(held.pop(cut), problem))
                    self._drop_key((feed, cut))
                break
            if not held:
                del self._records[feed]
        for slot, grant in sorted(self._grants.items()):
            problem = self._time_problem(grant)
            if problem is not None:
                changes.append(self._drop(grant, problem))
                self._drop_key(slot)
        for slot, record in list(self._waiting_records.items()):
            problem = self._time_problem(record)
            if problem is not None:
                changes.append(self._drop(self._waiting_records.pop(slot), problem))
        for pool in self._waiting_grants.values():
            for payload, grant in list(pool.items()):
                problem = self._time_problem(grant)
                if problem is not None:
                    changes.append(self._drop(pool.pop(payload), problem))
        self._notify(changes)
        return changes

    def erase_expired(self, now_ms: int) -> list[FeedChange]:
        """Erase every epoch key kept ``EPOCH_KEY_KEPT_MS`` past the witness time of the next
        epoch's record (FEEDS.md 7.3), with its grant; a grant of an erased epoch is not
        taken again. Returns the ``erased`` changes. Call it at start and periodically."""
        _check_time("now_ms", now_ms)
        self._now = max(self._now, now_ms)
        changes = []
        for slot in sorted(self.feed_keys):
            if self._expired(slot, self._now):
                del self.feed_keys[slot]
                self._grants.pop(slot, None)
                self._erased.add(slot)
                changes.append(FeedChange("erased", slot[0], slot[1], self.record(*slot)))
        self._notify(changes)
        return changes

    def add_listener(self, callback: Callable[[FeedChange], None]) -> None:
        """Call ``callback(change)`` after every ``epoch``, ``key``, ``dropped`` and
        ``erased`` change. If a listener raises, the change still stands, the other
        listeners still run, and the call that made the change re-raises it."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[FeedChange], None]) -> None:
        self._listeners.remove(callback)

    def _notify(self, changes: list[FeedChange]) -> None:
        failures = []
        for change in changes:
            if change.status not in ("epoch", "key", "dropped", "erased"):
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

    def _drop(self, held: _Held, exc: errors.FeedError) -> FeedChange:
        self.rejected[exc.reason] += 1
        i = held.signed.item
        return FeedChange("dropped", i.feed, i.epoch, i, exc)

    def _drop_key(self, slot: tuple[str, int]) -> None:
        self.feed_keys.pop(slot, None)
        self._grants.pop(slot, None)

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

    def _take(self, held: _Held) -> list[FeedChange]:
        item = held.signed.item
        if isinstance(item, Grant) and item.member != self.office_id:
            return []  # another member's: it cannot be unwrapped here, so it is not checked
        if not self._verify(held):
            digest = hashlib.blake2b(held.signed.raw, digest_size=16).digest()
            earlier = self._unknown_signer.get(digest)
            if earlier is not None:
                earlier.witnessed_at = min(earlier.witnessed_at, held.witnessed_at)
                return []
            self._room(held.signed)
            self._unknown_signer[digest] = held
            return [FeedChange("waiting", item.feed, item.epoch, item)]
        if isinstance(item, EpochRecord):
            return self._take_record(held, item)
        return self._take_grant(held, item)

    def _verify(self, held: _Held) -> bool:
        """Checks 7-12 of FEEDS.md 7.1; False when the signer is not known yet."""
        signed = held.signed
        i = signed.item
        subject = _subject(i)
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
        if not codec.verifies(signed.signature, signed.label, signed.payload, keys.sign_public):
            raise _reject(
                "bad_signature", f"the signature on {subject} does not verify for {i.owner}: altered or forged"
            )
        problem = self._judge_time(held, keys)
        if problem is not None:
            raise problem
        expected = self.owners.get(i.feed)
        if expected is None:
            first = self._records.get(i.feed, {}).get(1)
            expected = first.record.owner if first else None
        if expected is not None and i.owner != expected:
            raise _reject("not_owner", f"{subject} is signed by {i.owner}, but feed {i.feed} belongs to {expected}")
        return True

    def _judge_time(self, held: _Held, keys: PeerKeys) -> errors.FeedError | None:
        """Checks 10 (T1) and 11 (T3, T4) with the item's witness time."""
        i = held.signed.item
        subject = _subject(i)
        t, w = held.signed.signed_at, held.witnessed_at
        problem = timing.signed_time_problem(t, w)
        if problem is not None:
            return _reject("from_future", f"{subject}: {problem.message}")
        problem = timing.key_problem(keys, t, w, who=f"{i.owner} (key {i.owner_sign_kid.hex()})")
        if problem is not None:
            return _reject("signer_key_invalid", f"{subject} is not accepted: {problem.message}")
        return None

    def _time_problem(self, held: _Held) -> errors.FeedError | None:
        """Check 11 again for a held item (a revocation may have arrived since)."""
        i = held.signed.item
        keys = self.resolver.sender_keys(i.owner, i.owner_sign_kid)
        return None if keys is None else self._judge_time(held, keys)

    def _take_record(self, held: _Held, r: EpochRecord) -> list[FeedChange]:
        slot = (r.feed, r.epoch)
        existing = self._records.get(r.feed, {}).get(r.epoch)
        if existing is not None:
            if existing.signed.payload == held.signed.payload:
                existing.witnessed_at = min(existing.witnessed_at, held.witnessed_at)
                return []
            raise self._fork(r, "a second, different record for an epoch already held; the first is kept")
        waiting = self._waiting_records.get(slot)
        if waiting is not None and waiting.signed.payload != held.signed.payload:
            raise self._fork(r, "a second, different record for an epoch already waiting; the first is kept")
        if waiting is not None:
            waiting.witnessed_at = min(waiting.witnessed_at, held.witnessed_at)
            held = waiting
        if r.epoch > 1 and (r.epoch - 1) not in self._records.get(r.feed, {}):
            if waiting is not None:
                return []
            self._room(held.signed)
            self._waiting_records[slot] = held
            return [FeedChange("waiting", r.feed, r.epoch, r)]
        self._waiting_records.pop(slot, None)
        # Attach, then every waiting successor in turn (a loop: a long chain arriving
        # newest first must not recurse thousands deep).
        changes: list[FeedChange] = []
        current: _Held | None = held
        while current is not None:
            record = current.record
            try:
                changes += self._attach_record(current, record)
            except errors.FeedError as exc:
                if current is held:
                    raise
                changes.append(self._refused(current.signed, exc))
                break
            current = self._waiting_records.pop((record.feed, record.epoch + 1), None)
        return changes

    def _fork(self, r: EpochRecord, problem: str) -> errors.FeedError:
        return _reject(
            "feed_fork",
            f"feed {r.feed} epoch {r.epoch} from {r.owner}: {problem}. The feed's history has forked: "
            f"report it to {r.owner}'s operators (its signing key may be misused)",
        )

    def _attach_record(self, held: _Held, r: EpochRecord) -> list[FeedChange]:
        chain = self._records.setdefault(r.feed, {})
        if r.epoch > 1:
            previous = chain[r.epoch - 1]
            if r.previous != previous.signed.hash:
                raise self._fork(r, f"it does not follow the record of epoch {r.epoch - 1} held here")
            if r.owner != previous.record.owner:
                raise _reject(
                    "not_owner",
                    f"feed {r.feed} epoch {r.epoch} is signed by {r.owner}; the feed belongs to {previous.record.owner}",
                )
        chain[r.epoch] = held
        changes = [FeedChange("epoch", r.feed, r.epoch, r)]
        for grant in self._waiting_grants.pop((r.feed, r.epoch), {}).values():
            try:
                changes += self._attach_grant(grant, grant.grant)
            except errors.FeedError as exc:
                changes.append(self._refused(grant.signed, exc))
        return changes

    def _take_grant(self, held: _Held, g: Grant) -> list[FeedChange]:
        if g.member_inbox_kid not in self.inbox_keys:
            raise _reject(
                "unknown_inbox_key",
                f"the grant of feed {g.feed} epoch {g.epoch} is for inbox key {g.member_inbox_kid.hex()}, which "
                f"{self.office_id} does not hold (erased, or a new one not loaded yet)",
            )
        if g.epoch not in self._records.get(g.feed, {}):
            pool = self._waiting_grants.setdefault((g.feed, g.epoch), {})
            if held.signed.payload in pool:
                return []
            self._room(held.signed)
            pool[held.signed.payload] = held
            return [FeedChange("waiting", g.feed, g.epoch, g)]
        return self._attach_grant(held, g)

    def _attach_grant(self, held: _Held, g: Grant) -> list[FeedChange]:
        record_item = self._records[g.feed][g.epoch]
        r = record_item.record
        subject = f"the grant of feed {g.feed} epoch {g.epoch}"
        if g.record_hash != record_item.signed.hash:
            raise self._fork(r, "a grant for another record of this epoch than the one held here")
        if g.owner != r.owner:
            raise _reject("not_owner", f"{subject} is signed by {g.owner}; the epoch's record by {r.owner}")
        if self.office_id not in r.members:
            raise _reject("not_member", f"{subject} is for {self.office_id}, which the epoch's record does not list")
        slot = (g.feed, g.epoch)
        if slot in self._erased or self._expired(slot, self._now):
            return []  # kept long enough already (7.3): never taken again
        inbox = self.inbox_keys.get(g.member_inbox_kid)
        if inbox is None:  # erased by the inbox ring while the grant waited for its record
            raise _reject("unknown_inbox_key", f"{subject} is for an inbox key {self.office_id} no longer holds")
        epoch_key = unwrap_grant(g, inbox)
        if key_check(g.feed, g.epoch, epoch_key) != r.key_check:
            raise _reject(
                "key_mismatch", f"{subject} holds a key other than the one its record commits to; the key is not used"
            )
        self._grants.setdefault(slot, held)
        if self.feed_keys.get(slot) == epoch_key:
            return []
        self.feed_keys[slot] = epoch_key
        return [FeedChange("key", g.feed, g.epoch, g)]

    def _expired(self, slot: tuple[str, int], now_ms: int) -> bool:
        """Whether the key of ``slot`` has been kept long enough at ``now_ms`` (FEEDS.md 7.3)."""
        successor = self._records.get(slot[0], {}).get(slot[1] + 1)
        return successor is not None and now_ms >= successor.witnessed_at + timing.EPOCH_KEY_KEPT_MS

    # -- the feed's rules for bulletins (FEEDS.md 6.2 and 7.2) -----------------------

    def check_post(self, feed: str, epoch: int, sender: str, witnessed_at: int) -> None:
        """Whether a bulletin opened through the feed entry ``(feed, epoch)``, signed by
        ``sender`` and stored at ``witnessed_at``, stands (FEEDS.md 7.2). Raises
        ``FeedKeyPending`` (E1: the epoch's record is not held yet; retryable),
        ``StaleEpoch`` (E2: the next epoch's record was stored ``EPOCH_GRACE_MS`` or more
        before the bulletin) or ``NotAWriter`` (E3: the sender is neither the epoch's owner
        nor one of its writers)."""
        chain = self._records.get(feed, {})
        held = chain.get(epoch)
        if held is None:
            raise errors.FeedKeyPending(
                f"a bulletin on feed {feed} epoch {epoch} from {sender}: the epoch's record has not arrived here yet"
            )
        successor = chain.get(epoch + 1)
        if successor is not None and witnessed_at >= successor.witnessed_at + timing.EPOCH_GRACE_MS:
            raise errors.StaleEpoch(
                f"{sender} sealed this bulletin under feed {feed} epoch {epoch}, but it was stored at "
                f"{timing.iso(witnessed_at)}, after epoch {epoch + 1} began ({timing.iso(successor.witnessed_at)}, "
                f"plus {timing.EPOCH_GRACE_MS // timing.MINUTE_MS} minutes' grace): a removed member writing under its "
                "last key, or a sender that did not wait for the new epoch"
            )
        record = held.record
        if not record.may_post(sender):
            raise errors.NotAWriter(
                f"{sender} may not post to feed {feed} in epoch {epoch}: it is neither the owner ({record.owner}) nor "
                f"one of its writers ({', '.join(record.writers) or 'none'})"
            )

    def post_epoch(self, feed: str, office: str) -> int:
        """The epoch under which ``office`` (this node) seals a bulletin to ``feed`` now: the
        newest epoch whose record it holds (FEEDS.md 6.2), whether or not its key has arrived.
        When ``(feed, epoch)`` is not in ``feed_keys`` yet, the sender **waits** (the grant is
        on its way): it never seals under an older epoch, which a removed member may still
        read. Raises ``FeedPostForbidden`` when ``office`` may not post in that epoch (never
        a writer, post rights withdrawn, removed, or no record of the feed here)."""
        epoch = self.current_epoch(feed)
        if epoch is None:
            raise errors.FeedPostForbidden(
                f"{office} holds no record of feed {feed}: it is not a member, or the feed does not exist"
            )
        record = self._records[feed][epoch].record
        if not record.may_post(office):
            why = (
                "it is a member without post rights"
                if office in record.members
                else "it is not a member (removed, or never added)"
            )
            raise errors.FeedPostForbidden(
                f"{office} may not post to feed {feed} (epoch {epoch}): {why}; ask {record.owner} for post rights"
            )
        return epoch

    def inbox_kids_in_use(self, now_ms: int) -> set[bytes]:
        """The ids of the inbox keys still needed by a grant of an epoch in use (FEEDS.md
        7.3): a held grant whose key is not erased and would not be at ``now_ms``, or a grant
        waiting for its record or signer. The inbox ring keeps these secrets."""
        kids = {h.grant.member_inbox_kid for slot, h in self._grants.items() if not self._expired(slot, now_ms)}
        kids |= {h.grant.member_inbox_kid for pool in self._waiting_grants.values() for h in pool.values()}
        kids |= {
            h.signed.item.member_inbox_kid
            for h in self._unknown_signer.values()
            if isinstance(h.signed.item, Grant) and h.signed.item.member == self.office_id
        }
        return kids

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
        return None if found is None else found.record

    def witnessed_at(self, feed: str, epoch: int) -> int | None:
        """When the record of ``(feed, epoch)`` held here was stored (its witness time)."""
        found = self._records.get(feed, {}).get(epoch)
        return None if found is None else found.witnessed_at

    def members(self, feed: str, epoch: int | None = None) -> tuple[str, ...]:
        r = self.record(feed, epoch)
        return () if r is None else r.members

    def writers(self, feed: str, epoch: int | None = None) -> tuple[str, ...]:
        r = self.record(feed, epoch)
        return () if r is None else r.writers

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
        the epoch's record has not arrived, or it names this office and the grant has not
        (and the key was not erased). A bulletin of such an epoch is worth keeping for a
        retry when a key arrives; one of an epoch whose record does not name this office
        will never open here."""
        if (feed, epoch) in self.feed_keys or (feed, epoch) in self._erased:
            return False
        r = self.record(feed, epoch)
        return r is None or self.office_id in r.members

    def epochs_with_keys(self, feed: str) -> list[int]:
        return sorted(e for f, e in self.feed_keys if f == feed)

    @property
    def waiting(self) -> int:
        """Items held back until their record, predecessor or signer arrives."""
        return self._waiting_count()

    def signed_items(self) -> list[tuple[bytes, int]]:
        """What a local copy stores, each item with its witness time: every held record,
        feed by feed in epoch order, then the grants of the keys held (so reloading never
        has to wait for anything)."""
        records = [
            (h.signed.raw, h.witnessed_at) for f in sorted(self._records) for _, h in sorted(self._records[f].items())
        ]
        grants = [(h.signed.raw, h.witnessed_at) for slot, h in sorted(self._grants.items()) if slot in self.feed_keys]
        return records + grants
