"""A border check never answers CLEAR for a listed subject, however a person types it.

For every entity a watch list or a bulletin can hold (document, person, vehicle, phone,
vessel, organisation), each written form an officer would type (spaces, dashes, case,
the local or international form of a phone, Thai or Lao digits) is FLAGGED, whether
the lookout came from a centre's watch list or from another office's bulletin."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.bulletin import Bulletin
from bus.lookout.index import LookoutIndex
from bus.lookout.watchlist import entry_bulletin, parse_watchlist
from tests.helpers import NOW, bulletin

DAY = 86_400_000
COUNTRIES = ("TH", "LA", "KH", "VN", "MM")
#: Digits as a Thai or a Lao keyboard types them (U+0E50.., U+0ED0..).
DIGIT_SCRIPTS = {"ascii": "0123456789", "thai": "๐๑๒๓๔๕๖๗๘๙", "lao": "໐໑໒໓໔໕໖໗໘໙"}


@dataclass(frozen=True)
class Case:
    """A listed entity, how it is stored, and how an officer at ``office`` types it."""

    entity: dict[str, Any]  # as a bulletin holds it
    row: dict[str, str] | None  # as a watch-list row holds it (None: watch lists have no such type)
    query: dict[str, Any]  # what the officer types
    office: str  # the checking office's country


def _digits(text: str, script: str) -> str:
    table = DIGIT_SCRIPTS[script]
    return "".join(table[int(ch)] if ch.isascii() and ch.isdigit() else ch for ch in text)


@st.composite
def _typed(draw: st.DrawFn, text: str, separators: str = " -.", case: bool = True, digits: bool = True) -> str:
    """``text`` as a person might type it: separators between characters, other case,
    digits of another script."""
    out = []
    for i, ch in enumerate(text.replace(" ", "").replace("-", "")):
        if i and draw(st.integers(0, 4)) == 0:
            out.append(draw(st.sampled_from(separators)))
        out.append(ch)
    typed = "".join(out)
    if case:
        typed = draw(st.sampled_from([typed, typed.lower(), typed.upper(), typed.swapcase()]))
    if digits:
        typed = _digits(typed, draw(st.sampled_from(sorted(DIGIT_SCRIPTS))))
    return typed


@st.composite
def documents(draw: st.DrawFn) -> Case:
    number = draw(st.from_regex(r"\A[A-Z]{1,2}[0-9]{6,8}\Z"))
    country = draw(st.sampled_from(COUNTRIES))
    entity = {"type": "document", "doc_type": "passport", "number": number, "country": country}
    query = {"type": "document", "number": draw(_typed(number, " -./"))}
    if draw(st.booleans()):
        query["country"] = draw(st.sampled_from([country, country.lower()]))
    row = {"type": "document", "number": number, "country": country, "doc_type": "passport"}
    return Case(entity, row, query, draw(st.sampled_from(COUNTRIES)))


@st.composite
def vehicles(draw: st.DrawFn) -> Case:
    plate = draw(
        st.one_of(
            st.from_regex(r"\A[ก-ฮ]{2} [0-9]{1,4}\Z"),  # Thai: two letters and a number
            st.from_regex(r"\A[ກ-ຮ]{2} [0-9]{4}\Z"),  # Lao
            st.from_regex(r"\A[0-9]{2}-[0-9]{4}\Z"),  # Thai trucks: 70-1234
            st.from_regex(r"\A[A-Z]{3} [0-9]{3}\Z"),
        )
    )
    country = draw(st.sampled_from(COUNTRIES))
    entity = {"type": "vehicle", "plate": plate, "country": country}
    query = {"type": "vehicle", "plate": draw(_typed(plate, " -.·")), "country": country}
    return Case(entity, {"type": "vehicle", "plate": plate, "country": country}, query, draw(st.sampled_from(COUNTRIES)))


_PHONE_TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)


@st.composite
def phones(draw: st.DrawFn) -> Case:
    country = draw(st.sampled_from(COUNTRIES))
    number = phonenumbers.example_number_for_type(country, draw(st.sampled_from(_PHONE_TYPES)))
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    # Listed in E.164, in its national form (the row names the country), or as written
    # by an office of that country (read in the sender's plan).
    listed = draw(st.sampled_from([e164, international, national]))
    office = draw(st.sampled_from(COUNTRIES))
    form = draw(st.sampled_from(["international", "00", "national"]))
    query: dict[str, Any] = {"type": "phone"}
    if form == "international":
        query["number"] = "+" + draw(_typed(international[1:], " -", case=False))
    elif form == "00":
        query["number"] = "00" + draw(_typed(international[1:], " -", case=False))
    else:
        query["number"] = draw(_typed(national, " -", case=False))
        if office != country or draw(st.booleans()):  # at home the office's country is the default
            query["country"] = draw(st.sampled_from([country, country.lower()]))
    entity = {"type": "phone", "number": listed}
    return Case(entity, {"type": "phone", "number": listed, "country": country}, query, office)


_GIVEN = ("Somchai", "Souksavanh", "Bounmy", "Noy", "Khamphone", "Nguyễn Văn", "สมชาย", "ສຸກສະຫວັນ")
_FAMILY = ("Jaidee", "Phommachanh", "Rakthai", "Vongsa", "Đức", "ใจดี", "ພົມມະຈັນ")


@st.composite
def _name_typed(draw: st.DrawFn, name: str) -> str:
    words = name.split()
    order = draw(st.sampled_from(["as", "reversed", "comma"]))
    if order == "reversed":
        words = words[::-1]
    elif order == "comma" and len(words) > 1:
        words = [words[-1].upper() + ",", *words[:-1]]
    spaced = draw(st.sampled_from([" ", "  ", " \t"])).join(words)
    return draw(st.sampled_from([spaced, spaced.lower(), spaced.upper(), f"  {spaced} "]))


@st.composite
def persons(draw: st.DrawFn) -> Case:
    name = f"{draw(st.sampled_from(_GIVEN))} {draw(st.sampled_from(_FAMILY))}"
    alias = f"{draw(st.sampled_from(_GIVEN))} {draw(st.sampled_from(_FAMILY))}"
    entity = {"type": "person", "name": name, "aliases": [alias, name.split()[0]], "dob": "1985-03-02"}
    asked = draw(st.sampled_from([name, alias]))
    query = {"type": "person", "name": draw(_name_typed(asked))}
    if draw(st.booleans()):
        query["dob"] = draw(st.sampled_from(["1985", "1985-03", "1985-03-02"]))
    row = {"type": "person", "name": name, "aliases": f"{alias};{name.split()[0]}", "dob": "1985-03-02"}
    return Case(entity, row, query, draw(st.sampled_from(COUNTRIES)))


@st.composite
def vessels(draw: st.DrawFn) -> Case:
    imo = draw(st.from_regex(r"\A[0-9]{7}\Z"))
    name = draw(st.sampled_from(["Mekong Star", "Golden Lotus 3", "ດາວແມ່ນ້ຳຂອງ", "แม่โขง ๒"]))
    entity = {"type": "vessel", "name": name, "imo": imo}
    if draw(st.booleans()):
        query = {"type": "vessel", "name": draw(_name_typed(name)), "imo": draw(_typed(imo, " ", case=False))}
    else:
        query = {"type": "vessel", "name": draw(_name_typed(name))}
    return Case(entity, None, query, draw(st.sampled_from(COUNTRIES)))


@st.composite
def organisations(draw: st.DrawFn) -> Case:
    name = draw(st.sampled_from(["Golden Triangle Trading Co", "บริษัท แม่โขง จำกัด", "ບໍລິສັດ ສາມຫຼ່ຽມຄຳ"]))
    entity = {"type": "organisation", "name": name, "country": "LA"}
    return Case(entity, None, {"type": "organisation", "name": draw(_name_typed(name))}, draw(st.sampled_from(COUNTRIES)))


ENTITIES = {
    "document": documents(),
    "person": persons(),
    "vehicle": vehicles(),
    "phone": phones(),
    "vessel": vessels(),
    "organisation": organisations(),
}


def _from_bulletin(case: Case) -> Bulletin:
    """The entity in a lookout bulletin written by an office of the entity's country (a
    phone in its national form is read in the sender's plan)."""
    country = case.row["country"] if case.row and case.row.get("country") else "LA"
    return bulletin(f"{country}-TCCC", rng_seed=str(case), kind="lookout", entities=[case.entity], expires=NOW + DAY)


def _from_watch_list(case: Case) -> Bulletin:
    """The entity as one row of a centre's watch list, imported by TH-TCCC."""
    assert case.row is not None
    out = io.StringIO()
    columns = ["list_id", "entry_id", *case.row]
    writer = csv.DictWriter(out, columns)
    writer.writeheader()
    writer.writerow({"list_id": "TH-WL", "entry_id": "e1", **case.row})
    parsed = parse_watchlist(out.getvalue(), now_ms=NOW, default_country="TH")
    assert not parsed.errors, parsed.errors
    (entry,) = parsed.entries
    return Bulletin.from_dict(entry_bulletin(entry, sender="TH-TCCC", now_ms=NOW, releasable_to=["TH", "LA"]))


@pytest.mark.parametrize("kind", sorted(ENTITIES))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_written_form_of_a_listed_entity_is_flagged(kind: str, data: st.DataObject) -> None:
    case = data.draw(ENTITIES[kind])
    sources = [_from_bulletin(case)] + ([_from_watch_list(case)] if case.row is not None else [])
    for lookout in sources:
        index = LookoutIndex()
        index.add_bulletin(lookout)
        matches = index.check(case.query, NOW, country=case.office)
        assert [m.bulletin_id for m in matches] == [lookout.id], (case, lookout.entities)
