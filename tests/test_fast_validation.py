"""The fast path of bulletin validation agrees with the reference checks.

``bus.bulletin``'s fast path (msgspec Structs derived from the field specs, plus
cleaners) may only ever answer what the reference checks answer (the same Bulletin,
down to the type of every value and the order of every dict's keys) or "not sure"
(None), and must be "not sure" whenever the reference refuses. These tests hold both
of its entries to that: dict bodies (``Bulletin.from_dict``'s) and msgpack bodies from
the wire (``bulletin_from_wire_body``), on generated bulletins, on bulletins with one
field (or one entity field) replaced by odd values, on arbitrary msgpack values and
bytes; and check that it really is taken for what our own encoder produces.
"""

from __future__ import annotations

import string
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import bulletin as bmod
from bus.bulletin import BODY_FIELDS, Bulletin, body_from_dict, bulletin_from_wire_body
from bus.envelope import _no_duplicate_keys, encode_body
from bus.errors import ValidationError
from tests import helpers
from tests.helpers import bulletin
from tests.test_fuzz_open import _values
from tests.test_schema import _odd_values, valid_bulletins

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEAD = ("01J00000000000000000000000", "TH-MUK", "ROUTINE")


def _body(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in bmod.HEADER_FIELDS}


def _shape(value: Any) -> Any:
    """Value with every dict turned into its item list, so that key order and the type
    of every value count (13 and 13.0, a list and a tuple, compare different)."""
    if isinstance(value, Bulletin):
        return [(name, _shape(getattr(value, name))) for name in value.__struct_fields__]
    if isinstance(value, dict):
        return [(k, _shape(v)) for k, v in value.items()]
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_shape(v) for v in value])
    return (type(value).__name__, value)


def _reference(body: Any) -> Bulletin | None:
    try:
        return Bulletin.assemble(*HEAD, body_from_dict(body))
    except ValidationError:
        return None


def _reference_wire(raw: bytes) -> Bulletin | None:
    try:
        body = msgpack.unpackb(raw, raw=False, strict_map_key=True, object_pairs_hook=_no_duplicate_keys)
    except Exception:
        return None
    return _reference(body)


def _agree(fast: Bulletin | None, reference: Bulletin | None) -> Bulletin | None:
    if reference is None:
        assert fast is None, "the fast path accepted what the reference refuses"
    elif fast is not None:
        assert _shape(fast) == _shape(reference)
    return fast


def assert_agrees(body: Any) -> Bulletin | None:
    """Both entries of the fast path agree with the reference on ``body``; returns what
    the dict entry gave."""
    fast = _agree(bmod._fast_bulletin(*HEAD, bmod._converted(body)), _reference(body))
    try:
        raw = msgpack.packb(body, use_bin_type=True)
    except (TypeError, ValueError, OverflowError):
        return fast
    assert_agrees_on_bytes(raw)
    return fast


def assert_agrees_on_bytes(raw: bytes) -> Bulletin | None:
    return _agree(bulletin_from_wire_body(*HEAD, raw), _reference_wire(raw))


def test_the_fast_path_is_taken_for_what_our_encoder_produces() -> None:
    b = bulletin(expires=bulletin().created + 1, tags=["ยาเสพติด"], in_reply_to=bulletin(rng_seed="x").id)
    assert assert_agrees(b.body_dict()) is not None
    assert assert_agrees_on_bytes(encode_body(b)) is not None


def test_keys_out_of_spec_order_give_the_reference_order() -> None:
    data = dict(reversed(list(bulletin().body_dict().items())))
    data["entities"] = [dict(reversed(list(e.items()))) for e in data["entities"]]
    assert assert_agrees(data) is not None  # a dict: its order carries no meaning
    # On the wire, a body encoded in another order is not canonical: the reference decides.
    raw = msgpack.packb(data, use_bin_type=True)
    assert bulletin_from_wire_body(*HEAD, raw) is None
    assert _reference_wire(raw) is not None


def test_what_msgspec_alone_would_let_through_is_left_to_the_reference() -> None:
    raw = encode_body(bulletin())
    # A duplicate key: msgspec keeps the last value, the reference refuses the body.
    duplicated = bytes([raw[0] + 1]) + raw[1:] + msgpack.packb("title") + msgpack.packb("another title")
    assert _reference_wire(duplicated) is None
    assert bulletin_from_wire_body(*HEAD, duplicated) is None
    # nil for an optional field means "absent" to both, but is not the canonical form.
    with_nil = msgpack.packb({**bulletin().body_dict(), "expires": None}, use_bin_type=True)
    assert bulletin_from_wire_body(*HEAD, with_nil) is None
    assert _reference_wire(with_nil) == bulletin_from_wire_body(*HEAD, raw)


def test_text_rules_a_type_cannot_say_are_checked() -> None:
    for title in (" \u3000 ", "a\x00b"):
        assert assert_agrees({**bulletin().body_dict(), "title": title}) is None
    assert assert_agrees({**bulletin().body_dict(), "releasable_to": ["TH", "TH"]}) is None
    aliases = {"type": "person", "name": "Somchai", "aliases": ["A", "A"]}
    assert assert_agrees({**bulletin().body_dict(), "entities": [aliases]}) is None
    assert assert_agrees({**bulletin().body_dict(), "expires": bulletin().created}) is None


def test_str_subclasses_and_absent_required_fields_agree() -> None:
    class Text(str):
        pass

    data = bulletin().body_dict()
    assert_agrees({**data, "title": Text("a title")})
    assert bmod._fast_bulletin(*HEAD, bmod._converted({**data, "title": None})) is None
    assert bmod._fast_bulletin(*HEAD, bmod._converted({k: v for k, v in data.items() if k != "kind"})) is None
    assert bmod._fast_bulletin(*HEAD, bmod._converted({**data, b"kind": "alert"})) is None


@pytest.mark.parametrize(
    ("regex", "every"),
    [(bmod._COUNTRY, bmod._FAST[bmod._country][0]), (bmod._GRADING, bmod._FAST[BODY_FIELDS["grading"][0]][0])],
)
def test_a_pattern_listed_in_full_lists_exactly_what_it_matches(regex: Any, every: Any) -> None:
    listed = set(every.__args__)
    two = {a + b for a in string.printable + "ÀÉÏÕÜ" for b in string.printable + "ÀÉÏÕÜ"}
    assert {s for s in two if regex.match(s)} == listed
    assert all(regex.match(s) for s in listed)


@SETTINGS
@given(valid_bulletins())
def test_generated_valid_bodies_get_the_reference_result(data: dict[str, Any]) -> None:
    assert_agrees(_body(data))
    b = Bulletin.from_dict(data)
    # What travels is what body_dict() encodes: the fast path must take all of those
    # (but a forward, which it leaves to the reference by design).
    if b.forwarded is None:
        assert assert_agrees(b.body_dict()) is not None
        assert assert_agrees_on_bytes(encode_body(b)) is not None


@SETTINGS
@given(valid_bulletins(), st.data())
def test_bodies_with_one_field_replaced_never_pass_the_fast_path_alone(data: dict[str, Any], draw: st.DataObject) -> None:
    body = _body(data)
    name = draw.draw(st.sampled_from(sorted({*BODY_FIELDS, "colour"})))
    value = draw.draw(st.one_of(_odd_values, _values))
    assert_agrees({**body, name: value})


@SETTINGS
@given(valid_bulletins(), st.data())
def test_entities_with_one_field_replaced_never_pass_the_fast_path_alone(data: dict[str, Any], draw: st.DataObject) -> None:
    entities = data.get("entities") or [{"type": "vehicle", "plate": "70-1234"}]
    i = draw.draw(st.integers(0, len(entities) - 1))
    fields = sorted({"type", "note", "name", "number", "plate", "country", "lat", "aliases", "dob", "x"})
    name = draw.draw(st.sampled_from(fields))
    changed = [dict(e) for e in entities]
    changed[i][name] = draw.draw(st.one_of(_odd_values, _values))
    assert_agrees({**_body(data), "entities": changed})


@SETTINGS
@given(valid_bulletins(), st.data())
def test_attachments_with_one_field_replaced_never_pass_the_fast_path_alone(
    data: dict[str, Any], draw: st.DataObject
) -> None:
    attachment = helpers.attachment("photo.jpg", 1)
    name = draw.draw(st.sampled_from(sorted({*attachment, "x"})))
    changed = {**attachment, name: draw.draw(st.one_of(_odd_values, _values, st.floats()))}
    assert_agrees({**_body(data), "attachments": [changed]})


@SETTINGS
@given(_values)
def test_arbitrary_values_as_bodies_or_entity_lists(value: Any) -> None:
    assert_agrees(value)
    assert_agrees({**bulletin().body_dict(), "entities": value})
    assert_agrees({**bulletin().body_dict(), "releasable_to": value})


@SETTINGS
@given(st.binary(max_size=300), st.data())
def test_arbitrary_and_mutated_bytes_as_wire_bodies(data: bytes, draw: st.DataObject) -> None:
    assert_agrees_on_bytes(data)
    raw = encode_body(bulletin())
    at = draw.draw(st.integers(0, len(raw) - 1))
    assert_agrees_on_bytes(raw[:at] + bytes([draw.draw(st.integers(0, 255))]) + raw[at + 1 :])
    assert_agrees_on_bytes(raw[:at])


def test_the_body_struct_lists_the_bulletin_fields_after_the_header_ones_in_order() -> None:
    # _fast_bulletin passes a decoded body's fields to Bulletin positionally.
    assert bmod._BODY_STRUCT.__struct_fields__ == tuple(BODY_FIELDS) == Bulletin.__struct_fields__[3:]
