"""The exchange vocabulary (office_node/exchange/mapping.py) against its sources and
against schemas/MAPPING.md, so code and spec cannot drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import stix2

from bus.bulletin import ENTITY_TYPES, TLP_LABELS
from office_node.exchange import mapping, misp, stix

ROOT = Path(__file__).resolve().parent.parent
SPEC = (ROOT / "schemas" / "MAPPING.md").read_text(encoding="utf-8")


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


def test_without_the_exchange_extra_the_node_runs_and_export_names_the_extra() -> None:
    """bus/ and the node import without PyMISP and stix2; using exchange says what to install."""
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('pymisp', 'stix2', 'stix2validator'):
            raise ImportError('not installed: ' + name)
sys.meta_path.insert(0, Block())
import bus, office_node.node, office_node.api, office_node.cli, office_node.centre, office_node.exchange.service
from office_node.errors import ExchangeError, http_status
from office_node.exchange.export import Exportable, export_one
from tests.helpers import bulletin
for fmt in ('misp', 'stix'):
    try:
        export_one(Exportable(bulletin(), ()), fmt)
    except ExchangeError as exc:
        print(exc.reason, http_status(exc), exc.message)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("exchange_missing 503 ") for line in lines)
    assert "pip install 'blo-bus[exchange]'" in lines[0] and "pymisp" in lines[0] and "stix2" in lines[1]
