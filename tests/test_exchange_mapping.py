"""The exchange vocabulary (office_node/exchange/mapping.py) against its sources and
against schemas/MAPPING.md, so code and spec cannot drift."""

from __future__ import annotations

from pathlib import Path

import stix2

from bus.bulletin import ENTITY_TYPES, TLP_LABELS
from office_node.exchange import mapping, misp, stix

SPEC = (Path(__file__).resolve().parent.parent / "schemas" / "MAPPING.md").read_text(encoding="utf-8")


def test_stix_tlp_1_ids_are_the_stix2_librarys() -> None:
    assert mapping.STIX_TLP1_MARKING == {
        stix2.TLP_WHITE.id: "CLEAR", stix2.TLP_GREEN.id: "GREEN", stix2.TLP_AMBER.id: "AMBER", stix2.TLP_RED.id: "RED",
    }  # fmt: skip


def test_the_spec_names_every_tag_marking_and_template_the_code_writes() -> None:
    for label in TLP_LABELS:
        assert f"`{mapping.MISP_TLP_TAG[label]}`" in SPEC
        assert mapping.STIX_TLP2_MARKING[label].split("--")[1] in SPEC
    assert str(mapping.NAMESPACE) in SPEC and mapping.STIX_TLP2_EXTENSION in SPEC
    for kind in ENTITY_TYPES:
        assert f"| {kind} | `{_template(kind)}`" in SPEC, kind
        assert f"| `{misp.EXPORTERS[kind][1]}` |" in SPEC, kind
    for sco in stix.SCO_TYPES.values():
        assert f"`{sco}`" in SPEC


def _template(kind: str) -> str:
    sample = {
        "person": {"name": "x"}, "document": {"doc_type": "passport", "number": "1"}, "vehicle": {"plate": "1"},
        "vessel": {"name": "x"}, "phone": {"number": "123"}, "organisation": {"name": "x"}, "location": {"name": "x"},
    }[kind]  # fmt: skip
    return misp.EXPORTERS[kind][0](sample)[0]


def test_admiralty_and_precedence_tables() -> None:
    assert mapping.admiralty_tags("B2") == ('admiralty-scale:source-reliability="b"', 'admiralty-scale:information-credibility="2"')
    assert mapping.parse_machine_tag('admiralty-scale:source-reliability="b"') == ("admiralty-scale", "source-reliability", "b")
    assert mapping.parse_machine_tag("tlp:amber+strict") == ("tlp", "amber+strict", None)
    assert mapping.parse_machine_tag("plain") is None
    assert {mapping.PRECEDENCE_OF_THREAT_LEVEL[mapping.MISP_THREAT_LEVEL[p]] for p in ("PRIORITY", "ROUTINE")} == {"PRIORITY", "ROUTINE"}
    assert "FLASH" not in mapping.PRECEDENCE_OF_THREAT_LEVEL.values()
    assert mapping.ms_of_time("2024-05-01T08:00:00.000Z") == 1_714_550_400_000 == mapping.ms_of_time("1714550400")
    assert mapping.ms_of_time(float("nan")) is None and mapping.ms_of_time("not a time") is None
    assert mapping.iso_of_ms(1_714_550_400_007) == "2024-05-01T08:00:00.007Z"
