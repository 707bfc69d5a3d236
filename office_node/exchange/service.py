"""The node's export operations, between the HTTP API and the pure exporters: read the
stored bulletins, apply the export rules, audit what left.

Any node exports (``GET /api/bulletins/{id}?format=``, ``GET /api/export``); imports and
drafts are the centre's (``office_node/centre.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from bus import Bulletin, is_office_id
from bus.errors import HandlingRefused, ValidationError
from office_node import audit as actions
from office_node.accounts import Principal
from office_node.exchange.export import Exportable, check_format, export_many, export_one
from office_node.store import BulletinQuery, StoredBulletin

if TYPE_CHECKING:
    from office_node.audit import AuditLog
    from office_node.store import Store


class ExportSource(Protocol):
    """What an export needs of the node (``OfficeNode`` is one); written out here so that
    this module does not import the node that calls it."""

    store: Store
    audit: AuditLog
    clock: Callable[[], int]

#: The most bulletins one ``GET /api/export`` returns (narrow it with since/until/feed).
MAX_EXPORT = 5000
EXPORT_PARAMS = frozenset({"format", "for", "since", "until", "feed"})


def exportable(stored: StoredBulletin) -> Exportable:
    provenance = (stored.verification or {}).get("provenance")
    return Exportable(Bulletin.from_dict(stored.bulletin), tuple(stored.recipients), provenance)


def audience_of(text: str | None) -> tuple[str, ...]:
    """``for=TH-MUK,LA-SVK`` -> the office ids an export is for (empty: nobody named)."""
    out = tuple(o.strip() for o in (text or "").split(",") if o.strip())
    for office in out:
        if not is_office_id(office):
            raise ValidationError("for", f"must be office ids separated by commas, e.g. TH-MUK; got {office!r}"[:200])
    return out


def export_bulletin(node: ExportSource, principal: Principal, bulletin_id: str, params: Mapping[str, str]) -> dict[str, Any]:
    """One stored bulletin as MISP or STIX; a refusal is audited and raised."""
    fmt = check_format(params.get("format"))
    audience = audience_of(params.get("for"))
    stored = node.store.require(bulletin_id)
    now = node.clock()
    try:
        document = export_one(exportable(stored), fmt, audience=audience)
    except HandlingRefused as exc:
        node.audit.append(
            principal.username, actions.BULLETIN_REFUSED, target=bulletin_id,
            details={"rule": exc.reason, "attempted": actions.BULLETIN_EXPORT, "format": fmt, "for": list(audience)},
            now_ms=now,
        )  # fmt: skip
        raise
    node.audit.append(
        principal.username, actions.BULLETIN_EXPORT, target=bulletin_id, details={"format": fmt, "for": list(audience)},
        now_ms=now,
    )  # fmt: skip
    return document


def export_range(node: ExportSource, principal: Principal, params: Mapping[str, str]) -> dict[str, Any]:
    """Every stored bulletin in a time range and/or feed as one document, with the ones
    the rules withheld: ``{"format", "document", "exported", "withheld": [{id, rule, message}]}``."""
    for name in params:
        if name not in EXPORT_PARAMS:
            raise ValidationError(name[:64], f"is not an export parameter; use {', '.join(sorted(EXPORT_PARAMS))}")
    fmt = check_format(params.get("format"))
    audience = audience_of(params.get("for"))
    filters = {k: v for k, v in params.items() if k in ("since", "until", "feed")}
    query = BulletinQuery.from_params({**filters, "limit": "500"})
    items: list[Exportable] = []
    while True:
        page = node.store.list_bulletins(query)
        items += [exportable(b) for b in page.items]
        if page.next_cursor is None:
            break
        if len(items) >= MAX_EXPORT:
            raise ValidationError("since", f"more than {MAX_EXPORT} bulletins match: export a shorter time range (since, until)")
        query = BulletinQuery.from_params({**filters, "limit": "500", "cursor": page.next_cursor})
    items.reverse()  # oldest first, as a reader follows them
    document, withheld = export_many(items, fmt, audience=audience)
    node.audit.append(
        principal.username, actions.BULLETIN_EXPORT, target=f"{len(items) - len(withheld)} bulletins",
        details={"format": fmt, "for": list(audience), **filters, "withheld": [w["id"] for w in withheld][:50]},
        now_ms=node.clock(),
    )  # fmt: skip
    return {"format": fmt, "document": document, "exported": len(items) - len(withheld), "withheld": withheld}
