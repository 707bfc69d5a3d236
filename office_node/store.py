"""The bulletin store: every bulletin this node sent or received, kept for reading,
searching, re-verifying and forwarding.

A row keeps the bulletin as JSON for display, and the exact bytes that travelled (the
sealed envelope, and its header, body and signature) so a bulletin can be checked again
later against the directory of that day, or forwarded with its original signature.

One row per bulletin id: a second delivery of the same bulletin (JetStream redelivery,
or the same bulletin reaching us through our inbox and a feed) changes nothing, and a
bulletin we sent that comes back on a feed stays a "sent" row.

Search works for Thai and Lao, which write no spaces between words: an FTS5 index with
the trigram tokenizer matches any run of 3+ characters anywhere in the title, body,
entity values and tags. Shorter query words fall back to LIKE. Entity values (document
numbers, plates, names) are indexed both as written and "compacted" (spaces, dashes and
other punctuation removed), and a query is compacted too, so ``P-0847 211`` finds
``P0847211``. A second index holds each bulletin's text folded to Latin letters and its
consonant keys (``office_node/search.py``: what a query means, how a name is found
across scripts, and the snippet under a result).

Lists are newest first: by the time the bulletin reached this store (``at``: received-at
for received bulletins, sent-at for our own), ties broken by arrival order. Paging uses
an opaque cursor, stable while new bulletins arrive.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bus import (
    KINDS,
    PRECEDENCES,
    RECIPIENT_FEED,
    Bulletin,
    KeyResolver,
    Opened,
    bulletin_id_from_bytes,
    bulletin_id_to_bytes,
    encode_body,
    errors,
    is_feed_name,
    is_office_id,
    key_problem,
    parse_header,
    split_envelope,
    verify_detached,
)
from office_node import search
from office_node.db import Database
from office_node.paging import decode_cursor, encode_cursor

SENT, RECEIVED = "sent", "received"
DIRECTIONS = (SENT, RECEIVED)
RECEIPT_KINDS = ("delivered", "read", "acknowledged")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_QUERY_CHARS = 200
#: The trigram index needs this many characters; shorter words are matched with LIKE.
TRIGRAM = 3


# -- values -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredBulletin:
    """One stored bulletin, as the API and web page show it."""

    seq: int
    id: str
    direction: str
    sender: str
    sender_sign_kid: str | None  # hex
    sender_ephemeral: str | None  # hex: the sender's ephemeral X25519 key in the header
    sent_at: int
    received_at: int | None
    #: When the server stored it (received bulletins): what a revocation is judged by.
    witnessed_at: int | None
    at: int
    precedence: str
    kind: str
    tlp: str
    feed: str | None
    title: str
    bulletin: dict[str, Any]
    recipients: tuple[str, ...]  # office ids and feed names
    verified: bool
    verification: dict[str, Any]
    read_at: int | None
    read_by: str | None

    @property
    def is_read(self) -> bool:
        return self.read_at is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "direction": self.direction,
            "sender": self.sender,
            "sender_sign_kid": self.sender_sign_kid,
            "sent_at": self.sent_at,
            "received_at": self.received_at,
            "witnessed_at": self.witnessed_at,
            "precedence": self.precedence,
            "kind": self.kind,
            "tlp": self.tlp,
            "feed": self.feed,
            "title": self.title,
            "recipients": list(self.recipients),
            "verified": self.verified,
            "verification": self.verification,
            "read": self.is_read,
            "read_at": self.read_at,
            "read_by": self.read_by,
            "bulletin": self.bulletin,
        }


@dataclass(frozen=True, slots=True)
class SealedParts:
    """The exact bytes of a stored bulletin, for re-verification and forwarding."""

    sealed: bytes
    header: bytes
    body: bytes
    signature: bytes | None  # None for bulletins this node sent


@dataclass(frozen=True, slots=True)
class ReceiptRecord:
    bulletin_id: str
    office: str
    kind: str  # delivered | read
    at: int  # the recipient's signed time
    received_at: int
    verified: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "office": self.office,
            "kind": self.kind,
            "at": self.at,
            "received_at": self.received_at,
            "verified": self.verified,
        }


@dataclass(frozen=True, slots=True)
class HitRecord:
    """A new bulletin's entity named the subject of an active lookout."""

    bulletin_id: str
    lookout_id: str
    entity_index: int
    lookout_sender: str
    key_kind: str
    strength: str
    at: int
    notice: str  # "sent", "own" (our own lookout), "pending", or "withheld:<reason>"
    notice_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "bulletin_id": self.bulletin_id,
            "lookout_id": self.lookout_id,
            "entity_index": self.entity_index,
            "lookout_sender": self.lookout_sender,
            "key_kind": self.key_kind,
            "strength": self.strength,
            "at": self.at,
            "notice": self.notice,
            "notice_id": self.notice_id,
        }


@dataclass(frozen=True, slots=True)
class Page:
    items: list[StoredBulletin]
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        return {"items": [b.to_json() for b in self.items], "next_cursor": self.next_cursor}


def _tuple_of(field_name: str, value: Any, options: tuple[str, ...]) -> tuple[str, ...]:
    values = (value,) if isinstance(value, str) else tuple(value)
    for v in values:
        if v not in options:
            raise errors.ValidationError(field_name, f"must be one of {', '.join(options)}; got {v!r}"[:200])
    return values


def _time_or_none(field_name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 48:
        raise errors.ValidationError(field_name, "must be a time in whole milliseconds since 1970-01-01 UTC")
    return value


@dataclass(frozen=True, slots=True)
class BulletinQuery:
    """Filters for ``Store.list_bulletins``; every one optional, all of them AND-ed.

    ``since`` is inclusive and ``until`` exclusive, both on ``at`` (when the bulletin
    reached this store). ``unread`` means received and not yet read by anyone here.
    Building one validates it: a bad value raises ``ValidationError`` naming the filter.
    """

    kinds: tuple[str, ...] = ()
    precedences: tuple[str, ...] = ()
    feed: str | None = None
    sender: str | None = None
    direction: str | None = None
    since: int | None = None
    until: int | None = None
    unread: bool = False
    in_reply_to: str | None = None
    text: str | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    _cursor_key: tuple[int, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", _tuple_of("kind", self.kinds, KINDS))
        object.__setattr__(self, "precedences", _tuple_of("precedence", self.precedences, PRECEDENCES))
        if self.feed is not None and not is_feed_name(self.feed):
            raise errors.ValidationError("feed", f"must be a feed name (a-z, 0-9, hyphens); got {self.feed!r}"[:200])
        if self.sender is not None and not is_office_id(self.sender):
            raise errors.ValidationError("sender", f"must be an office id such as TH-MUK; got {self.sender!r}"[:200])
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise errors.ValidationError("direction", f"must be sent or received; got {self.direction!r}"[:200])
        _time_or_none("since", self.since)
        _time_or_none("until", self.until)
        if self.in_reply_to is not None:
            try:
                bulletin_id_to_bytes(self.in_reply_to)
            except errors.ValidationError as exc:
                raise errors.ValidationError("in_reply_to", exc.problem) from None
        if self.text is not None:
            if not isinstance(self.text, str):
                raise errors.ValidationError("q", "must be text")
            if len(self.text) > MAX_QUERY_CHARS:
                raise errors.ValidationError("q", f"is {len(self.text)} characters; the limit is {MAX_QUERY_CHARS}")
            if "\x00" in self.text:
                raise errors.ValidationError("q", "must not contain NUL characters")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or not 1 <= self.limit <= MAX_LIMIT:
            raise errors.ValidationError("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
        if self.cursor is not None:
            object.__setattr__(self, "_cursor_key", decode_cursor(self.cursor))

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> BulletinQuery:
        """From HTTP query parameters: ``kind`` and ``precedence`` take comma-separated
        lists, times are milliseconds, ``unread`` is true/false, ``q`` is the search text."""
        known = {"kind", "precedence", "feed", "sender", "direction", "since", "until", "unread", "in_reply_to", "q", "limit", "cursor"}
        for name in params:
            if name not in known:
                raise errors.ValidationError(name, f"is not a known filter; use {', '.join(sorted(known))}")

        def ints(name: str) -> int | None:
            raw = params.get(name)
            if raw is None or raw == "":
                return None
            if not raw.isascii() or not raw.isdigit():
                raise errors.ValidationError(name, f"must be a whole number; got {raw!r}"[:200])
            return int(raw)

        def csv(name: str) -> tuple[str, ...]:
            raw = params.get(name) or ""
            return tuple(p.strip() for p in raw.split(",") if p.strip())

        unread_raw = (params.get("unread") or "false").lower()
        if unread_raw not in ("true", "false", "1", "0"):
            raise errors.ValidationError("unread", f"must be true or false; got {unread_raw!r}"[:200])
        limit = ints("limit")
        return cls(
            kinds=csv("kind"),
            precedences=csv("precedence"),
            feed=params.get("feed") or None,
            sender=params.get("sender") or None,
            direction=params.get("direction") or None,
            since=ints("since"),
            until=ints("until"),
            unread=unread_raw in ("true", "1"),
            in_reply_to=params.get("in_reply_to") or None,
            text=params.get("q") or None,
            limit=DEFAULT_LIMIT if limit is None else limit,
            cursor=params.get("cursor") or None,
        )


# -- text normalisation for the index -------------------------------------------------------


_nfc = search.nfc


def compact(text: str) -> str:
    """``text`` without separators, punctuation and symbols: ``P-0847 211`` -> ``P0847211``.

    Removes by Unicode category (Z*, P*, S*, and control characters) rather than keeping
    only ``isalnum`` characters, which would strip Thai and Lao vowel and tone marks.
    """
    return "".join(c for c in _nfc(text) if unicodedata.category(c)[0] not in "ZPSC")


def _entity_text(entities: Sequence[Mapping[str, Any]]) -> str:
    parts: list[str] = []
    for entity in entities:
        for name, value in entity.items():
            if name == "type":
                continue
            for v in value if isinstance(value, list | tuple) else (value,):
                if isinstance(v, str) and v:
                    parts.append(_nfc(v))
                    short = compact(v)
                    if short and short != v:
                        parts.append(short)
    return "\n".join(parts)


def _index_row(b: Bulletin) -> tuple[str, str, str, str]:
    return _nfc(b.title), _nfc(b.body), _entity_text(b.entities), " ".join(_nfc(t) for t in b.tags)


def _like_pattern(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _phrase(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


_FTS_COLUMNS = ("title", "body", "entities", "tags")


def _alt_row(b: Bulletin) -> tuple[str, str, str]:
    texts = [b.title, b.body, *(v for v in _entity_text(b.entities).split("\n")), *b.tags]
    alt = search.index_texts(texts)
    return alt.folded, alt.keys_latin, alt.keys_native


def _match(table: str, column: str, text: str) -> tuple[str, list[Any]]:
    """``text`` anywhere in ``column`` of an index: the trigram index for 3+ characters, LIKE below."""
    if len(text) >= TRIGRAM:
        return f"b.seq IN (SELECT rowid FROM {table} WHERE {table} MATCH ?)", [f"{column} : {_phrase(text)}"]
    return f"b.seq IN (SELECT rowid FROM {table} WHERE {column} LIKE ? ESCAPE '\\')", [_like_pattern(text)]


def _word_start_match(table: str, column: str, key: str) -> tuple[str, list[Any]]:
    """``key`` at the start of a word of ``column`` (words are space-separated, lines
    newline-separated): the trigram index narrows, LIKE on the spaced column decides."""
    like = f"(' ' || replace({column}, char(10), ' ')) LIKE ? ESCAPE '\\'"
    pattern = "% " + _like_pattern(key)[1:]
    if len(key) >= TRIGRAM:
        return (f"b.seq IN (SELECT rowid FROM {table} WHERE {table} MATCH ? AND {like})",
                [f"{column} : {_phrase(key)}", pattern])
    return f"b.seq IN (SELECT rowid FROM {table} WHERE {like})", [pattern]


def _term_condition(term: search.Term, *, use_keys: bool) -> tuple[str, list[Any]]:
    """SQL (on ``b.seq``) for bulletins holding ``term``: as written; compacted in an entity
    (a document number typed with dashes); folded to Latin letters (``Nguyen`` finds
    ``Nguyễn``); or, across scripts, by its consonant key (search.py)."""
    alts: list[str] = []
    args: list[Any] = []

    def add(sql_args: tuple[str, list[Any]]) -> None:
        alts.append(sql_args[0])
        args.extend(sql_args[1])

    text = term.text
    if len(text) >= TRIGRAM:
        add(("b.seq IN (SELECT rowid FROM store_fts WHERE store_fts MATCH ?)", [_phrase(text)]))
    else:
        alts.append(
            "b.seq IN (SELECT rowid FROM store_fts WHERE "
            + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in _FTS_COLUMNS)
            + ")"
        )
        args.extend([_like_pattern(text)] * len(_FTS_COLUMNS))
    short = compact(text)
    if short and short != text:
        add(_match("store_fts", "entities", short))
        add(_match("store_fts_alt", "folded", short))
    folded = search.fold(text)
    if len(folded) >= TRIGRAM and folded != text:
        add(_match("store_fts_alt", "folded", folded))
    if use_keys:
        wanted = search.key(text)
        if wanted:
            # Words in Latin letters are spaced: a key is matched from the start of one (a
            # Lao ມະນຸດ, mnt, is not in "concealment"). Thai and Lao runs are written without
            # spaces, so a name typed in Latin letters is matched anywhere in theirs.
            add(_word_start_match("store_fts_alt", "keys_latin", wanted))
            if search.is_latin(text):
                add(_match("store_fts_alt", "keys_native", wanted))
    return "(" + " OR ".join(alts) + ")", args


def _text_condition(text: str) -> tuple[str, list[Any]]:
    """SQL (on ``b.seq``) matching bulletins that match the query in ``text`` (every
    clause; any term of a clause: search.parse), or whose entities contain the whole
    query compacted (a document number typed with spaces or dashes)."""
    query = search.parse(text)
    if not query.clauses:
        return "0", []
    use_keys = search.key_letters(query) >= search.MIN_KEY_LETTERS
    conds: list[str] = []
    args: list[Any] = []
    for clause in query.clauses:
        parts = [_term_condition(t, use_keys=use_keys) for t in clause]
        conds.append("(" + " OR ".join(p[0] for p in parts) + ")")
        args.extend(a for p in parts for a in p[1])
    sql = "(" + " AND ".join(conds) + ")"
    whole = compact(text)
    words = [t.text for t in query.terms]
    if whole and whole not in words:
        for table, column in (("store_fts", "entities"), ("store_fts_alt", "folded")):
            alt_sql, alt_args = _match(table, column, whole)
            sql = f"({sql} OR {alt_sql})"
            args.extend(alt_args)
    return sql, args


# -- the store ------------------------------------------------------------------------------

_COLUMNS = (
    "seq, id, direction, sender, sender_sign_kid, sender_ephemeral, sent_at, received_at, at, precedence, kind, "
    "tlp, feed, title, bulletin_json, recipients_json, verified, verification_json, read_at, read_by, witnessed_at"
)


def _row_to_stored(row: Sequence[Any]) -> StoredBulletin:
    (seq, bid, direction, sender, sign_kid, ephemeral, sent_at, received_at, at, precedence, kind, tlp, feed, title,
     bulletin_json, recipients_json, verified, verification_json, read_at, read_by, witnessed_at) = row  # fmt: skip
    return StoredBulletin(
        seq=seq,
        id=bid,
        direction=direction,
        sender=sender,
        sender_sign_kid=sign_kid.hex() if sign_kid is not None else None,
        sender_ephemeral=ephemeral.hex() if ephemeral is not None else None,
        sent_at=sent_at,
        received_at=received_at,
        witnessed_at=witnessed_at,
        at=at,
        precedence=precedence,
        kind=kind,
        tlp=tlp,
        feed=feed,
        title=title,
        bulletin=json.loads(bulletin_json),
        recipients=tuple(json.loads(recipients_json)),
        verified=bool(verified),
        verification=json.loads(verification_json),
        read_at=read_at,
        read_by=read_by,
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _check_feed(feed: str | None) -> None:
    if feed is not None and not is_feed_name(feed):
        raise errors.ValidationError("feed", f"must be a feed name (a-z, 0-9, hyphens); got {feed!r}"[:200])


def _check_time(name: str, value: int) -> None:
    if _time_or_none(name, value) is None:
        raise errors.ValidationError(name, "is required")


class Store:
    """The bulletin store on a ``Database`` (see ``office_node.db.open_database``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._index_older()

    def _index_older(self, *, batch: int = 2000) -> None:
        """Fill the folded-and-keys index (added in schema 9) for bulletins stored before
        it existed. Rows are indexed in ``seq`` order in the transaction that stores
        them, so what is missing is exactly the rows above its highest rowid: a
        restart after it is filled costs one lookup."""
        while True:
            with self.db.write() as c:
                last = c.execute("SELECT rowid FROM store_fts_alt ORDER BY rowid DESC LIMIT 1").fetchone()
                rows = c.execute(
                    "SELECT seq, bulletin_json FROM store_bulletins WHERE seq > ? ORDER BY seq LIMIT ?",
                    (last[0] if last else 0, batch),
                ).fetchall()
                c.executemany(
                    "INSERT INTO store_fts_alt (rowid, folded, keys_latin, keys_native) VALUES (?, ?, ?, ?)",
                    [(seq, *_alt_row(Bulletin.from_dict(json.loads(text)))) for seq, text in rows],
                )
            if len(rows) < batch:
                return

    # -- writing ------------------------------------------------------------------------

    def save_received(self, opened: Opened, *, sealed: bytes, received_at: int, feed: str | None) -> bool:
        """Store a bulletin that ``Opener.open(sealed)`` verified. Returns True if it is
        new, False if this id was already stored (the row is left as it was).

        ``feed`` defaults to the feed the bulletin was opened through, if any.
        """
        _check_time("received_at", received_at)
        if feed is None and opened.opened_via.kind == RECIPIENT_FEED:
            feed = opened.opened_via.id
        _check_feed(feed)
        # The bytes the bus opened are the envelope already; others are parsed to compare.
        if sealed is not opened.sealed and split_envelope(sealed)[0] != opened.header:
            raise errors.ValidationError("sealed", "these bytes are not the envelope that was opened (the headers differ)")
        b = opened.bulletin
        via = opened.opened_via
        verification = {
            "verified": True,
            "signer": b.sender,
            "sign_kid": opened.sender_sign_kid.hex(),
            "ephemeral_public": opened.ephemeral_public.hex(),
            "signed_at": opened.sent_at,
            "witnessed_at": opened.witnessed_at,
            "checked_at": received_at,
            "opened_via": {
                "kind": "feed" if via.kind == RECIPIENT_FEED else "office",
                "id": via.id,
                "ref": via.ref if isinstance(via.ref, int) else via.ref.hex(),
            },
        }
        recipients = [r.id for r in opened.recipients]
        row = dict(
            direction=RECEIVED,
            sign_kid=opened.sender_sign_kid,
            ephemeral=opened.ephemeral_public,
            witnessed_at=opened.witnessed_at,
            sent_at=opened.sent_at,
            received_at=received_at,
            at=received_at,
            feed=feed,
            recipients=recipients,
            sealed=sealed,
            header=opened.header,
            body=opened.body,
            signature=opened.signature,
            verification=verification,
        )
        with self.db.write() as c:
            return self._insert_in(c, b, row)

    def save_sent(self, bulletin: Bulletin, *, sealed: bytes, recipients: list[str], feed: str | None, sent_at: int) -> bool:
        """Store a bulletin this node sealed. ``recipients`` are office ids and feed names.
        Returns True if new, False if this id was already stored."""
        row = self._sent_row(bulletin, sealed=sealed, recipients=recipients, feed=feed, sent_at=sent_at)
        with self.db.write() as c:
            return self._insert_in(c, bulletin, row)

    def save_sent_many(self, items: Sequence[tuple[Bulletin, bytes, list[str], str | None, int]]) -> int:
        """``save_sent`` for many bulletins in one transaction (a watch-list import); how many were new."""
        rows = [(b, self._sent_row(b, sealed=s, recipients=r, feed=f, sent_at=t)) for b, s, r, f, t in items]
        with self.db.write() as c:
            return sum(self._insert_in(c, b, row) for b, row in rows)

    def _sent_row(
        self, bulletin: Bulletin, *, sealed: bytes, recipients: list[str], feed: str | None, sent_at: int
    ) -> dict[str, Any]:
        _check_time("sent_at", sent_at)
        _check_feed(feed)
        for i, r in enumerate(recipients):
            if not (is_office_id(r) or is_feed_name(r)):
                raise errors.ValidationError(f"recipients[{i}]", f"must be an office id or a feed name; got {r!r}"[:200])
        header, _ = split_envelope(sealed)
        h = parse_header(header)  # the one parse of what this node sealed
        bid = bulletin_id_from_bytes(h.bulletin_id)
        if bid != bulletin.id or h.sender != bulletin.sender:
            raise errors.ValidationError("sealed", f"the envelope holds bulletin {bid} from {h.sender}, not {bulletin.id}")
        header_sent_at = h.sent_at
        verification = {
            "verified": True,
            "signer": bulletin.sender,
            "sign_kid": h.sign_kid.hex(),
            "ephemeral_public": h.ephemeral_public.hex(),
            "signed_at": header_sent_at,
            "checked_at": sent_at,
            "note": "sealed and signed by this node",
        }
        return dict(
            direction=SENT,
            sign_kid=h.sign_kid,
            ephemeral=h.ephemeral_public,
            witnessed_at=None,
            sent_at=header_sent_at,
            received_at=None,
            at=sent_at,
            feed=feed,
            recipients=list(recipients),
            sealed=sealed,
            header=header,
            body=encode_body(bulletin),
            signature=None,
            verification=verification,
        )

    @staticmethod
    def _insert_in(c: Any, b: Bulletin, row: dict[str, Any]) -> bool:
        direction, sign_kid, ephemeral, sent_at = row["direction"], row["sign_kid"], row["ephemeral"], row["sent_at"]
        received_at, at, feed, recipients = row["received_at"], row["at"], row["feed"], row["recipients"]
        sealed, header, body, signature = row["sealed"], row["header"], row["body"], row["signature"]
        verification = row["verification"]
        cur = c.execute(
            "INSERT INTO store_bulletins (id, direction, sender, sender_sign_kid, sender_ephemeral, sent_at, "
            "received_at, at, precedence, kind, tlp, feed, title, in_reply_to, expires, bulletin_json, "
            "recipients_json, sealed, header, body, signature, verified, verification_json, witnessed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO NOTHING",
            (
                b.id, direction, b.sender, sign_kid, ephemeral, sent_at, received_at, at, b.precedence, b.kind,
                b.tlp, feed, b.title, b.in_reply_to, b.expires, _json(b.to_dict()), _json(recipients),
                sealed, header, body, signature, 1 if verification["verified"] else 0, _json(verification),
                row["witnessed_at"],
            ),
        )  # fmt: skip
        if cur.rowcount == 0:
            return False
        c.execute(
            "INSERT INTO store_fts (rowid, title, body, entities, tags) VALUES (?, ?, ?, ?, ?)",
            (cur.lastrowid, *_index_row(b)),
        )
        c.execute(
            "INSERT INTO store_fts_alt (rowid, folded, keys_latin, keys_native) VALUES (?, ?, ?, ?)",
            (cur.lastrowid, *_alt_row(b)),
        )
        return True

    def mark_read(self, bulletin_id: str, *, by: str, at_ms: int) -> bool:
        """Record that officer ``by`` read it. True the first time (send a read receipt
        then); False if someone here had already read it (the first reader is kept)."""
        _check_time("at", at_ms)
        with self.db.write() as c:
            cur = c.execute(
                "UPDATE store_bulletins SET read_at = ?, read_by = ? WHERE id = ? AND read_at IS NULL",
                (at_ms, by, bulletin_id),
            )
            if cur.rowcount:
                return True
            if c.execute("SELECT 1 FROM store_bulletins WHERE id = ?", (bulletin_id,)).fetchone() is None:
                raise errors.NotFound(f"no bulletin {bulletin_id} is stored on this node")
            return False

    def record_receipt(
        self, bulletin_id: str, office: str, kind: str, *, at_ms: int, received_at: int, verified: bool
    ) -> bool:
        """Store a delivery or read receipt from ``office``. True if new; a repeat of the
        same (bulletin, office, kind) keeps the first."""
        return self.record_receipts([(bulletin_id, office, kind, at_ms)], received_at=received_at, verified=verified) == 1

    def record_receipts(self, items: Sequence[tuple[str, str, str, int]], *, received_at: int, verified: bool) -> int:
        """``record_receipt`` for ``(bulletin_id, office, kind, at_ms)`` items in one
        transaction (a signed receipt covers up to 128 bulletins); how many were new."""
        rows = []
        for bulletin_id, office, kind, at_ms in items:
            if kind not in RECEIPT_KINDS:
                raise errors.ValidationError("kind", f"must be one of {', '.join(RECEIPT_KINDS)}; got {kind!r}"[:200])
            if not is_office_id(office):
                raise errors.ValidationError("office", f"must be an office id; got {office!r}"[:200])
            _check_time("at", at_ms)
            rows.append((bulletin_id, office, kind, at_ms, received_at, 1 if verified else 0))
        _check_time("received_at", received_at)
        with self.db.write() as c:
            before = c.total_changes
            c.executemany(
                "INSERT INTO store_receipts (bulletin_id, office, kind, at, received_at, verified) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )
            return c.total_changes - before

    def set_verification(self, bulletin_id: str, *, verified: bool, details: Mapping[str, Any]) -> None:
        with self.db.write() as c:
            cur = c.execute(
                "UPDATE store_bulletins SET verified = ?, verification_json = ? WHERE id = ?",
                (1 if verified else 0, _json({**details, "verified": verified}), bulletin_id),
            )
            if cur.rowcount == 0:
                raise errors.NotFound(f"no bulletin {bulletin_id} is stored on this node")

    def reverify(self, bulletin_id: str, resolver: KeyResolver, *, now_ms: int) -> bool:
        """Check a received bulletin's stored signature again with today's directory
        (e.g. after a key compromise was announced) and record the outcome."""
        stored = self.get(bulletin_id)
        parts = self.sealed_parts(bulletin_id)
        if stored is None or parts is None:
            raise errors.NotFound(f"no bulletin {bulletin_id} is stored on this node")
        if parts.signature is None:
            raise errors.ValidationError("id", "only received bulletins can be re-verified; this node sent this one")
        details = {k: v for k, v in stored.verification.items() if k not in ("problem", "reason")}
        details["checked_at"] = now_ms
        kid = bytes.fromhex(stored.sender_sign_kid or "")
        keys = resolver.sender_keys(stored.sender, kid)
        try:
            if keys is None:
                raise errors.UnknownSender(f"the directory no longer has {stored.sender}'s key {kid.hex()}")
            # Judged as when it arrived (TRUST.md 5): a key revoked as compromised since a time
            # before the bulletin was stored makes it suspect, whatever its signed time says.
            witnessed = stored.witnessed_at if stored.witnessed_at is not None else stored.received_at or stored.sent_at
            problem = key_problem(keys, stored.sent_at, witnessed, who=stored.sender)
            if problem is not None:
                raise errors.SenderKeyInvalid(problem.message)
            verify_detached(keys.sign_public, parts.header, parts.body, parts.signature)
        except errors.EnvelopeError as exc:
            details.update(reason=exc.reason, problem=exc.message)
            self.set_verification(bulletin_id, verified=False, details=details)
            return False
        self.set_verification(bulletin_id, verified=True, details=details)
        return True

    def reverify_sender(self, sender: str, resolver: KeyResolver, *, now_ms: int) -> list[str]:
        """After a revocation of one of ``sender``'s keys (TRUST.md section 5): check every
        bulletin received from it again, by the time each was stored, and return the ids
        that no longer stand. They stay stored and readable (evidence is never deleted),
        shown as unverified with the reason; nothing is re-verified that this node sent."""
        with self.db.read() as c:
            ids = [
                r[0]
                for r in c.execute(
                    "SELECT id FROM store_bulletins WHERE sender = ? AND direction = ? AND verified = 1", (sender, RECEIVED)
                )
            ]
        return [bid for bid in ids if not self.reverify(bid, resolver, now_ms=now_ms)]

    # -- reading ------------------------------------------------------------------------

    def get(self, bulletin_id: str) -> StoredBulletin | None:
        with self.db.read() as c:
            row = c.execute(f"SELECT {_COLUMNS} FROM store_bulletins WHERE id = ?", (bulletin_id,)).fetchone()
        return _row_to_stored(row) if row else None

    def require(self, bulletin_id: str) -> StoredBulletin:
        """The stored bulletin ``bulletin_id`` as an officer names it (the API, the CLI):
        ``ValidationError`` for what is not a bulletin id, ``NotFound`` when none is stored."""
        if not isinstance(bulletin_id, str) or len(bulletin_id) > 64:
            raise errors.ValidationError("id", "must be a bulletin id (a 26-character ULID)")
        stored = self.get(bulletin_id)
        if stored is None:
            raise errors.NotFound(f"no bulletin {bulletin_id} is stored on this node")
        return stored

    def sealed_parts(self, bulletin_id: str) -> SealedParts | None:
        with self.db.read() as c:
            row = c.execute(
                "SELECT sealed, header, body, signature FROM store_bulletins WHERE id = ?", (bulletin_id,)
            ).fetchone()
        return SealedParts(*row) if row else None

    def receipts(self, bulletin_id: str) -> list[ReceiptRecord]:
        with self.db.read() as c:
            rows = c.execute(
                "SELECT bulletin_id, office, kind, at, received_at, verified FROM store_receipts "
                "WHERE bulletin_id = ? ORDER BY office, kind",
                (bulletin_id,),
            ).fetchall()
        return [ReceiptRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def list_bulletins(self, query: BulletinQuery | None = None) -> Page:
        """Bulletins matching ``query``, newest first, one page at a time."""
        q = query or BulletinQuery()
        conds: list[str] = []
        args: list[Any] = []
        if q.kinds:
            conds.append(f"b.kind IN ({','.join('?' * len(q.kinds))})")
            args.extend(q.kinds)
        if q.precedences:
            conds.append(f"b.precedence IN ({','.join('?' * len(q.precedences))})")
            args.extend(q.precedences)
        for column, value in (("feed", q.feed), ("sender", q.sender), ("direction", q.direction), ("in_reply_to", q.in_reply_to)):
            if value is not None:
                conds.append(f"b.{column} = ?")
                args.append(value)
        if q.since is not None:
            conds.append("b.at >= ?")
            args.append(q.since)
        if q.until is not None:
            conds.append("b.at < ?")
            args.append(q.until)
        if q.unread:
            conds.append("b.direction = 'received' AND b.read_at IS NULL")
        if q.text is not None and q.text.strip():
            sql, text_args = _text_condition(q.text)
            conds.append(sql)
            args.extend(text_args)
        if q._cursor_key is not None:
            at, seq = q._cursor_key
            conds.append("(b.at < ? OR (b.at = ? AND b.seq < ?))")
            args.extend((at, at, seq))
        where = f"WHERE {' AND '.join(conds)}" if conds else ""
        cols = ", ".join(f"b.{c.strip()}" for c in _COLUMNS.split(","))
        sql = f"SELECT {cols} FROM store_bulletins b {where} ORDER BY b.at DESC, b.seq DESC LIMIT ?"
        with self.db.read() as c:
            rows = c.execute(sql, (*args, q.limit + 1)).fetchall()
        items = [_row_to_stored(r) for r in rows[: q.limit]]
        next_cursor = encode_cursor(items[-1].at, items[-1].seq) if len(rows) > q.limit else None
        return Page(items, next_cursor)

    def search(self, text: str, *, limit: int = DEFAULT_LIMIT) -> list[StoredBulletin]:
        """Shorthand for ``list_bulletins(BulletinQuery(text=text, limit=limit)).items``."""
        return self.list_bulletins(BulletinQuery(text=text, limit=limit)).items

    def iter_bulletins(self, *, batch: int = 5000) -> Iterator[Bulletin]:
        """Every stored bulletin, oldest first, in batches (the lookout index rebuild)."""
        last = 0
        while True:
            with self.db.read() as c:
                rows = c.execute(
                    "SELECT seq, bulletin_json FROM store_bulletins WHERE seq > ? ORDER BY seq LIMIT ?", (last, batch)
                ).fetchall()
            if not rows:
                return
            for seq, text in rows:
                last = seq
                yield Bulletin.from_dict(json.loads(text))

    def save_hit(self, hit: HitRecord) -> bool:
        """Record a lookout hit; False if this (bulletin, lookout, entity) was recorded before."""
        with self.db.write() as c:
            cur = c.execute(
                "INSERT INTO store_hits (bulletin_id, lookout_id, entity_index, lookout_sender, key_kind, strength, at, "
                "notice, notice_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (hit.bulletin_id, hit.lookout_id, hit.entity_index, hit.lookout_sender, hit.key_kind, hit.strength,
                 hit.at, hit.notice, hit.notice_id),
            )  # fmt: skip
            return cur.rowcount == 1

    def set_hit_notice(self, hit: HitRecord, notice: str, notice_id: str | None) -> None:
        with self.db.write() as c:
            c.execute(
                "UPDATE store_hits SET notice = ?, notice_id = ? WHERE bulletin_id = ? AND lookout_id = ? AND entity_index = ?",
                (notice, notice_id, hit.bulletin_id, hit.lookout_id, hit.entity_index),
            )

    def hits(self, *, limit: int = 100) -> list[HitRecord]:
        with self.db.read() as c:
            rows = c.execute(
                "SELECT bulletin_id, lookout_id, entity_index, lookout_sender, key_kind, strength, at, notice, notice_id "
                "FROM store_hits ORDER BY at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [HitRecord(*r) for r in rows]

    def unread_count(self) -> int:
        with self.db.read() as c:
            return c.execute(
                "SELECT count(*) FROM store_bulletins WHERE direction = 'received' AND read_at IS NULL"
            ).fetchone()[0]

