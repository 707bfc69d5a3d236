"""What one imported MISP event or STIX report says, in BLO Bus terms, before any rule.

The readers (``misp.py``, ``stix.py``) fill a ``Source``; ``handling.derive`` then decides
the draft's TLP and releasability from it, and ``importer.py`` makes the draft. Entities
are already BLO Bus entities (``schemas/bulletin.schema.json``), each checked by
``bus.bulletin.validate_entity``: a reader that cannot make a valid entity of something
keeps it as an indicator line or a warning, never a broken entity.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bus import DOCUMENT_TYPES, validate_entity
from bus.errors import ValidationError

#: How many indicator lines (IPs, hashes, domains... that are no BLO Bus entity) the
#: body lists before it says how many more there were.
MAX_INDICATOR_LINES = 200


@dataclass
class Source:
    """One event (MISP) or report (STIX) to become one draft bulletin."""

    format: str  # misp | stix
    ref: str  # stable id of the source version: misp:<event uuid>@<timestamp>, stix:<report id>@<modified>
    title: str
    created_ms: int | None = None
    creator: str | None = None  # the source organisation or identity, as it names itself
    body_parts: list[str] = field(default_factory=list)
    entities: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    indicators: list[str] = field(default_factory=list)  # "type: value" lines
    tags: list[str] = field(default_factory=list)
    #: every TLP label found anywhere in the source (the strictest wins)
    tlp_labels: list[str] = field(default_factory=list)
    #: MISP distribution level of the event (0-5), None for STIX
    distribution: int | None = None
    #: countries named by a releasability marking (BLO Bus's own exports), None if none
    releasable_to: list[str] | None = None
    reliability: str | None = None  # A-F
    credibility: str | None = None  # 1-6
    precedence: str | None = None
    kind: str | None = None
    expires_ms: int | None = None
    in_reply_to: str | None = None
    #: the BLO Bus bulletin this source was exported from, when it says so
    bulletin_id: str | None = None
    warnings: list[str] = field(default_factory=list)

    def add_entity(self, entity: dict[str, Any], where: str) -> None:
        """Keep ``entity`` if it is a valid BLO Bus entity, else say why in a warning."""
        clean = {k: v for k, v in entity.items() if v not in (None, "", [])}
        if clean.get("type") == "document" and clean.get("doc_type") not in DOCUMENT_TYPES:
            clean["doc_type"] = "other"
        try:
            valid = validate_entity(clean)
        except ValidationError as exc:
            self.warnings.append(f"{where}: not kept as a {clean.get('type')} ({exc.message})"[:300])
            return
        if valid not in self.entities:
            self.entities.append(valid)

    def add_indicator(self, kind: str, value: Any) -> None:
        line = f"{kind}: {value}".replace("\n", " ")[:300]
        if line not in self.indicators:
            self.indicators.append(line)

    def with_changes(self, **changes: Any) -> Source:
        return dataclasses.replace(self, **changes)


def short_text(value: Any, limit: int) -> str | None:
    """``value`` as one trimmed line of at most ``limit`` characters, or None if blank."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    text = " ".join(str(value).replace("\x00", "").split())
    return text[:limit] if text else None


def country_code(value: Any) -> str | None:
    """A two-letter ISO 3166 code in capitals if ``value`` is one (``la`` -> ``LA``), else None."""
    if isinstance(value, str) and len(value.strip()) == 2 and value.strip().isascii() and value.strip().isalpha():
        return value.strip().upper()
    return None


def partial_date(value: Any) -> str | None:
    """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` from a date or the date part of a time."""
    if not isinstance(value, str):
        return None
    text = value.strip()[:10]
    parts = text.split("-")
    if not parts or len(parts) > 3 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    if len(parts[0]) != 4 or any(len(p) != 2 for p in parts[1:]):
        return None
    return text
