"""Entity normalisation: the same document, name, plate or phone written differently
gets the same key; different ones do not."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.errors import ValidationError
from bus.lookout.normalise import (
    IndexKey,
    entity_keys,
    fold_text,
    normalise_document_number,
    normalise_name,
    normalise_phone,
    normalise_plate,
    phonetic_name,
    scopes_compatible,
)


@pytest.mark.parametrize("typed", ["P1234567", "p1234567", "P 123 4567", "P-123-4567", "p.123.45.67", "Ｐ１２３４５６７", " P1234567\t"])
def test_document_numbers_lose_spaces_dashes_dots_and_case(typed: str) -> None:
    assert normalise_document_number(typed) == "P1234567"


def test_document_key_keeps_the_issuing_country_as_scope() -> None:
    keys = entity_keys({"type": "document", "doc_type": "passport", "number": "p 084-7211", "country": "LA"})
    assert keys == [IndexKey("document", "P0847211", "LA")]


def test_scopes_match_when_either_side_is_unknown_but_not_when_they_differ() -> None:
    assert scopes_compatible("LA", "")
    assert scopes_compatible("", "LA")
    assert scopes_compatible("LA", "LA")
    assert not scopes_compatible("LA", "TH")
    assert scopes_compatible("1985", "1985-03-02")
    assert not scopes_compatible("1985-04", "1985-03-02")


def test_names_fold_case_diacritics_whitespace_and_order() -> None:
    assert normalise_name("Nguyễn  Văn Đức") == normalise_name("DUC nguyen van")
    assert normalise_name("PHOMMACHANH, Souksavanh") == normalise_name("souksavanh phommachanh")
    assert normalise_name("Chan-o-cha") == normalise_name("Chanocha")


def test_thai_script_vowel_and_tone_marks_are_kept() -> None:
    # สมชาย and สมชาญ differ only in the last letter; ก่ and ก้ only in a tone mark.
    assert fold_text("ก่า") != fold_text("ก้า")
    assert normalise_name("สมชาย ใจดี") == normalise_name("ใจดี  สมชาย") == "สมชาย ใจดี"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Souksavanh Phommachanh", "Suksavan Phommachan"),
        ("Somchai", "Somchay"),
        ("Kaeo", "Keo"),
        ("Kaew", "Kaeo"),
        ("Porntip", "Phonthip"),
        ("Khamphone", "Khamphon"),
        ("Xaysana", "Saisana"),
        ("Bounmy", "Boonmee"),
        ("Kamol", "Kamon"),
        ("Souvanna", "Suwanna"),
        ("Chaturon", "Jaturon"),
        ("Kittisak", "Kitisak"),
        ("Thongchai", "Tongchai"),
        ("Douangchanh Vongsa", "WONGSA Duangchan"),
        ("Sisavath", "Sysavat"),
    ],
)
def test_thai_and_lao_romanisation_variants_share_the_tolerant_key(a: str, b: str) -> None:
    assert phonetic_name(a) == phonetic_name(b)
    assert normalise_name(a) != normalise_name(b)  # so the match is reported as similar, not exact


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Somchai", "Somsak"),
        ("Somsak", "Somsuk"),
        ("Souksavanh Phommachanh", "Souvanna Phommachanh"),
        ("Sing", "Sin"),
        ("Khamphone", "Khamphan"),
        ("Bounmy Keo", "Bounmy"),
    ],
)
def test_clearly_different_names_do_not_share_the_tolerant_key(a: str, b: str) -> None:
    assert phonetic_name(a) != phonetic_name(b)


def test_latin_plates_lose_separators_and_thai_plates_only_collapse_whitespace() -> None:
    assert normalise_plate("70-1234") == normalise_plate("70 1234") == "701234"
    assert normalise_plate("ab-12.34") == "AB1234"
    assert normalise_plate("  กข   1234 \u00a0กรุงเทพมหานคร ") == "กข1234กรุงเทพมหานคร"
    # A space more or less is never another vehicle: what an officer types must match.
    assert normalise_plate("กข 1234") == normalise_plate("กข1234") == normalise_plate("กข-1234") == "กข1234"
    assert normalise_plate("กข 1234") != normalise_plate("กข 1234 กรุงเทพมหานคร")


@pytest.mark.parametrize(
    ("typed", "country", "e164"),
    [
        ("+95 9 123 456 789", None, "+959123456789"),
        ("09 123 456 789", "MM", "+959123456789"),
        ("081-234-5678", "TH", "+66812345678"),
        ("+66 (0)81 234 5678", None, "+66812345678"),
        ("0066 81 234 5678", "LA", "+66812345678"),
        ("020 5555 1234", "LA", "+8562055551234"),
        ("012 345 678", "KH", "+85512345678"),
        ("091 234 5678", "VN", "+84912345678"),
        ("138 0013 8000", "CN", "+8613800138000"),
        ("๐๒๐ ๕๕๕๕ ๑๒๓๔", "LA", "+8562055551234"),  # typed on a Thai keyboard
        ("໐໒໐ ໕໕໕໕ ໑໒໓໔", "LA", "+8562055551234"),  # on a Lao one
        ("00856 20 5555 1234", "TH", "+8562055551234"),
    ],
)
def test_phones_become_e164_with_the_default_countrys_calling_code(typed: str, country: str | None, e164: str) -> None:
    assert normalise_phone(typed, country) == e164


def test_a_national_phone_without_a_country_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="national number"):
        normalise_phone("081 234 5678")
    with pytest.raises(ValidationError, match="numbering plan"):
        normalise_phone("081 234 5678", "ZZ")


def test_person_keys_carry_the_date_of_birth_and_include_aliases() -> None:
    keys = entity_keys({"type": "person", "name": "Somchai Jaidee", "dob": "1985-03-02", "aliases": ["Noy"]})
    assert IndexKey("name", "jaidee somchai", "1985-03-02") in keys
    assert IndexKey("name~", phonetic_name("Somchay Jaidi"), "1985-03-02") in keys
    assert IndexKey("name", "noy", "1985-03-02") in keys


def test_vessels_organisations_and_document_holders_are_keyed() -> None:
    assert IndexKey("imo", "9074729") in entity_keys({"type": "vessel", "name": "Mekong Star", "imo": "9074729"})
    assert entity_keys({"type": "organisation", "name": "Golden  Triangle Co.", "country": "la"}) == [
        IndexKey("organisation", "co golden triangle", "LA")
    ]
    holder = entity_keys({"type": "document", "doc_type": "passport", "number": "P1", "holder": "Noy"})
    assert IndexKey("name", "noy") in holder


def test_a_phone_entity_without_country_gives_no_key_rather_than_a_wrong_one() -> None:
    assert entity_keys({"type": "phone", "number": "081 234 5678"}) == []
    assert entity_keys({"type": "phone", "number": "081 234 5678"}, "TH") == [IndexKey("phone", "+66812345678")]


# -- properties -------------------------------------------------------------------------------

_text = st.text(max_size=60)
_latinish = st.text(alphabet=st.sampled_from("aeiouyhkptcsxjvwgnmrlbdAEIOU ÀÉÔŨƯĐđ-',"), max_size=40)


@settings(max_examples=300, deadline=None)
@given(_text)
def test_normalisers_are_idempotent(text: str) -> None:
    assert normalise_document_number(normalise_document_number(text)) == normalise_document_number(text)
    assert normalise_plate(normalise_plate(text)) == normalise_plate(text)
    assert normalise_name(normalise_name(text)) == normalise_name(text)
    assert fold_text(fold_text(text)) == fold_text(text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_text, _latinish))
def test_tolerant_key_depends_only_on_the_normalised_name(text: str) -> None:
    assert phonetic_name(normalise_name(text)) == phonetic_name(text)
    assert phonetic_name(text.upper()) == phonetic_name(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="+0123456789 ()-./", max_size=30), st.sampled_from([None, "TH", "LA", "KH", "VN", "MM", "CN"]))
def test_phone_normalisation_is_idempotent_or_a_validation_error(number: str, country: str | None) -> None:
    try:
        e164 = normalise_phone(number, country)
    except ValidationError:
        return
    assert e164.startswith("+") and e164[1:].isdigit()
    assert normalise_phone(e164) == e164


_entity_values = st.one_of(st.none(), _text, st.integers(), st.lists(_text, max_size=3))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["document", "person", "vehicle", "phone", "vessel", "organisation", "location", "bogus"]),
    st.dictionaries(
        st.sampled_from(["number", "country", "name", "aliases", "dob", "plate", "vin", "imo", "mmsi", "holder"]),
        _entity_values,
    ),
    st.sampled_from([None, "TH", "ZZ"]),
)
def test_entity_keys_never_raise_on_odd_entities(kind: str, fields: dict, country: str | None) -> None:
    keys = entity_keys({"type": kind, **fields}, country)
    assert len(keys) == len(set(keys))
    assert all(isinstance(k, IndexKey) and k.key for k in keys)
