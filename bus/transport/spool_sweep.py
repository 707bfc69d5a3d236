"""The spool's lifetime: when a node deletes its local copies of attachments.

The rules (schemas/ATTACHMENTS.md 5.5), for each file in the spool, over every upload and
download of it (one file may be both: a centre forwards what it received):

* a file **received** whole stays as long as the bulletin it belongs to, which the node's
  store keeps: it is the office's copy of the evidence;
* a file still **moving** (an upload or a download queued) stays;
* a file **sent** stays, once every upload of it is done, as long as the buckets keep the
  uploaded copies (the bulletin streams' max age), then goes: recipients fetch from the
  buckets, never from the sender;
* a file that **never became whole** here (its downloads corrupt, refused or given up)
  goes at once: what failed a check is in the quarantine;
* a file sealed here but **never sent** (the post failed after its files were sealed)
  goes a day after it was sealed;
* a download still queued a day longer than the buckets keep objects is given up
  (``expired``): its chunks can no longer arrive;
* leftovers of a crash: ``.part`` files not written for an hour, and spool files no row
  knows of a day after their last write.

``due`` is the rule as a pure function; ``sweep`` applies it to a ``Spool`` (a ``Transfers``).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bus.transport.outbox import transaction


class Spool(Protocol):
    """What a sweep needs of ``bus.transport.transfers.Transfers`` (which sweeps itself)."""

    db: sqlite3.Connection
    spool: Path
    bucket_max_age_s: float
    clock: Callable[[], int]

    def remove_file(self, object_hex: str, *, now_ms: int, forget: bool = False) -> None: ...


DAY_MS = 86_400_000
#: A ``.part`` file (a file being sealed, a thumbnail being written) not written for this long.
PART_GRACE_S = 3600.0
#: A file sealed here and not queued for upload this long after: its post failed.
UNSENT_GRACE_MS = DAY_MS
EXPIRED = "expired"


def due(
    uploads: Collection[str], downloads: Collection[str], *, last_upload_done: int | None, sealed_at: int | None,
    retention_ms: int,
) -> int | None:  # fmt: skip
    """When a file's local copy may be deleted (ms since the epoch; 0: now), or None while
    it must stay. ``uploads``, ``downloads``: the states of every upload and download of it."""
    if "complete" in downloads or "queued" in uploads or "queued" in downloads:
        return None
    if uploads:
        return (last_upload_done or 0) + retention_ms
    if downloads:
        return 0
    return (sealed_at or 0) + UNSENT_GRACE_MS


@dataclass(frozen=True, slots=True)
class Swept:
    """What one sweep did: downloads given up, files removed, leftovers deleted."""

    expired: int = 0
    removed: int = 0
    leftovers: int = 0


def sweep(t: Spool, *, now_ms: int | None = None) -> Swept:
    """Apply the rules to ``t``'s queues and spool once."""
    now = t.clock() if now_ms is None else now_ms
    retention = int(t.bucket_max_age_s * 1000)
    with transaction(t.db):
        expired = t.db.execute(
            "UPDATE downloads SET state = ?, reason = 'attachment_expired', message = ?, done_at = ? "
            "WHERE state = 'queued' AND queued_at < ?",
            (EXPIRED, f"not whole {retention // DAY_MS + 1} days after its bulletin arrived: the bus no longer keeps its "
             "chunks, so it cannot arrive any more", now, now - retention - DAY_MS),
        ).rowcount  # fmt: skip
    downloads: dict[str, list[str]] = defaultdict(list)
    for entry, state in t.db.execute("SELECT entry, state FROM downloads"):
        downloads[json.loads(entry)["object"]].append(state)
    uploads: dict[str, list[str]] = defaultdict(list)
    last_done: dict[str, int] = {}
    for obj, state, done_at in t.db.execute("SELECT object, state, done_at FROM uploads"):
        uploads[obj].append(state)
        if done_at is not None:
            last_done[obj] = max(done_at, last_done.get(obj, 0))
    removed = 0
    for obj, sealed_at in t.db.execute("SELECT object, sealed_at FROM files WHERE removed_at IS NULL").fetchall():
        when = due(uploads[obj], downloads[obj], last_upload_done=last_done.get(obj), sealed_at=sealed_at,
                   retention_ms=retention)  # fmt: skip
        if when is not None and when <= now:
            t.remove_file(obj, now_ms=now, forget=not uploads[obj] and not downloads[obj])
            removed += 1
    return Swept(expired, removed, _leftovers(t))


def _leftovers(t: Spool) -> int:
    """Delete what a crash left in the spool; the count."""
    known = {row[0] for row in t.db.execute("SELECT object FROM files WHERE removed_at IS NULL")}
    now = time.time()  # file times are wall-clock times
    deleted = 0
    for path in t.spool.iterdir():
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue
        if path.name.endswith(".part"):
            stale = age > PART_GRACE_S
        else:
            stale = path.name.split(".", 1)[0] not in known and age > UNSENT_GRACE_MS / 1000
        if stale and path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            deleted += 1
    return deleted
