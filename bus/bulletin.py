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
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

import msgspec
from msgspec import Meta

from bus.errors import ValidationError
from bus.ids import ULID_PATTERN, bulletin_id_to_bytes

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
#: The one feed-name grammar (schemas/FEEDS.md 2): 1-63 of a-z, 0-9 and '-', first not '-'.
FEED_NAME_PATTERN = "^[a-z0-9][a-z0-9-]{0,62}$"
_FEED_NAME = re.compile(FEED_NAME_PATTERN[:-1] + r"\Z")
_COUNTRY = re.compile(r"^[A-Z]{2}\Z")
_GRADING = re.compile(r"^[A-F][1-6]\Z")
# [0-9], not \d: Python's \d also matches Thai, Lao, Khmer, Burmese... digits, which no
# other implementation (nor the JSON Schema) would accept.
_DATE = re.compile(r"^[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?\Z")
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*\Z")
_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
_HEX16 = re.compile(r"^[0-9a-f]{32}\Z")  # 16 bytes as lower-case hex
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
# Each builder also records what its checker accepts in _FAST, for the fast path at the
# end of this module.

#: checker -> (the msgspec type of what it accepts, a cleaner for what that type cannot
#: say: a function returning the checker's result, or _NO when the checker would refuse;
#: None when the type says it all). Checkers not listed have no fast form.
_FAST: dict[Callable[[Any], Any], tuple[Any, Callable[[Any], Any] | None]] = {}
_NO: Any = object()  # what a cleaner returns when the reference checker would refuse


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

    if required:
        _FAST[check] = (Annotated[str, Meta(max_length=max_chars)], lambda v: v if "\x00" not in v and v.strip() else _NO)
    else:
        _FAST[check] = (Annotated[str, Meta(max_length=max_chars)], lambda v: v if "\x00" not in v else _NO)
    return check


def _pattern(regex: re.Pattern[str], what: str, *, every: tuple[str, ...] = ()) -> Callable[[Any], str]:
    """``every``: all the strings ``regex`` matches, when they are few; the fast path
    then looks a value up among them rather than running the regex (tests check the
    two agree)."""

    def check(value: Any) -> str:
        if not isinstance(value, str) or regex.match(value) is None:
            raise ValidationError("", f"must be {what}, got {value!r}"[:200])
        return value

    # msgspec searches with the same pattern; every pattern here is anchored (^ and \Z).
    _FAST[check] = (Literal[every] if every else Annotated[str, Meta(pattern=regex.pattern)], None)  # type: ignore[valid-type]
    return check


def _strings(*alphabets: str) -> tuple[str, ...]:
    """Every string of one character from each of ``alphabets``, in turn."""
    return tuple("".join(chars) for chars in itertools.product(*alphabets))


_CAPITALS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValidationError("", f"must be one of {', '.join(options)}; got {value!r}"[:200])
        return value

    _FAST[check] = (Literal[options], None)  # type: ignore[valid-type]
    return check


def _number(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise ValidationError("", f"must be a number from {low} to {high}")
        return value

    # int | float, not float: msgspec would turn an int into a float, the reference keeps it.
    _FAST[check] = (Annotated[int, Meta(ge=low, le=high)] | Annotated[float, Meta(ge=low, le=high)], None)
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

    item_type, item_clean = _FAST[item]
    _FAST[check] = (Annotated[list[item_type], Meta(max_length=max_items)], _unique_cleaner(item_clean))  # type: ignore[valid-type]
    return check


def _unique_cleaner(item: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """The fast twin of _text_list's checks beyond the type: each item, and no repeats."""

    def clean(v: list[Any]) -> Any:
        if item is not None:
            for x in v:
                if item(x) is _NO:
                    return _NO
        return tuple(v) if len(set(v)) == len(v) else _NO

    return clean


_country = _pattern(_COUNTRY, "a two-letter ISO 3166 country code in capitals", every=_strings(_CAPITALS, _CAPITALS))
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


_hex32 = _pattern(_SHA256, "64 lowercase hex digits")
_hex16 = _pattern(_HEX16, "32 lowercase hex digits")
# A sealed file (schemas/ATTACHMENTS.md): what it is, and what finds, opens and checks it.
_ATTACHMENT_FIELDS = {
    "name": (_text(255), True),
    "media_type": (_pattern(_MEDIA_TYPE, "a media type such as image/jpeg"), True),
    "size": (_number(0, 1 << 40), True),
    "sha256": (_hex32, True),  # of the plaintext
    "key": (_hex32, True),  # the file key
    "nonce": (_hex16, True),  # the nonce prefix of its chunks
    "object": (_hex16, True),  # the object id: names its chunks in the Object Store
    "object_sha256": (_hex32, True),  # of the stored ciphertext
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
    "grading": (
        _pattern(_GRADING, "an Admiralty grading: source A-F then information 1-6, e.g. B2", every=_strings("ABCDEF", "123456")),
        True,
    ),
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


class Bulletin(msgspec.Struct, frozen=True):
    """One validated bulletin. Build it with ``Bulletin.from_dict``; never mutate it.

    A frozen msgspec Struct rather than a frozen dataclass: the same immutable value
    (equality, repr, AttributeError on assignment; ``msgspec.structs.replace`` for a
    changed copy), built about fifteen times faster, and one is built for every
    bulletin opened.
    """

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
    tags: tuple[str, ...] = ()
    forwarded: Forwarded | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Bulletin:
        """Validate a bulletin in its JSON/dict form (see ``schemas/bulletin.schema.json``)."""
        data = _mapping(data)
        header = _check_fields({k: data[k] for k in HEADER_FIELDS if k in data}, HEADER_FIELDS)
        raw = {k: v for k, v in data.items() if k not in HEADER_FIELDS}
        if raw.get("forwarded") is not None:
            raw["forwarded"] = forwarded_from_text(raw["forwarded"])
            fast = None
        else:
            fast = _fast_bulletin(header["id"], header["from"], header["precedence"], _converted(raw))
        if fast is not None:
            return fast
        body = body_from_dict(raw)
        return cls.assemble(header["id"], header["from"], header["precedence"], body)

    @classmethod
    def assemble(cls, bulletin_id: str, sender: str, precedence: str, body: Mapping[str, Any]) -> Bulletin:
        """The bulletin of a header's id, sender and precedence and a body already checked
        (``body_from_dict``); no check is repeated here."""
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
    """Validate the body part alone (what the envelope decrypts): the reference checks."""
    body = _check_fields(_mapping(data), BODY_FIELDS)
    if "expires" in body and body["expires"] <= body["created"]:
        raise ValidationError("expires", "must be later than created")
    return body




# -- the fast path of validation ---------------------------------------------------------
# Every opened bulletin is validated, so this runs once per message received. The
# reference checks above are plain Python, one call per field with error paths; here the
# same rules, derived from the same field specs through _FAST, become msgspec Structs
# that decode msgpack (or convert a dict) and check types, lengths, patterns and ranges
# in C, and a few cleaners check what a type cannot say (no NUL, not blank, no repeats,
# expires after created). The one rule: the fast path returns exactly the Bulletin the
# reference would build, or None whenever it is not sure, in particular whenever the
# reference would refuse; the caller then runs the reference, so errors and their
# messages come from one place. tests/test_fast_validation.py holds the two together.
#
# From the wire it takes only *canonical* bodies: ones that msgspec, encoding what it
# decoded, reproduces byte for byte (which is what our sealer and any encoder following
# ENVELOPE.md section 8 writes). That one comparison rules out what the Structs alone
# would let through: duplicate map keys (msgspec keeps the last; the reference refuses),
# nil standing for an absent field, keys out of order. Other encodings are still
# accepted, by the reference checks.

_FAST[_time] = (Annotated[int, Meta(ge=0, le=MAX_TIME_MS)], None)
_FAST[_bulletin_id] = (Annotated[str, Meta(pattern=ULID_PATTERN)], None)
_FAST[_releasable] = (
    Annotated[list[_FAST[_country][0]], Meta(min_length=1, max_length=MAX_RELEASABLE)],  # type: ignore[misc]
    _unique_cleaner(None),
)
# validate_attachment requires a whole number of bytes of what _number accepts.
_FAST[_ATTACHMENT_FIELDS["size"][0]] = (Annotated[int, Meta(ge=0, le=1 << 40)], None)

_as_dicts = msgspec.to_builtins
_STRUCT_OPTIONS: dict[str, Any] = {"kw_only": True, "forbid_unknown_fields": True, "omit_defaults": True}
#: The cleaners of a spec's fields that have one: (field name, cleaner), in spec order.
_Cleaners = tuple[tuple[str, Callable[[Any], Any]], ...]


def _struct(name: str, spec: Mapping[str, tuple[Callable[[Any], Any], bool]], **options: Any) -> tuple[Any, _Cleaners]:
    """A Struct type with ``spec``'s fields in spec order (the order body_dict encodes),
    and the cleaners of its fields."""
    fields: list[tuple[Any, ...]] = []
    cleaners = []
    for field_name, (check, required) in spec.items():
        kind, clean = _FAST[check]
        fields.append((field_name, kind) if required else (field_name, kind | None, None))
        if clean is not None:
            cleaners.append((field_name, clean))
    struct = msgspec.defstruct(name, fields, **_STRUCT_OPTIONS, **options)
    return struct, tuple(cleaners)


def _clean(out: dict[str, Any], cleaners: _Cleaners) -> bool:
    """Run ``cleaners`` over the fields ``out`` has, in place; False if one refuses."""
    for name, clean in cleaners:
        v = out.get(name)
        if v is not None:
            v = clean(v)
            if v is _NO:
                return False
            out[name] = v
    return True


def _clean_all(structs: list[Any], cleaners_of: Callable[[dict[str, Any]], _Cleaners]) -> Any:
    """Decoded entities or attachments as the reference returns them: a tuple of dicts
    (an entity's "type" first), absent fields left out, each cleaned; _NO if one refuses."""
    try:
        items = _as_dicts(structs)
    except TypeError:  # a str subclass, say, from a dict body: the reference decides
        return _NO
    for item in items:
        if not _clean(item, cleaners_of(item)):
            return _NO
    return tuple(items)


_ENTITY_STRUCTS = {kind: _struct(f"_Fast_{kind}", spec, tag_field="type", tag=kind) for kind, spec in _ENTITY_SPECS.items()}
_ENTITY_CLEANERS = {kind: cleaners for kind, (_, cleaners) in _ENTITY_STRUCTS.items()}
_ATTACHMENT_STRUCT, _ATTACHMENT_CLEANERS = _struct("_FastAttachment", _ATTACHMENT_FIELDS)
_FAST[BODY_FIELDS["entities"][0]] = (
    Annotated[list[Union[tuple(s for s, _ in _ENTITY_STRUCTS.values())]], Meta(max_length=MAX_ENTITIES)],  # type: ignore[misc]  # noqa: UP007
    lambda v: _clean_all(v, lambda e: _ENTITY_CLEANERS[e["type"]]),
)
_FAST[BODY_FIELDS["attachments"][0]] = (
    Annotated[list[_ATTACHMENT_STRUCT], Meta(max_length=MAX_ATTACHMENTS)],  # type: ignore[valid-type]
    lambda v: _clean_all(v, lambda a: _ATTACHMENT_CLEANERS),
)
# A forward takes the reference path (rare, and its parts need more than a type).
_FAST[_forwarded] = (Any, lambda v: _NO)
_BODY_STRUCT, _BODY_CLEANERS = _struct("_FastBody", BODY_FIELDS)
_decode_wire_body = msgspec.msgpack.Decoder(_BODY_STRUCT).decode
_encode_wire_body = msgspec.msgpack.Encoder().encode


# The body Struct's fields are the Bulletin's after id, sender and precedence, in order
# (tests/test_fast_validation.py checks), so a decoded body is its Bulletin's arguments
# once cleaned; absent containers take the Bulletin's defaults (empty tuples).
_CLEANERS_AT = tuple((list(BODY_FIELDS).index(name), clean) for name, clean in _BODY_CLEANERS)
_DEFAULTS = dict(zip(reversed(Bulletin.__struct_fields__), reversed(Bulletin.__struct_defaults__), strict=False))
_DEFAULTS_AT = tuple((i, _DEFAULTS[name]) for i, name in enumerate(BODY_FIELDS) if _DEFAULTS.get(name) is not None)
_EXPIRES_AT, _CREATED_AT = list(BODY_FIELDS).index("expires"), list(BODY_FIELDS).index("created")
_fields_of = msgspec.structs.astuple


def _fast_bulletin(bulletin_id: str, sender: str, precedence: str, body: Any) -> Bulletin | None:
    """The Bulletin the reference builds from a decoded body Struct, or None if not sure."""
    if body is None:
        return None
    values = list(_fields_of(body))
    for i, clean in _CLEANERS_AT:
        v = values[i]
        if v is not None:
            v = clean(v)
            if v is _NO:
                return None
            values[i] = v
    for i, default in _DEFAULTS_AT:
        if values[i] is None:
            values[i] = default
    expires = values[_EXPIRES_AT]
    if expires is not None and expires <= values[_CREATED_AT]:
        return None
    return Bulletin(bulletin_id, sender, precedence, *values)


def _converted(data: Any) -> Any:
    """A dict body as the body Struct, or None if msgspec refuses it (the reference decides)."""
    try:
        return msgspec.convert(data, _BODY_STRUCT)
    except Exception:  # msgspec's refusal, whatever the input: the reference names the problem
        return None


def bulletin_from_wire_body(bulletin_id: str, sender: str, precedence: str, body: bytes) -> Bulletin | None:
    """The bulletin of a canonical msgpack body (see above), or None: then the caller
    decodes it and runs the reference checks, which accept or name the problem."""
    try:
        decoded = _decode_wire_body(body)
    except Exception:  # msgspec's refusal of any bytes: the reference path decides
        return None
    if _encode_wire_body(decoded) != body:
        return None
    return _fast_bulletin(bulletin_id, sender, precedence, decoded)
