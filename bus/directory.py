"""The signed directory: who holds which key, as the centres vouch for it. Pure; no I/O.

The one rule: **a key is trusted only through a chain of signatures that ends at a
centre key pinned in this node's configuration, and a centre vouches only for offices
of its own country.** The transport (a NATS KV bucket) is never trusted; anything that
does not chain is refused with a ``DirectoryError`` whose ``reason`` names the rule.

Four signed things travel (``schemas/DIRECTORY.md`` specifies the bytes):

* a **record** binds an office's Ed25519 and X25519 identity keys to its id, country,
  role, regions and counterparts for a validity window, with a per-office sequence
  number. A centre's own record is self-signed and trusted only if its key is pinned;
  an office's record is signed by a pinned centre of the same country.
* a **revocation** names a key id of an office and the time from which it is void,
  signed by a pinned centre of that office's country.
* an **inbox key** is a short-lived X25519 key an office's node made and signed with its
  own signing key (from its record): what senders seal to (``schemas/INBOX.md``).
* an **enrolment request**, from an office to its centre, proving the office holds the
  new private keys (and, after a rotation, endorsed by its previous signing key).

Every item is judged with its **witness time** (``apply(data, witnessed_at=...)``): when
the bucket stored it, never the time its signer wrote (``schemas/TRUST.md``), so a stolen
key revoked "as compromised since" signs nothing accepted afterwards, however it dates
it. When a later item (a revocation, a successor record) refuses what is held, the held
item is dropped.

``Directory`` holds the verified state and answers the envelope's questions:
``sender_keys`` (any key an office has held, with its effective window and revocation
time, so old bulletins keep verifying) and ``recipient_keys`` (the office's current
inbox key, under its current record only). Time is passed in; nothing here reads a
clock or a file.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bus import errors
from bus import signed as codec  # `signed` names a SignedItem here
from bus.bulletin import is_feed_name, is_office_id
from bus.ids import KEY_ID_BYTES, key_id
from bus.keys import BoxKeyPair, Identity, PeerKeys, SigningKeyPair
from bus.timing import (
    INBOX_KEY_LIFETIME_MS,
    MAX_INBOX_KEY_LIFETIME_MS,
    TimeProblem,
    iso,
    key_problem,
    revoked_for,
    signed_time_problem,
)

FORMAT_VERSION = 2
KIND_RECORD = 1
KIND_REVOCATION = 2
KIND_INBOX_KEY = 3

RECORD_LABEL = b"blo-bus/v2 directory record\x00"
REVOCATION_LABEL = b"blo-bus/v2 directory revocation\x00"
INBOX_KEY_LABEL = b"blo-bus/v2 directory inbox key\x00"
REQUEST_LABEL = b"blo-bus/v2 enrolment request\x00"
ENDORSEMENT_LABEL = b"blo-bus/v2 enrolment endorsement\x00"
REQUEST_FORMAT = "blo-enrolment-request/v2"

ROLES = ("office", "centre")
#: Bounds that keep a hostile item small to decode; real records are ~400 bytes.
MAX_ITEM_BYTES = 8 * 1024
MAX_NAME_CHARS = 200
MAX_REASON_CHARS = 500
MAX_REGIONS = 32
MAX_COUNTERPARTS = 64
MAX_TIME_MS = 1 << 48
MAX_SEQUENCE = 1 << 63
#: Inbox keys held per office (the newest by valid_from); a node makes one a week.
MAX_INBOX_KEYS_PER_OFFICE = 64
#: Inbox keys waiting for their signer's record, in all and per office.
MAX_WAITING = 4096
#: Revocations held per revoked key (a centre issues one; more come from a stolen key).
MAX_REVOCATIONS_PER_KEY = 16

SIGNATURE_BYTES = codec.SIGNATURE_BYTES
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
    "from_future",
    "signer_revoked",
    "signer_key_invalid",
    "stale_sequence",
    "sequence_conflict",
    "inbox_key_conflict",
    "too_many_waiting",
)


def _reject(reason: str, message: str) -> errors.DirectoryError:
    return errors.DirectoryError(message, reason)


def _fail(problem: str, message: str) -> errors.DirectoryError:
    """``bus.signed``'s problems as directory reasons: too large is malformed here."""
    return _reject(codec.UNSUPPORTED if problem == codec.UNSUPPORTED else "malformed", message)


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
    """A key of ``office_id`` (its signing, identity encryption or an inbox key id) is void
    from ``revoked_at``."""

    office_id: str
    kid: bytes
    revoked_at: int
    reason: str
    signer: str
    signer_kid: bytes

    def fields(self) -> list[Any]:
        return [self.office_id, self.kid, self.revoked_at, self.reason, self.signer, self.signer_kid]


@dataclass(frozen=True, slots=True)
class InboxKey:
    """An X25519 key ``office_id``'s node made, signed by its signing key ``sign_kid``:
    senders seal to it from ``valid_from`` until ``valid_until``."""

    office_id: str
    sign_kid: bytes
    box_public: bytes
    box_kid: bytes
    valid_from: int
    valid_until: int
    issued_at: int

    def fields(self) -> list[Any]:
        return [
            self.office_id,
            self.sign_kid,
            self.box_public,
            self.box_kid,
            self.valid_from,
            self.valid_until,
            self.issued_at,
        ]

    def valid_at(self, now_ms: int) -> bool:
        return self.valid_from <= now_ms < self.valid_until


Item = DirectoryRecord | Revocation | InboxKey
_LABELS: dict[type, bytes] = {DirectoryRecord: RECORD_LABEL, Revocation: REVOCATION_LABEL, InboxKey: INBOX_KEY_LABEL}
_KINDS: dict[type, int] = {DirectoryRecord: KIND_RECORD, Revocation: KIND_REVOCATION, InboxKey: KIND_INBOX_KEY}


@dataclass(frozen=True, slots=True)
class SignedItem:
    """A decoded record, revocation or inbox key with the exact bytes that were signed and
    travelled. Decoding checks shape only; ``Directory.apply`` decides trust."""

    item: Item
    payload: bytes
    signature: bytes
    raw: bytes

    @property
    def label(self) -> bytes:
        return _LABELS[type(self.item)]


@dataclass(frozen=True, slots=True)
class HeldItem:
    """A signed item as the directory holds it: with the witness time it is judged by
    (schemas/TRUST.md 2.1), which the local copy stores beside its bytes."""

    signed: SignedItem
    witnessed_at: int

    @property
    def raw(self) -> bytes:
        return self.signed.raw


@dataclass(frozen=True, slots=True)
class Change:
    """What one ``apply`` changed; accepted changes are handed to listeners.

    ``status``: ``added`` (first record of an office), ``updated`` (a new current
    record), ``history`` (an older key arriving late), ``revoked`` (a revocation),
    ``inbox_key`` (an inbox key held), ``waiting`` (an inbox key held back until its
    signer's record arrives; nothing changed yet), ``refused`` (only in ``released``: a
    waiting inbox key that failed once its record arrived; ``error`` says why).
    ``released``: what a record released from the waiting inbox keys.
    """

    status: str
    office_id: str
    kid: bytes
    item: Item
    released: tuple[Change, ...] = ()
    error: errors.DirectoryError | None = field(default=None, compare=False)


# -- encoding and decoding ---------------------------------------------------------------


def _sign(item: Item, signing: SigningKeyPair) -> bytes:
    return codec.seal_item(FORMAT_VERSION, _KINDS[type(item)], _LABELS[type(item)], codec.packb(item.fields()), signing)


def sign_record(record: DirectoryRecord, signing: SigningKeyPair) -> bytes:
    """The wire bytes of ``record`` signed by ``signing`` (which must be ``record.signer_kid``)."""
    if signing.kid != record.signer_kid:
        raise _reject("key_id_mismatch", "the signing key is not the key the record names as its signer")
    check_record(record)
    return _sign(record, signing)


def sign_revocation(revocation: Revocation, signing: SigningKeyPair) -> bytes:
    """The wire bytes of ``revocation`` signed by ``signing``."""
    if signing.kid != revocation.signer_kid:
        raise _reject("key_id_mismatch", "the signing key is not the key the revocation names as its signer")
    check_revocation(revocation)
    return _sign(revocation, signing)


def sign_inbox_key(inbox_key: InboxKey, signing: SigningKeyPair) -> bytes:
    """The wire bytes of ``inbox_key`` signed by the office's signing key ``signing``."""
    if signing.kid != inbox_key.sign_kid:
        raise _reject("key_id_mismatch", "the signing key is not the key the inbox key names as its signer")
    check_inbox_key(inbox_key)
    return _sign(inbox_key, signing)


def make_inbox_key(
    office_id: str,
    signing: SigningKeyPair,
    box: BoxKeyPair,
    *,
    now_ms: int,
    lifetime_ms: int = INBOX_KEY_LIFETIME_MS,
) -> bytes:
    """The signed inbox key item for ``box``: valid from ``now_ms`` for ``lifetime_ms``."""
    item = InboxKey(office_id, signing.kid, box.public, box.kid, now_ms, now_ms + lifetime_ms, now_ms)
    return sign_inbox_key(item, signing)


def _is_int(value: Any, low: int, high: int) -> bool:
    return type(value) is int and low <= value < high


def _is_bytes(value: Any, size: int) -> bool:
    return type(value) is bytes and len(value) == size


def _is_text(value: Any, limit: int) -> bool:
    """DIRECTORY.md 2: 1..limit code points, all printable (str.isprintable: no Cc, Cf, Cs,
    Co, Cn, Zl, Zp, Zs but U+0020), not starting or ending with U+0020."""
    return (
        type(value) is str and 0 < len(value) <= limit and value.isprintable() and value[0] != " " and value[-1] != " "
    )


def _bad(what: str, problem: str) -> errors.DirectoryError:
    return _reject("malformed", f"directory {what}: {problem}")


#: DIRECTORY.md 2, a record's fields, checked in this order: (holds, what is wrong), the
#: message formatted with the record as ``r``.
_RECORD_SHAPE: tuple[tuple[Callable[[DirectoryRecord], bool], str], ...] = (
    (lambda r: is_office_id(r.office_id), "office id must look like TH-MUK"),
    (lambda r: _is_text(r.name, MAX_NAME_CHARS), f"name must be 1-{MAX_NAME_CHARS} printable characters"),
    (lambda r: r.country == r.office_id[:2], "country {r.country!r} must be the first two letters of {r.office_id}"),
    (lambda r: r.role in ROLES, "role must be office or centre"),
    (
        lambda r: type(r.regions) is tuple and len(r.regions) <= MAX_REGIONS and all(map(is_feed_name, r.regions)),
        f"regions must be up to {MAX_REGIONS} names of lowercase letters, digits, hyphens",
    ),
    (
        lambda r: (
            type(r.counterparts) is tuple
            and len(r.counterparts) <= MAX_COUNTERPARTS
            and all(map(is_office_id, r.counterparts))
        ),
        f"counterparts must be up to {MAX_COUNTERPARTS} office ids",
    ),
    (lambda r: _is_bytes(r.sign_public, PUBLIC_KEY_BYTES), f"the signing public key must be {PUBLIC_KEY_BYTES} bytes"),
    (
        lambda r: _is_bytes(r.box_public, PUBLIC_KEY_BYTES),
        f"the encryption public key must be {PUBLIC_KEY_BYTES} bytes",
    ),
    (lambda r: _is_bytes(r.sign_kid, KEY_ID_BYTES), f"the signing key id must be {KEY_ID_BYTES} bytes"),
    (lambda r: _is_bytes(r.box_kid, KEY_ID_BYTES), f"the encryption key id must be {KEY_ID_BYTES} bytes"),
    (lambda r: _is_bytes(r.signer_kid, KEY_ID_BYTES), f"the signer key id must be {KEY_ID_BYTES} bytes"),
)
_RECORD_TIMES: tuple[tuple[Callable[[DirectoryRecord], bool], str], ...] = (
    (lambda r: _is_int(r.valid_from, 0, MAX_TIME_MS), "valid-from must be a time in ms"),
    (
        lambda r: r.valid_until is None or (_is_int(r.valid_until, 0, MAX_TIME_MS) and r.valid_until > r.valid_from),
        "valid-until must be empty or a time in ms after valid-from",
    ),
    (lambda r: _is_int(r.sequence, 1, MAX_SEQUENCE), "sequence must be a positive integer below 2^63"),
    (lambda r: _is_int(r.issued_at, 0, MAX_TIME_MS), "issued-at must be a time in ms"),
    (lambda r: is_office_id(r.signer), "signer must be a centre id such as TH-TCCC"),
)


def check_record(r: DirectoryRecord) -> None:
    """Raise ``DirectoryError`` (malformed / key_id_mismatch) unless every field is well-formed."""
    for holds, problem in _RECORD_SHAPE:
        if not holds(r):
            raise _bad("record", problem.format(r=r))
    if key_id("sign", r.sign_public) != r.sign_kid or key_id("box", r.box_public) != r.box_kid:
        raise _reject("key_id_mismatch", f"the record for {r.office_id} states key ids that do not match its keys")
    for holds, problem in _RECORD_TIMES:
        if not holds(r):
            raise _bad("record", problem.format(r=r))


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


def check_inbox_key(k: InboxKey) -> None:
    """Raise ``DirectoryError`` (malformed / key_id_mismatch) unless every field is
    well-formed, the lifetime within ``MAX_INBOX_KEY_LIFETIME_MS`` included."""
    if not is_office_id(k.office_id):
        raise _bad("inbox key", "office id must look like TH-MUK")
    if not _is_bytes(k.sign_kid, KEY_ID_BYTES) or not _is_bytes(k.box_kid, KEY_ID_BYTES):
        raise _bad("inbox key", f"key ids must be {KEY_ID_BYTES} bytes")
    if not _is_bytes(k.box_public, PUBLIC_KEY_BYTES):
        raise _bad("inbox key", f"the public key must be {PUBLIC_KEY_BYTES} bytes")
    if key_id("box", k.box_public) != k.box_kid:
        raise _reject("key_id_mismatch", f"the inbox key of {k.office_id} states a key id that does not match its key")
    if not all(_is_int(t, 0, MAX_TIME_MS) for t in (k.valid_from, k.valid_until, k.issued_at)):
        raise _bad("inbox key", "valid-from, valid-until and issued-at must be times in ms")
    if not 0 < k.valid_until - k.valid_from <= MAX_INBOX_KEY_LIFETIME_MS:
        raise _bad(
            "inbox key",
            f"valid-until must be after valid-from, by at most {MAX_INBOX_KEY_LIFETIME_MS // 86_400_000} days "
            f"(this one asks for {(k.valid_until - k.valid_from) / 86_400_000:.1f})",
        )


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


def _inbox_key_from(fields: Any) -> InboxKey:
    if type(fields) is not list or len(fields) != 7:
        raise _bad("inbox key", "must be a msgpack array of 7 fields")
    inbox_key = InboxKey(*fields)
    check_inbox_key(inbox_key)
    return inbox_key


_DECODERS: dict[int, Callable[[Any], Item]] = {
    KIND_RECORD: _record_from,
    KIND_REVOCATION: _revocation_from,
    KIND_INBOX_KEY: _inbox_key_from,
}
_KIND_NAMES = {
    KIND_RECORD: "record payload",
    KIND_REVOCATION: "revocation payload",
    KIND_INBOX_KEY: "inbox key payload",
}


def decode_item(data: bytes) -> SignedItem:
    """Parse a signed record, revocation or inbox key (DIRECTORY.md 3, decoding steps 1-5).
    Checks shape, not trust; only ``DirectoryError``."""
    item = codec.decode_item(
        data, what="directory item", limit=MAX_ITEM_BYTES, version=FORMAT_VERSION, kinds=_KIND_NAMES, fail=_fail
    )
    build = _DECODERS[item.kind]
    return SignedItem(item=build(item.fields), payload=item.payload, signature=item.signature, raw=data)


def _verify(item: SignedItem, public: bytes, who: str) -> None:
    if not codec.verifies(item.signature, item.label, item.payload, public):
        raise _reject("bad_signature", f"the signature does not verify for {who}: altered or forged")


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
class _Window:
    """The window of a pinned centre key whose record this node does not hold: no bounds,
    only its revocation (DIRECTORY.md 4 step 7)."""

    revoked_at: int | None
    valid_from: int = 0
    valid_until: int | None = None


def _time_reject(problem: TimeProblem, subject: str) -> errors.DirectoryError:
    reason = {"T1": "from_future", "T3": "signer_revoked"}.get(problem.rule, "signer_key_invalid")
    return _reject(reason, f"{subject} is refused: {problem.message}")


def _record(h: HeldItem) -> DirectoryRecord:
    assert isinstance(h.signed.item, DirectoryRecord)
    return h.signed.item


def _revocation(h: HeldItem) -> Revocation:
    assert isinstance(h.signed.item, Revocation)
    return h.signed.item


def _inbox_key(h: HeldItem) -> InboxKey:
    assert isinstance(h.signed.item, InboxKey)
    return h.signed.item


def _inbox_rank(k: InboxKey) -> tuple[int, bytes]:
    return (k.valid_from, k.box_kid)


class Directory:
    """The verified directory: pinned centres, accepted records, revocations, inbox keys.

    Implements ``bus.envelope.KeyResolver``. Feed it with ``apply(bytes, witnessed_at=...)``
    in any order (a revocation may arrive before the record it names; an old key after
    its successor; an inbox key before its office's record); what a later item refuses
    is dropped (DIRECTORY.md 4a).
    """

    def __init__(self, anchors: Mapping[str, bytes | Iterable[bytes]], *, max_waiting: int = MAX_WAITING) -> None:
        # (centre id, kid) -> public key: pins are by key, the kid is only an index.
        self._anchors: dict[tuple[str, bytes], bytes] = {}
        for centre, keys in anchors.items():
            for key in [keys] if isinstance(keys, bytes) else list(keys):
                if not is_office_id(centre) or not _is_bytes(key, PUBLIC_KEY_BYTES):
                    raise errors.ConfigError(f"trust anchor {centre!r}: expected a centre id and a 32-byte key")
                self._anchors[(centre, key_id("sign", key))] = key
        self._centres = {c for c, _ in self._anchors}
        self.max_waiting = max_waiting
        self._records: dict[str, dict[bytes, HeldItem]] = {}  # office -> sign kid -> latest record for it
        # (office, kid) -> raw -> every revocation held for that key (the earliest counts)
        self._revocations: dict[tuple[str, bytes], dict[bytes, HeldItem]] = {}
        self._inbox: dict[str, dict[bytes, HeldItem]] = {}  # office -> box kid -> inbox key
        self._waiting: dict[tuple[str, bytes], dict[bytes, HeldItem]] = {}  # (office, sign kid) -> raw -> item
        self._peers: dict[tuple[str, bytes], PeerKeys] = {}
        self._peer_kids: dict[str, set[bytes]] = {}
        self._current: dict[str, DirectoryRecord] = {}
        self._listeners: list[Callable[[Change], None]] = []
        #: refused items by reason, as the node's metrics report them
        self.rejected: Counter[str] = Counter()

    # -- feeding ---------------------------------------------------------------------

    def apply(self, data: bytes, *, witnessed_at: int) -> Change | None:
        """Verify and take in one signed item, judged with ``witnessed_at``: when the bucket
        stored it (``bus.timing.witness_time``), or this node's clock for an item that came
        another way (a file, a command, the node itself).

        Returns the change, or None when nothing changed (the item is already held, or is
        not kept: an inbox key or revocation beyond its bounds). Raises ``DirectoryError``
        (and counts its reason) when it is refused."""
        if type(witnessed_at) is not int or not 0 <= witnessed_at < MAX_TIME_MS:
            raise ValueError(f"witnessed_at must be a time in ms, not {witnessed_at!r}")
        try:
            signed = decode_item(data)
            item = signed.item
            if isinstance(item, DirectoryRecord):
                change = self._apply_record(signed, item, witnessed_at)
            elif isinstance(item, Revocation):
                change = self._apply_revocation(signed, item, witnessed_at)
            else:
                change = self._apply_inbox_key(signed, item, witnessed_at)
        except errors.DirectoryError as exc:
            self.rejected[exc.reason] += 1
            raise
        if change is not None and change.status != "waiting":
            self._notify([change, *(c for c in change.released if c.status != "refused")])
        return change

    def _notify(self, changes: list[Change]) -> None:
        failures = []
        for change in changes:
            for listener in list(self._listeners):
                try:
                    listener(change)
                except Exception as exc:  # one broken listener must not starve the others
                    failures.append(exc)
        if failures:
            raise failures[0]

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

    def _signer_window(self, signer: str, signer_kid: bytes) -> PeerKeys | _Window:
        """The signing key's effective window (section 5) when its record is held, else
        only its revocation."""
        held = self._peers.get((signer, signer_kid))
        return held if held is not None else _Window(self._revoked(signer, signer_kid))

    # -- the time rules (DIRECTORY.md 4 step 7), for arrivals and for held items alike --

    def _record_problem(self, r: DirectoryRecord, witnessed_at: int) -> errors.DirectoryError | None:
        subject = f"the record for {r.office_id} (sequence {r.sequence}, signed by {r.signer})"
        problem = signed_time_problem(r.issued_at, witnessed_at) or key_problem(
            self._signer_window(r.signer, r.signer_kid), r.issued_at, witnessed_at, who=f"{r.signer}"
        )
        return None if problem is None else _time_reject(problem, subject)

    def _revocation_problem(self, v: Revocation, witnessed_at: int) -> errors.DirectoryError | None:
        if (v.office_id, v.kid) == (v.signer, v.signer_kid):
            return None  # a key revoking itself only ever takes trust away from itself
        revoked_at = self._signer_window(v.signer, v.signer_kid).revoked_at
        if not revoked_for(revoked_at, None, witnessed_at):
            return None
        assert revoked_at is not None
        return _reject(
            "signer_revoked",
            f"the revocation of {v.office_id} key {v.kid.hex()} is refused: the key of {v.signer} that signed it was "
            f"revoked as of {iso(revoked_at)}, and this was stored at {iso(witnessed_at)}",
        )

    def _inbox_key_problem(self, k: InboxKey, witnessed_at: int) -> errors.DirectoryError | None:
        subject = f"the inbox key {k.box_kid.hex()} of {k.office_id}"
        keys = self._peers.get((k.office_id, k.sign_kid))
        if keys is None:  # its record was dropped since (its own signer was revoked)
            return _reject("untrusted_signer", f"{subject}: no held record of {k.office_id} has its signing key")
        problem = signed_time_problem(k.issued_at, witnessed_at) or key_problem(
            keys, k.issued_at, witnessed_at, who=k.office_id
        )
        return None if problem is None else _time_reject(problem, subject)

    # -- records ---------------------------------------------------------------------

    def _apply_record(self, signed: SignedItem, r: DirectoryRecord, witnessed_at: int) -> Change | None:
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
        problem = self._record_problem(r, witnessed_at)
        if problem is not None:
            raise problem

        held = self._records.setdefault(r.office_id, {})
        same_key = held.get(r.sign_kid)
        if same_key is not None and same_key.raw == signed.raw:
            held[r.sign_kid] = HeldItem(signed, min(same_key.witnessed_at, witnessed_at))
            return None
        for other in held.values():
            if _record(other).sequence == r.sequence:
                raise _reject(
                    "sequence_conflict",
                    f"{subject} differs from the held record with the same sequence {r.sequence}; a centre must "
                    "give every new record of an office a higher sequence",
                )
        if same_key is not None and _record(same_key).sequence > r.sequence:
            raise _reject(
                "stale_sequence",
                f"{subject} has sequence {r.sequence}; this node holds sequence {_record(same_key).sequence} for that key",
            )
        current = self._current.get(r.office_id)
        if current is None:
            status = "added"
        elif r.sequence > current.sequence:
            status = "updated"
        else:
            status = "history"
        held[r.sign_kid] = mine = HeldItem(signed, witnessed_at)
        self._settle({r.office_id})
        if self._records.get(r.office_id, {}).get(r.sign_kid) is not mine:
            # Only a centre's own record can refuse itself: signed outside the window it states.
            raise _reject("signer_key_invalid", f"{subject} was signed outside its own key's window")
        return Change(status, r.office_id, r.sign_kid, r, released=self._release(r.office_id))

    # -- revocations -----------------------------------------------------------------

    def _apply_revocation(self, signed: SignedItem, v: Revocation, witnessed_at: int) -> Change | None:
        subject = f"the revocation of {v.office_id} key {v.kid.hex()}"
        if v.signer[:2] != v.office_id[:2]:
            raise _reject("cross_country", f"{subject} is signed by {v.signer}; only a {v.office_id[:2]} centre may")
        _verify(signed, self._signer_key(v.signer, v.signer_kid, subject), f"{subject} (signer {v.signer})")
        problem = self._revocation_problem(v, witnessed_at)
        if problem is not None:
            raise problem
        held = self._revocations.setdefault((v.office_id, v.kid), {})
        same = held.get(signed.raw)
        if same is not None:
            held[signed.raw] = HeldItem(signed, min(same.witnessed_at, witnessed_at))
            return None
        # Every revocation is kept (the earliest revoked_at counts), not only the earliest:
        # should its signing key be revoked later, a revocation by another key, or stored
        # before that, still stands.
        held[signed.raw] = HeldItem(signed, witnessed_at)
        if len(held) > MAX_REVOCATIONS_PER_KEY:
            del held[max(held, key=lambda raw: (held[raw].witnessed_at, raw))]
            if signed.raw not in held:
                return None
        self._settle({v.office_id})
        return Change("revoked", v.office_id, v.kid, v)

    def _revoked(self, office: str, kid: bytes) -> int | None:
        """The effective revocation time of a key: the earliest of the revocations held."""
        held = self._revocations.get((office, kid))
        return min((_revocation(h).revoked_at for h in held.values()), default=None) if held else None

    # -- inbox keys ------------------------------------------------------------------

    def _apply_inbox_key(self, signed: SignedItem, k: InboxKey, witnessed_at: int) -> Change | None:
        if (k.office_id, k.sign_kid) not in self._peers:
            return self._wait(signed, k, witnessed_at)
        return self._take_inbox_key(signed, k, witnessed_at)

    def _take_inbox_key(self, signed: SignedItem, k: InboxKey, witnessed_at: int) -> Change | None:
        subject = f"the inbox key {k.box_kid.hex()} of {k.office_id}"
        signer = self._peers[(k.office_id, k.sign_kid)]
        _verify(signed, signer.sign_public, f"{subject} (signing key {k.sign_kid.hex()})")
        problem = self._inbox_key_problem(k, witnessed_at)
        if problem is not None:
            raise problem
        held = self._inbox.setdefault(k.office_id, {})
        same = held.get(k.box_kid)
        if same is not None:
            if same.raw != signed.raw:
                raise _reject(
                    "inbox_key_conflict", f"{subject} differs from the one held for that key; the first stands"
                )
            held[k.box_kid] = HeldItem(signed, min(same.witnessed_at, witnessed_at))
            return None
        held[k.box_kid] = HeldItem(signed, witnessed_at)
        if len(held) > MAX_INBOX_KEYS_PER_OFFICE:
            oldest = min(held, key=lambda kid: _inbox_rank(_inbox_key(held[kid])))
            del held[oldest]
            if oldest == k.box_kid:
                return None
        return Change("inbox_key", k.office_id, k.box_kid, k)

    def _wait(self, signed: SignedItem, k: InboxKey, witnessed_at: int) -> Change | None:
        pool = self._waiting.setdefault((k.office_id, k.sign_kid), {})
        same = pool.get(signed.raw)
        if same is not None:
            pool[signed.raw] = HeldItem(signed, min(same.witnessed_at, witnessed_at))
            return None
        per_office = sum(len(p) for (office, _), p in self._waiting.items() if office == k.office_id)
        if self.waiting >= self.max_waiting or per_office >= MAX_INBOX_KEYS_PER_OFFICE:
            if not pool:
                del self._waiting[(k.office_id, k.sign_kid)]
            raise _reject(
                "too_many_waiting",
                f"the inbox key {k.box_kid.hex()} of {k.office_id} waits for a record of signing key "
                f"{k.sign_kid.hex()}, and too many items wait already; it is read again when the node reloads the bucket",
            )
        pool[signed.raw] = HeldItem(signed, witnessed_at)
        return Change("waiting", k.office_id, k.box_kid, k)

    def _release(self, office: str) -> tuple[Change, ...]:
        """Check again the inbox keys waiting for a record of ``office`` that is now held."""
        out: list[Change] = []
        for sign_kid in [s for (o, s) in self._waiting if o == office and (o, s) in self._peers]:
            for h in self._waiting.pop((office, sign_kid)).values():
                k = _inbox_key(h)
                try:
                    change = self._take_inbox_key(h.signed, k, h.witnessed_at)
                except errors.DirectoryError as exc:
                    self.rejected[exc.reason] += 1
                    out.append(Change("refused", office, k.box_kid, k, error=exc))
                    continue
                if change is not None:
                    out.append(change)
        return tuple(out)

    # -- what a later item takes away (DIRECTORY.md 4a) ------------------------------

    def _settle(self, offices: Iterable[str]) -> None:
        """Rebuild the keys of ``offices`` and judge again what their keys signed, dropping
        what the rules now refuse; repeat for the offices whose keys that changed."""
        pending = set(offices)
        while pending:
            office = pending.pop()
            self._rebuild(office)
            if office in self._centres:  # only pinned centres sign records and revocations
                for other, held in self._records.items():
                    for kid, h in list(held.items()):
                        r = _record(h)
                        if r.signer == office and self._record_problem(r, h.witnessed_at) is not None:
                            del held[kid]
                            pending.add(other)
                for target, held_revocations in list(self._revocations.items()):
                    for raw, h in list(held_revocations.items()):
                        v = _revocation(h)
                        if v.signer == office and self._revocation_problem(v, h.witnessed_at) is not None:
                            del held_revocations[raw]
                            pending.add(target[0])
                    if not held_revocations:
                        del self._revocations[target]
            inbox = self._inbox.get(office, {})
            for kid, h in list(inbox.items()):
                if self._inbox_key_problem(_inbox_key(h), h.witnessed_at) is not None:
                    del inbox[kid]

    def _rebuild(self, office: str) -> None:
        """Recompute the PeerKeys of one office: each older key ends where a newer one starts."""
        for kid in self._peer_kids.pop(office, ()):
            del self._peers[(office, kid)]
        records = sorted((_record(h) for h in self._records.get(office, {}).values()), key=lambda r: r.sequence)
        if not records:
            self._current.pop(office, None)
            return
        successor_start: int | None = None
        for r in reversed(records):
            until = r.valid_until
            if successor_start is not None:
                until = successor_start if until is None else min(until, successor_start)
            revoked = [
                t for t in (self._revoked(office, r.sign_kid), self._revoked(office, r.box_kid)) if t is not None
            ]
            self._peers[(office, r.sign_kid)] = replace(
                r.peer_keys(), valid_until=until, revoked_at=min(revoked) if revoked else None
            )
            successor_start = r.valid_from if successor_start is None else min(successor_start, r.valid_from)
        self._current[office] = records[-1]
        self._peer_kids[office] = {r.sign_kid for r in records}

    # -- questions -------------------------------------------------------------------

    def sender_keys(self, office_id: str, sign_kid: bytes) -> PeerKeys | None:
        """Any key ``office_id`` has held, with its effective window and revocation time.
        (``box_public``/``box_kid`` are the record's identity encryption key, which v2
        uses for nothing on the wire.)"""
        return self._peers.get((office_id, sign_kid))

    def recipient_keys(self, office_id: str, now_ms: int) -> PeerKeys:
        """What to seal to now (DIRECTORY.md 5): the office's current record, usable at
        ``now_ms``, with its **current inbox key** as ``box_public``/``box_kid``.

        Raises ``DirectoryError(unknown_office)`` for an office not in the directory and
        ``RecipientKeyInvalid`` (saying why, and since when) when it cannot be sealed to."""
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
        signed_by_current = [k for k in self.inbox_keys(office_id) if k.sign_kid == record.sign_kid]
        usable = [k for k in signed_by_current if k.valid_at(now_ms) and not self._inbox_revoked(k, now_ms)]
        if not usable:
            raise errors.RecipientKeyInvalid(self._no_inbox_key(office_id, signed_by_current, now_ms))
        inbox = max(usable, key=_inbox_rank)
        ends = [t for t in (keys.valid_until, inbox.valid_until) if t is not None]
        revoked = [t for t in (keys.revoked_at, self._revoked(office_id, inbox.box_kid)) if t is not None]
        return replace(
            keys,
            box_public=inbox.box_public,
            box_kid=inbox.box_kid,
            valid_until=min(ends),
            revoked_at=min(revoked) if revoked else None,
        )

    def _inbox_revoked(self, k: InboxKey, now_ms: int) -> bool:
        revoked_at = self._revoked(k.office_id, k.box_kid)
        return revoked_at is not None and now_ms >= revoked_at

    def _no_inbox_key(self, office_id: str, keys: list[InboxKey], now_ms: int) -> str:
        """Why ``office_id`` has no inbox key to seal to, for the person who tried."""
        if not keys:
            return (
                f"{office_id} has no inbox key signed with its current key yet: its node has not been online since "
                "it was enrolled (or since its keys were rotated); it cannot be sealed to until its node comes online "
                "and publishes one"
            )
        if any(k.valid_at(now_ms) for k in keys):  # valid, but every such key revoked
            return (
                f"{office_id}'s inbox keys valid now are revoked by its centre; it cannot be sealed to until its node "
                "publishes a new one"
            )
        newest = max(keys, key=lambda k: k.issued_at)
        if newest.valid_from > now_ms:
            return (
                f"{office_id}'s newest inbox key is valid only from {iso(newest.valid_from)}, after this node's clock "
                f"({iso(now_ms)}): check this node's clock"
            )
        return (
            f"{office_id} has no inbox key valid now: its node has not been online since {iso(newest.issued_at)} "
            f"(its newest inbox key expired at {iso(newest.valid_until)}); it cannot be sealed to until it comes back"
        )

    def inbox_keys(self, office_id: str) -> list[InboxKey]:
        """Every inbox key held for ``office_id`` (expired and revoked ones included),
        oldest ``valid_from`` first: what the office has published, as this node verified it."""
        return sorted((_inbox_key(h) for h in self._inbox.get(office_id, {}).values()), key=_inbox_rank)

    def record(self, office_id: str) -> DirectoryRecord | None:
        """The current record of an office."""
        return self._current.get(office_id)

    def records(self) -> list[DirectoryRecord]:
        """The current record of every office, by office id."""
        return [self._current[o] for o in sorted(self._current)]

    def history(self, office_id: str) -> list[DirectoryRecord]:
        """Every held record of an office, oldest sequence first."""
        return sorted((_record(h) for h in self._records.get(office_id, {}).values()), key=lambda r: r.sequence)

    def revocations(self) -> list[Revocation]:
        """Every held revocation (a key may have several; the earliest counts)."""
        return [_revocation(h) for _, by in sorted(self._revocations.items()) for _, h in sorted(by.items())]

    def revoked_at(self, office_id: str, kid: bytes) -> int | None:
        """When ``kid`` of ``office_id`` is revoked from (the earliest revocation held), or None."""
        return self._revoked(office_id, kid)

    def find_key(self, kid: bytes) -> DirectoryRecord | None:
        """The held record whose signing or identity encryption key has this id; for an
        inbox key id, the current record of the office that published it."""
        for held in self._records.values():
            for h in held.values():
                if kid in (_record(h).sign_kid, _record(h).box_kid):
                    return _record(h)
        for office, keys in self._inbox.items():
            if kid in keys:
                return self._current.get(office)
        return None

    def next_sequence(self, office_id: str) -> int:
        """The sequence a centre gives the next record of ``office_id``."""
        return max((_record(h).sequence for h in self._records.get(office_id, {}).values()), default=0) + 1

    def held_items(self) -> list[HeldItem]:
        """Everything held with its witness time (records by office, oldest sequence first;
        then inbox keys; then revocations): what the local copy stores."""
        records = [
            h
            for o in sorted(self._records)
            for h in sorted(self._records[o].values(), key=lambda h: _record(h).sequence)
        ]
        inbox = [h for o in sorted(self._inbox) for h in sorted(self._inbox[o].values(), key=lambda h: h.raw)]
        revocations = [h for _, by in sorted(self._revocations.items()) for _, h in sorted(by.items())]
        return records + inbox + revocations

    def signed_items(self) -> list[SignedItem]:
        """Everything held, as signed bytes (in ``held_items`` order): what a centre republishes."""
        return [h.signed for h in self.held_items()]

    @property
    def waiting(self) -> int:
        """How many inbox keys wait for their signer's record."""
        return sum(len(p) for p in self._waiting.values())

    def is_pinned(self, centre_id: str, public: bytes) -> bool:
        return self._anchors.get((centre_id, key_id("sign", public))) == public

    def __len__(self) -> int:
        return len(self._current)


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
    payload = codec.packb(fields)
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
    request = _request_from(codec.unpack(payload, "enrolment request payload", _fail))
    checks = [(signature, REQUEST_LABEL, request.sign_public, "the new signing key")]
    if request.previous_sign_public is not None:
        if endorsement is None:
            raise _request_bad("a rotation request must be endorsed by the previous signing key")
        checks.append((endorsement, ENDORSEMENT_LABEL, request.previous_sign_public, "the previous signing key"))
    for sig, label, public, who in checks:
        if not codec.verifies(sig, label, payload, public):
            raise _reject("bad_signature", f"enrolment request: the signature by {who} does not verify")
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
