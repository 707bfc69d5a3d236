"""What officers read on a node: a bulletin and its attachments, lists and searches,
the outbox, the directory, the feeds, the quarantine, the lookout hits, who they are.

Nothing here changes what the node holds; reading a bulletin, one of its attachments
or a search is written to the audit log. The JSON shapes are ``office_node/views.py``'s
(pure functions of stored values); this module fetches what they show.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bus import Directory
from bus.errors import ValidationError
from bus.transport import BusNode
from office_node import audit, i18n, views
from office_node.accounts import Principal
from office_node.attachments import NodeAttachments
from office_node.audit import AuditLog
from office_node.feeds import NodeFeeds
from office_node.flash import FlashAcks
from office_node.store import SENT, BulletinQuery, Store, StoredBulletin

#: The newest quarantine entries the quarantine view lists (its counts cover all).
QUARANTINE_SHOWN = 200


class Reads:
    def __init__(
        self,
        office: str,
        role: str,
        store: Store,
        audit_log: AuditLog,
        *,
        bus: BusNode,
        directory: Directory,
        feeds: NodeFeeds,
        flash: FlashAcks,
        attachments: NodeAttachments,
        clock: Callable[[], int],
    ) -> None:
        self.office = office
        self.role = role
        self.store = store
        self.audit = audit_log
        self.bus = bus
        self.directory = directory
        self.feeds = feeds
        self.flash = flash
        self.attachments = attachments
        self.clock = clock

    def view(self, principal: Principal, bulletin_id: str) -> dict[str, Any]:
        stored = self.store.require(bulletin_id)
        self.audit.append(principal.username, audit.BULLETIN_VIEW, target=bulletin_id, now_ms=self.clock())
        status = self.bus.status(bulletin_id) if stored.direction == SENT else None
        out = {
            **views.detail(stored, status),
            "acknowledged": self.flash.acknowledgement(bulletin_id),
            "escalations": self.flash.escalations(bulletin_id),
        }
        files, complete = self.attachments.describe(stored.bulletin, sent=stored.direction == SENT)
        out["bulletin"] = {**stored.bulletin, "attachments": files} if files else stored.bulletin
        out["attachments"], out["complete"] = files, complete
        return out

    def attachment(self, principal: Principal, bulletin_id: str, n: Any) -> tuple[StoredBulletin, Any]:
        """A stored bulletin's attachment ``n`` (its entry), once complete here; audited."""
        stored = self.store.require(bulletin_id)
        entry = self.attachments.entry(stored.bulletin, n)
        self.audit.append(
            principal.username, audit.BULLETIN_VIEW, target=bulletin_id, now_ms=self.clock(),
            details={"attachment": int(n), "name": entry.name[:100]},
        )  # fmt: skip
        return stored, entry

    def list_bulletins(self, principal: Principal, params: Mapping[str, str]) -> dict[str, Any]:
        query = BulletinQuery.from_params(params)
        page = self.store.list_bulletins(query)
        if query.text:
            self.audit.append(principal.username, audit.SEARCH, target=query.text[:200], now_ms=self.clock())
            return {"items": views.search_results(page.items, query.text), "next": page.next_cursor}
        return {"items": [views.summary(b) for b in page.items], "next": page.next_cursor}

    def search(self, principal: Principal, params: Mapping[str, str]) -> dict[str, Any]:
        text = params.get("q", "")
        if not text.strip():
            raise ValidationError("q", "give the text to search for")
        rest = {k: v for k, v in params.items() if k != "q"}
        return self.list_bulletins(principal, {**rest, "q": text})

    def outbox(self, *, limit: int = 50) -> dict[str, Any]:
        page = self.store.list_bulletins(BulletinQuery(direction=SENT, limit=limit))
        items = [views.outbox_item(b, self.bus.status(b.id)) for b in page.items]
        return {"items": items, "depth": self.bus.outbox.depth() if self.bus.outbox else 0}

    def directory_view(self) -> dict[str, Any]:
        now = self.clock()
        return {"offices": [views.directory_entry(self.directory, r, now) for r in self.directory.records()]}

    def feeds_view(self) -> dict[str, Any]:
        return {"feeds": self.feeds.view()}

    def quarantine_view(self) -> dict[str, Any]:
        q = self.bus.quarantine
        entries = q.entries() if q is not None else []
        return {
            "counts": q.counts() if q is not None else {},
            "items": [
                {
                    "id": e.qid,
                    "subject": e.subject,
                    "reason": e.reason,
                    "message": e.message,
                    "retryable": e.retryable,
                    "bytes": len(e.raw),
                    "first_seen": e.first_seen,
                    "last_seen": e.last_seen,
                    "attempts": e.attempts,
                }
                for e in entries[-QUARANTINE_SHOWN:]
            ],
        }

    def hits_view(self, *, limit: int = 100) -> dict[str, Any]:
        items = []
        for hit in self.store.hits(limit=limit):
            lookout = self.store.get(hit.lookout_id)
            bulletin = self.store.get(hit.bulletin_id)
            items.append(
                {
                    **hit.to_json(),
                    "lookout_title": lookout.title if lookout else None,
                    "bulletin_title": bulletin.title if bulletin else None,
                    "precedence": lookout.precedence if lookout else None,
                }
            )
        return {"items": items}

    def me(self, principal: Principal) -> dict[str, Any]:
        return {
            "user": principal.user.to_json(),
            "office": self.office,
            "role": self.role,
            "csrf_token": principal.csrf_token,
            "via": principal.via,
            "languages": [{"tag": tag, "name": i18n.NAMES[tag]} for tag in i18n.LANGUAGES],
        }
