"""``BusNode``: one office's (or centre's) presence on the bus, the object a daemon runs.

It wires the pure core to NATS, in three parts on one connection (each in its own file;
``node_core.py`` holds what they share):

* **sending** (``sender.py``): seal -> outbox (on disk) -> the pump publishes when the
  link is up, FLASH first, and marks each copy ``sent`` on JetStream's ack;
* **receiving** (``receiver.py``): one pull consumer per (inbox or feed,
  precedence); each message is opened, deduped by bulletin id, handed to
  ``hooks.on_bulletin``, remembered, acknowledged to the sender with a signed
  ``delivered`` receipt (queued in the outbox like any message), then acked to
  JetStream. What fails to open goes to the quarantine, and is acked only once it is
  stored there. Receipts for its own bulletins update the outbox states;
* **FLASH escalation** (``flash_watch.py``): a FLASH bulletin not acknowledged by every
  office recipient in ``flash_ack_timeout_s`` raises an escalation
  (``hooks.on_escalation`` and metrics);

and with no client config it runs an embedded nats-server in its data dir. The
application meets the bus through one ``NodeHooks`` object.

``close`` stops fetching, lets the batch in hand finish, stops the pump and closes the
connection; whatever is still queued stays in the outbox for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import nacl.utils

from bus.bulletin import Bulletin
from bus.envelope import Opened
from bus.envelope_fast import FastOpener, FastSealer
from bus.ids import Rng
from bus.keys import BoxKeyPair, Identity
from bus.timing import wall_ms
from bus.transport import subjects as sj
from bus.transport.client import BusClient, ClientConfig, Msg
from bus.transport.embedded import embedded_server
from bus.transport.flash_watch import FlashWatch
from bus.transport.metrics import BusMetrics
from bus.transport.node_core import (
    Core,
    DirectoryResolver,
    Escalation,
    FeedRules,
    NodeHooks,
    NodeOptions,
    OnBulletin,
    OnEscalation,
    OnState,
    Posted,
    StateChange,
)
from bus.transport.outbox import BulletinStatus, Outbox
from bus.transport.quarantine import Quarantine
from bus.transport.receiver import Receiver, Route
from bus.transport.seen import SeenStore
from bus.transport.sender import Sender
from bus.transport.server import NatsServer

__all__ = [
    "BusNode",
    "DirectoryResolver",
    "Escalation",
    "FeedRules",
    "NodeHooks",
    "NodeOptions",
    "OnBulletin",
    "OnEscalation",
    "OnState",
    "Posted",
    "Route",
    "StateChange",
    "wall_ms",
]


class BusNode:
    def __init__(
        self,
        identity: Identity,
        resolver: DirectoryResolver,
        data_dir: str | Path,
        *,
        client_config: ClientConfig | None = None,
        options: NodeOptions | None = None,
        hooks: NodeHooks | None = None,
        feed_keys: dict[tuple[str, int], bytes] | None = None,
        box_keys: Mapping[bytes, BoxKeyPair] | None = None,
        metrics: BusMetrics | None = None,
        clock: Callable[[], int] = wall_ms,
        rng: Rng = nacl.utils.random,
    ) -> None:
        self.options = options or NodeOptions()
        for feed in self.options.feeds:
            sj.check_feed(feed)
        self.identity = identity
        self.office = identity.office_id
        self.resolver = resolver
        self.data_dir = Path(data_dir)
        self.client_config = client_config
        self.hooks = hooks or NodeHooks()
        self.metrics = metrics or BusMetrics.default()
        #: (feed, epoch) -> epoch key; shared with the opener, so new epochs may be added live.
        self.feed_keys = feed_keys if feed_keys is not None else {}
        self.core = Core(
            identity,
            resolver,
            options=self.options,
            hooks=self.hooks,
            metrics=self.metrics,
            feed_keys=self.feed_keys,
            clock=clock,
            rng=rng,
        )
        #: The inbox keys bulletins are opened with: the node's live ring (bus.inbox), or
        #: the identity's own encryption keys where no ring is kept (tests, tools).
        self.box_keys: Mapping[bytes, BoxKeyPair] = (
            box_keys if box_keys is not None else {k.kid: k for k in identity.box_keys}
        )
        self.opener = FastOpener(identity.office_id, self.box_keys, resolver, feed_keys=self.feed_keys)
        self.sender = Sender(self.core)
        self.receiver = Receiver(self.core, self.sender, self.opener)
        self.flash = FlashWatch(self.core)
        self.server: NatsServer | None = None

    # -- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Open the stores, start (or reach) NATS, and run the pump and consumers. Returns
        without waiting for the link: posting works while it is down."""
        core = self.core
        core.loop = asyncio.get_running_loop()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        core.outbox = Outbox(self.data_dir / "outbox.db")
        core.seen = SeenStore(db=core.outbox.db)  # one transaction remembers a batch and queues its receipts
        core.quarantine = Quarantine(self.data_dir / "quarantine.db", self.metrics)
        config = self.client_config
        if config is None:
            self.server = embedded_server(
                self.data_dir, port=self.options.embedded_port, sync_always=self.options.embedded_sync_always
            )
            await asyncio.to_thread(self.server.start)
            config = ClientConfig(urls=(self.server.url,), name=f"blo-{self.office}")
        core.client = BusClient(config, listener=core.on_bus_event)
        await core.client.start()
        core.spawn(self.sender.run(), "blo-pump")
        self.receiver.start()
        core.spawn(self.flash.run(), "blo-flash-watch")
        add_listener = getattr(self.resolver, "add_listener", None)
        if callable(add_listener):
            add_listener(self.receiver.directory_changed)
        self.metrics.outbox_depth.set(core.outbox.depth())
        for feed in core.outbox.queued_feeds():  # copies queued before a crash, or an epoch that moved on meanwhile
            self.sender.feed_changed(feed)
        core.wake.set()

    async def close(self) -> None:
        """Graceful stop: finish the batch in hand, stop the pump, close NATS (and the
        embedded server). Queued messages stay in the outbox."""
        core = self.core
        core.closing = True
        core.wake.set()
        for task in core.tasks:
            task.cancel()
        for task in core.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        core.tasks = []
        self.receiver.stop()
        if core.client is not None:
            await core.client.close()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
        for store in (core.outbox, core.quarantine):  # seen shares the outbox's connection
            if store is not None:
                store.close()

    async def __aenter__(self) -> BusNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ready(self) -> None:
        """Return once connected with the streams in place (a benchmark or tool that wants
        to begin only then; sending and receiving wait for this by themselves)."""
        await self.core.ready()

    # -- what the parts hold ----------------------------------------------------------

    @property
    def clock(self) -> Callable[[], int]:
        """The node's clock (ms since the epoch); settable (tests move it)."""
        return self.core.clock

    @clock.setter
    def clock(self, clock: Callable[[], int]) -> None:
        self.core.clock = clock

    @property
    def client(self) -> BusClient | None:
        return self.core.client

    @property
    def outbox(self) -> Outbox | None:
        return self.core.outbox

    @property
    def seen(self) -> SeenStore | None:
        return self.core.seen

    @property
    def quarantine(self) -> Quarantine | None:
        return self.core.quarantine

    @property
    def events(self) -> list[tuple[str, str]]:
        """Recent connection events, for status pages."""
        return self.core.events

    @property
    def connected(self) -> bool:
        return self.core.client is not None and self.core.client.connected

    @property
    def link(self) -> str:
        """The link as an operator should read it: ``connected``; ``stalled`` (connected,
        but the server answers nothing: frozen, or a link that only looks up);
        ``credentials_refused`` (the server will not take this node's NATS user);
        ``disconnected``."""
        client = self.core.client
        if client is None or not client.connected:
            return "credentials_refused" if client is not None and client.credentials_refused else "disconnected"
        return "stalled" if client.stalled else "connected"

    @property
    def sealer(self) -> FastSealer:
        return self.sender.sealer

    # -- sending (sender.py) -----------------------------------------------------------

    async def post(self, bulletin: Bulletin, *, offices: Sequence[str] = (), feeds: Sequence[str] = ()) -> str:
        """Seal ``bulletin`` for ``offices`` and ``feeds`` and queue it durably; returns its id.

        When this returns the bulletin is on disk; it goes out as soon as the link allows.
        """
        return (await self.post_many([(bulletin, offices, feeds)]))[0]

    async def post_many(self, items: Sequence[tuple[Bulletin, Sequence[str], Sequence[str]]]) -> list[str]:
        """Like ``post`` for several bulletins, with one disk commit for all."""
        return [p.bulletin.id for p in await self.submit_many(items)]

    async def submit(self, bulletin: Bulletin, *, offices: Sequence[str] = (), feeds: Sequence[str] = ()) -> Posted:
        """``post``, returning the sealed bytes as well (the node's store keeps them)."""
        return (await self.submit_many([(bulletin, offices, feeds)]))[0]

    async def submit_many(self, items: Sequence[tuple[Bulletin, Sequence[str], Sequence[str]]]) -> list[Posted]:
        """Seal and queue several bulletins with one disk commit for all."""
        return await self.sender.submit_many(items)

    def feed_changed(self, feed: str) -> None:
        """The feed's epochs or keys changed here: its queued and held copies are looked at
        again soon (``Sender.review_feed``). Callable from any thread."""
        self.sender.feed_changed(feed)

    async def review_feed(self, feed: str) -> None:
        await self.sender.review_feed(feed)

    def status(self, bulletin_id: str) -> BulletinStatus | None:
        """Each recipient's state (queued, sent, delivered, read) of a bulletin posted here."""
        return self.sender.status(bulletin_id)

    async def send_read_receipt(self, bulletin_id: str, sender: str, precedence: str = "ROUTINE") -> None:
        """Tell ``sender`` an officer here read ``bulletin_id`` (queued like any message)."""
        await self.sender.send_read_receipt(bulletin_id, sender, precedence)

    async def send_acknowledgement(self, bulletin_id: str, sender: str, precedence: str = "FLASH") -> None:
        """Tell ``sender`` a person here acknowledged ``bulletin_id`` (what ends a FLASH's escalation)."""
        await self.sender.send_acknowledgement(bulletin_id, sender, precedence)

    async def wait_outbox_empty(self, timeout: float) -> bool:
        """True once nothing waits in the outbox (tests, graceful shutdown)."""
        return await self.sender.wait_outbox_empty(timeout)

    # -- receiving (receiver.py) -------------------------------------------------------

    @property
    def feeds(self) -> frozenset[str]:
        """The feeds this node reads."""
        return self.receiver.feeds

    def subscribe_feed(self, feed: str, *, start_ms: int | None = None) -> bool:
        """Read ``feed`` too (``Receiver.subscribe_feed``); False if it is read already."""
        return self.receiver.subscribe_feed(feed, start_ms=start_ms)

    def leave_feed(self, feed: str) -> bool:
        """Stop reading ``feed`` once caught up (``Receiver.leave_feed``)."""
        return self.receiver.leave_feed(feed)

    async def consume(
        self, spec: sj.ConsumerSpec, handle: Callable[[sj.ConsumerSpec, list[Msg]], Awaitable[None]]
    ) -> None:
        """Pull from another durable consumer with this node's connection (``Receiver.consume``)."""
        await self.receiver.consume(spec, handle)

    def open_message(self, subject: str, raw: bytes, *, witnessed_at: int) -> Opened:
        """Open and check a bulletin as a consumer would (``Receiver.open_message``)."""
        return self.receiver.open_message(subject, raw, witnessed_at=witnessed_at)

    def route(self, subject: str) -> Route:
        return self.receiver.route(subject)

    async def retry_quarantine(self) -> int:
        """Open retryable quarantined bulletins again; how many were delivered."""
        return await self.receiver.retry_quarantine()

    def seen_kept_ms(self) -> int:
        return self.receiver.seen_kept_ms()

    def prune_seen(self) -> int:
        return self.receiver.prune_seen()

    def forget_keys(self) -> None:
        """Inbox or epoch keys were erased (their lifetime ended, TRUST.md section 4): drop
        every wrap key the opener derived, so none derived from an erased secret stays in
        memory. The opener refuses entries for erased keys anyway (it reads the live keys)."""
        self.opener.forget()

    # -- FLASH (flash_watch.py) --------------------------------------------------------

    async def check_flash(self) -> list[Escalation]:
        """Escalate FLASH bulletins past their deadline; returns the new escalations."""
        return await self.flash.check_flash()
