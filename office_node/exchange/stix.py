"""Bulletins as STIX 2.1 bundles, and STIX bundles as import sources, with the stix2 library.

A bulletin is a ``report`` (title, body, kind as label, credibility as confidence, TLP
2.0 and releasability markings) whose ``object_refs`` are its entities: persons and
organisations as ``identity``, places as ``location``, documents, vehicles, vessels and
phones as SCOs of BLO Bus's extension (STIX has none) under one ``observed-data``, with
attachments as ``file`` SCOs beside them; an entity's note is a ``note`` on it. What
STIX has no property for travels in BLO Bus's property extension (one
``extension-definition`` in every bundle). ``schemas/MAPPING.md`` has the tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bus import ENTITY_FIELDS, KINDS, PRECEDENCES, Bulletin
from bus.errors import ValidationError
from office_node.exchange import require
from office_node.exchange.mapping import (
    ADMIRALTY_CREDIBILITY_NAMES,
    STIX_TLP2_CREATED,
    STIX_TLP2_EXTENSION,
    STIX_TLP2_MARKING,
    TLP_OF_STIX_MARKING,
    iso_of_ms,
    ms_of_time,
    stable_uuid,
)
from office_node.exchange.source import Source, country_code, partial_date, short_text

stix2 = require("stix2")
scales = require("stix2.confidence.scales")

#: When BLO Bus's own STIX objects (its identity, extension, office identities) were
#: first written: fixed, so every export gives them the same content under the same id.
BLO_EPOCH = "2024-01-01T00:00:00.000Z"
BLO_IDENTITY = f"identity--{stable_uuid('system', 'blo-bus')}"
EXTENSION = f"extension-definition--{stable_uuid('extension', 'blo-bus', 1)}"
#: entity type -> the SCO type of BLO Bus's extension that carries it.
SCO_TYPES = {"document": "blo-bus-document", "vehicle": "blo-bus-vehicle", "vessel": "blo-bus-vessel", "phone": "blo-bus-phone"}
ENTITY_OF_SCO = {sco: entity for entity, sco in SCO_TYPES.items()}
#: A location without a country or both coordinates cannot be a STIX ``location``.
PLACE_SCO = "blo-bus-location"


def _ext(**fields: Any) -> dict[str, Any]:
    return {EXTENSION: {"extension_type": "property-extension", **{k: v for k, v in fields.items() if v not in (None, [], ())}}}


def _sco(kind: str, key: tuple[Any, ...], fields: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": kind,
        "spec_version": "2.1",
        "id": f"{kind}--{stable_uuid(*key)}",
        **fields,
        "extensions": {EXTENSION: {"extension_type": "new-sco"}},
    }


def _common_objects() -> list[Any]:
    """BLO Bus's identity and its extension definition: in every bundle, always the same."""
    system = stix2.Identity(id=BLO_IDENTITY, name="BLO Bus", identity_class="system", created=BLO_EPOCH, modified=BLO_EPOCH)
    extension = stix2.ExtensionDefinition(
        id=EXTENSION,
        created_by_ref=BLO_IDENTITY,
        created=BLO_EPOCH,
        modified=BLO_EPOCH,
        name="BLO Bus bulletin",
        description="The fields of a BLO Bus bulletin and its entities that STIX 2.1 has no property or object for: "
        "precedence, Admiralty grading, releasability, kind, tags, expiry, replies, forward provenance; persons' and "
        "organisations' details; documents, vehicles, vessels and phones as new SCOs.",
        schema="BLO Bus schemas/MAPPING.md, section STIX 2.1 (plain text): the property extension on report, identity "
        "and location, and the SCO types blo-bus-document, blo-bus-vehicle, blo-bus-vessel, blo-bus-phone and "
        "blo-bus-location, each with the fields of the entity of that type in schemas/bulletin.schema.json.",
        version="1.0.0",
        extension_types=["property-extension", "new-sco"],
    )
    return [system, extension]


def tlp_marking(label: str) -> Any:
    """The TLP 2.0 marking definition of ``label``, exactly as FIRST and OASIS published it."""
    return stix2.MarkingDefinition(
        id=STIX_TLP2_MARKING[label],
        created=STIX_TLP2_CREATED,
        name=f"TLP:{label}",
        extensions={STIX_TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": label.lower()}},
    )


def releasability_marking(countries: Sequence[str]) -> Any:
    listed = ", ".join(countries)
    return stix2.MarkingDefinition(
        id=f"marking-definition--{stable_uuid('releasable-to', listed)}",
        created=BLO_EPOCH,
        created_by_ref=BLO_IDENTITY,
        name=f"Releasable to {listed}",
        definition_type="statement",
        definition=stix2.StatementMarking(f"Releasable to {listed} only (BLO Bus releasability: the countries whose offices it may reach)"),
    )


def _office(office: str) -> Any:
    return stix2.Identity(
        id=f"identity--{stable_uuid('office', office)}", name=office, identity_class="organization",
        created=BLO_EPOCH, modified=BLO_EPOCH, created_by_ref=BLO_IDENTITY,
    )  # fmt: skip


def objects_of(bulletin: Bulletin, *, provenance: Mapping[str, Any] | None = None) -> list[Any]:
    """The STIX objects of one bulletin (without the common ones of ``_common_objects``)."""
    b = bulletin
    key = ("bulletin", b.id)
    when = iso_of_ms(b.created)
    sender = _office(b.sender)
    markings = [tlp_marking(b.tlp), releasability_marking(b.releasable_to)]
    marked = {"created_by_ref": sender.id, "object_marking_refs": [m.id for m in markings], "created": when, "modified": when}
    out: list[Any] = [*markings, sender]
    refs: list[str] = []
    scos: list[dict[str, Any]] = []
    for i, e in enumerate(b.entities):
        ekey = (*key, "entity", i)
        fields = {k: v for k, v in e.items() if k not in ("type", "note")}
        kind = e["type"]
        if kind in ("person", "organisation"):
            extra = {k: v for k, v in fields.items() if k != "name"}
            obj = stix2.Identity(
                id=f"identity--{stable_uuid(*ekey)}", name=e["name"],
                identity_class="individual" if kind == "person" else "organization",
                extensions=_ext(**extra) if extra else None, **marked,
            )  # fmt: skip
        elif kind == "location" and ("country" in e or ("lat" in e and "lon" in e)):
            both = "lat" in e and "lon" in e  # STIX takes a latitude only with a longitude
            lone = {} if both else {k: e[k] for k in ("lat", "lon") if k in e}
            obj = stix2.Location(
                id=f"location--{stable_uuid(*ekey)}", name=e["name"], country=e.get("country"),
                latitude=e["lat"] if both else None, longitude=e["lon"] if both else None,
                extensions=_ext(**lone) if lone else None, **marked,
            )  # fmt: skip
        else:
            scos.append(_sco(SCO_TYPES.get(kind, PLACE_SCO), ekey, fields))
            obj = None
        if obj is not None:
            out.append(obj)
        # The report refers to every entity, SCOs too, in the bulletin's order: the order
        # comes back on import.
        target = obj.id if obj is not None else scos[-1]["id"]
        refs.append(target)
        if e.get("note"):
            note = stix2.Note(
                id=f"note--{stable_uuid(*ekey, 'note')}", content=e["note"], object_refs=[target], allow_custom=True, **marked
            )
            out.append(note)
            refs.append(note.id)
    for i, a in enumerate(b.attachments):
        scos.append(
            {"type": "file", "spec_version": "2.1", "id": f"file--{stable_uuid(*key, 'attachment', i)}",
             "name": a["name"], "size": a["size"], "hashes": {"SHA-256": a["sha256"]}, "mime_type": a["media_type"]}
        )  # fmt: skip
    if scos:
        observed = stix2.ObservedData(
            id=f"observed-data--{stable_uuid(*key, 'observed')}", first_observed=when, last_observed=when,
            number_observed=1, object_refs=[s["id"] for s in scos], allow_custom=True, **marked,
        )  # fmt: skip
        out += [*scos, observed]
        refs.append(observed.id)
    forwarded = b.forwarded
    report = stix2.Report(
        id=f"report--{stable_uuid(*key)}",
        name=b.title,
        description=b.body or None,
        published=when,
        report_types=["threat-report"],
        labels=[b.kind],
        confidence=_confidence(b.grading[1]),
        object_refs=refs or [sender.id],
        extensions=_ext(
            bulletin_id=b.id, kind=b.kind, precedence=b.precedence, grading=b.grading, tlp=b.tlp,
            releasable_to=list(b.releasable_to), tags=list(b.tags),
            expires=iso_of_ms(b.expires) if b.expires is not None else None, in_reply_to=b.in_reply_to,
            forwarded_sender=forwarded.sender if forwarded else None,
            forwarded_id=(provenance or {}).get("original_id") if forwarded else None,
            redacted=list(forwarded.redacted) if forwarded else None,
        ),
        allow_custom=True,
        **marked,
    )  # fmt: skip
    out.append(report)
    return out


def _confidence(credibility: str) -> int | None:
    if credibility == "6":
        return None  # "truth cannot be judged" has no STIX confidence value (STIX 2.1 Appendix A)
    return int(scales.admiralty_credibility_to_value(ADMIRALTY_CREDIBILITY_NAMES[credibility]))


def bundle_of(items: Iterable[tuple[Bulletin, Mapping[str, Any] | None]]) -> dict[str, Any]:
    """One STIX 2.1 bundle of every ``(bulletin, provenance)``: each object once."""
    objects: dict[str, Any] = {o.id: o for o in _common_objects()}
    ids = []
    for bulletin, provenance in items:
        ids.append(bulletin.id)
        for obj in objects_of(bulletin, provenance=provenance):
            objects.setdefault(obj["id"], obj)
    bundle = stix2.Bundle(
        id=f"bundle--{stable_uuid('bundle', *ids)}", objects=list(objects.values()), allow_custom=True
    )
    return json.loads(bundle.serialize())


# -- import ------------------------------------------------------------------------------


def is_bundle(document: Any) -> bool:
    return isinstance(document, Mapping) and document.get("type") == "bundle"


def sources_of(document: Any) -> list[Source]:
    """One ``Source`` per ``report`` or ``grouping`` of a STIX 2.1 bundle (its referenced
    objects), or one for the whole bundle when it has neither. ``ValidationError`` if it does not parse."""
    if not is_bundle(document):
        raise ValidationError("type", 'not a STIX bundle: expected {"type": "bundle", "objects": [...]}')
    try:
        bundle = stix2.parse(dict(document), allow_custom=True, version="2.1")
    except RecursionError:
        raise ValidationError("objects", "the bundle is nested too deeply") from None
    except Exception as exc:  # stix2 refuses malformed content with many exception types
        raise ValidationError("objects", f"the STIX bundle does not parse: {type(exc).__name__}: {exc}"[:300]) from None
    objects = [o for o in bundle.get("objects", ()) if isinstance(o, Mapping) and isinstance(o.get("id"), str)]
    by_id = {o["id"]: o for o in objects}
    # A report, or a grouping (MISP's own STIX export writes an event as one), is one draft.
    reports = [o for o in objects if o.get("type") in ("report", "grouping")]
    if not reports:
        return [_source(bundle.get("id", "bundle"), None, objects, by_id)]
    return [_source(r["id"], r, _scope(r, objects, by_id), by_id) for r in reports]


def _scope(report: Mapping[str, Any], objects: list[Any], by_id: Mapping[str, Any]) -> list[Any]:
    """The objects a report refers to, and what those refer to in turn (observed-data's
    SCOs), and the notes on any of them."""
    seen: dict[str, Any] = {}
    todo = _refs(report)
    while todo:  # breadth first, in the report's order
        ref = todo.pop(0)
        if ref in seen or ref not in by_id or by_id[ref].get("type") in ("report", "grouping"):
            continue
        seen[ref] = by_id[ref]
        todo.extend(_refs(by_id[ref]))
    for o in objects:
        if o.get("type") == "note" and o["id"] not in seen and any(r in seen or r == report["id"] for r in _refs(o)):
            seen[o["id"]] = o
    return list(seen.values())


# Custom objects and extensions are plain dicts that stix2 does not check: read them
# through these, which give an empty value for anything of the wrong type.


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _refs(obj: Mapping[str, Any]) -> list[str]:
    return [r for r in _list(obj.get("object_refs")) if isinstance(r, str)]


def _extension(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _map(_map(obj.get("extensions")).get(EXTENSION))


def _tlp_of(marking: Mapping[str, Any]) -> str | None:
    if marking["id"] in TLP_OF_STIX_MARKING:
        return TLP_OF_STIX_MARKING[marking["id"]]
    tlp2 = _map(_map(marking.get("extensions")).get(STIX_TLP2_EXTENSION)).get("tlp_2_0")
    if isinstance(tlp2, str) and tlp2.upper() in STIX_TLP2_MARKING:
        return tlp2.upper()
    if marking.get("definition_type") == "tlp":
        value = _map(marking.get("definition")).get("tlp")
        return {"WHITE": "CLEAR"}.get(str(value).upper(), str(value).upper()) if value else None
    return None


def _source(ref: str, report: Mapping[str, Any] | None, scope: list[Any], by_id: Mapping[str, Any]) -> Source:
    title = short_text(report.get("name"), 300) if report else None
    modified = (report or {}).get("modified") or ""
    src = Source("stix", f"stix:{ref}@{modified}", title or f"STIX bundle {ref}")
    for obj in [report, *scope] if report else scope:
        for mid in _list(obj.get("object_marking_refs")) if obj else ():
            if not isinstance(mid, str):
                continue
            label = TLP_OF_STIX_MARKING.get(mid) or (_tlp_of(by_id[mid]) if mid in by_id else None)
            if label:
                src.tlp_labels.append(label)
    if report is not None:
        _report(src, report, by_id)
    notes_on: dict[str, list[str]] = {}
    for obj in scope:
        if obj.get("type") == "note":
            content = str(obj.get("content", ""))
            targets = [r for r in _refs(obj) if r != (report or {}).get("id")]
            if len(targets) == 1:
                notes_on.setdefault(targets[0], []).append(content)
            else:
                src.body_parts.append(content)
    for obj in scope:
        _object(src, obj, "; ".join(notes_on.get(obj["id"], ()))[:1000] or None)
    return src


def _report(src: Source, report: Mapping[str, Any], by_id: Mapping[str, Any]) -> None:
    src.created_ms = ms_of_time(str(report.get("published") or report.get("created") or ""))
    creator = by_id.get(str(report.get("created_by_ref", "")))
    src.creator = short_text(creator.get("name"), 200) if creator else None
    if report.get("description"):
        src.body_parts.append(str(report["description"]))
    confidence = report.get("confidence")
    if isinstance(confidence, int) and not isinstance(confidence, bool) and 0 <= confidence <= 100:
        src.credibility = str(scales.value_to_admiralty_credibility(confidence))[0]
    labels = [str(label) for label in _list(report.get("labels"))]
    src.kind = next((label for label in labels if label in KINDS), None)
    src.tags += [label for label in labels if label not in KINDS]
    ext = _extension(report)
    if ext:
        grading = ext.get("grading")
        if isinstance(grading, str) and len(grading) == 2:
            src.reliability, src.credibility = grading[0], grading[1]
        src.kind = ext.get("kind") if ext.get("kind") in KINDS else src.kind
        src.precedence = ext.get("precedence") if ext.get("precedence") in PRECEDENCES else None
        countries = ext.get("releasable_to")
        if isinstance(countries, list) and countries and all(isinstance(c, str) and country_code(c) == c for c in countries):
            src.releasable_to = list(countries)
        src.tags += [t for t in _list(ext.get("tags")) if isinstance(t, str)]
        src.expires_ms = ms_of_time(ext.get("expires"))
        src.in_reply_to = ext.get("in_reply_to") if isinstance(ext.get("in_reply_to"), str) else None
        src.bulletin_id = ext.get("bulletin_id") if isinstance(ext.get("bulletin_id"), str) else None
        if isinstance(ext.get("forwarded_sender"), str):
            src.body_parts.append(f"Forward provenance (sender): {ext['forwarded_sender']}")


def _entity_fields(kind: str, obj: Mapping[str, Any], ext: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``kind`` found on ``obj`` or in its extension, by the entity's own names."""
    return {name: ext.get(name, obj.get(name)) for name in ENTITY_FIELDS[kind]}


def _object(src: Source, obj: Mapping[str, Any], note: str | None) -> None:
    kind, ext, where = obj.get("type"), _extension(obj), f"{obj.get('type')} {obj.get('id')}"
    if kind == "identity" and obj.get("created_by_ref") == BLO_IDENTITY:
        return  # an office of BLO Bus (a report's author), not an entity
    if kind == "identity":
        identity_class = obj.get("identity_class")
        if identity_class == "individual":
            fields = _entity_fields("person", obj, ext)
            fields["dob"] = partial_date(fields.get("dob"))
            fields["aliases"] = [a for a in _list(fields.get("aliases")) if isinstance(a, str)][:20] or None
            src.add_entity({**fields, "type": "person", "note": note}, where)
        elif identity_class in ("organization", "group"):
            src.add_entity({**_entity_fields("organisation", obj, ext), "type": "organisation", "note": note}, where)
    elif kind in ("threat-actor", "intrusion-set"):
        aliases = ", ".join(str(a) for a in _list(obj.get("aliases"))[:20])
        text = f"{kind} (STIX)" + (f"; also known as {aliases}" if aliases else "") + (f"; {note}" if note else "")
        src.add_entity({"type": "organisation", "name": short_text(obj.get("name"), 200), "note": text[:1000]}, where)
    elif kind == "location":
        name = short_text(obj.get("name") or obj.get("city") or obj.get("region") or obj.get("country"), 200)
        location = {
            "type": "location", "name": name, "country": country_code(obj.get("country")),
            "lat": obj.get("latitude", ext.get("lat")), "lon": obj.get("longitude", ext.get("lon")), "note": note,
        }  # fmt: skip
        src.add_entity(location, where)
    elif kind in ENTITY_OF_SCO or kind == PLACE_SCO:
        entity_type = ENTITY_OF_SCO.get(kind, "location")
        src.add_entity({**_entity_fields(entity_type, obj, {}), "type": entity_type, "note": note}, where)
    elif kind == "file":
        hashes = _map(obj.get("hashes"))
        sha256, name, size = hashes.get("SHA-256"), obj.get("name"), obj.get("size")
        if isinstance(sha256, str) and isinstance(name, str) and isinstance(size, int) and not isinstance(size, bool):
            media_type = obj.get("mime_type") if isinstance(obj.get("mime_type"), str) else "application/octet-stream"
            src.attachments.append({"name": name[:255], "media_type": media_type.lower(), "size": size, "sha256": sha256.lower()})
        else:
            src.add_indicator("file", name or sha256 or obj.get("id"))
    elif kind in ("ipv4-addr", "ipv6-addr", "domain-name", "url", "email-addr", "mac-addr", "autonomous-system"):
        src.add_indicator(kind, obj.get("value", obj.get("number")))
    elif kind == "indicator":
        src.add_indicator("indicator", obj.get("pattern"))
    elif kind in ("malware", "tool", "attack-pattern", "campaign", "vulnerability"):
        src.add_indicator(kind, obj.get("name"))
