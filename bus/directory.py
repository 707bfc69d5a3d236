"""The signed directory: who holds which key, as the centres vouch for it. Pure; no I/O.

The one rule: **a key is trusted only through a chain of signatures that ends at a
centre key pinned in this node's configuration, and a centre vouches only for offices
of its own country.** The transport (a NATS KV bucket) is never trusted; anything that
does not chain is refused with a ``DirectoryError`` whose ``reason`` names the rule.

Three signed things travel (``schemas/DIRECTORY.md`` specifies the bytes):

* a **record** binds an office's Ed25519 and X25519 public keys to its id, country,
  role, regions and counterparts for a validity window, with a per-office sequence
  number. A centre's own record is self-signed and trusted only if its key is pinned;
  an office's record is signed by a pinned centre of the same country.
* a **revocation** names a key id of an office and the time from which it is void,
  signed by a pinned centre of that office's country.
* an **enrolment request**, from an office to its centre, proving the office holds the
  new private keys (and, after a rotation, endorsed by its previous signing key).

``Directory`` holds the verified state and answers the envelope's questions:
``sender_keys`` (any key an office has held, with its effective window and revocation
time, so old bulletins keep verifying) and ``recipient_keys`` (the current key only).
Time is passed in (``now_ms``); nothing here reads a clock or a file.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import msgpack
import nacl.bindings as nb
import nacl.exceptions

from bus import errors
from bus.bulletin import is_feed_name, is_office_id
from bus.ids import KEY_ID_BYTES, key_id
from bus.keys import Identity, PeerKeys, SigningKeyPair

FORMAT_VERSION = 1
KIND_RECORD = 1
KIND_REVOCATION = 2

RECORD_LABEL = b"blo-bus/v1 directory record\x00"
REVOCATION_LABEL = b"blo-bus/v1 directory revocation\x00"
REQUEST_LABEL = b"blo-bus/v1 enrolment request\x00"
ENDORSEMENT_LABEL = b"blo-bus/v1 enrolment endorsement\x00"
REQUEST_FORMAT = "blo-enrolment-request/v1"

ROLES = ("office", "centre")
#: Bounds that keep a hostile item small to decode; real records are ~400 bytes.
MAX_ITEM_BYTES = 8 * 1024
MAX_NAME_CHARS = 200
MAX_REASON_CHARS = 500
MAX_REGIONS = 32
MAX_COUNTERPARTS = 64
MAX_TIME_MS = 1 << 48
MAX_SEQUENCE = (1 << 63) - 1

SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32

#: Every ``reason`` a refused item can carry (metrics labels; see schemas/DIRECTORY.md).
REJECT_REASONS = (
    "malformed",
    "unsupported_version",
    "key_id_mismatch",
    "bad_signature",
    "untrusted_signer",
    "unpinned_centre",
    "cross_country",
    "role_conflict",
    "signer_revoked",
    "stale_sequence",
    "sequence_conflict",
)

_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def _reject(reason: str, message: str) -> errors.DirectoryError:
    return errors.DirectoryError(message, reason)


# -- the values --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DirectoryRecord:
    """One office's (or centre's) keys and facts, as its centre signed them."""

    office_id: str
    name: str
    country: str
    role: str  # "office" or "centre"
    regions: tuple[str, ...]
    counterparts: tuple[str, ...]
    sign_public: bytes
    sign_kid: bytes
    box_public: bytes
    box_kid: bytes
    valid_from: int
    valid_until: int | None
    sequence: int
    issued_at: int
    signer: str
    signer_kid: bytes

    def fields(self) -> list[Any]:
        return [
            self.office_id,
            self.name,
            self.country,
            self.role,
            list(self.regions),
            list(self.counterparts),
            self.sign_public,
            self.sign_kid,
            self.box_public,
            self.box_kid,
            self.valid_from,
            self.valid_until,
            self.sequence,
            self.issued_at,
            self.signer,
            self.signer_kid,
        ]

    def peer_keys(self) -> PeerKeys:
        """The record's keys with its own window (``Directory`` narrows it after rotation)."""
        return PeerKeys(
            office_id=self.office_id,
            sign_public=self.sign_public,
            sign_kid=self.sign_kid,
            box_public=self.box_public,
            box_kid=self.box_kid,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
        )


@dataclass(frozen=True, slots=True)
class Revocation:
    """A key of ``office_id`` (its signing or its encryption key id) is void from ``revoked_at``."""

    office_id: str
    kid: bytes
    revoked_at: int
    reason: str
    signer: str
    signer_kid: bytes

    def fields(self) -> list[Any]:
        return [self.office_id, self.kid, self.revoked_at, self.reason, self.signer, self.signer_kid]


@dataclass(frozen=True, slots=True)
class SignedItem:
    """A decoded record or revocation with the exact bytes that were signed and travelled.
    Decoding checks shape only; ``Directory.apply`` decides trust."""

    item: DirectoryRecord | Revocation
    payload: bytes
    signature: bytes
    raw: bytes

    @property
    def label(self) -> bytes:
        return RECORD_LABEL if isinstance(self.item, DirectoryRecord) else REVOCATION_LABEL


@dataclass(frozen=True, slots=True)
class Change:
    """What one accepted ``apply`` changed; handed to listeners.

    ``status``: ``added`` (first record of an office), ``updated`` (a new current
    record), ``history`` (an older key arriving late), ``revoked`` (a revocation).
    """

    status: str
    office_id: str
    kid: bytes
    item: DirectoryRecord | Revocation


# -- encoding and decoding ---------------------------------------------------------------


def _sign(label: bytes, payload: bytes, signing: SigningKeyPair) -> bytes:
    return signing.sign(label + payload)


def _wrap(kind: int, payload: bytes, signature: bytes) -> bytes:
    return _packb([FORMAT_VERSION, kind, payload, signature])


def sign_record(record: DirectoryRecord, signing: SigningKeyPair) -> bytes:
    """The wire bytes of ``record`` signed by ``signing`` (which must be ``record.signer_kid``)."""
    if signing.kid != record.signer_kid:
        raise _reject("key_id_mismatch", "the signing key is not the key the record names as its signer")
    check_record(record)
    payload = _packb(record.fields())
    return _wrap(KIND_RECORD, payload, _sign(RECORD_LABEL, payload, signing))


def sign_revocation(revocation: Revocation, signing: SigningKeyPair) -> bytes:
    """The wire bytes of ``revocation`` signed by ``signing``."""
    if signing.kid != revocation.signer_kid:
        raise _reject("key_id_mismatch", "the signing key is not the key the revocation names as its signer")
    check_revocation(revocation)
    payload = _packb(revocation.fields())
    return _wrap(KIND_REVOCATION, payload, _sign(REVOCATION_LABEL, payload, signing))


def _unpack(data: bytes, what: str) -> Any:
    # msgpack raises a wide, partly undocumented set (ValueError kin, TypeError,
    # UnicodeDecodeError, RecursionError); the call is the whole try-body.
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:
        raise _reject("malformed", f"the {what} is not valid msgpack ({type(exc).__name__})") from exc


def _is_int(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value < high


def _is_bytes(value: Any, size: int) -> bool:
    return type(value) is bytes and len(value) == size


def _is_text(value: Any, limit: int) -> bool:
    return type(value) is str and 0 < len(value) <= limit and value.isprintable() and value.strip() == value


def _bad(what: str, problem: str) -> errors.DirectoryError:
    return _reject("malformed", f"directory {what}: {problem}")


def check_record(r: DirectoryRecord) -> None:
    """Raise ``DirectoryError`` (malformed / key_id_mismatch) unless every field is well-formed."""
    if not is_office_id(r.office_id):
        raise _bad("record", "office id must look like TH-MUK")
    if not _is_text(r.name, MAX_NAME_CHARS):
        raise _bad("record", f"name must be 1-{MAX_NAME_CHARS} printable characters")
    if r.country != r.office_id[:2]:
        raise _bad("record", f"country {r.country!r} must be the first two letters of {r.office_id}")
    if r.role not in ROLES:
        raise _bad("record", "role must be office or centre")
    if type(r.regions) is not tuple or len(r.regions) > MAX_REGIONS or not all(map(is_feed_name, r.regions)):
        raise _bad("record", f"regions must be up to {MAX_REGIONS} names of lowercase letters, digits, hyphens")
    if (
        type(r.counterparts) is not tuple
        or len(r.counterparts) > MAX_COUNTERPARTS
        or not all(map(is_office_id, r.counterparts))
    ):
        raise _bad("record", f"counterparts must be up to {MAX_COUNTERPARTS} office ids")
    for name, key in (("signing", r.sign_public), ("encryption", r.box_public)):
        if not _is_bytes(key, PUBLIC_KEY_BYTES):
            raise _bad("record", f"the {name} public key must be {PUBLIC_KEY_BYTES} bytes")
    for name, kid in (
        ("signing key id", r.sign_kid),
        ("encryption key id", r.box_kid),
        ("signer key id", r.signer_kid),
    ):
        if not _is_bytes(kid, KEY_ID_BYTES):
            raise _bad("record", f"the {name} must be {KEY_ID_BYTES} bytes")
    if key_id("sign", r.sign_public) != r.sign_kid or key_id("box", r.box_public) != r.box_kid:
        raise _reject("key_id_mismatch", f"the record for {r.office_id} states key ids that do not match its keys")
    if not _is_int(r.valid_from, 0, MAX_TIME_MS):
        raise _bad("record", "valid-from must be a time in ms")
    if r.valid_until is not None and not (_is_int(r.valid_until, 0, MAX_TIME_MS) and r.valid_until > r.valid_from):
        raise _bad("record", "valid-until must be empty or a time in ms after valid-from")
    if not _is_int(r.sequence, 1, MAX_SEQUENCE):
        raise _bad("record", "sequence must be a positive integer")
    if not _is_int(r.issued_at, 0, MAX_TIME_MS):
        raise _bad("record", "issued-at must be a time in ms")
    if not is_office_id(r.signer):
        raise _bad("record", "signer must be a centre id such as TH-TCCC")


def check_revocation(v: Revocation) -> None:
    """Raise ``DirectoryError`` (malformed) unless every field is well-formed."""
    if not is_office_id(v.office_id):
        raise _bad("revocation", "office id must look like TH-MUK")
    if not _is_bytes(v.kid, KEY_ID_BYTES) or not _is_bytes(v.signer_kid, KEY_ID_BYTES):
        raise _bad("revocation", f"key ids must be {KEY_ID_BYTES} bytes")
    if not _is_int(v.revoked_at, 0, MAX_TIME_MS):
        raise _bad("revocation", "revoked-at must be a time in ms")
    if not _is_text(v.reason, MAX_REASON_CHARS):
        raise _bad("revocation", f"reason must be 1-{MAX_REASON_CHARS} printable characters")
    if not is_office_id(v.signer):
        raise _bad("revocation", "signer must be a centre id such as TH-TCCC")


def _record_from(fields: Any) -> DirectoryRecord:
    if type(fields) is not list or len(fields) != 16:
        raise _bad("record", "must be a msgpack array of 16 fields")
    regions, counterparts = fields[4], fields[5]
    if type(regions) is not list or type(counterparts) is not list:
        raise _bad("record", "regions and counterparts must be arrays")
    record = DirectoryRecord(*fields[:4], tuple(regions), tuple(counterparts), *fields[6:])  # type: ignore[arg-type]
    check_record(record)
    return record


def _revocation_from(fields: Any) -> Revocation:
    if type(fields) is not list or len(fields) != 6:
        raise _bad("revocation", "must be a msgpack array of 6 fields")
    revocation = Revocation(*fields)
    check_revocation(revocation)
    return revocation


def decode_item(data: bytes) -> SignedItem:
    """Parse a signed record or revocation. Checks shape, not trust; only ``DirectoryError``."""
    if type(data) is not bytes:
        raise _bad("item", "must be bytes")
    if len(data) > MAX_ITEM_BYTES:
        raise _bad("item", f"is {len(data)} bytes; the limit is {MAX_ITEM_BYTES}")
    outer = _unpack(data, "directory item")
    if type(outer) is not list or len(outer) != 4:
        raise _bad("item", "must be a msgpack array [version, kind, payload, signature]")
    version, kind, payload, signature = outer
    if type(version) is not int:
        raise _bad("item", "the version must be an integer")
    if version != FORMAT_VERSION:
        raise _reject(
            "unsupported_version", f"directory format {version} is not supported (this node speaks {FORMAT_VERSION})"
        )
    if type(payload) is not bytes or not _is_bytes(signature, SIGNATURE_BYTES):
        raise _bad("item", "payload must be bytes and the signature 64 bytes")
    if kind == KIND_RECORD:
        item: DirectoryRecord | Revocation = _record_from(_unpack(payload, "record payload"))
    elif kind == KIND_REVOCATION:
        item = _revocation_from(_unpack(payload, "revocation payload"))
    else:
        raise _bad("item", f"unknown kind {kind!r} (1 = record, 2 = revocation)")
    return SignedItem(item=item, payload=payload, signature=signature, raw=data)


def _verify(signed: SignedItem, public: bytes, who: str) -> None:
    try:
        nb.crypto_sign_open(signed.signature + signed.label + signed.payload, public)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError) as exc:
        raise _reject("bad_signature", f"the signature does not verify for {who}: altered or forged") from exc


# -- trust anchors -----------------------------------------------------------------------


def anchors_from_hex(pins: Mapping[str, str | Iterable[str]]) -> dict[str, tuple[bytes, ...]]:
    """``{"TH-TCCC": "<64 hex digits>"}`` (as in node.toml [trust.anchors]) -> keys as bytes."""
    out: dict[str, tuple[bytes, ...]] = {}
    for centre, keys in pins.items():
        texts = [keys] if isinstance(keys, str) else list(keys)
        try:
            raw = tuple(bytes.fromhex(k) for k in texts)
        except (ValueError, TypeError):
            raise errors.ConfigError(
                f"trust.anchors.{centre}: expected a signing public key as 64 hex digits"
            ) from None
        if not is_office_id(centre) or not all(len(k) == PUBLIC_KEY_BYTES for k in raw):
            raise errors.ConfigError(f"trust.anchors.{centre}: expected a centre id and a 32-byte key in hex")
        out[centre] = raw
    return out


# -- the verified state ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Held:
    signed: SignedItem

    @property
    def record(self) -> DirectoryRecord:
        assert isinstance(self.signed.item, DirectoryRecord)
        return self.signed.item


class Directory:
    """The verified directory: pinned centres, accepted records and revocations.

    Implements ``bus.envelope.KeyResolver``. Feed it with ``apply(bytes)`` in any order
    (a revocation may arrive before the record it names; an old key after its
    successor); the state it reaches does not depend on the order, except that a
    record signed by a centre key after that key's revocation is refused.
    """

    def __init__(self, anchors: Mapping[str, bytes | Iterable[bytes]]) -> None:
        # (centre id, kid) -> public key: pins are by key, the kid is only an index.
        self._anchors: dict[tuple[str, bytes], bytes] = {}
        for centre, keys in anchors.items():
            for key in [keys] if isinstance(keys, bytes) else list(keys):
                if not is_office_id(centre) or not _is_bytes(key, PUBLIC_KEY_BYTES):
                    raise errors.ConfigError(f"trust anchor {centre!r}: expected a centre id and a 32-byte key")
                self._anchors[(centre, key_id("sign", key))] = key
        self._centres = {c for c, _ in self._anchors}
        self._records: dict[str, dict[bytes, _Held]] = {}  # office -> sign kid -> latest record for it
        self._revocations: dict[tuple[str, bytes], SignedItem] = {}  # (office, kid) -> earliest revocation
        self._peers: dict[tuple[str, bytes], PeerKeys] = {}
        self._peer_kids: dict[str, set[bytes]] = {}
        self._current: dict[str, DirectoryRecord] = {}
        self._listeners: list[Callable[[Change], None]] = []
        #: refused items by reason, as the node's metrics report them
        self.rejected: Counter[str] = Counter()

    # -- feeding ---------------------------------------------------------------------

    def apply(self, data: bytes) -> Change | None:
        """Verify and take in one signed item. Returns the change, or None when the item
        is already held (or is a later-dated revocation of a key already revoked).
        Raises ``DirectoryError`` (and counts its reason) when it does not verify."""
        try:
            signed = decode_item(data)
            if isinstance(signed.item, DirectoryRecord):
                change = self._apply_record(signed, signed.item)
            else:
                change = self._apply_revocation(signed, signed.item)
        except errors.DirectoryError as exc:
            self.rejected[exc.reason] += 1
            raise
        if change is not None:
            failures = []
            for listener in list(self._listeners):
                try:
                    listener(change)
                except Exception as exc:  # one broken listener must not starve the others
                    failures.append(exc)
            if failures:
                raise failures[0]
        return change

    def add_listener(self, callback: Callable[[Change], None]) -> None:
        """Call ``callback(change)`` after every accepted change. If a listener raises, the
        change still stands, the other listeners still run, and ``apply`` re-raises it."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[Change], None]) -> None:
        self._listeners.remove(callback)

    def _signer_key(self, signer: str, signer_kid: bytes, subject: str) -> bytes:
        key = self._anchors.get((signer, signer_kid))
        if key is None:
            raise _reject(
                "untrusted_signer",
                f"{subject} is signed by {signer} key {signer_kid.hex()}, which this node does not pin as a centre",
            )
        return key

    def _apply_record(self, signed: SignedItem, r: DirectoryRecord) -> Change | None:
        subject = f"the record for {r.office_id}"
        if r.role == "centre":
            if r.signer != r.office_id or r.signer_kid != r.sign_kid:
                raise _reject("untrusted_signer", f"{subject} claims the centre role but is not self-signed")
            if self._anchors.get((r.office_id, r.sign_kid)) != r.sign_public:
                raise _reject(
                    "unpinned_centre",
                    f"{subject} is a centre record whose key {r.sign_kid.hex()} is not pinned in [trust.anchors]",
                )
            public = r.sign_public
        else:
            if r.office_id in self._centres:
                raise _reject("role_conflict", f"{subject}: {r.office_id} is a pinned centre, not an office")
            if r.signer[:2] != r.country:
                raise _reject(
                    "cross_country", f"{subject} ({r.country}) is signed by {r.signer}; only a {r.country} centre may"
                )
            public = self._signer_key(r.signer, r.signer_kid, subject)
        _verify(signed, public, f"{subject} (signer {r.signer})")
        signer_revocation = self._revocations.get((r.signer, r.signer_kid))
        if signer_revocation is not None and r.issued_at >= _rev(signer_revocation).revoked_at:
            raise _reject("signer_revoked", f"{subject} was issued after the signer's key was revoked")

        held = self._records.setdefault(r.office_id, {})
        same_key = held.get(r.sign_kid)
        if same_key is not None and same_key.signed.raw == signed.raw:
            return None
        for other in held.values():
            if other.record.sequence == r.sequence:
                raise _reject(
                    "sequence_conflict",
                    f"{subject} differs from the held record with the same sequence {r.sequence}; a centre must "
                    "give every new record of an office a higher sequence",
                )
        if same_key is not None and same_key.record.sequence > r.sequence:
            raise _reject(
                "stale_sequence",
                f"{subject} has sequence {r.sequence}; this node holds sequence {same_key.record.sequence} for that key",
            )
        current = self._current.get(r.office_id)
        if current is None:
            status = "added"
        elif r.sequence > current.sequence:
            status = "updated"
        else:
            status = "history"
        held[r.sign_kid] = _Held(signed)
        self._rebuild(r.office_id)
        return Change(status, r.office_id, r.sign_kid, r)

    def _apply_revocation(self, signed: SignedItem, v: Revocation) -> Change | None:
        subject = f"the revocation of {v.office_id} key {v.kid.hex()}"
        if v.signer[:2] != v.office_id[:2]:
            raise _reject("cross_country", f"{subject} is signed by {v.signer}; only a {v.office_id[:2]} centre may")
        _verify(signed, self._signer_key(v.signer, v.signer_kid, subject), f"{subject} (signer {v.signer})")
        earlier = self._revocations.get((v.office_id, v.kid))
        # Revocation only ever tightens: the earliest signed time wins, whatever the order.
        if earlier is not None and _rev(earlier).revoked_at <= v.revoked_at:
            return None
        self._revocations[(v.office_id, v.kid)] = signed
        touched = {v.office_id}
        if (v.office_id, v.kid) in self._anchors:
            # A revoked centre key vouches for nothing issued from its revocation on.
            for office, held in self._records.items():
                for kid, h in list(held.items()):
                    if (
                        h.record.signer_kid == v.kid
                        and h.record.signer == v.office_id
                        and h.record.issued_at >= v.revoked_at
                    ):
                        del held[kid]
                        touched.add(office)
        for office in touched:
            self._rebuild(office)
        return Change("revoked", v.office_id, v.kid, v)

    def _rebuild(self, office: str) -> None:
        """Recompute the PeerKeys of one office: each older key ends where a newer one starts."""
        for kid in self._peer_kids.pop(office, ()):
            del self._peers[(office, kid)]
        records = sorted((h.record for h in self._records.get(office, {}).values()), key=lambda r: r.sequence)
        if not records:
            self._current.pop(office, None)
            return
        successor_start: int | None = None
        for r in reversed(records):
            until = r.valid_until
            if successor_start is not None:
                until = successor_start if until is None else min(until, successor_start)
            revoked = [
                _rev(self._revocations[k]).revoked_at
                for k in ((office, r.sign_kid), (office, r.box_kid))
                if k in self._revocations
            ]
            self._peers[(office, r.sign_kid)] = replace(
                r.peer_keys(), valid_until=until, revoked_at=min(revoked) if revoked else None
            )
            successor_start = r.valid_from if successor_start is None else min(successor_start, r.valid_from)
        self._current[office] = records[-1]
        self._peer_kids[office] = {r.sign_kid for r in records}

    # -- questions -------------------------------------------------------------------

    def sender_keys(self, office_id: str, sign_kid: bytes) -> PeerKeys | None:
        """Any key ``office_id`` has held, with its effective window and revocation time."""
        return self._peers.get((office_id, sign_kid))

    def recipient_keys(self, office_id: str, now_ms: int) -> PeerKeys:
        """The key to seal to now: the office's current record only, never a superseded one."""
        record = self._current.get(office_id)
        if record is None:
            raise errors.DirectoryError(
                f"{office_id} is not in the directory: its centre has not enrolled it, or this node has not "
                "received the record yet",
                "unknown_office",
            )
        keys = self._peers[(office_id, record.sign_kid)]
        problem = keys.problem_at(now_ms)
        if problem is not None:
            raise errors.RecipientKeyInvalid(f"cannot seal to {office_id}: {problem}")
        return keys

    def record(self, office_id: str) -> DirectoryRecord | None:
        """The current record of an office."""
        return self._current.get(office_id)

    def records(self) -> list[DirectoryRecord]:
        """The current record of every office, by office id."""
        return [self._current[o] for o in sorted(self._current)]

    def history(self, office_id: str) -> list[DirectoryRecord]:
        """Every held record of an office, oldest sequence first."""
        return sorted((h.record for h in self._records.get(office_id, {}).values()), key=lambda r: r.sequence)

    def revocations(self) -> list[Revocation]:
        return [_rev(s) for _, s in sorted(self._revocations.items())]

    def revoked_at(self, office_id: str, kid: bytes) -> int | None:
        found = self._revocations.get((office_id, kid))
        return None if found is None else _rev(found).revoked_at

    def find_key(self, kid: bytes) -> DirectoryRecord | None:
        """The held record whose signing or encryption key has this id."""
        for held in self._records.values():
            for h in held.values():
                if kid in (h.record.sign_kid, h.record.box_kid):
                    return h.record
        return None

    def next_sequence(self, office_id: str) -> int:
        """The sequence a centre gives the next record of ``office_id``."""
        return max((h.record.sequence for h in self._records.get(office_id, {}).values()), default=0) + 1

    def signed_items(self) -> list[SignedItem]:
        """Everything held, as signed bytes (records oldest first, then revocations):
        what a local copy stores and what a centre republishes."""
        items = [h.signed for o in sorted(self._records) for h in sorted(self._records[o].values(), key=_seq)]
        return items + [s for _, s in sorted(self._revocations.items())]

    def is_pinned(self, centre_id: str, public: bytes) -> bool:
        return self._anchors.get((centre_id, key_id("sign", public))) == public

    def __len__(self) -> int:
        return len(self._current)


def _rev(signed: SignedItem) -> Revocation:
    assert isinstance(signed.item, Revocation)
    return signed.item


def _seq(h: _Held) -> int:
    return h.record.sequence


# -- enrolment requests ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnrolmentRequest:
    """An office asks its centre to enrol new keys. Verified: the office holds the new
    signing key (self-signature) and, after a rotation, the previous one (endorsement)."""

    office_id: str
    name: str
    country: str
    role: str
    sign_public: bytes
    box_public: bytes
    created_at: int
    previous_sign_public: bytes | None

    @property
    def sign_kid(self) -> bytes:
        return key_id("sign", self.sign_public)

    @property
    def box_kid(self) -> bytes:
        return key_id("box", self.box_public)

    @property
    def previous_sign_kid(self) -> bytes | None:
        return None if self.previous_sign_public is None else key_id("sign", self.previous_sign_public)


def make_request(
    identity: Identity,
    *,
    name: str,
    country: str,
    role: str,
    now_ms: int,
    previous: SigningKeyPair | None = None,
) -> bytes:
    """The enrolment request file (JSON bytes) for ``identity``'s current keys."""
    fields = [
        identity.office_id,
        name,
        country,
        role,
        identity.signing.public,
        identity.box.public,
        now_ms,
        None if previous is None else previous.public,
    ]
    request = _request_from(fields)  # the same checks a centre applies
    payload = _packb(fields)
    doc = {
        "format": REQUEST_FORMAT,
        "payload": base64.b64encode(payload).decode(),
        "signature": identity.signing.sign(REQUEST_LABEL + payload).hex(),
        "endorsement": None if previous is None else previous.sign(ENDORSEMENT_LABEL + payload).hex(),
        "note": f"{request.office_id} ({request.name}) signing key {request.sign_kid.hex()}, "
        f"encryption key {request.box_kid.hex()}: compare these ids with the office by phone before enrolling",
    }
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def _request_bad(problem: str) -> errors.DirectoryError:
    return _reject("malformed", f"enrolment request: {problem}")


def _request_from(fields: Any) -> EnrolmentRequest:
    if type(fields) is not list or len(fields) != 8:
        raise _request_bad("the payload must be an array of 8 fields")
    office, name, country, role, sign_pk, box_pk, created, previous = fields
    if not is_office_id(office):
        raise _request_bad("office id must look like TH-MUK")
    if not _is_text(name, MAX_NAME_CHARS):
        raise _request_bad(f"name must be 1-{MAX_NAME_CHARS} printable characters")
    if country != office[:2]:
        raise _request_bad(f"country {country!r} must be the first two letters of {office}")
    if role not in ROLES:
        raise _request_bad("role must be office or centre")
    if not _is_bytes(sign_pk, PUBLIC_KEY_BYTES) or not _is_bytes(box_pk, PUBLIC_KEY_BYTES):
        raise _request_bad("public keys must be 32 bytes")
    if not _is_int(created, 0, MAX_TIME_MS):
        raise _request_bad("created-at must be a time in ms")
    if previous is not None and not _is_bytes(previous, PUBLIC_KEY_BYTES):
        raise _request_bad("the previous signing key must be 32 bytes")
    return EnrolmentRequest(office, name, country, role, sign_pk, box_pk, created, previous)


def read_request(data: bytes) -> EnrolmentRequest:
    """Parse and verify an enrolment request file; only ``DirectoryError`` on bad input."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _request_bad("not a JSON file") from exc
    if type(doc) is not dict or doc.get("format") != REQUEST_FORMAT:
        raise _request_bad(f"not a {REQUEST_FORMAT} file")
    try:
        payload = base64.b64decode(doc["payload"], validate=True)
        signature = bytes.fromhex(doc["signature"])
        endorsement = None if doc.get("endorsement") is None else bytes.fromhex(doc["endorsement"])
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise _request_bad("payload, signature or endorsement is missing or not encoded as expected") from exc
    if len(payload) > MAX_ITEM_BYTES:
        raise _request_bad("the payload is too large")
    request = _request_from(_unpack(payload, "enrolment request payload"))
    checks = [(signature, REQUEST_LABEL, request.sign_public, "the new signing key")]
    if request.previous_sign_public is not None:
        if endorsement is None:
            raise _request_bad("a rotation request must be endorsed by the previous signing key")
        checks.append((endorsement, ENDORSEMENT_LABEL, request.previous_sign_public, "the previous signing key"))
    for sig, label, public, who in checks:
        try:
            nb.crypto_sign_open(sig + label + payload, public)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError) as exc:
            raise _reject("bad_signature", f"enrolment request: the signature by {who} does not verify") from exc
    return request


# -- what a centre issues ----------------------------------------------------------------


def centre_self_record(
    centre: Identity,
    *,
    name: str,
    now_ms: int,
    valid_until: int | None,
    sequence: int = 1,
    regions: tuple[str, ...] = (),
) -> bytes:
    """A centre's self-signed record (trusted by nodes that pin its signing key)."""
    record = DirectoryRecord(
        office_id=centre.office_id,
        name=name,
        country=centre.office_id[:2],
        role="centre",
        regions=regions,
        counterparts=(),
        sign_public=centre.signing.public,
        sign_kid=centre.signing.kid,
        box_public=centre.box.public,
        box_kid=centre.box.kid,
        valid_from=now_ms,
        valid_until=valid_until,
        sequence=sequence,
        issued_at=now_ms,
        signer=centre.office_id,
        signer_kid=centre.signing.kid,
    )
    return sign_record(record, centre.signing)


def enrol_office(
    request: EnrolmentRequest,
    centre: Identity,
    *,
    sequence: int,
    now_ms: int,
    valid_until: int | None,
    regions: tuple[str, ...] = (),
    counterparts: tuple[str, ...] = (),
) -> bytes:
    """The record ``centre`` signs for a verified enrolment request.

    The keys are valid from the moment the office created them (``request.created_at``,
    never later than now), so bulletins it signed while waiting for enrolment verify.
    """
    if request.role != "office":
        raise _reject("role_conflict", f"{request.office_id} asks for the {request.role} role; a centre enrols offices")
    if request.country != centre.office_id[:2]:
        raise _reject(
            "cross_country",
            f"{centre.office_id} cannot enrol {request.office_id}: a centre enrols only offices of its own country "
            f"({centre.office_id[:2]}); the {request.country} centre must do it",
        )
    record = DirectoryRecord(
        office_id=request.office_id,
        name=request.name,
        country=request.country,
        role="office",
        regions=regions,
        counterparts=counterparts,
        sign_public=request.sign_public,
        sign_kid=request.sign_kid,
        box_public=request.box_public,
        box_kid=request.box_kid,
        valid_from=min(request.created_at, now_ms),
        valid_until=valid_until,
        sequence=sequence,
        issued_at=now_ms,
        signer=centre.office_id,
        signer_kid=centre.signing.kid,
    )
    return sign_record(record, centre.signing)


def revoke_key(centre: Identity, office_id: str, kid: bytes, *, revoked_at: int, reason: str) -> bytes:
    """A revocation by ``centre`` of ``office_id``'s key ``kid`` from ``revoked_at``."""
    if office_id[:2] != centre.office_id[:2]:
        raise _reject(
            "cross_country", f"{centre.office_id} cannot revoke keys of {office_id}, an office of another country"
        )
    revocation = Revocation(office_id, kid, revoked_at, reason, centre.office_id, centre.signing.kid)
    return sign_revocation(revocation, centre.signing)
