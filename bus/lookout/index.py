"""The entity index: which active lookouts name this passport, person, plate or phone?

Every sent and received bulletin goes in (``add_bulletin``); a border check
(``check``) or a newly arrived bulletin (``hits_for``) asks which *active* lookouts
share a normalised entity key with it (``bus.lookout.normalise``). Answers come from
memory, so they work while the link is down.

Active means: kind ``lookout`` or ``alert``, not expired at ``now_ms``, not withdrawn,
not superseded. Bulletins of other kinds (incidents, replies, intelligence) are
indexed too, as *mentions*: ``mentions()`` tells the officer that a passport appeared
in last month's incident report, which is worth knowing but is not a lookout, so it
is never mixed into ``check``'s answer and never raises a hit.

Withdrawal and updates
    ``withdraw(bulletin_id)`` stops a lookout matching. Over the bus a withdrawal is a
    bulletin tagged ``withdraws`` whose ``in_reply_to`` names the lookout, from the same
    sender. A bulletin tagged with a *subject* (``wl:<list>:<entry>``, see
    ``bus.lookout.watchlist``) supersedes every earlier bulletin of the same sender with
    the same subject: newest ``created`` wins (ties: higher id), whatever order they
    arrive in, so a watch-list update or withdrawal propagates like any bulletin and a
    late, older copy never resurrects a lookout.

Memory layout (why it is not a dict of lists)
    A million documents as ``dict[str, list[tuple]]`` costs several hundred bytes each.
    Here each bulletin is a *slot* number whose fields live in flat arrays (16-byte id,
    created, expires, a 16-bit packed kind/precedence/TLP/grading/flags word, sender
    index, subject hash), and each entity key is one pair of 64-bit integers in sorted
    arrays: the BLAKE2b-64 hash of ``kind + key`` and a *posting* packing
    ``slot << 28 | scope << 8 | entity_index``. Lookup is a binary search per sorted
    run. New keys go to a small dict, frozen into a sorted run when it fills; runs of
    similar size merge (like a binary counter, so each key is re-sorted O(log n)
    times), and merging drops postings of withdrawn or superseded bulletins.
    A 64-bit hash (``key_hash``) collision could produce a false match with probability about
    keys / 2**64 per lookup (~5e-12 with 100 million keys); the officer reads the
    bulletin before acting on it anyway.

Not thread-safe: use it from one thread (the node's event loop).
"""

from __future__ import annotations

import base64
import re
import sys
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from bus.bulletin import ENTITY_TYPES, KINDS, PRECEDENCES, TLP_LABELS, Bulletin, validate_entity
from bus.errors import ValidationError
from bus.lookout.normalise import IndexKey, ascii_digits, entity_keys, normalise_phone

#: Kinds whose bulletins are lookouts: matched by ``check`` and raising hits.
ACTIVE_KINDS = ("lookout", "alert")
#: Tag of a bulletin that withdraws the bulletin named in its ``in_reply_to``.
WITHDRAW_TAG = "withdraws"
#: Tags starting with this name a subject: the newest bulletin per (sender, subject) wins.
SUBJECT_TAG_PREFIX = "wl:"

_KIND = {k: i for i, k in enumerate(KINDS)}
_ACTIVE_KIND_CODES = frozenset(_KIND[k] for k in ACTIVE_KINDS)
_PREC = {p: i for i, p in enumerate(PRECEDENCES)}
_TLP = {t: i for i, t in enumerate(TLP_LABELS)}
_WITHDRAWN = 1 << 14
_SUPERSEDED = 1 << 15
_INACTIVE = _WITHDRAWN | _SUPERSEDED
_U64 = (1 << 64) - 1
# ULID text -> int by way of int(..., 32): Crockford digits mapped to Python's base-32
# digits. Several times faster than bus.ids' per-character loop; rebuilds parse a
# million ids, so it matters here.
_ULID = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}\Z")
_TO_BASE32 = str.maketrans("0123456789ABCDEFGHJKMNPQRSTVWXYZ", "0123456789abcdefghijklmnopqrstuv")


_FROM_RFC4648 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def _id_text(raw: bytes | bytearray) -> str:
    """ULID text of 16 id bytes (as bus.ids.bulletin_id_from_bytes), via the C base32
    encoder: shifted left 6 bits, the first 26 base32 digits are the 2 zero pad bits
    plus the 128 id bits."""
    shifted = (int.from_bytes(raw, "big") << 6).to_bytes(17, "big")
    return base64.b32encode(shifted)[:26].translate(_FROM_RFC4648).decode("ascii")


def bulletin_id_to_bytes(bulletin_id: str) -> bytes:
    if not isinstance(bulletin_id, str) or _ULID.match(bulletin_id) is None:
        raise ValidationError("id", f"must be a ULID of 26 Crockford base32 characters, got {bulletin_id!r}"[:200])
    return int(bulletin_id.translate(_TO_BASE32), 32).to_bytes(16, "big")
_SLOT_SHIFT = 28


def key_hash(kind: str, key: str) -> int:
    """The 64-bit hash a key is indexed under.

    Python's string hash: SipHash keyed per process, so nobody can craft colliding
    document numbers from outside, and 7x cheaper than BLAKE2b here. It is not stable
    across processes, which is why the index is rebuilt from the store at startup
    rather than snapshotted.
    """
    return hash(kind + "\x1f" + key) & _U64


@lru_cache(maxsize=65_536)  # scopes repeat (countries, common birth dates); the cache is bounded
def _scope_code(scope: str) -> int:
    """Pack a scope into 20 bits: 11-bit field A, 4-bit M, 5-bit D; 0 means unknown.

    Countries use A alone; dates of birth use A=year, M=month, D=day. Two scopes agree
    when every field is unknown on one side or equal (``_scopes_agree``).
    """
    if not scope:
        return 0
    if len(scope) == 2 and scope.isascii() and scope.isalpha():
        return ((ord(scope[0].upper()) - 64) * 27 + ord(scope[1].upper()) - 64) << 9
    parts = scope.split("-")
    try:
        year = int(parts[0]) - 1799
        month = int(parts[1]) if len(parts) > 1 else 0
        day = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        return 0
    if not 0 < year < 2048:
        return 0
    if not 0 < month <= 12:
        month = day = 0
    if not 0 < day <= 31:
        day = 0
    return year << 9 | month << 5 | day


def _scopes_agree(a: int, b: int) -> bool:
    if not a or not b:
        return True
    for shift, mask in ((9, 2047), (5, 15), (0, 31)):
        x, y = (a >> shift) & mask, (b >> shift) & mask
        if x and y and x != y:
            return False
    return True


class _SortedMultiMap:
    """A compact multimap from 64-bit ints to 64-bit ints (see the module docstring)."""

    __slots__ = ("_delta", "_delta_count", "_delta_max", "_pending_k", "_pending_v", "runs")

    def __init__(self, delta_max: int = 16_384) -> None:
        self.runs: list[tuple[array[int], array[int]]] = []
        self._delta: dict[int, list[int]] = {}
        self._delta_count = 0
        self._delta_max = delta_max
        # Bulk loading appends here unsorted; ``finish_bulk`` sorts once.
        self._pending_k: array[int] = array("Q")
        self._pending_v: array[int] = array("Q")

    def __len__(self) -> int:
        return sum(len(k) for k, _ in self.runs) + self._delta_count + len(self._pending_k)

    def add(self, h: int, v: int, keep: Callable[[int], bool] | None = None) -> None:
        bucket = self._delta.get(h)
        if bucket is None:
            self._delta[h] = [v]
        else:
            bucket.append(v)
        self._delta_count += 1
        if self._delta_count >= self._delta_max:
            self._freeze(keep)

    def pending(self) -> tuple[array[int], array[int]]:
        """The unsorted bulk arrays, for callers appending many pairs in a loop."""
        return self._pending_k, self._pending_v

    def add_bulk(self, h: int, v: int) -> None:
        self._pending_k.append(h)
        self._pending_v.append(v)

    def finish_bulk(self, keep: Callable[[int], bool] | None = None) -> None:
        if not self._pending_k:
            return
        combined = [(h << 64) | v for h, v in zip(self._pending_k, self._pending_v, strict=True)]
        self._pending_k, self._pending_v = array("Q"), array("Q")
        self._push_run(combined, keep)

    def get(self, h: int) -> Iterator[int]:
        for keys, values in self.runs:
            i = bisect_left(keys, h)
            n = len(keys)
            while i < n and keys[i] == h:
                yield values[i]
                i += 1
        bucket = self._delta.get(h)
        if bucket:
            yield from bucket

    def items_sorted(self) -> Iterator[tuple[int, list[int]]]:
        """(hash, values) groups of everything frozen into runs, ascending by hash (one run
        only: callers use it right after ``finish_bulk``)."""
        for keys, values in self.runs:
            i, n = 0, len(keys)
            while i < n:
                h = keys[i]
                j = i
                group = []
                while j < n and keys[j] == h:
                    group.append(values[j])
                    j += 1
                yield h, group
                i = j

    def nbytes(self) -> int:
        size = sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in self.runs)
        # The delta: dict slot + list + two small ints per value, roughly.
        return size + sys.getsizeof(self._delta) + 120 * self._delta_count

    def _freeze(self, keep: Callable[[int], bool] | None) -> None:
        combined = [(h << 64) | v for h, values in self._delta.items() for v in values]
        self._delta = {}
        self._delta_count = 0
        self._push_run(combined, keep)

    def _push_run(self, combined: list[int], keep: Callable[[int], bool] | None) -> None:
        combined.sort()
        self.runs.append(_split(combined))
        # Binary-counter merging keeps O(log n) runs and re-sorts each key O(log n) times.
        while len(self.runs) >= 2 and len(self.runs[-2][0]) <= 2 * len(self.runs[-1][0]):
            (k2, v2), (k1, v1) = self.runs.pop(), self.runs.pop()
            merged = [(h << 64) | v for h, v in zip(k1, v1, strict=True)]
            merged += [(h << 64) | v for h, v in zip(k2, v2, strict=True)]
            if keep is not None:
                merged = [c for c in merged if keep(c & _U64)]
            merged.sort()  # two ascending runs: Timsort merges them in linear time
            self.runs.append(_split(merged))


def _split(combined: list[int]) -> tuple[array[int], array[int]]:
    return array("Q", [c >> 64 for c in combined]), array("Q", [c & _U64 for c in combined])


class Match(NamedTuple):
    """One bulletin entity that matches a query. A named tuple: checks may return
    dozens, and building a frozen dataclass costs several times more; ``_asdict()``
    gives the JSON form."""

    bulletin_id: str
    sender: str
    kind: str
    precedence: str
    tlp: str
    grading: str
    created: int
    expires: int | None
    #: Position of the matching entity in the bulletin's ``entities``.
    entity_index: int
    #: The key kind that matched: ``document``, ``name``, ``name~``, ``plate``, ``phone``, ...
    key_kind: str
    #: ``exact`` (same normalised key) or ``similar`` (romanisation-tolerant name key only).
    strength: str


class Hit(NamedTuple):
    """A new bulletin's entity ``entity_index`` names the subject of an active lookout."""

    entity_index: int
    lookout: Match


@dataclass(frozen=True, slots=True)
class IndexStats:
    bulletins: int
    keys: int
    runs: int
    nbytes: int


_Wanted = Callable[[int, int, int], bool]  # (meta, expires, slot) -> include?


class LookoutIndex:
    """In-memory index of bulletin entities. Build with ``LookoutIndex()`` then
    ``add_bulletin``, or all at once with ``LookoutIndex.from_bulletins`` (startup)."""

    def __init__(self, *, delta_max: int = 16_384) -> None:
        self._ids = bytearray()  # 16 bytes per slot
        self._created: array[int] = array("q")
        self._expires: array[int] = array("q")  # 0: never
        self._meta: array[int] = array("H")
        self._sender: array[int] = array("H")
        self._subject: array[int] = array("Q")  # 0: none
        self._senders: list[str] = []
        self._sender_ix: dict[str, int] = {}
        self._keys = _SortedMultiMap(delta_max)
        self._by_id = _SortedMultiMap(delta_max)
        self._by_subject = _SortedMultiMap(delta_max)
        # Withdrawals that arrived before their lookout: raw id -> withdrawing sender
        # indexes (-1: local). A set, so a forged early withdrawal cannot mask a real one.
        self._early_withdrawals: dict[bytes, set[int]] = {}

    # -- building --------------------------------------------------------------------

    @classmethod
    def from_bulletins(cls, bulletins: Iterable[Bulletin], *, delta_max: int = 16_384) -> LookoutIndex:
        """Rebuild from stored bulletins in any order (one sort at the end, no merges).

        Duplicates are indexed once; supersession and withdrawals are resolved after
        everything is loaded, so the result equals adding them one by one.
        """
        index = cls(delta_max=delta_max)
        withdrawals: list[tuple[str, int]] = []
        for b in bulletins:
            slot = index._append(b, bulk=True)
            if WITHDRAW_TAG in b.tags and b.in_reply_to is not None:
                withdrawals.append((b.in_reply_to, index._sender[slot]))
        index._by_id.finish_bulk()
        index._mark_duplicate_ids()
        index._by_subject.finish_bulk()
        for h, slots in index._by_subject.items_sorted():
            index._resolve_subject(h, slots)
        index._keys.finish_bulk(index._posting_live)
        for target, sender_ix in withdrawals:
            index._withdraw_raw(bulletin_id_to_bytes(target), sender_ix)
        return index

    def add_bulletin(self, bulletin: Bulletin) -> bool:
        """Index one bulletin (sent or received). False if it was already indexed."""
        raw = bulletin_id_to_bytes(bulletin.id)
        if self._slot_of(raw) is not None:
            return False
        slot = self._append(bulletin, bulk=False, raw=raw)
        subject = self._subject[slot]
        if subject:
            self._resolve_subject(subject, list(self._by_subject.get(subject)))
        if WITHDRAW_TAG in bulletin.tags and bulletin.in_reply_to is not None:
            self._withdraw_raw(bulletin_id_to_bytes(bulletin.in_reply_to), self._sender[slot])
        for by in self._early_withdrawals.pop(raw, ()):
            self._withdraw_raw(raw, by)
        return True

    def withdraw(self, bulletin_id: str, *, by: str | None = None) -> bool:
        """Stop a bulletin matching. ``by`` (an office id) must be its sender when given;
        ``None`` is the local node's own decision. If the bulletin is not indexed yet,
        the withdrawal waits for it. True if an indexed bulletin was withdrawn now."""
        raw = bulletin_id_to_bytes(bulletin_id)
        return self._withdraw_raw(raw, -1 if by is None else self._intern(by))

    def _withdraw_raw(self, raw: bytes, by: int) -> bool:
        slot = self._slot_of(raw)
        if slot is None:
            self._early_withdrawals.setdefault(raw, set()).add(by)
            return False
        if by != -1 and self._sender[slot] != by:
            return False  # only the originator may withdraw its lookout
        self._meta[slot] |= _WITHDRAWN
        return True

    def _append(self, b: Bulletin, *, bulk: bool, raw: bytes | None = None) -> int:
        raw = raw if raw is not None else bulletin_id_to_bytes(b.id)
        slot = len(self._created)
        grade = b.grading
        self._ids += raw
        self._created.append(b.created)
        self._expires.append(b.expires or 0)
        self._meta.append(
            _KIND[b.kind]
            | _PREC[b.precedence] << 3
            | _TLP[b.tlp] << 5
            | (ord(grade[0]) - 65) << 8
            | (ord(grade[1]) - 49) << 11
        )
        self._sender.append(self._intern(b.sender))
        subject_h = _subject_hash(b)
        self._subject.append(subject_h)
        # Keys first into a local list, then one loop per storage mode: this runs a
        # million times in a rebuild, so the branch stays out of the inner loop.
        country = b.sender[:2]
        base = slot << _SLOT_SHIFT
        keyed = [
            (key_hash(k.kind, k.key), base | _scope_code(k.scope) << 8 | i)
            for i, entity in enumerate(b.entities)
            for k in entity_keys(entity, country)
        ]
        id_h = int.from_bytes(raw[8:], "big")
        if bulk:
            self._by_id.add_bulk(id_h, slot)
            if subject_h:
                self._by_subject.add_bulk(subject_h, slot)
            pk, pv = self._keys.pending()
            for h, posting in keyed:
                pk.append(h)
                pv.append(posting)
        else:
            self._by_id.add(id_h, slot)
            if subject_h:
                self._by_subject.add(subject_h, slot)
            for h, posting in keyed:
                self._keys.add(h, posting, self._posting_live)
        return slot

    def _intern(self, sender: str) -> int:
        ix = self._sender_ix.get(sender)
        if ix is None:
            ix = self._sender_ix[sender] = len(self._senders)
            self._senders.append(sender)
        return ix

    def _slot_of(self, raw: bytes) -> int | None:
        for slot in self._by_id.get(int.from_bytes(raw[8:], "big")):
            if self._ids[slot * 16 : slot * 16 + 16] == raw:
                return slot
        return None

    def _mark_duplicate_ids(self) -> None:
        for _, slots in self._by_id.items_sorted():
            if len(slots) > 1:
                seen: set[bytes] = set()
                for slot in sorted(slots):
                    raw = bytes(self._ids[slot * 16 : slot * 16 + 16])
                    if raw in seen:
                        self._meta[slot] |= _SUPERSEDED
                    seen.add(raw)

    def _resolve_subject(self, subject_h: int, slots: list[int]) -> None:
        by_sender: dict[int, list[int]] = {}
        for slot in slots:
            if self._subject[slot] == subject_h and not self._meta[slot] & _SUPERSEDED:
                by_sender.setdefault(self._sender[slot], []).append(slot)
        for group in by_sender.values():
            newest = max(group, key=lambda s: (self._created[s], self._ids[s * 16 : s * 16 + 16]))
            for slot in group:
                if slot != newest:
                    self._meta[slot] |= _SUPERSEDED

    def _posting_live(self, posting: int) -> bool:
        return not self._meta[posting >> _SLOT_SHIFT] & _INACTIVE

    # -- asking ------------------------------------------------------------------------

    def check(self, query: Mapping[str, Any], now_ms: int, *, country: str | None = None, limit: int = 100) -> list[Match]:
        """Active lookouts naming the entity ``query`` (an entity dict as in a bulletin,
        e.g. ``{"type": "document", "number": "P1234567", "country": "LA"}``).

        ``country`` is the checking office's country, for national phone numbers
        (a phone query's own ``country`` takes precedence: see ``query_keys``).
        Best first: exact before similar, then precedence, then newest. Raises
        ``ValidationError`` for a query that names nothing to look up.
        """
        keys = query_keys(query, country)
        return self._lookup(keys, lambda meta, expires, _slot: _is_active(meta, expires, now_ms), limit)

    def mentions(
        self, query: Mapping[str, Any], now_ms: int, *, country: str | None = None, limit: int = 100
    ) -> list[Match]:
        """Bulletins of other kinds (incidents, replies, intelligence) naming the entity."""
        keys = query_keys(query, country)
        return self._lookup(keys, lambda meta, _expires, _slot: _is_mention(meta), limit)

    def hits_for(self, bulletin: Bulletin, now_ms: int, *, limit: int = 100) -> list[Hit]:
        """Active lookouts that a new bulletin's entities name (to raise hits for).

        The bulletin itself, lookouts it supersedes or withdraws, and other versions of
        its own subject are not hits. Works whether or not it was indexed already.
        """
        raw = bulletin_id_to_bytes(bulletin.id)
        skip_ids = {raw}
        if WITHDRAW_TAG in bulletin.tags and bulletin.in_reply_to is not None:
            skip_ids.add(bulletin_id_to_bytes(bulletin.in_reply_to))
        subject_h = _subject_hash(bulletin)
        ids, subjects = self._ids, self._subject

        def wanted(meta: int, expires: int, slot: int) -> bool:
            if not _is_active(meta, expires, now_ms):
                return False
            if subject_h and subjects[slot] == subject_h:
                return False
            return bytes(ids[slot * 16 : slot * 16 + 16]) not in skip_ids

        hits: list[Hit] = []
        for i, entity in enumerate(bulletin.entities):
            keys = entity_keys(entity, bulletin.sender[:2])
            for m in self._lookup(keys, wanted, limit - len(hits)):
                hits.append(Hit(i, m))
            if len(hits) >= limit:
                break
        return hits

    def is_active(self, bulletin_id: str, now_ms: int) -> bool:
        """True if the bulletin is indexed and is an active lookout at ``now_ms``."""
        slot = self._slot_of(bulletin_id_to_bytes(bulletin_id))
        return slot is not None and _is_active(self._meta[slot], self._expires[slot], now_ms)

    def _lookup(self, keys: list[IndexKey], wanted: _Wanted, limit: int) -> list[Match]:
        meta, expires = self._meta, self._expires
        best: dict[int, tuple[int, str]] = {}  # (slot << 8 | entity) -> (rank, key kind)
        for k in keys:
            rank = 1 if k.kind == "name~" else 0
            scope = _scope_code(k.scope)
            for posting in self._keys.get(key_hash(k.kind, k.key)):
                if scope and not _scopes_agree(scope, (posting >> 8) & 0xFFFFF):
                    continue
                slot = posting >> _SLOT_SHIFT
                if not wanted(meta[slot], expires[slot], slot):
                    continue
                ref = slot << 8 | (posting & 0xFF)
                if ref not in best or best[ref][0] > rank:
                    best[ref] = (rank, k.kind)
        created = self._created
        order = sorted(best, key=lambda r: (best[r][0], (meta[r >> 8] >> 3) & 3, -created[r >> 8], r))
        return [self._match(r >> 8, r & 0xFF, *best[r]) for r in order[: max(limit, 0)]]

    def _match(self, slot: int, entity_index: int, rank: int, key_kind: str) -> Match:
        meta = self._meta[slot]
        return Match(
            _id_text(self._ids[slot * 16 : slot * 16 + 16]),
            self._senders[self._sender[slot]],
            KINDS[meta & 7],
            PRECEDENCES[(meta >> 3) & 3],
            TLP_LABELS[(meta >> 5) & 7],
            chr(65 + ((meta >> 8) & 7)) + chr(49 + ((meta >> 11) & 7)),
            self._created[slot],
            self._expires[slot] or None,
            entity_index,
            key_kind,
            "similar" if rank else "exact",
        )

    # -- size --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._created)

    def stats(self) -> IndexStats:
        nbytes = sum(
            sys.getsizeof(a) for a in (self._ids, self._created, self._expires, self._meta, self._sender, self._subject)
        )
        nbytes += self._keys.nbytes() + self._by_id.nbytes() + self._by_subject.nbytes()
        return IndexStats(
            bulletins=len(self._created),
            keys=len(self._keys),
            runs=len(self._keys.runs),
            nbytes=nbytes,
        )


def _subject_hash(b: Bulletin) -> int:
    """Hash of (sender, subject tag), or 0 when the bulletin has no subject tag."""
    for tag in b.tags:
        if tag.startswith(SUBJECT_TAG_PREFIX):
            return key_hash("subject", f"{b.sender}\x1f{tag}")
    return 0


def _is_active(meta: int, expires: int, now_ms: int) -> bool:
    return (meta & 7) in _ACTIVE_KIND_CODES and not meta & _INACTIVE and (not expires or now_ms < expires)


def _is_mention(meta: int) -> bool:
    return (meta & 7) not in _ACTIVE_KIND_CODES and not meta & _INACTIVE


_KEY_FIELD = {"document": "number", "person": "name", "vehicle": "plate", "phone": "number", "vessel": "name", "organisation": "name"}


_COUNTRY_FIELDS = ("country", "nationality", "flag")


def query_keys(query: Mapping[str, Any], country: str | None = None) -> list[IndexKey]:
    """Validate a check query (an entity dict) and give its keys.

    A document query needs no ``doc_type`` (an officer checking a number rarely knows
    it). A phone query may name the ``country`` of a number written in its national
    form (a phone entity has no such field; default: ``country``, the checking
    office's). Digits of any script are read as ASCII digits before validating, as the
    keys read them. Raises ``ValidationError`` naming the field for anything malformed.
    """
    if not isinstance(query, Mapping):
        raise ValidationError("query", "must be an object such as {\"type\": \"document\", \"number\": \"P1234567\"}")
    kind = query.get("type")
    if kind not in _KEY_FIELD:
        checkable = ", ".join(t for t in ENTITY_TYPES if t in _KEY_FIELD)
        raise ValidationError("type", f"must be one of {checkable}; got {kind!r}"[:200])
    q = {k: ascii_digits(v) if isinstance(v, str) else v for k, v in query.items()}
    for field in _COUNTRY_FIELDS:  # an officer types "la" as readily as "LA"
        if isinstance(q.get(field), str):
            q[field] = q[field].strip().upper()
    if kind == "document":
        q.setdefault("doc_type", "other")
    if kind == "vessel":  # "IMO 9074729", "9074 729": the number is its digits
        for field in ("imo", "mmsi"):
            if isinstance(q.get(field), str):
                q[field] = "".join(ch for ch in q[field] if ch.isdigit()) or q[field]
    region = q.pop("country", None) if kind == "phone" else None
    if region:
        if not (isinstance(region, str) and len(region) == 2 and region.isalpha()):
            raise ValidationError("country", f"must be a two-letter country code such as LA; got {region!r}"[:200])
        country = region
    entity = validate_entity(q)
    if kind == "phone":
        normalise_phone(entity["number"], country)  # raises an actionable error for national numbers
    keys = entity_keys(entity, country)
    if not keys:
        raise ValidationError(_KEY_FIELD[kind], "has nothing left to look up after normalising")
    return keys
