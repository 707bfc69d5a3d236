"""Where each of a node's consumers has reached, kept by the node, so that the server's
consumer is disposable (schemas/SUBJECTS.md, "Consumers of one node").

A durable consumer at the streams' replicas is a Raft group on every hub server, kept on
disk and recovered at each restart; every office reads through 13 (its inbox's four,
four per feed, its receipts'), and a hub could not hold those of 1,000 offices
(docs/SCALE.md). So a node reads through consumers the server keeps only while the node
reads them (one replica, in memory, deleted after ``INACTIVE_S`` idle), and keeps on its
own disk where each must start again: the stored time of the earliest message it has not settled, or of
the last it settled when all are. A consumer created again (after a link outage longer
than ``INACTIVE_S``, a hub restart, the loss of the one server that held it) starts
there; what comes twice is dropped by the node's dedupe (``seen.py``).

A time, not a stream sequence: a hub rebuilt from scratch numbers its streams from 1
again, and a sequence kept from before would skip everything until the new numbers
passed it; a stored time at worst brings again what was stored at the same instant.

``Cursor`` is the pure part (settled messages in, a restart point out, like
``fast_batch``); ``CursorStore`` keeps restart points in the node's SQLite database, in
the same file as the dedupe memory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from bus.transport.outbox import transaction

#: How long the server keeps a consumer no one reads (a node offline longer creates it
#: again from its cursor). Ten minutes spans a flapping link's outages without holding
#: memory for offices gone for the day.
INACTIVE_S = 600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cursors (
    consumer TEXT PRIMARY KEY,   -- the consumer's name
    restart_ns INTEGER NOT NULL  -- stored time (ns since the epoch) a new one starts at
) WITHOUT ROWID;
"""


class Cursor:
    """One consumer's restart point, from the messages it delivered and which of them
    were settled (acked, or quarantined and acked). A message left unsettled (the
    application failed; a bulletin after this office's removal from a feed) holds the
    restart point at its own time until it comes again and is settled."""

    def __init__(self, restart_ns: int | None = None) -> None:
        self.restart_ns = restart_ns  # None: nothing delivered yet (start where the spec says)
        self._open: dict[int, int] = {}  # stream sequence -> stored ns, delivered, not settled
        self._last: tuple[int, int] | None = None  # (sequence, ns) of the newest delivered

    def delivered(self, messages: Iterable[tuple[int, int, bool]]) -> bool:
        """``(stream sequence, stored ns, settled)`` of a batch; True if the restart point moved."""
        for seq, ns, settled in messages:
            if settled:
                self._open.pop(seq, None)
            else:
                self._open[seq] = ns
            if self._last is None or seq > self._last[0]:
                self._last = (seq, ns)
        if self._open:
            point = self._open[min(self._open)]
        elif self._last is not None:
            point = self._last[1]
        else:
            return False
        moved = point != self.restart_ns
        self.restart_ns = point
        return moved

    def recreated(self) -> None:
        """A consumer was created afresh at ``restart_ns``: everything from there comes
        again, so nothing is open any more."""
        self._open.clear()
        self._last = None


class CursorStore:
    """Restart points by consumer name, in ``db`` (the node's dedupe database)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.db.executescript(_SCHEMA)

    def get(self, consumer: str) -> int | None:
        row = self.db.execute("SELECT restart_ns FROM cursors WHERE consumer = ?", (consumer,)).fetchone()
        return None if row is None else int(row[0])

    def put(self, consumer: str, restart_ns: int) -> None:
        # Not synced (``durable=False``): a restart point lost to a power cut is an older
        # one, which reads back a little more for the dedupe to drop; an fsync per fetched
        # batch would cost the receiver more than the whole commit of what it delivered.
        with transaction(self.db, durable=False):
            self.db.execute(
                "INSERT INTO cursors (consumer, restart_ns) VALUES (?, ?) "
                "ON CONFLICT(consumer) DO UPDATE SET restart_ns = excluded.restart_ns",
                (consumer, restart_ns),
            )

    def forget(self, consumer: str) -> None:
        with transaction(self.db):
            self.db.execute("DELETE FROM cursors WHERE consumer = ?", (consumer,))
