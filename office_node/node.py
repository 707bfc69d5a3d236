"""``OfficeNode``: one office's (or centre's) running node, the object ``blo node run`` runs.

It owns the parts and their life cycle, and turns what officers do into bus operations::

    keys/identity.json ─ Identity             signs as this office
    keys/inbox.keys ─ InboxKeyKeeper          its inbox keys (what it opens with), rotated and published
    data/directory.json ─ Directory           verified local copy, kept current from NATS KV
    data/outbox.db, quarantine.db ─ BusNode   outbox, consumers, receipts, embedded nats-server
    data/node.db ─ Store, Accounts, AuditLog  bulletins and search, officers, the audit trail
    LiveHub                                   server-sent events for the web page and CLI

Every officer action (post, reply, read, view, search) is checked, done and written to
the audit log here; ``office_node/api.py`` only translates HTTP to these methods.

What arrives from the bus is stored before it is acknowledged to JetStream (``BusNode``
calls ``_on_bulletin`` first), so a crash never loses a bulletin the server thinks
delivered. Outbox (``outbox.db``) and store (``node.db``) are separate files: a crash
between queueing a post and recording it as sent can leave a bulletin sent but missing
from the sent list; it is never lost or sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

import nacl.utils
from prometheus_client import CollectorRegistry, Counter, Gauge

from bus import (
    ORIGINAL_REFUSED,
    RECIPIENT_FEED,
    Bulletin,
    Directory,
    FeedScope,
    Hit,
    Identity,
    Opened,
    Provenance,
    Rng,
    check_receive,
    check_send,
    parse_watchlist,
    verify_forward,
    wall_ms,
    watchlist_bulletins,
)
from bus.errors import BloError, ForwardRefused, HandlingRefused, NotFound, ValidationError
from bus.transport import (
    ACKNOWLEDGED,
    BusClient,
    BusMetrics,
    BusNode,
    ClientConfig,
    DirectoryCache,
    DirectoryMetrics,
    DirectoryWatcher,
    Escalation,
    FeedMetrics,
    InboxKeyKeeper,
    NodeHooks,
    NodeOptions,
    StateChange,
    TransferMetrics,
)
from office_node import audit as actions
from office_node import i18n, views
from office_node.accounts import INTERACTIVE, Accounts, HashLimits, Principal
from office_node.attachments import NodeAttachments
from office_node.audit import AuditLog
from office_node.centre import Centre
from office_node.compose import Draft, draft_from_request, recipients_of, reply_request
from office_node.config import NodeConfig
from office_node.db import Database, open_database
from office_node.feeds import MEMBERSHIP_TAG, OUTCOME_TAG, NodeFeeds
from office_node.flash import FlashAcks, FlashTimers, FlashWatch, Notice
from office_node.heartbeats import Heartbeats
from office_node.home import NodeHome, node_paths
from office_node.live import LiveHub
from office_node.lookouts import Lookouts, hit_notice_request, notice_decision
from office_node.store import RECEIPT_KINDS, SENT, BulletinQuery, HitRecord, Store, StoredBulletin
from office_node.triage import Triage

log = logging.getLogger("blo.node")
VERSION = "0.1.0"
#: How often the directory watcher checks that the link it watches over is still the same.
LINK_CHECK_S = 1.0


WATCHLIST_FIELDS = frozenset({"csv", "to", "feed", "releasable_to", "tlp", "grading", "precedence", "default_country"})


class OfficeNode:
    def __init__(
        self,
        home: NodeHome,
        config: NodeConfig,
        identity: Identity,
        *,
        clock: Callable[[], int] = wall_ms,
        rng: Rng = nacl.utils.random,
        hash_limits: HashLimits = INTERACTIVE,
        options: NodeOptions | None = None,
    ) -> None:
        if identity.office_id != config.office:
            raise ValidationError(
                "node.office", f"{config.source}: says {config.office} but the key file is {identity.office_id}'s"
            )
        self.home = home
        self.config = config
        self.identity = identity
        self.office = identity.office_id
        self.clock = clock
        self.rng = rng
        self.hash_limits = hash_limits
        self.registry = CollectorRegistry()
        self.bus_metrics = BusMetrics(self.registry)
        self.directory_metrics = DirectoryMetrics(self.registry)
        self.feed_metrics = FeedMetrics(self.registry)
        self.transfer_metrics = TransferMetrics(self.registry)
        self._quarantine_held = Gauge(
            "blo_quarantine_held", "Messages held in quarantine now", ["reason"], registry=self.registry
        )
        self.hit_count = Counter(
            "blo_lookout_hits", "New bulletins naming the subject of an active lookout", ["strength"], registry=self.registry
        )
        self.check_count = Counter(
            "blo_checks", "Border checks answered from the local index", ["result"], registry=self.registry
        )
        self.live = LiveHub()
        self._forwards_checked: dict[str, Provenance] = {}  # bulletin id -> its forward check (_admit)
        self.directory: Directory
        self.cache: DirectoryCache
        self.db: Database | None = None
        self.store: Store
        self.accounts: Accounts
        self.audit: AuditLog
        self.bus: BusNode
        self._options = options
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.started_at: int | None = None

    # -- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Open the stores and start the bus; returns without waiting for the link."""
        paths = node_paths(self.home.root, self.config.data_dir)
        self.config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.db = open_database(paths.db)
        self.store = Store(self.db)
        self.accounts = Accounts(self.db, limits=self.hash_limits)
        self.audit = AuditLog.open(self.db, paths.audit_key, head_path=paths.audit_head)
        self.lookouts = Lookouts(self.store, self.office)
        self.flash = FlashAcks(self.db)
        indexed = await asyncio.to_thread(self.lookouts.rebuild)
        log.info("lookout index: %d bulletins", indexed)
        self.directory, self.cache = self.home.open_directory(self.config)
        # Its inbox keys (schemas/INBOX.md): loaded, and a key made if one is due, before the
        # bus opens or seals anything; published by _keep_inbox_keys once connected.
        self.inbox = InboxKeyKeeper(
            self.identity, self.directory, self.home.inbox_ring_path, clock=self.clock, rng=self.rng
        )
        self.inbox.refresh()
        # What this node opens bulletins and feed grants with: the ring's inbox key pairs, a
        # live mapping (keys made or erased take effect at once). In wire format v2 nothing
        # is wrapped to the identity's own encryption key (TRUST.md section 4).
        inbox_keys = self.inbox.box_keys
        c = self.config
        client_config = (
            ClientConfig.from_settings(c.nats, name=f"blo-{self.office}") if not c.nats.embedded else None
        )
        options = self._options or NodeOptions(
            # The feeds it reads are NodeFeeds' to start (office_node/feeds.py): c.feeds and
            # the office's memberships, each once an epoch key is held.
            flash_ack_timeout_s=c.flash_ack_timeout_s,
            embedded_port=c.nats.embedded_port,
            # Under a least-privilege NATS user the operator creates the streams (blo deploy streams).
            ensure_streams=c.nats.create_streams,
        )
        self.bus = BusNode(
            self.identity,
            self.directory,
            c.data_dir,
            client_config=client_config,
            options=options,
            hooks=NodeHooks(
                on_bulletin=self._on_bulletin,
                on_escalation=self._on_escalation,
                on_state=self._on_state,
                admit=self._admit,
                key_pending=lambda feed, epoch: self.feeds.keyring.key_may_arrive(feed, epoch),
                settle=self.db.sync,
            ),
            metrics=self.bus_metrics,
            clock=self.clock,
            rng=self.rng,
            box_keys=inbox_keys,
        )
        is_centre = c.role == "centre"
        self.triage = Triage(self.db)
        self.centre = Centre(self)
        self.feeds = NodeFeeds(
            self.identity,
            self.directory,
            self.bus,
            keys_dir=self.home.keys_dir,
            data_dir=c.data_dir,
            is_centre=is_centre,
            metrics=self.feed_metrics,
            clock=self.clock,
            rng=self.rng,
            on_change=self.live.publish,
            configured=c.feeds,
            inbox_keys=inbox_keys,
        )
        # FEEDS.md 6.2 and 7.2: the epoch this node seals a feed bulletin under, and which
        # feed bulletins it accepts (only the owner's and the writers', none stale).
        self.bus.hooks.feed_rules = self.feeds.keyring
        self.feeds.load()  # the epoch keys held locally, before the bus opens anything
        # An inbox key outlives its keeping time while a grant of an epoch still in use is
        # wrapped to it (FEEDS.md 7.3); once keys are erased, no wrap key derived from them
        # stays in the opener's memory.
        self.inbox.still_needed = lambda kid: kid in self.feeds.keyring.inbox_kids_in_use(self.clock())
        self.inbox.on_change = self.bus.forget_keys
        self.started_at = self.clock()
        self.heartbeats = Heartbeats(
            self.identity,
            self.directory,
            self.bus,
            self.db,
            is_centre=is_centre,
            version=VERSION,
            started_at=self.started_at,
            every_s=c.heartbeat_every_s,
            silent_after_s=c.silent_after_s,
            clock=self.clock,
            on_heartbeat=lambda data: self.live.publish("heartbeat", data),
        )
        self.directory.add_listener(self._directory_changed)
        await self.bus.start()
        streams = [s.max_age_s for s in self.bus.options.streams if s.name in ("BLO_OFFICES", "BLO_FEEDS")]
        self.attachments = NodeAttachments(
            self.office,
            c.data_dir,
            limits=c.attachment_limits,
            bucket_max_age_s=max(streams, default=30 * 86_400.0),  # attachments live as long as bulletins
            ensure_buckets=self.bus.options.ensure_streams,
            quarantine=self.bus.quarantine,
            metrics=self.transfer_metrics,
            publish=self.live.publish,
            rng=self.rng,
        )
        assert self.bus.client is not None
        self._spawn(self.attachments.transfers.run(self.bus.client), "blo-attachments")
        self.audit.append(f"node:{self.office}", actions.NODE_START, target=self.office, now_ms=self.started_at)
        stopping = self._is_closing
        self._spawn(self._while_connected(self._watch_directory), "blo-directory")
        self._spawn(self._while_connected(self._keep_inbox_keys), "blo-inbox-keys")
        self._spawn(self._while_connected(lambda client: self.feeds.watch(client, stop=stopping)), "blo-feeds")
        self._spawn(self.heartbeats.run_publisher(stopping), "blo-heartbeat")
        self._spawn(self._flash_watch().run(min(5.0, max(0.05, c.flash_ack_timeout_s / 4))), "blo-flash-escalation")
        if is_centre:
            self._spawn(self.heartbeats.run_consumer(), "blo-heartbeats-in")
            self._spawn(self._rotate_feeds(), "blo-feed-rotation")
            if c.misp is not None:
                self._spawn(self.centre.run_bridge(stopping), "blo-misp-bridge")

    def _directory_changed(self, change: Any) -> None:
        """A revocation: what this node already took in from that office is judged again by
        when each bulletin was stored (TRUST.md section 5: "compromised since"); those that
        no longer stand are flagged in the store, shown so, and written to the audit log."""
        if change.status != "revoked":
            return
        flagged = self.store.reverify_sender(change.office_id, self.directory, now_ms=self.clock())
        if flagged:
            log.warning(
                "%d bulletins from %s arrived after its key %s was revoked; flagged as unverified",
                len(flagged), change.office_id, change.kid.hex(),
            )
            for bid in flagged:
                self.audit.append(
                    f"node:{self.office}", actions.BULLETIN_REFUSED, target=bid, now_ms=self.clock(),
                    details={"reason": "sender_key_revoked", "sender": change.office_id, "kid": change.kid.hex()},
                )
            self.live.publish("revoked", {"office": change.office_id, "flagged": flagged})

    def _is_closing(self) -> bool:
        return self._closing

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def close(self) -> None:
        """Graceful stop: end live streams, stop the watchers and the bus (queued
        messages stay in the outbox for the next start), close the database."""
        self._closing = True
        self.live.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if hasattr(self, "attachments"):
            self.attachments.close()
        if hasattr(self, "bus"):
            await self.bus.close()
        if self.db is not None:
            with contextlib.suppress(BloError):
                self.audit.append(f"node:{self.office}", actions.NODE_STOP, target=self.office, now_ms=self.clock())
            self.db.close()
            self.db = None

    async def __aenter__(self) -> OfficeNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _while_connected(self, work: Callable[[BusClient], Any]) -> None:
        """Run ``work(client)`` whenever the link is up, again after every reconnect (the
        KV watches replay their bucket, and applying a known item is a no-op)."""
        while not self._closing:
            client = self.bus.client
            if client is None or not await client.wait_connected(LINK_CHECK_S):
                continue
            try:
                await work(client)
            except asyncio.CancelledError:
                raise
            except Exception:  # a watcher's failure must not end the node: retry
                log.exception("background work on the bus failed; retrying")
                await asyncio.sleep(LINK_CHECK_S)

    async def _watch_directory(self, client: BusClient) -> None:
        watcher = DirectoryWatcher(
            client.jetstream(),
            self.directory,
            cache=self.cache,
            metrics=self.directory_metrics,
            create_bucket=self.config.role == "centre",
            clock=self.clock,
        )
        await watcher.watch_while(lambda: not self._closing and client.connected, check_s=LINK_CHECK_S)

    async def _keep_inbox_keys(self, client: BusClient) -> None:
        await self.inbox.run(client.jetstream(), lambda: not self._closing and client.connected, check_s=LINK_CHECK_S)

    async def _rotate_feeds(self) -> None:
        """A centre's timer: every feed it owns gets a fresh epoch key at least every
        ``[feeds] rotate_hours``."""
        period_ms = int(self.config.feed_rotate_hours * 3_600_000)
        while not self._closing:
            try:
                for issue in await self.feeds.rotate_due(period_ms):
                    self.audit.append(
                        f"node:{self.office}", actions.FEED_ROTATE, target=issue.feed,
                        details={"epoch": issue.epoch, "reason": "timer"}, now_ms=self.clock(),
                    )  # fmt: skip
            except Exception:
                log.exception("feed rotation failed")
            await asyncio.sleep(min(60.0, max(1.0, period_ms / 1000 / 10)))

    # -- from the bus ------------------------------------------------------------------

    def _admit(self, subject: str, opened: Opened) -> None:
        """What this node refuses even from a verified sender (quarantined with the reason):
        a bulletin its handling rules say should never have come here, and a forward
        that is not a centre's or whose carried original does not stand."""
        b = opened.bulletin
        via = opened.opened_via
        check_receive(b, self.office[:2], via_feed=via.id if via.kind == RECIPIENT_FEED else None)
        if b.forwarded is not None:
            record = self.directory.record(b.sender)
            if record is None or record.role != "centre":
                raise ForwardRefused(f"{b.sender} forwarded {b.id} but is not a centre; only centres forward", "not_centre")
            # Raises ForwardRefused when the original does not stand; what it found is kept
            # for _record_provenance, so a forward is checked once on its way in.
            if len(self._forwards_checked) >= 1024:  # admitted but never handed over (duplicates)
                self._forwards_checked.clear()
            self._forwards_checked[b.id] = verify_forward(b, self.directory)

    async def _on_bulletin(self, opened: Opened) -> None:
        now = self.clock()
        b = opened.bulletin
        self.attachments.queue_received(opened)  # first: queueing twice is harmless, not at all is not
        # Stored without waiting for the disk: the bus calls db.sync (settle) once for the
        # whole fetched batch, before acking it. The rarer writes below stay durable.
        with self.db.deferred():
            new = self.store.save_received(opened, sealed=opened.sealed, received_at=now, feed=None)
            if new and b.forwarded is not None:
                self._record_provenance(b)
            queued = new and self.config.role == "centre" and self.centre.is_own_office(b.sender)
            queued = queued and self.triage.add(b.id, at_ms=now)
        if new:
            stored = self.store.get(b.id)
            if stored is not None:
                self.live.publish("bulletin", views.summary(stored))
            if queued:
                self.live.publish("triage", {"id": b.id, "state": "new"})
            if self.config.role == "centre" and MEMBERSHIP_TAG in b.tags:
                await self.centre.apply_membership_request(b)
            if self.config.role == "centre" and OUTCOME_TAG in b.tags:
                self.centre.take_membership_outcome(b)
            await self._hits(opened.bulletin, self.lookouts.add(opened.bulletin, now), now)

    async def _hits(self, bulletin: Bulletin, hits: list[Hit], now: int) -> None:
        """Record and show each hit; tell the lookout's originator when the rules allow."""
        for hit in hits:
            decision = notice_decision(bulletin, hit.lookout.sender, self.office)
            record = HitRecord(
                bulletin.id,
                hit.lookout.bulletin_id,
                hit.entity_index,
                hit.lookout.sender,
                hit.lookout.key_kind,
                hit.lookout.strength,
                now,
                "pending" if decision == "send" else decision,
            )
            if not self.store.save_hit(record):
                continue
            self.hit_count.labels(strength=hit.lookout.strength).inc()
            lookout = self.store.get(hit.lookout.bulletin_id)
            title = lookout.title if lookout is not None else hit.lookout.bulletin_id
            if decision == "send":
                request = hit_notice_request(hit, bulletin, title, own_office=self.office, now_ms=now)
                try:
                    draft = draft_from_request(request, office=self.office, now_ms=now, rng=self.rng)
                    sent = await self.send_draft(f"node:{self.office}", draft, actions.HIT_NOTICE)
                    record = dataclasses.replace(record, notice="sent", notice_id=sent["id"])
                except BloError as exc:
                    log.warning("hit notice to %s not sent: %s", hit.lookout.sender, exc.message)
                    record = dataclasses.replace(record, notice=f"withheld:{exc.reason}")
                self.store.set_hit_notice(record, record.notice, record.notice_id)
            self.live.publish(
                "hit",
                {**record.to_json(), "lookout_title": title, "bulletin_title": bulletin.title, "precedence": hit.lookout.precedence},
            )

    def _on_state(self, changes: list[StateChange]) -> None:
        receipts = [(c.bulletin_id, c.recipient, c.state, c.at) for c in changes if c.state in RECEIPT_KINDS]
        if receipts:  # one transaction for a whole signed receipt, not one per bulletin it covers
            self.store.record_receipts(receipts, received_at=self.clock(), verified=True)
        for change in changes:
            if change.state == ACKNOWLEDGED:  # a person at the recipient answered for it: on the record
                self.audit.append(
                    f"office:{change.recipient}", actions.FLASH_ACKNOWLEDGED, target=change.bulletin_id,
                    details={"signed_at": change.at}, now_ms=self.clock(),
                )  # fmt: skip
            self.live.publish("state", views.state_event(change))

    # -- FLASH: acknowledged by a person, escalated until it is (office_node/flash.py) ----

    def _flash_watch(self) -> FlashWatch:
        c = self.config
        return FlashWatch(
            self.flash,
            sender=self.office,
            watched=self.bus.outbox.flash_watch_ids,
            status=self.bus.status,
            centre_of=self.centre_of,
            send=self._send_flash_notice,
            timers=FlashTimers(c.flash_ack_timeout_s, c.flash_own_centre_after_s),
            clock=self.clock,
        )

    def centre_of(self, office: str) -> str | None:
        """The national centre of ``office``'s country in the directory (None if none is known)."""
        centres = sorted(r.office_id for r in self.directory.records() if r.role == "centre" and r.country == office[:2])
        return centres[0] if centres else None

    async def _send_flash_notice(self, notice: Notice, request: dict[str, Any]) -> str | None:
        try:
            draft = draft_from_request(request, office=self.office, now_ms=self.clock(), rng=self.rng)
            sent = await self.send_draft(f"node:{self.office}", draft, actions.FLASH_ESCALATION)
        except BloError as exc:
            log.error("FLASH %s: the escalation notice to %s could not be sent: %s", notice.bulletin_id, notice.centre, exc.message)
            return None
        log.warning(
            "FLASH %s not acknowledged by %s: %s told (%s)",
            notice.bulletin_id, ", ".join(notice.offices), notice.centre, notice.level,
        )  # fmt: skip
        self.live.publish(
            "escalation",
            {"id": notice.bulletin_id, "missing": list(notice.offices), "level": notice.level, "centre": notice.centre,
             "message": f"FLASH {notice.bulletin_id} not acknowledged by {', '.join(notice.offices)}: {notice.centre} told"},
        )  # fmt: skip
        return str(sent["id"])

    async def acknowledge(self, principal: Principal, bulletin_id: str) -> dict[str, Any]:
        """An officer here acknowledges a FLASH received: recorded (the first officer is
        kept), read, and answered with a signed ``acknowledged`` receipt to its sender."""
        stored = self.stored(bulletin_id)
        if stored.direction == SENT:
            raise ValidationError("id", "this node sent that bulletin: its recipients acknowledge it, not its sender")
        if stored.precedence != "FLASH":
            raise ValidationError("id", f"only a FLASH is acknowledged; this one is {stored.precedence}: mark it read")
        now = self.clock()
        await self.mark_read(principal, bulletin_id)
        first = self.flash.acknowledge(bulletin_id, by=principal.username, at_ms=now)
        if first:
            await self.bus.send_acknowledgement(bulletin_id, stored.sender, stored.precedence)
            self.audit.append(principal.username, actions.FLASH_ACKNOWLEDGE, target=bulletin_id, now_ms=now)
            self.live.publish("acknowledged", {"id": bulletin_id, "by": principal.username, "at": now})
        return {"ok": True, "first": first, "acknowledged": self.flash.acknowledgement(bulletin_id)}

    def _on_escalation(self, esc: Escalation) -> None:
        message = f"FLASH {esc.bulletin_id} not acknowledged by {', '.join(esc.missing)}"
        self.live.publish("escalation", {"id": esc.bulletin_id, "missing": list(esc.missing), "message": message})

    # -- officer actions ---------------------------------------------------------------

    def stored(self, bulletin_id: str) -> StoredBulletin:
        if not isinstance(bulletin_id, str) or len(bulletin_id) > 64:
            raise ValidationError("id", "must be a bulletin id (a 26-character ULID)")
        stored = self.store.get(bulletin_id)
        if stored is None:
            raise NotFound(f"no bulletin {bulletin_id} is stored on this node")
        return stored

    async def post(self, principal: Principal, data: Any) -> dict[str, Any]:
        """Validate, seal, queue and record a bulletin; returns its id and outbox state."""
        now = self.clock()
        draft = draft_from_request(data, office=self.office, now_ms=now, rng=self.rng)
        return await self.send_draft(principal.username, draft, actions.BULLETIN_POST)

    async def reply(self, principal: Principal, bulletin_id: str, data: Any) -> dict[str, Any]:
        original = self.stored(bulletin_id)
        request = reply_request(
            data,
            original_sender=original.sender,
            original_id=original.id,
            own=self.office,
            offices_of_sent=original.recipients,
        )
        draft = draft_from_request(request, office=self.office, now_ms=self.clock(), rng=self.rng)
        return await self.send_draft(principal.username, draft, actions.BULLETIN_POST)

    def _check_handling(self, actor: str, draft: Draft, action: str) -> None:
        """The handling rules for one bulletin and its recipients; a refusal is audited
        (who tried to send what where) and raised."""
        b = draft.bulletin
        try:
            check_send(b, offices=draft.offices, feeds=[self.feed_scope(f) for f in draft.feeds])
        except HandlingRefused as exc:
            self.audit.append(
                actor,
                actions.BULLETIN_REFUSED,
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
        self._check_handling(actor, draft, action)
        self.attachments.check_sendable(b)
        posted = await self.bus.submit(b, offices=draft.offices, feeds=draft.feeds)
        self.attachments.queue_sent(b, posted.recipients)
        feed = draft.feeds[0] if draft.feeds else None
        self.store.save_sent(b, sealed=posted.sealed, recipients=list(draft.recipients), feed=feed, sent_at=posted.posted_at)
        if b.forwarded is not None:  # a centre's own forward is shown by the same rule as its members'
            self._record_provenance(b)
        self.audit.append(
            actor,
            action,
            target=b.id,
            details={"to": list(draft.offices), "feed": feed, "precedence": b.precedence, "tlp": b.tlp, "kind": b.kind},
            now_ms=posted.posted_at,
        )
        stored = self.store.get(b.id)
        if stored is not None:
            self.live.publish("bulletin", views.summary(stored))
        await self._hits(b, self.lookouts.add(b, posted.posted_at), posted.posted_at)
        return {"id": b.id, "state": "queued", "recipients": list(draft.recipients)}

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
            actions.CHECK,
            target=f"{query.get('type')} {what}"[:200],
            details={"matches": [m["bulletin_id"] for m in result["matches"]][:20]},
            now_ms=now,
        )
        return result

    async def import_watchlist(self, principal: Principal, data: Any) -> dict[str, Any]:
        """A watch list (CSV, schemas/WATCHLIST.md) becomes one lookout bulletin per good
        row, sent to ``to`` (default: every office of this node's country in the
        directory) and/or a feed. Bad rows are reported by line; good rows go out."""
        if not isinstance(data, Mapping) or not isinstance(data.get("csv"), str):
            raise ValidationError("csv", "send the watch list's CSV text in the field csv")
        for key in data:
            if key not in WATCHLIST_FIELDS:
                raise ValidationError(str(key)[:64], f"is not a watch-list import field; use {', '.join(sorted(WATCHLIST_FIELDS))}")
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
            self._check_handling(principal.username, draft, actions.WATCHLIST_IMPORT)
        bulletins = [d.bulletin for d in drafts]
        recipients = [*offices, *feeds]
        for start in range(0, len(bulletins), 500):
            chunk = bulletins[start : start + 500]
            posted = await self.bus.submit_many([(b, offices, feeds) for b in chunk])
            feed = feeds[0] if feeds else None
            self.store.save_sent_many([(p.bulletin, p.sealed, recipients, feed, p.posted_at) for p in posted])
            for b in chunk:
                await self._hits(b, self.lookouts.add(b, now), now)
        self.audit.append(
            principal.username,
            actions.WATCHLIST_IMPORT,
            target=",".join(sorted({e.list_id for e in parsed.entries}))[:200],
            details={"entries": len(bulletins), "bad_rows": len(parsed.errors), "to": list(offices), "feed": data.get("feed")},
            now_ms=now,
        )
        return {
            "imported": len(bulletins),
            "recipients": recipients,
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

    async def mark_read(self, principal: Principal, bulletin_id: str) -> dict[str, Any]:
        """Record that an officer read it; the first read here sends a read receipt."""
        stored = self.stored(bulletin_id)
        now = self.clock()
        first = self.store.mark_read(bulletin_id, by=principal.username, at_ms=now)
        if first and stored.direction != SENT:
            await self.bus.send_read_receipt(bulletin_id, stored.sender, stored.precedence)
        self.audit.append(principal.username, actions.BULLETIN_READ, target=bulletin_id, now_ms=now)
        if first:
            self.live.publish("read", {"id": bulletin_id, "by": principal.username, "at": now})
        return {"ok": True, "first": first}

    def view(self, principal: Principal, bulletin_id: str) -> dict[str, Any]:
        stored = self.stored(bulletin_id)
        self.audit.append(principal.username, actions.BULLETIN_VIEW, target=bulletin_id, now_ms=self.clock())
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

    def attachment(self, principal: Principal, bulletin_id: str, n: Any) -> tuple[Any, Any]:
        """A stored bulletin's attachment ``n`` (its entry), once complete here; audited."""
        stored = self.stored(bulletin_id)
        entry = self.attachments.entry(stored.bulletin, n)
        self.audit.append(
            principal.username, actions.BULLETIN_VIEW, target=bulletin_id, now_ms=self.clock(),
            details={"attachment": int(n), "name": entry.name[:100]},
        )  # fmt: skip
        return stored, entry

    def list_bulletins(self, principal: Principal, params: Mapping[str, str]) -> dict[str, Any]:
        query = BulletinQuery.from_params(params)
        page = self.store.list_bulletins(query)
        if query.text:
            self.audit.append(principal.username, actions.SEARCH, target=query.text[:200], now_ms=self.clock())
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

    def feed_scope(self, feed: str) -> FeedScope:
        """A feed as the handling rules see it: the countries of its current members."""
        return FeedScope.of_members(feed, self.feed_members(feed))

    def feed_members(self, feed: str) -> tuple[str, ...]:
        return self.feeds.members(feed)

    def feeds_view(self) -> dict[str, Any]:
        return {"feeds": self.feeds.view()}

    def _record_provenance(self, b: Bulletin) -> None:
        """Check a forward's original against the directory and keep the finding beside
        the centre's own (verified) signature. What a reader is then shown, and as whose
        words, is views.attribution's (ENVELOPE.md 8.1)."""
        try:
            p = self._forwards_checked.pop(b.id, None) or verify_forward(b, self.directory)
            provenance = {
                "state": p.state,
                "forwarded_by": p.forwarded_by,
                "original_id": p.original_id,
                "original_sender": p.original_sender,
                "original_sign_kid": p.original_sign_kid.hex() if p.original_sign_kid else None,
                "original_sent_at": p.original_sent_at,
                "verified": p.verified,
                "redacted": p.redacted,
                "redacted_fields": list(p.redacted_fields),
                "reason": p.reason,
                "text": p.describe(),
            }
        except BloError as exc:
            provenance = {"state": ORIGINAL_REFUSED, "verified": False, "reason": exc.reason, "text": exc.message}
        stored = self.store.get(b.id)
        if stored is not None:
            self.store.set_verification(
                b.id, verified=stored.verified, details={**stored.verification, "provenance": provenance}
            )

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
                for e in entries[-200:]
            ],
        }

    def health(self) -> dict[str, Any]:
        """What the page's status bar and an operator's probe read (no secrets, no content)."""
        bus = getattr(self, "bus", None)
        return {
            "status": "ok",
            "office": self.office,
            "role": self.config.role,
            # connected | stalled | credentials_refused | disconnected (BusNode.link)
            "nats": bus.link if bus is not None else "disconnected",
            "outbox_depth": bus.outbox.depth() if bus is not None and bus.outbox is not None else 0,
            "version": VERSION,
        }

    def me(self, principal: Principal) -> dict[str, Any]:
        return {
            "user": principal.user.to_json(),
            "office": self.office,
            "role": self.config.role,
            "csrf_token": principal.csrf_token,
            "via": principal.via,
            "languages": [{"tag": tag, "name": i18n.NAMES[tag]} for tag in i18n.LANGUAGES],
        }

    def refresh_gauges(self) -> None:
        """Bring point-in-time gauges up to date (called before /metrics is rendered)."""
        if self.bus.quarantine is not None:
            counts = self.bus.quarantine.counts()
            self._quarantine_held.clear()
            for reason, n in counts.items():
                self._quarantine_held.labels(reason=reason).set(n)
        if self.bus.outbox is not None:
            self.bus_metrics.outbox_depth.set(self.bus.outbox.depth())
