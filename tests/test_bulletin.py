"""bus.bulletin and bus.ids: what a well-formed bulletin is, how errors name the field
to fix, and the ULID and key-id codecs (cross-checked against python-ulid)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ulid import ULID

from bus.bulletin import Bulletin, body_from_dict, country_of, is_feed_name, is_office_id
from bus.errors import ValidationError
from bus.ids import (
    bulletin_id_from_bytes,
    bulletin_id_time_ms,
    bulletin_id_to_bytes,
    key_id,
    new_bulletin_id,
)
from bus.testing import DeterministicRng
from tests.helpers import NOW, attachment, bulletin


def data(**changes):
    d = bulletin().to_dict()
    d.update(changes)
    return d


def error_of(d) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        Bulletin.from_dict(d)
    return info.value


# -- error messages name the field --------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"entities": [{"type": "vehicle", "plate": "1"}, {"type": "document", "doc_type": "visa", "number": ""}]},
         "entities[1].number", "must not be empty"),
        ({"entities": [{"type": "person", "name": "A", "aliases": ["B", 7]}]}, "entities[0].aliases[1]", "must be text"),
        ({"entities": [{"type": "vehicle", "plate": "1", "wings": 2}]}, "entities[0].wings", "is not a known field"),
        ({"releasable_to": ["TH", "Laos"]}, "releasable_to[1]", "two-letter ISO 3166"),
        ({"attachments": [attachment("a", 1.5, "image/png")]},
         "attachments[0].size", "whole number of bytes"),
        ({"title": "ก" * 301}, "title", "is 301 characters; the limit is 300"),
        ({"grading": "G7"}, "grading", "Admiralty grading"),
        ({"precedence": "URGENT"}, "precedence", "FLASH, IMMEDIATE, PRIORITY, ROUTINE"),
        ({"expires": NOW}, "expires", "later than created"),
        ({"tags": [f"t{i}" for i in range(33)]}, "tags", "has 33 items; the limit is 32"),
        ({"in_reply_to": "not-a-ulid"}, "in_reply_to", "Crockford base32"),
        ({"nonsense": 1}, "nonsense", "is not a known field"),
    ],
)
def test_validation_errors_name_the_field_path_and_the_problem(changes, field, words):
    exc = error_of(data(**changes))
    assert exc.field == field
    assert words in exc.problem
    assert str(exc) == f"{field}: {exc.problem}"


def test_a_missing_required_field_is_named():
    d = data()
    del d["created"]
    assert (error_of(d).field, error_of(d).problem) == ("created", "is required")


def test_a_bulletin_that_is_not_an_object_is_refused_plainly():
    exc = error_of(["not", "a", "mapping"])
    assert exc.field == "" and "must be an object, got list" in str(exc)


def test_an_overlong_bad_value_is_cut_short_in_the_message():
    exc = error_of(data(tlp="X" * 10_000))
    assert exc.field == "tlp" and len(exc.problem) <= 200


# -- round trips and the dict forms -------------------------------------------------------


def test_to_dict_and_from_dict_round_trip_with_every_optional_field():
    b = bulletin(
        expires=NOW + 1,
        in_reply_to=new_bulletin_id(NOW - 1, DeterministicRng("earlier")),
        attachments=[attachment()],
        tags=["x", "ยาเสพติด"],
    )
    assert Bulletin.from_dict(b.to_dict()) == b


def test_body_dict_omits_empty_optional_fields_and_holds_no_header_fields():
    b = bulletin(entities=[])
    body = b.body_dict()
    assert list(body) == ["kind", "tlp", "releasable_to", "grading", "title", "body", "created"]
    assert body_from_dict(body)["created"] == NOW


def test_null_optional_fields_mean_absent():
    assert Bulletin.from_dict(data(expires=None, tags=None, in_reply_to=None)) == bulletin()


def test_entity_fields_come_out_in_the_fixed_order_whatever_order_they_came_in():
    b = bulletin(entities=[{"country": "LA", "number": "P1", "doc_type": "passport", "type": "document"}])
    assert list(b.entities[0]) == ["type", "doc_type", "number", "country"]


def test_a_bulletin_cannot_be_changed_after_validation():
    b = bulletin()
    with pytest.raises(AttributeError):
        b.title = "changed"  # type: ignore[misc]
    assert b.title == bulletin().title


def test_expiry_and_country_helpers():
    b = bulletin(expires=NOW + 10)
    assert not b.is_expired(NOW + 9) and b.is_expired(NOW + 10)
    assert not bulletin().is_expired(NOW * 2)
    assert b.country == country_of("TH-MUK") == "TH"


@pytest.mark.parametrize("value", ["TH-MUK", "LA-SVK", "TH-TCCC", "MM-AB", "VN-ABCDEFGHIJKL"])
def test_office_ids_accepted(value):
    assert is_office_id(value)


@pytest.mark.parametrize("value", ["th-muk", "TH_MUK", "TH-M", "THA-MUK", "TH-MUK\n", "TH-ABCDEFGHIJKLM", b"TH-MUK", None])
def test_office_ids_refused(value):
    assert not is_office_id(value)


def test_feed_names_are_lowercase_subject_tokens():
    assert is_feed_name("mekong-border") and is_feed_name("a")
    assert not any(is_feed_name(v) for v in ("Mekong", "-lead", "a.b", "a b", "a" * 64, "feed\n", ""))


# -- ULIDs --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=16, max_size=16))
def test_ulid_text_round_trips_and_matches_python_ulid(raw):
    text = bulletin_id_from_bytes(raw)
    assert len(text) == 26
    assert bulletin_id_to_bytes(text) == raw
    assert text == str(ULID.from_bytes(raw))
    assert ULID.from_str(text).bytes == raw
    assert bulletin_id_time_ms(text) == ULID.from_bytes(raw).milliseconds


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=16, max_size=16), min_size=2, max_size=10))
def test_ulid_text_sorts_like_its_bytes(raws):
    assert sorted(raws) == [bulletin_id_to_bytes(t) for t in sorted(bulletin_id_from_bytes(r) for r in raws)]


def test_new_bulletin_id_carries_the_creation_time():
    bid = new_bulletin_id(NOW, DeterministicRng("x"))
    assert bulletin_id_time_ms(bid) == NOW
    assert bulletin_id_time_ms(new_bulletin_id(0, DeterministicRng("x"))) == 0
    assert bulletin_id_time_ms(new_bulletin_id((1 << 48) - 1, DeterministicRng("x"))) == (1 << 48) - 1


@pytest.mark.parametrize("now", [-1, 1 << 48])
def test_new_bulletin_id_refuses_times_outside_48_bits(now):
    with pytest.raises(ValidationError, match="outside the ULID range"):
        new_bulletin_id(now, DeterministicRng("x"))


GOOD = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


@pytest.mark.parametrize(
    "text",
    [
        GOOD.lower(),  # we write and accept capitals only
        GOOD[:-1] + "I",  # Crockford aliases I, L, O and the excluded U
        GOOD[:-1] + "L",
        GOOD[:-1] + "O",
        GOOD[:-1] + "U",
        GOOD[:-1],  # 25 characters
        GOOD + "0",  # 27 characters
        "8" + GOOD[1:],  # would overflow 128 bits
        GOOD + "\n",
        "",
        b"01ARZ3NDEKTSV4RRFFQ69G5FAV",
        None,
    ],
)
def test_invalid_ulid_text_is_refused_with_a_message_saying_what_a_ulid_is(text):
    with pytest.raises(ValidationError) as info:
        bulletin_id_to_bytes(text)
    assert info.value.field == "id"
    assert "26 characters of Crockford base32" in info.value.problem
    assert "first digit 0-7" in info.value.problem


@pytest.mark.parametrize("size", [0, 15, 17])
def test_ulid_bytes_must_be_sixteen(size):
    with pytest.raises(ValidationError, match=f"must be 16 bytes, got {size}"):
        bulletin_id_from_bytes(b"\x00" * size)


# -- key ids ------------------------------------------------------------------------------


def test_key_ids_are_personalised_blake2b_and_differ_by_purpose():
    public = bytes(range(32))
    assert key_id("sign", public) == hashlib.blake2b(public, digest_size=8, person=b"blo-kid-ed25519").digest()
    assert key_id("box", public) == hashlib.blake2b(public, digest_size=8, person=b"blo-kid-x25519").digest()
    assert key_id("sign", public) != key_id("box", public)
    assert len(key_id("sign", public)) == 8
