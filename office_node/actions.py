"""What an officer does on a node: post, reply, import a watch list, check at the
border, mark read, acknowledge a FLASH. Each is checked, done and written to the audit
log here; ``office_node/api.py`` only translates HTTP to these methods.

What leaves the node goes through ``office_node/sending.py``; what officers only read
is ``office_node/reads.py``'s.

(The audit log's action names are ``office_node.audit``'s, imported as ``audit`` here;
elsewhere they are often imported as ``actions``.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import Counter

from bus import Bulletin, Directory, Rng, parse_watchlist, watchlist_bulletins
from bus.errors import ValidationError
from bus.transport import BusNode
from office_node import audit
from office_node.accounts import Principal
from office_node.audit import AuditLog
from office_node.compose import Draft, draft_from_request, recipients_of, reply_request
from office_node.flash import FlashAcks
from office_node.lookouts import Lookouts
from office_node.sending import Sending
from office_node.store import SENT, Store

WATCHLIST_FIELDS = frozenset({"csv", "to", "feed", "releasable_to", "tlp", "grading", "precedence", "default_country"})


class OfficerActions:
    def __init__(
        self,
        office: str,
        store: Store,
        audit_log: AuditLog,
        *,
        sending: Sending,
        bus: BusNode,
        directory: Directory,
        lookouts: Lookouts,
        flash: FlashAcks,
        check_count: Counter,
        publish: Callable[[str, dict[str, Any]], None],
        clock: Callable[[], int],
        rng: Rng,
    ) -> None:
        self.office = office
        self.store = store
        self.audit = audit_log
        self.sending = sending
        self.bus = bus
        self.directory = directory
        self.lookouts = lookouts
        self.flash = flash
        self.check_count = check_count
        self.publish = publish
        self.clock = clock
        self.rng = rng

    async def post(self, principal: Principal, data: Any) -> dict[str, Any]:
        """Validate, seal, queue and record a bulletin; returns its id and outbox state."""
        now = self.clock()
        draft = draft_from_request(data, office=self.office, now_ms=now, rng=self.rng)
        return await self.sending.send_draft(principal.username, draft, audit.BULLETIN_POST)

    async def reply(self, principal: Principal, bulletin_id: str, data: Any) -> dict[str, Any]:
        original = self.store.require(bulletin_id)
        request = reply_request(
            data,
            original_sender=original.sender,
            original_id=original.id,
            own=self.office,
            offices_of_sent=original.recipients,
        )
        draft = draft_from_request(request, office=self.office, now_ms=self.clock(), rng=self.rng)
        return await self.sending.send_draft(principal.username, draft, audit.BULLETIN_POST)

    def check(self, principal: Principal, query: Any) -> dict[str, Any]:
        """A border check against the local index (works with the link down); audited."""
        if not isinstance(query, Mapping):
            raise ValidationError("", 'send the entity to check, e.g. {"type": "document", "number": "P1234567"}')
        now = self.clock()
        result = self.lookouts.check(query, now)
        self.check_count.labels(result="flagged" if result["flagged"] else "clear").inc()
        what = " ".join(str(v) for k, v in sorted(query.items()) if k != "type" and isinstance(v, str | int | float))
        self.audit.append(
            principal.username,
            audit.CHECK,
            target=f"{query.get('type')} {what}"[:200],
            details={"matches": [m["bulletin_id"] for m in result["matches"]][:20]},
            now_ms=now,
        )
        return result

    async def import_watchlist(self, principal: Principal, data: Any) -> dict[str, Any]:
        """A watch list (CSV, schemas/WATCHLIST.md) becomes one lookout bulletin per good
        row, sent to ``to`` (default: every office of this node's country in the
        directory) and/or a feed. Bad rows are reported by line; good rows go out."""
        _check_watchlist_request(data)
        now = self.clock()
        # Phones written without + are read in this node's country unless the list says otherwise.
        parsed = parse_watchlist(data["csv"], now_ms=now, default_country=data.get("default_country") or self.office[:2])
        offices, feeds = recipients_of(data.get("to") or self._own_offices(now), data.get("feed"), office=self.office)
        releasable = data.get("releasable_to") or sorted({self.office[:2], *(o[:2] for o in offices)})
        options = {k: data[k] for k in ("tlp", "grading", "precedence") if data.get(k)}
        drafts = [
            Draft(Bulletin.from_dict(d), offices, feeds)
            for d in watchlist_bulletins(parsed.entries, sender=self.office, now_ms=now, releasable_to=releasable, **options)
        ]
        for draft in drafts:  # before anything is queued: a refused list sends nothing
            self.sending.check_handling(principal.username, draft, audit.WATCHLIST_IMPORT)
        bulletins = [d.bulletin for d in drafts]
        await self.sending.send_many(bulletins, offices, feeds, now=now)
        self.audit.append(
            principal.username,
            audit.WATCHLIST_IMPORT,
            target=",".join(sorted({e.list_id for e in parsed.entries}))[:200],
            details={"entries": len(bulletins), "bad_rows": len(parsed.errors), "to": list(offices), "feed": data.get("feed")},
            now_ms=now,
        )
        return {
            "imported": len(bulletins),
            "recipients": [*offices, *feeds],
            "errors": [{"line": e.line, "column": e.column, "reason": e.reason, "message": e.message} for e in parsed.errors],
        }

    def _own_offices(self, now: int) -> list[str]:
        """The offices of this node's country that the directory vouches for today."""
        out = []
        for r in self.directory.records():
            if r.role == "office" and r.country == self.office[:2] and r.office_id != self.office:
                keys = self.directory.sender_keys(r.office_id, r.sign_kid)
                if keys is not None and keys.problem_at(now) is None:
                    out.append(r.office_id)
        return sorted(out)

    async def mark_read(self, principal: Principal, bulletin_id: str) -> dict[str, Any]:
        """Record that an officer read it; the first read here sends a read receipt."""
        stored = self.store.require(bulletin_id)
        now = self.clock()
        first = self.store.mark_read(bulletin_id, by=principal.username, at_ms=now)
        if first and stored.direction != SENT:
            await self.bus.send_read_receipt(bulletin_id, stored.sender, stored.precedence)
        self.audit.append(principal.username, audit.BULLETIN_READ, target=bulletin_id, now_ms=now)
        if first:
            self.publish("read", {"id": bulletin_id, "by": principal.username, "at": now})
        return {"ok": True, "first": first}

    async def acknowledge(self, principal: Principal, bulletin_id: str) -> dict[str, Any]:
        """An officer here acknowledges a FLASH received: recorded (the first officer is
        kept), read, and answered with a signed ``acknowledged`` receipt to its sender."""
        stored = self.store.require(bulletin_id)
        if stored.direction == SENT:
            raise ValidationError("id", "this node sent that bulletin: its recipients acknowledge it, not its sender")
        if stored.precedence != "FLASH":
            raise ValidationError("id", f"only a FLASH is acknowledged; this one is {stored.precedence}: mark it read")
        now = self.clock()
        await self.mark_read(principal, bulletin_id)
        first = self.flash.acknowledge(bulletin_id, by=principal.username, at_ms=now)
        if first:
            await self.bus.send_acknowledgement(bulletin_id, stored.sender, stored.precedence)
            self.audit.append(principal.username, audit.FLASH_ACKNOWLEDGE, target=bulletin_id, now_ms=now)
            self.publish("acknowledged", {"id": bulletin_id, "by": principal.username, "at": now})
        return {"ok": True, "first": first, "acknowledged": self.flash.acknowledgement(bulletin_id)}


def _check_watchlist_request(data: Any) -> None:
    """A watch-list import request carries its CSV and only the fields it may."""
    if not isinstance(data, Mapping) or not isinstance(data.get("csv"), str):
        raise ValidationError("csv", "send the watch list's CSV text in the field csv")
    for key in data:
        if key not in WATCHLIST_FIELDS:
            raise ValidationError(str(key)[:64], f"is not a watch-list import field; use {', '.join(sorted(WATCHLIST_FIELDS))}")
