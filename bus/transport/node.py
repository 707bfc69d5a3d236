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
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import nacl.utils
from nats.aio.msg import Msg

from bus.bulletin import Bulletin
from bus.envelope import FeedRecipient, KeyResolver, OfficeRecipient, Opened, Opener, Recipient, Sealer, read_routing
from bus.errors import BusError, Misrouted, NotConnected, PermissionDenied, RecipientKeyInvalid, ValidationError
from bus.ids import Rng
from bus.keys import Identity, PeerKeys
from bus.receipt import DELIVERED, READ, open_receipt, sign_receipt
from bus.transport import subjects as sj
from bus.transport.client import Ack, BusClient, ClientConfig, PullConsumer, ack, nak
from bus.transport.embedded import embedded_server
from bus.transport.gate import PrecedenceGate
from bus.transport.metrics import BusMetrics
from bus.transport.outbox import BulletinStatus, Delivery, Outbox, transaction
from bus.transport.quarantine import Quarantine, reason_of
from bus.transport.seen import SeenStore
from bus.transport.server import NatsServer

log = logging.getLogger("blo.bus.node")


class DirectoryResolver(KeyResolver, Protocol):
    """What the node needs from the directory (``bus.directory.Directory`` implements it):
    sender keys to open, recipient keys to seal. ``add_listener`` is optional; when
    present the node retries quarantined unknown-sender bulletins on every change."""

    def recipient_keys(self, office_id: str, now_ms: int) -> PeerKeys: ...


@dataclass(frozen=True, slots=True)
class Escalation:
    """A FLASH bulletin this node sent that some office recipient has not acknowledged in time."""

    bulletin_id: str
    posted_at: int
    missing: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Posted:
    """A bulletin sealed and queued by ``submit``: what the node's store keeps of it."""

    bulletin: Bulletin
    sealed: bytes
    recipients: tuple[str, ...]  # office ids and ``feed:<name>``
    posted_at: int


@dataclass(frozen=True, slots=True)
class StateChange:
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


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


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
        self.metrics = metrics or BusMetrics.default()
        self.clock = clock
        self.rng = rng
        self.sealer = Sealer(identity)
        self.opener = Opener.for_identity(identity, resolver, feed_keys=self.feed_keys)
        self.server: NatsServer | None = None
        self.client: BusClient | None = None
        self.outbox: Outbox | None = None
        self.seen: SeenStore | None = None
        self.quarantine: Quarantine | None = None
        self._gate = PrecedenceGate(len(sj.PRECEDENCE_TOKENS))
        self._inflight: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
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

    # -- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Open the stores, start (or reach) NATS, and run the pump and consumers. Returns
        without waiting for the link: posting works while it is down."""
        self._loop = asyncio.get_running_loop()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(self.data_dir / "outbox.db")
        self.seen = SeenStore(db=self.outbox.db)  # one transaction remembers a batch and queues its receipts
        self.quarantine = Quarantine(self.data_dir / "quarantine.db", self.metrics)
        config = self.client_config
        if config is None:
            self.server = embedded_server(
                self.data_dir, port=self.options.embedded_port, sync_always=self.options.embedded_sync_always
            )
            await asyncio.to_thread(self.server.start)
            config = ClientConfig(urls=(self.server.url,), name=f"blo-{self.office}")
        self.client = BusClient(config, listener=self._on_bus_event)
        await self.client.start()
        specs = sj.node_consumers(self.office, self.options.feeds)
        self._tasks = [asyncio.create_task(self._pump(), name="blo-pump")]
        self._tasks += [asyncio.create_task(self._consume(spec), name=f"blo-{spec.durable}") for spec in specs]
        self._tasks.append(
            asyncio.create_task(self._consume_receipts(sj.receipts_consumer_spec(self.office)), name="blo-receipts")
        )
        self._tasks.append(asyncio.create_task(self._watch_flash(), name="blo-flash-watch"))
        add_listener = getattr(self.resolver, "add_listener", None)
        if callable(add_listener):
            add_listener(self._directory_changed)
        self.metrics.outbox_depth.set(self.outbox.depth())
        self._wake.set()

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

    def _recipients(self, offices: Iterable[str], feeds: Iterable[str], now: int) -> tuple[list[Recipient], list[str]]:
        """Seal targets and their outbox names (an office id, or ``feed:<name>``)."""
        targets: list[Recipient] = []
        names: list[str] = []
        for office in offices:
            sj.check_office(office)
            keys = self.resolver.recipient_keys(office, now)
            if keys is None:
                raise RecipientKeyInvalid(f"the directory has no current keys for {office}; cannot seal to it")
            targets.append(OfficeRecipient(keys))
            names.append(office)
        for feed in feeds:
            sj.check_feed(feed)
            epochs = [e for (f, e) in self.feed_keys if f == feed]
            if not epochs:
                raise ValidationError("feeds", f"this node holds no epoch key for feed {feed}; it cannot post to it")
            epoch = max(epochs)
            targets.append(FeedRecipient(feed, epoch, self.feed_keys[(feed, epoch)]))
            names.append(f"feed:{feed}")
        return targets, names

    def _prepare(self, bulletin: Bulletin, offices: Sequence[str], feeds: Sequence[str], now: int) -> tuple[Any, ...]:
        targets, names = self._recipients(offices, feeds, now)
        sealed = self.sealer.seal(bulletin, targets, now_ms=now, rng=self.rng)
        fanout = len(names) > 1
        deliveries = []
        for name in names:
            if name.startswith("feed:"):
                subject = sj.feed_subject(name[5:], bulletin.precedence, self.office)
            else:
                subject = sj.office_subject(name, bulletin.precedence, self.office)
            deliveries.append(Delivery(name, subject, sj.bulletin_msg_id(bulletin.id, name, fanout=fanout)))
        deadline = None
        if bulletin.precedence == "FLASH":
            deadline = now + int(self.options.flash_ack_timeout_s * 1000)
        self.metrics.bulletin_bytes.labels(direction="out").observe(len(sealed))
        return (bulletin.id, bulletin.precedence, sj.precedence_rank(bulletin.precedence), sealed, deliveries, deadline)

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
        self.metrics.outbox_depth.set(self.outbox.depth())
        self._wake.set()
        return [
            Posted(b, p[3], tuple(d.recipient for d in p[4]), now) for (b, _, _), p in zip(items, prepared, strict=True)
        ]

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
        rows = []
        for kind, bid, sender, precedence in items:
            if sender == self.office:
                continue  # our own bulletin, read from a feed we belong to
            payload = sign_receipt(self.identity, kind, bid, sender, now_ms=now)
            rows.append(
                (
                    bid,
                    sender,
                    sj.precedence_rank(precedence),
                    sj.receipt_subject(sender, self.office),
                    sj.receipt_msg_id(kind, bid, self.office),
                    payload,
                )
            )
        return rows

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
        assert self.outbox is not None
        opts = self.options
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
            self._wake.clear()
            batch = self.outbox.next_batch(opts.pump_window)
            if not batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                continue
            results = await client.publish_batch([(p.subject, p.payload, p.msg_id) for p in batch])
            now = self.clock()
            sent = [p for p, r in zip(batch, results, strict=True) if isinstance(r, Ack)]
            failed = [(p, r) for p, r in zip(batch, results, strict=True) if not isinstance(r, Ack)]
            self.outbox.mark_sent([p.seq for p in sent], now_ms=now)
            changes = []
            for p in sent:
                if p.kind == "bulletin":
                    self.metrics.sent.labels(precedence=sj.PRECEDENCES_BY_RANK[p.rank]).inc()
                    changes.append(StateChange(p.bulletin_id, p.recipient, "sent", now))
            self._emit_states(changes)
            if failed:
                self.outbox.note_failures([(p.seq, str(r)) for p, r in failed])
                first = failed[0][1]
                if isinstance(first, BusError) and "no stream stores" in first.message:
                    self._streams_ok = False
                log.warning("%d of %d sends failed (%s); retrying", len(failed), len(batch), first)
                await asyncio.sleep(opts.retry_delay_s)
            self.metrics.outbox_depth.set(self.outbox.depth())

    # -- receiving -------------------------------------------------------------------

    async def _fetch_loop(
        self, spec: sj.ConsumerSpec, handle: Callable[[sj.ConsumerSpec, list[Msg]], Awaitable[None]]
    ) -> None:
        opts = self.options
        consumer: PullConsumer | None = None
        while not self._closing:
            try:
                client = await self._ready()
                if consumer is None:
                    consumer = await client.pull(spec)
                msgs = await consumer.fetch(opts.fetch_batch, opts.fetch_wait_s)
            except NotConnected:
                await asyncio.sleep(opts.retry_delay_s)
                continue
            except BusError as exc:
                log.warning("consumer %s: %s", spec.durable, exc)
                consumer = None
                await asyncio.sleep(opts.retry_delay_s * (5 if isinstance(exc, PermissionDenied) else 1))
                continue
            if msgs:
                await handle(spec, msgs)

    async def _consume(self, spec: sj.ConsumerSpec) -> None:
        await self._fetch_loop(spec, self._handle_bulletins)

    async def _handle_bulletins(self, spec: sj.ConsumerSpec, msgs: list[Msg]) -> None:
        assert self.quarantine is not None
        rank = spec.rank
        self._gate.add(rank, len(msgs))
        left = len(msgs)
        accepted: list[tuple[str, Opened]] = []
        to_ack: list[Msg] = []
        try:
            seen = self._seen_in(msgs)
            for msg in msgs:
                await self._gate.turn(rank)
                try:
                    outcome = await self._receive(msg.subject, msg.data, seen)
                finally:
                    left -= 1
                    await self._gate.done(rank)
                if outcome is None:  # the application failed: let JetStream redeliver later
                    await nak(msg, self.options.app_retry_delay_s)
                    continue
                if outcome is not True:
                    accepted.append((msg.subject, outcome))
                to_ack.append(msg)
        finally:
            if left:
                await self._gate.done(rank, left)
            if accepted:
                self._commit(accepted)
        for msg in to_ack:
            await ack(msg)

    def _seen_in(self, msgs: list[Msg]) -> set[str]:
        """Ids in this batch delivered before: one query per batch, from the unverified
        routing header (the check that counts is on the opened, authenticated id)."""
        assert self.seen is not None
        ids = []
        for msg in msgs:
            with contextlib.suppress(Exception):  # bad input fails properly in open()
                ids.append(read_routing(msg.data)[0])
        return self.seen.seen_of(ids)

    async def _receive(self, subject: str, raw: bytes, seen: set[str] | None = None) -> Opened | bool | None:
        """Open and hand over one message. Returns the Opened if the application took it
        (commit pending), True if it is settled (quarantined or a duplicate), None if the
        application failed (leave it to redelivery)."""
        assert self.quarantine is not None and self.seen is not None
        try:
            opened = self.open_message(subject, raw)
        except Exception as exc:  # whatever fails to open is kept, never crashes the consumer
            reason = reason_of(exc)[0]
            self.metrics.rejected.labels(reason=reason).inc()
            if reason == "internal":
                log.exception("opening a message on %s failed unexpectedly; quarantined", subject)
            self.quarantine.add(raw, subject, exc, now_ms=self.clock())
            return True
        return await self._hand_over(subject, opened, seen)

    def open_message(self, subject: str, raw: bytes) -> Opened:
        """Open a bulletin that came on ``subject``, and check the subject's sender token
        names the office that signed it (``Misrouted`` otherwise)."""
        opened = self.opener.open(raw)
        claimed = sj.subject_sender(subject)
        if claimed != opened.bulletin.sender:
            raise Misrouted(
                f"bulletin {opened.bulletin.id} is signed by {opened.bulletin.sender} but came on {subject}, "
                f"which names {claimed or 'no office'} as its sender"
            )
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
            try:
                r = open_receipt(msg.data, self.resolver)
                if r.bulletin_sender != self.office:
                    raise ValidationError(
                        "bulletin_sender", f"the receipt is for {r.bulletin_sender}'s bulletin, not ours"
                    )
                if sj.subject_sender(msg.subject) != r.office:
                    raise Misrouted(f"a receipt signed by {r.office} came on {msg.subject}")
            except Exception as exc:
                self.metrics.rejected.labels(reason=reason_of(exc)[0]).inc()
                self.quarantine.add(msg.data, msg.subject, exc, now_ms=now)
                continue
            good.append((r.bulletin_id, r.office, r.kind, r.at_ms))
            self.metrics.receipts.labels(kind=r.kind).inc()
        if good:
            self.outbox.record_receipts(good, now_ms=now)
            self._emit_states([StateChange(bid, office, kind, at) for bid, office, kind, at in good])
        for msg in msgs:
            await ack(msg)

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
            reopened = self.quarantine.retry_all(self.open_message, now_ms=self.clock())
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
