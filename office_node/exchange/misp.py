"""Bulletins as MISP events, and MISP events as import sources, with PyMISP.

``event_of`` builds a ``pymisp.MISPEvent`` from a bulletin: one MISP object per entity,
from MISP's own object templates (PyMISP ships them), the handling labels as MISP's
``tlp`` and ``admiralty-scale`` taxonomy tags plus ``blo-bus:`` tags for what no
taxonomy says. ``sources_of`` reads MISP JSON (one event, a list, or a REST search
answer) through PyMISP's loader into ``Source`` values. ``schemas/MAPPING.md`` has the
tables in prose; the per-type functions below are those tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from bus import KINDS, PRECEDENCES, Bulletin
from bus.errors import ValidationError
from office_node.exchange import require
from office_node.exchange.mapping import (
    BLO_NAMESPACE,
    MISP_DISTRIBUTION_OF_TLP,
    MISP_THREAT_LEVEL,
    MISP_TLP_TAG,
    PRECEDENCE_OF_THREAT_LEVEL,
    TLP_OF_MISP_TAG,
    admiralty_tags,
    blo_tag,
    date_of_ms,
    extra_comment,
    iso_of_ms,
    ms_of_time,
    parse_extra_comment,
    parse_machine_tag,
    stable_uuid,
)
from office_node.exchange.source import Source, country_code, partial_date, short_text

pymisp = require("pymisp")

#: The category and comment prefix of the event attributes that carry BLO Bus fields
#: MISP has no place for (the bulletin id, in_reply_to, expires, forward provenance).
INTERNAL = "Internal reference"
FIELD_COMMENT = "blo-bus:"
_SEX_TO_GENDER = {"F": "Female", "M": "Male", "X": "Other"}
_GENDER_TO_SEX = {"female": "F", "male": "M", "other": "X"}

# -- export ------------------------------------------------------------------------------

Relations = list[tuple[str, Any]]


def _person(e: Mapping[str, Any]) -> tuple[str, Relations, dict[str, Any]]:
    rel: Relations = [("full-name", e["name"])]
    rel += [("alias", a) for a in e.get("aliases", ())]
    extra: dict[str, Any] = {}
    if "dob" in e:
        # MISP's date-of-birth is a whole date; a year or a month alone stays ours.
        if len(e["dob"]) == 10:
            rel.append(("date-of-birth", e["dob"]))
        else:
            extra["dob"] = e["dob"]
    if "nationality" in e:
        rel.append(("nationality", e["nationality"]))
    if "sex" in e:
        rel.append(("gender", _SEX_TO_GENDER[e["sex"]]))
    return "person", rel, extra


def _document(e: Mapping[str, Any]) -> tuple[str, Relations, dict[str, Any]]:
    # MISP has no template for an identity document on its own; ftm-Passport (the Follow
    # the Money "Passport", shipped with MISP) is the nearest, its `type` saying which.
    rel: Relations = [("passportNumber", e["number"]), ("type", e["doc_type"])]
    for field, relation in (("country", "country"), ("expiry", "endDate")):
        if field in e:
            rel.append((relation, e[field]))
    extra = {k: e[k] for k in ("status", "holder") if k in e}
    return "ftm-Passport", rel, extra


def _vehicle(e: Mapping[str, Any]) -> tuple[str, Relations, dict[str, Any]]:
    rel: Relations = [("license-plate-number", e["plate"])]
    for field, relation in (("make", "make"), ("model", "model"), ("colour", "exterior-color"), ("vin", "vin")):
        if field in e:
            rel.append((relation, e[field]))
    return "vehicle", rel, {k: e[k] for k in ("country",) if k in e}


def _vessel(e: Mapping[str, Any]) -> tuple[str, Relations, dict[str, Any]]:
    rel: Relations = [("name", e["name"])]
    for field, relation in (("imo", "imoNumber"), ("mmsi", "mmsi"), ("flag", "flag")):
        if field in e:
            rel.append((relation, e[field]))
    return "ftm-Vessel", rel, {}


def _phone(e: Mapping[str, Any]) -> tuple[str, Relations, dict[str, Any]]:
    return "phone-number", [("phone-number", e["number"])], {}


def _organisation(e: Mapping[str, Any]) -> tuple[str, Relations, dict[str, Any]]:
    return "organization", [("name", e["name"])], {k: e[k] for k in ("country",) if k in e}


def _location(e: Mapping[str, Any]) -> tuple[str, Relations, dict[str, Any]]:
    rel: Relations = [("address", e["name"])]
    for field, relation in (("country", "countrycode"), ("lat", "latitude"), ("lon", "longitude")):
        if field in e:
            rel.append((relation, e[field]))
    if len(rel) == 1:
        # The template needs a country, a coordinate, a city or a region: a place known only
        # by its name repeats it as the region.
        rel.append(("region", e["name"]))
    return "geolocation", rel, {}


#: entity type -> (its MISP object, [(relation, value)], fields with no relation), and
#: the relation its note goes to.
EXPORTERS: dict[str, tuple[Callable[[Mapping[str, Any]], tuple[str, Relations, dict[str, Any]]], str]] = {
    "person": (_person, "text"),
    "document": (_document, "summary"),
    "vehicle": (_vehicle, "description"),
    "vessel": (_vessel, "notes"),
    "phone": (_phone, "text"),
    "organisation": (_organisation, "description"),
    "location": (_location, "text"),
}


def _object(name: str, key: tuple[Any, ...], relations: Relations, comment: str | None = None) -> Any:
    obj = pymisp.MISPObject(name, strict=True)  # MISP's template must define every relation used
    obj.uuid = stable_uuid(*key)
    if comment:
        obj.comment = comment
    seen: dict[str, int] = {}
    for relation, value in relations:
        n = seen[relation] = seen.get(relation, -1) + 1
        obj.add_attribute(relation, value=str(value), uuid=stable_uuid(*key, relation, n))
    return obj


def event_of(bulletin: Bulletin, *, provenance: Mapping[str, Any] | None = None) -> Any:
    """The bulletin as a ``pymisp.MISPEvent`` (``schemas/MAPPING.md``, "MISP")."""
    b = bulletin
    key = ("bulletin", b.id)
    ev = pymisp.MISPEvent()
    ev.uuid = stable_uuid(*key)
    ev.info = b.title
    ev.date = date_of_ms(b.created)
    ev.timestamp = b.created // 1000
    ev.distribution = MISP_DISTRIBUTION_OF_TLP[b.tlp]
    ev.threat_level_id = MISP_THREAT_LEVEL[b.precedence]
    ev.analysis = 2  # a bulletin is a finished report
    ev.published = False
    org = pymisp.MISPOrganisation()
    org.name = b.sender
    org.uuid = stable_uuid("office", b.sender)
    ev.Orgc = org
    for tag in (
        MISP_TLP_TAG[b.tlp],
        *admiralty_tags(b.grading),
        blo_tag("kind", b.kind),
        blo_tag("precedence", b.precedence),
        *(blo_tag("releasable-to", c) for c in b.releasable_to),
        *(blo_tag("tag", t) for t in b.tags),
    ):
        ev.add_tag(tag)
    fields: list[tuple[str, str]] = [("id", b.id)]
    if b.in_reply_to:
        fields.append(("in_reply_to", b.in_reply_to))
    if b.expires is not None:
        fields.append(("expires", iso_of_ms(b.expires)))
    if b.forwarded is not None:
        fields.append(("forwarded.sender", b.forwarded.sender))
        if provenance and provenance.get("original_id"):
            fields.append(("forwarded.id", str(provenance["original_id"])))
        if b.forwarded.redacted:
            fields.append(("forwarded.redacted", ", ".join(b.forwarded.redacted)))
    for name, value in fields:
        ev.add_attribute(
            "text", value, category=INTERNAL, comment=FIELD_COMMENT + name, disable_correlation=True, to_ids=False,
            uuid=stable_uuid(*key, "field", name),
        )  # fmt: skip
    if b.body:
        ev.add_object(_object("annotation", (*key, "body"), [("text", b.body), ("type", "Full Report"), ("format", "text")]))
    for i, entity in enumerate(b.entities):
        build, note_relation = EXPORTERS[entity["type"]]
        name, relations, extra = build(entity)
        if entity.get("note"):
            relations.append((note_relation, entity["note"]))
        ev.add_object(_object(name, (*key, "entity", i), relations, extra_comment(extra)))
    for i, a in enumerate(b.attachments):
        relations = [("filename", a["name"]), ("size-in-bytes", a["size"]), ("sha256", a["sha256"]), ("mimetype", a["media_type"])]
        ev.add_object(_object("file", (*key, "attachment", i), relations))
    return ev


def event_json(bulletin: Bulletin, *, provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{"Event": {...}}``: MISP's own JSON of one event (what ``/events/add`` takes)."""
    return {"Event": json.loads(event_of(bulletin, provenance=provenance).to_json())}


# -- import ------------------------------------------------------------------------------


def events_in(document: Any) -> list[tuple[str, Mapping[str, Any]]] | None:
    """The events of a MISP document as ``(where, event dict)``, or None if it is not one.
    Accepts ``{"Event": {...}}``, a bare event, a list of either, and a REST search answer
    ``{"response": [...]}``."""
    if isinstance(document, Mapping) and isinstance(document.get("response"), list):
        document = document["response"]
        prefix = "response"
    else:
        prefix = ""
    if isinstance(document, Mapping):
        items: list[Any] = [document]
        single = True
    elif isinstance(document, list):
        items, single = document, False
    else:
        return None
    out = []
    for i, item in enumerate(items):
        where = prefix if single else f"{prefix}[{i}]"
        if isinstance(item, Mapping) and isinstance(item.get("Event"), Mapping):
            out.append((f"{where}.Event".lstrip("."), item["Event"]))
        elif isinstance(item, Mapping) and "info" in item and ("uuid" in item or "Attribute" in item or "Object" in item):
            out.append((where or "Event", item))
        else:
            return None
    return out


def sources_of(document: Any) -> list[Source]:
    """Every event of a MISP document as a ``Source``; ``ValidationError`` naming the
    event when PyMISP cannot read one."""
    events = events_in(document)
    if not events:
        raise ValidationError("", "not a MISP document: expected {\"Event\": {...}}, a list of events or {\"response\": [...]}")
    return [_source(where, raw) for where, raw in events]


def _load(where: str, raw: Mapping[str, Any]) -> Any:
    ev = pymisp.MISPEvent()
    try:
        ev.load(dict(raw))
    except RecursionError:
        raise ValidationError(where, "is nested too deeply to be a MISP event") from None
    except Exception as exc:  # PyMISP's refusal of malformed input takes many forms
        raise ValidationError(where, f"PyMISP cannot read this event: {type(exc).__name__}: {exc}"[:300]) from None
    return ev


def _tag_names(thing: Any) -> Iterator[str]:
    for tag in getattr(thing, "tags", None) or ():
        name = getattr(tag, "name", None)
        if isinstance(name, str):
            yield name


def _source(where: str, raw: Mapping[str, Any]) -> Source:
    ev = _load(where, raw)
    uuid = short_text(getattr(ev, "uuid", None), 64) or "no-uuid"
    stamp = ms_of_time(raw.get("timestamp")) or 0
    title = short_text(getattr(ev, "info", None), 300) or f"MISP event {uuid}"
    src = Source("misp", f"misp:{uuid}@{stamp}", title)
    src.created_ms = ms_of_time(raw.get("date")) or (stamp or None)
    orgc = getattr(ev, "Orgc", None)
    src.creator = short_text(getattr(orgc, "name", None), 200) if orgc is not None else None
    distribution = raw.get("distribution")
    src.distribution = int(distribution) if str(distribution) in ("0", "1", "2", "3", "4") else None
    threat = str(raw.get("threat_level_id", ""))
    if threat.isdigit() and int(threat) in PRECEDENCE_OF_THREAT_LEVEL:
        src.precedence = PRECEDENCE_OF_THREAT_LEVEL[int(threat)]
    for name in _tag_names(ev):
        _event_tag(src, name)
    for attribute in getattr(ev, "attributes", None) or ():
        _attribute(src, attribute)
    for i, obj in enumerate(getattr(ev, "objects", None) or ()):
        _object_in(src, obj, f"{where}.Object[{i}]")
    for galaxy in getattr(ev, "galaxies", None) or ():
        _galaxy(src, galaxy)
    return src


def _event_tag(src: Source, name: str) -> None:
    if name in TLP_OF_MISP_TAG:
        src.tlp_labels.append(TLP_OF_MISP_TAG[name])
        return
    parsed = parse_machine_tag(name)
    if parsed is None:
        src.tags.append(name)
        return
    namespace, predicate, value = parsed
    if namespace == "admiralty-scale" and value:
        if predicate == "source-reliability" and value.upper() in "ABCDEF" and len(value) == 1:
            src.reliability = value.upper()
        elif predicate == "information-credibility" and value in "123456" and len(value) == 1:
            src.credibility = value
    elif namespace == BLO_NAMESPACE and value:
        if predicate == "kind" and value in KINDS:
            src.kind = value
        elif predicate == "precedence" and value in PRECEDENCES:
            src.precedence = value
        elif predicate == "releasable-to" and country_code(value) == value:
            src.releasable_to = [*(src.releasable_to or []), value]
        elif predicate == "tag":
            src.tags.append(value)
    elif not namespace.startswith("misp-galaxy"):
        src.tags.append(name)


def _value(attribute: Any) -> str | None:
    """An attribute's value as text, unchanged but for NUL characters (free text keeps its lines)."""
    value = getattr(attribute, "value", None)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value).replace("\x00", "")
    return text if text.strip() else None


def _attribute(src: Source, a: Any) -> None:
    for name in _tag_names(a):
        if name in TLP_OF_MISP_TAG:
            src.tlp_labels.append(TLP_OF_MISP_TAG[name])
    kind, text = getattr(a, "type", None), _value(a)
    comment = getattr(a, "comment", None) or ""
    if text is None or not isinstance(kind, str):
        return
    value = short_text(text, 300) or ""
    if isinstance(comment, str) and comment.startswith(FIELD_COMMENT) and getattr(a, "category", None) == INTERNAL:
        _field(src, comment[len(FIELD_COMMENT) :], value)
    elif kind in ("phone-number", "whois-registrant-phone"):
        src.add_entity({"type": "phone", "number": value}, f"attribute {kind}")
    elif kind == "passport-number":
        src.add_entity({"type": "document", "doc_type": "passport", "number": value[:40]}, f"attribute {kind}")
    elif kind == "full-name":
        src.add_entity({"type": "person", "name": value[:200]}, f"attribute {kind}")
    elif kind in ("threat-actor", "target-org"):
        src.add_entity({"type": "organisation", "name": value[:200], "note": kind.replace("-", " ")}, f"attribute {kind}")
    elif kind in ("text", "comment") and getattr(a, "category", None) != INTERNAL:
        src.body_parts.append(text)
    else:
        src.add_indicator(kind, value)


def _field(src: Source, name: str, value: str) -> None:
    if name == "id":
        src.bulletin_id = value
    elif name == "in_reply_to":
        src.in_reply_to = value
    elif name == "expires":
        src.expires_ms = ms_of_time(value)
    elif name.startswith("forwarded."):
        src.body_parts.append(f"Forward provenance ({name[10:]}): {value}")


def _relations(obj: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a in getattr(obj, "attributes", None) or ():
        relation, value = getattr(a, "object_relation", None), _value(a)
        if isinstance(relation, str) and value is not None:
            out.setdefault(relation, []).append(value)
    return out


def _first(rel: Mapping[str, list[str]], *names: str, limit: int = 200) -> str | None:
    for name in names:
        for value in rel.get(name, ()):
            text = short_text(value, limit)
            if text:
                return text
    return None


def _object_in(src: Source, obj: Any, where: str) -> None:
    for a in getattr(obj, "attributes", None) or ():
        for name in _tag_names(a):
            if name in TLP_OF_MISP_TAG:
                src.tlp_labels.append(TLP_OF_MISP_TAG[name])
    name = getattr(obj, "name", None)
    rel = _relations(obj)
    extra = parse_extra_comment(getattr(obj, "comment", None))
    reader = READERS.get(name) if isinstance(name, str) else None
    if reader is not None:
        reader(src, rel, extra, f"{where} ({name})")
        return
    for relation, values in rel.items():
        for value in values:
            src.add_indicator(f"{name}/{relation}", value)


def _note(rel: Mapping[str, list[str]], *names: str) -> str | None:
    return _first(rel, *names, limit=1000)


def _read_person(src: Source, rel: Mapping[str, list[str]], extra: Mapping[str, Any], where: str) -> None:
    name = _first(rel, "full-name") or " ".join(
        v for v in (_first(rel, "first-name"), _first(rel, "middle-name"), _first(rel, "last-name")) if v
    ) or _first(rel, "alias", "handle")
    if not name:
        src.warnings.append(f"{where}: a person without a name was left out")
        return
    sex = _GENDER_TO_SEX.get((_first(rel, "gender") or "").lower())
    aliases = [a for a in dict.fromkeys(short_text(v, 200) for v in rel.get("alias", ())) if a and a != name][:20]
    nationality = _first(rel, "nationality")
    note = _note(rel, "text")
    if nationality and not country_code(nationality):
        note = f"{note + '; ' if note else ''}nationality: {nationality}"[:1000]
    person = {
        "type": "person", "name": name, "aliases": aliases, "sex": sex, "note": note,
        "dob": partial_date(_first(rel, "date-of-birth")) or partial_date(extra.get("dob")),
        "nationality": country_code(nationality),
    }  # fmt: skip
    src.add_entity(person, where)
    for relation, doc_type in (("passport-number", "passport"), ("identity-card-number", "id_card")):
        for number in rel.get(relation, ()):
            document = {"type": "document", "doc_type": doc_type, "number": number[:40], "holder": name}
            if doc_type == "passport":
                document["country"] = country_code(_first(rel, "passport-country"))
                document["expiry"] = partial_date(_first(rel, "passport-expiration"))
            src.add_entity(document, where)
    for number in rel.get("phone-number", ()):
        src.add_entity({"type": "phone", "number": number, "note": f"phone of {name}"[:1000]}, where)


def _read_interpol_notice(src: Source, rel: Mapping[str, list[str]], extra: Mapping[str, Any], where: str) -> None:
    name = " ".join(v for v in (_first(rel, "forename"), _first(rel, "present-family-name")) if v)
    if not name:
        src.warnings.append(f"{where}: a notice without a name was left out")
        return
    colour = _first(rel, "notice-color") or "?"
    person = {
        "type": "person", "name": name[:200], "dob": partial_date(_first(rel, "date-of-birth")),
        "nationality": country_code(_first(rel, "nationality")),
        "sex": _GENDER_TO_SEX.get((_first(rel, "sex") or "").lower()),
        "note": f"INTERPOL {colour} notice" + (f"; charges: {_first(rel, 'charges', limit=900)}" if rel.get("charges") else ""),
    }  # fmt: skip
    src.add_entity(person, where)


def _read_document(src: Source, rel: Mapping[str, list[str]], extra: Mapping[str, Any], where: str) -> None:
    number = _first(rel, "passportNumber", limit=40)
    if not number:
        src.warnings.append(f"{where}: a document without a number was left out")
        return
    doc_type = (_first(rel, "type") or "passport").lower().replace(" ", "_")
    holder = extra.get("holder") or " ".join(v for v in (_first(rel, "givenName"), _first(rel, "surname")) if v) or None
    document = {
        "type": "document", "doc_type": doc_type, "number": number, "country": country_code(_first(rel, "country")),
        "expiry": partial_date(_first(rel, "endDate")), "holder": holder, "status": extra.get("status"),
        "note": _note(rel, "summary", "description"),
    }  # fmt: skip
    src.add_entity(document, where)


def _read_vehicle(src: Source, rel: Mapping[str, list[str]], extra: Mapping[str, Any], where: str) -> None:
    plate = _first(rel, "license-plate-number", "registrationNumber", limit=20)
    if not plate:
        src.warnings.append(f"{where}: a vehicle without a plate was left out")
        return
    vehicle = {
        "type": "vehicle", "plate": plate, "make": _first(rel, "make"), "model": _first(rel, "model"),
        "colour": _first(rel, "exterior-color"), "vin": _first(rel, "vin", limit=17),
        "country": country_code(extra.get("country")) or country_code(_first(rel, "country")),
        "note": _note(rel, "description", "notes"),
    }  # fmt: skip
    src.add_entity(vehicle, where)


def _read_vessel(src: Source, rel: Mapping[str, list[str]], extra: Mapping[str, Any], where: str) -> None:
    name = _first(rel, "name")
    if not name:
        src.warnings.append(f"{where}: a vessel without a name was left out")
        return
    vessel = {
        "type": "vessel", "name": name, "imo": _first(rel, "imoNumber"), "mmsi": _first(rel, "mmsi"),
        "flag": country_code(_first(rel, "flag")), "note": _note(rel, "notes", "description"),
    }  # fmt: skip
    src.add_entity(vessel, where)


def _read_phone(src: Source, rel: Mapping[str, list[str]], extra: Mapping[str, Any], where: str) -> None:
    for number in rel.get("phone-number", ()):
        src.add_entity({"type": "phone", "number": number, "note": _note(rel, "text")}, where)


def _read_organisation(src: Source, rel: Mapping[str, list[str]], extra: Mapping[str, Any], where: str) -> None:
    name = _first(rel, "name", "commercial-name", "alias")
    if not name:
        src.warnings.append(f"{where}: an organisation without a name was left out")
        return
    organisation = {
        "type": "organisation", "name": name, "note": _note(rel, "description", "text", "notes"),
        "country": country_code(extra.get("country")) or country_code(_first(rel, "country")),
    }  # fmt: skip
    src.add_entity(organisation, where)


def _number(rel: Mapping[str, list[str]], name: str) -> float | None:
    text = _first(rel, name)
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and value == value and abs(value) != float("inf") else None


def _read_location(src: Source, rel: Mapping[str, list[str]], extra: Mapping[str, Any], where: str) -> None:
    name = _first(rel, "address", "city", "region", "country", "text")
    lat, lon = _number(rel, "latitude"), _number(rel, "longitude")
    if not name:
        name = f"{lat}, {lon}" if lat is not None and lon is not None else None
    if not name:
        src.warnings.append(f"{where}: a location without a name or coordinates was left out")
        return
    location = {
        "type": "location", "name": name, "country": country_code(_first(rel, "countrycode")),
        "lat": lat, "lon": lon, "note": _note(rel, "text") if name != _first(rel, "text") else None,
    }  # fmt: skip
    src.add_entity(location, where)


def _read_file(src: Source, rel: Mapping[str, list[str]], extra: Mapping[str, Any], where: str) -> None:
    name, sha256, size = _first(rel, "filename", limit=255), _first(rel, "sha256"), _first(rel, "size-in-bytes")
    media_type = _first(rel, "mimetype") or "application/octet-stream"
    if name and sha256 and size and size.isdigit():
        src.attachments.append({"name": name, "media_type": media_type.lower(), "size": int(size), "sha256": sha256.lower()})
    for relation, values in rel.items():
        for value in values:
            src.add_indicator(f"file/{relation}", value)


def _read_annotation(src: Source, rel: Mapping[str, list[str]], extra: Mapping[str, Any], where: str) -> None:
    src.body_parts.extend(rel.get("text", ()))


READERS: dict[str, Callable[[Source, Mapping[str, list[str]], Mapping[str, Any], str], None]] = {
    "person": _read_person,
    "interpol-notice": _read_interpol_notice,
    "ftm-Passport": _read_document,
    "vehicle": _read_vehicle,
    "ftm-Vehicle": _read_vehicle,
    "ftm-Vessel": _read_vessel,
    "phone-number": _read_phone,
    "organization": _read_organisation,
    "legal-entity": _read_organisation,
    "ftm-Organization": _read_organisation,
    "geolocation": _read_location,
    "file": _read_file,
    "annotation": _read_annotation,
}

#: Galaxies whose clusters are groups of people: each becomes an organisation entity.
GROUP_GALAXIES = ("threat-actor", "mitre-intrusion-set", "intrusion-set", "mitre-enterprise-attack-intrusion-set")


def _galaxy(src: Source, galaxy: Any) -> None:
    kind = getattr(galaxy, "type", None)
    names = []
    for cluster in getattr(galaxy, "clusters", None) or ():
        value = short_text(getattr(cluster, "value", None), 200)
        if not value:
            continue
        names.append(value)
        if kind in GROUP_GALAXIES:
            meta = getattr(cluster, "meta", None) or {}
            countries = meta.get("country") if isinstance(meta, Mapping) else None
            synonyms = meta.get("synonyms") if isinstance(meta, Mapping) else None
            aka = ", ".join(str(s) for s in synonyms[:20]) if isinstance(synonyms, list) else ""
            note = f"{getattr(galaxy, 'name', kind)} (MISP galaxy)" + (f"; also known as {aka}" if aka else "")
            organisation = {
                "type": "organisation", "name": value, "note": note[:1000],
                "country": country_code(countries[0]) if isinstance(countries, list) and countries else None,
            }  # fmt: skip
            src.add_entity(organisation, f"galaxy {kind}")
    if names and kind not in GROUP_GALAXIES:
        src.body_parts.append(f"MISP galaxy {getattr(galaxy, 'name', kind)}: {', '.join(names)}")
