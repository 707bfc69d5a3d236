"""Property tests hammering the importers (MISP JSON and STIX bundles, and the file
reader before them). One promise, whatever the input: a ``ValidationError`` naming what
is wrong, or proposals whose fields make a valid bulletin; never another exception
(no raw KeyError, TypeError, RecursionError, PyMISP or stix2 error)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus.bulletin import Bulletin
from bus.errors import ValidationError
from office_node.exchange import misp, stix
from office_node.exchange.importer import parse_document, proposals
from tests.test_exchange_export import every_entity_kind

DATA = Path(__file__).resolve().parent / "data"
NOW = 1_714_550_400_000
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MISP_DOC = misp.event_json(every_entity_kind())
STIX_DOC = stix.bundle_of([(every_entity_kind(), None)])
SEDNIT = json.loads((DATA / "pymisp" / "existing_event.json").read_text(encoding="utf-8"))

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True),
    st.text(max_size=40), st.sampled_from(["Event", "Object", "Attribute", "bundle", "report", "tlp:red", "person", "type"]),
)  # fmt: skip
_json = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=30
)


def _import(document: Any) -> None:
    """Import ``document``; the only allowed failure is a ValidationError with a message."""
    try:
        found = proposals(document, own_country="TH", network_countries=["TH", "LA"], now_ms=NOW)
    except ValidationError as exc:
        assert exc.message and len(exc.message) < 1000
        return
    for p in found:
        Bulletin.from_dict({**p.fields, "id": "01HX0000000000000000000001", "from": "TH-TCCC", "created": NOW})


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(doc)
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


@FUZZ
@given(_json)
def test_any_json_value_imports_or_gives_a_validation_error(value: Any) -> None:
    _import(value)
    _import({"Event": value})
    _import({"type": "bundle", "objects": value})
    _import({"response": [value]})


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_are_read_or_refused_with_a_validation_error(raw: bytes) -> None:
    try:
        _import(parse_document(raw))
    except ValidationError as exc:
        assert exc.message


def _mutations(doc: Any) -> st.SearchStrategy[Any]:
    paths = _paths(doc)
    return st.tuples(st.sampled_from(paths), _json).map(lambda pv: _replace(doc, pv[0], pv[1]))


@FUZZ
@given(_mutations(MISP_DOC))
def test_a_misp_event_with_any_one_value_replaced_imports_or_gives_a_validation_error(doc: Any) -> None:
    _import(doc)


@FUZZ
@given(_mutations(SEDNIT))
def test_misps_own_example_event_with_any_one_value_replaced_imports_or_gives_a_validation_error(doc: Any) -> None:
    _import(doc)


@FUZZ
@given(_mutations(STIX_DOC))
def test_a_stix_bundle_with_any_one_value_replaced_imports_or_gives_a_validation_error(doc: Any) -> None:
    _import(doc)


def test_deeply_nested_or_oversized_files_are_refused_by_name() -> None:
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    for raw, words in ((deep, "nested too deeply"), (b" " * (16 * 1024 * 1024 + 1), "at most 16 MiB"), (b"\xff\xfe", "UTF-8")):
        with pytest.raises(ValidationError) as refused:
            parse_document(raw)
        assert words in refused.value.message


def test_a_file_that_is_neither_misp_nor_stix_says_what_it_should_be() -> None:
    with pytest.raises(ValidationError) as refused:
        proposals({"hello": "world"}, own_country="TH", network_countries=["TH"], now_ms=NOW)
    assert "neither MISP JSON" in refused.value.message and "STIX 2.1 bundle" in refused.value.message


def _first_index(kind: str) -> int:
    return next(i for i, o in enumerate(STIX_DOC["objects"]) if o["type"] == kind)


def test_what_the_fuzzer_found_stays_fixed() -> None:
    report = _first_index("report")
    extension = next(iter(STIX_DOC["objects"][report]["extensions"]))
    for path, value in (
        (("objects", _first_index("blo-bus-location"), "extensions"), True),  # a custom SCO's extensions not an object
        (("objects", report, "extensions", extension, "releasable_to", 0), None),  # a null country in releasability
        (("objects", report, "extensions", extension, "expires"), float("inf")),
    ):
        _import(_replace(STIX_DOC, path, value))
