"""The durable outbox: every message a node sends is on disk before any send attempt.

The rule: **a message leaves the queue only when JetStream acknowledged storing it.**
A bulletin posted while NATS is unreachable waits here (surviving restarts of the node)
and goes out once the link is back; a publish whose ack never came is re-sent with the
same ``Nats-Msg-Id``, so JetStream (and, past its dedup window, the receiver) drops the
second copy.

Order: ``next_batch`` hands out queued messages FLASH first, then IMMEDIATE, PRIORITY,
ROUTINE; within a precedence, receipts before bulletins (a receipt is one small message
that settles the sender's view of many bulletins), and each in posting order. The pump
publishes a batch in that order on one connection, so JetStream stores them in that
order; only a message whose publish failed while later ones succeeded can arrive out of
order (it is re-sent on the next round).

States, per recipient of a bulletin: ``queued`` -> ``sent`` (JetStream ack) ->
``delivered`` (signed receipt from that recipient) -> ``read`` (read receipt). Feed
members are not known to the sender; their receipts add rows as they arrive.

Layout (schema version 2): a bulletin is **one row** in ``bulletins`` (its sealed bytes
and its copies: recipient, subject and ``Nats-Msg-Id`` of each, in send order) and one
narrow row in ``sends`` (which copies still wait for an ack, and when they were acked).
A row per copy, as version 1 had, cost most of the sender's disk work: SQLite's price is
per row, not per byte, and a bulletin to three offices wrote four rows and rewrote three
on the acks. ``sends`` is kept apart from ``bulletins`` so that an ack rewrites a row of a
few bytes, not the page holding the sealed bulletin. ``messages`` holds receipts to send
(one signed message each). A version 1 file is converted when opened (``_migrate_v1``).

**Held feed copies** (schema version 3, table ``held``). A copy to a feed sealed under an
epoch that is no longer the newest, or that waits for the newest epoch's key, must not
be published (FEEDS.md, what a sender does): the node takes it out of ``waiting`` into
``held`` until it has re-sealed the bulletin under the right epoch (``release``, which
replaces the bulletin's sealed bytes and queues the copy again), or gives up on it
(``fail_held``: the sender was removed from the feed). Status shows such a copy as
``held`` or ``failed``, with the reason.

A copy is named to the pump by a **key**: ``seq << COPY_BITS | index`` for copy ``index``
of bulletin ``seq``, ``-seq`` for a receipt message. Keys are opaque outside this module.

Durability: SQLite in WAL mode with ``synchronous=FULL``. In WAL mode NORMAL survives a
crash of this process but may lose the last commits on power loss; a bulletin the
officer was told is "queued" must survive a power cut at a border post, and a commit
costs well under a millisecond here, so FULL. ``enqueue_many`` shares one commit.
Bookkeeping whose loss only causes a deduped re-send (``sent`` marks, receipts
received) commits with NORMAL (see ``_transaction``).

Reading: the outbox keeps, in memory, the sealed bytes and copies of bulletins it queued
itself until every copy has been handed out once (bounded by ``FRESH_MAX_BYTES``), so
the pump's next round does not read them back from disk. The disk stays the only
record: after a restart, a retry, or past the bound, ``next_batch`` reads ``bulletins``.
A bulletin's row changes only when ``release`` re-seals it, which drops the copy in memory
first, so the pump never publishes bytes other than the row's.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import msgspec

from bus.errors import StoreError, ValidationError

QUEUED, SENT, DELIVERED, READ, ACKNOWLEDGED = "queued", "sent", "delivered", "read", "acknowledged"
HELD, FAILED = "held", "failed"
_STATE_ORDER = {FAILED: -1, HELD: 0, QUEUED: 0, SENT: 1, DELIVERED: 2, READ: 3, ACKNOWLEDGED: 4}
#: At most this many sealed bytes are kept in memory for the pump (see the module docstring).
FRESH_MAX_BYTES = 16 * 1024 * 1024
#: Bits of a copy key that number the copy within its bulletin (see the module docstring).
COPY_BITS = 11
#: Copies one bulletin may have: above the envelope's recipient limit (1024), within a key.
MAX_COPIES = 1 << COPY_BITS
_COPY_MASK = MAX_COPIES - 1
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bulletins (
    seq INTEGER PRIMARY KEY,         -- posting order (rows are never deleted, so it only grows)
    id TEXT NOT NULL UNIQUE,
    precedence TEXT NOT NULL,
    rank INTEGER NOT NULL,           -- 0 = FLASH
    sealed BLOB NOT NULL,
    copies BLOB NOT NULL,            -- msgpack [[recipient, subject, msg id], ...] in send order;
                                     -- recipient: an office id or 'feed:<name>'
    posted_at INTEGER NOT NULL,
    ack_deadline INTEGER,            -- FLASH: receipts from every office recipient are due by then
    escalated_at INTEGER
);
CREATE INDEX IF NOT EXISTS bulletins_flash ON bulletins(ack_deadline) WHERE ack_deadline IS NOT NULL;
CREATE TABLE IF NOT EXISTS sends (
    seq INTEGER PRIMARY KEY,         -- the bulletin's seq
    rank INTEGER NOT NULL,
    waiting BLOB,                    -- msgpack list of the copies (indexes) not yet acked; NULL: none
    unsent INTEGER NOT NULL,         -- how many those are
    sent_at INTEGER,                 -- when the last of its copies was acked
    sent BLOB,                       -- msgpack [[index, acked at], ...] when copies were acked in different rounds
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS sends_queue ON sends(rank, seq, unsent) WHERE waiting IS NOT NULL;
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- posting order
    rank INTEGER NOT NULL,                   -- 0 = FLASH
    kind TEXT NOT NULL,                      -- 'receipt' (version 1 also kept bulletin copies here)
    bulletin_id TEXT NOT NULL,               -- the first bulletin it acknowledges
    recipient TEXT NOT NULL,                 -- the bulletins' sender
    subject TEXT NOT NULL,
    msg_id TEXT NOT NULL UNIQUE,
    payload BLOB,
    state TEXT NOT NULL DEFAULT 'queued',
    queued_at INTEGER NOT NULL,
    sent_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS messages_queue ON messages(rank, seq) WHERE state = 'queued';
CREATE TABLE IF NOT EXISTS held (
    seq INTEGER NOT NULL,            -- the bulletin's seq
    idx INTEGER NOT NULL,            -- the copy (index into bulletins.copies), out of sends.waiting meanwhile
    state TEXT NOT NULL,             -- 'held' (waiting to be re-sealed) or 'failed' (given up, with the reason)
    reason TEXT NOT NULL,
    since INTEGER NOT NULL,
    PRIMARY KEY (seq, idx)
);
CREATE TABLE IF NOT EXISTS receipts (
    bulletin_id TEXT NOT NULL,
    office TEXT NOT NULL,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL,             -- the recipient's signed time
    received_at INTEGER NOT NULL,
    PRIMARY KEY (bulletin_id, office, kind)
);
"""


def connect_sqlite(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode with full sync, autocommit (explicit transactions), file 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=5000")
    return db


class Delivery(msgspec.Struct, frozen=True, array_like=True):
    """One recipient copy to publish: where to, under which id. (A Struct: one is built per
    copy; stored as ``[recipient, subject, msg_id]`` in ``bulletins.copies``.)"""

    recipient: str
    subject: str
    msg_id: str


class Queued(NamedTuple):
    """A bulletin sealed for the outbox (``Outbox.enqueue_many``)."""

    bulletin_id: str
    precedence: str
    rank: int
    sealed: bytes
    deliveries: Sequence[Delivery]  # one per copy, in the order of the envelope's recipients
    ack_deadline: int | None  # FLASH: when every office recipient must have acknowledged it


_encode = msgspec.msgpack.Encoder().encode
_decode_copies = msgspec.msgpack.Decoder(list[Delivery]).decode
_decode_indexes = msgspec.msgpack.Decoder(list[int]).decode
_decode_pairs = msgspec.msgpack.Decoder(list[tuple[int, int]]).decode
#: ``waiting`` of a bulletin none of whose n copies left yet, encoded once per n.
_ALL_WAITING: dict[int, bytes] = {}


def _all_waiting(n: int) -> bytes:
    blob = _ALL_WAITING.get(n)
    if blob is None:
        blob = _encode(list(range(n)))
        if n <= 64:  # the usual counts; others are rare and encoded each time
            _ALL_WAITING[n] = blob
    return blob


class Pending(NamedTuple):
    """A queued message as the pump sees it: one copy of a bulletin, or a receipt. (A named
    tuple: the pump makes one per copy, and a frozen dataclass costs several times more.)"""

    key: int  # names the copy to mark_sent / note_failures (see the module docstring)
    rank: int
    subject: str
    msg_id: str
    payload: bytes
    kind: str  # 'bulletin' or 'receipt'
    bulletin_id: str
    recipient: str


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    recipient: str
    state: str
    sent_at: int | None = None
    delivered_at: int | None = None
    read_at: int | None = None
    acknowledged_at: int | None = None  # a person at the recipient acknowledged it
    #: Why a ``held`` copy waits, or why a ``failed`` one was given up.
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class BulletinStatus:
    bulletin_id: str
    precedence: str
    posted_at: int
    recipients: dict[str, RecipientStatus] = field(default_factory=dict)
    escalated_at: int | None = None


@dataclass(frozen=True, slots=True)
class Overdue:
    """A FLASH bulletin past its acknowledgement deadline, and who has not acknowledged."""

    bulletin_id: str
    posted_at: int
    missing: tuple[str, ...]
    escalated_at: int | None


#: A bulletin as the pump reads it: [id, sealed, copies, copies not yet handed out (None
#: when read from disk)]. A list, as the count goes down in place.
_Fresh = list


def chunks(values: Sequence[object], size: int = 500) -> Iterable[Sequence[object]]:
    """Slices of ``values`` small enough for SQLite's bound-variable limit (the outbox and
    the seen store use it)."""
    for i in range(0, len(values), size):
        yield values[i : i + size]


def marks(n: int) -> str:
    """``?,?,...``: the placeholders of an ``IN (...)`` of ``n`` values."""
    return ",".join("?" * n)


class Outbox:
    """The node's durable send queue and the sender-side record of receipts."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = connect_sqlite(self.path)
        self._open_schema()
        #: bulletin seq -> [id, sealed, copies, copies not yet handed out], for bulletins queued here
        self._fresh: dict[int, _Fresh] = {}
        self._fresh_bytes = 0

    def _open_schema(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer version of blo-bus (outbox schema {version}, this one reads "
                f"{SCHEMA_VERSION}); upgrade blo-bus or move the file aside"
            )
        if version == SCHEMA_VERSION:
            return
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(bulletins)")}
        with _transaction(self.db):
            if columns and "copies" not in columns:
                _migrate_v1(self.db)
            else:
                _create(self.db)  # a new file; or version 2, which gains the held table
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    # -- queueing --------------------------------------------------------------------

    def enqueue_bulletin(
        self,
        bulletin_id: str,
        precedence: str,
        rank: int,
        sealed: bytes,
        deliveries: Sequence[Delivery],
        *,
        now_ms: int,
        ack_deadline: int | None = None,
    ) -> None:
        self.enqueue_many([Queued(bulletin_id, precedence, rank, sealed, deliveries, ack_deadline)], now_ms=now_ms)

    def enqueue_many(
        self,
        items: Iterable[Queued],
        *,
        now_ms: int,
    ) -> None:
        """Queue sealed bulletins in one commit."""
        items = list(items)
        for bid, _, _, _, deliveries, _ in items:
            if not deliveries:
                raise ValidationError("recipients", "a bulletin needs at least one recipient")
            if len(deliveries) > MAX_COPIES:
                raise ValidationError("recipients", f"bulletin {bid} has {len(deliveries)} copies; the limit is {MAX_COPIES}")
        # Two statements for the whole batch (not two per bulletin). The seqs are given
        # here, from the largest so far: the write lock is held from BEGIN IMMEDIATE on.
        try:
            with _transaction(self.db):
                first = self.db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM bulletins").fetchone()[0]
                self.db.executemany(
                    "INSERT INTO bulletins (seq, id, precedence, rank, sealed, copies, posted_at, ack_deadline) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    [
                        (first + i, bid, precedence, rank, sealed, _encode(deliveries), now_ms, deadline)
                        for i, (bid, precedence, rank, sealed, deliveries, deadline) in enumerate(items)
                    ],
                )
                self.db.executemany(
                    "INSERT INTO sends (seq, rank, waiting, unsent) VALUES (?,?,?,?)",
                    [
                        (first + i, rank, _all_waiting(len(deliveries)), len(deliveries))
                        for i, (_, _, rank, _, deliveries, _) in enumerate(items)
                    ],
                )
        except sqlite3.IntegrityError:
            raise ValidationError("id", f"bulletin {self._reposted(items)} was already posted") from None
        fresh = self._fresh
        for i, (bid, _, _, sealed, deliveries, _) in enumerate(items):  # committed: the pump may take them from memory
            if self._fresh_bytes + len(sealed) > FRESH_MAX_BYTES:
                break  # the rest are read from disk
            fresh[first + i] = [bid, sealed, list(deliveries), len(deliveries)]
            self._fresh_bytes += len(sealed)

    def _reposted(self, items: Sequence[tuple[str, str, int, bytes, Sequence[Delivery], int | None]]) -> str:
        """Which bulletin of a refused batch was posted before (or twice in the batch)."""
        ids = [item[0] for item in items]
        for i, bid in enumerate(ids):
            if bid in ids[:i] or self.db.execute("SELECT 1 FROM bulletins WHERE id = ?", (bid,)).fetchone():
                return bid
        return ids[0] if ids else "?"

    def enqueue_receipt(
        self, bulletin_id: str, to_office: str, rank: int, subject: str, msg_id: str, payload: bytes, *, now_ms: int
    ) -> None:
        self.enqueue_receipts([(bulletin_id, to_office, rank, subject, msg_id, payload)], now_ms=now_ms)

    def enqueue_receipts(self, items: Iterable[tuple[str, str, int, str, str, bytes]], *, now_ms: int) -> None:
        """Queue receipts ``(bulletin_id, to_office, rank, subject, msg_id, payload)``; a receipt
        already queued (same msg id) is not queued twice."""
        with _transaction(self.db):
            self.insert_receipts(items, now_ms=now_ms)

    def insert_receipts(self, items: Iterable[tuple[str, str, int, str, str, bytes]], *, now_ms: int) -> None:
        """``enqueue_receipts`` inside a transaction the caller holds (see SeenStore)."""
        self.db.executemany(
            "INSERT OR IGNORE INTO messages (rank, kind, bulletin_id, recipient, subject, msg_id, payload, queued_at) "
            "VALUES (?, 'receipt', ?, ?, ?, ?, ?, ?)",
            [(rank, bid, to, subject, mid, payload, now_ms) for bid, to, rank, subject, mid, payload in items],
        )

    # -- the pump's side -------------------------------------------------------------

    def next_batch(self, limit: int, *, exclude: Collection[int] = ()) -> list[Pending]:
        """Up to ``limit`` queued copies and receipts, FLASH first, in the order the module
        docstring gives; none of the keys in ``exclude`` (the pump's copies still waiting
        for their ack)."""
        # The copies in flight, counted per bulletin: a row all of whose waiting copies
        # are in flight is passed over without decoding it or reading its bulletin.
        in_flight: dict[int, int] = {}
        excluded_receipts = 0
        for key in exclude:
            if key < 0:
                excluded_receipts += 1
            else:
                seq = key >> COPY_BITS
                in_flight[seq] = in_flight.get(seq, 0) + 1
        # Enough rows to fill ``limit`` whatever ``exclude`` holds: each row not wholly
        # excluded gives at least one copy.
        receipts = self.db.execute(
            "SELECT rank, 0, seq, subject, msg_id, payload, bulletin_id, recipient FROM messages "
            "WHERE state = 'queued' ORDER BY rank, seq LIMIT ?",
            (limit + excluded_receipts,),
        ).fetchall()
        sends = self.db.execute(
            "SELECT rank, 1, seq, unsent, waiting FROM sends WHERE waiting IS NOT NULL ORDER BY rank, seq LIMIT ?",
            (limit + len(in_flight),),
        ).fetchall()
        # What goes, in order: (seq, rank, a bulletin's copy indexes or None, a receipt's
        # row or None).
        plan: list[tuple[int, int, list[int] | None, tuple[object, ...] | None]] = []
        planned = 0
        for row in heapq.merge(receipts, sends) if receipts and sends else receipts or sends:
            if planned >= limit:
                break
            if row[1] == 0:  # a receipt
                if -row[2] not in exclude:
                    plan.append((row[2], row[0], None, row))
                    planned += 1
                continue
            rank, _, seq, unsent, waiting = row
            flying = in_flight.get(seq, 0)
            if flying >= unsent:
                continue
            indexes = _decode_indexes(waiting)
            if flying:
                base = seq << COPY_BITS
                indexes = [i for i in indexes if base | i not in exclude]
            indexes = indexes[: limit - planned]
            plan.append((seq, rank, indexes, None))
            planned += len(indexes)
        bulletins = self._bulletins_of([seq for seq, _, indexes, _ in plan if indexes is not None])
        out: list[Pending] = []
        for seq, rank, indexes, receipt in plan:
            if receipt is not None:
                _, _, _, subject, msg_id, payload, bid, recipient = receipt
                out.append(Pending(-seq, rank, subject, msg_id, payload, "receipt", bid, recipient))  # type: ignore[arg-type]
                continue
            assert indexes is not None
            entry = bulletins[seq]
            bid, sealed, copies = entry[0], entry[1], entry[2]
            base = seq << COPY_BITS
            for index in indexes:
                d = copies[index]
                out.append(Pending(base | index, rank, d.subject, d.msg_id, sealed, "bulletin", bid, d.recipient))
            if entry[3] is not None:  # fresh: forget it once every copy was handed out once
                entry[3] -= len(indexes)
                if entry[3] <= 0:
                    del self._fresh[seq]
                    self._fresh_bytes -= len(sealed)
        return out

    def _bulletins_of(self, seqs: list[int]) -> dict[int, _Fresh]:
        """``seqs`` -> [id, sealed, copies, copies not yet handed out]: the fresh entry itself
        where there is one (so handing a copy out counts it down), else read from disk
        (with None for the count)."""
        fresh = self._fresh
        out: dict[int, _Fresh] = {}
        missing = []
        for seq in seqs:
            entry = fresh.get(seq)
            if entry is None:
                missing.append(seq)
            else:
                out[seq] = entry
        for chunk in chunks(missing):
            for seq, bid, sealed, copies in self.db.execute(
                f"SELECT seq, id, sealed, copies FROM bulletins WHERE seq IN ({marks(len(chunk))})", chunk
            ):
                out[seq] = [bid, sealed, _decode_copies(copies), None]
        return out

    def mark_sent(self, keys: Iterable[int], *, now_ms: int) -> None:
        """JetStream stored these copies: they leave the queue."""
        # Not fsynced: if a power cut loses this mark, the copy is re-sent with the same
        # Nats-Msg-Id and deduped (by JetStream, or by the receiver's seen store).
        receipts, acked = _split(keys)
        if not receipts and not acked:
            return
        with _transaction(self.db, durable=False):
            for chunk in chunks(receipts):
                self.db.execute(
                    "UPDATE messages SET state = 'sent', sent_at = ?, attempts = attempts + 1, last_error = NULL "
                    f"WHERE state = 'queued' AND seq IN ({marks(len(chunk))})",
                    (now_ms, *chunk),
                )
            whole: list[int] = []  # every waiting copy acked now, none before: one statement for all
            partial: list[tuple[bytes | None, int, bytes, int, int]] = []
            for chunk in chunks(list(acked)):
                for seq, waiting, sent in self.db.execute(
                    f"SELECT seq, waiting, sent FROM sends WHERE waiting IS NOT NULL AND seq IN ({marks(len(chunk))})",
                    chunk,
                ):
                    got = acked[seq]
                    was = _decode_indexes(waiting)
                    left = [i for i in was if i not in got]
                    if not left and sent is None:  # the usual case: all its copies in one round
                        whole.append(seq)
                        continue
                    # Copies acked in different rounds: keep each copy's time.
                    times = dict(_decode_pairs(sent)) if sent is not None else {}
                    times.update((i, now_ms) for i in was if i in got)
                    partial.append((_encode(left) if left else None, len(left), _encode(sorted(times.items())), now_ms, seq))
            for chunk in chunks(whole):
                self.db.execute(
                    "UPDATE sends SET waiting = NULL, unsent = 0, sent_at = ?, attempts = attempts + 1, last_error = NULL "
                    f"WHERE seq IN ({marks(len(chunk))})",
                    (now_ms, *chunk),
                )
            if partial:
                self.db.executemany(
                    "UPDATE sends SET waiting = ?, unsent = ?, sent = ?, sent_at = ?, attempts = attempts + 1 WHERE seq = ?",
                    partial,
                )

    def note_failures(self, failures: Iterable[tuple[int, str]]) -> None:
        """Record why sends failed; the copies stay queued for the next round."""
        receipt_rows: dict[int, str] = {}
        bulletin_rows: dict[int, str] = {}
        for key, err in failures:
            if key < 0:
                receipt_rows[-key] = err[:500]
            else:
                bulletin_rows[key >> COPY_BITS] = err[:500]
        with _transaction(self.db, durable=False):
            self.db.executemany(
                "UPDATE messages SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                [(err, seq) for seq, err in receipt_rows.items()],
            )
            self.db.executemany(
                "UPDATE sends SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                [(err, seq) for seq, err in bulletin_rows.items()],
            )

    def depth(self) -> int:
        """How many copies and receipts wait to be sent."""
        copies = self.db.execute("SELECT COALESCE(SUM(unsent), 0) FROM sends WHERE waiting IS NOT NULL").fetchone()[0]
        receipts = self.db.execute("SELECT COUNT(*) FROM messages WHERE state = 'queued'").fetchone()[0]
        return copies + receipts

    # -- held feed copies (see the module docstring) ----------------------------------

    def feed_copies(self, recipient: str) -> list[tuple[int, str, bytes, list[Delivery], list[int], list[int]]]:
        """The bulletins with a copy to ``recipient`` (``feed:<name>``) not yet sent: each as
        ``(seq, id, sealed, copies, its copy indexes still waiting, those held)``."""
        held: dict[int, list[int]] = {}
        for seq, idx in self.db.execute("SELECT seq, idx FROM held WHERE state = ?", (HELD,)):
            held.setdefault(seq, []).append(idx)
        out = []
        for seq, bid, sealed, copies, waiting in self.db.execute(
            "SELECT b.seq, b.id, b.sealed, b.copies, s.waiting FROM bulletins b JOIN sends s ON s.seq = b.seq "
            "WHERE s.waiting IS NOT NULL OR b.seq IN (SELECT seq FROM held WHERE state = 'held') ORDER BY b.seq"
        ):
            deliveries = _decode_copies(copies)
            mine = {i for i, d in enumerate(deliveries) if d.recipient == recipient}
            if not mine:
                continue
            queued = sorted(mine & set(_decode_indexes(waiting) if waiting is not None else ()))
            on_hold = sorted(mine & set(held.get(seq, ())))
            if queued or on_hold:
                out.append((seq, bid, sealed, deliveries, queued, on_hold))
        return out

    def queued_feeds(self) -> set[str]:
        """The feeds (names) with a copy queued or held."""
        out: set[str] = set()
        for (copies,) in self.db.execute(
            "SELECT b.copies FROM bulletins b JOIN sends s ON s.seq = b.seq "
            "WHERE s.waiting IS NOT NULL OR b.seq IN (SELECT seq FROM held WHERE state = 'held')"
        ):
            out.update(d.recipient[5:] for d in _decode_copies(copies) if d.recipient.startswith("feed:"))
        return out

    def seqs_of(self, bulletin_ids: Sequence[str]) -> list[tuple[int, str]]:
        """``(seq, id)`` of the bulletins with these ids."""
        out: list[tuple[int, str]] = []
        for chunk in chunks(list(bulletin_ids)):
            out += self.db.execute(f"SELECT seq, id FROM bulletins WHERE id IN ({marks(len(chunk))})", chunk).fetchall()
        return out

    def hold(self, seq: int, indexes: Iterable[int], *, reason: str, now_ms: int) -> None:
        """Take copies of bulletin ``seq`` out of the queue until ``release`` or ``fail_held``."""
        indexes = set(indexes)
        with _transaction(self.db):
            self._unqueue(seq, indexes)
            self.db.executemany(
                "INSERT INTO held (seq, idx, state, reason, since) VALUES (?,?,?,?,?) "
                "ON CONFLICT (seq, idx) DO UPDATE SET state = excluded.state, reason = excluded.reason",
                [(seq, i, HELD, reason[:500], now_ms) for i in sorted(indexes)],
            )

    def release(self, seq: int, indexes: Iterable[int], *, sealed: bytes | None = None) -> None:
        """Queue held copies again; with ``sealed``, the bulletin's new bytes (re-sealed under
        the feed's newest epoch) replace the old for every copy not yet sent."""
        indexes = set(indexes)
        self._forget_fresh(seq)
        with _transaction(self.db):
            if sealed is not None:
                self.db.execute("UPDATE bulletins SET sealed = ? WHERE seq = ?", (sealed, seq))
            row = self.db.execute("SELECT waiting FROM sends WHERE seq = ?", (seq,)).fetchone()
            waiting = set(_decode_indexes(row[0])) if row and row[0] is not None else set()
            waiting |= indexes
            self.db.execute(
                "UPDATE sends SET waiting = ?, unsent = ? WHERE seq = ?", (_encode(sorted(waiting)), len(waiting), seq)
            )
            self.db.executemany("DELETE FROM held WHERE seq = ? AND idx = ?", [(seq, i) for i in indexes])

    def fail_held(self, seq: int, indexes: Iterable[int], *, reason: str, now_ms: int) -> None:
        """Give up on copies of bulletin ``seq``: they stay recorded as ``failed`` with ``reason``."""
        indexes = set(indexes)
        with _transaction(self.db):
            self._unqueue(seq, indexes)
            self.db.executemany(
                "INSERT INTO held (seq, idx, state, reason, since) VALUES (?,?,?,?,?) "
                "ON CONFLICT (seq, idx) DO UPDATE SET state = excluded.state, reason = excluded.reason",
                [(seq, i, FAILED, reason[:500], now_ms) for i in sorted(indexes)],
            )
            self.db.execute("UPDATE sends SET last_error = ? WHERE seq = ?", (reason[:500], seq))

    def _unqueue(self, seq: int, indexes: set[int]) -> None:
        row = self.db.execute("SELECT waiting FROM sends WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise ValidationError("seq", f"no bulletin {seq} in this outbox")
        if row[0] is None:
            return
        left = [i for i in _decode_indexes(row[0]) if i not in indexes]
        self.db.execute(
            "UPDATE sends SET waiting = ?, unsent = ? WHERE seq = ?", (_encode(left) if left else None, len(left), seq)
        )

    def _forget_fresh(self, seq: int) -> None:
        entry = self._fresh.pop(seq, None)
        if entry is not None:
            self._fresh_bytes -= len(entry[1])

    # -- receipts and status ---------------------------------------------------------

    def record_receipts(self, items: Iterable[tuple[str, str, str, int]], *, now_ms: int) -> int:
        """Store verified receipts ``(bulletin_id, office, kind, at)`` for bulletins this node
        sent; receipts for unknown bulletins are ignored. Returns how many were new."""
        before = self.db.total_changes
        with _transaction(self.db, durable=False):  # a lost receipt row comes again on redelivery
            self.db.executemany(
                "INSERT OR IGNORE INTO receipts (bulletin_id, office, kind, at, received_at) "
                "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM bulletins WHERE id = ?)",
                [(bid, office, kind, at, now_ms, bid) for bid, office, kind, at in items],
            )
        return self.db.total_changes - before

    def _copy_states(
        self, bulletin_id: str
    ) -> tuple[tuple[object, ...], list[tuple[Delivery, str, int | None]], dict[int, str]] | None:
        """A bulletin's row (precedence, posted_at, escalated_at), each copy with its state
        (queued, sent, held or failed) and ack time, and why each held or failed copy is
        so (by copy index); None if not posted here."""
        row = self.db.execute(
            "SELECT b.precedence, b.posted_at, b.escalated_at, b.copies, s.waiting, s.sent_at, s.sent "
            "FROM bulletins b JOIN sends s ON s.seq = b.seq WHERE b.id = ?",
            (bulletin_id,),
        ).fetchone()
        if row is None:
            return None
        precedence, posted_at, escalated_at, copies, waiting, sent_at, sent = row
        waiting_set = set(_decode_indexes(waiting)) if waiting is not None else set()
        times = dict(_decode_pairs(sent)) if sent is not None else {}
        held = {
            idx: (state, reason)
            for idx, state, reason in self.db.execute(
                "SELECT h.idx, h.state, h.reason FROM held h JOIN bulletins b ON b.seq = h.seq WHERE b.id = ?",
                (bulletin_id,),
            )
        }
        states = []
        for i, d in enumerate(_decode_copies(copies)):
            if i in held:
                states.append((d, held[i][0], None))
            elif i in waiting_set:
                states.append((d, QUEUED, times.get(i)))
            else:
                states.append((d, SENT, times.get(i, sent_at)))
        return (precedence, posted_at, escalated_at), states, {i: reason for i, (_, reason) in held.items()}

    def status(self, bulletin_id: str) -> BulletinStatus | None:
        """Each recipient's state of one bulletin this node posted, or None if unknown."""
        found = self._copy_states(bulletin_id)
        if found is None:
            return None
        (precedence, posted_at, escalated_at), states, reasons = found
        out: dict[str, RecipientStatus] = {}
        for i, (d, state, sent_at) in enumerate(states):
            out[d.recipient] = RecipientStatus(d.recipient, state, sent_at if state == SENT else None, problem=reasons.get(i))
        receipts: dict[str, dict[str, int]] = {}
        for office, kind, at in self.db.execute(
            "SELECT office, kind, at FROM receipts WHERE bulletin_id = ?", (bulletin_id,)
        ):
            receipts.setdefault(office, {})[kind] = at
        for office, kinds in receipts.items():
            prior = out.get(office, RecipientStatus(office, SENT))
            # A read or acknowledged receipt implies delivery.
            delivered = kinds.get(DELIVERED, kinds.get(READ, kinds.get(ACKNOWLEDGED)))
            state = max((k for k in kinds if k in _STATE_ORDER), key=_STATE_ORDER.__getitem__, default=DELIVERED)
            if _STATE_ORDER[state] < _STATE_ORDER[prior.state]:
                state = prior.state
            out[office] = RecipientStatus(office, state, prior.sent_at, delivered, kinds.get(READ), kinds.get(ACKNOWLEDGED))
        return BulletinStatus(bulletin_id, precedence, posted_at, out, escalated_at)  # type: ignore[arg-type]

    def check_flash(self, now_ms: int) -> list[Overdue]:
        """FLASH bulletins past their deadline with an office recipient where no person
        acknowledged it (no ``acknowledged`` receipt: a ``delivered`` one is only the machine).

        Those past their deadline that every recipient acknowledged are settled (no longer
        watched), so an escalation clears itself when the last receipt arrives.

        Feed copies count as acknowledged once JetStream stored them: the sender cannot
        know a feed's membership (the centre owns it), so it cannot wait for each member.
        """
        out: list[Overdue] = []
        settled: list[str] = []
        for (bid,) in self.db.execute(
            "SELECT id FROM bulletins WHERE ack_deadline IS NOT NULL AND ack_deadline <= ?", (now_ms,)
        ).fetchall():
            found = self._copy_states(bid)
            assert found is not None  # the row was just read
            (_, posted_at, escalated_at), states, _ = found
            answered = {
                r[0]
                for r in self.db.execute(
                    "SELECT office FROM receipts WHERE bulletin_id = ? AND kind = ?", (bid, ACKNOWLEDGED)
                )
            }
            missing = tuple(
                sorted(
                    d.recipient
                    for d, state, _ in states
                    if (state in (QUEUED, HELD) if d.recipient.startswith("feed:") else d.recipient not in answered)
                )
            )
            if missing:
                out.append(Overdue(bid, posted_at, missing, escalated_at))  # type: ignore[arg-type]
            else:
                settled.append(bid)
        if settled:
            self.settle_flash(settled)
        return out

    def mark_escalated(self, bulletin_id: str, *, now_ms: int) -> None:
        with _transaction(self.db):
            self.db.execute(
                "UPDATE bulletins SET escalated_at = ? WHERE id = ? AND escalated_at IS NULL", (now_ms, bulletin_id)
            )

    def settle_flash(self, bulletin_ids: Iterable[str]) -> None:
        """Stop watching FLASH bulletins every recipient acknowledged."""
        with _transaction(self.db):
            self.db.executemany("UPDATE bulletins SET ack_deadline = NULL WHERE id = ?", [(b,) for b in bulletin_ids])

    def oldest_queued_at(self) -> int | None:
        """When the oldest message still waiting was queued (the heartbeat's outbox lag)."""
        found = [
            self.db.execute(
                "SELECT MIN(b.posted_at) FROM sends s JOIN bulletins b ON b.seq = s.seq WHERE s.waiting IS NOT NULL"
            ).fetchone()[0],
            self.db.execute("SELECT MIN(queued_at) FROM messages WHERE state = 'queued'").fetchone()[0],
        ]
        return min((t for t in found if t is not None), default=None)

    def flash_watch_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM bulletins WHERE ack_deadline IS NOT NULL")]


def _create(db: sqlite3.Connection) -> None:
    """Create what ``_SCHEMA`` lists, in the caller's transaction (``executescript`` would
    commit it first)."""
    statement = ""
    for line in _SCHEMA.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""


def _split(keys: Iterable[int]) -> tuple[list[int], dict[int, set[int]]]:
    """Copy keys -> (receipt message seqs, {bulletin seq: copy indexes})."""
    receipts: list[int] = []
    copies: dict[int, set[int]] = {}
    for key in keys:
        if key < 0:
            receipts.append(-key)
        else:
            seq = key >> COPY_BITS
            found = copies.get(seq)
            if found is None:
                copies[seq] = {key & _COPY_MASK}
            else:
                found.add(key & _COPY_MASK)
    return receipts, copies


def _migrate_v1(db: sqlite3.Connection) -> None:
    """Convert a version 1 outbox (a ``messages`` row per bulletin copy) to version 2, in
    the caller's transaction: nothing queued is lost, each copy keeps its state and ack
    time, and bulletins keep their posting order (that of their first copy)."""
    db.execute("ALTER TABLE bulletins RENAME TO bulletins_v1")
    db.execute("DROP INDEX IF EXISTS messages_bulletin")
    _create(db)
    copies: dict[str, list[tuple[str, str, str, str, int | None, int, str | None]]] = {}
    for bid, recipient, subject, msg_id, state, sent_at, attempts, last_error in db.execute(
        "SELECT bulletin_id, recipient, subject, msg_id, state, sent_at, attempts, last_error FROM messages "
        "WHERE kind = 'bulletin' ORDER BY seq"
    ):
        copies.setdefault(bid, []).append((recipient, subject, msg_id, state, sent_at, attempts, last_error))
    old = {
        r[0]: r
        for r in db.execute(
            "SELECT id, precedence, rank, sealed, posted_at, ack_deadline, escalated_at FROM bulletins_v1"
        )
    }
    order = [bid for bid in copies if bid in old] + sorted((b for b in old if b not in copies), key=lambda b: old[b][4])
    for seq, bid in enumerate(order, 1):
        _, precedence, rank, sealed, posted_at, ack_deadline, escalated_at = old[bid]
        mine = copies.get(bid, [])
        deliveries = [Delivery(c[0], c[1], c[2]) for c in mine]
        waiting = [i for i, c in enumerate(mine) if c[3] == QUEUED]
        times = sorted((i, c[4]) for i, c in enumerate(mine) if c[3] != QUEUED and c[4] is not None)
        errors = [c[6] for c in mine if c[6]]
        db.execute(
            "INSERT INTO bulletins (seq, id, precedence, rank, sealed, copies, posted_at, ack_deadline, escalated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            (seq, bid, precedence, rank, sealed, _encode(deliveries), posted_at, ack_deadline, escalated_at),
        )
        db.execute(
            "INSERT INTO sends (seq, rank, waiting, unsent, sent_at, sent, attempts, last_error) VALUES (?,?,?,?,?,?,?,?)",
            (
                seq,
                rank,
                _encode(waiting) if waiting else None,
                len(waiting),
                max((t for _, t in times), default=None),
                _encode(times) if times else None,
                max((c[5] for c in mine), default=0),
                errors[-1] if errors else None,
            ),
        )
    db.execute("DELETE FROM messages WHERE kind = 'bulletin'")
    db.execute("DROP TABLE bulletins_v1")


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error (sqlite3's own context manager does not
    BEGIN in autocommit mode).

    ``durable=False`` commits with ``synchronous=NORMAL``: safe against a crash of the
    process, not against power loss. Used only where losing the last commits costs a
    re-send that the receiver dedupes (``sent`` marks) or a repeated receipt, never
    where it would lose a bulletin. A later full-sync commit syncs those pages too.
    """

    def __init__(self, db: sqlite3.Connection, *, durable: bool = True) -> None:
        self.db = db
        self.durable = durable

    def __enter__(self) -> sqlite3.Connection:
        if not self.durable:
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            if not self.durable:
                self.db.execute("PRAGMA synchronous=FULL")


transaction = _transaction
