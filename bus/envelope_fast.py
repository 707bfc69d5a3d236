"""Sealing and opening bulletins faster: the same bytes and answers as ``bus.envelope``.

``bus.envelope`` is the reference, written to be read beside ENVELOPE.md. A node seals
and opens thousands of bulletins to the same few offices and feeds, and beyond the
crypto most of what the reference spends recurs from one bulletin to the next: checking
the same recipients, deriving the same wrap keys, encoding the same header fields,
decoding and checking headers that differ only in ids, times, nonces and wraps. The
classes here keep those, and nothing else differs:

* ``FastSealer`` keeps, per recipient list, a checked *plan* (each entry's head bytes,
  wrap key and associated-data tail, valid while ``now_ms`` stays inside the recipients'
  common validity window and the ephemeral key stays the same), writes the header by
  concatenating bytes that are exactly what ``msgpack.packb`` gives for its list form,
  and draws its randomness in one call when it is the system generator;
* ``FastOpener`` keeps derived wrap keys, and recognises headers in their canonical
  encoding with one regular expression, then, for a header shape seen twice, a *layout*
  (a ``struct`` format that reads every byte that does not vary between bulletins of
  that sender to those recipients in one call).

The vectors (``tests/test_vectors.py``) and the property tests (``tests/test_fuzz_open.py``)
run the reference and these classes on the same inputs and require the same bytes and
the same outcomes.

**Threads.** A node opens large batches on several threads with one ``FastOpener``.
Its caches are plain dicts: every read and every write is one dict operation, a value is
built completely before it is stored, and a cache is only ever cleared whole. So a
thread sees a complete entry or none, and at worst derives again what another thread
was storing. Nothing cached can open what the reference refuses: every open checks
again, against the live ``box_keys`` and ``feed_keys``, that the entry it uses is ours
(so a kept layout or wrap key of an erased inbox key or epoch key is never used), and
``forget`` drops every derived key at once (call it after erasing keys, so no wrap key
derived from an erased secret stays in memory).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import nacl.utils

from bus import errors, sodium
from bus.bulletin import PRECEDENCES, Bulletin, is_office_id
from bus.envelope import (
    KEY_BYTES,
    MAX_RECIPIENTS,
    NONCE_BYTES,
    PUBLIC_KEY_BYTES,
    RECIPIENT_FEED,
    RECIPIENT_OFFICE,
    SIGNATURE_BYTES,
    WRAP_AD_LABEL,
    WRAP_BYTES,
    Header,
    OfficeRecipient,
    Opened,
    Opener,
    Recipient,
    RecipientRef,
    Sealer,
    Via,
    _decode_body,
    check_feed_recipient,
    check_header,
    check_office_recipient,
    check_recipients,
    check_seal_inputs,
    check_sealed_size,
    check_sender_key,
    check_times,
    encode_body,
    feed_kek,
    receiver_office_kek,
    sender_office_kek,
    signed_message,
    split_envelope,
    unpack,
    verify_detached,
)
from bus.ids import BULLETIN_ID_BYTES, KEY_ID_BYTES, Rng, bulletin_id_to_bytes
from bus.keys import PeerKeys
from bus.timing import MAX_AGE_MS, MAX_FUTURE_SKEW_MS

_system_rng = nacl.utils.random
_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack

_BIN_NONCE = b"\xc4\x18"  # msgpack bin8 of NONCE_BYTES
_BIN_WRAP = b"\xc4\x30"  # msgpack bin8 of WRAP_BYTES
#: A header opens with an array-of-8 head and the bulletin id's bin8 head; the id ends here.
_ID_END = 3 + BULLETIN_ID_BYTES


def _tail(kind: int, rid: str, ref: bytes | int) -> bytes:
    """What follows the label and bulletin id in a wrap's associated data (7.4): the same
    for every bulletin to one recipient entry, so it is built once."""
    ref_bytes = ref if isinstance(ref, bytes) else struct.pack(">Q", ref)
    return b"".join((bytes((kind,)), rid.encode(), b"\x00", ref_bytes))


def _entry_head(kind: int, rid: str, ref: bytes | int) -> bytes:
    """A recipient entry's first bytes: array of 5, then kind, id and key ref."""
    return b"\x95" + _packb(kind) + _packb(rid) + _packb(ref)


def _array_head(n: int) -> bytes:
    """The msgpack array header of ``n`` (< 65536) items."""
    return bytes((0x90 + n,)) if n < 16 else b"\xdc" + n.to_bytes(2, "big")


# -- sealing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """What sealing to one office needs, checked once for one directory record."""

    keys: PeerKeys  # held, so the id() the cache is keyed by stays this record's
    kek: bytes
    tail: bytes
    head: bytes
    valid_from: int
    valid_before: float


@dataclass(frozen=True, slots=True)
class _Plan:
    """A checked recipient list: each entry's (head bytes, wrap key, associated-data tail),
    valid while ``now_ms`` is in ``[valid_from, valid_before)``."""

    records: tuple[PeerKeys, ...]
    valid_from: int
    valid_before: float
    entries: tuple[tuple[bytes, bytes, bytes], ...]


class FastSealer(Sealer):
    """``Sealer`` with its checks and derivations kept per recipient list (see module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._targets: dict[int, _Target] = {}  # id(PeerKeys) -> checked target
        self._plans: dict[tuple[int | None, ...], _Plan] = {}
        self._feed_keks: dict[tuple[str, int, bytes], bytes] = {}
        self._sender_fields = b""

    def _new_ephemeral(self) -> None:
        # Every office wrap key derives from the ephemeral key: none survives it.
        self._targets.clear()
        self._plans.clear()
        assert self._ephemeral is not None
        ident = self.identity
        self._sender_fields = _packb(ident.office_id) + _packb(ident.signing.kid) + _packb(self._ephemeral.key.public)

    def _office_target(self, keys: PeerKeys, now_ms: int) -> _Target:
        if not is_office_id(keys.office_id):
            raise errors.ValidationError("recipients", f"{keys.office_id!r} is not an office id")
        check_office_recipient(keys, now_ms)
        assert self._ephemeral is not None
        kek = sender_office_kek(self._ephemeral.key, keys.box_public, keys.office_id)
        ends = [t for t in (keys.revoked_at, keys.valid_until) if t is not None]
        target = _Target(
            keys, kek, _tail(RECIPIENT_OFFICE, keys.office_id, keys.box_kid),
            _entry_head(RECIPIENT_OFFICE, keys.office_id, keys.box_kid), keys.valid_from, min(ends, default=float("inf")),
        )  # fmt: skip
        if len(self._targets) >= 4096:  # bounded: directory records come and go
            self._targets.clear()
        self._targets[id(keys)] = target
        return target

    def _plan(self, recipients: Sequence[Recipient], now_ms: int) -> tuple[tuple[bytes, bytes, bytes], ...]:
        """The entries of ``recipients`` after the checks seal makes, kept by the identities
        of the directory records they were checked against (a plan holds its records, so no
        other object can take their ids while it is kept). A list naming a feed is
        planned afresh each time (feed recipients are values built per post)."""
        key = tuple([id(r.keys) if type(r) is OfficeRecipient else None for r in recipients])
        plan = self._plans.get(key)
        if plan is not None and plan.valid_from <= now_ms < plan.valid_before:
            return plan.entries
        check_recipients(recipients, now_ms)
        entries: list[tuple[bytes, bytes, bytes]] = []
        records: list[PeerKeys] = []
        valid_from, valid_before = 0, float("inf")
        for r in recipients:
            if isinstance(r, OfficeRecipient):
                target = self._targets.get(id(r.keys))
                if target is None or target.keys is not r.keys or not target.valid_from <= now_ms < target.valid_before:
                    target = self._office_target(r.keys, now_ms)
                records.append(r.keys)
                valid_from, valid_before = max(valid_from, target.valid_from), min(valid_before, target.valid_before)
                entries.append((target.head, target.kek, target.tail))
            else:
                check_feed_recipient(r)
                cache_key = (r.feed, r.epoch, r.epoch_key)
                kek = self._feed_keks.get(cache_key)
                if kek is None:
                    if len(self._feed_keks) >= 256:  # bounded: epochs come and go
                        self._feed_keks.clear()
                    kek = self._feed_keks[cache_key] = feed_kek(r.feed, r.epoch, r.epoch_key)
                entries.append((_entry_head(RECIPIENT_FEED, r.feed, r.epoch), kek, _tail(RECIPIENT_FEED, r.feed, r.epoch)))
        checked = tuple(entries)
        if None not in key:
            if len(self._plans) >= 256:  # bounded: recipient lists and records come and go
                self._plans.clear()
            self._plans[key] = _Plan(tuple(records), valid_from, valid_before, checked)
        return checked

    def seal(
        self,
        bulletin: Bulletin,
        recipients: Sequence[Recipient],
        *,
        now_ms: int,
        rng: Rng = nacl.utils.random,
    ) -> bytes:
        if bulletin.sender != self.identity.office_id:
            check_seal_inputs(self.identity, bulletin, recipients, now_ms)  # raises the reference's error
        if type(now_ms) is not int or not 0 <= now_ms < 1 << 48:
            check_recipients(recipients, now_ms)
        # The draws in the spec's order: the ephemeral secret when a new one is due (which
        # drops every kept plan: their wrap keys derive from it), then the rest.
        self.ephemeral(now_ms, rng)
        plan = self._plan(recipients, now_ms)
        pooled = rng is _system_rng
        bid = bulletin_id_to_bytes(bulletin.id)
        ad_head = WRAP_AD_LABEL + bid
        parts: list[bytes] = []
        encrypt = sodium.aead_encrypt
        if pooled:  # one draw for the whole seal: each call costs more than its bytes
            pool = rng(KEY_BYTES + NONCE_BYTES * (len(recipients) + 1))
            content_key, content_nonce = pool[:KEY_BYTES], pool[KEY_BYTES : KEY_BYTES + NONCE_BYTES]
            at = KEY_BYTES + NONCE_BYTES
            for head, kek, tail in plan:
                nonce = pool[at : at + NONCE_BYTES]
                at += NONCE_BYTES
                parts += (head, _BIN_NONCE, nonce, _BIN_WRAP, encrypt(content_key, ad_head + tail, nonce, kek))
        else:
            content_key = rng(KEY_BYTES)
            content_nonce = rng(NONCE_BYTES)
            for head, kek, tail in plan:
                nonce = rng(NONCE_BYTES)
                wrapped = encrypt(content_key, ad_head + tail, nonce, kek)
                if len(nonce) == NONCE_BYTES and len(wrapped) == WRAP_BYTES:
                    parts += (head, _BIN_NONCE, nonce, _BIN_WRAP, wrapped)
                else:  # other lengths: encode them as msgpack does
                    parts += (head, _packb(nonce), _packb(wrapped))
        header = b"".join((
            b"\x98\xc4\x10", bid, self._sender_fields, _packb(now_ms), _packb(bulletin.precedence),
            _BIN_NONCE, content_nonce, _array_head(len(recipients)), *parts,
        ))  # fmt: skip
        body = encode_body(bulletin)
        signature = sodium.sign(signed_message(header, body), self.identity.signing.secret)
        ciphertext = encrypt(signature + body, header, content_nonce, content_key)
        return check_sealed_size(_packb([2, header, ciphertext]), self.max_bytes)


# -- opening ---------------------------------------------------------------------------

# The canonical msgpack encoding of a well-formed v2 header, as one regular expression
# over its bytes (section 6; strings by length, since a msgpack str carries its length in
# front). A header that matches it and that msgpack decodes passes every check of step 6
# but the entry count (checked beside it), so the field-by-field checks are skipped for
# it; anything else (a wider encoding, a malformed header) takes them.


def _msgpack_str(lengths: range, text: Callable[[int], bytes]) -> bytes:
    """A msgpack str (fixstr or str8) of any of ``lengths``, its text matching ``text(n)``."""
    heads = {n: bytes((0xA0 + n,)) if n < 32 else b"\xd9" + bytes((n,)) for n in lengths}
    return b"(?:" + b"|".join(re.escape(heads[n]) + text(n) for n in lengths) + b")"


_OFFICE_STR = _msgpack_str(range(5, 16), lambda n: b"[A-Z]{2}-[A-Z0-9]{%d}" % (n - 3))  # section 4.3
_FEED_STR = _msgpack_str(range(1, 64), lambda n: b"[a-z0-9][a-z0-9-]{%d}" % (n - 1))
# An epoch 1..2^63-1: a positive fixint but 0, or uint 8/16/32/64 with the top bit clear.
_EPOCH = rb"(?:[\x01-\x7f]|\xcc.|\xcd.{2}|\xce.{4}|\xcf[\x00-\x7f].{7})"
_UINT48 = rb"(?:[\x00-\x7f]|\xcc.|\xcd.{2}|\xce.{4}|\xcf\x00\x00.{6})"
_PRECEDENCE = b"(?:" + b"|".join(bytes((0xA0 + len(p),)) + p.encode() for p in PRECEDENCES) + b")"
_ENTRY = rb"\x95(?:\x01" + _OFFICE_STR + rb"\xc4\x08.{8}|\x02" + _FEED_STR + _EPOCH + rb")\xc4\x18.{24}\xc4\x30.{48}"
_CANONICAL_HEADER = re.compile(
    rb"\x98\xc4\x10.{16}" + _OFFICE_STR + rb"\xc4\x08.{8}\xc4\x20.{32}" + _UINT48 + _PRECEDENCE
    + rb"\xc4\x18.{24}(?:[\x91-\x9f]|\xdc.{2})(?:" + _ENTRY + rb")+",
    re.DOTALL,
)  # fmt: skip


def checked_header(header: bytes) -> tuple[Header, bool]:
    """Step 6, and whether the header is the canonical encoding of its fields (then it may
    have a layout)."""
    h = unpack(header, "header")
    if _CANONICAL_HEADER.fullmatch(header) is not None and len(h[7]) <= MAX_RECIPIENTS:
        return Header(*h), True
    return check_header(h), False


# -- recurring headers -------------------------------------------------------------------
# A sender's headers to the same recipients differ only in the bulletin id, the low bytes
# of sent-at, the nonces and the wraps: bin contents of fixed length, and a uint whose top
# bytes are fixed. So once such a header has passed the canonical check twice in the same
# shape, the opener keeps its *layout*: a struct format that reads every other byte (msgpack
# heads, sender, signing key id, ephemeral key, precedence, each entry's kind, id and key
# ref) in one C call. A later header of the same length that reads the same has the same
# structure and the same values in every field but those listed, whose types and lengths
# the layout fixes, so it passes step 6 as its model did. Step 7 is checked again on every
# open (our entry must still be ours, and no entry before it may have become ours: a layout
# is kept only when every entry before ours names an office, and whether such an entry is
# ours is checked against the live inbox keys).


@dataclass(frozen=True, slots=True)
class _Layout:
    shape: struct.Struct  # reads the shared bytes, skips the varying ones
    shared: tuple[Any, ...]  # what it read from the model header
    sender: tuple[str, bytes, bytes, str]  # sender, signing key id, ephemeral key, precedence
    sent_at_at: int  # where sent-at's low 6 bytes start (its head and top 2 bytes are shared)
    nonce_at: int  # where the content nonce starts
    before: tuple[tuple[str, bytes], ...]  # the (office, key id) of the entries before ours
    entry: tuple[int, str, bytes | int]  # our entry's kind, id and key ref
    entry_at: int  # where our entry's nonce starts (its wrap follows its bin8 head)


def _header_key(header: bytes) -> tuple[int, bytes]:
    """What tells recurring headers apart cheaply: the length, and the 26 bytes after the
    id (the sender and its signing key id, for every office id up to 15 characters)."""
    return len(header), header[_ID_END : _ID_END + 26]


def _layout(header: bytes, h: Header, index: int) -> _Layout | None:
    """The layout of a canonical header whose entry ``index`` is the one we open through."""
    entries = h.entries
    if any(e[0] != RECIPIENT_OFFICE for e in entries[:index]):
        return None
    at = _ID_END + len(_packb(h.sender)) + (2 + KEY_ID_BYTES) + (2 + PUBLIC_KEY_BYTES)
    if header[at] != 0xCF:  # sent-at as uint 64: every time from 1970-02-19 on
        return None
    fmt = ["<3s16x", f"{at + 3 - _ID_END}s6x"]  # heads, the id; sender to sent-at's top bytes, its low 6
    sent_at_at, at = at + 3, at + 9
    shared = len(_packb(h.precedence)) + 2  # precedence, the nonce's bin8 head
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
    before = tuple((x[1], x[2]) for x in entries[:index])
    return _Layout(
        shape, shape.unpack(header), (h.sender, h.sign_kid, h.ephemeral_public, h.precedence), sent_at_at, nonce_at,
        before, (e[0], e[1], e[2]), entry_at,
    )  # fmt: skip


class FastOpener(Opener):
    """``Opener`` with derived wrap keys and header layouts kept (see module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keks: dict[tuple[bytes, bytes], bytes] = {}  # (inbox kid, ephemeral public) -> kek
        self._feed_keks: dict[tuple[str, int, bytes], bytes] = {}
        #: (kind, id, ref) of an entry addressed to us -> its RecipientRef and wrap-ad tail
        self._vias: dict[tuple[int, str, bytes | int], tuple[RecipientRef, bytes]] = {}
        #: _header_key -> the layout of headers that recur in that shape, or False when a
        #: header of that key was seen once (or its layout stopped fitting)
        self._layouts: dict[tuple[int, bytes], _Layout | bool] = {}

    def forget(self) -> None:
        """Drop every derived wrap key and layout (after inbox or epoch keys were erased)."""
        self._keks = {}
        self._feed_keks = {}
        self._vias = {}
        self._layouts = {}

    def kek_for(self, entry: list[Any], ephemeral_public: bytes) -> bytes:
        kind, rid, ref = entry[0], entry[1], entry[2]
        if kind == RECIPIENT_FEED:
            epoch_key = self.feed_keys[(rid, ref)]
            cache = self._feed_keks
            fkey = (rid, ref, epoch_key)
            kek = cache.get(fkey)
            if kek is None:
                if len(cache) >= 1024:
                    self._feed_keks = cache = {}
                kek = cache[fkey] = feed_kek(rid, ref, epoch_key)
            return kek
        box = self.box_keys[ref]  # ours now: step 7 checked it against the live keys
        okey = (ref, ephemeral_public)
        keks = self._keks
        kek = keks.get(okey)
        if kek is None:
            if len(keks) >= 4096:  # bounded: senders draw a new ephemeral key every few minutes
                self._keks = keks = {}
            kek = keks[okey] = receiver_office_kek(box, ephemeral_public)
        return kek

    def _first_ours(self, entries: list[list[Any]], via: Via | None) -> list[Any]:
        """Step 7 (``Opener.entry_for``) without building the list of our entries."""
        office, kids, feeds = self.office_id, self.box_keys, self.feed_keys
        for e in entries:
            ours = (e[1] == office and e[2] in kids) if e[0] == RECIPIENT_OFFICE else (e[1], e[2]) in feeds
            if ours and (via is None or (e[0], e[1]) == via):
                return e
        return self.entry_for(entries, via)  # raises the reference's error

    def _via(self, entry: list[Any]) -> tuple[RecipientRef, bytes]:
        key = (entry[0], entry[1], entry[2])
        found = self._vias.get(key)
        if found is None:
            if len(self._vias) >= 1024:
                self._vias = {}
            found = self._vias[key] = (RecipientRef(*key), _tail(*key))
        return found

    def _learn(self, key: tuple[int, bytes], prior: _Layout | bool | None, header: bytes, h: Header, entry: list[Any]) -> None:
        """Keep the layout of a header seen twice in this shape, so one-off recipient lists
        cost nothing more; a kept layout that stops matching is forgotten, and relearnt if
        its successor recurs."""
        layouts = self._layouts
        if prior is not False:  # first sighting, or a layout that no longer fits
            if len(layouts) >= 256:
                self._layouts = layouts = {}
            layouts[key] = False
            return
        index = next(i for i, e in enumerate(h.entries) if e is entry)
        layouts[key] = _layout(header, h, index) or False

    def _layout_entry(self, layout: _Layout, header: bytes, via: Via | None) -> list[Any] | None:
        """Our entry of a header that reads as ``layout``'s model, when step 7 still picks
        the same entry for it: our entry is still ours and no entry before it became ours."""
        kind, rid, ref = layout.entry
        if via is not None and (kind, rid) != via:
            return None
        if kind == RECIPIENT_OFFICE:
            if rid != self.office_id or ref not in self.box_keys:
                return None
        elif (rid, ref) not in self.feed_keys:
            return None
        office, kids = self.office_id, self.box_keys
        if via is None or via[0] == RECIPIENT_OFFICE:
            for other, kid in layout.before:
                if other == office and kid in kids:
                    return None
        at = layout.entry_at
        return [kind, rid, ref, header[at : at + NONCE_BYTES], header[at + NONCE_BYTES + 2 : at + NONCE_BYTES + 2 + WRAP_BYTES]]

    def open(self, data: bytes, *, witnessed_at: int, via: Via | None = None) -> Opened:
        header, ciphertext = split_envelope(data, max_bytes=self.max_bytes)
        key = _header_key(header)
        layout = self._layouts.get(key)
        entry = None
        if layout and layout.shape.unpack(header) == layout.shared:  # steps 6 and 7 for a known layout
            entry = self._layout_entry(layout, header, via)
        if entry is not None:
            assert isinstance(layout, _Layout)
            sender_id, sign_kid, ephemeral_public, precedence = layout.sender
            bid = header[3:_ID_END]
            sent_at = int.from_bytes(header[layout.sent_at_at : layout.sent_at_at + 6], "big")
            content_nonce = header[layout.nonce_at : layout.nonce_at + NONCE_BYTES]
        else:
            h, canonical = checked_header(header)
            entry = self._first_ours(h.entries, via)
            if canonical:
                self._learn(key, layout, header, h, entry)
            bid, sender_id, sign_kid, ephemeral_public = h.bulletin_id, h.sender, h.sign_kid, h.ephemeral_public
            sent_at, precedence, content_nonce = h.sent_at, h.precedence, h.content_nonce
        # Steps 8-10 as the reference makes them, their common case in one comparison each.
        if not witnessed_at - MAX_AGE_MS <= sent_at <= witnessed_at + MAX_FUTURE_SKEW_MS:
            check_times(Header(bid, sender_id, sign_kid, ephemeral_public, sent_at, precedence, content_nonce, []), witnessed_at)
        sender = self.resolver.sender_keys(sender_id, sign_kid)
        if (
            sender is None
            or sender.revoked_at is not None
            or sent_at < sender.valid_from
            or (sender.valid_until is not None and sent_at >= sender.valid_until)
        ):
            h = Header(bid, sender_id, sign_kid, ephemeral_public, sent_at, precedence, content_nonce, [])
            sender = check_sender_key(h, sender, witnessed_at)
        via_ref, tail = self._via(entry)
        try:
            kek = self.kek_for(entry, ephemeral_public)
            content_key = sodium.aead_decrypt(entry[4], WRAP_AD_LABEL + bid + tail, entry[3], kek)
            plaintext = sodium.aead_decrypt(ciphertext, header, content_nonce, content_key)
        except sodium.CryptoError as exc:
            raise errors.DecryptionFailed(
                "the bulletin failed authentication: it was altered in transit, or its header does not match its content"
            ) from exc
        signature, body = plaintext[:SIGNATURE_BYTES], plaintext[SIGNATURE_BYTES:]
        verify_detached(sender.sign_public, header, body, signature)
        bulletin = _decode_body(bid, sender_id, precedence, body)
        return Opened(bulletin, sent_at, witnessed_at, sign_kid, ephemeral_public, via_ref, header, body, signature, data)
