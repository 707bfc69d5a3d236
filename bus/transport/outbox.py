"""The durable outbox: every message a node sends is on disk before any send attempt.

The rule: **a message leaves the queue only when JetStream acknowledged storing it.**
A bulletin posted while NATS is unreachable waits here (surviving restarts of the node)
and goes out once the link is back; a publish whose ack never came is re-sent with the
same ``Nats-Msg-Id``, so JetStream (and, past its dedup window, the receiver) drops the
second copy.

Order: ``next_batch`` hands out queued messages FLASH first, then IMMEDIATE, PRIORITY,
ROUTINE, and in posting order within each precedence. The pump publishes a batch in
that order on one connection, so JetStream stores them in that order; only a message
whose publish failed while later ones succeeded can arrive out of order (it is re-sent
on the next round).

States, per recipient of a bulletin: ``queued`` -> ``sent`` (JetStream ack) ->
``delivered`` (signed receipt from that recipient) -> ``read`` (read receipt). Feed
members are not known to the sender; their receipts add rows as they arrive.

Durability: SQLite in WAL mode with ``synchronous=FULL``. In WAL mode NORMAL survives a
crash of this process but may lose the last commits on power loss; a bulletin the
officer was told is "queued" must survive a power cut at a border post, and a commit
costs well under a millisecond here, so FULL. ``enqueue_many`` shares one commit.
Bookkeeping whose loss only causes a deduped re-send (``sent`` marks, receipts
received) commits with NORMAL (see ``_transaction``).

Reading: the sealed bytes of a bulletin are stored once (``bulletins.sealed``) however
many copies it has. The outbox also keeps, in memory, the sealed bytes of bulletins it
queued itself until every copy has been handed out once (bounded by
``FRESH_MAX_BYTES``), so the pump's next round does not read the same blob from disk
once per copy. The disk stays the only record: after a restart, a retry, or past the
bound, ``next_batch`` reads the bytes from ``bulletins``. The bytes of an id never
change (the id is the key, and a repost is refused), so the copy in memory cannot differ.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import msgspec

from bus.errors import ValidationError

QUEUED, SENT, DELIVERED, READ = "queued", "sent", "delivered", "read"
_STATE_ORDER = {QUEUED: 0, SENT: 1, DELIVERED: 2, READ: 3}
#: At most this many sealed bytes are kept in memory for the pump (see the module docstring).
FRESH_MAX_BYTES = 16 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bulletins (
    id TEXT PRIMARY KEY,
    precedence TEXT NOT NULL,
    rank INTEGER NOT NULL,
    sealed BLOB NOT NULL,
    posted_at INTEGER NOT NULL,
    ack_deadline INTEGER,            -- FLASH: receipts from every office recipient are due by then
    escalated_at INTEGER
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- posting order
    rank INTEGER NOT NULL,                   -- 0 = FLASH
    kind TEXT NOT NULL,                      -- 'bulletin' or 'receipt'
    bulletin_id TEXT NOT NULL,
    recipient TEXT NOT NULL,                 -- office id, or 'feed:<name>' (receipts: the bulletin's sender)
    subject TEXT NOT NULL,
    msg_id TEXT NOT NULL UNIQUE,
    payload BLOB,                            -- NULL for bulletins: the bytes are in bulletins.sealed
    state TEXT NOT NULL DEFAULT 'queued',
    queued_at INTEGER NOT NULL,
    sent_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS messages_queue ON messages(rank, seq) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS messages_bulletin ON messages(bulletin_id);
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


class Delivery(msgspec.Struct, frozen=True):  # built per copy or bulletin sent: a Struct builds fast
    """One recipient copy to publish: where to, under which id."""

    recipient: str
    subject: str
    msg_id: str


class Pending(NamedTuple):
    """A queued message as the pump sees it. (A named tuple: the pump makes one per copy,
    and a frozen dataclass costs several times more to build.)"""

    seq: int
    rank: int
    subject: str
    msg_id: str
    payload: bytes
    kind: str
    bulletin_id: str
    recipient: str


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    recipient: str
    state: str
    sent_at: int | None = None
    delivered_at: int | None = None
    read_at: int | None = None


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


class Outbox:
    """The node's durable send queue and the sender-side record of receipts."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = connect_sqlite(self.path)
        self.db.executescript(_SCHEMA)
        #: bulletin id -> [sealed bytes, copies not yet handed out], for bulletins queued here
        self._fresh: dict[str, list[bytes | int]] = {}
        self._fresh_bytes = 0

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
        self.enqueue_many([(bulletin_id, precedence, rank, sealed, deliveries, ack_deadline)], now_ms=now_ms)

    def enqueue_many(
        self,
        items: Iterable[tuple[str, str, int, bytes, Sequence[Delivery], int | None]],
        *,
        now_ms: int,
    ) -> None:
        """Queue bulletins ``(id, precedence, rank, sealed, deliveries, ack_deadline)`` in one commit."""
        items = list(items)
        for _, _, _, _, deliveries, _ in items:
            if not deliveries:
                raise ValidationError("recipients", "a bulletin needs at least one recipient")
        # Two statements for the whole batch (not two per bulletin); the copies' seq order
        # is still bulletin by bulletin, each in its delivery order.
        try:
            with _transaction(self.db):
                self.db.executemany(
                    "INSERT INTO bulletins (id, precedence, rank, sealed, posted_at, ack_deadline) VALUES (?,?,?,?,?,?)",
                    [(bid, precedence, rank, sealed, now_ms, deadline) for bid, precedence, rank, sealed, _, deadline in items],
                )
                self.db.executemany(
                    "INSERT INTO messages (rank, kind, bulletin_id, recipient, subject, msg_id, queued_at) "
                    "VALUES (?, 'bulletin', ?, ?, ?, ?, ?)",
                    [
                        (rank, bid, d.recipient, d.subject, d.msg_id, now_ms)
                        for bid, _, rank, _, deliveries, _ in items
                        for d in deliveries
                    ],
                )
        except sqlite3.IntegrityError:
            raise ValidationError("id", f"bulletin {self._reposted(items)} was already posted") from None
        fresh = self._fresh
        for bid, _, _, sealed, deliveries, _ in items:  # committed: the pump may take them from memory
            if self._fresh_bytes + len(sealed) > FRESH_MAX_BYTES:
                break  # the rest are read from disk
            fresh[bid] = [sealed, len(deliveries)]
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
        """Up to ``limit`` queued messages, FLASH first, posting order within a precedence;
        none of the seqs in ``exclude`` (the pump's copies still waiting for their ack)."""
        select = "SELECT seq, rank, subject, msg_id, payload, kind, bulletin_id, recipient FROM messages "
        if not exclude:
            rows = self.db.execute(select + "WHERE state = 'queued' ORDER BY rank, seq LIMIT ?", (limit,)).fetchall()
        else:
            # The queue order from the index alone, then the rows wanted.
            seqs = [
                seq
                for (seq,) in self.db.execute(
                    "SELECT seq FROM messages WHERE state = 'queued' ORDER BY rank, seq LIMIT ?",
                    (limit + len(exclude),),
                )
                if seq not in exclude
            ][:limit]
            if not seqs:
                return []
            rows = self.db.execute(
                select + f"WHERE seq IN ({','.join('?' * len(seqs))}) ORDER BY rank, seq", seqs
            ).fetchall()
        return self._with_payloads(rows)

    def _with_payloads(self, rows: list[tuple[object, ...]]) -> list[Pending]:
        """Pending copies of ``rows``, a bulletin copy's payload being its bulletin's sealed
        bytes: from memory while fresh, else from disk (one query for all it lacks)."""
        fresh = self._fresh
        out: list[Pending] = []
        missing: dict[str, list[int]] = {}  # bulletin id -> indexes in out still without bytes
        for row in rows:
            if row[4] is None:  # a bulletin copy (receipts carry their own payload)
                bid: str = row[6]  # type: ignore[assignment]
                entry = fresh.get(bid)
                if entry is not None:
                    sealed = entry[0]
                    entry[1] -= 1  # type: ignore[operator]
                    if entry[1] == 0:  # every copy handed out once: retries read the disk
                        del fresh[bid]
                        self._fresh_bytes -= len(sealed)  # type: ignore[arg-type]
                    row = (*row[:4], sealed, *row[5:])
                else:
                    missing.setdefault(bid, []).append(len(out))
            out.append(Pending._make(row))
        if missing:
            ids = list(missing)
            for i in range(0, len(ids), 500):  # stay under SQLite's bound-variable limit
                chunk = ids[i : i + 500]
                for bid, sealed in self.db.execute(
                    f"SELECT id, sealed FROM bulletins WHERE id IN ({','.join('?' * len(chunk))})", chunk
                ):
                    for j in missing[bid]:
                        out[j] = out[j]._replace(payload=sealed)
        return out

    def mark_sent(self, seqs: Iterable[int], *, now_ms: int) -> None:
        # Not fsynced: if a power cut loses this mark, the copy is re-sent with the same
        # Nats-Msg-Id and deduped (by JetStream, or by the receiver's seen store).
        seqs = list(seqs)
        if not seqs:
            return
        with _transaction(self.db, durable=False):
            for i in range(0, len(seqs), 500):  # stay under SQLite's bound-variable limit
                chunk = seqs[i : i + 500]
                self.db.execute(
                    "UPDATE messages SET state = 'sent', sent_at = ?, attempts = attempts + 1, last_error = NULL "
                    f"WHERE state = 'queued' AND seq IN ({','.join('?' * len(chunk))})",
                    (now_ms, *chunk),
                )

    def note_failures(self, failures: Iterable[tuple[int, str]]) -> None:
        """Record why sends failed; the messages stay queued for the next round."""
        with _transaction(self.db, durable=False):
            self.db.executemany(
                "UPDATE messages SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                [(err[:500], s) for s, err in failures],
            )

    def depth(self) -> int:
        """How many messages wait to be sent."""
        return self.db.execute("SELECT COUNT(*) FROM messages WHERE state = 'queued'").fetchone()[0]

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

    def status(self, bulletin_id: str) -> BulletinStatus | None:
        """Each recipient's state of one bulletin this node posted, or None if unknown."""
        row = self.db.execute(
            "SELECT precedence, posted_at, escalated_at FROM bulletins WHERE id = ?", (bulletin_id,)
        ).fetchone()
        if row is None:
            return None
        out: dict[str, RecipientStatus] = {}
        for recipient, state, sent_at in self.db.execute(
            "SELECT recipient, state, sent_at FROM messages WHERE bulletin_id = ? AND kind = 'bulletin' ORDER BY seq",
            (bulletin_id,),
        ):
            out[recipient] = RecipientStatus(recipient, state, sent_at)
        receipts: dict[str, dict[str, int]] = {}
        for office, kind, at in self.db.execute(
            "SELECT office, kind, at FROM receipts WHERE bulletin_id = ?", (bulletin_id,)
        ):
            receipts.setdefault(office, {})[kind] = at
        for office, kinds in receipts.items():
            prior = out.get(office, RecipientStatus(office, SENT))
            delivered = kinds.get("delivered", kinds.get("read"))  # a read receipt implies delivery
            state = READ if "read" in kinds else DELIVERED
            if _STATE_ORDER[state] < _STATE_ORDER[prior.state]:
                state = prior.state
            out[office] = RecipientStatus(office, state, prior.sent_at, delivered, kinds.get("read"))
        return BulletinStatus(bulletin_id, row[0], row[1], out, row[2])

    def check_flash(self, now_ms: int) -> list[Overdue]:
        """FLASH bulletins past their deadline with an office recipient that sent no receipt.

        Those past their deadline that every recipient acknowledged are settled (no longer
        watched), so an escalation clears itself when the last receipt arrives.

        Feed copies count as acknowledged once JetStream stored them: the sender cannot
        know a feed's membership (the centre owns it), so it cannot wait for each member.
        """
        out: list[Overdue] = []
        settled: list[str] = []
        for bid, posted_at, escalated_at in self.db.execute(
            "SELECT id, posted_at, escalated_at FROM bulletins WHERE ack_deadline IS NOT NULL AND ack_deadline <= ?",
            (now_ms,),
        ).fetchall():
            missing = tuple(
                r[0]
                for r in self.db.execute(
                    "SELECT m.recipient FROM messages m WHERE m.bulletin_id = ? AND m.kind = 'bulletin' AND ("
                    "  (m.recipient NOT LIKE 'feed:%' AND NOT EXISTS (SELECT 1 FROM receipts r WHERE r.bulletin_id = m.bulletin_id AND r.office = m.recipient))"
                    "  OR (m.recipient LIKE 'feed:%' AND m.state = 'queued')) ORDER BY m.recipient",
                    (bid,),
                )
            )
            if missing:
                out.append(Overdue(bid, posted_at, missing, escalated_at))
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
        return self.db.execute("SELECT MIN(queued_at) FROM messages WHERE state = 'queued'").fetchone()[0]

    def flash_watch_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM bulletins WHERE ack_deadline IS NOT NULL")]


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
