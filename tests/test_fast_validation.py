"""The fast path of bulletin validation agrees with the reference checks.

``bus.bulletin._fast_fields`` may only ever answer what ``_check_fields`` answers (the
same dict, keys in the same order) or "not sure" (None), and must be "not sure" whenever
``_check_fields`` refuses. These tests hold it to that on generated bulletins, on
bulletins with one field (or one entity field) replaced by odd values, and on arbitrary
msgpack values; and check that it really is taken for what our own encoder produces.
"""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import bulletin as bmod
from bus.bulletin import BODY_FIELDS, Bulletin, _check_fields, _fast_fields
from bus.errors import ValidationError
from tests.helpers import bulletin
from tests.test_fuzz_open import _values
from tests.test_schema import _odd_values, valid_bulletins

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _body(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in bmod.HEADER_FIELDS}


def _shape(value: Any) -> Any:
    """Value with every dict turned into its item list, so that key order counts."""
    if isinstance(value, dict):
        return [(k, _shape(v)) for k, v in value.items()]
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_shape(v) for v in value])
    return (type(value).__name__, value)


def assert_agrees(value: Any, spec: Any = BODY_FIELDS) -> dict[str, Any] | None:
    fast = _fast_fields(value, spec)
    try:
        reference = _check_fields(bmod._mapping(value), spec)
    except ValidationError:
        assert fast is None, "the fast path accepted what the reference refuses"
        return None
    if fast is not None:
        assert _shape(fast) == _shape(reference)
    return fast


def test_the_fast_path_is_taken_for_what_our_encoder_produces() -> None:
    b = bulletin(expires=bulletin().created + 1, tags=["ยาเสพติด"], in_reply_to=bulletin(rng_seed="x").id)
    for data in (b.body_dict(), msgpack.unpackb(msgpack.packb(b.body_dict(), use_bin_type=True))):
        assert assert_agrees(data) is not None


def test_keys_out_of_spec_order_give_the_reference_order() -> None:
    data = dict(reversed(list(bulletin().body_dict().items())))
    data["entities"] = [dict(reversed(list(e.items()))) for e in data["entities"]]
    assert assert_agrees(data) is not None


def test_str_subclasses_and_absent_required_fields_are_left_to_the_reference() -> None:
    class Text(str):
        pass

    data = bulletin().body_dict()
    assert _fast_fields({**data, "title": Text("a title")}, BODY_FIELDS) is None
    assert _fast_fields({**data, "title": None}, BODY_FIELDS) is None
    assert _fast_fields({k: v for k, v in data.items() if k != "kind"}, BODY_FIELDS) is None
    assert _fast_fields({**data, b"kind": "alert"}, BODY_FIELDS) is None


@SETTINGS
@given(valid_bulletins())
def test_generated_valid_bodies_get_the_reference_result(data: dict[str, Any]) -> None:
    body = _body(data)
    assert_agrees(body)
    # What travels is what body_dict() encodes: the fast path must take all of those.
    assert assert_agrees(Bulletin.from_dict(data).body_dict()) is not None


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
@given(_values)
def test_arbitrary_values_as_bodies_or_entity_lists(value: Any) -> None:
    assert_agrees(value)
    assert_agrees({**bulletin().body_dict(), "entities": value})
    assert_agrees({**bulletin().body_dict(), "releasable_to": value})
