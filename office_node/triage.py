"""A centre's triage queue: every bulletin its country's offices send it, with a state
and the analysts' notes.

States follow the analyst's work::

    new -> in_review -> disseminated -> closed
      \\___________________________________/^    (anything may be closed; closed may be reopened)

``disseminated`` is set by forwarding (the centre put it, or a redacted copy, on a feed);
an analyst may also set it by hand after passing it on by other means. Rows live in the
node database beside the bulletins (``centre_triage``, ``centre_notes``).

Drafts (``Drafts``) are the other half of the queue: bulletins-to-be imported from MISP
or STIX (``blo import``, the MISP bridge), which an analyst reviews, edits and sends, or
closes. Nothing imported goes out unreviewed: a supervisor sends a draft (from new or
in_review), naming its recipients::

    new <-> in_review --(send)--> sent     (sealed and sent as bulletin ``sent_id``; final)
    new, in_review --> closed --> in_review  (closed may be reopened)

A draft keeps the fields it proposes (a post request without recipients), the handling
its source allows (``office_node.exchange.handling.Derived``) and the import's warnings;
its notes share ``centre_notes`` with the bulletins' (a draft id is a ULID too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bus import errors
from office_node.db import Database
from office_node.paging import decode_cursor, encode_cursor

NEW, IN_REVIEW, DISSEMINATED, CLOSED = "new", "in_review", "disseminated", "closed"
STATES = (NEW, IN_REVIEW, DISSEMINATED, CLOSED)
#: state -> the states it may move to.
MOVES: dict[str, tuple[str, ...]] = {
    NEW: (IN_REVIEW, DISSEMINATED, CLOSED),
    IN_REVIEW: (NEW, DISSEMINATED, CLOSED),
    DISSEMINATED: (IN_REVIEW, CLOSED),
    CLOSED: (IN_REVIEW,),
}
MAX_NOTE_CHARS = 4000
MAX_PAGE = 200
#: ``move``'s assignee when the call leaves it as it is (None clears it).
KEEP: Any = object()


@dataclass(frozen=True, slots=True)
class Note:
    author: str
    at: int
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"author": self.author, "at": self.at, "text": self.text}


@dataclass(frozen=True, slots=True)
class TriagePage:
    items: list[TriageItem]
    next_cursor: str | None  # the next (older) page's cursor; None on the last page


@dataclass(frozen=True, slots=True)
class TriageItem:
    bulletin_id: str
    state: str
    assignee: str | None
    created_at: int
    updated_at: int
    updated_by: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "bulletin_id": self.bulletin_id,
            "state": self.state,
            "assignee": self.assignee,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }


def check_state(state: Any) -> str:
    if state not in STATES:
        raise errors.ValidationError("state", f"must be one of {', '.join(STATES)}; got {state!r}"[:200])
    return state


def _add_note(db: Database, item_id: str, text: Any, *, by: str, at_ms: int) -> Note:
    if not isinstance(text, str) or not text.strip():
        raise errors.ValidationError("note", "write the note's text")
    if len(text) > MAX_NOTE_CHARS:
        raise errors.ValidationError("note", f"is {len(text)} characters; the limit is {MAX_NOTE_CHARS}")
    with db.write() as c:
        c.execute(
            "INSERT INTO centre_notes (bulletin_id, author, at, text) VALUES (?, ?, ?, ?)", (item_id, by, at_ms, text.strip())
        )
    return Note(by, at_ms, text.strip())


def _notes(db: Database, item_id: str) -> list[Note]:
    with db.read() as c:
        rows = c.execute("SELECT author, at, text FROM centre_notes WHERE bulletin_id = ? ORDER BY at, id", (item_id,)).fetchall()
    return [Note(*r) for r in rows]


_TRIAGE_COLUMNS = "bulletin_id, state, assignee, created_at, updated_at, updated_by"


def _page(
    db: Database, table: str, columns: str, *, state: str | None, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """One page of a queue table (its ``columns``), newest ``created_at`` first, ties by
    insertion order, from ``cursor``; and the next page's cursor (None on the last)."""
    if type(limit) is not int or not 1 <= limit <= MAX_PAGE:
        raise errors.ValidationError("limit", f"must be a whole number from 1 to {MAX_PAGE}")
    where, args = [], []
    if state is not None:
        where.append("state = ?")
        args.append(state)
    if cursor is not None:
        at, rowid = decode_cursor(cursor)
        where.append("(created_at < ? OR (created_at = ? AND rowid < ?))")
        args += [at, at, rowid]
    sql = f"SELECT rowid, created_at, {columns} FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    with db.read() as c:
        rows = c.execute(sql + " ORDER BY created_at DESC, rowid DESC LIMIT ?", (*args, limit + 1)).fetchall()
    more = encode_cursor(rows[limit - 1][1], rows[limit - 1][0]) if len(rows) > limit else None
    return [r[2:] for r in rows[:limit]], more


class Triage:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, bulletin_id: str, *, at_ms: int) -> bool:
        """Queue a newly received office bulletin as ``new``; False if already queued."""
        with self.db.write() as c:
            cur = c.execute(
                "INSERT INTO centre_triage (bulletin_id, state, created_at, updated_at) VALUES (?, 'new', ?, ?) "
                "ON CONFLICT DO NOTHING",
                (bulletin_id, at_ms, at_ms),
            )
            return cur.rowcount == 1

    def get(self, bulletin_id: str) -> TriageItem:
        with self.db.read() as c:
            row = c.execute(f"SELECT {_TRIAGE_COLUMNS} FROM centre_triage WHERE bulletin_id = ?", (bulletin_id,)).fetchone()
        if row is None:
            raise errors.NotFound(f"bulletin {bulletin_id} is not in this centre's triage queue")
        return TriageItem(*row)

    def move(self, bulletin_id: str, state: str, *, by: str, at_ms: int, assignee: Any = KEEP) -> TriageItem:
        """Change the state (ValidationError for a move the workflow does not allow) and,
        unless ``assignee`` is KEEP, who works on it (None: nobody)."""
        check_state(state)
        current = self.get(bulletin_id)
        if state != current.state and state not in MOVES[current.state]:
            raise errors.ValidationError(
                "state", f"{bulletin_id} is {current.state}; it can go to {', '.join(MOVES[current.state])}, not {state}"
            )
        with self.db.write() as c:
            c.execute(
                "UPDATE centre_triage SET state = ?, assignee = ?, updated_at = ?, updated_by = ? WHERE bulletin_id = ?",
                (state, current.assignee if assignee is KEEP else assignee, at_ms, by, bulletin_id),
            )
        return self.get(bulletin_id)

    def note(self, bulletin_id: str, text: Any, *, by: str, at_ms: int) -> Note:
        self.get(bulletin_id)
        return _add_note(self.db, bulletin_id, text, by=by, at_ms=at_ms)

    def notes(self, bulletin_id: str) -> list[Note]:
        return _notes(self.db, bulletin_id)

    def items(self, *, state: str | None = None, limit: int = 100, cursor: str | None = None) -> TriagePage:
        """Newest first, ``limit`` (1-200) at a time from ``cursor`` (a page's next_cursor)."""
        if state is not None:
            check_state(state)
        rows, more = _page(self.db, "centre_triage", _TRIAGE_COLUMNS, state=state, limit=limit, cursor=cursor)
        return TriagePage([TriageItem(*r) for r in rows], more)

    def counts(self) -> dict[str, int]:
        with self.db.read() as c:
            found = dict(c.execute("SELECT state, COUNT(*) FROM centre_triage GROUP BY state").fetchall())
        return {s: found.get(s, 0) for s in STATES}


DRAFT_NEW, DRAFT_IN_REVIEW, DRAFT_SENT, DRAFT_CLOSED = "new", "in_review", "sent", "closed"
DRAFT_STATES = (DRAFT_NEW, DRAFT_IN_REVIEW, DRAFT_SENT, DRAFT_CLOSED)
#: state -> the states an analyst may move a draft to (sent is set by sending it).
DRAFT_MOVES: dict[str, tuple[str, ...]] = {
    DRAFT_NEW: (DRAFT_IN_REVIEW, DRAFT_CLOSED),
    DRAFT_IN_REVIEW: (DRAFT_NEW, DRAFT_CLOSED),
    DRAFT_CLOSED: (DRAFT_IN_REVIEW,),
    DRAFT_SENT: (),
}


@dataclass(frozen=True, slots=True)
class DraftItem:
    id: str
    source: str
    format: str
    state: str
    fields: dict[str, Any]
    derived: dict[str, Any]
    warnings: list[str]
    assignee: str | None
    created_at: int
    updated_at: int
    updated_by: str | None
    sent_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "format": self.format,
            "state": self.state,
            "fields": self.fields,
            "derived": self.derived,
            "warnings": self.warnings,
            "assignee": self.assignee,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "sent_id": self.sent_id,
        }


_DRAFT_COLUMNS = (
    "id, source, format, state, fields_json, derived_json, warnings_json, assignee, created_at, updated_at, "
    "updated_by, sent_id"
)


def _draft(row: Any) -> DraftItem:
    return DraftItem(
        row[0], row[1], row[2], row[3], json.loads(row[4]), json.loads(row[5]), json.loads(row[6]), *row[7:]
    )


def check_draft_state(state: Any) -> str:
    if state not in DRAFT_STATES:
        raise errors.ValidationError("state", f"must be one of {', '.join(DRAFT_STATES)}; got {state!r}"[:200])
    return state


class Drafts:
    """The imported drafts awaiting review, in the node database (``centre_drafts``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self, draft_id: str, *, source: str, format: str, fields: dict[str, Any], derived: dict[str, Any],
        warnings: list[str], at_ms: int, by: str,
    ) -> bool:  # fmt: skip
        """Queue an imported draft as ``new``; False if this source version is queued already."""
        with self.db.write() as c:
            cur = c.execute(
                f"INSERT INTO centre_drafts ({_DRAFT_COLUMNS}) VALUES (?, ?, ?, 'new', ?, ?, ?, NULL, ?, ?, ?, NULL) "
                "ON CONFLICT DO NOTHING",
                (draft_id, source, format, _dumps(fields), _dumps(derived), _dumps(warnings), at_ms, at_ms, by),
            )
            return cur.rowcount == 1

    def get(self, draft_id: str) -> DraftItem:
        with self.db.read() as c:
            row = c.execute(f"SELECT {_DRAFT_COLUMNS} FROM centre_drafts WHERE id = ?", (draft_id,)).fetchone()
        if row is None:
            raise errors.NotFound(f"no draft {draft_id} is in this centre's triage queue")
        return _draft(row)

    def by_source(self, source: str) -> DraftItem | None:
        with self.db.read() as c:
            row = c.execute(f"SELECT {_DRAFT_COLUMNS} FROM centre_drafts WHERE source = ?", (source,)).fetchone()
        return _draft(row) if row is not None else None

    def update(
        self, draft_id: str, *, by: str, at_ms: int, state: str | None = None, fields: dict[str, Any] | None = None,
        assignee: Any = KEEP,
    ) -> DraftItem:  # fmt: skip
        """Move a draft (ValidationError for a move the workflow does not allow), replace its
        fields, and/or set who works on it. A sent draft changes no more."""
        current = self.get(draft_id)
        if current.state == DRAFT_SENT:
            raise errors.ValidationError("state", f"draft {draft_id} was sent as {current.sent_id}; it changes no more")
        if state is not None:
            check_draft_state(state)
            if state != current.state and state not in DRAFT_MOVES[current.state]:
                allowed = ", ".join(DRAFT_MOVES[current.state]) or "nothing"
                raise errors.ValidationError(
                    "state", f"draft {draft_id} is {current.state}; it can go to {allowed}, not {state} (send it to make it sent)"
                )
        with self.db.write() as c:
            c.execute(
                "UPDATE centre_drafts SET state = ?, fields_json = ?, assignee = ?, updated_at = ?, updated_by = ? WHERE id = ?",
                (
                    state or current.state,
                    _dumps(current.fields if fields is None else fields),
                    current.assignee if assignee is KEEP else assignee,
                    at_ms,
                    by,
                    draft_id,
                ),
            )
        return self.get(draft_id)

    def mark_sent(self, draft_id: str, bulletin_id: str, *, by: str, at_ms: int, fields: dict[str, Any]) -> DraftItem:
        with self.db.write() as c:
            c.execute(
                "UPDATE centre_drafts SET state = 'sent', sent_id = ?, fields_json = ?, updated_at = ?, updated_by = ? "
                "WHERE id = ?",
                (bulletin_id, _dumps(fields), at_ms, by, draft_id),
            )
        return self.get(draft_id)

    def items(self, *, state: str | None = None, limit: int = 100, cursor: str | None = None) -> tuple[list[DraftItem], str | None]:
        """Newest first, ``limit`` (1-200) at a time from ``cursor`` (a page's next cursor)."""
        if state is not None:
            check_draft_state(state)
        rows, more = _page(self.db, "centre_drafts", _DRAFT_COLUMNS, state=state, limit=limit, cursor=cursor)
        return [_draft(r) for r in rows], more

    def counts(self) -> dict[str, int]:
        with self.db.read() as c:
            found = dict(c.execute("SELECT state, COUNT(*) FROM centre_drafts GROUP BY state").fetchall())
        return {s: found.get(s, 0) for s in DRAFT_STATES}

    def note(self, draft_id: str, text: Any, *, by: str, at_ms: int) -> Note:
        self.get(draft_id)
        return _add_note(self.db, draft_id, text, by=by, at_ms=at_ms)

    def notes(self, draft_id: str) -> list[Note]:
        return _notes(self.db, draft_id)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
