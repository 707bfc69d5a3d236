"""Quarantine: whatever came off the wire and failed to open is kept, never dropped.

Each entry keeps the raw bytes, the subject, its witness time (when the server stored
it: a retry judges the sender's key by that time, never by the time of the retry), the
reason code (``EnvelopeError.reason``) and message, first/last seen and attempts; the same bytes arriving again bump the
entry rather than adding one. The consumer acks a message only after ``add`` returned
(the row is committed), so a message is never acked-and-lost. Retryable reasons (an
unknown sender, whose directory record may simply not have arrived yet) are opened
again by ``retry_all`` when the directory changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bus.envelope import Opened
from bus.errors import BloError, EnvelopeError
from bus.transport.metrics import BusMetrics
from bus.transport.outbox import connect_sqlite, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    qid INTEGER PRIMARY KEY AUTOINCREMENT,
    digest BLOB NOT NULL UNIQUE,         -- BLAKE2b of subject and bytes: the same message is one entry
    subject TEXT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    retryable INTEGER NOT NULL,
    raw BLOB NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    witnessed_at INTEGER                 -- when the server stored it (schemas/TRUST.md): judged again by it
);
CREATE INDEX IF NOT EXISTS quarantine_retry ON quarantine(retryable);
"""


@dataclass(frozen=True, slots=True)
class Entry:
    qid: int
    subject: str
    reason: str
    message: str
    retryable: bool
    raw: bytes
    first_seen: int
    last_seen: int
    attempts: int


@dataclass(frozen=True, slots=True)
class Reopened:
    """A quarantined bulletin that opens now. The caller delivers it, then ``resolve``s ``qid``."""

    qid: int
    subject: str
    opened: Opened


def _digest(subject: str, raw: bytes) -> bytes:
    return hashlib.blake2b(subject.encode() + b"\x00" + raw, digest_size=16).digest()


def reason_of(exc: BaseException) -> tuple[str, str, bool]:
    """``(reason, message, retryable)`` of any failure; non-bus exceptions are 'internal'."""
    if isinstance(exc, EnvelopeError):
        return exc.reason, exc.message, exc.retryable
    if isinstance(exc, BloError):
        return exc.reason, exc.message, False
    return "internal", f"{type(exc).__name__}: {exc}"[:500], False


class Quarantine:
    def __init__(self, path: str | Path, metrics: BusMetrics | None = None) -> None:
        self.db = connect_sqlite(Path(path))
        self.db.executescript(_SCHEMA)
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(quarantine)")}
        if "witnessed_at" not in columns:  # a file from before witness times: retries use first_seen
            with transaction(self.db):
                self.db.execute("ALTER TABLE quarantine ADD COLUMN witnessed_at INTEGER")
        self.metrics = metrics

    def close(self) -> None:
        self.db.close()

    def add(self, raw: bytes, subject: str, error: BaseException, *, now_ms: int, witnessed_at: int | None = None) -> int:
        """Keep ``raw`` (stored by the server at ``witnessed_at``; default ``now_ms``) with
        why it failed; committed when this returns. Returns the entry id."""
        reason, message, retryable = reason_of(error)
        digest = _digest(subject, raw)
        with transaction(self.db):
            self.db.execute(
                "INSERT INTO quarantine (digest, subject, reason, message, retryable, raw, first_seen, last_seen, "
                "witnessed_at) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(digest) DO UPDATE SET "
                "attempts = attempts + 1, last_seen = excluded.last_seen, reason = excluded.reason, "
                "message = excluded.message, retryable = excluded.retryable",
                (digest, subject, reason, message, int(retryable), bytes(raw), now_ms, now_ms,
                 now_ms if witnessed_at is None else witnessed_at),
            )
            qid = self.db.execute("SELECT qid FROM quarantine WHERE digest = ?", (digest,)).fetchone()[0]
        if self.metrics is not None:
            self.metrics.quarantined.labels(reason=reason).inc()
        return qid

    def entries(self, *, reason: str | None = None) -> list[Entry]:
        sql = "SELECT qid, subject, reason, message, retryable, raw, first_seen, last_seen, attempts FROM quarantine"
        rows = self.db.execute(
            sql + (" WHERE reason = ? ORDER BY qid" if reason else " ORDER BY qid"), (reason,) if reason else ()
        )
        return [Entry(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8]) for r in rows]

    def counts(self) -> dict[str, int]:
        """Entries held, by reason."""
        return dict(
            self.db.execute("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason ORDER BY reason").fetchall()
        )

    def retry_all(self, open_message: Callable[[str, bytes, int], Opened], *, now_ms: int) -> list[Reopened]:
        """Open every retryable entry again with ``open_message(subject, raw, witnessed_at)`` (the node's
        open-and-check-route). Those that open are returned (still held until ``resolve``);
        those that fail again get their attempts, time and reason updated."""
        out: list[Reopened] = []
        # Only bulletins: a receipt from an unknown signer is kept for inspection (its
        # FLASH escalation already told the sender something is wrong).
        rows = self.db.execute(
            "SELECT qid, subject, raw, COALESCE(witnessed_at, first_seen) FROM quarantine "
            "WHERE retryable = 1 AND subject NOT LIKE 'blo.receipt.%' ORDER BY qid"
        ).fetchall()
        failed: list[tuple[str, str, int, int, int]] = []
        for qid, subject, raw, witnessed_at in rows:
            try:
                out.append(Reopened(qid, subject, open_message(subject, raw, witnessed_at)))
            except Exception as exc:  # every failure stays quarantined, whatever it is
                reason, message, retryable = reason_of(exc)
                failed.append((reason, message, int(retryable), now_ms, qid))
        if failed:
            with transaction(self.db):
                self.db.executemany(
                    "UPDATE quarantine SET reason = ?, message = ?, retryable = ?, last_seen = ?, attempts = attempts + 1 WHERE qid = ?",
                    failed,
                )
        return out

    def resolve(self, qid: int) -> None:
        """Drop an entry whose message was delivered after all."""
        with transaction(self.db):
            self.db.execute("DELETE FROM quarantine WHERE qid = ?", (qid,))
