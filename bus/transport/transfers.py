"""Attachment transfers: the spool of sealed files, and durable upload and download queues.

Beside the outbox (its own SQLite file, ``attachments.db``, WAL and full sync like the
outbox), because a file is not a message: it moves chunk by chunk, each chunk its own
Object Store object (``object_store.py``), and what survives a crash or a dropped link is
the record of which chunks are done. The rules (schemas/ATTACHMENTS.md 5.3, 5.4):

* **the spool** (``<data>/attachments/<object id>.sealed``) holds each file's stored
  ciphertext, sealed chunks back to back: a sender writes it when the officer attaches the
  file (``seal_to_spool``), a receiver fills it chunk by chunk as they arrive. Serving a
  file decrypts it from there, chunk by chunk (``read_plaintext``). Files leave it by the
  rules of ``spool_sweep.py``: a received file stays with its bulletin, a sent one as long
  as the buckets keep their copies;
* **uploads**: one row per (bulletin, attachment, bucket), with a bitmap of the chunks
  JetStream acknowledged. The pump serves the highest precedence first and sends only
  unacknowledged chunks, at most ``WINDOW_BYTES`` in flight: a finished chunk is never
  sent again, whatever happened to the node or the link;
* **downloads**: one row per (bulletin, attachment), in the bucket it came through. The
  pump serves the highest precedence first, fetches the chunks the spool lacks (checks R3-R5
  on each), records them, and once all are held runs R6-R7 over the spool. A chunk not
  there yet (its sender is still uploading) is asked for again later, with back-off. What
  fails a check goes to the quarantine with the reason, and the download is ``corrupt``.

A bulletin is complete on this node when every one of its downloads is ``complete``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from prometheus_client import CollectorRegistry, Counter

from bus import attachments as att
from bus.errors import AttachmentCorrupt, AttachmentError, BusError
from bus.transport.client import BusClient
from bus.transport.object_store import (
    BucketSpec,
    NoBucket,
    Reader,
    chunk_outcome,
    chunk_subject,
    digest_of,
    ensure_bucket,
    send_chunk,
)
from bus.transport.outbox import connect_sqlite, transaction
from bus.transport.quarantine import Quarantine
from bus.transport.spool_sweep import Swept, sweep

log = logging.getLogger("blo.bus.transfers")

#: Sealed bytes of an upload in flight at once (31 full chunks), topped up as acks come in.
WINDOW_BYTES = 8 * 1024 * 1024
#: How often the spool is swept (spool_sweep.py); also once at start.
SWEEP_EVERY_S = 3600.0
#: At most one upload progress event per upload this often (and one when it is done).
PROGRESS_EVERY_S = 0.2
#: Chunks one download round asks for at once.
FETCH_AT_ONCE = 8
BACKOFF_MIN_S = 0.25
BACKOFF_MAX_S = 30.0
QUEUED, COMPLETE, REFUSED, CORRUPT, DONE = "queued", "complete", "refused", "corrupt", "done"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    object TEXT PRIMARY KEY,         -- object id, hex: the spool file <object>.sealed
    chunks INTEGER NOT NULL,
    size INTEGER NOT NULL,           -- plaintext bytes
    held BLOB NOT NULL,              -- bitmap: chunk i is in the spool (checked R3-R5, or sealed here)
    complete INTEGER NOT NULL DEFAULT 0,
    sealed_at INTEGER,               -- sealed here: when (spool_sweep.py, a file never sent)
    removed_at INTEGER               -- its spool file was deleted (spool_sweep.py)
);
CREATE TABLE IF NOT EXISTS uploads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bulletin_id TEXT NOT NULL,
    n INTEGER NOT NULL,              -- the attachment's index in the bulletin
    bucket TEXT NOT NULL,
    object TEXT NOT NULL,
    rank INTEGER NOT NULL,           -- 0 = FLASH
    chunks INTEGER NOT NULL,
    acked BLOB NOT NULL,             -- bitmap: chunk i is stored (its info acknowledged)
    left INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',   -- queued | done
    error TEXT,
    queued_at INTEGER NOT NULL,
    done_at INTEGER,
    UNIQUE (bulletin_id, n, bucket)
);
CREATE INDEX IF NOT EXISTS uploads_queue ON uploads(rank, id) WHERE state = 'queued';
CREATE TABLE IF NOT EXISTS downloads (
    bulletin_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    bucket TEXT NOT NULL,
    entry TEXT NOT NULL,             -- the attachment map (JSON; holds the file key: the file is 0600)
    rank INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',   -- queued | complete | refused | corrupt | expired
    reason TEXT,
    message TEXT,
    sniffed TEXT,                    -- the media type sniffed from the content (R8)
    queued_at INTEGER NOT NULL,
    done_at INTEGER,
    PRIMARY KEY (bulletin_id, n)
);
CREATE INDEX IF NOT EXISTS downloads_queue ON downloads(rank, queued_at) WHERE state = 'queued';
"""


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a file of an earlier build up to ``_SCHEMA`` (columns added since)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(files)")}
    with transaction(db):
        for column in ("sealed_at", "removed_at"):
            if column not in columns:
                db.execute(f"ALTER TABLE files ADD COLUMN {column} INTEGER")


def _bitmap(n: int, full: bool = False) -> bytearray:
    out = bytearray(b"\xff" * (-(-n // 8)) if full else bytes(-(-n // 8)))
    if full and n % 8:
        out[-1] = (1 << (n % 8)) - 1
    return out


def _has(bits: bytes, i: int) -> bool:
    return bool(bits[i // 8] & (1 << (i % 8)))


def _set(bits: bytearray, i: int) -> None:
    bits[i // 8] |= 1 << (i % 8)


def _count(bits: bytes) -> int:
    return sum(bin(b).count("1") for b in bits)


class TransferMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry()
        self.chunks_sent = Counter("blo_attachment_chunks_sent", "Sealed chunks stored by JetStream", registry=r)
        self.chunks_fetched = Counter("blo_attachment_chunks_fetched", "Sealed chunks fetched and checked", registry=r)
        self.files = Counter("blo_attachment_files", "Attachments that finished, by outcome", ["outcome"], registry=r)


@dataclass(frozen=True, slots=True)
class Download:
    """One attachment of a received bulletin and where it stands."""

    bulletin_id: str
    n: int
    bucket: str
    entry: att.Entry
    state: str
    held: int  # chunks in the spool
    reason: str | None = None
    message: str | None = None
    sniffed: str | None = None


OnEvent = Callable[[str, dict[str, Any]], None]
OnComplete = Callable[[Download], Awaitable[None] | None]


@dataclass(slots=True)
class _Upload:
    """One upload round's state: which chunks are still to go, which are in flight."""

    uid: int
    bid: str
    n: int
    bucket: str
    object_hex: str
    chunks: int
    rank: int
    size: int
    bits: bytearray  # acknowledged chunks
    generation: int  # uploads queued when the round began (``_outranked``)
    todo: deque[int] = field(default_factory=deque)
    flight: dict[asyncio.Future[Any], tuple[int, int, float]] = field(
        default_factory=dict
    )  # -> (index, bytes, sent at)
    in_flight: int = 0
    stored_any: int = 0
    told: float = 0.0  # when the last progress event went out
    error: BusError | None = None


class Transfers:
    """The spool and the two queues of one node; ``run`` is the pair of pumps."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        bucket_max_age_s: float,
        ensure_buckets: bool = True,
        replicas: int = 1,
        limits: att.Limits | None = None,
        quarantine: Quarantine | None = None,
        metrics: TransferMetrics | None = None,
        on_event: OnEvent | None = None,
        on_complete: OnComplete | None = None,
        on_publish: Callable[[str, int], None] | None = None,
        clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        publish_timeout_s: float = 10.0,
    ) -> None:
        self.spool = Path(data_dir) / "attachments"
        self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db = connect_sqlite(Path(data_dir) / "attachments.db")
        self.db.executescript(_SCHEMA)
        _migrate(self.db)
        self.bucket_max_age_s = bucket_max_age_s
        self.ensure_buckets = ensure_buckets
        self.replicas = replicas
        self.limits = limits or att.Limits()
        self.quarantine = quarantine
        self.metrics = metrics or TransferMetrics()
        self.on_event = on_event
        self.on_complete = on_complete
        #: Called with (object id hex, chunk index) for every chunk put on the wire.
        self.on_publish = on_publish
        self.clock = clock
        self.publish_timeout_s = publish_timeout_s
        self._wake = asyncio.Event()
        self._not_before: dict[tuple[str, Any], float] = {}  # job -> monotonic time to try again
        self._backoff: dict[tuple[str, Any], float] = {}
        self._ensured: set[str] = set()
        self._readers: dict[str, Reader] = {}
        self._client: BusClient | None = None
        self._closing = False
        self._queued_uploads = 0  # counts queue_uploads calls: a running upload checks its rank

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        self.db.close()

    # -- the spool ---------------------------------------------------------------------

    def spool_path(self, object_hex: str) -> Path:
        return self.spool / f"{object_hex}.sealed"

    def seal_to_spool(self, name: str, media_type: str, source: BinaryIO | Iterator[bytes], rng: att.Rng) -> att.Entry:
        """Seal a file from ``source`` (a binary file, or an iterator of byte strings) into
        the spool, chunk by chunk, within the per-file limit; returns its entry. Blocking:
        run it in a thread for large files."""
        writer = self.spool_writer(name, rng)
        try:
            for piece in _pieces(source):
                writer.write(piece)
        except BaseException:
            writer.abort()
            raise
        return writer.finish(media_type)

    def spool_writer(self, name: str, rng: att.Rng) -> SpoolWriter:
        """A file to seal into the spool piece by piece (an HTTP upload as it streams in)."""
        return SpoolWriter(self, name, rng)

    def _sealed(self, entry: att.Entry) -> None:
        with transaction(self.db):
            self.db.execute(
                "INSERT OR REPLACE INTO files (object, chunks, size, held, complete, sealed_at) VALUES (?,?,?,?,1,?)",
                (entry.object_hex, entry.chunks, entry.size, bytes(_bitmap(entry.chunks, full=True)), self.clock()),
            )

    def is_complete(self, object_hex: str) -> bool:
        row = self.db.execute("SELECT complete FROM files WHERE object = ?", (object_hex,)).fetchone()
        return bool(row and row[0])

    def removed_at(self, object_hex: str) -> int | None:
        """When the file's spool copy was deleted (``spool_sweep``), or None."""
        row = self.db.execute("SELECT removed_at FROM files WHERE object = ?", (object_hex,)).fetchone()
        return row[0] if row else None

    def remove_file(self, object_hex: str, *, now_ms: int, forget: bool = False) -> None:
        """Delete the file's spool copy (and its thumbnail); its row says when, or goes too
        (``forget``: nothing refers to it)."""
        with transaction(self.db):
            if forget:
                self.db.execute("DELETE FROM files WHERE object = ?", (object_hex,))
            else:
                self.db.execute(
                    "UPDATE files SET removed_at = ?, complete = 0, held = zeroblob(length(held)) WHERE object = ?",
                    (now_ms, object_hex),
                )
        for path in self.spool.glob(f"{object_hex}.*"):
            path.unlink(missing_ok=True)

    def read_plaintext(self, entry: att.Entry) -> Iterator[bytes]:
        """The file's plaintext, chunk by chunk, from the spool, every chunk checked again
        (a spool file altered on disk fails as a corrupt chunk)."""
        if not self.is_complete(entry.object_hex):
            if self.removed_at(entry.object_hex) is not None:
                raise AttachmentError(
                    f"{entry.name} is no longer kept on this node (its spool copy was removed once the bus no "
                    "longer kept it either)", "attachment_removed",
                )  # fmt: skip
            raise AttachmentError(f"{entry.name} is not complete on this node yet", "attachment_incomplete")
        with open(self.spool_path(entry.object_hex), "rb") as f:
            for i in range(entry.chunks):
                sealed = f.read(att.chunk_plain_size(entry.size, i) + att.TAG_BYTES)
                yield att.open_chunk(entry, i, sealed)

    # -- queueing ----------------------------------------------------------------------

    def queue_uploads(self, bulletin_id: str, rank: int, entries: Sequence[att.Entry], buckets: Sequence[str]) -> None:
        """Queue every entry (sealed in the spool, complete) for every bucket: bucket by
        bucket, so the first recipient has the whole bulletin soonest (ATTACHMENTS.md 5.3)."""
        now = self.clock()
        for e in entries:
            if not self.is_complete(e.object_hex):
                raise AttachmentError(
                    f"{e.name} is not complete on this node, so it cannot be sent on: wait until it has arrived",
                    "attachment_incomplete",
                )
        rows = [
            (bulletin_id, n, bucket, e.object_hex, rank, e.chunks, bytes(_bitmap(e.chunks)), e.chunks, now)
            for bucket in buckets
            for n, e in enumerate(entries)
        ]
        with transaction(self.db):
            self.db.executemany(
                "INSERT OR IGNORE INTO uploads (bulletin_id, n, bucket, object, rank, chunks, acked, left, queued_at) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                rows,
            )
        self._queued_uploads += 1
        self._wake.set()

    def queue_downloads(self, bulletin_id: str, rank: int, entries: Sequence[att.Entry], bucket: str) -> None:
        """Queue a received bulletin's attachments for fetching from ``bucket`` (R2 first:
        over this node's limits, an attachment is refused, not fetched)."""
        now = self.clock()
        total = sum(e.size for e in entries)
        rows = []
        for n, e in enumerate(entries):
            state, reason, message = QUEUED, None, None
            try:
                self.limits.check_file(e.name, e.size)
                self.limits.check_bulletin([total])
            except AttachmentError as exc:
                state, reason, message = REFUSED, exc.reason, exc.message
            rows.append((bulletin_id, n, bucket, json.dumps(e.as_dict()), rank, state, reason, message, now))
        with transaction(self.db):
            self.db.executemany(
                "INSERT OR IGNORE INTO downloads (bulletin_id, n, bucket, entry, rank, state, reason, message, queued_at) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                rows,
            )
            for e in entries:
                self.db.execute(
                    "INSERT OR IGNORE INTO files (object, chunks, size, held) VALUES (?,?,?,?)",
                    (e.object_hex, e.chunks, e.size, bytes(_bitmap(e.chunks))),
                )
        self._wake.set()

    # -- state -------------------------------------------------------------------------

    def downloads(self, bulletin_id: str) -> list[Download]:
        rows = self.db.execute(
            "SELECT d.n, d.bucket, d.entry, d.state, d.reason, d.message, d.sniffed, f.held FROM downloads d "
            "LEFT JOIN files f ON f.object = json_extract(d.entry, '$.object') WHERE d.bulletin_id = ? ORDER BY d.n",
            (bulletin_id,),
        ).fetchall()
        return [
            Download(
                bulletin_id,
                n,
                bucket,
                att.Entry.of(json.loads(entry)),
                state,
                _count(held or b""),
                reason,
                message,
                sniffed,
            )
            for n, bucket, entry, state, reason, message, sniffed, held in rows
        ]

    def uploads(self, bulletin_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT n, bucket, chunks, left, state, error FROM uploads WHERE bulletin_id = ? ORDER BY n, id",
            (bulletin_id,),
        ).fetchall()
        return [
            {"n": n, "bucket": bucket, "chunks": chunks, "sent": chunks - left, "state": state, "error": error}
            for n, bucket, chunks, left, state, error in rows
        ]

    def set_sniffed(self, bulletin_id: str, n: int, media_type: str) -> None:
        with transaction(self.db):
            self.db.execute(
                "UPDATE downloads SET sniffed = ? WHERE bulletin_id = ? AND n = ?", (media_type, bulletin_id, n)
            )

    def pending(self) -> tuple[int, int]:
        """(uploads, downloads) still queued."""
        up = self.db.execute("SELECT COUNT(*) FROM uploads WHERE state = 'queued'").fetchone()[0]
        down = self.db.execute("SELECT COUNT(*) FROM downloads WHERE state = 'queued'").fetchone()[0]
        return up, down

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, data)
            except Exception:  # a listener's bug must not stop a pump
                log.exception("attachment event listener failed")

    # -- the pumps ---------------------------------------------------------------------

    async def run(self, client: BusClient) -> None:
        """Upload and download until cancelled (or ``close``); sweep the spool at start and
        every ``SWEEP_EVERY_S``."""
        self._client = client
        await asyncio.gather(self._pump(self._upload_round), self._pump(self._download_round), self._sweep_loop())

    async def _sweep_loop(self) -> None:
        while not self._closing:
            try:
                swept = sweep(self)
            except (sqlite3.Error, OSError) as exc:
                log.warning("sweeping the attachment spool failed: %s", exc)
            else:
                if swept != Swept():
                    log.info("attachment spool: %s", swept)
            await asyncio.sleep(SWEEP_EVERY_S)

    def wake(self) -> None:
        self._wake.set()

    async def _pump(self, round_: Callable[[BusClient], Awaitable[bool]]) -> None:
        while not self._closing:
            client = self._client
            if client is None or not client.connected:
                if client is not None:
                    await client.wait_connected(1.0)
                else:
                    await asyncio.sleep(0.2)
                continue
            try:
                busy = await round_(client)
            except asyncio.CancelledError:
                raise
            except (BusError, sqlite3.Error, OSError) as exc:
                log.warning("attachment transfer round failed: %s", exc)
                busy = False
                await asyncio.sleep(BACKOFF_MIN_S)
            except Exception:  # a bug must not end the pump: log it and go on
                log.exception("attachment transfer round failed")
                busy = False
                await asyncio.sleep(BACKOFF_MIN_S)
            if not busy:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_wait())

    def _idle_wait(self) -> float:
        if not self._not_before:
            return 1.0
        return max(0.02, min(1.0, min(self._not_before.values()) - time.monotonic()))

    def _ready(self, key: tuple[str, Any]) -> bool:
        at = self._not_before.get(key)
        return at is None or at <= time.monotonic()

    def _later(self, key: tuple[str, Any]) -> None:
        delay = min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, self._backoff.get(key, 0.0) * 2))
        self._backoff[key] = delay
        self._not_before[key] = time.monotonic() + delay

    def _progressed(self, key: tuple[str, Any]) -> None:
        self._backoff.pop(key, None)
        self._not_before.pop(key, None)

    async def _ensure(self, client: BusClient, bucket: str) -> None:
        if self.ensure_buckets and bucket not in self._ensured:
            await ensure_bucket(client, BucketSpec(bucket, self.bucket_max_age_s, replicas=self.replicas))
            self._ensured.add(bucket)

    # -- uploading ---------------------------------------------------------------------

    async def _upload_round(self, client: BusClient) -> bool:
        """Send the first upload ready, by precedence, until it is done, fails, or an
        upload of higher precedence is queued; False if none is ready or nothing was stored.

        A sliding window: at most ``WINDOW_BYTES`` of chunks in flight, topped up as each
        chunk's acks come in, so the link never idles between rounds. Each stored chunk is
        recorded as it is acknowledged (``_record_acked``), so a crash or a dropped link
        costs at most the chunks in flight."""
        rows = self.db.execute(
            "SELECT id, bulletin_id, n, bucket, object, chunks, acked, rank FROM uploads WHERE state = 'queued' "
            "ORDER BY rank, id"
        ).fetchall()
        job = next((r for r in rows if self._ready(("up", r[0]))), None)
        if job is None:
            return False
        uid, bid, n, bucket, object_hex, chunks, acked, rank = job
        await self._ensure(client, bucket)
        bits = bytearray(acked)
        size = self.db.execute("SELECT size FROM files WHERE object = ?", (object_hex,)).fetchone()[0]
        up = _Upload(uid, bid, n, bucket, object_hex, chunks, rank, size, bits, self._queued_uploads)
        up.todo.extend(i for i in range(chunks) if not _has(bits, i))
        while True:
            if up.error is None and up.todo and not self._closing and not self._outranked(rank, up.generation):
                await self._top_up(client, up)
            if not up.flight:
                break
            await self._take_acks(client, up)
        self._finish_upload(up)
        return bool(up.stored_any)

    async def _top_up(self, client: BusClient, up: _Upload) -> None:
        """Send chunks until ``WINDOW_BYTES`` are in flight (at least one chunk)."""
        batch, budget = [], WINDOW_BYTES - up.in_flight
        while up.todo:
            length = att.chunk_plain_size(up.size, up.todo[0]) + att.TAG_BYTES
            if (up.flight or batch) and budget < length:
                break
            batch.append((up.todo.popleft(), length))
            budget -= length
        if not batch:
            return
        window = await asyncio.to_thread(self._read_chunks, up.object_hex, batch)
        for place, (i, data, digest) in enumerate(window):
            if self.on_publish is not None:
                self.on_publish(up.object_hex, i)
            try:
                acks = await send_chunk(client, up.bucket, up.object_hex, i, data, digest=digest)
            except BusError as exc:
                up.error = exc
                up.todo.extendleft(reversed([j for j, _, _ in window[place:]]))  # sent again next round
                return
            up.flight[acks] = (i, len(data), time.monotonic())
            up.in_flight += len(data)

    async def _take_acks(self, client: BusClient, up: _Upload) -> None:
        """Wait for the first ack (or the oldest chunk's timeout) and record what came in."""
        oldest = min(at for _, _, at in up.flight.values())
        wait = max(0.0, oldest + self.publish_timeout_s - time.monotonic())
        done, _ = await asyncio.wait(up.flight, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        late = time.monotonic() - self.publish_timeout_s
        stored = []
        for acks in [f for f, (_, _, at) in up.flight.items() if f in done or at <= late]:
            i, length, at = up.flight.pop(acks)
            up.in_flight -= length
            outcome = chunk_outcome(client, up.bucket, up.object_hex, i, acks, at)
            acks.cancel()
            if outcome is None:
                stored.append(i)
            else:
                up.error = up.error or outcome
        if not stored:
            return
        for i in stored:
            _set(up.bits, i)
        sent = _count(up.bits)
        self._record_acked(up.uid, up.bits, up.chunks - sent)
        self.metrics.chunks_sent.inc(len(stored))
        up.stored_any += len(stored)
        self._progressed(("up", up.uid))
        if sent == up.chunks or time.monotonic() - up.told >= PROGRESS_EVERY_S:
            up.told = time.monotonic()
            self._emit("upload", {"id": up.bid, "n": up.n, "bucket": up.bucket, "sent": sent, "chunks": up.chunks})

    def _finish_upload(self, up: _Upload) -> None:
        """Record the round's outcome: done, or queued again (later, if nothing was stored)."""
        left = up.chunks - _count(up.bits)
        error = up.error
        with transaction(self.db):
            self.db.execute(
                "UPDATE uploads SET acked = ?, left = ?, error = ?, state = ?, done_at = ? WHERE id = ?",
                (bytes(up.bits), left, error.message if error else None, DONE if left == 0 else QUEUED,
                 self.clock() if left == 0 else None, up.uid),
            )  # fmt: skip
        if error is not None:
            if isinstance(error, NoBucket):
                self._ensured.discard(up.bucket)
            log.info("upload of %s/%s to %s: %s", up.bid, up.n, up.bucket, error.message)
            if not up.stored_any:
                self._later(("up", up.uid))

    def _record_acked(self, uid: int, bits: bytearray, left: int) -> None:
        """Record chunks JetStream acknowledged. Without a full sync: losing this record (to
        a power cut, never to a crash of the process) only makes the chunks go again, with
        the same ids and bytes, which JetStream drops as duplicates (ATTACHMENTS.md 5.3)."""
        with transaction(self.db, durable=False):
            self.db.execute("UPDATE uploads SET acked = ?, left = ? WHERE id = ?", (bytes(bits), left, uid))

    def _outranked(self, rank: int, generation: int) -> bool:
        """Whether an upload of higher precedence was queued since ``generation``."""
        if generation == self._queued_uploads:
            return False
        top = self.db.execute("SELECT MIN(rank) FROM uploads WHERE state = 'queued'").fetchone()[0]
        return top is not None and top < rank

    def _read_chunks(self, object_hex: str, todo: list[tuple[int, int]]) -> list[tuple[int, bytes, str]]:
        """The sealed chunks from the spool, each with its Object Store digest (in a worker
        thread: hashing releases the GIL)."""
        out = []
        with open(self.spool_path(object_hex), "rb") as f:
            for i, length in todo:
                f.seek(i * att.MAX_SEALED_CHUNK)
                data = f.read(length)
                out.append((i, data, digest_of(data)))
        return out

    # -- downloading -------------------------------------------------------------------

    async def _download_round(self, client: BusClient) -> bool:
        """Fetch up to ``FETCH_AT_ONCE`` missing chunks of the first download ready, by
        precedence; False if none is ready or none of its chunks was there."""
        rows = self.db.execute(
            "SELECT bulletin_id, n, bucket, entry FROM downloads WHERE state = 'queued' ORDER BY rank, queued_at"
        ).fetchall()
        job = next((r for r in rows if self._ready(("down", (r[0], r[1])))), None)
        if job is None:
            return False
        bid, n, bucket, entry_json = job
        key = ("down", (bid, n))
        entry = att.Entry.of(json.loads(entry_json))
        object_hex = entry.object_hex
        file_row = self.db.execute("SELECT held, complete FROM files WHERE object = ?", (object_hex,)).fetchone()
        held = bytearray(file_row[0])
        if file_row[1]:  # the same file came another way and is complete already
            await self._finish(bid, n, bucket, entry)
            return True
        missing = [i for i in range(entry.chunks) if not _has(held, i)][:FETCH_AT_ONCE]
        if not missing:
            return await self._verify(bid, n, bucket, entry)
        await self._ensure(client, bucket)
        reader = self._readers.get(bucket)
        if reader is None or reader.client is not client:
            reader = self._readers[bucket] = Reader(client, bucket)
        try:
            fetched = await asyncio.gather(*(reader.get_chunk(object_hex, i) for i in missing), return_exceptions=True)
        except asyncio.CancelledError:
            raise
        got = 0
        for i, result in zip(missing, fetched, strict=True):
            if isinstance(result, AttachmentCorrupt):
                self._corrupt(bid, n, bucket, entry, result, b"", chunk_subject(bucket, object_hex, i))
                return True
            if isinstance(result, NoBucket):
                self._readers.pop(bucket, None)
                continue
            if isinstance(result, BaseException):
                if not isinstance(result, BusError):
                    raise result
                log.info("fetching %s/%d from %s: %s", object_hex, i, bucket, result)
                continue
            if result is None:
                continue
            try:
                att.open_chunk(entry, i, result)  # R4, R5
            except AttachmentCorrupt as exc:
                self._corrupt(bid, n, bucket, entry, exc, result, chunk_subject(bucket, object_hex, i))
                return True
            await asyncio.to_thread(self._write_chunk, object_hex, i, result)
            _set(held, i)
            got += 1
        if got:
            with transaction(self.db):
                self.db.execute("UPDATE files SET held = ? WHERE object = ?", (bytes(held), object_hex))
            self.metrics.chunks_fetched.inc(got)
            self._progressed(key)
            self._emit("download", {"id": bid, "n": n, "held": _count(held), "chunks": entry.chunks})
            if _count(held) == entry.chunks:
                return await self._verify(bid, n, bucket, entry)
            return True
        self._later(key)
        return False

    def _write_chunk(self, object_hex: str, index: int, sealed: bytes) -> None:
        path = self.spool_path(object_hex)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, sealed, index * att.MAX_SEALED_CHUNK)
            os.fsync(fd)
        finally:
            os.close(fd)

    async def _verify(self, bid: str, n: int, bucket: str, entry: att.Entry) -> bool:
        """R6-R7 over the spool; complete, or corrupt (quarantined with the sealed file)."""
        try:
            await asyncio.to_thread(self._check_spool, entry)
        except AttachmentCorrupt as exc:
            sealed = await asyncio.to_thread(self.spool_path(entry.object_hex).read_bytes)
            self._corrupt(bid, n, bucket, entry, exc, sealed, f"$O.{bucket}.C.{entry.object_hex}-*")
            return True
        with transaction(self.db):
            self.db.execute("UPDATE files SET complete = 1, removed_at = NULL WHERE object = ?", (entry.object_hex,))
        await self._finish(bid, n, bucket, entry)
        return True

    def _check_spool(self, entry: att.Entry) -> None:
        checker = att.FileChecker(entry)
        with open(self.spool_path(entry.object_hex), "rb") as f:
            for i in range(entry.chunks):
                checker.add(f.read(att.chunk_plain_size(entry.size, i) + att.TAG_BYTES))
        checker.finish()

    async def _finish(self, bid: str, n: int, bucket: str, entry: att.Entry) -> None:
        with transaction(self.db):
            self.db.execute(
                "UPDATE downloads SET state = ?, done_at = ? WHERE bulletin_id = ? AND n = ?",
                (COMPLETE, self.clock(), bid, n),
            )
        self._progressed(("down", (bid, n)))
        self.metrics.files.labels(outcome=COMPLETE).inc()
        done = Download(bid, n, bucket, entry, COMPLETE, entry.chunks)
        if self.on_complete is not None:
            try:
                result = self.on_complete(done)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # the attachment is complete whatever the application made of it
                log.exception("handling complete attachment %s/%d failed", bid, n)
        self._emit("attachment", {"id": bid, "n": n, "state": COMPLETE})

    def _corrupt(
        self, bid: str, n: int, bucket: str, entry: att.Entry, exc: AttachmentCorrupt, raw: bytes, subject: str
    ) -> None:
        log.error("attachment %d of %s refused: %s", n, bid, exc.message)
        if self.quarantine is not None:
            self.quarantine.add(raw, subject, exc, now_ms=self.clock())
        with transaction(self.db):
            self.db.execute(
                "UPDATE downloads SET state = ?, reason = ?, message = ?, done_at = ? WHERE bulletin_id = ? AND n = ?",
                (CORRUPT, exc.reason, exc.message, self.clock(), bid, n),
            )
        self._progressed(("down", (bid, n)))
        self.metrics.files.labels(outcome=CORRUPT).inc()
        self._emit("attachment", {"id": bid, "n": n, "state": CORRUPT, "reason": exc.reason})


class SpoolWriter:
    """One file being sealed into the spool: ``write`` its plaintext in pieces (the per-file
    limit is checked as it grows), then ``finish`` with its media type (sniffed from
    ``head``, its first bytes), or ``abort``. Holds one chunk in memory."""

    HEAD_BYTES = 64 * 1024

    def __init__(self, transfers: Transfers, name: str, rng: att.Rng) -> None:
        self._transfers = transfers
        self._sealer = att.FileSealer(name, "application/octet-stream", rng)
        self._tmp = transfers.spool / f".{self._sealer.object_id.hex()}.part"
        self._out = open(self._tmp, "wb", opener=_private)  # closed by finish or abort
        self.name = name
        self.size = 0
        self.head = bytearray()

    def write(self, piece: bytes) -> None:
        self.size += len(piece)
        self._transfers.limits.check_file(self.name, self.size)
        if len(self.head) < self.HEAD_BYTES:
            self.head += piece[: self.HEAD_BYTES - len(self.head)]
        for chunk in self._sealer.update(piece):
            self._out.write(chunk)

    def finish(self, media_type: str) -> att.Entry:
        self._sealer.media_type = media_type
        try:
            last, entry = self._sealer.finish()
            self._out.write(last)
            self._out.flush()
            os.fsync(self._out.fileno())
            self._out.close()
            os.replace(self._tmp, self._transfers.spool_path(entry.object_hex))
        except BaseException:
            self.abort()
            raise
        self._transfers._sealed(entry)
        return entry

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._out.close()
        self._tmp.unlink(missing_ok=True)


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def _pieces(source: BinaryIO | Iterator[bytes]) -> Iterator[bytes]:
    read = getattr(source, "read", None)
    if read is None:
        yield from source  # type: ignore[misc]
        return
    while True:
        piece = read(att.CHUNK_SIZE)
        if not piece:
            return
        yield piece


def entries_of(attachments: Sequence[Mapping[str, Any]]) -> list[att.Entry]:
    """The entries of a bulletin's ``attachments``."""
    return [att.Entry.of(a) for a in attachments]
