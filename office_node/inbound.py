"""What arrives from the bus, from admission to stored, queued for triage and alerted:
the office node's side of ``bus.transport.NodeHooks``.

* ``admit``: what this node refuses even from a verified sender (the bus quarantines it
  with the reason): a bulletin its handling rules say should never have come here, and
  a forward that is not a centre's or whose carried original does not stand;
* ``on_bulletin``: a bulletin opened, verified and admitted is stored, queued for a
  centre's triage, shown live, applied when it is a feed-membership request or outcome,
  and checked for lookout hits;
* ``on_state``: receipts for bulletins this node sent (delivered, read, a FLASH
  acknowledged: on the audit record);
* ``on_escalation``: a FLASH this node sent that no person acknowledged in time.

Crash safety: what arrives is stored before it is acknowledged to JetStream (the bus
calls ``on_bulletin``, then ``db.sync`` once for the fetched batch, and only then acks
it), so a crash never loses a bulletin the server thinks delivered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bus import RECIPIENT_FEED, Opened, check_receive
from bus.transport import ACKNOWLEDGED, Escalation, StateChange
from office_node import audit, views
from office_node.attachments import NodeAttachments
from office_node.audit import AuditLog
from office_node.centre import Centre
from office_node.db import Database
from office_node.feeds import MEMBERSHIP_TAG, OUTCOME_TAG
from office_node.lookouts import HitAlerts
from office_node.provenance import ForwardChecks
from office_node.sending import Sending
from office_node.store import RECEIPT_KINDS, Store
from office_node.triage import Triage


class Inbound:
    def __init__(
        self,
        office: str,
        db: Database,
        store: Store,
        audit_log: AuditLog,
        *,
        is_centre: bool,
        attachments: NodeAttachments,
        centre: Centre,
        triage: Triage,
        forwards: ForwardChecks,
        hits: HitAlerts,
        sending: Sending,
        publish: Callable[[str, dict[str, Any]], None],
        clock: Callable[[], int],
    ) -> None:
        self.office = office
        self.db = db
        self.store = store
        self.audit = audit_log
        self.is_centre = is_centre
        self.attachments = attachments
        self.centre = centre
        self.triage = triage
        self.forwards = forwards
        self.hits = hits
        self.sending = sending
        self.publish = publish
        self.clock = clock

    def admit(self, subject: str, opened: Opened) -> None:
        """What this node refuses even from a verified sender (quarantined with the reason):
        a bulletin its handling rules say should never have come here, and a forward
        that is not a centre's or whose carried original does not stand."""
        b = opened.bulletin
        via = opened.opened_via
        check_receive(b, self.office[:2], via_feed=via.id if via.kind == RECIPIENT_FEED else None)
        if b.forwarded is not None:
            self.forwards.admit(b)

    async def on_bulletin(self, opened: Opened) -> None:
        now = self.clock()
        b = opened.bulletin
        self.attachments.queue_received(opened)  # first: queueing twice is harmless, not at all is not
        # Stored without waiting for the disk: the bus calls db.sync (settle) once for the
        # whole fetched batch, before acking it. The rarer writes below stay durable.
        with self.db.deferred():
            new = self.store.save_received(opened, sealed=opened.sealed, received_at=now, feed=None)
            if new and b.forwarded is not None:
                self.forwards.record(b)
            queued = new and self.is_centre and self.centre.is_own_office(b.sender)
            queued = queued and self.triage.add(b.id, at_ms=now)
        if new:
            stored = self.store.get(b.id)
            if stored is not None:
                self.publish("bulletin", views.summary(stored))
            if queued:
                self.publish("triage", {"id": b.id, "state": "new"})
            if self.is_centre and MEMBERSHIP_TAG in b.tags:
                await self.centre.apply_membership_request(b)
            if self.is_centre and OUTCOME_TAG in b.tags:
                self.centre.take_membership_outcome(b)
            await self.hits.index(b, now, self.sending.send_draft)

    def on_state(self, changes: list[StateChange]) -> None:
        receipts = [(c.bulletin_id, c.recipient, c.state, c.at) for c in changes if c.state in RECEIPT_KINDS]
        if receipts:  # one transaction for a whole signed receipt, not one per bulletin it covers
            self.store.record_receipts(receipts, received_at=self.clock(), verified=True)
        for change in changes:
            if change.state == ACKNOWLEDGED:  # a person at the recipient answered for it: on the record
                self.audit.append(
                    f"office:{change.recipient}", audit.FLASH_ACKNOWLEDGED, target=change.bulletin_id,
                    details={"signed_at": change.at}, now_ms=self.clock(),
                )  # fmt: skip
            self.publish("state", views.state_event(change))

    def on_escalation(self, esc: Escalation) -> None:
        message = f"FLASH {esc.bulletin_id} not acknowledged by {', '.join(esc.missing)}"
        self.publish("escalation", {"id": esc.bulletin_id, "missing": list(esc.missing), "message": message})
