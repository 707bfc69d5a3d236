"""How a bulletin leaves this node: its handling rules checked (a refusal audited: who
tried to send what where), then sealed, queued in the outbox, stored as sent, audited,
shown on the page, and the hits it raises here alerted.

Every bulletin this node sends goes this way: an officer's post, reply or watch list, a
centre's forward, feed change or draft, a hit notice, a FLASH escalation notice.

Crash safety: the outbox (``outbox.db``, the bus's) and the store (``node.db``) are
separate files. A crash between queueing a bulletin and recording it as sent can leave
it sent but missing from the sent list; it is never lost or sent twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bus import Bulletin, check_send
from bus.errors import HandlingRefused
from bus.transport import BusNode
from office_node import audit, views
from office_node.attachments import NodeAttachments
from office_node.audit import AuditLog
from office_node.compose import Draft
from office_node.feeds import NodeFeeds
from office_node.lookouts import HitAlerts
from office_node.provenance import ForwardChecks
from office_node.store import Store

#: Bulletins sealed, queued and stored in one transaction by ``send_many``.
BATCH = 500


class Sending:
    def __init__(
        self,
        bus: BusNode,
        store: Store,
        audit_log: AuditLog,
        *,
        attachments: NodeAttachments,
        feeds: NodeFeeds,
        hits: HitAlerts,
        forwards: ForwardChecks,
        publish: Callable[[str, dict[str, Any]], None],
        clock: Callable[[], int],
    ) -> None:
        self.bus = bus
        self.store = store
        self.audit = audit_log
        self.attachments = attachments
        self.feeds = feeds
        self.hits = hits
        self.forwards = forwards
        self.publish = publish
        self.clock = clock

    def check_handling(self, actor: str, draft: Draft, action: str) -> None:
        """The handling rules for one bulletin and its recipients; a refusal is audited
        (who tried to send what where) and raised."""
        b = draft.bulletin
        try:
            check_send(b, offices=draft.offices, feeds=[self.feeds.scope(f) for f in draft.feeds])
        except HandlingRefused as exc:
            self.audit.append(
                actor,
                audit.BULLETIN_REFUSED,
                target=b.id,
                details={"rule": exc.reason, "to": list(draft.offices), "feeds": list(draft.feeds), "tlp": b.tlp,
                         "releasable_to": list(b.releasable_to), "attempted": action},
                now_ms=self.clock(),
            )  # fmt: skip
            raise

    async def send_draft(self, actor: str, draft: Draft, action: str) -> dict[str, Any]:
        """Check the handling rules, then seal, queue, store and audit one bulletin; raise
        the hits it causes. A refusal is audited (who tried to send what where) and raised."""
        b = draft.bulletin
        self.check_handling(actor, draft, action)
        self.attachments.check_sendable(b)
        posted = await self.bus.submit(b, offices=draft.offices, feeds=draft.feeds)
        self.attachments.queue_sent(b, posted.recipients)
        feed = draft.feeds[0] if draft.feeds else None
        self.store.save_sent(b, sealed=posted.sealed, recipients=list(draft.recipients), feed=feed, sent_at=posted.posted_at)
        if b.forwarded is not None:  # a centre's own forward is shown by the same rule as its members'
            self.forwards.record(b)
        self.audit.append(
            actor,
            action,
            target=b.id,
            details={"to": list(draft.offices), "feed": feed, "precedence": b.precedence, "tlp": b.tlp, "kind": b.kind},
            now_ms=posted.posted_at,
        )
        stored = self.store.get(b.id)
        if stored is not None:
            self.publish("bulletin", views.summary(stored))
        await self.hits.index(b, posted.posted_at, self.send_draft)
        return {"id": b.id, "state": "queued", "recipients": list(draft.recipients)}

    async def send_many(
        self, bulletins: Sequence[Bulletin], offices: tuple[str, ...], feeds: tuple[str, ...], *, now: int
    ) -> None:
        """Many bulletins (checked by the caller) to the same recipients: sealed, queued
        and stored as sent ``BATCH`` at a time, their hits raised. The caller audits the
        whole (one entry for a watch list, not one per row)."""
        recipients = [*offices, *feeds]
        feed = feeds[0] if feeds else None
        for start in range(0, len(bulletins), BATCH):
            chunk = bulletins[start : start + BATCH]
            posted = await self.bus.submit_many([(b, offices, feeds) for b in chunk])
            self.store.save_sent_many([(p.bulletin, p.sealed, recipients, feed, p.posted_at) for p in posted])
            for b in chunk:
                await self.hits.index(b, now, self.send_draft)
