"""The bulletin: what an officer writes, and the rules a well-formed one obeys.

This module is the Python twin of ``schemas/bulletin.schema.json``; a test keeps the
two in agreement. ``Bulletin.from_dict`` is the only way in from outside (API, wire,
files) and raises ``ValidationError`` naming the offending field, e.g.
``entities[1].number: must not be empty``.

Times are integers: milliseconds since the Unix epoch, UTC. One form everywhere (wire,
API, store) means no time-zone or precision surprises between implementations.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bus.errors import ValidationError
from bus.ids import bulletin_id_to_bytes

SCHEMA_VERSION = 1

KINDS = ("lookout", "alert", "incident", "request_for_information", "reply", "strategic_intelligence")
#: Highest first: FLASH is delivered before anything else and must be acknowledged.
PRECEDENCES = ("FLASH", "IMMEDIATE", "PRIORITY", "ROUTINE")
#: TLP 2.0 labels, least to most restricted.
TLP_LABELS = ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED")

MAX_TITLE_CHARS = 300
MAX_BODY_CHARS = 32_768
MAX_ENTITIES = 200
MAX_ATTACHMENTS = 50
MAX_TAGS = 32
MAX_RELEASABLE = 64
MAX_TIME_MS = (1 << 48) - 1

_OFFICE_ID = re.compile(r"^[A-Z]{2}-[A-Z0-9]{2,12}\Z")
# Feed names become NATS subject tokens: lowercase letters, digits and hyphens only.
_FEED_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\Z")
_COUNTRY = re.compile(r"^[A-Z]{2}\Z")
_GRADING = re.compile(r"^[A-F][1-6]\Z")
# [0-9], not \d: Python's \d also matches Thai, Lao, Khmer, Burmese... digits, which no
# other implementation (nor the JSON Schema) would accept.
_DATE = re.compile(r"^[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?\Z")
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*\Z")
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
_TAG = re.compile(r"^[^\s\x00-\x1f]{1,64}\Z")


def is_office_id(value: object) -> bool:
    return isinstance(value, str) and _OFFICE_ID.match(value) is not None


def is_feed_name(value: object) -> bool:
    return isinstance(value, str) and _FEED_NAME.match(value) is not None


def country_of(office_id: str) -> str:
    """The ISO country code an office id starts with (``TH-MUK`` -> ``TH``)."""
    return office_id[:2]


# -- field checkers ----------------------------------------------------------------------
# Each checker takes a value and returns it cleaned, or raises ValidationError with an
# empty or relative field path; containers prefix their own path on the way out. Paths
# are only built on failure: validation runs on every opened bulletin (the hot path).
# Each builder also records what its checker accepts in _FAST_FORMS, for the fast path
# at the end of this module.

#: checker -> (kind, parameters...), kinds below; checkers not listed are simply called.
_FAST_FORMS: dict[Callable[[Any], Any], tuple[Any, ...]] = {}
_F_TEXT, _F_PATTERN, _F_CHOICE, _F_TIME, _F_LIST, _F_ENTITIES, _F_CALL = range(7)


def _at(path: str, exc: ValidationError) -> ValidationError:
    if not exc.field:
        full = path
    elif exc.field.startswith("["):
        full = path + exc.field
    else:
        full = f"{path}.{exc.field}" if path else exc.field
    return ValidationError(full, exc.problem)



def _text(max_chars: int, *, required: bool = True) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValidationError("", f"must be text, got {type(value).__name__}")
        if required and not value.strip():
            raise ValidationError("", "must not be empty")
        if len(value) > max_chars:
            raise ValidationError("", f"is {len(value)} characters; the limit is {max_chars}")
        if "\x00" in value:
            raise ValidationError("", "must not contain NUL characters")
        return value

    _FAST_FORMS[check] = (_F_TEXT, max_chars, required)
    return check


def _pattern(regex: re.Pattern[str], what: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or regex.match(value) is None:
            raise ValidationError("", f"must be {what}, got {value!r}"[:200])
        return value

    _FAST_FORMS[check] = (_F_PATTERN, regex, None)
    return check


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValidationError("", f"must be one of {', '.join(options)}; got {value!r}"[:200])
        return value

    _FAST_FORMS[check] = (_F_CHOICE, frozenset(o for o in options if type(o) is str), None)
    return check


def _number(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ValidationError("", f"must be a number from {low} to {high}")
        return value

    return check


def _time(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIME_MS:
        raise ValidationError("", "must be a time in whole milliseconds since 1970-01-01 UTC")
    return value


def _text_list(item: Callable[[Any], str], max_items: int) -> Callable[[Any], tuple[str, ...]]:
    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple):
            raise ValidationError("", "must be a list")
        if len(value) > max_items:
            raise ValidationError("", f"has {len(value)} items; the limit is {max_items}")
        out = _each(item, value)
        if len(set(out)) != len(out):
            raise ValidationError("", "must not repeat an item")
        return out

    form = _FAST_FORMS.get(item)
    if form is not None and form[0] in (_F_TEXT, _F_PATTERN):
        _FAST_FORMS[check] = (_F_LIST, form, max_items, 0)
    return check


_country = _pattern(_COUNTRY, "a two-letter ISO 3166 country code in capitals")
_short = _text(200)
_optional_short = _text(200, required=False)
_date = _pattern(_DATE, "a date as YYYY, YYYY-MM or YYYY-MM-DD")

DOCUMENT_TYPES = ("passport", "id_card", "visa", "travel_document", "driving_licence", "other")
DOCUMENT_STATUSES = ("stolen", "lost", "forged", "fraudulent", "revoked", "valid")

# Entity fields by type: name -> (checker, required). "type" and "note" are common to all.
ENTITY_FIELDS: dict[str, dict[str, tuple[Callable[[Any], Any], bool]]] = {
    "person": {
        "name": (_short, True),
        "aliases": (_text_list(_short, 20), False),
        "dob": (_date, False),
        "nationality": (_country, False),
        "sex": (_choice(("F", "M", "X")), False),
    },
    "document": {
        "doc_type": (_choice(DOCUMENT_TYPES), True),
        "number": (_text(40), True),
        "country": (_country, False),
        "status": (_choice(DOCUMENT_STATUSES), False),
        "expiry": (_date, False),
        "holder": (_short, False),
    },
    "vehicle": {
        "plate": (_text(20), True),
        "country": (_country, False),
        "make": (_short, False),
        "model": (_short, False),
        "colour": (_short, False),
        "vin": (_text(17), False),
    },
    "vessel": {
        "name": (_short, True),
        "imo": (_pattern(re.compile(r"^[0-9]{7}\Z"), "a 7-digit IMO number"), False),
        "mmsi": (_pattern(re.compile(r"^[0-9]{9}\Z"), "a 9-digit MMSI"), False),
        "flag": (_country, False),
    },
    "phone": {
        "number": (_pattern(re.compile(r"^\+?[0-9 ()./-]{3,32}\Z"), "a phone number such as +95 9 123 456 789"), True),
    },
    "organisation": {
        "name": (_short, True),
        "country": (_country, False),
    },
    "location": {
        "name": (_short, True),
        "country": (_country, False),
        "lat": (_number(-90, 90), False),
        "lon": (_number(-180, 180), False),
    },
}
ENTITY_TYPES = tuple(ENTITY_FIELDS)
_NOTE = (_text(1000, required=False), False)
_ENTITY_SPECS = {kind: {**fields, "note": _NOTE} for kind, fields in ENTITY_FIELDS.items()}
_TYPE_ONLY = frozenset({"type"})


def _each(item: Callable[[Any], Any], values: Any) -> tuple[Any, ...]:
    out = []
    for i, v in enumerate(values):
        try:
            out.append(item(v))
        except ValidationError as exc:
            raise _at(f"[{i}]", exc) from None
    return tuple(out)


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError("", f"must be an object, got {type(value).__name__}")
    return value


def _check_fields(
    value: Mapping[str, Any],
    spec: Mapping[str, tuple[Callable[[Any], Any], bool]],
    skip: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in value:
        if name not in spec and name not in skip:
            raise ValidationError(str(name), "is not a known field")
    for name, (check, required) in spec.items():
        v = value.get(name)
        if v is not None:
            try:
                out[name] = check(v)
            except ValidationError as exc:
                raise _at(name, exc) from None
        elif required:
            raise ValidationError(name, "is required")
    return out


def validate_entity(value: Any) -> dict[str, Any]:
    value = _mapping(value)
    kind = value.get("type")
    spec = _ENTITY_SPECS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise ValidationError("type", f"must be one of {', '.join(ENTITY_TYPES)}; got {kind!r}"[:200])
    return {"type": kind, **_check_fields(value, spec, skip=_TYPE_ONLY)}


_ATTACHMENT_FIELDS = {
    "name": (_text(255), True),
    "media_type": (_pattern(_MEDIA_TYPE, "a media type such as image/jpeg"), True),
    "size": (_number(0, 1 << 40), True),
    "sha256": (_pattern(_SHA256, "64 lowercase hex digits"), True),
}


def validate_attachment(value: Any) -> dict[str, Any]:
    out = _check_fields(_mapping(value), _ATTACHMENT_FIELDS)
    if not isinstance(out["size"], int):
        raise ValidationError("size", "must be a whole number of bytes")
    return out


def _list_of(item: Callable[[Any], dict[str, Any]], max_items: int) -> Callable[[Any], tuple[dict[str, Any], ...]]:
    def check(value: Any) -> tuple[dict[str, Any], ...]:
        if not isinstance(value, list | tuple):
            raise ValidationError("", "must be a list")
        if len(value) > max_items:
            raise ValidationError("", f"has {len(value)} items; the limit is {max_items}")
        return _each(item, value)

    return check


def _bulletin_id(value: Any) -> str:
    try:
        bulletin_id_to_bytes(value)
    except ValidationError as exc:
        raise ValidationError("", exc.problem) from None
    return value


_countries = _text_list(_country, MAX_RELEASABLE)


def _releasable(value: Any) -> tuple[str, ...]:
    out = _countries(value)
    if not out:
        raise ValidationError("", "must name at least one country the bulletin may reach")
    return out


_office = _pattern(_OFFICE_ID, "an office id such as TH-MUK")

# -- forwarded: the original of a forward (schemas/ENVELOPE.md 8.1) -----------------------
#: Each carried part (the original's header, its body) is at most 192 KiB: 3 * 65536, so
#: its base64 text in the dict form is at most 262144 characters, exactly.
MAX_FORWARDED_PART_BYTES = 196_608
MAX_REDACTED = 256
_SIGNATURE_BYTES = 64
# A field path as ValidationError names them: title, entities[3], entities[3].name.
_FIELD_PATH = re.compile(r"^[a-z][a-z0-9_]{0,31}(\[(0|[1-9][0-9]{0,3})\])?(\.[a-z][a-z0-9_]{0,31})?\Z")


@dataclass(frozen=True, slots=True)
class Forwarded:
    """The original of a forwarded bulletin: what the centre received from the office.

    ``header``, ``body`` and ``signature`` are the original's exact signed bytes, so any
    member can check the office's signature (``bus.forward.verify_forward``). A redacted
    forward carries no ``body`` and no ``signature`` (either would reveal, or let a reader
    confirm a guess of, what was redacted) and lists the ``redacted`` field paths instead.
    On the wire the parts are msgpack bin; in the dict/JSON form, base64 text.
    """

    sender: str
    header: bytes
    body: bytes | None = None
    signature: bytes | None = None
    redacted: tuple[str, ...] = ()

    def wire_form(self) -> dict[str, Any]:
        """As it is msgpack-encoded inside the body: keys in this order, bytes as bin."""
        out: dict[str, Any] = {"sender": self.sender, "header": self.header}
        if self.redacted:
            out["redacted"] = list(self.redacted)
        else:
            out["body"] = self.body
            out["signature"] = self.signature
        return out

    def json_form(self) -> dict[str, Any]:
        """As it appears in ``Bulletin.to_dict``: the byte strings as base64 text."""
        return {k: base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v for k, v in self.wire_form().items()}


def _part(value: Any) -> bytes:
    if type(value) is not bytes or not 1 <= len(value) <= MAX_FORWARDED_PART_BYTES:
        raise ValidationError("", f"must be 1 to {MAX_FORWARDED_PART_BYTES} bytes (msgpack bin)")
    return value


def _signature(value: Any) -> bytes:
    if type(value) is not bytes or len(value) != _SIGNATURE_BYTES:
        raise ValidationError("", f"must be a {_SIGNATURE_BYTES}-byte Ed25519 signature (msgpack bin)")
    return value


_FORWARDED_FIELDS: dict[str, tuple[Callable[[Any], Any], bool]] = {
    "sender": (_office, True),
    "header": (_part, True),
    "body": (_part, False),
    "signature": (_signature, False),
    "redacted": (_text_list(_pattern(_FIELD_PATH, "a field path such as entities[0].name"), MAX_REDACTED), False),
}


def _forwarded(value: Any) -> Forwarded:
    f = _check_fields(_mapping(value), _FORWARDED_FIELDS)
    redacted = f.get("redacted")
    if redacted is not None and not redacted:
        raise ValidationError("redacted", "must name at least one field, or be left out")
    for name in ("body", "signature"):
        if redacted and name in f:
            raise ValidationError(name, "must be left out of a redacted forward (it would reveal what was redacted)")
        if not redacted and name not in f:
            raise ValidationError(name, "is required unless the forward is redacted")
    return Forwarded(f["sender"], f["header"], f.get("body"), f.get("signature"), redacted or ())


def forwarded_from_text(value: Any) -> Any:
    """The dict form of ``forwarded`` (base64 text) in its wire form (bytes), for validation."""
    if not isinstance(value, Mapping):
        return value  # the validator says what is wrong with it
    out = dict(value)
    for name in ("header", "body", "signature"):
        text = out.get(name)
        if text is None:
            continue
        try:
            raw = base64.b64decode(text, validate=True) if isinstance(text, str) else None
        except (binascii.Error, ValueError):
            raw = None
        # Canonical only (RFC 4648 3.5): one text per byte string, as the schema's pattern.
        if raw is None or base64.b64encode(raw).decode("ascii") != text:
            raise ValidationError(f"forwarded.{name}", "must be base64 text (RFC 4648, with padding)")
        out[name] = raw
    return out


#: Fields of the bulletin body, the part that travels encrypted. name -> (checker, required)
BODY_FIELDS: dict[str, tuple[Callable[[Any], Any], bool]] = {
    "kind": (_choice(KINDS), True),
    "tlp": (_choice(TLP_LABELS), True),
    "releasable_to": (_releasable, True),
    "grading": (_pattern(_GRADING, "an Admiralty grading: source A-F then information 1-6, e.g. B2"), True),
    "title": (_text(MAX_TITLE_CHARS), True),
    "body": (_text(MAX_BODY_CHARS, required=False), True),
    "created": (_time, True),
    "expires": (_time, False),
    "in_reply_to": (_bulletin_id, False),
    "entities": (_list_of(validate_entity, MAX_ENTITIES), False),
    "attachments": (_list_of(validate_attachment, MAX_ATTACHMENTS), False),
    "tags": (_text_list(_pattern(_TAG, "a tag of 1-64 characters without spaces"), MAX_TAGS), False),
    "forwarded": (_forwarded, False),
}
#: Fields carried in the envelope header (clear, signed, bound to the ciphertext).
HEADER_FIELDS: dict[str, tuple[Callable[[Any], Any], bool]] = {
    "id": (_bulletin_id, True),
    "from": (_office, True),
    "precedence": (_choice(PRECEDENCES), True),
}


@dataclass(frozen=True, slots=True)
class Bulletin:
    """One validated bulletin. Build it with ``Bulletin.from_dict``; never mutate it."""

    id: str
    sender: str
    precedence: str
    kind: str
    tlp: str
    releasable_to: tuple[str, ...]
    grading: str
    title: str
    body: str
    created: int
    expires: int | None = None
    in_reply_to: str | None = None
    entities: tuple[dict[str, Any], ...] = ()
    attachments: tuple[dict[str, Any], ...] = ()
    tags: tuple[str, ...] = field(default=())
    forwarded: Forwarded | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Bulletin:
        """Validate a bulletin in its JSON/dict form (see ``schemas/bulletin.schema.json``)."""
        data = _mapping(data)
        header = _check_fields({k: data[k] for k in HEADER_FIELDS if k in data}, HEADER_FIELDS)
        raw = {k: v for k, v in data.items() if k not in HEADER_FIELDS}
        if raw.get("forwarded") is not None:
            raw["forwarded"] = forwarded_from_text(raw["forwarded"])
        body = body_from_dict(raw)
        return cls._assemble(header["id"], header["from"], header["precedence"], body)

    @classmethod
    def _assemble(cls, bulletin_id: str, sender: str, precedence: str, body: Mapping[str, Any]) -> Bulletin:
        # Positional on purpose: this runs for every bulletin opened, and keyword
        # construction of a frozen dataclass costs nearly twice as much.
        get = body.get
        return cls(
            bulletin_id,
            sender,
            precedence,
            body["kind"],
            body["tlp"],
            body["releasable_to"],
            body["grading"],
            body["title"],
            body["body"],
            body["created"],
            get("expires"),
            get("in_reply_to"),
            get("entities", ()),
            get("attachments", ()),
            get("tags", ()),
            get("forwarded"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON/dict form; ``Bulletin.from_dict(b.to_dict()) == b``."""
        out = {"id": self.id, "from": self.sender, "precedence": self.precedence, **self.body_dict()}
        if self.forwarded is not None:
            out["forwarded"] = self.forwarded.json_form()
        return out

    def body_dict(self) -> dict[str, Any]:
        """The encrypted part, as it is msgpack-encoded on the wire (optional fields omitted when empty)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "tlp": self.tlp,
            "releasable_to": list(self.releasable_to),
            "grading": self.grading,
            "title": self.title,
            "body": self.body,
            "created": self.created,
        }
        if self.expires is not None:
            out["expires"] = self.expires
        if self.in_reply_to is not None:
            out["in_reply_to"] = self.in_reply_to
        if self.entities:
            out["entities"] = [dict(e) for e in self.entities]
        if self.attachments:
            out["attachments"] = [dict(a) for a in self.attachments]
        if self.tags:
            out["tags"] = list(self.tags)
        if self.forwarded is not None:
            out["forwarded"] = self.forwarded.wire_form()
        return out

    @property
    def country(self) -> str:
        return country_of(self.sender)

    def is_expired(self, now_ms: int) -> bool:
        return self.expires is not None and now_ms >= self.expires


def body_from_dict(data: Any) -> dict[str, Any]:
    """Validate the body part alone (what the envelope decrypts)."""
    body = _fast_fields(data, BODY_FIELDS)
    if body is None:  # not sure: the reference checks decide, and name the problem
        body = _check_fields(_mapping(data), BODY_FIELDS)
    if "expires" in body and body["expires"] <= body["created"]:
        raise ValidationError("expires", "must be later than created")
    return body


# -- the fast path of validation ---------------------------------------------------------
# Every opened bulletin is validated, so this runs once per message received. The
# reference checks above wrap every field in try/except and build error paths as they
# go; _fast_fields runs one plain predicate per field (built once per spec from
# _FAST_FORMS) and gives up at the first doubt. Its one rule: it returns exactly what
# _check_fields returns (same keys, order and values) or None, and None whenever it is
# not sure, in particular whenever _check_fields would raise. The caller then runs
# _check_fields, so errors and their messages come from one place.
# tests/test_fast_validation.py holds the two together.

_FAST_FORMS[_time] = (_F_TIME, None, None)
_FAST_FORMS[_releasable] = (_F_LIST, _FAST_FORMS[_country], MAX_RELEASABLE, 1)
_FAST_FORMS[BODY_FIELDS["entities"][0]] = (_F_ENTITIES, MAX_ENTITIES, None)

_NO: Any = object()  # what a fast cleaner returns when it is not sure
Cleaner = Callable[[Any], Any]


def _cleaner(form: tuple[Any, ...] | None, check: Callable[[Any], Any]) -> Cleaner:
    """A function returning what ``check`` returns for the values it surely accepts, else _NO."""
    kind = form[0] if form is not None else _F_CALL
    if kind == _F_TEXT:
        _, most, required = form  # type: ignore[misc]
        if required:
            return lambda v: v if type(v) is str and len(v) <= most and "\x00" not in v and v.strip() else _NO
        return lambda v: v if type(v) is str and len(v) <= most and "\x00" not in v else _NO
    if kind == _F_PATTERN:
        match = form[1].match  # type: ignore[index]
        return lambda v: v if type(v) is str and match(v) is not None else _NO
    if kind == _F_CHOICE:
        options = form[1]  # type: ignore[index]
        return lambda v: v if type(v) is str and v in options else _NO
    if kind == _F_TIME:
        return lambda v: v if type(v) is int and 0 <= v <= MAX_TIME_MS else _NO
    if kind == _F_LIST:
        _, item_form, most, least = form  # type: ignore[misc]
        item = _cleaner(item_form, check)

        def clean_list(v: Any) -> Any:
            if type(v) not in (list, tuple) or not least <= len(v) <= most:
                return _NO
            for x in v:
                if item(x) is _NO:
                    return _NO
            return tuple(v) if len(set(v)) == len(v) else _NO  # every item is a str: hashable

        return clean_list
    if kind == _F_ENTITIES:
        most = form[1]  # type: ignore[index]

        def clean_entities(v: Any) -> Any:
            if type(v) not in (list, tuple) or len(v) > most:
                return _NO
            out = []
            for e in v:
                entity = _fast_entity(e)
                if entity is None:
                    return _NO
                out.append(entity)
            return tuple(out)

        return clean_entities

    def call(v: Any) -> Any:  # anything else: the reference checker itself
        try:
            return check(v)
        except ValidationError:
            return _NO

    return call


Plan = tuple[frozenset[Any], tuple[tuple[str, bool, Cleaner], ...]]
_PLANS: dict[int, tuple[Any, frozenset[str], Plan]] = {}


def _plan(spec: Mapping[str, tuple[Callable[[Any], Any], bool]], skip: frozenset[str]) -> Plan:
    """The allowed keys and, in spec order, each field's (name, required, cleaner)."""
    found = _PLANS.get(id(spec))
    if found is None or found[0] is not spec or found[1] != skip:
        fields = tuple((name, req, _cleaner(_FAST_FORMS.get(check), check)) for name, (check, req) in spec.items())
        found = _PLANS[id(spec)] = (spec, skip, (frozenset(spec) | skip, fields))
    return found[2]


def _fast_fields(
    value: Any, spec: Mapping[str, tuple[Callable[[Any], Any], bool]], skip: frozenset[str] = frozenset()
) -> dict[str, Any] | None:
    """``_check_fields(value, spec, skip)`` for well-formed input, else None (see above)."""
    if type(value) is not dict:
        return None
    allowed, fields = _plan(spec, skip)
    if not value.keys() <= allowed:
        return None  # an unknown field
    out: dict[str, Any] = {}
    get = value.get
    for name, required, clean in fields:
        v = get(name)
        if v is None:  # None means absent, as in _check_fields
            if required:
                return None
            continue
        v = clean(v)
        if v is _NO:
            return None
        out[name] = v
    return out


def _fast_entity(value: Any) -> dict[str, Any] | None:
    """``validate_entity(value)`` for a well-formed entity, else None."""
    if type(value) is not dict:
        return None
    kind = value.get("type")
    spec = _ENTITY_SPECS.get(kind) if type(kind) is str else None
    if spec is None:
        return None
    out = _fast_fields(value, spec, _TYPE_ONLY)
    return None if out is None else {"type": kind, **out}
