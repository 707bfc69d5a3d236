"""A MISP or STIX file -> draft proposals: what ``blo import`` and the MISP bridge's pull
make, for a centre analyst to review in triage before anything is sealed and sent.

Bad or hostile input (not JSON, too large, too deep, neither MISP nor STIX, refused by
PyMISP or stix2) raises ``ValidationError`` with a message saying what is wrong and what
the file should be; nothing else escapes. Each proposal's bulletin fields pass
``bus.bulletin`` validation: what does not fit (a 40-character limit, the 200-entity cap,
a tag with spaces) is cut or left out with a warning the analyst sees.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bus import MAX_ATTACHMENTS, MAX_BODY_CHARS, MAX_ENTITIES, MAX_TAGS, Bulletin, bulletin_id_to_bytes
from bus.errors import ValidationError
from office_node.exchange.handling import Derived, derive
from office_node.exchange.mapping import iso_of_ms
from office_node.exchange.source import MAX_INDICATOR_LINES, Source

MAX_IMPORT_BYTES = 16 * 1024 * 1024
#: The kind an import gets when its source does not say (a BLO Bus export does).
DEFAULT_KIND = "alert"
_PLACEHOLDER = {"id": "00000000000000000000000000", "from": "XX-IMPORT", "created": 0}


@dataclass(frozen=True)
class Proposal:
    """One draft bulletin to be: its fields (a post request without recipients), the
    handling its source allows, and what the import could not carry."""

    source: Source
    fields: dict[str, Any]
    derived: Derived
    warnings: tuple[str, ...] = field(default=())


def parse_document(data: bytes | str) -> Any:
    """The JSON of a file, or ``ValidationError`` saying why it is not usable."""
    if len(data) > MAX_IMPORT_BYTES:
        raise ValidationError("file", f"is {len(data)} bytes; an import takes at most {MAX_IMPORT_BYTES // 1024 // 1024} MiB")
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
        return json.loads(text)
    except UnicodeDecodeError:
        raise ValidationError("file", "is not UTF-8 text: export it from MISP or the STIX tool as JSON") from None
    except json.JSONDecodeError as exc:
        raise ValidationError("file", f"is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise ValidationError("file", "is nested too deeply to be a MISP event or a STIX bundle") from None


def sources_of(document: Any) -> list[Source]:
    """The import sources of a MISP or STIX document (the format is recognised)."""
    from office_node.exchange import misp, stix

    if stix.is_bundle(document):
        sources = stix.sources_of(document)
    elif misp.events_in(document):
        sources = misp.sources_of(document)
    else:
        raise ValidationError(
            "file", 'is neither MISP JSON ({"Event": {...}}, a list of events, {"response": [...]}) nor a STIX 2.1 '
            'bundle ({"type": "bundle", ...})'
        )
    if not sources:
        raise ValidationError("file", "holds no event or report to import")
    return sources


def proposals(document: Any, *, own_country: str, network_countries: Iterable[str], now_ms: int) -> list[Proposal]:
    """Every event or report of ``document`` as a draft proposal, the rules applied."""
    countries = tuple(network_countries)
    return [proposal(s, own_country=own_country, network_countries=countries, now_ms=now_ms) for s in sources_of(document)]


def proposal(src: Source, *, own_country: str, network_countries: Iterable[str], now_ms: int) -> Proposal:
    derived = derive(src, own_country=own_country, network_countries=network_countries)
    warnings = list(src.warnings)
    entities = src.entities[:MAX_ENTITIES]
    if len(src.entities) > MAX_ENTITIES:
        warnings.append(f"{len(src.entities)} entities; a bulletin holds {MAX_ENTITIES}: the rest are left out")
    tags = [t for t in dict.fromkeys(src.tags) if _is_tag(t)]
    dropped = [t for t in dict.fromkeys(src.tags) if not _is_tag(t)]
    if dropped:
        warnings.append(f"tags that are not BLO Bus tags (spaces, over 64 characters) left out: {', '.join(dropped)[:300]}")
    if len(tags) > MAX_TAGS:
        warnings.append(f"{len(tags)} tags; a bulletin holds {MAX_TAGS}: the rest are left out")
    fields: dict[str, Any] = {
        "precedence": src.precedence or "ROUTINE",
        "kind": src.kind or DEFAULT_KIND,
        "tlp": derived.tlp,
        "releasable_to": list(derived.releasable_to),
        "grading": f"{src.reliability or 'F'}{src.credibility or '6'}",
        "title": src.title,
        "body": _body(src, warnings),
        "entities": entities,
        "tags": tags[:MAX_TAGS],
    }
    if src.attachments:
        # A BLO Bus attachment is the file itself, sealed with its bulletin (ATTACHMENTS.md):
        # a reference by name and hash carries no file, so it is named for the analyst.
        named = ", ".join(f"{a['name']} (sha256 {a['sha256'][:16]}...)" for a in src.attachments[:MAX_ATTACHMENTS])
        warnings.append(f"files the source names are not attached (attach them before sending): {named}"[:500])
    if src.reliability is None or src.credibility is None:
        warnings.append("the source does not grade itself fully: F (reliability cannot be judged) and 6 (truth cannot be judged) stand in")
    if src.expires_ms is not None and src.expires_ms > now_ms:
        fields["expires"] = src.expires_ms
    if src.in_reply_to is not None and _is_ulid(src.in_reply_to):
        fields["in_reply_to"] = src.in_reply_to
    try:  # the same checks as a post: a proposal must be sendable once recipients are named
        Bulletin.from_dict({**fields, **_PLACEHOLDER, "created": min(now_ms, fields.get("expires", now_ms + 1) - 1)})
    except ValidationError as exc:
        raise ValidationError(exc.field, f"the import of {src.ref} makes no valid bulletin: {exc.problem}") from None
    return Proposal(src, fields, derived, tuple(warnings))


def _is_tag(tag: str) -> bool:
    return 0 < len(tag) <= 64 and not any(c.isspace() or ord(c) < 0x20 for c in tag)


def _is_ulid(text: str) -> bool:
    try:
        bulletin_id_to_bytes(text)
    except ValidationError:
        return False
    return True


def _body(src: Source, warnings: list[str]) -> str:
    """The source's text, then where it came from, then what no entity could hold."""
    parts = [p.replace("\x00", "").strip() for p in src.body_parts if p and p.strip()]
    origin = "MISP event" if src.format == "misp" else "STIX"
    line = f"Imported from {origin} {src.ref}"
    if src.creator:
        line += f", by {src.creator}"
    if src.created_ms is not None:
        line += f", of {iso_of_ms(src.created_ms)[:10]}"
    if src.bulletin_id:
        line += f" (exported from BLO Bus bulletin {src.bulletin_id})"
    parts.append(line + ".")
    if src.indicators:
        shown = src.indicators[:MAX_INDICATOR_LINES]
        more = len(src.indicators) - len(shown)
        parts.append(
            "Indicators in the source that are not BLO Bus entities:\n"
            + "\n".join(f"- {i}" for i in shown)
            + (f"\n(and {more} more)" if more else "")
        )
    body = "\n\n".join(parts)
    if len(body) > MAX_BODY_CHARS:
        warnings.append(f"the text is {len(body)} characters; a bulletin holds {MAX_BODY_CHARS}: it is cut")
        body = body[: MAX_BODY_CHARS - 20] + "\n[... cut on import]"
    return body
