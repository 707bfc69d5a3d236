"""What the parts of a ``BusNode`` share: its options, the application's hooks, the
result types, and ``Core``, the running state (the connection, the three stores, the
wake-up of the pump, the tasks) that the sender, the receiver and the FLASH watch read.

A node is three jobs on one connection (``bus/transport/node.py`` wires them):

* ``sender.py``: seal, queue in the outbox, publish FLASH first, mark sent on the ack;
* ``receiver.py``: fetch, open, check, dedupe, hand over, remember, receipt, ack;
* ``flash_watch.py``: escalate a FLASH no person acknowledged in time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from bus.bulletin import Bulletin
from bus.envelope import KeyResolver, Opened
from bus.ids import Rng
from bus.keys import Identity, PeerKeys
from bus.transport import subjects as sj
from bus.transport.client import BusClient
from bus.transport.metrics import BusMetrics
from bus.transport.outbox import Outbox
from bus.transport.quarantine import Quarantine
from bus.transport.seen import SeenStore

log = logging.getLogger("blo.bus.node")


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


@dataclass(eq=False)
class NodeHooks:
    """Where the application meets the bus: every callback a node makes, in one place.
    Each may be None (the bus then does without it). Set a field later to wire a part
    that exists only after the node (``feed_rules``)."""

    #: A bulletin opened, checked and new here: store it (raise to have it redelivered).
    on_bulletin: OnBulletin | None = None
    #: A FLASH this node sent was not acknowledged in time.
    on_escalation: OnEscalation | None = None
    #: Recipients of bulletins sent here moved on (sent, delivered, read, acknowledged).
    on_state: OnState | None = None
    #: The application's rules for what it accepts (raise a BloError to refuse).
    admit: Callable[[str, Opened], None] | None = None
    #: (feed, epoch) -> may that epoch's key still arrive here?
    key_pending: Callable[[str, int], bool] | None = None
    #: The feed rules every bulletin opened through a feed entry must pass, and the epoch
    #: a post must be sealed under.
    feed_rules: FeedRules | None = None
    #: Called once a fetched batch is handed over, before it is marked delivered and
    #: acked: the application makes what it stored of the batch durable (one flush to
    #: disk per batch; see office_node.db.Database.deferred). Raising leaves the batch
    #: unacked, to be delivered again.
    settle: Callable[[], None] | None = None


@dataclass(frozen=True)
class NodeOptions:
    feeds: tuple[str, ...] = ()  # feeds this node reads (it must hold their epoch keys)
    flash_ack_timeout_s: float = 120.0
    fetch_batch: int = 256
    # How long an idle consumer's pull request waits on the server (a message that comes
    # meanwhile is delivered at once, so this costs no latency). Each request is ~150 bytes
    # each way: at 1 s, a node's five consumers spent a tenth of a 64 kbit/s line polling.
    fetch_wait_s: float = 5.0
    pump_window: int = 512  # messages published before waiting for their acks
    retry_delay_s: float = 0.5  # after a failed round of publishes or fetches
    app_retry_delay_s: float = 2.0  # redelivery delay when on_bulletin raised
    ensure_streams: bool = True  # False where the operator creates streams (restricted users)
    streams: tuple[sj.StreamSpec, ...] = field(default_factory=lambda: tuple(sj.default_streams()))
    embedded_port: int = 0
    embedded_sync_always: bool = True
    #: threads that open fetched bulletins beside the event loop's (see ``Receiver``);
    #: None: one fewer than the machine's cores, at most 3; 0: the event loop's only
    open_threads: int | None = None


class Core:
    """The state the parts of one node share while it runs. The stores and the client
    exist from ``BusNode.start`` on."""

    def __init__(
        self,
        identity: Identity,
        resolver: DirectoryResolver,
        *,
        options: NodeOptions,
        hooks: NodeHooks,
        metrics: BusMetrics,
        feed_keys: dict[tuple[str, int], bytes],
        clock: Callable[[], int],
        rng: Rng,
    ) -> None:
        self.identity = identity
        self.office = identity.office_id
        self.resolver = resolver
        self.options = options
        self.hooks = hooks
        self.metrics = metrics
        #: (feed, epoch) -> epoch key; shared with the openers, so new epochs may be added live.
        self.feed_keys = feed_keys
        self.clock = clock
        self.rng = rng
        self.client: BusClient | None = None
        self.outbox: Outbox | None = None
        self.seen: SeenStore | None = None
        self.quarantine: Quarantine | None = None
        #: Set when the outbox may have something for the pump (a post, a receipt, a link back).
        self.wake = asyncio.Event()
        self.closing = False
        self.tasks: list[asyncio.Task[None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.events: list[tuple[str, str]] = []  # recent connection events, for status pages
        self._streams_ok = False
        self._streams_lock = asyncio.Lock()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coro`` until the node closes."""
        task = asyncio.create_task(coro, name=name)
        self.tasks.append(task)
        return task

    def spawn_soon(self, make: Callable[[], Coroutine[Any, Any, Any]], name: str) -> None:
        """``spawn(make())`` on the node's loop, soon; callable from any thread (listeners
        of the directory and the feed keys call it from theirs)."""
        loop = self.loop
        if loop is None or self.closing:
            return

        def schedule() -> None:
            if not self.closing:
                self.tasks.append(loop.create_task(make(), name=name))

        loop.call_soon_threadsafe(schedule)

    def on_bus_event(self, event: str, detail: str) -> None:
        """The client's listener: connection events, kept for status pages."""
        self.events = [*self.events[-49:], (event, detail)]
        if event in ("connected", "reconnected"):
            self.metrics.connected.set(1)
            self._streams_ok = False  # a different server may lack them; checking is cheap
            self.wake.set()
        elif event in ("disconnected", "closed"):
            self.metrics.connected.set(0)

    @property
    def streams_ready(self) -> bool:
        """Whether the streams were found (or made) since the last connect."""
        return self._streams_ok

    def streams_missing(self) -> None:
        """A publish said no stream stores its subject: check the streams on the next use."""
        self._streams_ok = False

    async def ready(self) -> BusClient:
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
