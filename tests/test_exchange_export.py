"""Export of bulletins to MISP and STIX 2.1: every demo sample bulletin gives a STIX bundle
OASIS's validator accepts and a MISP event PyMISP loads, whose entities and handling
come back; TLP:RED leaves only for its addressees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pymisp
import pytest
from pymisp import MISPEvent
from stix2validator import ValidationOptions, validate_string

from bus.bulletin import TLP_LABELS, Bulletin
from bus.errors import HandlingRefused
from office_node.exchange import mapping, misp, stix
from office_node.exchange.export import Exportable, export_many, export_one
from office_node.samples import sample_bulletins, sample_to_bulletin

NOW = 1_714_550_400_000


def _rng(n: int) -> bytes:
    return b"\x07" * n


def samples(releasable_to: list[str] | None = None) -> list[Bulletin]:
    return [
        sample_to_bulletin(s, now_ms=NOW + i, rng=_rng, releasable_to=releasable_to) for i, s in enumerate(sample_bulletins())
    ]


def every_entity_kind() -> Bulletin:
    """One bulletin with every entity type and every optional field, attachments, tags,
    expiry, a reply id: what the samples leave out."""
    return Bulletin.from_dict(
        {
            "id": "01HX0000000000000000000001", "from": "TH-MUK", "precedence": "FLASH", "kind": "lookout",
            "tlp": "AMBER", "releasable_to": ["TH", "LA"], "grading": "A1", "title": "ตามหาผู้ต้องสงสัย",
            "body": "line one\nline two", "created": NOW, "expires": NOW + 3_600_000,
            "in_reply_to": "01HX0000000000000000000000", "tags": ["bridge2", "ยาบ้า"],
            "entities": [
                {"type": "person", "name": "Somchai Jaidee", "aliases": ["สมชาย", "Chai"], "dob": "1979", "nationality": "TH",
                 "sex": "M", "note": "driver"},
                {"type": "person", "name": "Noy", "dob": "1990-02-03", "sex": "F"},
                {"type": "document", "doc_type": "id_card", "number": "1-1017-00123-45-6", "country": "TH", "status": "forged",
                 "expiry": "2030-01", "holder": "Somchai Jaidee", "note": "photo replaced"},
                {"type": "vehicle", "plate": "กข 1234", "country": "TH", "make": "Isuzu", "model": "D-Max", "colour": "white",
                 "vin": "MPATFS85JBT000001", "note": "false floor"},
                {"type": "vessel", "name": "Mekong Star", "imo": "9123456", "mmsi": "574123456", "flag": "LA"},
                {"type": "phone", "number": "+856 20 5555 1234", "note": "WhatsApp"},
                {"type": "organisation", "name": "Golden Triangle Logistics", "country": "LA", "note": "front company"},
                {"type": "location", "name": "Friendship Bridge 2", "country": "TH", "lat": 16.59, "lon": 104.73},
                {"type": "location", "name": "the old ferry pier"},
                {"type": "location", "name": "a sandbank", "lat": 17.1},
            ],
            "attachments": [{"name": "photo.jpg", "media_type": "image/jpeg", "size": 52311, "sha256": "ab" * 32,
                             "key": "cd" * 32, "nonce": "ef" * 16, "object": "01" * 16, "object_sha256": "23" * 32}],
        }
    )  # fmt: skip


def _shown(attachment: dict) -> dict:
    """What an export shows of an attachment: never its key, nonce or object (MAPPING.md)."""
    return {k: attachment[k] for k in ("name", "media_type", "size", "sha256")}


def all_bulletins() -> list[Bulletin]:
    out = [*samples(), every_entity_kind()]
    # Each sample at every TLP label but RED (RED is exported only for its addressees, below).
    for b in samples(["TH", "LA"]):
        out += [Bulletin.from_dict({**b.to_dict(), "tlp": label}) for label in TLP_LABELS if label != "RED"]
    return out


def validate(bundle: dict[str, Any]) -> Any:
    return validate_string(json.dumps(bundle), ValidationOptions(version="2.1"))


@pytest.mark.parametrize("index", range(len(all_bulletins())))
def test_every_sample_bulletin_exports_to_stix_the_oasis_validator_accepts_and_reads_back(index: int) -> None:
    b = all_bulletins()[index]
    bundle = stix.bundle_of([(b, None)])
    result = validate(bundle)
    assert result.is_valid, [str(e) for e in result.errors]
    assert not result.errors
    [src] = stix.sources_of(bundle)
    assert src.entities == [dict(e) for e in b.entities]
    assert src.attachments == [_shown(a) for a in b.attachments]
    assert (src.title, src.kind, src.precedence, src.releasable_to) == (b.title, b.kind, b.precedence, list(b.releasable_to))
    assert f"{src.reliability}{src.credibility}" == b.grading
    assert set(src.tlp_labels) == {b.tlp}
    assert src.bulletin_id == b.id
    assert (src.body_parts[:1] or [""])[0] == b.body


@pytest.mark.parametrize("index", range(len(all_bulletins())))
def test_every_sample_bulletin_exports_to_a_misp_event_pymisp_loads_with_its_entities(index: int) -> None:
    b = all_bulletins()[index]
    text = json.dumps(misp.event_json(b), ensure_ascii=False)
    loaded = MISPEvent()
    loaded.load(text)  # PyMISP's own loader
    assert loaded.info == b.title and str(loaded.uuid) == mapping.stable_uuid("bulletin", b.id)
    tags = {t.name for t in loaded.tags}
    assert mapping.MISP_TLP_TAG[b.tlp] in tags
    assert f'admiralty-scale:source-reliability="{b.grading[0].lower()}"' in tags
    assert f'admiralty-scale:information-credibility="{b.grading[1]}"' in tags
    assert len(loaded.objects) == len(b.entities) + len(b.attachments) + (1 if b.body else 0)
    [src] = misp.sources_of(json.loads(text))
    assert src.entities == [dict(e) for e in b.entities]
    assert src.attachments == [_shown(a) for a in b.attachments]
    assert (src.kind, src.precedence, src.releasable_to, src.tlp_labels) == (b.kind, b.precedence, list(b.releasable_to), [b.tlp])
    assert f"{src.reliability}{src.credibility}" == b.grading and src.bulletin_id == b.id
    assert src.body_parts[:1] == ([b.body] if b.body else [])


def test_misp_objects_are_misps_own_templates_and_pass_their_own_checks() -> None:
    ev = misp.event_of(every_entity_kind())
    names = [o.name for o in ev.objects]
    assert names == [
        "annotation", "person", "person", "ftm-Passport", "vehicle", "ftm-Vessel", "phone-number", "organization",
        "geolocation", "geolocation", "geolocation", "file",
    ]  # fmt: skip
    templates = Path(pymisp.__file__).parent / "data" / "misp-objects" / "objects"
    for obj in ev.objects:
        # every relation used is one MISP's template defines, and the template's own
        # rules (required, one-of, multiple) hold: PyMISP checks them on strict output
        template = json.loads((templates / obj.name / "definition.json").read_text(encoding="utf-8"))
        assert {a.object_relation for a in obj.attributes} <= set(template["attributes"]), obj.name
        obj.to_json(strict=True)
    person = ev.objects[1]
    assert {a.object_relation: a.value for a in person.attributes if a.object_relation != "alias"} == {
        "full-name": "Somchai Jaidee", "nationality": "TH", "gender": "Male", "text": "driver",
    }  # fmt: skip
    assert person.comment == 'blo-bus {"dob": "1979"}'  # a year alone is no MISP date-of-birth


def test_misp_handling_tags_and_levels_are_as_misp_writes_them() -> None:
    b = every_entity_kind()
    ev = misp.event_of(b)
    assert {t.name for t in ev.tags} == {
        "tlp:amber", 'admiralty-scale:source-reliability="a"', 'admiralty-scale:information-credibility="1"',
        'blo-bus:kind="lookout"', 'blo-bus:precedence="FLASH"', 'blo-bus:releasable-to="TH"', 'blo-bus:releasable-to="LA"',
        'blo-bus:tag="bridge2"', 'blo-bus:tag="ยาบ้า"',
    }  # fmt: skip
    assert (ev.threat_level_id, ev.distribution, ev.analysis) == (1, 0, 2)
    assert ev.Orgc.name == "TH-MUK"
    for label, tag in (("AMBER+STRICT", "tlp:amber+strict"), ("CLEAR", "tlp:clear"), ("GREEN", "tlp:green")):
        other = misp.event_of(Bulletin.from_dict({**b.to_dict(), "tlp": label}))
        assert tag in {t.name for t in other.tags}
        assert other.distribution == mapping.MISP_DISTRIBUTION_OF_TLP[label]


def test_stix_carries_tlp_2_as_the_published_marking_definitions() -> None:
    for label in TLP_LABELS:
        marking = json.loads(stix.tlp_marking(label).serialize())
        assert marking == {
            "type": "marking-definition", "spec_version": "2.1", "id": mapping.STIX_TLP2_MARKING[label],
            "created": "2022-10-01T00:00:00.000Z", "name": f"TLP:{label}",
            "extensions": {mapping.STIX_TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": label.lower()}},
        }  # fmt: skip
    bundle = stix.bundle_of([(every_entity_kind(), None)])
    report = next(o for o in bundle["objects"] if o["type"] == "report")
    assert mapping.STIX_TLP2_MARKING["AMBER"] in report["object_marking_refs"]
    assert report["confidence"] == 90  # credibility 1, STIX 2.1 Appendix A's Admiralty scale
    assert {o["type"] for o in bundle["objects"]} == {
        "identity", "extension-definition", "marking-definition", "location", "note", "observed-data", "blo-bus-document",
        "blo-bus-vehicle", "blo-bus-vessel", "blo-bus-phone", "blo-bus-location", "file", "report",
    }  # fmt: skip


def test_an_export_gives_the_same_ids_every_time() -> None:
    b = every_entity_kind()
    assert stix.bundle_of([(b, None)]) == stix.bundle_of([(b, None)])
    assert misp.event_json(b) == misp.event_json(b)


def _red(**changes: Any) -> Exportable:
    b = Bulletin.from_dict({**every_entity_kind().to_dict(), "tlp": "RED", **changes})
    return Exportable(b, ("LA-SVK",))


def test_tlp_red_is_refused_on_export_to_anyone_but_its_addressees() -> None:
    red = _red()
    for audience in ((), ("LA-TCCC",), ("LA-SVK", "LA-TCCC")):
        for fmt in ("misp", "stix"):
            with pytest.raises(HandlingRefused) as refused:
                export_one(red, fmt, audience=audience)
            assert refused.value.reason == "tlp_red_export"
            assert "TH-MUK, LA-SVK" in refused.value.message
    for audience in (("LA-SVK",), ("TH-MUK",), ("TH-MUK", "LA-SVK")):
        assert export_one(red, "stix", audience=audience)["type"] == "bundle"
        assert "Event" in export_one(red, "misp", audience=audience)


def test_an_export_for_named_offices_obeys_releasability() -> None:
    th_only = Exportable(Bulletin.from_dict({**every_entity_kind().to_dict(), "releasable_to": ["TH"]}), ("TH-NKP",))
    with pytest.raises(HandlingRefused) as refused:
        export_one(th_only, "misp", audience=("LA-SVK",))
    assert refused.value.reason == "not_releasable"
    assert export_one(th_only, "misp", audience=("TH-NKP",))


def test_a_range_export_withholds_red_and_exports_the_rest() -> None:
    items = [Exportable(b, ("LA-SVK",)) for b in samples()] + [_red()]
    document, withheld = export_many(items, "misp")
    assert [w["id"] for w in withheld] == [_red().bulletin.id] and withheld[0]["rule"] == "tlp_red_export"
    assert len(document["response"]) == len(samples())
    bundle, withheld = export_many(items, "stix")
    assert validate(bundle).is_valid and len(withheld) == 1
    assert len([o for o in bundle["objects"] if o["type"] == "report"]) == len(samples())
