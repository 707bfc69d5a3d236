"""``OfficeNode``: one office's (or centre's) running node, the object ``blo node run`` runs.

It owns the parts and their life cycle: it opens them, wires them, runs the background
work (the directory and inbox-key watches, the feeds, heartbeats, the FLASH escalation,
a centre's feed rotation and MISP bridge) and closes them::

    keys/identity.json ─ Identity             signs as this office
    keys/inbox.keys ─ InboxKeyKeeper          its inbox keys (what it opens with), rotated and published
    data/directory.json ─ Directory           verified local copy, kept current from NATS KV
    data/outbox.db, quarantine.db ─ BusNode   outbox, consumers, receipts, embedded nats-server
    data/node.db ─ Store, Accounts, AuditLog  bulletins and search, officers, the audit trail
    LiveHub                                   server-sent events for the web page and CLI

The work is done by the parts it wires, one job each::

    inbound.Inbound          what arrives from the bus: admitted, stored, alerted (the bus's hooks)
    sending.Sending          how a bulletin leaves: checked, sealed, queued, stored, audited
    actions.OfficerActions   what an officer does: post, reply, check, read, acknowledge, import
    reads.Reads              what an officer reads: a bulletin, lists, search, the outbox, ...
    centre.Centre            what only a centre does: triage, forwards, feeds, drafts

``office_node/api.py`` calls these (``node.actions.post``, ``node.reads.view``,
``node.centre.forward``); the node itself answers only for its life (``health``,
``refresh_gauges``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import nacl.utils
from prometheus_client import CollectorRegistry, Counter, Gauge

from bus import Directory, Identity, Rng, wall_ms
from bus.errors import BloError, ValidationError
from bus.transport import (
    BusClient,
    BusMetrics,
    BusNode,
    ClientConfig,
    DirectoryCache,
    DirectoryMetrics,
    DirectoryWatcher,
    FeedMetrics,
    InboxKeyKeeper,
    NodeHooks,
    NodeOptions,
    TransferMetrics,
)
from office_node import audit as actions
from office_node.accounts import INTERACTIVE, Accounts, HashLimits
from office_node.actions import OfficerActions
from office_node.attachments import NodeAttachments
from office_node.audit import AuditLog
from office_node.centre import Centre
from office_node.config import NodeConfig
from office_node.db import Database, open_database
from office_node.feeds import NodeFeeds
from office_node.flash import EscalationNotices, FlashAcks, FlashTimers, FlashWatch, national_centre
from office_node.heartbeats import Heartbeats
from office_node.home import NodeHome, node_paths
from office_node.inbound import Inbound
from office_node.live import LiveHub
from office_node.lookouts import HitAlerts, Lookouts
from office_node.provenance import ForwardChecks
from office_node.reads import Reads
from office_node.sending import Sending
from office_node.store import Store
from office_node.triage import Triage

log = logging.getLogger("blo.node")
VERSION = "0.1.0"
#: How often the directory watcher checks that the link it watches over is still the same.
LINK_CHECK_S = 1.0


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
        self.directory: Directory
        self.cache: DirectoryCache
        self.db: Database | None = None
        self.store: Store
        self.accounts: Accounts
        self.audit: AuditLog
        self.bus: BusNode
        # The jobs, made by start() once the parts they use are open.
        self.inbound: Inbound
        self.sending: Sending
        self.actions: OfficerActions
        self.reads: Reads
        self._options = options
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.started_at: int | None = None

    # -- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Open the stores and start the bus; returns without waiting for the link."""
        db = await self._open_stores()
        self._open_keys()
        self.bus = self._make_bus(db)
        self._make_node_parts(db)
        self.directory.add_listener(self._directory_changed)
        await self.bus.start()
        # Nothing below awaits until the jobs exist and the bus's hooks reach them.
        self._make_jobs(db)
        self._start_background()

    async def _open_stores(self) -> Database:
        """node.db and what lives in it; the lookout index rebuilt from the store."""
        paths = node_paths(self.home.root, self.config.data_dir)
        self.config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.db = db = open_database(paths.db)
        self.store = Store(db)
        self.accounts = Accounts(db, limits=self.hash_limits)
        self.audit = AuditLog.open(db, paths.audit_key, head_path=paths.audit_head)
        self.lookouts = Lookouts(self.store, self.office)
        self.flash = FlashAcks(db)
        indexed = await asyncio.to_thread(self.lookouts.rebuild)
        log.info("lookout index: %d bulletins", indexed)
        return db

    def _open_keys(self) -> None:
        """The directory, and its inbox keys (schemas/INBOX.md): loaded, and a key made if
        one is due, before the bus opens or seals anything; published by _keep_inbox_keys
        once connected."""
        self.directory, self.cache = self.home.open_directory(self.config)
        self.inbox = InboxKeyKeeper(
            self.identity, self.directory, self.home.inbox_ring_path, clock=self.clock, rng=self.rng
        )
        self.inbox.refresh()

    def _make_bus(self, db: Database) -> BusNode:
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
        return BusNode(
            self.identity,
            self.directory,
            c.data_dir,
            client_config=client_config,
            options=options,
            # What arrives goes to self.inbound, made once the bus has started (its parts
            # need the bus's quarantine). Looked up at each call: were one ever to come
            # sooner, it would raise and be delivered again, never be taken unstored.
            hooks=NodeHooks(
                on_bulletin=lambda opened: self.inbound.on_bulletin(opened),
                on_escalation=lambda esc: self.inbound.on_escalation(esc),
                on_state=lambda changes: self.inbound.on_state(changes),
                admit=lambda subject, opened: self.inbound.admit(subject, opened),
                key_pending=lambda feed, epoch: self.feeds.keyring.key_may_arrive(feed, epoch),
                settle=db.sync,
            ),
            metrics=self.bus_metrics,
            clock=self.clock,
            rng=self.rng,
            # What this node opens bulletins and feed grants with: the ring's inbox key
            # pairs, a live mapping (keys made or erased take effect at once). In wire
            # format v2 nothing is wrapped to the identity's own encryption key (TRUST.md
            # section 4).
            box_keys=self.inbox.box_keys,
        )

    def _make_node_parts(self, db: Database) -> None:
        """Triage, the centre's operations, the feeds and the heartbeats, on the bus."""
        c = self.config
        is_centre = c.role == "centre"
        self.triage = Triage(db)
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
            inbox_keys=self.inbox.box_keys,
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
            db,
            is_centre=is_centre,
            version=VERSION,
            started_at=self.started_at,
            every_s=c.heartbeat_every_s,
            silent_after_s=c.silent_after_s,
            clock=self.clock,
            on_heartbeat=lambda data: self.live.publish("heartbeat", data),
        )

    def _make_jobs(self, db: Database) -> None:
        """The attachments (on the started bus's quarantine), then the jobs that use the
        parts: sending, inbound, officer actions, reads."""
        c = self.config
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
        publish = self.live.publish
        forwards = ForwardChecks(self.directory, self.store)
        hits = HitAlerts(self.lookouts, self.store, count=self.hit_count, publish=publish, rng=self.rng)
        self.sending = Sending(
            self.bus, self.store, self.audit, attachments=self.attachments, feeds=self.feeds, hits=hits,
            forwards=forwards, publish=publish, clock=self.clock,
        )  # fmt: skip
        self.inbound = Inbound(
            self.office, db, self.store, self.audit, is_centre=c.role == "centre", attachments=self.attachments,
            centre=self.centre, triage=self.triage, forwards=forwards, hits=hits, sending=self.sending,
            publish=publish, clock=self.clock,
        )  # fmt: skip
        self.actions = OfficerActions(
            self.office, self.store, self.audit, sending=self.sending, bus=self.bus, directory=self.directory,
            lookouts=self.lookouts, flash=self.flash, check_count=self.check_count, publish=publish,
            clock=self.clock, rng=self.rng,
        )  # fmt: skip
        self.reads = Reads(
            self.office, c.role, self.store, self.audit, bus=self.bus, directory=self.directory, feeds=self.feeds,
            flash=self.flash, attachments=self.attachments, clock=self.clock,
        )  # fmt: skip

    def _start_background(self) -> None:
        """The node's background work, each a task ended by close()."""
        c = self.config
        assert self.bus.client is not None
        self._spawn(self.attachments.transfers.run(self.bus.client), "blo-attachments")
        self.audit.append(f"node:{self.office}", actions.NODE_START, target=self.office, now_ms=self.started_at)
        stopping = self._is_closing
        self._spawn(self._while_connected(self._watch_directory), "blo-directory")
        self._spawn(self._while_connected(self._keep_inbox_keys), "blo-inbox-keys")
        self._spawn(self._while_connected(lambda client: self.feeds.watch(client, stop=stopping)), "blo-feeds")
        self._spawn(self.heartbeats.run_publisher(stopping), "blo-heartbeat")
        self._spawn(self._flash_watch().run(min(5.0, max(0.05, c.flash_ack_timeout_s / 4))), "blo-flash-escalation")
        if c.role == "centre":
            self._spawn(self.heartbeats.run_consumer(), "blo-heartbeats-in")
            self._spawn(self._rotate_feeds(), "blo-feed-rotation")
            if c.misp is not None:
                self._spawn(self.centre.run_bridge(stopping), "blo-misp-bridge")

    def _flash_watch(self) -> FlashWatch:
        """FLASH: acknowledged by a person, escalated until it is (office_node/flash.py)."""
        c = self.config
        notices = EscalationNotices(
            self.sending.send_draft, office=self.office, publish=self.live.publish, clock=self.clock, rng=self.rng
        )
        return FlashWatch(
            self.flash,
            sender=self.office,
            watched=self.bus.outbox.flash_watch_ids,
            status=self.bus.status,
            centre_of=lambda office: national_centre(self.directory, office),
            send=notices.send,
            timers=FlashTimers(c.flash_ack_timeout_s, c.flash_own_centre_after_s),
            clock=self.clock,
        )

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

    def refresh_gauges(self) -> None:
        """Bring point-in-time gauges up to date (called before /metrics is rendered)."""
        if self.bus.quarantine is not None:
            counts = self.bus.quarantine.counts()
            self._quarantine_held.clear()
            for reason, n in counts.items():
                self._quarantine_held.labels(reason=reason).set(n)
        if self.bus.outbox is not None:
            self.bus_metrics.outbox_depth.set(self.bus.outbox.depth())
