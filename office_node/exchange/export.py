"""Stored bulletins -> one MISP or STIX 2.1 document, the export rules (X1, X2) applied.

One bulletin: MISP ``{"Event": {...}}`` or a STIX bundle, or ``HandlingRefused``. Many
(``blo export``): MISP ``{"response": [{"Event": ...}, ...]}`` (the shape of MISP's own
REST search answer, which MISP and PyMISP read back) or one STIX bundle; a bulletin the
rules refuse is left out and listed as withheld, with the rule, so one TLP:RED bulletin
does not stop the export of a hundred others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bus import Bulletin
from bus.errors import HandlingRefused, ValidationError
from office_node.exchange import FORMATS
from office_node.exchange.handling import check_export


@dataclass(frozen=True, slots=True)
class Exportable:
    """A stored bulletin as export needs it: the offices it went to, and the checked
    provenance of a forward (``office_node.provenance.ForwardChecks.record``), if any."""

    bulletin: Bulletin
    recipients: tuple[str, ...]
    provenance: Mapping[str, Any] | None = None


def check_format(fmt: Any) -> str:
    if fmt not in FORMATS:
        raise ValidationError("format", f"must be {' or '.join(FORMATS)}; got {fmt!r}"[:200])
    return fmt


def export_one(item: Exportable, fmt: str, *, audience: Sequence[str] = ()) -> dict[str, Any]:
    """One bulletin as a document; ``HandlingRefused`` when the rules forbid it."""
    check_format(fmt)
    check_export(item.bulletin, recipients=item.recipients, audience=audience)
    return _document([item], fmt, single=True)


def export_many(items: Sequence[Exportable], fmt: str, *, audience: Sequence[str] = ()) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Every bulletin the rules allow, as one document, and those withheld with why."""
    check_format(fmt)
    allowed, withheld = [], []
    for item in items:
        try:
            check_export(item.bulletin, recipients=item.recipients, audience=audience)
        except HandlingRefused as exc:
            withheld.append({"id": item.bulletin.id, "rule": exc.reason, "message": exc.message})
            continue
        allowed.append(item)
    return _document(allowed, fmt, single=False), withheld


def _document(items: Sequence[Exportable], fmt: str, *, single: bool) -> dict[str, Any]:
    if fmt == "stix":
        from office_node.exchange import stix

        return stix.bundle_of((i.bulletin, i.provenance) for i in items)
    from office_node.exchange import misp

    events = [misp.event_json(i.bulletin, provenance=i.provenance) for i in items]
    return events[0] if single else {"response": events}
