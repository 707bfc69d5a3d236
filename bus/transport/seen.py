"""Consumer-side dedupe: the bulletin ids this node already handed to its application.

JetStream drops a re-published copy only within its duplicate window (minutes), and a
consumer ack lost in a crash redelivers a message; so the receiver keeps, on disk, every
bulletin id it delivered, for as long as the streams keep messages. The application
sees each bulletin once even when it arrives twice (inbox and feed, or redelivery).

Ids are committed after the application accepted a batch and before the batch is acked:
a crash between the two redelivers the batch and this store drops it. A crash between
the application's callback and this commit can hand a bulletin over twice, so the
application stores bulletins keyed by id (office_node does).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from bus.transport.outbox import chunks, connect_sqlite, marks, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    bulletin_id TEXT PRIMARY KEY,
    via TEXT NOT NULL,            -- the subject it first arrived on
    seen_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_at ON seen(seen_at);
"""


class SeenStore:
    """``db`` may be shared (the node shares the outbox's connection so that remembering a
    batch and queueing its receipts is one transaction, one fsync)."""

    def __init__(self, path: str | Path | None = None, *, db: sqlite3.Connection | None = None) -> None:
        if db is None:
            if path is None:
                raise ValueError("SeenStore needs a path or a connection")
            db = connect_sqlite(Path(path))
        self.db = db
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def contains(self, bulletin_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM seen WHERE bulletin_id = ?", (bulletin_id,)).fetchone() is not None

    def seen_of(self, bulletin_ids: Sequence[str]) -> set[str]:
        """Which of ``bulletin_ids`` were delivered already (one query for a fetched batch)."""
        out: set[str] = set()
        for chunk in chunks(bulletin_ids):
            out.update(
                r[0] for r in self.db.execute(f"SELECT bulletin_id FROM seen WHERE bulletin_id IN ({marks(len(chunk))})", chunk)
            )
        return out

    def add_many(self, items: Iterable[tuple[str, str]], *, now_ms: int) -> None:
        """Remember ``(bulletin_id, subject)`` pairs, in one commit."""
        with transaction(self.db):
            self.insert(items, now_ms=now_ms)

    def insert(self, items: Iterable[tuple[str, str]], *, now_ms: int) -> None:
        """``add_many`` inside a transaction the caller holds."""
        self.db.executemany(
            "INSERT OR IGNORE INTO seen (bulletin_id, via, seen_at) VALUES (?, ?, ?)",
            [(bid, via, now_ms) for bid, via in items],
        )

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM seen").fetchone()[0]

    def prune(self, before_ms: int) -> int:
        """Forget ids seen before ``before_ms`` (older than the streams' max age: they cannot come back)."""
        with transaction(self.db):
            cur = self.db.execute("DELETE FROM seen WHERE seen_at < ?", (before_ms,))
        return cur.rowcount
