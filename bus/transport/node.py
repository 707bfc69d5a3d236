"""``BusNode``: one office's (or centre's) presence on the bus, the object a daemon runs.

It wires the pure core to NATS:

* **posting**: seal -> outbox (on disk) -> the pump publishes when the link is up,
  FLASH first, and marks each copy ``sent`` on JetStream's ack;
* **receiving**: one durable pull consumer per (inbox or feed, precedence); each
  message is opened, deduped by bulletin id, handed to ``on_bulletin``, remembered,
  acknowledged to the sender with a signed ``delivered`` receipt (queued in the
  outbox like any message), then acked to JetStream. What fails to open goes to the
  quarantine, and is acked only once it is stored there;
* **receipts** for its own bulletins update the outbox states; a FLASH bulletin not
  acknowledged by every office recipient in ``flash_ack_timeout_s`` raises an
  escalation (``on_escalation`` and metrics);
* with no client config it runs an embedded nats-server in its data dir.

``close`` stops fetching, lets the batch in hand finish, stops the pump and closes the
connection; whatever is still queued stays in the outbox for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec
import nacl.utils
from nats.aio.msg import Msg

from bus import timing
from bus.bulletin import Bulletin
from bus.envelope import (
    RECIPIENT_FEED,
    RECIPIENT_OFFICE,
    FeedRecipient,
    KeyResolver,
    OfficeRecipient,
    Opened,
    Recipient,
    Via,
    read_routing,
)
from bus.envelope_fast import FastOpener, FastSealer
from bus.errors import (
    BusError,
    FeedKeyPending,
    Misrouted,
    NotAddressedToUs,
    NotConnected,
    PermissionDenied,
    PrecedenceMismatch,
    RecipientKeyInvalid,
    RecipientMismatch,
    ValidationError,
)
from bus.ids import Rng
from bus.keys import BoxKeyPair, Identity, PeerKeys
from bus.receipt import ACKNOWLEDGED, DELIVERED, MAX_RECEIPT_IDS, READ, open_receipt, sign_receipt
from bus.timing import wall_ms
from bus.transport import subjects as sj
from bus.transport.client import Ack, BusClient, ClientConfig, PullConsumer, ack_all, nak, stored_at_ms
from bus.transport.embedded import embedded_server
from bus.transport.gate import PrecedenceGate
from bus.transport.metrics import BusMetrics
from bus.transport.outbox import BulletinStatus, Delivery, Outbox, transaction
from bus.transport.quarantine import Quarantine, reason_of
from bus.transport.seen import SeenStore
from bus.transport.server import NatsServer

log = logging.getLogger("blo.bus.node")

#: A batch hands over this many messages between two looks at the connection (see
#: ``_handle_bulletins``): a FLASH arriving meanwhile overtakes at most this many.
_YIELD_EVERY = 16
#: What opening a message of a feed being left gives for a bulletin sealed after the removal.
_PAST_MEMBERSHIP: Any = object()
#: Pump windows on the wire at once (see ``_pump``).
_WINDOWS_IN_FLIGHT = 4
#: How often the node forgets delivered ids past the streams' keeping (see prune_seen).
_PRUNE_EVERY_S = 6 * 3600.0
#: A fetched batch this large is opened by several threads (see ``_open_batch``); a
#: smaller one is not worth handing over to a thread.
_PARALLEL_MIN = 16


class DirectoryResolver(KeyResolver, Protocol):
    """What the node needs from the directory (``bus.directory.Directory`` implements it):
    sender keys to open, recipient keys to seal. ``add_listener`` is optional; when
    present the node retries quarantined unknown-sender bulletins on every change."""

    def recipient_keys(self, office_id: str, now_ms: int) -> PeerKeys: ...


class FeedRules(Protocol):
    """The feed rules of schemas/FEEDS.md as the node applies them (``bus.feeds.FeedKeyring``
    implements them): what a member accepts, and what a sender may seal under."""

    def check_post(self, feed: str, epoch: int, sender: str, witnessed_at: int) -> None:
        """A bulletin that opened through a feed entry: raises ``StaleEpoch`` or ``NotAWriter``."""
        ...

    def post_epoch(self, feed: str, office: str) -> int:
        """The epoch ``office`` must seal a bulletin to ``feed`` under now: the newest whose
        record it holds (its key may not have arrived yet: then the bulletin waits). Raises
        a ``BloError`` saying why when it may not post at all (not a writer, removed)."""
        ...


@dataclass(frozen=True, slots=True)
class Route:
    """What a bulletin's subject says (SUBJECTS.md): the recipient entry it must open
    through, the precedence token's precedence and the sending office."""

    via: Via
    precedence: str
    sender: str


@dataclass(frozen=True, slots=True)
class Escalation:
    """A FLASH bulletin this node sent that some office recipient has not acknowledged in time."""

    bulletin_id: str
    posted_at: int
    missing: tuple[str, ...]


class Posted(msgspec.Struct, frozen=True):  # built per copy or bulletin sent: a Struct builds fast
    """A bulletin sealed and queued by ``submit``: what the node's store keeps of it."""

    bulletin: Bulletin
    sealed: bytes
    recipients: tuple[str, ...]  # office ids and ``feed:<name>``
    posted_at: int


class StateChange(msgspec.Struct, frozen=True):  # built per copy or bulletin sent: a Struct builds fast
    """One recipient of a bulletin this node sent moved on: ``sent`` (JetStream stored the
    copy), ``delivered`` or ``read`` (a signed receipt came back)."""

    bulletin_id: str
    recipient: str
    state: str
    at: int


OnBulletin = Callable[[Opened], Awaitable[None]]
OnEscalation = Callable[[Escalation], Awaitable[None] | None]
OnState = Callable[[list[StateChange]], None]


@dataclass(frozen=True)
class NodeOptions:
    feeds: tuple[str, ...] = ()  # feeds this node reads (it must hold their epoch keys)
    flash_ack_timeout_s: float = 120.0
    fetch_batch: int = 256
    fetch_wait_s: float = 1.0  # how long an idle consumer parks on the server per request
    pump_window: int = 512  # messages published before waiting for their acks
    retry_delay_s: float = 0.5  # after a failed round of publishes or fetches
    app_retry_delay_s: float = 2.0  # redelivery delay when on_bulletin raised
    ensure_streams: bool = True  # False where the operator creates streams (restricted users)
    streams: tuple[sj.StreamSpec, ...] = field(default_factory=lambda: tuple(sj.default_streams()))
    embedded_port: int = 0
    embedded_sync_always: bool = True
    #: threads that open fetched bulletins beside the event loop's (see ``_open_batch``);
    #: None: one fewer than the machine's cores, at most 3; 0: the event loop's only
    open_threads: int | None = None


class BusNode:
    def __init__(
        self,
        identity: Identity,
        resolver: DirectoryResolver,
        data_dir: str | Path,
        *,
        client_config: ClientConfig | None = None,
        feed_keys: dict[tuple[str, int], bytes] | None = None,
        options: NodeOptions | None = None,
        on_bulletin: OnBulletin | None = None,
        on_escalation: OnEscalation | None = None,
        on_state: OnState | None = None,
        admit: Callable[[str, Opened], None] | None = None,
        key_pending: Callable[[str, int], bool] | None = None,
        feed_rules: FeedRules | None = None,
        box_keys: Mapping[bytes, BoxKeyPair] | None = None,
        settle: Callable[[], None] | None = None,
        metrics: BusMetrics | None = None,
        clock: Callable[[], int] = wall_ms,
        rng: Rng = nacl.utils.random,
    ) -> None:
        self.identity = identity
        self.office = identity.office_id
        self.resolver = resolver
        self.data_dir = Path(data_dir)
        self.options = options or NodeOptions()
        for feed in self.options.feeds:
            sj.check_feed(feed)
        self.client_config = client_config
        #: (feed, epoch) -> epoch key; shared with the Opener, so new epochs may be added live.
        self.feed_keys = feed_keys if feed_keys is not None else {}
        self.on_bulletin = on_bulletin
        self.on_escalation = on_escalation
        self.on_state = on_state
        #: The application's rules for what it accepts (raise a BloError to refuse).
        self.admit = admit
        #: (feed, epoch) -> may that epoch's key still arrive here?
        self.key_pending = key_pending
        #: The feed rules every bulletin opened through a feed entry must pass.
        self.feed_rules = feed_rules
        #: Called once a fetched batch is handed over, before it is marked delivered and
        #: acked: the application makes what it stored of the batch durable (one flush
        #: to disk per batch; see office_node.db.Database.deferred). Raising leaves the
        #: batch unacked, to be delivered again.
        self.settle = settle
        self.metrics = metrics or BusMetrics.default()
        self.clock = clock
        self.rng = rng
        self.sealer = FastSealer(identity)
        #: The inbox keys bulletins are opened with: the node's live ring (bus.inbox), or
        #: the identity's own encryption keys where no ring is kept (tests, tools).
        self.box_keys: Mapping[bytes, BoxKeyPair] = (
            box_keys if box_keys is not None else {k.kid: k for k in identity.box_keys}
        )
        self.opener = FastOpener(identity.office_id, self.box_keys, resolver, feed_keys=self.feed_keys)
        self.server: NatsServer | None = None
        self.client: BusClient | None = None
        self.outbox: Outbox | None = None
        self.seen: SeenStore | None = None
        self.quarantine: Quarantine | None = None
        threads = self.options.open_threads
        self._open_threads = min(3, (os.cpu_count() or 1) - 1) if threads is None else max(0, threads)
        self._open_pool: ThreadPoolExecutor | None = None
        self._gate = PrecedenceGate(len(sj.PRECEDENCE_TOKENS))
        self._inflight: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: feeds read -> where their consumers start when created (None: the stream's start)
        self._feeds: dict[str, int | None] = dict.fromkeys(self.options.feeds)
        self._leaving: dict[str, int] = {}  # feed being left -> its consumers still reading
        self._past_membership: set[str] = set()  # durables of a feed left that reached its removal
        self._closing = False
        self._streams_ok = False
        self._streams_lock = asyncio.Lock()
        self._retry_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.events: list[tuple[str, str]] = []  # recent connection events, for status pages
        # Labelled children looked up once: .labels() costs more than the increment.
        self._in_metrics = {
            p: (
                self.metrics.received.labels(precedence=p),
                self.metrics.delivery_latency.labels(precedence=p),
                self.metrics.bulletin_bytes.labels(direction="in"),
            )
            for p in sj.PRECEDENCES_BY_RANK
        }
        self._sent_metrics = tuple(self.metrics.sent.labels(precedence=p) for p in sj.PRECEDENCES_BY_RANK)
        self._out_size = self.metrics.bulletin_bytes.labels(direction="out")
        self._subjects: dict[str, dict[str, str]] = {}  # recipient -> precedence -> subject
        self._routes: dict[str, Route | ValidationError] = {}  # subject -> what it says
        #: bulletin id -> {copy index: why it waits}, for copies to hold as they are queued
        self._held_at_post: dict[str, dict[int, str]] = {}
        self._review_lock = asyncio.Lock()
        self._depth_at = 0.0  # when the pump last counted the outbox for the depth gauge

    # -- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Open the stores, start (or reach) NATS, and run the pump and consumers. Returns
        without waiting for the link: posting works while it is down."""
        self._loop = asyncio.get_running_loop()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(self.data_dir / "outbox.db")
        self.seen = SeenStore(db=self.outbox.db)  # one transaction remembers a batch and queues its receipts
        self.quarantine = Quarantine(self.data_dir / "quarantine.db", self.metrics)
        if self._open_threads:
            self._open_pool = ThreadPoolExecutor(self._open_threads, thread_name_prefix=f"blo-open-{self.office}")
        config = self.client_config
        if config is None:
            self.server = embedded_server(
                self.data_dir, port=self.options.embedded_port, sync_always=self.options.embedded_sync_always
            )
            await asyncio.to_thread(self.server.start)
            config = ClientConfig(urls=(self.server.url,), name=f"blo-{self.office}")
        self.client = BusClient(config, listener=self._on_bus_event)
        await self.client.start()
        self._tasks = [asyncio.create_task(self._pump(), name="blo-pump")]
        self._tasks += [self._consumer_task(spec) for spec in sj.node_consumers(self.office)]
        for feed, start_ms in self._feeds.items():
            self._tasks += [self._consumer_task(spec) for spec in sj.feed_consumers(self.office, feed, start_ms=start_ms)]
        self._tasks.append(
            asyncio.create_task(self._consume_receipts(sj.receipts_consumer_spec(self.office)), name="blo-receipts")
        )
        self._tasks.append(asyncio.create_task(self._watch_flash(), name="blo-flash-watch"))
        self._tasks.append(asyncio.create_task(self._prune_seen_loop(), name="blo-seen-prune"))
        add_listener = getattr(self.resolver, "add_listener", None)
        if callable(add_listener):
            add_listener(self._directory_changed)
        self.metrics.outbox_depth.set(self.outbox.depth())
        for feed in self.outbox.queued_feeds():  # copies queued before a crash, or an epoch that moved on meanwhile
            self.feed_changed(feed)
        self._wake.set()

    def _consumer_task(self, spec: sj.ConsumerSpec) -> asyncio.Task[None]:
        return asyncio.create_task(self._consume(spec), name=f"blo-{spec.durable}")

    def subscribe_feed(self, feed: str, *, start_ms: int | None = None) -> bool:
        """Read ``feed`` too (its consumers, one per precedence), from now if running, else
        from ``start``; False if this node reads it already. ``start_ms``: where consumers
        created now start (a member that joins reads from its joining, not the epochs
        before it, which it cannot open); consumers that exist resume where they left."""
        sj.check_feed(feed)
        if feed in self._feeds:
            return False
        self._feeds[feed] = start_ms
        if self.client is not None and not self._closing:
            self._tasks += [self._consumer_task(spec) for spec in sj.feed_consumers(self.office, feed, start_ms=start_ms)]
        return True

    def leave_feed(self, feed: str) -> bool:
        """Stop reading ``feed`` once caught up (this office was removed from it): each of
        its consumers reads on until a fetch comes back empty or brings a bulletin not
        addressed to this office (sealed under an epoch after its removal: that one is
        left unacked, not quarantined), then its durable is deleted, so a later joining
        starts afresh. False if this node does not read it."""
        if feed not in self._feeds or feed in self._leaving:
            return False
        self._leaving[feed] = len(sj.PRECEDENCES)
        return True

    async def _left(self, spec: sj.ConsumerSpec, client: BusClient) -> None:
        """One consumer of a feed being left is done: delete its durable; the last one
        takes the feed off this node's list."""
        feed = spec.feed
        assert feed is not None
        try:
            await client.delete_consumer(spec)
        except BusError as exc:  # it stays on the server, idle: harmless, and deleted next time
            log.warning("consumer %s of a feed left stays on the server: %s", spec.durable, exc)
        self._leaving[feed] -= 1
        if self._leaving[feed] <= 0:
            del self._leaving[feed]
            self._feeds.pop(feed, None)
            log.info("stopped reading feed %s", feed)

    @property
    def feeds(self) -> frozenset[str]:
        """The feeds this node reads."""
        return frozenset(self._feeds)

    async def close(self) -> None:
        """Graceful stop: finish the batch in hand, stop the pump, close NATS (and the
        embedded server). Queued messages stay in the outbox."""
        self._closing = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._open_pool is not None:
            self._open_pool.shutdown(wait=True, cancel_futures=True)
            self._open_pool = None
        if self.client is not None:
            await self.client.close()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
        for store in (self.outbox, self.quarantine):  # seen shares the outbox's connection
            if store is not None:
                store.close()

    async def __aenter__(self) -> BusNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _on_bus_event(self, event: str, detail: str) -> None:
        self.events = [*self.events[-49:], (event, detail)]
        if event in ("connected", "reconnected"):
            self.metrics.connected.set(1)
            self._streams_ok = False  # a different server may lack them; checking is cheap
            self._wake.set()
        elif event in ("disconnected", "closed"):
            self.metrics.connected.set(0)

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    async def ready(self) -> None:
        """Return once connected with the streams in place (a benchmark or tool that wants
        to begin only then; sending and receiving wait for this by themselves)."""
        await self._ready()

    async def _ready(self) -> BusClient:
        """The client once connected with the streams in place."""
        client = self.client
        assert client is not None, "start() first"
        while not client.connected:
            await client.wait_connected(1.0)
        if not self._streams_ok:
            async with self._streams_lock:
                if not self._streams_ok:
                    if self.options.ensure_streams:
                        await client.ensure_streams(self.options.streams)
                    self._streams_ok = True
        return client

    # -- posting ---------------------------------------------------------------------

    def _recipients(
        self, offices: Iterable[str], feeds: Iterable[str], now: int, waiting: dict[str, str] | None = None
    ) -> tuple[list[Recipient], list[str]]:
        """Seal targets and their outbox names (an office id, or ``feed:<name>``). A feed whose
        newest epoch's key has not arrived is sealed under the newest key held and named in
        ``waiting`` (outbox name -> why), so that its copy is held back until re-sealed."""
        targets: list[Recipient] = []
        names: list[str] = []
        for office in offices:
            if office not in self._subjects:  # names already in the subject cache were checked
                sj.check_office(office)
            keys = self.resolver.recipient_keys(office, now)
            if keys is None:
                raise RecipientKeyInvalid(f"the directory has no current keys for {office}; cannot seal to it")
            targets.append(OfficeRecipient(keys))
            names.append(office)
        for feed in feeds:
            sj.check_feed(feed)
            epoch, why = self._feed_epoch(feed)
            targets.append(FeedRecipient(feed, epoch, self.feed_keys[(feed, epoch)]))
            names.append(f"feed:{feed}")
            if why is not None and waiting is not None:
                waiting[f"feed:{feed}"] = why
        return targets, names

    def _feed_epoch(self, feed: str) -> tuple[int, str | None]:
        """The epoch to seal a bulletin to ``feed`` under, and why its copy must wait (None:
        it may go). FEEDS.md, what a sender does: the newest epoch whose record is held; if
        its key has not arrived, the newest key held, and the copy waits to be re-sealed."""
        held = [e for (f, e) in self.feed_keys if f == feed]
        want = max(held, default=0) if self.feed_rules is None else self.feed_rules.post_epoch(feed, self.office)
        if want and (feed, want) in self.feed_keys:
            return want, None
        older = [e for e in held if e < want]
        if not older:
            raise ValidationError("feeds", f"this node holds no epoch key for feed {feed} yet; it cannot post to it")
        return max(older), f"waiting for the key of epoch {want} of feed {feed} (the grant is on its way)"

    def _prepare(self, bulletin: Bulletin, offices: Sequence[str], feeds: Sequence[str], now: int) -> tuple[Any, ...]:
        waiting: dict[str, str] = {}
        targets, names = self._recipients(offices, feeds, now, waiting)
        sealed = self.sealer.seal(bulletin, targets, now_ms=now, rng=self.rng)
        fanout = len(names) > 1
        precedence = bulletin.precedence
        deliveries = []
        for name in names:
            subject = self._subject(name, precedence)
            deliveries.append(Delivery(name, subject, sj.bulletin_msg_id(bulletin.id, name, fanout=fanout)))
        deadline = None
        if precedence == "FLASH":
            deadline = now + int(self.options.flash_ack_timeout_s * 1000)
        self._out_size.observe(len(sealed))
        if waiting:
            self._held_at_post[bulletin.id] = {i: waiting[n] for i, n in enumerate(names) if n in waiting}
        return (bulletin.id, precedence, sj.precedence_rank(precedence), sealed, deliveries, deadline)

    def _subject(self, name: str, precedence: str) -> str:
        """The subject of one copy (``name`` is an office id or ``feed:<name>``), checked
        and built once per recipient and precedence."""
        by_precedence = self._subjects.get(name)
        subject = by_precedence.get(precedence) if by_precedence is not None else None
        if subject is None:
            if name.startswith("feed:"):
                subject = sj.feed_subject(name[5:], precedence, self.office)
            else:
                subject = sj.office_subject(name, precedence, self.office)
            if len(self._subjects) >= 4096:  # bounded: recipients come and go
                self._subjects.clear()
            self._subjects.setdefault(name, {})[precedence] = subject
        return subject

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
        assert self.outbox is not None, "start() first"
        now = self.clock()
        prepared = [self._prepare(b, offices, feeds, now) for b, offices, feeds in items]
        self.outbox.enqueue_many(prepared, now_ms=now)
        if self._held_at_post:  # before the pump can run: nothing awaits in between
            self._hold_new(now)
        # Counting the queue costs in proportion to its length; the pump sets the exact
        # figure as it goes (see _send_round).
        self.metrics.outbox_depth.inc(sum(len(p[4]) for p in prepared))
        self._wake.set()
        return [
            Posted(b, p[3], tuple(d.recipient for d in p[4]), now) for (b, _, _), p in zip(items, prepared, strict=True)
        ]

    def _hold_new(self, now: int) -> None:
        """Hold the feed copies that ``_prepare`` sealed under an older epoch than the newest."""
        assert self.outbox is not None
        waiting, self._held_at_post = self._held_at_post, {}
        for seq, bid, *_ in self.outbox.seqs_of(list(waiting)):
            for index, why in waiting[bid].items():
                self.outbox.hold(seq, [index], reason=why, now_ms=now)

    def feed_changed(self, feed: str) -> None:
        """The feed's epochs or keys changed here: look again at its copies still queued or
        held (``review_feed``), soon, on the event loop. Callable from any thread."""
        loop = self._loop
        if loop is None or self._closing:
            return

        def schedule() -> None:
            if not self._closing:
                self._tasks.append(loop.create_task(self.review_feed(feed), name=f"blo-feed-review-{feed}"))

        loop.call_soon_threadsafe(schedule)

    async def review_feed(self, feed: str) -> None:
        """FEEDS.md, what a sender does, for the copies to ``feed`` not yet sent: one sealed
        under an older epoch than the newest is re-sealed under it (the same bulletin, a new
        envelope) or, while that epoch's key has not arrived, held; one this office may no
        longer post (removed, not a writer) fails with the reason. Held copies whose epoch
        is current again are released."""
        assert self.outbox is not None
        async with self._review_lock:
            now = self.clock()
            for seq, _bid, sealed, deliveries, queued, held in self.outbox.feed_copies(f"feed:{feed}"):
                mine = [*queued, *held]
                try:
                    want, why = self._feed_epoch(feed)
                    if why is not None:
                        if queued:
                            self.outbox.hold(seq, queued, reason=why, now_ms=now)
                        continue
                    if self._sealed_epoch(sealed, feed) == want:
                        if held:
                            self.outbox.release(seq, held)
                        continue
                    self.outbox.release(seq, mine, sealed=self._reseal(sealed, deliveries, feed, now))
                except BusError:
                    raise
                except Exception as exc:  # the feed's rules or the directory say no: it cannot go
                    reason = getattr(exc, "message", str(exc))
                    log.warning("a bulletin to feed %s cannot be sent: %s", feed, reason)
                    self.outbox.fail_held(seq, mine, reason=reason, now_ms=now)
            self._wake.set()

    @staticmethod
    def _sealed_epoch(sealed: bytes, feed: str) -> int | None:
        for r in read_routing(sealed)[4]:
            if r.kind == RECIPIENT_FEED and r.id == feed:
                return int(r.ref)
        return None

    def _reseal(self, sealed: bytes, deliveries: Sequence[Delivery], feed: str, now: int) -> bytes:
        """The same bulletin sealed again to the same recipients, each feed under the epoch
        ``_feed_epoch`` gives now. Opened first through our own feed entry (the sender holds
        the epoch key it sealed under), so nothing but the envelope changes."""
        old = self._sealed_epoch(sealed, feed)
        key = None if old is None else self.feed_keys.get((feed, old))
        if old is None or key is None:
            raise ValidationError("feeds", f"the key of feed {feed} epoch {old} is gone: the bulletin cannot be re-sealed")
        opener = FastOpener(self.office, {}, self.resolver, feed_keys={(feed, old): key})
        bulletin = opener.open(sealed, witnessed_at=now, via=(RECIPIENT_FEED, feed)).bulletin
        offices = [d.recipient for d in deliveries if not d.recipient.startswith("feed:")]
        feeds = [d.recipient[5:] for d in deliveries if d.recipient.startswith("feed:")]
        targets, _ = self._recipients(offices, feeds, now)
        return self.sealer.seal(bulletin, targets, now_ms=now, rng=self.rng)

    def forget_keys(self) -> None:
        """Inbox or epoch keys were erased (their lifetime ended, TRUST.md section 4): drop
        every wrap key the opener derived, so none derived from an erased secret stays in
        memory. The opener refuses entries for erased keys anyway (it reads the live keys)."""
        self.opener.forget()

    def _emit_states(self, changes: list[StateChange]) -> None:
        if changes and self.on_state is not None:
            try:
                self.on_state(changes)
            except Exception:  # the application's bookkeeping must not stop the pump
                log.exception("on_state callback failed")

    def status(self, bulletin_id: str) -> BulletinStatus | None:
        """Each recipient's state (queued, sent, delivered, read) of a bulletin posted here."""
        assert self.outbox is not None, "start() first"
        return self.outbox.status(bulletin_id)

    async def send_read_receipt(self, bulletin_id: str, sender: str, precedence: str = "ROUTINE") -> None:
        """Tell ``sender`` an officer here read ``bulletin_id`` (queued like any message)."""
        self._queue_receipts([(READ, bulletin_id, sender, precedence)])

    async def send_acknowledgement(self, bulletin_id: str, sender: str, precedence: str = "FLASH") -> None:
        """Tell ``sender`` a person here acknowledged ``bulletin_id`` (what ends a FLASH's escalation)."""
        self._queue_receipts([(ACKNOWLEDGED, bulletin_id, sender, precedence)])

    def _queue_receipts(self, items: Iterable[tuple[str, str, str, str]]) -> None:
        assert self.outbox is not None
        now = self.clock()
        rows = self._receipt_rows(items, now)
        if rows:
            self.outbox.enqueue_receipts(rows, now_ms=now)
            self._wake.set()

    def _receipt_rows(
        self, items: Iterable[tuple[str, str, str, str]], now: int
    ) -> list[tuple[str, str, int, str, str, bytes]]:
        """Signed receipts for ``(kind, bulletin_id, sender, precedence)`` items: one receipt
        per kind, sender and precedence (up to MAX_RECEIPT_IDS ids each), so a batch of
        bulletins costs one signature and one message per sender, not one per bulletin."""
        groups: dict[tuple[str, str, int], dict[str, None]] = {}  # (ordered sets of ids)
        for kind, bid, sender, precedence in items:
            if sender == self.office:
                continue  # our own bulletin, read from a feed we belong to
            groups.setdefault((kind, sender, sj.precedence_rank(precedence)), {})[bid] = None
        rows = []
        for (kind, sender, rank), id_set in groups.items():
            subject = sj.receipt_subject(sender, self.office)
            ids = list(id_set)
            for i in range(0, len(ids), MAX_RECEIPT_IDS):
                chunk = ids[i : i + MAX_RECEIPT_IDS]
                payload = sign_receipt(self.identity, kind, chunk, sender, now_ms=now)
                rows.append((chunk[0], sender, rank, subject, self._receipt_msg_id(kind, chunk), payload))
        return rows

    def _receipt_msg_id(self, kind: str, ids: Sequence[str]) -> str:
        """``receipt:<kind>:<id>:<office>`` for one bulletin; for several, the first id and a
        BLAKE2b-64 of all of them (as text: ULIDs have one spelling), so each distinct
        receipt has its own Nats-Msg-Id."""
        if len(ids) == 1:
            return sj.receipt_msg_id(kind, ids[0], self.office)
        digest = hashlib.blake2b("".join(ids).encode(), digest_size=8).hexdigest()
        return sj.receipt_msg_id(kind, f"{ids[0]}+{digest}", self.office)

    async def wait_outbox_empty(self, timeout: float) -> bool:
        """True once nothing waits in the outbox (tests, graceful shutdown)."""
        assert self.outbox is not None
        deadline = time.monotonic() + timeout
        while self.outbox.depth():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _pump(self) -> None:
        """Publish what the outbox hands out, FLASH first. Up to ``_WINDOWS_IN_FLIGHT``
        windows are on the wire at once, so the server always has the next one while the
        acks of the last come back; a copy leaves the queue only on its ack."""
        assert self.outbox is not None
        opts = self.options
        inflight: set[int] = set()  # keys of the copies published, ack not yet seen
        rounds: set[asyncio.Task[None]] = set()
        try:
            while not self._closing:
                try:
                    client = await self._ready()
                except PermissionDenied as exc:
                    log.error("%s", exc)
                    await asyncio.sleep(5 * opts.retry_delay_s)
                    continue
                except BusError as exc:
                    log.warning("bus not ready: %s", exc)
                    await asyncio.sleep(opts.retry_delay_s)
                    continue
                if len(rounds) >= _WINDOWS_IN_FLIGHT:
                    await asyncio.wait(rounds, return_when=asyncio.FIRST_COMPLETED)
                    continue
                self._wake.clear()
                batch = self.outbox.next_batch(opts.pump_window, exclude=inflight)
                if not batch:
                    woken = asyncio.ensure_future(self._wake.wait())
                    try:
                        await asyncio.wait({woken, *rounds}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        woken.cancel()
                    continue
                inflight.update(p.key for p in batch)
                # Rounds publish in the order they start (a round's publishes never yield),
                # so the wire keeps outbox order.
                task = asyncio.create_task(self._send_round(client, batch, inflight), name="blo-pump-round")
                rounds.add(task)
                task.add_done_callback(rounds.discard)
                await asyncio.sleep(0)  # the round puts its window on the wire before the next is read
        finally:
            for task in list(rounds):
                task.cancel()
            for task in list(rounds):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _send_round(self, client: BusClient, batch: list[Any], inflight: set[int]) -> None:
        """Publish one window; mark the acked copies sent, leave the others queued."""
        assert self.outbox is not None
        opts = self.options
        try:
            try:
                results: list[Ack | BusError] = await client.publish_batch(
                    [(p.subject, p.payload, p.msg_id) for p in batch]
                )
            except BusError as exc:  # the link dropped before the window went out
                results = [exc] * len(batch)
            now = self.clock()
            sent: list[Any] = []
            failed: list[tuple[Any, Ack | BusError]] = []
            per_rank = [0] * len(self._sent_metrics)
            for p, r in zip(batch, results, strict=True):
                if type(r) is Ack:
                    sent.append(p)
                    if p.kind == "bulletin":
                        per_rank[p.rank] += 1
                else:
                    failed.append((p, r))
            self.outbox.mark_sent([p.key for p in sent], now_ms=now)
            for counter, n in zip(self._sent_metrics, per_rank, strict=True):
                if n:
                    counter.inc(n)
            if self.on_state is not None:
                self._emit_states(
                    [StateChange(p.bulletin_id, p.recipient, "sent", now) for p in sent if p.kind == "bulletin"]
                )
            if failed:
                self.outbox.note_failures([(p.key, str(r)) for p, r in failed])
                first = failed[0][1]
                if isinstance(first, BusError) and "no stream stores" in first.message:
                    self._streams_ok = False
                log.warning("%d of %d sends failed (%s); retrying", len(failed), len(batch), first)
                await asyncio.sleep(opts.retry_delay_s)  # the failed copies wait this long to be tried again
            # Counting the queue costs in proportion to its length: while a backlog drains,
            # refresh the gauge twice a second rather than after every window.
            if len(batch) < opts.pump_window or time.monotonic() - self._depth_at >= 0.5:
                self._depth_at = time.monotonic()
                self.metrics.outbox_depth.set(self.outbox.depth())
        finally:
            inflight.difference_update(p.key for p in batch)
            self._wake.set()  # the pump looks again: those left queued go in a later window

    # -- receiving -------------------------------------------------------------------

    async def _fetch_loop(
        self,
        spec: sj.ConsumerSpec,
        handle: Callable[[sj.ConsumerSpec, list[Msg]], Awaitable[None]],
        *,
        gated: bool = False,
    ) -> None:
        opts = self.options
        consumer: PullConsumer | None = None

        def drop() -> None:
            nonlocal consumer
            if consumer is not None and gated:
                self._gate.unwatch(spec.rank, consumer.arrived)
            consumer = None

        try:
            while not self._closing:
                try:
                    client = await self._ready()
                    if consumer is None:
                        consumer = await client.pull(spec)
                        if gated:  # lower precedences wait for what is arriving here
                            self._gate.watch(spec.rank, consumer.arrived)
                    try:
                        msgs = await consumer.fetch(opts.fetch_batch, opts.fetch_wait_s)
                    finally:
                        if gated:
                            self._gate.fetched()
                except NotConnected:
                    await asyncio.sleep(opts.retry_delay_s)
                    continue
                except BusError as exc:
                    log.warning("consumer %s: %s", spec.durable, exc)
                    drop()
                    await asyncio.sleep(opts.retry_delay_s * (5 if isinstance(exc, PermissionDenied) else 1))
                    continue
                if msgs:
                    await handle(spec, msgs)
                if spec.feed in self._leaving and (not msgs or spec.durable in self._past_membership):
                    self._past_membership.discard(spec.durable)
                    await self._left(spec, client)
                    return
        finally:
            drop()

    async def consume(
        self, spec: sj.ConsumerSpec, handle: Callable[[sj.ConsumerSpec, list[Msg]], Awaitable[None]]
    ) -> None:
        """Pull from another durable consumer with this node's connection, reconnect and
        refusal handling (a centre's heartbeats), until ``close``. ``handle`` acks."""
        await self._fetch_loop(spec, handle)

    async def _consume(self, spec: sj.ConsumerSpec) -> None:
        await self._fetch_loop(spec, self._handle_bulletins, gated=True)

    async def _handle_bulletins(self, spec: sj.ConsumerSpec, msgs: list[Msg]) -> None:
        assert self.seen is not None
        rank = spec.rank
        gate = self._gate
        # Open the whole batch first (pure CPU, on this thread and the opening threads):
        # what fails is quarantined (and so settled), and one query finds the
        # authenticated ids delivered before.
        now = self.clock()
        witnessed = [timing.witness_time(stored_at_ms(m.reply), now) for m in msgs]
        envelopes = await self._open_batch(msgs, witnessed)
        leaving = spec.feed in self._leaving
        opened = [
            self._open_or_quarantine(msg.subject, msg.data, envelope, w, leaving=leaving)
            for msg, envelope, w in zip(msgs, envelopes, witnessed, strict=True)
        ]
        if leaving and any(o is _PAST_MEMBERSHIP for o in opened):  # not acked, not quarantined: see leave_feed
            self._past_membership.add(spec.durable)
            msgs = [m for m, o in zip(msgs, opened, strict=True) if o is not _PAST_MEMBERSHIP]
            opened = [o for o in opened if o is not _PAST_MEMBERSHIP]
        seen = self.seen.seen_of([o.bulletin.id for o in opened if o is not None])
        left = len(msgs) - opened.count(None)
        gate.add(rank, left)
        accepted: list[tuple[str, Opened]] = []
        accepted_msgs: list[Msg] = []
        to_ack: list[Msg] = []
        recorded = True
        try:
            for i, (msg, o) in enumerate(zip(msgs, opened, strict=True)):
                if o is None:
                    to_ack.append(msg)
                    continue
                if i % _YIELD_EVERY == 0:
                    # Let the connection read what arrived meanwhile, so the gate (and its
                    # probes) can see a FLASH that came in while this batch was opened.
                    await asyncio.sleep(0)
                await gate.turn(rank)
                try:
                    outcome = await self._hand_over(msg.subject, o, seen)
                finally:
                    left -= 1
                    gate.done(rank)
                if outcome is None:  # the application failed: let JetStream redeliver later
                    await nak(msg, self.options.app_retry_delay_s)
                    continue
                if outcome is not True:
                    accepted.append((msg.subject, outcome))
                    accepted_msgs.append(msg)
                to_ack.append(msg)
        finally:
            if left:
                gate.done(rank, left)
            if accepted:
                try:
                    self._commit(accepted)
                except Exception:  # the disk refused: not delivered yet, so not acked
                    log.exception("recording %d bulletins as delivered failed; they come again", len(accepted))
                    recorded = False
        if not recorded:
            again = {id(m) for m in accepted_msgs}
            to_ack = [m for m in to_ack if id(m) not in again]
            for msg in accepted_msgs:
                await nak(msg, self.options.app_retry_delay_s)
        await ack_all(to_ack)

    async def _open_batch(self, msgs: list[Msg], witnessed: list[int]) -> list[Opened | Exception]:
        """The envelopes of a fetched batch opened, in order (``_envelope``).

        A batch of ``_PARALLEL_MIN`` or more is shared between this thread and the
        node's opening threads: libsodium lets go of Python's lock while it verifies a
        signature (most of what opening costs), so the shares verify at once, and
        a backlog (a link back after an outage) drains as fast as the cores allow."""
        pool = self._open_pool
        raws = [(m.subject, m.data, w) for m, w in zip(msgs, witnessed, strict=True)]
        if pool is None or len(raws) < _PARALLEL_MIN:
            return self._envelopes(raws)
        share = -(-len(raws) // (self._open_threads + 1))
        loop = asyncio.get_running_loop()
        others = [
            loop.run_in_executor(pool, self._envelopes, raws[i : i + share]) for i in range(share, len(raws), share)
        ]
        mine = self._envelopes(raws[:share])
        for part in await asyncio.gather(*others):
            mine += part
        return mine

    def _envelopes(self, raws: list[tuple[str, bytes, int]]) -> list[Opened | Exception]:
        return [self._envelope(subject, raw, w) for subject, raw, w in raws]

    def _open_or_quarantine(
        self, subject: str, raw: bytes, envelope: Opened | Exception, witnessed_at: int, *, leaving: bool = False
    ) -> Any:
        """A message whose ``envelope`` was opened (``_envelope``), admitted; None once what
        failed to open is stored in the quarantine. ``leaving``: it came from a feed this
        node is leaving, where a bulletin not addressed to it marks the end of its
        membership (``_PAST_MEMBERSHIP``)."""
        assert self.quarantine is not None
        try:
            return self._admitted(subject, raw, envelope, witnessed_at)
        except NotAddressedToUs as exc:
            if leaving:
                return _PAST_MEMBERSHIP
            return self._quarantined(subject, raw, exc, witnessed_at)
        except Exception as exc:  # whatever fails to open is kept, never crashes the consumer
            return self._quarantined(subject, raw, exc, witnessed_at)

    def _quarantined(self, subject: str, raw: bytes, exc: Exception, witnessed_at: int) -> None:
        """Keep what failed to open, with its reason (called while ``exc`` is handled)."""
        assert self.quarantine is not None
        reason = reason_of(exc)[0]
        self.metrics.rejected.labels(reason=reason).inc()
        if reason == "internal":
            log.exception("opening a message on %s failed unexpectedly; quarantined", subject)
        self.quarantine.add(raw, subject, exc, now_ms=self.clock(), witnessed_at=witnessed_at)
        return None

    def open_message(self, subject: str, raw: bytes, *, witnessed_at: int) -> Opened:
        """Open a bulletin that came on ``subject`` and was stored at ``witnessed_at``,
        through the recipient entry the subject names (``RecipientMismatch`` otherwise);
        check the subject's precedence token is the signed precedence
        (``PrecedenceMismatch``) and its sender token the office that signed it
        (``Misrouted``), the feed's rules for a feed bulletin (``StaleEpoch``,
        ``NotAWriter``), then the application's own ``admit`` rules (e.g. handling rules);
        whatever they raise is quarantined.

        A feed bulletin sealed under an epoch whose key may still arrive (the grant is on
        its way) is ``FeedKeyPending``, kept for a retry rather than refused for good."""
        return self._admitted(subject, raw, self._envelope(subject, raw, witnessed_at), witnessed_at)

    def route(self, subject: str) -> Route:
        """What a bulletin subject says (kept per subject: they recur), or the
        ``RecipientMismatch`` its shape calls for."""
        found = self._routes.get(subject)
        if found is None:
            try:
                info = sj.parse_bulletin_subject(subject)
                via = (RECIPIENT_FEED if info.kind == "feed" else RECIPIENT_OFFICE, info.name)
                found = Route(via, info.precedence, info.sender)
            except ValidationError as exc:
                found = exc
            if len(self._routes) >= 4096:  # bounded: senders and feeds come and go
                self._routes = {}
            self._routes[subject] = found
        if isinstance(found, ValidationError):
            raise RecipientMismatch(f"a bulletin came on {subject!r}, which names no inbox or feed: {found.problem}")
        return found

    def _envelope(self, subject: str, raw: bytes, witnessed_at: int) -> Opened | Exception:
        """The envelope opened (verified and decrypted) through the entry its subject names,
        or what refused it. Pure: the part of opening that worker threads may do (see
        ``_open_batch``)."""
        try:
            return self.opener.open(raw, witnessed_at=witnessed_at, via=self.route(subject).via)
        except Exception as exc:  # returned, raised again on this node's thread by _admitted
            return exc

    def _admitted(self, subject: str, raw: bytes, envelope: Opened | Exception, witnessed_at: int) -> Opened:
        """``open_message`` after the envelope: raises what refused the envelope, then
        checks the subject, the feed's rules and the application's rules (on the event
        loop's thread, as ``key_pending``, ``feed_rules`` and ``admit`` are the
        application's)."""
        if isinstance(envelope, Exception):
            if isinstance(envelope, NotAddressedToUs) and self.key_pending is not None:
                refs = read_routing(raw)[4]
                waiting = [r for r in refs if r.kind == RECIPIENT_FEED and self.key_pending(r.id, int(r.ref))]
                if waiting:
                    raise FeedKeyPending(
                        f"sealed under epoch {waiting[0].ref} of feed {waiting[0].id}, whose key this node has not "
                        "received yet; kept and opened when the key arrives"
                    ) from envelope
            raise envelope
        opened = envelope
        route = self.route(subject)
        b = opened.bulletin
        if route.sender != b.sender:
            raise Misrouted(
                f"bulletin {b.id} is signed by {b.sender} but came on {subject}, which names {route.sender} as its sender"
            )
        if route.precedence != b.precedence:
            raise PrecedenceMismatch(
                f"bulletin {b.id} is signed as {b.precedence} but came on {subject}, the {route.precedence} subject"
            )
        via = opened.opened_via
        if via.kind == RECIPIENT_FEED and self.feed_rules is not None:
            self.feed_rules.check_post(via.id, int(via.ref), b.sender, witnessed_at)
        if self.admit is not None:
            self.admit(subject, opened)
        return opened

    async def _hand_over(self, subject: str, opened: Opened, seen: set[str] | None = None) -> Opened | bool | None:
        assert self.seen is not None
        bid = opened.bulletin.id
        if bid in self._inflight or (bid in seen if seen is not None else self.seen.contains(bid)):
            self.metrics.duplicates.inc()
            return True
        self._inflight.add(bid)
        try:
            if self.on_bulletin is not None:
                await self.on_bulletin(opened)
        except Exception:
            self._inflight.discard(bid)
            log.exception("the application failed on bulletin %s; it will be redelivered", bid)
            return None
        received, latency, size = self._in_metrics[opened.bulletin.precedence]
        received.inc()
        latency.observe(max(0.0, (self.clock() - opened.sent_at) / 1000))
        size.observe(len(opened.header) + len(opened.body) + 64)
        return opened

    def _commit(self, accepted: list[tuple[str, Opened]]) -> None:
        """Remember handed-over bulletins and queue their delivered receipts, before acking."""
        assert self.seen is not None and self.outbox is not None
        now = self.clock()
        try:
            if self.settle is not None:  # what the application stored reaches the disk first
                self.settle()
            receipts = self._receipt_rows(
                [(DELIVERED, o.bulletin.id, o.bulletin.sender, o.bulletin.precedence) for _, o in accepted], now
            )
            with transaction(self.outbox.db):
                self.seen.insert([(o.bulletin.id, subject) for subject, o in accepted], now_ms=now)
                self.outbox.insert_receipts(receipts, now_ms=now)
            self._wake.set()
        finally:
            for _, o in accepted:
                self._inflight.discard(o.bulletin.id)

    async def _consume_receipts(self, spec: sj.ConsumerSpec) -> None:
        await self._fetch_loop(spec, self._handle_receipts)

    async def _handle_receipts(self, spec: sj.ConsumerSpec, msgs: list[Msg]) -> None:
        assert self.outbox is not None and self.quarantine is not None
        now = self.clock()
        good = []
        for msg in msgs:
            witnessed_at = timing.witness_time(stored_at_ms(msg.reply), now)
            try:
                r = open_receipt(msg.data, self.resolver, witnessed_at=witnessed_at)
                if r.bulletin_sender != self.office:
                    raise ValidationError(
                        "bulletin_sender", f"the receipt is for {r.bulletin_sender}'s bulletins, not ours"
                    )
                if sj.subject_sender(msg.subject) != r.office:
                    raise Misrouted(f"a receipt signed by {r.office} came on {msg.subject}")
            except Exception as exc:
                self.metrics.rejected.labels(reason=reason_of(exc)[0]).inc()
                self.quarantine.add(msg.data, msg.subject, exc, now_ms=now, witnessed_at=witnessed_at)
                continue
            good.extend((bid, r.office, r.kind, r.at_ms) for bid in r.bulletin_ids)
            self.metrics.receipts.labels(kind=r.kind).inc(len(r.bulletin_ids))
        if good:
            self.outbox.record_receipts(good, now_ms=now)
            self._emit_states([StateChange(bid, office, kind, at) for bid, office, kind, at in good])
        await ack_all(msgs)

    # -- quarantine retry ------------------------------------------------------------

    def _directory_changed(self, *args: Any) -> None:
        """Directory listener: may be called from any thread, with any arguments."""
        loop = self._loop
        if loop is None or self._closing:
            return

        def schedule() -> None:
            if not self._closing:
                self._tasks.append(loop.create_task(self.retry_quarantine(), name="blo-quarantine-retry"))

        loop.call_soon_threadsafe(schedule)

    async def retry_quarantine(self) -> int:
        """Open retryable quarantined bulletins again (after a directory change); those that
        open now are delivered as if just received. Returns how many were delivered."""
        assert self.quarantine is not None
        async with self._retry_lock:
            reopened = self.quarantine.retry_all(
                lambda subject, raw, w: self.open_message(subject, raw, witnessed_at=w), now_ms=self.clock()
            )
            delivered = 0
            for item in reopened:
                outcome = await self._hand_over(item.subject, item.opened)
                if outcome is None:
                    continue  # the application failed; stays quarantined for the next retry
                if outcome is not True:
                    self._commit([(item.subject, outcome)])
                    delivered += 1
                self.quarantine.resolve(item.qid)
            return delivered

    # -- dedupe memory ---------------------------------------------------------------

    def seen_kept_ms(self) -> int:
        """How long the node remembers a delivered id: as long as a bulletin stream keeps
        a message, and a day more. A message can come again only while its stream keeps
        it, and it was stored before it was seen here, so an id seen longer ago than
        that can never come again."""
        streams = [s.max_age_s for s in self.options.streams if s.name in (sj.STREAM_OFFICES, sj.STREAM_FEEDS)]
        return int((max(streams, default=30 * sj.DAY_S) + sj.DAY_S) * 1000)

    def prune_seen(self) -> int:
        """Forget the delivered ids older than ``seen_kept_ms``; returns how many."""
        assert self.seen is not None
        return self.seen.prune(self.clock() - self.seen_kept_ms())

    async def _prune_seen_loop(self) -> None:
        while not self._closing:
            try:
                forgotten = self.prune_seen()
                if forgotten:
                    log.info("forgot %d delivered ids older than the streams keep messages", forgotten)
            except Exception:  # the disk refused: the table only grows until the next try
                log.exception("pruning the delivered ids failed")
            await asyncio.sleep(_PRUNE_EVERY_S)

    # -- FLASH acknowledgement -------------------------------------------------------

    async def _watch_flash(self) -> None:
        assert self.outbox is not None
        period = max(0.05, min(1.0, self.options.flash_ack_timeout_s / 4))
        while not self._closing:
            await asyncio.sleep(period)
            try:
                await self.check_flash()
            except Exception:  # the watcher must outlive a bad callback
                log.exception("FLASH acknowledgement check failed")

    async def check_flash(self) -> list[Escalation]:
        """Escalate FLASH bulletins past their deadline; returns the new escalations."""
        assert self.outbox is not None
        now = self.clock()
        overdue = self.outbox.check_flash(now)
        self.metrics.flash_unacknowledged.set(len(overdue))
        fresh = []
        for o in overdue:
            if o.escalated_at is not None:
                continue
            self.outbox.mark_escalated(o.bulletin_id, now_ms=now)
            self.metrics.flash_escalations.inc()
            esc = Escalation(o.bulletin_id, o.posted_at, o.missing)
            fresh.append(esc)
            log.error("FLASH %s not acknowledged by %s in time", o.bulletin_id, ", ".join(o.missing))
            if self.on_escalation is not None:
                result = self.on_escalation(esc)
                if inspect.isawaitable(result):
                    await result
        return fresh
