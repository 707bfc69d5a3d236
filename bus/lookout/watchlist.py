"""Watch lists: a centre's CSV of wanted documents, persons, vehicles and phones, turned
into lookout bulletins for its offices.

The columns are specified in ``schemas/WATCHLIST.md``. Parsing never throws good rows
away because of bad ones: ``parse_watchlist`` returns the entries it could read and a
``RowError`` (line number, column, reason) for each row it could not. Only a file that
cannot be a watch list at all (no header, a missing required column) raises
``ValidationError``.

One bulletin per entry (not batches of up to 200 entities), because the entry is the
unit that changes: an update or withdrawal replaces exactly one lookout, each lookout
keeps its own expiry, and a hit names one entry. The price is per-bulletin overhead
(a sealed envelope each, ~90 bytes of index per entry); batching would save it for
very large static lists but would force re-sending a whole batch to change one entry.

How updates and withdrawals propagate: every bulletin of an entry carries the subject
tag ``wl:<list_id>:<entry_id>``. The index (``bus.lookout.index``) keeps only the
newest bulletin per (sender, subject), so an ``update`` row is a fresh lookout that
supersedes the old one, and a ``withdraw`` row is a lookout with no entities that
supersedes it and so matches nothing. No mapping has to be kept between imports.
Bulletin ids are derived from (sender, list, entry, action, import time), so
re-running the same import at the same ``now_ms`` yields the same ids and the bus
deduplicates them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bus.bulletin import DOCUMENT_STATUSES, DOCUMENT_TYPES, validate_entity
from bus.errors import ValidationError
from bus.ids import bulletin_id_from_bytes
from bus.lookout.index import SUBJECT_TAG_PREFIX
from bus.lookout.normalise import normalise_phone

COLUMNS = (
    "list_id", "entry_id", "action", "type", "number", "country", "doc_type", "status",
    "name", "aliases", "dob", "nationality", "sex", "plate", "expires", "note",
)  # fmt: skip
REQUIRED_COLUMNS = ("list_id", "entry_id")  # a withdrawals-only file needs no more
ACTIONS = ("add", "update", "withdraw")
ENTRY_TYPES = ("document", "person", "vehicle", "phone")
#: Subject tags must fit the bulletin tag limit of 64 characters: 3 + 24 + 1 + 36.
_LIST_ID = re.compile(r"^[A-Za-z0-9._-]{1,24}\Z")
_ENTRY_ID = re.compile(r"^[A-Za-z0-9._-]{1,36}\Z")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")
MAX_ROWS = 50_000_000


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one row was not imported. ``line`` is the file line the row starts on (the
    header is line 1); ``column`` is empty when the row as a whole is wrong."""

    line: int
    column: str
    reason: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class WatchlistEntry:
    """One good row. ``entity`` is a validated bulletin entity (None for a withdrawal)."""

    line: int
    list_id: str
    entry_id: str
    action: str
    entity: dict[str, Any] | None
    expires: int | None
    note: str

    @property
    def subject_tag(self) -> str:
        return subject_tag(self.list_id, self.entry_id)


@dataclass(frozen=True, slots=True)
class WatchlistParse:
    entries: tuple[WatchlistEntry, ...]
    errors: tuple[RowError, ...] = field(default=())


def subject_tag(list_id: str, entry_id: str) -> str:
    """The tag that ties every bulletin of one watch-list entry together."""
    return f"{SUBJECT_TAG_PREFIX}{list_id}:{entry_id}"


# -- parsing ---------------------------------------------------------------------------


class _RowProblem(Exception):
    def __init__(self, column: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.column, self.reason, self.message = column, reason, message


def _decode(data: str | bytes) -> str:
    if isinstance(data, str):
        return data
    # surrogateescape keeps undecodable bytes visible, so the row holding them is
    # reported instead of the whole file being refused.
    return data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")


def _expiry_ms(text: str, now_ms: int) -> int:
    """``YYYY-MM-DD`` (the end of that day, UTC) or ISO 8601 with a time zone."""
    try:
        if _DATE.match(text):
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            ms = int(day.timestamp() * 1000) + 86_400_000
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise _RowProblem("expires", "bad_date", f"{text!r} has no time zone; add Z or +07:00")
            ms = int(moment.timestamp() * 1000)
    except (ValueError, OverflowError, OSError):
        raise _RowProblem("expires", "bad_date", f"{text[:40]!r} is not a date (YYYY-MM-DD) or ISO 8601 time") from None
    if ms <= now_ms:
        raise _RowProblem("expires", "expired", f"{text} is already past; drop the row or correct the date")
    return ms


def _check_dob(text: str) -> None:
    """A date of birth must be a real date (the bulletin schema checks only its shape)."""
    fmt = {4: "%Y", 7: "%Y-%m", 10: "%Y-%m-%d"}.get(len(text))
    try:
        if fmt is None or not text.isascii():
            raise ValueError
        datetime.strptime(text, fmt)
    except ValueError:
        raise _RowProblem("dob", "bad_date", f"{text[:40]!r} is not a date as YYYY, YYYY-MM or YYYY-MM-DD") from None


def _entity(row: Mapping[str, str], kind: str, default_country: str | None) -> dict[str, Any]:
    def put(out: dict[str, Any], *names: str) -> None:
        for name in names:
            if row.get(name):
                out[name] = row[name]

    entity: dict[str, Any] = {"type": kind}
    if kind == "document":
        put(entity, "number", "country", "status")
        entity["doc_type"] = row.get("doc_type") or "travel_document"
        if row.get("name"):
            entity["holder"] = row["name"]
        if "country" in entity:
            entity["country"] = entity["country"].upper()
    elif kind == "person":
        put(entity, "name", "dob", "nationality", "sex")
        if row.get("aliases"):
            entity["aliases"] = list(dict.fromkeys(a.strip() for a in row["aliases"].split(";") if a.strip()))
        if "nationality" in entity:
            entity["nationality"] = entity["nationality"].upper()
    elif kind == "vehicle":
        put(entity, "plate", "country")
        if "country" in entity:
            entity["country"] = entity["country"].upper()
    else:  # phone
        put(entity, "number")
        if entity.get("number"):
            # Stored in E.164: a phone entity has no country field, and the offices would
            # otherwise read a national number with the centre's calling code.
            try:
                entity["number"] = normalise_phone(entity["number"], row.get("country") or default_country)
            except ValidationError as exc:
                raise _RowProblem(exc.field, "bad_phone", exc.problem) from None
    try:
        return validate_entity(entity)
    except ValidationError as exc:
        column = {"holder": "name", "doc_type": "doc_type"}.get(exc.field.split(".")[0].split("[")[0], exc.field)
        raise _RowProblem(column or "", "invalid", exc.problem) from None


def _entry(row: Mapping[str, str], line: int, now_ms: int, default_country: str | None) -> WatchlistEntry:
    for name, value in row.items():
        if any(0xDC80 <= ord(ch) <= 0xDCFF for ch in value):
            raise _RowProblem(name, "not_utf8", "holds bytes that are not UTF-8; save the file as UTF-8")
    list_id, entry_id = row.get("list_id", ""), row.get("entry_id", "")
    if not _LIST_ID.match(list_id):
        raise _RowProblem("list_id", "bad_id", "must be 1-24 characters of A-Z a-z 0-9 . _ -")
    if not _ENTRY_ID.match(entry_id):
        raise _RowProblem("entry_id", "bad_id", "must be 1-36 characters of A-Z a-z 0-9 . _ -")
    action = (row.get("action") or "add").lower()
    if action not in ACTIONS:
        raise _RowProblem("action", "bad_action", f"must be one of {', '.join(ACTIONS)}; got {action[:20]!r}")
    note = row.get("note", "")
    if len(note) > 1000:
        raise _RowProblem("note", "too_long", f"is {len(note)} characters; the limit is 1000")
    if "\x00" in note:
        raise _RowProblem("note", "invalid", "must not contain NUL characters")
    if action == "withdraw":
        return WatchlistEntry(line, list_id, entry_id, action, None, None, note)
    kind = (row.get("type") or "").lower()
    if kind not in ENTRY_TYPES:
        raise _RowProblem("type", "bad_type", f"must be one of {', '.join(ENTRY_TYPES)}; got {kind[:20]!r}")
    if kind == "document" and row.get("doc_type") and row["doc_type"] not in DOCUMENT_TYPES:
        raise _RowProblem("doc_type", "invalid", f"must be one of {', '.join(DOCUMENT_TYPES)}")
    if kind == "document" and row.get("status") and row["status"] not in DOCUMENT_STATUSES:
        raise _RowProblem("status", "invalid", f"must be one of {', '.join(DOCUMENT_STATUSES)}")
    if kind == "person" and row.get("dob"):
        _check_dob(row["dob"])
    expires = _expiry_ms(row["expires"], now_ms) if row.get("expires") else None
    entity = _entity(row, kind, default_country)
    if note:
        entity["note"] = note
    return WatchlistEntry(line, list_id, entry_id, action, entity, expires, note)


def iter_watchlist(
    lines: Iterable[str], *, now_ms: int, default_country: str | None = None
) -> Iterator[WatchlistEntry | RowError]:
    """Stream a watch list: each row becomes a ``WatchlistEntry`` or a ``RowError``.

    ``lines`` is text (an open file, ``str.splitlines(keepends=True)``). Raises
    ``ValidationError`` only when the header is missing or lacks a required column.
    ``default_country`` is the country of phone numbers written without ``+``.
    """
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise ValidationError("header", "the file is empty; the first line must name the columns") from None
    except csv.Error as exc:
        raise ValidationError("header", f"line 1 is not CSV: {exc}") from None
    names = [h.strip().lower().removeprefix("\ufeff") for h in header]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ValidationError("header", f"line 1 names the column(s) {', '.join(doubled)} more than once")
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ValidationError("header", f"line 1 lacks the column(s) {', '.join(missing)}; columns are {', '.join(COLUMNS)}")
    unknown = [n for n in names if n not in COLUMNS]
    seen: dict[tuple[str, str], int] = {}
    rows = 0
    end = reader.line_num
    while True:
        start = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            end = reader.line_num
            yield RowError(start, "", "bad_csv", f"is not valid CSV ({exc}); check the quotes")
            continue
        end = reader.line_num
        if not any(c.strip() for c in cells):
            continue  # blank lines are layout, not rows
        rows += 1
        if rows > MAX_ROWS:
            yield RowError(start, "", "too_many_rows", f"the file has more than {MAX_ROWS:,} rows; split it")
            return
        if unknown and rows == 1:
            yield RowError(1, unknown[0], "unknown_column", f"is not a known column and was ignored; known: {', '.join(COLUMNS)}")
        if len(cells) != len(names):
            yield RowError(start, "", "bad_width", f"has {len(cells)} cells; the header has {len(names)}")
            continue
        row = {n: c.strip() for n, c in zip(names, cells, strict=True) if n in COLUMNS}
        try:
            entry = _entry(row, start, now_ms, default_country)
        except _RowProblem as p:
            yield RowError(start, p.column, p.reason, p.message)
            continue
        ident = (entry.list_id, entry.entry_id)
        if ident in seen:
            yield RowError(start, "entry_id", "duplicate", f"{entry.entry_id} of {entry.list_id} is already on line {seen[ident]}")
            continue
        seen[ident] = start
        yield entry


def parse_watchlist(data: str | bytes, *, now_ms: int, default_country: str | None = None) -> WatchlistParse:
    """Parse a whole watch list (UTF-8, with or without a BOM). See ``iter_watchlist``."""
    entries: list[WatchlistEntry] = []
    errors: list[RowError] = []
    for item in iter_watchlist(io.StringIO(_decode(data), newline=""), now_ms=now_ms, default_country=default_country):
        (entries if isinstance(item, WatchlistEntry) else errors).append(item)
    return WatchlistParse(tuple(entries), tuple(errors))


# -- bulletins ------------------------------------------------------------------------------


def entry_bulletin_id(sender: str, entry: WatchlistEntry, now_ms: int) -> str:
    """A ULID for the bulletin of ``entry`` imported at ``now_ms``: its time part is
    ``now_ms``, its 80 other bits a hash of what the bulletin is, so the same import
    repeated gives the same id (and the bus drops the duplicate)."""
    digest = hashlib.blake2b(
        "\x1f".join((sender, entry.list_id, entry.entry_id, entry.action, str(now_ms))).encode(),
        digest_size=10,
        person=b"blo-watchlist",
    ).digest()
    return bulletin_id_from_bytes(now_ms.to_bytes(6, "big") + digest)


def _title(entry: WatchlistEntry) -> str:
    if entry.entity is None:
        return f"Withdrawn: watch list {entry.list_id} entry {entry.entry_id}"
    e = entry.entity
    what = {
        "document": lambda: f"{e.get('status', 'wanted')} {e['doc_type'].replace('_', ' ')} {e.get('country', '')} {e['number']}",
        "person": lambda: f"person {e['name']}" + (f" born {e['dob']}" if e.get("dob") else ""),
        "vehicle": lambda: f"vehicle {e['plate']} {e.get('country', '')}",
        "phone": lambda: f"phone {e['number']}",
    }[e["type"]]()
    return f"Watch list {entry.list_id}: {' '.join(what.split())}"[:300]


def entry_bulletin(
    entry: WatchlistEntry,
    *,
    sender: str,
    now_ms: int,
    releasable_to: Sequence[str],
    tlp: str = "AMBER",
    grading: str = "A1",
    precedence: str = "PRIORITY",
) -> dict[str, Any]:
    """The lookout bulletin (dict form, for ``Bulletin.from_dict`` and sealing) of one
    entry. A withdrawal is a lookout with no entities under the same subject tag."""
    bulletin: dict[str, Any] = {
        "id": entry_bulletin_id(sender, entry, now_ms),
        "from": sender,
        "precedence": precedence,
        "kind": "lookout",
        "tlp": tlp,
        "releasable_to": list(releasable_to),
        "grading": grading,
        "title": _title(entry),
        "body": entry.note,
        "created": now_ms,
        "tags": [entry.subject_tag, "watchlist", "withdrawal" if entry.entity is None else entry.action],
    }
    if entry.entity is not None:
        bulletin["entities"] = [entry.entity]
    if entry.expires is not None:
        bulletin["expires"] = entry.expires
    return bulletin


def watchlist_bulletins(
    entries: Iterable[WatchlistEntry],
    *,
    sender: str,
    now_ms: int,
    releasable_to: Sequence[str],
    tlp: str = "AMBER",
    grading: str = "A1",
    precedence: str = "PRIORITY",
) -> Iterator[dict[str, Any]]:
    """``entry_bulletin`` for each entry, lazily (a list may hold millions)."""
    for entry in entries:
        yield entry_bulletin(
            entry, sender=sender, now_ms=now_ms, releasable_to=releasable_to, tlp=tlp, grading=grading, precedence=precedence
        )
