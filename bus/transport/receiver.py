"""The receiving half of a node: fetch, open, check, dedupe, hand over, acknowledge.

One pull consumer per (inbox or feed, precedence), made again at the node's cursor
when the server loses it (``cursor.py``), gated so that a lower
precedence waits while a higher one has messages arriving (``PrecedenceGate``). A
fetched batch is opened whole (``_open_batch``: the envelope through the entry its
subject names, shared with the opening threads), then each message is admitted
(``_admitted``: subject, feed rules, the application's rules) or quarantined with its
reason, deduped by bulletin id, handed to the application (``hooks.on_bulletin``),
remembered and receipted in one transaction (``_commit``), and only then acked to
JetStream. Receipts for this node's own bulletins update the outbox.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bus import timing
from bus.envelope import RECIPIENT_FEED, RECIPIENT_OFFICE, Opened, Via, read_routing
from bus.envelope_fast import FastOpener
from bus.errors import (
    BusError,
    FeedKeyPending,
    Misrouted,
    NotAddressedToUs,
    NotConnected,
    PermissionDenied,
    PrecedenceMismatch,
    RecipientMismatch,
    ValidationError,
)
from bus.receipt import DELIVERED, open_receipt
from bus.transport import subjects as sj
from bus.transport.client import BusClient, Msg, PullConsumer, ack_all, nak, stored_at_ms, stream_position
from bus.transport.cursor import Cursor, CursorStore
from bus.transport.gate import PrecedenceGate
from bus.transport.node_core import Core, StateChange
from bus.transport.outbox import transaction
from bus.transport.quarantine import reason_of
from bus.transport.sender import Sender

log = logging.getLogger("blo.bus.node")

#: A batch hands over this many messages between two looks at the connection (see
#: ``_handle_bulletins``): a FLASH arriving meanwhile overtakes at most this many.
_YIELD_EVERY = 16
#: What opening a message of a feed being left gives for a bulletin sealed after the removal.
_PAST_MEMBERSHIP: Any = object()
#: How often the node forgets delivered ids past the streams' keeping (see prune_seen).
_PRUNE_EVERY_S = 6 * 3600.0
#: A fetched batch this large is opened by several threads (see ``_open_batch``); a
#: smaller one is not worth handing over to a thread.
_PARALLEL_MIN = 16


@dataclass(frozen=True, slots=True)
class Route:
    """What a bulletin's subject says (SUBJECTS.md): the recipient entry it must open
    through, the precedence token's precedence and the sending office."""

    via: Via
    precedence: str
    sender: str


class Receiver:
    def __init__(self, core: Core, sender: Sender, opener: FastOpener) -> None:
        self.core = core
        #: Signs the delivered receipts and takes the receipts for this node's bulletins.
        self.sender = sender
        self.opener = opener
        self.office = core.office
        self.resolver = core.resolver
        self.options = core.options
        self.hooks = core.hooks
        self.metrics = core.metrics
        threads = core.options.open_threads
        self._open_threads = min(3, (os.cpu_count() or 1) - 1) if threads is None else max(0, threads)
        self._open_pool: ThreadPoolExecutor | None = None
        self._gate = PrecedenceGate(len(sj.PRECEDENCE_TOKENS))
        self._inflight: set[str] = set()
        #: feeds read -> where their consumers start when created (None: the stream's start)
        self._feeds: dict[str, int | None] = dict.fromkeys(core.options.feeds)
        self._leaving: dict[str, int] = {}  # feed being left -> its consumers still reading
        self._past_membership: set[str] = set()  # consumers of a feed left that reached its removal
        self._retry_lock = asyncio.Lock()
        # Labelled children looked up once: .labels() costs more than the increment.
        self._in_metrics = {
            p: (
                self.metrics.received.labels(precedence=p),
                self.metrics.delivery_latency.labels(precedence=p),
                self.metrics.bulletin_bytes.labels(direction="in"),
            )
            for p in sj.PRECEDENCES_BY_RANK
        }
        self._routes: dict[str, Route | ValidationError] = {}  # subject -> what it says
        self._cursor_store: CursorStore | None = None
        self._cursors: dict[str, Cursor] = {}  # ephemeral consumer's name -> where it reached

    def start(self) -> None:
        """Start the opening threads and every consumer: the inbox's, each feed's, the receipts'."""
        assert self.core.seen is not None
        self._cursor_store = CursorStore(self.core.seen.db)
        if self._open_threads:
            self._open_pool = ThreadPoolExecutor(self._open_threads, thread_name_prefix=f"blo-open-{self.office}")
        for spec in sj.node_consumers(self.office):
            self._consumer_task(spec)
        for feed, start_ms in self._feeds.items():
            for spec in sj.feed_consumers(self.office, feed, start_ms=start_ms):
                self._consumer_task(spec)
        self.core.spawn(self._consume_receipts(sj.receipts_consumer_spec(self.office)), "blo-receipts")
        self.core.spawn(self._prune_seen_loop(), "blo-seen-prune")

    def stop(self) -> None:
        """After the tasks are cancelled: stop the opening threads."""
        if self._open_pool is not None:
            self._open_pool.shutdown(wait=True, cancel_futures=True)
            self._open_pool = None

    def _consumer_task(self, spec: sj.ConsumerSpec) -> asyncio.Task[None]:
        return self.core.spawn(self._consume(spec), f"blo-{spec.durable}")

    def subscribe_feed(self, feed: str, *, start_ms: int | None = None) -> bool:
        """Read ``feed`` too (its consumers, one per precedence), from now if running, else
        from ``start``; False if this node reads it already. ``start_ms``: where consumers
        created now start (a member that joins reads from its joining, not the epochs
        before it, which it cannot open); consumers that exist resume where they left."""
        sj.check_feed(feed)
        if feed in self._feeds:
            return False
        self._feeds[feed] = start_ms
        if self.core.client is not None and not self.core.closing:
            for spec in sj.feed_consumers(self.office, feed, start_ms=start_ms):
                self._consumer_task(spec)
        return True

    def leave_feed(self, feed: str) -> bool:
        """Stop reading ``feed`` once caught up (this office was removed from it): each of
        its consumers reads on until a fetch comes back empty or brings a bulletin not
        addressed to this office (sealed under an epoch after its removal: that one is
        left unacked, not quarantined), then its consumer is deleted, so a later joining
        starts afresh. False if this node does not read it."""
        if feed not in self._feeds or feed in self._leaving:
            return False
        self._leaving[feed] = len(sj.PRECEDENCES)
        return True

    async def _left(self, spec: sj.ConsumerSpec, client: BusClient) -> None:
        """One consumer of a feed being left is done: delete it (and its cursor); the last one
        takes the feed off this node's list."""
        feed = spec.feed
        assert feed is not None
        try:
            await client.delete_consumer(spec)
        except BusError as exc:  # it stays on the server, idle: harmless, and deleted next time
            log.warning("consumer %s of a feed left stays on the server: %s", spec.durable, exc)
        self._forget_cursor(spec)
        self._leaving[feed] -= 1
        if self._leaving[feed] <= 0:
            del self._leaving[feed]
            self._feeds.pop(feed, None)
            log.info("stopped reading feed %s", feed)

    @property
    def feeds(self) -> frozenset[str]:
        """The feeds this node reads."""
        return frozenset(self._feeds)

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
            while not self.core.closing:
                try:
                    client = await self.core.ready()
                    if consumer is None:
                        consumer = await self._bind(client, spec)
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

    async def _bind(self, client: BusClient, spec: sj.ConsumerSpec) -> PullConsumer:
        """The consumer ``spec``, bound; an ephemeral one created afresh starts at its cursor."""
        if not spec.ephemeral:
            return await client.pull(spec)
        cursor = self._cursor_of(spec)
        consumer = await client.pull(spec, restart_ns=cursor.restart_ns)
        if consumer.created:
            cursor.recreated()
        return consumer

    def _cursor_of(self, spec: sj.ConsumerSpec) -> Cursor:
        cursor = self._cursors.get(spec.durable)
        if cursor is None:
            assert self._cursor_store is not None
            cursor = self._cursors[spec.durable] = Cursor(self._cursor_store.get(spec.durable))
        return cursor

    def _advance(self, spec: sj.ConsumerSpec, fetched: list[Msg], settled: list[Msg]) -> None:
        """An ephemeral consumer's batch is settled as far as it goes: keep its cursor."""
        done = {id(m) for m in settled}
        positions = [(p[0], p[1], id(m) in done) for m in fetched if (p := stream_position(m.reply)) is not None]
        cursor = self._cursor_of(spec)
        if cursor.delivered(positions) and cursor.restart_ns is not None:
            assert self._cursor_store is not None
            try:
                self._cursor_store.put(spec.durable, cursor.restart_ns)
            except Exception:  # the disk refused: a consumer created again reads back further, nothing lost
                log.exception("keeping where consumer %s reached failed", spec.durable)

    def _forget_cursor(self, spec: sj.ConsumerSpec) -> None:
        self._cursors.pop(spec.durable, None)
        if self._cursor_store is not None:
            try:
                self._cursor_store.forget(spec.durable)
            except Exception:
                log.exception("forgetting where consumer %s reached failed", spec.durable)

    async def _consume(self, spec: sj.ConsumerSpec) -> None:
        await self._fetch_loop(spec, self._handle_bulletins, gated=True)

    async def _handle_bulletins(self, spec: sj.ConsumerSpec, msgs: list[Msg]) -> None:
        assert self.core.seen is not None
        rank = spec.rank
        gate = self._gate
        # Open the whole batch first (pure CPU, on this thread and the opening threads):
        # what fails is quarantined (and so settled), and one query finds the
        # authenticated ids delivered before.
        fetched = msgs
        now = self.core.clock()
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
        seen = self.core.seen.seen_of([o.bulletin.id for o in opened if o is not None])
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
        if spec.ephemeral:
            self._advance(spec, fetched, to_ack)

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
        assert self.core.quarantine is not None
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
        assert self.core.quarantine is not None
        reason = reason_of(exc)[0]
        self.metrics.rejected.labels(reason=reason).inc()
        if reason == "internal":
            log.exception("opening a message on %s failed unexpectedly; quarantined", subject)
        self.core.quarantine.add(raw, subject, exc, now_ms=self.core.clock(), witnessed_at=witnessed_at)
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
            if isinstance(envelope, NotAddressedToUs) and self.hooks.key_pending is not None:
                refs = read_routing(raw)[4]
                waiting = [r for r in refs if r.kind == RECIPIENT_FEED and self.hooks.key_pending(r.id, int(r.ref))]
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
        if via.kind == RECIPIENT_FEED and self.hooks.feed_rules is not None:
            self.hooks.feed_rules.check_post(via.id, int(via.ref), b.sender, witnessed_at)
        if self.hooks.admit is not None:
            self.hooks.admit(subject, opened)
        return opened

    async def _hand_over(self, subject: str, opened: Opened, seen: set[str] | None = None) -> Opened | bool | None:
        assert self.core.seen is not None
        bid = opened.bulletin.id
        if bid in self._inflight or (bid in seen if seen is not None else self.core.seen.contains(bid)):
            self.metrics.duplicates.inc()
            return True
        self._inflight.add(bid)
        try:
            if self.hooks.on_bulletin is not None:
                await self.hooks.on_bulletin(opened)
        except Exception:
            self._inflight.discard(bid)
            log.exception("the application failed on bulletin %s; it will be redelivered", bid)
            return None
        received, latency, size = self._in_metrics[opened.bulletin.precedence]
        received.inc()
        latency.observe(max(0.0, (self.core.clock() - opened.sent_at) / 1000))
        size.observe(len(opened.header) + len(opened.body) + 64)
        return opened

    def _commit(self, accepted: list[tuple[str, Opened]]) -> None:
        """Remember handed-over bulletins and queue their delivered receipts, before acking."""
        assert self.core.seen is not None and self.core.outbox is not None
        now = self.core.clock()
        try:
            if self.hooks.settle is not None:  # what the application stored reaches the disk first
                self.hooks.settle()
            receipts = self.sender.receipt_rows(
                [(DELIVERED, o.bulletin.id, o.bulletin.sender, o.bulletin.precedence) for _, o in accepted], now
            )
            with transaction(self.core.outbox.db):
                self.core.seen.insert([(o.bulletin.id, subject) for subject, o in accepted], now_ms=now)
                self.core.outbox.insert_receipts(receipts, now_ms=now)
            self.core.wake.set()
        finally:
            for _, o in accepted:
                self._inflight.discard(o.bulletin.id)

    async def _consume_receipts(self, spec: sj.ConsumerSpec) -> None:
        await self._fetch_loop(spec, self._handle_receipts)

    async def _handle_receipts(self, spec: sj.ConsumerSpec, msgs: list[Msg]) -> None:
        assert self.core.outbox is not None and self.core.quarantine is not None
        now = self.core.clock()
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
                self.core.quarantine.add(msg.data, msg.subject, exc, now_ms=now, witnessed_at=witnessed_at)
                continue
            good.extend((bid, r.office, r.kind, r.at_ms) for bid in r.bulletin_ids)
            self.metrics.receipts.labels(kind=r.kind).inc(len(r.bulletin_ids))
        if good:
            self.core.outbox.record_receipts(good, now_ms=now)
            self.sender.emit_states([StateChange(bid, office, kind, at) for bid, office, kind, at in good])
        await ack_all(msgs)
        if spec.ephemeral:
            self._advance(spec, msgs, msgs)

    def directory_changed(self, *args: Any) -> None:
        """Directory listener: may be called from any thread, with any arguments."""
        self.core.spawn_soon(self.retry_quarantine, "blo-quarantine-retry")

    async def retry_quarantine(self) -> int:
        """Open retryable quarantined bulletins again (after a directory change); those that
        open now are delivered as if just received. Returns how many were delivered."""
        assert self.core.quarantine is not None
        async with self._retry_lock:
            reopened = self.core.quarantine.retry_all(
                lambda subject, raw, w: self.open_message(subject, raw, witnessed_at=w), now_ms=self.core.clock()
            )
            delivered = 0
            for item in reopened:
                outcome = await self._hand_over(item.subject, item.opened)
                if outcome is None:
                    continue  # the application failed; stays quarantined for the next retry
                if outcome is not True:
                    self._commit([(item.subject, outcome)])
                    delivered += 1
                self.core.quarantine.resolve(item.qid)
            return delivered

    def seen_kept_ms(self) -> int:
        """How long the node remembers a delivered id: as long as a bulletin stream keeps
        a message, and a day more. A message can come again only while its stream keeps
        it, and it was stored before it was seen here, so an id seen longer ago than
        that can never come again."""
        streams = [s.max_age_s for s in self.options.streams if s.name in (sj.STREAM_OFFICES, sj.STREAM_FEEDS)]
        return int((max(streams, default=30 * sj.DAY_S) + sj.DAY_S) * 1000)

    def prune_seen(self) -> int:
        """Forget the delivered ids older than ``seen_kept_ms``; returns how many."""
        assert self.core.seen is not None
        return self.core.seen.prune(self.core.clock() - self.seen_kept_ms())

    async def _prune_seen_loop(self) -> None:
        while not self.core.closing:
            try:
                forgotten = self.prune_seen()
                if forgotten:
                    log.info("forgot %d delivered ids older than the streams keep messages", forgotten)
            except Exception:  # the disk refused: the table only grows until the next try
                log.exception("pruning the delivered ids failed")
            await asyncio.sleep(_PRUNE_EVERY_S)
