"""Import of MISP events and STIX bundles as draft proposals: MISP's own example events
(PyMISP's test data), an event made of MISP's object templates, a bundle from MISP's
own STIX converter; the handling each draft gets from its source (X4-X7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pymisp import MISPEvent, MISPObject

from bus.bulletin import Bulletin
from bus.errors import HandlingRefused
from office_node.exchange.handling import Derived, check_draft_send, derive
from office_node.exchange.importer import parse_document, proposals
from office_node.exchange.source import Source

DATA = Path(__file__).resolve().parent / "data"
NOW = 1_714_550_400_000
NETWORK = ("KH", "LA", "TH")


def imported(path: Path | str | bytes, **kw: Any) -> list[Any]:
    raw = path if isinstance(path, bytes) else Path(path).read_bytes()
    return proposals(parse_document(raw), own_country="TH", network_countries=NETWORK, now_ms=NOW, **kw)


def test_pymisps_sednit_event_becomes_a_draft_naming_the_threat_actor() -> None:
    [p] = imported(DATA / "pymisp" / "existing_event.json")
    f = p.fields
    assert f["title"] == "OSINT - Sednit update: How Fancy Bear Spent the Year"
    assert f["entities"] == [
        {"type": "organisation", "name": "Sofacy", "country": "RU", "note": p.fields["entities"][0]["note"]}
    ]
    assert "also known as APT 28, APT28, Pawn Storm, Fancy Bear" in f["entities"][0]["note"]
    # tlp:white is TLP 1.0's CLEAR; distribution 3 (all communities): the whole network (X4, X5)
    assert (f["tlp"], f["releasable_to"]) == ("CLEAR", ["KH", "LA", "TH"])
    assert f["grading"] == "F6" and f["kind"] == "alert" and f["precedence"] == "ROUTINE"
    # what no entity holds stays readable: the analysis text, the galaxies, the indicators
    assert "The Sednit group" in f["body"]
    assert "MISP galaxy Tool: GAMEFISH, X-Tunnel, EVILTOSS, X-Agent" in f["body"]
    assert "- domain-ip/domain: " in f["body"] and "Imported from MISP event misp:5a3c2fcd-8328-42bb-a95e-4f4402de0b81@" in f["body"]
    assert 'workflow:state="incomplete"' in f["tags"]
    Bulletin.from_dict({**f, "id": "01HX0000000000000000000001", "from": "TH-TCCC", "created": NOW})


def test_pymisps_japanese_event_keeps_its_script_and_its_intrusion_set() -> None:
    [p] = imported(DATA / "pymisp" / "japanese_test.json")
    assert [e["name"] for e in p.fields["entities"]] == ["APT32 - G0050"]
    assert p.fields["entities"][0]["type"] == "organisation"
    assert any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in p.fields["title"] + p.fields["body"])


@pytest.mark.parametrize(
    ("name", "tlp", "releasable"),
    [
        ("misp_event.json", "AMBER+STRICT", ["TH"]),  # no label, distribution 0: at least AMBER+STRICT (X4)
        ("new_misp_event.json", "AMBER+STRICT", ["TH"]),
        ("sighting_2.json", "AMBER", ["TH"]),  # no label, this community only
        ("57c4445b-c548-4654-af0b-4be3950d210f.json", "CLEAR", ["TH"]),  # tlp:white, but distribution 1
    ],
)
def test_pymisps_example_events_get_the_handling_their_labels_and_distribution_allow(name: str, tlp: str, releasable: list[str]) -> None:
    [p] = imported(DATA / "pymisp" / name)
    assert (p.fields["tlp"], p.fields["releasable_to"]) == (tlp, releasable)
    assert p.derived.reasons


def _misp_objects_event() -> MISPEvent:
    """An event built from MISP's own object templates (PyMISP ships them)."""
    ev = MISPEvent()
    ev.info = "Trafficking network: courier and vehicle"
    ev.distribution = 2
    ev.add_tag("tlp:green")
    ev.add_tag('admiralty-scale:source-reliability="c"')
    ev.add_tag('admiralty-scale:information-credibility="2"')
    person = MISPObject("person")
    for relation, value in (
        ("first-name", "Bounmy"), ("last-name", "Keosavang"), ("alias", "Mee"), ("date-of-birth", "1988-11-02"),
        ("nationality", "LA"), ("gender", "Male"), ("passport-number", "P1234567"), ("passport-country", "LA"),
        ("passport-expiration", "2029-05-01"), ("phone-number", "+856 20 1234 5678"),
    ):  # fmt: skip
        person.add_attribute(relation, value=value)
    ev.add_object(person)
    vehicle = MISPObject("vehicle")
    for relation, value in (("license-plate-number", "ກຂ 4321"), ("make", "Toyota"), ("exterior-color", "grey")):
        vehicle.add_attribute(relation, value=value)
    ev.add_object(vehicle)
    phone = MISPObject("phone-number")
    phone.add_attribute("phone-number", value="+66 81 234 5678")
    ev.add_object(phone)
    place = MISPObject("geolocation")
    for relation, value in (("address", "Thakhek pier"), ("countrycode", "LA"), ("latitude", "17.41"), ("longitude", "104.83")):
        place.add_attribute(relation, value=value)
    ev.add_object(place)
    notice = MISPObject("interpol-notice")
    for relation, value in (("forename", "Kham"), ("present-family-name", "Sisouk"), ("notice-color", "Red"), ("sex", "Male")):
        notice.add_attribute(relation, value=value)
    ev.add_object(notice)
    ev.add_attribute("ip-dst", "198.51.100.7")
    return ev


def test_an_event_of_misps_person_vehicle_phone_and_place_templates_yields_those_entities() -> None:
    [p] = imported(_misp_objects_event().to_json().encode())
    assert p.fields["entities"] == [
        {"type": "person", "name": "Bounmy Keosavang", "aliases": ("Mee",), "dob": "1988-11-02", "nationality": "LA", "sex": "M"},
        {"type": "document", "doc_type": "passport", "number": "P1234567", "country": "LA", "expiry": "2029-05-01",
         "holder": "Bounmy Keosavang"},
        {"type": "phone", "number": "+856 20 1234 5678", "note": "phone of Bounmy Keosavang"},
        {"type": "vehicle", "plate": "ກຂ 4321", "make": "Toyota", "colour": "grey"},
        {"type": "phone", "number": "+66 81 234 5678"},
        {"type": "location", "name": "Thakhek pier", "country": "LA", "lat": 17.41, "lon": 104.83},
        {"type": "person", "name": "Kham Sisouk", "sex": "M", "note": "INTERPOL Red notice"},
    ]  # fmt: skip
    assert (p.fields["tlp"], p.fields["releasable_to"], p.fields["grading"]) == ("GREEN", ["KH", "LA", "TH"], "C2")
    assert "- ip-dst: 198.51.100.7" in p.fields["body"]


def test_a_bundle_from_misps_stix_converter_gives_one_draft_per_grouping() -> None:
    found = imported(DATA / "misp-stix" / "test_event1_stix21.json")
    assert [p.fields["title"] for p in found] == [
        "MISP-STIX-Converter test event with AS attribute",
        "MISP-STIX-Converter test event with domain attribute",
    ]
    assert "- autonomous-system: 174" in found[0].fields["body"]
    assert "- domain-name: circl.lu" in found[1].fields["body"]
    assert all(p.fields["entities"] == [] and p.fields["tlp"] == "AMBER" for p in found)  # no marking: AMBER (X4)


def test_a_stix_bundle_of_persons_places_and_tlp_2_markings_yields_those_entities() -> None:
    bundle = {
        "type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
        "objects": [
            {"type": "identity", "spec_version": "2.1", "id": "identity--023d105b-752e-4e3c-941c-7d3f3cb15e9e",
             "created": "2024-04-01T00:00:00.000Z", "modified": "2024-04-01T00:00:00.000Z", "name": "Partner agency",
             "identity_class": "organization"},
            {"type": "identity", "spec_version": "2.1", "id": "identity--a463ffb3-1bd9-4d94-b02d-74e4f1658283",
             "created": "2024-04-01T00:00:00.000Z", "modified": "2024-04-01T00:00:00.000Z", "name": "Chanthy Sok",
             "identity_class": "individual", "object_marking_refs": ["marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"]},
            {"type": "location", "spec_version": "2.1", "id": "location--a6e9345f-5a15-4c29-8bb3-7dcc5d168d64",
             "created": "2024-04-01T00:00:00.000Z", "modified": "2024-04-01T00:00:00.000Z", "name": "Poipet",
             "country": "KH", "latitude": 13.65, "longitude": 102.56},
            {"type": "note", "spec_version": "2.1", "id": "note--0c7b5b88-8ff7-4a4d-aa9d-feb398cd0061",
             "created": "2024-04-01T00:00:00.000Z", "modified": "2024-04-01T00:00:00.000Z",
             "content": "crosses weekly", "object_refs": ["identity--a463ffb3-1bd9-4d94-b02d-74e4f1658283"]},
            {"type": "report", "spec_version": "2.1", "id": "report--84e4d88f-44ea-4bcd-bbf3-b2c1c320bcb3",
             "created": "2024-04-01T00:00:00.000Z", "modified": "2024-04-01T00:00:00.000Z", "name": "Courier at Poipet",
             "description": "A courier crosses at Poipet.", "published": "2024-04-01T00:00:00Z", "confidence": 70,
             "created_by_ref": "identity--023d105b-752e-4e3c-941c-7d3f3cb15e9e",
             "object_marking_refs": ["marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"],
             "object_refs": ["identity--a463ffb3-1bd9-4d94-b02d-74e4f1658283", "location--a6e9345f-5a15-4c29-8bb3-7dcc5d168d64"]},
        ],
    }  # fmt: skip
    [p] = imported(json.dumps(bundle).encode())
    assert p.fields["entities"] == [
        {"type": "person", "name": "Chanthy Sok", "note": "crosses weekly"},
        {"type": "location", "name": "Poipet", "country": "KH", "lat": 13.65, "lon": 102.56},
    ]
    # GREEN on the report, AMBER on the person: the strictest wins (X4); AMBER: own country only (X5)
    assert (p.fields["tlp"], p.fields["releasable_to"], p.fields["grading"]) == ("AMBER", ["TH"], "F2")
    assert "by Partner agency" in p.fields["body"]


def _source(**kw: Any) -> Source:
    return Source(**{"format": "misp", "ref": "misp:x@1", "title": "t", **kw})


def test_derived_handling_follows_the_rules_x4_to_x6() -> None:
    d = derive(_source(), own_country="TH", network_countries=NETWORK)
    assert (d.tlp, d.releasable_to, d.local_only) == ("AMBER", ("TH",), False)
    d = derive(_source(tlp_labels=["GREEN", "AMBER", "CLEAR"]), own_country="TH", network_countries=NETWORK)
    assert d.tlp == "AMBER"
    d = derive(_source(tlp_labels=["GREEN"], distribution=3), own_country="TH", network_countries=NETWORK)
    assert d.releasable_to == NETWORK
    d = derive(_source(tlp_labels=["GREEN"], distribution=1), own_country="TH", network_countries=NETWORK)
    assert d.releasable_to == ("TH",)
    d = derive(_source(tlp_labels=["CLEAR"], distribution=0), own_country="TH", network_countries=NETWORK)
    assert (d.tlp, d.releasable_to) == ("AMBER+STRICT", ("TH",))
    d = derive(_source(tlp_labels=["AMBER"], releasable_to=["TH", "LA"]), own_country="TH", network_countries=NETWORK)
    assert d.releasable_to == ("TH", "LA")
    d = derive(_source(tlp_labels=["RED"], distribution=3), own_country="TH", network_countries=NETWORK)
    assert (d.tlp, d.local_only) == ("RED", True)


def _bulletin(**kw: Any) -> Bulletin:
    base = {
        "id": "01HX0000000000000000000001", "from": "TH-TCCC", "precedence": "ROUTINE", "kind": "alert", "tlp": "AMBER",
        "releasable_to": ["TH"], "grading": "F6", "title": "t", "body": "", "created": NOW,
    }  # fmt: skip
    return Bulletin.from_dict({**base, **kw})


def test_a_draft_from_a_red_source_never_leaves_and_none_goes_looser_than_its_source() -> None:
    red = Derived("RED", ("TH",), True, ())
    with pytest.raises(HandlingRefused) as refused:
        check_draft_send(red, _bulletin(tlp="RED"), source="misp:x@1")
    assert refused.value.reason == "tlp_red_import"
    amber = Derived("AMBER", ("TH", "LA"), False, ())
    with pytest.raises(HandlingRefused) as refused:
        check_draft_send(amber, _bulletin(tlp="GREEN"), source="misp:x@1")
    assert refused.value.reason == "tlp_loosened"
    with pytest.raises(HandlingRefused) as refused:
        check_draft_send(amber, _bulletin(releasable_to=["TH", "KH"]), source="misp:x@1")
    assert refused.value.reason == "releasability_widened" and "KH" in refused.value.message
    check_draft_send(amber, _bulletin(tlp="AMBER+STRICT", releasable_to=["LA"]), source="misp:x@1")


def test_a_red_misp_event_becomes_a_local_only_draft() -> None:
    ev = _misp_objects_event()
    ev.tags = []
    ev.add_tag("tlp:red")
    [p] = imported(ev.to_json().encode())
    assert p.derived.local_only and p.fields["tlp"] == "RED"
