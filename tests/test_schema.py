"""schemas/bulletin.schema.json and bus.bulletin agree: the same bulletins pass, the
same fail, and the Python error names the field a person must fix.

JSON Schema patterns are ECMA-262 regular expressions, where ``$`` means the end of the
string. The ``jsonschema`` package runs them with Python's ``re``, where ``$`` also matches
before a final newline ("TH-MUK\\n" would pass). The validator below gives ``$`` its
ECMA meaning, so these tests judge the schema as every other implementation reads it.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import bulletin as bmod
from bus.bulletin import ENTITY_FIELDS, Bulletin
from bus.errors import ValidationError
from bus.ids import bulletin_id_from_bytes
from bus.testing import DeterministicRng
from office_node.samples import sample_bulletins, sample_to_bulletin

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "bulletin.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
NOW = 1_795_000_000_000


def _ecma(pattern: str) -> str:
    return pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not re.search(_ecma(pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, validators={"pattern": _pattern})
VALIDATOR = Validator(SCHEMA)


def schema_ok(data: Any) -> bool:
    return VALIDATOR.is_valid(json.loads(json.dumps(data, ensure_ascii=False)))


def python_error(data: Any) -> ValidationError | None:
    try:
        Bulletin.from_dict(data)
    except ValidationError as exc:
        return exc
    return None


def base(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "01M7Q5CQG010WT8Y57QY5RK5WV",
        "from": "TH-MUK",
        "precedence": "IMMEDIATE",
        "kind": "incident",
        "tlp": "AMBER",
        "releasable_to": ["TH", "LA"],
        "grading": "B2",
        "title": "ยึดยาบ้า 200,000 เม็ด",
        "body": "",
        "created": NOW,
        "entities": [
            {"type": "vehicle", "plate": "70-1234", "country": "TH"},
            {"type": "document", "doc_type": "passport", "number": "P0847211", "country": "LA"},
        ],
    }
    data.update(changes)
    return data


def entity(**fields: Any) -> dict[str, Any]:
    return base(entities=[fields])


ATTACHMENT = {
    "name": "a.jpg", "media_type": "image/jpeg", "size": 10, "sha256": "ab" * 32,
    "key": "cd" * 32, "nonce": "ef" * 16, "object": "01" * 16, "object_sha256": "23" * 32,
}  # fmt: skip


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# The schema checks a forward's shape only; bus.forward checks what the bytes say.
WHOLE = {"sender": "TH-MUK", "header": b64(bytes(range(40))), "body": b64(b"\x80"), "signature": b64(b"s" * 64)}
REDACTED = {"sender": "TH-MUK", "header": b64(bytes(range(40))), "redacted": ["entities[1].number", "body"]}


def forwarded(base_form: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return base(**{"from": "TH-TCCC", "forwarded": {**base_form, **changes}})


# -- the schema itself ---------------------------------------------------------------------


def test_the_schema_is_valid_draft_2020_12_and_versioned():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "/v1/" in SCHEMA["$id"]


def _subschemas(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _subschemas(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _subschemas(v, f"{path}/{i}")


def test_every_property_of_the_schema_is_described():
    for path, node in _subschemas(SCHEMA):
        for name, prop in node.get("properties", {}).items():
            target = SCHEMA["$defs"][prop["$ref"].rsplit("/", 1)[1]] if "$ref" in prop else {}
            if name != "type" and "description" not in prop and "description" not in target:
                pytest.fail(f"{path}/properties/{name} has no description")


def test_entity_types_and_fields_match_the_python_table_exactly():
    branches = {b["properties"]["type"]["const"]: b for b in SCHEMA["$defs"]["entity"]["oneOf"]}
    assert list(branches) == list(ENTITY_FIELDS)
    for kind, fields in ENTITY_FIELDS.items():
        branch = branches[kind]
        assert set(branch["properties"]) == {"type", "note", *fields}
        assert set(branch["required"]) == {"type", *(name for name, (_, required) in fields.items() if required)}


def test_top_level_fields_and_required_set_match_the_python_tables():
    props = set(SCHEMA["properties"])
    assert props == {*bmod.HEADER_FIELDS, *bmod.BODY_FIELDS}
    required = {n for table in (bmod.HEADER_FIELDS, bmod.BODY_FIELDS) for n, (_, req) in table.items() if req}
    assert set(SCHEMA["required"]) == required
    assert SCHEMA["properties"]["precedence"]["enum"] == list(bmod.PRECEDENCES)
    assert SCHEMA["properties"]["tlp"]["enum"] == list(bmod.TLP_LABELS)
    assert SCHEMA["properties"]["kind"]["enum"] == list(bmod.KINDS)


def test_whitespace_in_the_schema_is_exactly_what_python_strips():
    """'Not only whitespace' must mean the same code points in every implementation."""
    line = re.compile(SCHEMA["$defs"]["line"]["pattern"])
    tag = re.compile(_ecma(SCHEMA["$defs"]["tag"]["pattern"]))
    for cp in range(1, sys.maxunicode + 1):
        c = chr(cp)
        assert (line.search(c) is None) == c.isspace(), hex(cp)
        assert (tag.search(c) is not None) == (bmod._TAG.match(c) is not None), hex(cp)


# -- valid in both ------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(sample_bulletins())))
def test_every_sample_bulletin_is_valid_in_both_and_round_trips(index):
    b = sample_to_bulletin(sample_bulletins()[index], now_ms=NOW, rng=DeterministicRng(f"sample {index}"))
    assert schema_ok(b.to_dict())
    assert Bulletin.from_dict(b.to_dict()) == b
    assert Bulletin.from_dict(json.loads(json.dumps(b.to_dict()))) == b


VALID = {
    "optional field null means absent": base(expires=None, tags=None, entities=None),
    "entity optional field null": entity(type="person", name="A", dob=None, sex=None, note=None),
    "empty body and empty note": entity(type="phone", number="+66 81 234 5678", note=""),
    "integer coordinates": entity(type="location", name="Bridge", lat=16, lon=-180),
    "every entity type": base(entities=[
        {"type": "person", "name": "A", "aliases": ["B"], "dob": "1985", "nationality": "LA", "sex": "X"},
        {"type": "document", "doc_type": "visa", "number": "V1", "status": "revoked", "expiry": "2030-01", "holder": "A"},
        {"type": "vehicle", "plate": "กข 1234", "make": "Toyota", "model": "Hilux", "colour": "white", "vin": "1" * 17},
        {"type": "vessel", "name": "Star", "imo": "9123456", "mmsi": "567000001", "flag": "MM"},
        {"type": "phone", "number": "(02) 123-4567"},
        {"type": "organisation", "name": "Co.", "country": "KH"},
        {"type": "location", "name": "Poipet", "lat": 13.65, "lon": 102.56},
    ]),
    "attachments and tags at their limits": base(attachments=[ATTACHMENT] * 50, tags=[f"t{i}" for i in range(32)]),
    "longest title and a Thai tag": base(title="ก" * 300, tags=["ยาเสพติด"]),
    "in reply to another bulletin": base(kind="reply", in_reply_to="01ARZ3NDEKTSV4RRFFQ69G5FAV"),
    "expires one ms after created": base(expires=NOW + 1),
    "a whole forward": forwarded(WHOLE),
    "a redacted forward": forwarded(REDACTED),
    "a redacted forward with null body and signature": forwarded(REDACTED, body=None, signature=None),
    "a whole forward with null redacted": forwarded(WHOLE, redacted=None),
    "a forward of a 192 KiB original": forwarded(WHOLE, body=b64(b"x" * 196_608)),
}


@pytest.mark.parametrize("name", VALID)
def test_hand_written_valid_bulletins_pass_both(name):
    data = VALID[name]
    assert python_error(data) is None
    assert schema_ok(data)


# -- invalid in both, and Python names the field ------------------------------------------

INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "bad precedence": (base(precedence="URGENT"), "precedence"),
    "bad tlp": (base(tlp="WHITE"), "tlp"),
    "bad kind": (base(kind="gossip"), "kind"),
    "empty title": (base(title=""), "title"),
    "title only ideographic spaces": (base(title="\u3000 \u2003"), "title"),
    "title too long": (base(title="ก" * 301), "title"),
    "title is null": (base(title=None), "title"),
    "NUL in the body": (base(body="a\x00b"), "body"),
    "grading G7": (base(grading="G7"), "grading"),
    "grading lower case": (base(grading="b2"), "grading"),
    "unknown top-level field": (base(colour="red"), "colour"),
    "missing kind": ({k: v for k, v in base().items() if k != "kind"}, "kind"),
    "bad country in releasable_to": (base(releasable_to=["TH", "Laos"]), "releasable_to[1]"),
    "empty releasable_to": (base(releasable_to=[]), "releasable_to"),
    "repeated country": (base(releasable_to=["TH", "TH"]), "releasable_to"),
    "too many tags": (base(tags=[f"t{i}" for i in range(33)]), "tags"),
    "repeated tag": (base(tags=["a", "a"]), "tags"),
    "tag with a space": (base(tags=["two words"]), "tags[0]"),
    "created negative": (base(created=-1), "created"),
    "created as text": (base(created="2026-11-18"), "created"),
    "created fractional": (base(created=1.5), "created"),
    "created boolean": (base(created=True), "created"),
    "created past 2^48": (base(created=1 << 48), "created"),
    "id with a Crockford alias": (base(id="01M7Q5CQG010WT8Y57QY5RK5WI"), "id"),
    "id in lower case": (base(id="01m7q5cqg010wt8y57qy5rk5wv"), "id"),
    "id first digit 8": (base(id="81M7Q5CQG010WT8Y57QY5RK5WV"), "id"),
    "in_reply_to too short": (base(in_reply_to="01ARZ3NDEK"), "in_reply_to"),
    "sender in lower case": (base(**{"from": "th-muk"}), "from"),
    "sender with a trailing newline": (base(**{"from": "TH-MUK\n"}), "from"),
    "unknown entity type": (base(entities=[{"type": "vehicle", "plate": "1"}, {"type": "drone"}]), "entities[1].type"),
    "entity without type": (base(entities=[{"name": "x"}]), "entities[0].type"),
    "document without number": (base(entities=[{"type": "vehicle", "plate": "1"}, {"type": "document", "doc_type": "visa"}]),
                                 "entities[1].number"),
    "document with blank number": (entity(type="document", doc_type="visa", number=" "), "entities[0].number"),
    "bad document type": (entity(type="document", doc_type="ticket", number="1"), "entities[0].doc_type"),
    "field of another entity type": (entity(type="vehicle", plate="1", doc_type="passport"), "entities[0].doc_type"),
    "latitude out of range": (entity(type="location", name="x", lat=91), "entities[0].lat"),
    "longitude as text": (entity(type="location", name="x", lon="102"), "entities[0].lon"),
    "date of birth in Thai digits": (entity(type="person", name="x", dob="๑๙๘๕-๐๓-๑๔"), "entities[0].dob"),
    "date of birth day first": (entity(type="person", name="x", dob="14-03-1985"), "entities[0].dob"),
    "repeated alias": (entity(type="person", name="x", aliases=["a", "a"]), "entities[0].aliases"),
    "sex lower case": (entity(type="person", name="x", sex="f"), "entities[0].sex"),
    "phone with letters": (entity(type="phone", number="call me"), "entities[0].number"),
    "imo of six digits": (entity(type="vessel", name="x", imo="123456"), "entities[0].imo"),
    "vin too long": (entity(type="vehicle", plate="1", vin="1" * 18), "entities[0].vin"),
    "note too long": (entity(type="vehicle", plate="1", note="n" * 1001), "entities[0].note"),
    "too many entities": (base(entities=[{"type": "phone", "number": "123"}] * 201), "entities"),
    "entities not a list": (base(entities={"type": "phone", "number": "123"}), "entities"),
    "attachment hash in capitals": (base(attachments=[{**ATTACHMENT, "sha256": "AB" * 32}]), "attachments[0].sha256"),
    "attachment without hash": (base(attachments=[{k: v for k, v in ATTACHMENT.items() if k != "sha256"}]),
                                "attachments[0].sha256"),
    "attachment negative size": (base(attachments=[{**ATTACHMENT, "size": -1}]), "attachments[0].size"),
    "attachment fractional size": (base(attachments=[{**ATTACHMENT, "size": 1.5}]), "attachments[0].size"),
    "attachment media type with capitals": (base(attachments=[{**ATTACHMENT, "media_type": "Image/JPEG"}]),
                                            "attachments[0].media_type"),
    "too many attachments": (base(attachments=[ATTACHMENT] * 51), "attachments"),
    "forwarded not an object": (base(forwarded="TH-MUK"), "forwarded"),
    "forward without header": (forwarded({k: v for k, v in WHOLE.items() if k != "header"}), "forwarded.header"),
    "forward header not base64": (forwarded(WHOLE, header="not base64!"), "forwarded.header"),
    "forward header in base64url": (forwarded(WHOLE, header="-_-_"), "forwarded.header"),
    "forward header non-canonical base64": (forwarded(WHOLE, header="QR=="), "forwarded.header"),
    "forward header empty": (forwarded(WHOLE, header=""), "forwarded.header"),
    "forward body over 192 KiB": (forwarded(WHOLE, body=b64(b"x" * 196_609)), "forwarded.body"),
    "forward signature of 63 bytes": (forwarded(WHOLE, signature=b64(b"s" * 63)), "forwarded.signature"),
    "whole forward without signature": (forwarded({k: v for k, v in WHOLE.items() if k != "signature"}),
                                        "forwarded.signature"),
    "redacted forward carrying the body": (forwarded(REDACTED, body=WHOLE["body"]), "forwarded.body"),
    "redacted forward carrying the signature": (forwarded(REDACTED, signature=WHOLE["signature"]), "forwarded.signature"),
    "forward with an empty redacted list": (forwarded(WHOLE, redacted=[]), "forwarded.redacted"),
    "redacted path in capitals": (forwarded(REDACTED, redacted=["Entities[0]"]), "forwarded.redacted[0]"),
    "redacted path with a leading zero": (forwarded(REDACTED, redacted=["entities[01]"]), "forwarded.redacted[0]"),
    "redacted path repeated": (forwarded(REDACTED, redacted=["body", "body"]), "forwarded.redacted"),
    "forward sender in lower case": (forwarded(WHOLE, sender="th-muk"), "forwarded.sender"),
    "unknown field in a forward": (forwarded(WHOLE, colour="red"), "forwarded.colour"),
}


@pytest.mark.parametrize("name", INVALID)
def test_hand_written_invalid_bulletins_fail_both_and_python_names_the_field(name):
    data, field = INVALID[name]
    exc = python_error(data)
    assert exc is not None, "the Python validator accepted it"
    assert exc.field == field
    assert str(exc).startswith(f"{field}: ")
    assert not schema_ok(data), "the schema accepted it"


def test_expires_not_after_created_is_the_one_rule_beyond_the_schema():
    """JSON Schema cannot compare two fields; the schema says so in words, Python enforces it."""
    for expires in (NOW, NOW - 1):
        exc = python_error(base(expires=expires))
        assert exc is not None and exc.field == "expires"
        assert schema_ok(base(expires=expires))
    assert "expires" in SCHEMA["description"] and "greater than created" in SCHEMA["description"]


# -- generated bulletins --------------------------------------------------------------------

_text_chars = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
_scripts = st.sampled_from(["ยึดยาบ้า", "ແຈ້ງເຕືອນ", "ការចាប់យក", "မူးယစ်ဆေးဝါး", "Hộ chiếu", "Ho\u0323 chie\u0302\u0301u", "A"])


def _line(max_size: int) -> st.SearchStrategy[str]:
    return st.one_of(_scripts, st.text(_text_chars, min_size=1, max_size=min(max_size, 40))).filter(
        lambda s: bool(s.strip()) and len(s) <= max_size
    )


_country = st.from_regex(r"[A-Z]{2}", fullmatch=True)
_date = st.from_regex(r"[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?", fullmatch=True)
_digits = lambda n: st.from_regex(rf"[0-9]{{{n}}}", fullmatch=True)  # noqa: E731
_coordinate = lambda limit: st.one_of(  # noqa: E731
    st.integers(-limit, limit), st.floats(-limit, limit, allow_nan=False, allow_infinity=False)
)


def _entity(kind: str, required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    note = st.text(_text_chars, max_size=30)
    return st.fixed_dictionaries({"type": st.just(kind), **required}, optional={**optional, "note": note})


_entities = st.one_of(
    _entity("person", {"name": _line(200)}, {"aliases": st.lists(_line(200), max_size=3, unique=True), "dob": _date,
                                             "nationality": _country, "sex": st.sampled_from(["F", "M", "X"])}),
    _entity("document", {"doc_type": st.sampled_from(bmod.DOCUMENT_TYPES), "number": _line(40)},
            {"country": _country, "status": st.sampled_from(bmod.DOCUMENT_STATUSES), "expiry": _date,
             "holder": _line(200)}),
    _entity("vehicle", {"plate": _line(20)}, {"country": _country, "make": _line(200), "model": _line(200),
                                              "colour": _line(200), "vin": _line(17)}),
    _entity("vessel", {"name": _line(200)}, {"imo": _digits(7), "mmsi": _digits(9), "flag": _country}),
    _entity("phone", {"number": st.from_regex(r"\+?[0-9 ()./-]{3,32}", fullmatch=True)}, {}),
    _entity("organisation", {"name": _line(200)}, {"country": _country}),
    _entity("location", {"name": _line(200)}, {"country": _country, "lat": _coordinate(90), "lon": _coordinate(180)}),
)
_attachment = st.fixed_dictionaries({
    "name": _line(255),
    "media_type": st.from_regex(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,10}/[a-z0-9][a-z0-9!#$&^_.+-]{0,10}", fullmatch=True),
    "size": st.integers(0, 1 << 40),
    "sha256": st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    "key": st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    "nonce": st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    "object": st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    "object_sha256": st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
})
_tag = st.text(st.characters(exclude_categories=("Cs", "Zs", "Cc", "Zl", "Zp")), min_size=1, max_size=20).filter(
    lambda t: bmod._TAG.match(t) is not None
)
_ulid = st.binary(min_size=16, max_size=16).map(bulletin_id_from_bytes)
_office = st.from_regex(r"[A-Z]{2}-[A-Z0-9]{2,12}", fullmatch=True)
_part = st.binary(min_size=1, max_size=60).map(b64)
_field_path = st.from_regex(r"[a-z][a-z0-9_]{0,31}(\[(0|[1-9][0-9]{0,3})\])?(\.[a-z][a-z0-9_]{0,31})?", fullmatch=True)
_forwarded = st.one_of(
    st.fixed_dictionaries({"sender": _office, "header": _part, "body": _part,
                           "signature": st.binary(min_size=64, max_size=64).map(b64)}),
    st.fixed_dictionaries({"sender": _office, "header": _part,
                           "redacted": st.lists(_field_path, min_size=1, max_size=4, unique=True)}),
)


@st.composite
def valid_bulletins(draw: st.DrawFn) -> dict[str, Any]:
    created = draw(st.integers(0, bmod.MAX_TIME_MS - 1))
    data: dict[str, Any] = {
        "id": draw(_ulid),
        "from": draw(st.from_regex(r"[A-Z]{2}-[A-Z0-9]{2,12}", fullmatch=True)),
        "precedence": draw(st.sampled_from(bmod.PRECEDENCES)),
        "kind": draw(st.sampled_from(bmod.KINDS)),
        "tlp": draw(st.sampled_from(bmod.TLP_LABELS)),
        "releasable_to": draw(st.lists(_country, min_size=1, max_size=5, unique=True)),
        "grading": draw(st.from_regex(r"[A-F][1-6]", fullmatch=True)),
        "title": draw(_line(300)),
        "body": draw(st.text(_text_chars, max_size=200)),
        "created": created,
    }
    optional = {
        "expires": st.integers(created + 1, bmod.MAX_TIME_MS),
        "in_reply_to": _ulid,
        "entities": st.lists(_entities, max_size=4),
        "attachments": st.lists(_attachment, max_size=2),
        "tags": st.lists(_tag, max_size=4, unique=True),
        "forwarded": _forwarded,
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            data[name] = draw(strategy)
    return data


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_bulletins())
def test_generated_valid_bulletins_pass_both_and_round_trip(data):
    b = Bulletin.from_dict(data)
    assert schema_ok(data)
    assert schema_ok(b.to_dict())
    assert Bulletin.from_dict(b.to_dict()) == b
    assert Bulletin.from_dict(json.loads(json.dumps(b.to_dict()))) == b


# Values that break one rule or another; each replaces one field of a valid bulletin.
_odd_values = st.one_of(
    st.sampled_from([None, "", " ", "\u3000", "\x00", "TH\n", "th", "TH-MUK\n", "G7", "1985-13", "๑๒๓", True, 0, -1,
                     1.5, 1 << 48, [], {}, ["TH", "TH"], [None], "A" * 301]),
    st.text(max_size=5), st.integers(), st.lists(st.text(max_size=3), max_size=3),
)


def _integral_float(value: Any) -> bool:
    return isinstance(value, float) and value.is_integer()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_bulletins(), st.data())
def test_schema_and_python_agree_on_bulletins_with_one_field_replaced(data, draw):
    fields = sorted(SCHEMA["properties"])
    name = draw.draw(st.sampled_from(fields))
    value = draw.draw(_odd_values)
    changed = {**data, name: value}
    if _integral_float(value) or (
        # The one cross-field rule, which the schema states in words only.
        isinstance(changed.get("expires"), int) and isinstance(changed.get("created"), int)
        and not isinstance(changed.get("expires"), bool) and changed["expires"] <= changed["created"]
    ):
        return
    assert schema_ok(changed) == (python_error(changed) is None), (name, value)
