"""The audit log: who posted, read, exported or changed what, in a form that shows tampering.

Each entry is chained to the one before it::

    hash[n] = HMAC-SHA256(audit key, hash[n-1] || canonical(seq, at, actor, action, target, details))

with ``hash[0]`` = 32 zero bytes. ``verify`` walks the chain and names the first entry
that is missing (a gap in ``seq``), out of place (its ``prev_hash`` is another entry's
hash), or edited (its stored hash does not match its contents).

Why a keyed hash (HMAC) and not plain SHA-256: with plain SHA-256 anyone who can write
the SQLite file can edit an entry and recompute every hash after it in a few lines of
Python, and the chain "verifies". The 32-byte key lives in its own 0600 file outside
the database, so editing the log undetectably needs the key file as well: a database
copied off the machine, restored from a doctored backup, or edited through any tool
with only database access is caught. Someone with full control of the node account can
still rewrite both; against that, ship ``head_hash`` values off the node (to the centre,
a printout) and compare later: the chain makes any rewrite before that point show.

A plain chain cannot see its last entries being cut off. The log therefore also writes
its head (last seq and hash) to a small file after each append; ``verify`` checks the
database still holds that entry. The head may lag behind by an entry or two (a crash
between commit and file write, two processes appending); it is a lower bound, so lag
never reads as tampering, while deletion of anything up to it does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.utils

from bus import Rng, errors, read_secret
from office_node.db import Database

KEY_BYTES = 32
GENESIS = bytes(32)
_BATCH = 1000
MAX_FIELD_CHARS = 500

# Action names, so the daemon, the CLI and the web page spell them alike.
LOGIN = "login"
LOGIN_FAILED = "login.failed"
LOGIN_THROTTLED = "login.throttled"
LOGOUT = "logout"
USER_ADD = "user.add"
USER_DISABLE = "user.disable"
USER_ENABLE = "user.enable"
TOKEN_CREATE = "token.create"
TOKEN_REVOKE = "token.revoke"
BULLETIN_POST = "bulletin.post"
BULLETIN_READ = "bulletin.read"
BULLETIN_EXPORT = "bulletin.export"
BULLETIN_FORWARD = "bulletin.forward"
BULLETIN_VIEW = "bulletin.view"
BULLETIN_REFUSED = "bulletin.refused"
SEARCH = "search"
CHECK = "check"
HIT_NOTICE = "hit.notice"
FLASH_ACKNOWLEDGE = "flash.acknowledge"  # an officer here acknowledged a FLASH received
FLASH_ACKNOWLEDGED = "flash.acknowledged"  # a recipient's signed acknowledgement of our FLASH came back
FLASH_ESCALATION = "flash.escalation"  # a notice to a centre: a FLASH of ours is not acknowledged
TRIAGE = "triage"
FEED_CREATE = "feed.create"
FEED_MEMBERS = "feed.members"
FEED_ROTATE = "feed.rotate"
FEED_WRITERS = "feed.writers"
WATCHLIST_IMPORT = "watchlist.import"
DRAFT_IMPORT = "draft.import"  # a MISP or STIX document became drafts (blo import, the MISP bridge)
DRAFT_SEND = "draft.send"  # an analyst sent a reviewed draft as a bulletin
MISP_PUSH = "misp.push"  # the MISP bridge pushed a bulletin to its MISP server
NODE_START = "node.start"
NODE_STOP = "node.stop"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: int
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: bytes
    hash: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "details": self.details,
            "hash": self.hash.hex(),
        }


@dataclass(frozen=True, slots=True)
class AuditProblem:
    seq: int  # the first entry found wrong (for a deletion: the first missing one)
    what: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.what}"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    entries: int  # entries checked (all of them when intact)
    head_hash: str  # hex hash of the last intact entry; record it off the node
    problem: AuditProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def canonical(seq: int, at: int, actor: str, action: str, target: str, details_json: str) -> bytes:
    """The bytes an entry's hash covers. ``details_json`` is hashed exactly as stored, so
    verification never depends on re-serialising JSON the same way."""
    return json.dumps([seq, at, actor, action, target, details_json], ensure_ascii=False, separators=(",", ":")).encode()


def entry_hash(key: bytes, prev_hash: bytes, seq: int, at: int, actor: str, action: str, target: str, details_json: str) -> bytes:
    return hmac.new(key, prev_hash + canonical(seq, at, actor, action, target, details_json), hashlib.sha256).digest()


def _check_text(name: str, value: Any, *, required: bool) -> str:
    if not isinstance(value, str) or (required and not value) or len(value) > MAX_FIELD_CHARS:
        raise errors.ValidationError(name, f"must be text of {1 if required else 0}-{MAX_FIELD_CHARS} characters")
    return value


def load_or_create_key(path: Path, *, rng: Rng = nacl.utils.random, create: bool = True) -> bytes:
    """The audit key at ``path``; a fresh one (file mode 0600) if there is none and ``create``."""
    try:
        key = read_secret(path, "audit key")
    except FileNotFoundError:
        if not create:
            raise errors.StoreError(f"{path}: the audit key file is missing") from None
        key = rng(KEY_BYTES)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return load_or_create_key(path, rng=rng, create=False)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        return key
    except OSError as exc:
        raise errors.StoreError(f"{path}: cannot read the audit key: {exc.strerror or exc}") from exc
    if len(key) != KEY_BYTES:
        raise errors.StoreError(f"{path}: the audit key must be {KEY_BYTES} bytes, found {len(key)}; restore it from backup")
    return key


class AuditLog:
    """Append and verify. ``head_path`` (optional) anchors the end of the chain."""

    def __init__(self, db: Database, key: bytes, *, head_path: Path | None = None) -> None:
        if len(key) != KEY_BYTES:
            raise errors.ValidationError("key", f"an audit key is {KEY_BYTES} bytes")
        self.db = db
        self._key = key
        self.head_path = head_path

    @classmethod
    def open(cls, db: Database, key_path: Path, *, head_path: Path | None = None, rng: Rng = nacl.utils.random) -> AuditLog:
        """Load the key (creating it for an empty log). A log with entries but no key
        file is refused: a new key would make every entry look forged."""
        with db.read() as c:
            has_entries = c.execute("SELECT 1 FROM audit_log LIMIT 1").fetchone() is not None
        try:
            key = load_or_create_key(key_path, rng=rng, create=not has_entries)
        except errors.StoreError as exc:
            if has_entries and not key_path.exists():
                raise errors.StoreError(
                    f"{key_path}: the audit key file is missing but the log has entries; restore the key "
                    "from backup (a new key would make every entry look forged)"
                ) from exc
            raise
        return cls(db, key, head_path=head_path)

    def append(self, actor: str, action: str, *, target: str = "", details: dict[str, Any] | None = None, now_ms: int) -> AuditEntry:
        _check_text("actor", actor, required=True)
        _check_text("action", action, required=True)
        _check_text("target", target, required=False)
        try:
            details_json = json.dumps(details or {}, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise errors.ValidationError("details", f"must be JSON-serialisable: {exc}") from exc
        with self.db.write() as c:  # BEGIN IMMEDIATE: no other writer can slip in between read and insert
            last = c.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
            digest = entry_hash(self._key, prev, seq, now_ms, actor, action, target, details_json)
            c.execute(
                "INSERT INTO audit_log (seq, at, actor, action, target, details, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, now_ms, actor, action, target, details_json, prev, digest),
            )
        if self.head_path is not None:
            self._write_head(seq, digest)
        return AuditEntry(seq, now_ms, actor, action, target, json.loads(details_json), prev, digest)

    def _write_head(self, seq: int, digest: bytes) -> None:
        assert self.head_path is not None
        current = self._read_head()
        if current is not None and current[0] >= seq:
            # Another process recorded a later head; or the log was cut and is being
            # refilled: keep the old head as the evidence ``verify`` will find.
            return
        tmp = self.head_path.with_name(f".{self.head_path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"seq": seq, "hash": digest.hex()}, f)
            os.replace(tmp, self.head_path)
        except OSError as exc:
            raise errors.StoreError(f"{self.head_path}: cannot record the audit log head: {exc.strerror or exc}") from exc

    def _read_head(self) -> tuple[int, bytes] | None:
        if self.head_path is None:
            return None
        try:
            data = json.loads(self.head_path.read_text())
            return int(data["seq"]), bytes.fromhex(data["hash"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise errors.StoreError(f"{self.head_path}: the audit head file is unreadable ({exc}); it may have been tampered with") from exc

    def entries(self, *, before_seq: int | None = None, limit: int = 100, actor: str | None = None, action: str | None = None) -> list[AuditEntry]:
        """Newest first, for an admin view; ``before_seq`` pages back."""
        conds, args = [], []
        for col, value in (("actor", actor), ("action", action)):
            if value is not None:
                conds.append(f"{col} = ?")
                args.append(value)
        if before_seq is not None:
            conds.append("seq < ?")
            args.append(before_seq)
        where = f"WHERE {' AND '.join(conds)}" if conds else ""
        with self.db.read() as c:
            rows = c.execute(
                f"SELECT seq, at, actor, action, target, details, prev_hash, hash FROM audit_log {where} ORDER BY seq DESC LIMIT ?",
                (*args, max(1, min(limit, 1000))),
            ).fetchall()
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]

    def verify(self) -> VerifyReport:
        """Walk the whole chain; report the first problem found (or none)."""
        prev_hash, expected, after = GENESIS, 1, 0
        while True:
            # Batches, so a long walk does not hold the connection lock for seconds.
            with self.db.read() as c:
                rows = c.execute(
                    "SELECT seq, at, actor, action, target, details, prev_hash, hash FROM audit_log "
                    "WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after, _BATCH),
                ).fetchall()
            if not rows:
                break
            for seq, at, actor, action, target, details, stored_prev, stored_hash in rows:
                problem = self._check_row(seq, expected, prev_hash, (at, actor, action, target, details), stored_prev, stored_hash)
                if problem is not None:
                    return VerifyReport(expected - 1, prev_hash.hex(), problem)
                prev_hash, expected = stored_hash, seq + 1
            after = rows[-1][0]
        count = expected - 1
        problem = self._check_head(count)
        return VerifyReport(count, prev_hash.hex(), problem)

    def _check_row(
        self, seq: int, expected: int, prev_hash: bytes, fields: tuple[Any, ...], stored_prev: Any, stored_hash: Any
    ) -> AuditProblem | None:
        if seq != expected:
            missing = f"entry {expected} is" if seq == expected + 1 else f"entries {expected} to {seq - 1} are"
            return AuditProblem(expected, f"{missing} missing: deleted from the log (entry {seq} comes next)")
        if not isinstance(stored_prev, bytes) or not isinstance(stored_hash, bytes):
            return AuditProblem(seq, "its hash columns were overwritten with non-hash values")
        at, actor, action, target, details = fields
        if stored_prev != prev_hash:
            with self.db.read() as c:
                origin = c.execute("SELECT seq FROM audit_log WHERE hash = ?", (stored_prev,)).fetchone()
            if origin is not None:
                return AuditProblem(
                    seq,
                    f"out of order: it was written right after the entry now at position {origin[0]}, "
                    f"not after entry {seq - 1}; entries were reordered",
                )
            if seq == 1:
                return AuditProblem(seq, "it does not start the chain: entries before it were removed or it was replaced")
            return AuditProblem(
                seq, f"it does not follow entry {seq - 1}: an entry before it was deleted, inserted or re-hashed"
            )
        if not (type(at) is int and all(type(v) is str for v in (actor, action, target, details))):
            return AuditProblem(seq, "its columns hold values of the wrong type: edited outside the node")
        if not hmac.compare_digest(entry_hash(self._key, stored_prev, seq, at, actor, action, target, details), stored_hash):
            return AuditProblem(seq, "its contents were changed after it was written (time, actor, action, target or details)")
        return None

    def _check_head(self, count: int) -> AuditProblem | None:
        head = self._read_head()
        if head is None:
            return None
        head_seq, head_hash = head
        if head_seq > count:
            missing = f"entry {count + 1} is" if head_seq == count + 1 else f"entries {count + 1} to {head_seq} are"
            return AuditProblem(count + 1, f"{missing} missing: the log was cut short (the head file records entry {head_seq})")
        with self.db.read() as c:
            row = c.execute("SELECT hash FROM audit_log WHERE seq = ?", (head_seq,)).fetchone()
        if head_seq > 0 and (row is None or row[0] != head_hash):
            return AuditProblem(head_seq, "it is not the entry the head file recorded: the log was rewritten from here")
        return None
