"""The node database: one SQLite file (``data/node.db``) holding the bulletin store,
officer accounts and the audit log, and the numbered migrations that build it.

One file and one ``PRAGMA user_version`` for all three: a backup is one copy, and the
version number tells the state of the whole file. Every table lives in ``MIGRATIONS``
below; a schema change is a new entry appended to the list, never an edit of an old
one (nodes in the field have already run it).

Table names are prefixed by area (``store_``, ``auth_``, ``audit_``) so the file can be
shared with other components (the outbox, quarantine) without a name clash.

Concurrency: WAL mode lets readers run while one writer writes, across processes (the
daemon and a ``blo user add`` at the same time). Inside one process, one connection is
shared behind a lock, usable from the event loop and from worker threads; every write
is ``BEGIN IMMEDIATE`` so read-then-write sequences (the audit chain) cannot interleave.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from bus.errors import StoreError

MIN_SQLITE = (3, 34, 0)  # the FTS5 trigram tokenizer (Thai and Lao search) arrived in 3.34

MIGRATIONS: tuple[str, ...] = (
    # 1: bulletin store, receipts, full-text index
    """
    CREATE TABLE store_bulletins (
        seq INTEGER PRIMARY KEY,            -- local insertion order; the FTS rowid
        id TEXT NOT NULL UNIQUE,            -- ULID; one row per bulletin however often it arrives
        direction TEXT NOT NULL CHECK (direction IN ('sent', 'received')),
        sender TEXT NOT NULL,
        sender_sign_kid BLOB,
        sender_box_kid BLOB,
        sent_at INTEGER NOT NULL,           -- the signed time in the envelope header
        received_at INTEGER,                -- NULL for sent bulletins
        at INTEGER NOT NULL,                -- when it reached this store: sort key and time filter
        precedence TEXT NOT NULL,
        kind TEXT NOT NULL,
        tlp TEXT NOT NULL,
        feed TEXT,
        title TEXT NOT NULL,
        in_reply_to TEXT,
        expires INTEGER,
        bulletin_json TEXT NOT NULL,
        recipients_json TEXT NOT NULL,
        sealed BLOB NOT NULL,               -- the exact bytes that travelled
        header BLOB NOT NULL,
        body BLOB NOT NULL,
        signature BLOB,                     -- NULL for sent bulletins (it is inside the ciphertext)
        verified INTEGER NOT NULL,
        verification_json TEXT NOT NULL,
        read_at INTEGER,
        read_by TEXT
    );
    CREATE INDEX store_bulletins_at ON store_bulletins(at DESC, seq DESC);
    CREATE INDEX store_bulletins_sender ON store_bulletins(sender, at DESC);
    CREATE INDEX store_bulletins_feed ON store_bulletins(feed, at DESC) WHERE feed IS NOT NULL;
    CREATE INDEX store_bulletins_unread ON store_bulletins(at DESC) WHERE read_at IS NULL;
    CREATE INDEX store_bulletins_reply ON store_bulletins(in_reply_to) WHERE in_reply_to IS NOT NULL;

    CREATE TABLE store_receipts (
        bulletin_id TEXT NOT NULL,
        office TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('delivered', 'read')),
        at INTEGER NOT NULL,                -- the recipient's signed time
        received_at INTEGER NOT NULL,
        verified INTEGER NOT NULL,
        PRIMARY KEY (bulletin_id, office, kind)
    );

    -- Trigram tokens: Thai and Lao have no spaces between words, so word tokenizers
    -- see a whole sentence as one token; trigrams match any substring of 3+ characters.
    CREATE VIRTUAL TABLE store_fts USING fts5(title, body, entities, tags, tokenize = 'trigram');
    """,
    # 2: officer accounts, API tokens, web sessions
    """
    CREATE TABLE auth_users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('officer', 'supervisor', 'admin')),
        password_hash TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        password_changed_at INTEGER NOT NULL
    );
    CREATE TABLE auth_tokens (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES auth_users(id),
        name TEXT NOT NULL,
        token_hash BLOB NOT NULL UNIQUE,    -- SHA-256 of the token; the token itself is never stored
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER,
        last_used_at INTEGER
    );
    CREATE UNIQUE INDEX auth_tokens_live_name ON auth_tokens(user_id, name) WHERE revoked_at IS NULL;
    CREATE TABLE auth_sessions (
        id_hash BLOB PRIMARY KEY,           -- SHA-256 of the cookie value
        user_id INTEGER NOT NULL REFERENCES auth_users(id),
        csrf_token TEXT NOT NULL,           -- kept readable: the page fetches it again after a reload
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL
    );
    CREATE INDEX auth_sessions_user ON auth_sessions(user_id);
    """,
    # 3: the tamper-evident audit log
    """
    CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,            -- 1, 2, 3... with no gaps: a gap is a deleted entry
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        details TEXT NOT NULL,              -- canonical JSON, hashed exactly as stored
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL
    );
    -- Refuse edits from the application itself. Anyone with the file can drop these;
    -- the hash chain is what catches them.
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
    # 4: lookout hits (a new bulletin names the subject of an active lookout)
    """
    CREATE TABLE store_hits (
        bulletin_id TEXT NOT NULL,          -- the new bulletin that named the subject
        lookout_id TEXT NOT NULL,
        entity_index INTEGER NOT NULL,      -- which entity of the new bulletin matched
        lookout_sender TEXT NOT NULL,
        key_kind TEXT NOT NULL,             -- document, name, name~, plate, phone, ...
        strength TEXT NOT NULL,             -- exact or similar
        at INTEGER NOT NULL,
        notice TEXT NOT NULL,               -- sent, own (our lookout), or withheld:<reason>
        notice_id TEXT,                     -- the hit notice bulletin sent to the originator
        PRIMARY KEY (bulletin_id, lookout_id, entity_index)
    );
    CREATE INDEX store_hits_at ON store_hits(at DESC);
    """,
    # 5: a centre's triage queue of incoming office bulletins, with analysts' notes
    """
    CREATE TABLE centre_triage (
        bulletin_id TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('new', 'in_review', 'disseminated', 'closed')),
        assignee TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        updated_by TEXT
    );
    CREATE INDEX centre_triage_state ON centre_triage(state, created_at DESC);
    CREATE TABLE centre_notes (
        id INTEGER PRIMARY KEY,
        bulletin_id TEXT NOT NULL,
        author TEXT NOT NULL,
        at INTEGER NOT NULL,
        text TEXT NOT NULL
    );
    CREATE INDEX centre_notes_bulletin ON centre_notes(bulletin_id, at);
    -- The latest verified heartbeat of each office (the network view survives a restart).
    CREATE TABLE centre_heartbeats (
        office TEXT PRIMARY KEY,
        raw BLOB NOT NULL,
        sent_at INTEGER NOT NULL,
        received_at INTEGER NOT NULL
    );
    """,
    # 6: wire format v2: a bulletin's header names the sender's ephemeral key (no box key
    # id), and each received bulletin keeps its witness time (when the server stored it,
    # schemas/TRUST.md), by which it is judged again after a revocation
    """
    ALTER TABLE store_bulletins RENAME COLUMN sender_box_kid TO sender_ephemeral;
    ALTER TABLE store_bulletins ADD COLUMN witnessed_at INTEGER;
    """,
    # 7: FLASH acknowledged by a person (office_node/flash.py): the receipt kind
    # 'acknowledged', who acknowledged here, and the escalation notices sent.
    """
    CREATE TABLE store_receipts_6 (
        bulletin_id TEXT NOT NULL,
        office TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('delivered', 'read', 'acknowledged')),
        at INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        verified INTEGER NOT NULL,
        PRIMARY KEY (bulletin_id, office, kind)
    );
    INSERT INTO store_receipts_6 SELECT bulletin_id, office, kind, at, received_at, verified FROM store_receipts;
    DROP TABLE store_receipts;
    ALTER TABLE store_receipts_6 RENAME TO store_receipts;
    CREATE TABLE flash_acks (
        bulletin_id TEXT PRIMARY KEY,       -- a FLASH received here
        by TEXT NOT NULL,                   -- the officer who acknowledged it (the first)
        at INTEGER NOT NULL
    );
    CREATE TABLE flash_escalations (
        bulletin_id TEXT NOT NULL,          -- a FLASH sent here
        level TEXT NOT NULL,                -- recipient_centre or own_centre
        centre TEXT NOT NULL,               -- who was told
        offices TEXT NOT NULL,              -- comma-separated: who had not acknowledged
        notice_id TEXT,                     -- the notice bulletin (NULL: it could not be sent)
        at INTEGER NOT NULL,
        PRIMARY KEY (bulletin_id, level, centre)
    );
    CREATE INDEX flash_escalations_notice ON flash_escalations(notice_id) WHERE notice_id IS NOT NULL;
    """,
    # 8: a centre's drafts imported from MISP or STIX, reviewed in triage before they are sent
    """
    CREATE TABLE centre_drafts (
        id TEXT PRIMARY KEY,                -- ULID chosen at import
        source TEXT NOT NULL UNIQUE,        -- the source version (misp:<uuid>@<timestamp>, stix:<id>@<modified>)
        format TEXT NOT NULL CHECK (format IN ('misp', 'stix')),
        state TEXT NOT NULL CHECK (state IN ('new', 'in_review', 'sent', 'closed')),
        fields_json TEXT NOT NULL,          -- the proposed bulletin: a post request without recipients
        derived_json TEXT NOT NULL,         -- the handling its source allows (TLP, releasability, local only, why)
        warnings_json TEXT NOT NULL,        -- what the import could not carry
        assignee TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        updated_by TEXT,
        sent_id TEXT                        -- the bulletin it became
    );
    CREATE INDEX centre_drafts_state ON centre_drafts(state, created_at DESC);
    """,
    # 9: search across scripts (office_node/search.py): each bulletin's text folded to
    # Latin letters and its consonant keys, Latin-script words apart from the others (the
    # store fills it for bulletins stored before); an officer's language for the page
    # (NULL: the browser's)
    """
    CREATE VIRTUAL TABLE store_fts_alt USING fts5(folded, keys_latin, keys_native, tokenize = 'trigram');
    ALTER TABLE auth_users ADD COLUMN language TEXT;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


#: Set (per task) by ``Database.deferred``: writes commit without waiting for the disk.
_deferred: contextvars.ContextVar[bool] = contextvars.ContextVar("blo_db_deferred", default=False)


class Database:
    """One shared connection to the node database. Use ``read()`` and ``write()``.

    Every commit waits for the disk (``synchronous=FULL``), except those made inside
    ``deferred()``: the node stores a fetched batch of bulletins that way and calls
    ``sync()`` once before the batch is acknowledged to JetStream, so a batch costs one
    flush to disk rather than one per bulletin, and a power cut before ``sync`` loses
    nothing (the unacknowledged batch is delivered again). Only the task inside
    ``deferred()`` is affected: an API request writing meanwhile still commits durably.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.RLock()
        self._wal = False  # set by open_database; deferral needs WAL (see sync)

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._translated():
            yield self._conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: BEGIN IMMEDIATE (takes the write lock up front, so a
        read inside it cannot go stale), COMMIT on success, ROLLBACK on any error."""
        defer = self._wal and _deferred.get()
        with self._lock, self._translated():
            if defer:
                self._conn.execute("PRAGMA synchronous=NORMAL")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            finally:
                if defer:
                    self._conn.execute("PRAGMA synchronous=FULL")

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Writes of this task inside commit without waiting for the disk until ``sync``."""
        token = _deferred.set(True)
        try:
            yield
        finally:
            _deferred.reset(token)

    def sync(self) -> None:
        """Make every commit so far survive a power cut. In WAL mode a commit appends to
        the -wal file, and a FULL commit differs from a NORMAL one only by flushing that
        file; this flushes it once for all the deferred commits before it."""
        if not self._wal:
            return
        with self._lock:
            try:
                fd = os.open(f"{self.path}-wal", os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except FileNotFoundError:
                return  # nothing written since the log was last emptied into the database
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot flush the node database to disk: {exc.strerror}") from exc

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: the node database failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def check_sqlite_version(version: str = sqlite3.sqlite_version) -> None:
    have = tuple(int(p) for p in version.split(".")[:3])
    if have < MIN_SQLITE:
        need = ".".join(map(str, MIN_SQLITE))
        raise StoreError(
            f"this Python uses SQLite {version}; BLO Bus needs {need} or later for Thai and Lao search "
            "(the FTS5 trigram tokenizer). Use a newer Python or Debian 12+."
        )


def open_database(path: Path) -> Database:
    """Open (creating if needed, mode 0600) and migrate the node database at ``path``."""
    check_sqlite_version()
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Create it 0600 before SQLite does: it holds password and token hashes. SQLite
        # gives the -wal and -shm files the same mode as the database file.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except OSError as exc:
        raise StoreError(f"{path}: cannot open the node database: {exc.strerror or exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the node database: {exc}") from exc
    db = Database(path, conn)
    try:
        with db.read() as c:
            db._wal = c.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
            # FULL: a bulletin or audit entry the node acknowledged must survive a power cut.
            c.execute("PRAGMA synchronous=FULL")
            c.execute("PRAGMA busy_timeout=5000")
            c.execute("PRAGMA foreign_keys=ON")
        migrate(db)
    except BaseException:
        conn.close()
        raise
    return db


def migrate(db: Database) -> int:
    """Apply the migrations this file has not run yet; returns the schema version.

    Each migration and its version bump commit together, so a crash leaves the file at
    a whole version. A file from a newer release is refused rather than guessed at.
    """
    with db.read() as c:
        version = c.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{db.path}: the database is at schema version {version}, newer than this software "
            f"understands ({SCHEMA_VERSION}); upgrade blo-bus or restore a matching backup"
        )
    for number in range(version + 1, SCHEMA_VERSION + 1):
        with db.write() as c:
            for statement in _statements(MIGRATIONS[number - 1]):
                c.execute(statement)
            c.execute(f"PRAGMA user_version = {number}")
    return SCHEMA_VERSION


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our transaction first; split on complete statements
    # instead so the whole migration stays in one transaction.
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
