"""The JSON the API and the live stream show: pure functions of stored values.

One place for the shapes the web page relies on (the contract at the top of
``office_node/web/app.js``), so the HTTP handlers, the live stream and the CLI print the
same thing.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from bus import (
    ORIGINAL_CHECKED,
    ORIGINAL_NOT_CHECKED,
    ORIGINAL_REFUSED,
    REDACTED,
    Directory,
    DirectoryRecord,
    bulletin_id_from_bytes,
    errors,
    parse_header,
)
from bus import attribution as attribution_of
from bus.transport import BulletinStatus, RecipientStatus, StateChange
from office_node import search
from office_node.store import StoredBulletin


def attribution(b: StoredBulletin) -> dict[str, Any] | None:
    """Whose words a forward is shown as (``bus.forward.attribution``, ENVELOPE.md 8.1),
    from what this node stored; None for a bulletin that is not a forward.

    Redacted is read from the bulletin itself, whatever else was stored: its text was
    compared with nothing. Only a provenance whose original signature verified here names
    the office as the author."""
    carried = b.bulletin.get("forwarded")
    if not isinstance(carried, dict):
        return None
    p = b.verification.get("provenance")
    p = p if isinstance(p, dict) else {}
    if carried.get("redacted"):
        state = REDACTED
    elif p.get("verified") is True:
        state = ORIGINAL_CHECKED
    elif p and "original_id" not in p:  # the check itself failed: what it said is the problem
        state = ORIGINAL_REFUSED
    else:
        state = ORIGINAL_NOT_CHECKED
    shown = attribution_of(
        state,
        forwarded_by=b.sender,
        original_sender=str(carried.get("sender")),
        original_id=p.get("original_id"),
        problem=p.get("text"),
    )
    return shown.to_json()


def summary(b: StoredBulletin) -> dict[str, Any]:
    """One line of a list: what the feed and search results show."""
    shown = attribution(b)
    return {
        "id": b.id,
        "from": b.sender,
        "precedence": b.precedence,
        "kind": b.kind,
        "tlp": b.tlp,
        "title": b.title,
        "created": b.bulletin.get("created"),
        "expires": b.bulletin.get("expires"),
        "sent_at": b.sent_at,
        "received_at": b.received_at,
        "direction": b.direction,
        "feed": b.feed,
        "read": b.is_read,
        "verified": b.verified,
        "in_reply_to": b.bulletin.get("in_reply_to"),
        # An office is named as where a forward's text comes from only when its signature was checked.
        "forwarded_from": shown["original_sender"] if shown and shown["state"] == ORIGINAL_CHECKED else None,
        "attribution": shown,
    }


def original_of(b: StoredBulletin) -> str | None:
    """The id of the original a whole forward carries (from the original's header, which
    travels in it); None for a bulletin that is not a forward, and for a redacted one (its
    text is the centre's, not the original's: a row of its own)."""
    carried = b.bulletin.get("forwarded")
    if not isinstance(carried, dict) or carried.get("redacted"):
        return None
    try:
        header = base64.b64decode(str(carried.get("header")), validate=True)
        return bulletin_id_from_bytes(parse_header(header).bulletin_id)
    except (binascii.Error, ValueError, errors.BloError):
        return None


def search_results(items: Sequence[StoredBulletin], text: str) -> list[dict[str, Any]]:
    """Search results: one row per bulletin, newest first, each with a ``snippet`` of
    where the query matched (search.snippet). An original and the whole forwards of it
    stored here are one row: the original's when it is stored here (else the newest
    forward), with ``forwards`` listing the other forwards ({id, by, feed, at}) and
    ``copies`` the number of stored bulletins the row stands for."""
    query = search.parse(text)
    groups: dict[str, list[StoredBulletin]] = {}
    for b in items:
        groups.setdefault(original_of(b) or b.id, []).append(b)
    rows = []
    for original_id, group in groups.items():
        shown = next((b for b in group if b.id == original_id), group[0])
        row = summary(shown)
        row["snippet"] = search.snippet(shown.bulletin, query)
        row["forwards"] = [
            {"id": b.id, "by": b.sender, "feed": b.feed, "at": b.received_at or b.sent_at}
            for b in group
            if b is not shown
        ]
        row["copies"] = len(group)
        rows.append(row)
    return rows


def _state_at(r: RecipientStatus) -> int | None:
    return r.acknowledged_at or r.read_at or r.delivered_at or r.sent_at


def receipt_rows(status: BulletinStatus | None) -> list[dict[str, Any]]:
    """Each recipient's state of a bulletin sent here: queued, sent, delivered, read,
    acknowledged (by a person: what a FLASH waits for); or held or failed, with the
    ``problem`` (a feed copy waiting for its epoch's key; one this office may no longer post)."""
    if status is None:
        return []
    return [
        {
            "recipient": r.recipient,
            "state": r.state,
            "at": _state_at(r),
            "sent_at": r.sent_at,
            "delivered_at": r.delivered_at,
            "read_at": r.read_at,
            "acknowledged_at": r.acknowledged_at,
            # held (waiting to be re-sealed under a feed's new epoch) or failed: why
            "problem": r.problem,
        }
        for r in sorted(status.recipients.values(), key=lambda r: r.recipient)
    ]


def verification(b: StoredBulletin) -> dict[str, Any]:
    v = b.verification
    out = {
        "verified": b.verified,
        "signer": v.get("signer", b.sender),
        "key_id": v.get("sign_kid", b.sender_sign_kid),
        "sent_at": v.get("signed_at", b.sent_at),
        "checked_at": v.get("checked_at"),
    }
    for key in ("problem", "reason", "note", "opened_via", "provenance"):
        if key in v:
            out[key] = v[key]
    return out


def detail(b: StoredBulletin, status: BulletinStatus | None) -> dict[str, Any]:
    """One bulletin in full, with how it was verified and who has it."""
    return {
        "bulletin": b.bulletin,
        "direction": b.direction,
        "feed": b.feed,
        "recipients": list(b.recipients),
        "sent_at": b.sent_at,
        "received_at": b.received_at,
        "read": b.is_read,
        "read_at": b.read_at,
        "read_by": b.read_by,
        "verification": verification(b),
        "attribution": attribution(b),
        "receipts": receipt_rows(status),
        "escalated_at": status.escalated_at if status else None,
    }


def outbox_item(b: StoredBulletin, status: BulletinStatus | None) -> dict[str, Any]:
    return {
        "id": b.id,
        "title": b.title,
        "precedence": b.precedence,
        "created": b.bulletin.get("created"),
        "sent_at": b.sent_at,
        "recipients": receipt_rows(status),
        "escalated_at": status.escalated_at if status else None,
    }


def state_event(change: StateChange) -> dict[str, Any]:
    return {"id": change.bulletin_id, "recipient": change.recipient, "state": change.state, "at": change.at}


def directory_entry(directory: Directory, r: DirectoryRecord, now_ms: int) -> dict[str, Any]:
    keys = directory.sender_keys(r.office_id, r.sign_kid)
    problem = keys.problem_at(now_ms) if keys is not None else "unknown key"
    return {
        "office": r.office_id,
        "name": r.name,
        "country": r.country,
        "role": r.role,
        "regions": list(r.regions),
        "counterparts": list(r.counterparts),
        "sign_kid": r.sign_kid.hex(),
        "box_kid": r.box_kid.hex(),
        "valid_from": r.valid_from,
        "valid_until": r.valid_until,
        "signer": r.signer,
        "revoked": directory.revoked_at(r.office_id, r.sign_kid) is not None,
        "status": "valid" if problem is None else problem,
    }
