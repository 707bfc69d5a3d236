"""The sending half of a node: seal, queue durably, publish FLASH first.

A post is sealed (``_prepare``: the recipients' current keys, each feed under the epoch
the feed's rules give) and written to the outbox in one commit (``submit_many``); the
pump (``run``) publishes what the outbox hands out, FLASH first, up to
``_WINDOWS_IN_FLIGHT`` windows on the wire at once, and marks each copy ``sent`` on
JetStream's ack. Feed copies sealed under an epoch that moved on are re-sealed or held
(``review_feed``, FEEDS.md: what a sender does). Receipts this node signs (delivered,
read, acknowledged) are queued and sent the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from bus.bulletin import Bulletin
from bus.envelope import RECIPIENT_FEED, FeedRecipient, OfficeRecipient, Recipient, read_routing
from bus.envelope_fast import FastOpener, FastSealer
from bus.errors import BusError, NoStream, PermissionDenied, RecipientKeyInvalid, ValidationError
from bus.receipt import ACKNOWLEDGED, MAX_RECEIPT_IDS, READ, sign_receipt
from bus.transport import subjects as sj
from bus.transport.client import Ack, BusClient
from bus.transport.node_core import Core, Posted, StateChange
from bus.transport.outbox import BulletinStatus, Delivery, Queued
from bus.transport.pacing import Pacer, take

log = logging.getLogger("blo.bus.node")

#: Pump windows on the wire at once (see ``run``).
_WINDOWS_IN_FLIGHT = 4


class Sender:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.identity = core.identity
        self.office = core.office
        self.resolver = core.resolver
        self.options = core.options
        self.hooks = core.hooks
        self.metrics = core.metrics
        self.feed_keys = core.feed_keys
        self.sealer = FastSealer(core.identity)
        self._out_size = self.metrics.bulletin_bytes.labels(direction="out")
        # Labelled children looked up once: .labels() costs more than the increment.
        self._sent_metrics = tuple(self.metrics.sent.labels(precedence=p) for p in sj.PRECEDENCES_BY_RANK)
        self._subjects: dict[str, dict[str, str]] = {}  # recipient -> precedence -> subject
        #: bulletin id -> {copy index: why it waits}, for copies to hold as they are queued
        self._held_at_post: dict[str, dict[int, str]] = {}
        self._review_lock = asyncio.Lock()
        self._depth_at = 0.0  # when the pump last counted the outbox for the depth gauge
        self.pacer = Pacer()

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
        want = max(held, default=0) if self.hooks.feed_rules is None else self.hooks.feed_rules.post_epoch(feed, self.office)
        if want and (feed, want) in self.feed_keys:
            return want, None
        older = [e for e in held if e < want]
        if not older:
            raise ValidationError("feeds", f"this node holds no epoch key for feed {feed} yet; it cannot post to it")
        return max(older), f"waiting for the key of epoch {want} of feed {feed} (the grant is on its way)"

    def _prepare(self, bulletin: Bulletin, offices: Sequence[str], feeds: Sequence[str], now: int) -> Queued:
        waiting: dict[str, str] = {}
        targets, names = self._recipients(offices, feeds, now, waiting)
        sealed = self.sealer.seal(bulletin, targets, now_ms=now, rng=self.core.rng)
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
        return Queued(bulletin.id, precedence, sj.precedence_rank(precedence), sealed, deliveries, deadline)

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

    async def submit_many(self, items: Sequence[tuple[Bulletin, Sequence[str], Sequence[str]]]) -> list[Posted]:
        """Seal and queue several bulletins with one disk commit for all."""
        assert self.core.outbox is not None, "start() first"
        now = self.core.clock()
        prepared = [self._prepare(b, offices, feeds, now) for b, offices, feeds in items]
        self.core.outbox.enqueue_many(prepared, now_ms=now)
        if self._held_at_post:  # before the pump can run: nothing awaits in between
            self._hold_new(now)
        # Counting the queue costs in proportion to its length; the pump sets the exact
        # figure as it goes (see _send_round).
        self.metrics.outbox_depth.inc(sum(len(p.deliveries) for p in prepared))
        self.core.wake.set()
        return [
            Posted(b, p.sealed, tuple(d.recipient for d in p.deliveries), now)
            for (b, _, _), p in zip(items, prepared, strict=True)
        ]

    def _hold_new(self, now: int) -> None:
        """Hold the feed copies that ``_prepare`` sealed under an older epoch than the newest."""
        assert self.core.outbox is not None
        waiting, self._held_at_post = self._held_at_post, {}
        for seq, bid, *_ in self.core.outbox.seqs_of(list(waiting)):
            for index, why in waiting[bid].items():
                self.core.outbox.hold(seq, [index], reason=why, now_ms=now)

    def feed_changed(self, feed: str) -> None:
        """The feed's epochs or keys changed here: look again at its copies still queued or
        held (``review_feed``), soon, on the event loop. Callable from any thread."""
        self.core.spawn_soon(lambda: self.review_feed(feed), f"blo-feed-review-{feed}")

    async def review_feed(self, feed: str) -> None:
        """FEEDS.md, what a sender does, for the copies to ``feed`` not yet sent: one sealed
        under an older epoch than the newest is re-sealed under it (the same bulletin, a new
        envelope) or, while that epoch's key has not arrived, held; one this office may no
        longer post (removed, not a writer) fails with the reason. Held copies whose epoch
        is current again are released."""
        assert self.core.outbox is not None
        async with self._review_lock:
            now = self.core.clock()
            for seq, _bid, sealed, deliveries, queued, held in self.core.outbox.feed_copies(f"feed:{feed}"):
                mine = [*queued, *held]
                try:
                    want, why = self._feed_epoch(feed)
                    if why is not None:
                        if queued:
                            self.core.outbox.hold(seq, queued, reason=why, now_ms=now)
                        continue
                    if self._sealed_epoch(sealed, feed) == want:
                        if held:
                            self.core.outbox.release(seq, held)
                        continue
                    self.core.outbox.release(seq, mine, sealed=self._reseal(sealed, deliveries, feed, now))
                except BusError:
                    raise
                except Exception as exc:  # the feed's rules or the directory say no: it cannot go
                    reason = getattr(exc, "message", str(exc))
                    log.warning("a bulletin to feed %s cannot be sent: %s", feed, reason)
                    self.core.outbox.fail_held(seq, mine, reason=reason, now_ms=now)
            self.core.wake.set()

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
        return self.sealer.seal(bulletin, targets, now_ms=now, rng=self.core.rng)

    def emit_states(self, changes: list[StateChange]) -> None:
        if changes and self.hooks.on_state is not None:
            try:
                self.hooks.on_state(changes)
            except Exception:  # the application's bookkeeping must not stop the pump
                log.exception("on_state callback failed")

    def status(self, bulletin_id: str) -> BulletinStatus | None:
        """Each recipient's state (queued, sent, delivered, read) of a bulletin posted here."""
        assert self.core.outbox is not None, "start() first"
        return self.core.outbox.status(bulletin_id)

    async def send_read_receipt(self, bulletin_id: str, sender: str, precedence: str = "ROUTINE") -> None:
        """Tell ``sender`` an officer here read ``bulletin_id`` (queued like any message)."""
        self._queue_receipts([(READ, bulletin_id, sender, precedence)])

    async def send_acknowledgement(self, bulletin_id: str, sender: str, precedence: str = "FLASH") -> None:
        """Tell ``sender`` a person here acknowledged ``bulletin_id`` (what ends a FLASH's escalation)."""
        self._queue_receipts([(ACKNOWLEDGED, bulletin_id, sender, precedence)])

    def _queue_receipts(self, items: Iterable[tuple[str, str, str, str]]) -> None:
        assert self.core.outbox is not None
        now = self.core.clock()
        rows = self.receipt_rows(items, now)
        if rows:
            self.core.outbox.enqueue_receipts(rows, now_ms=now)
            self.core.wake.set()

    def receipt_rows(
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
        assert self.core.outbox is not None
        deadline = time.monotonic() + timeout
        while self.core.outbox.depth():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def run(self) -> None:
        """The pump: ``_WINDOWS_IN_FLIGHT`` lanes, each publishing a window of what the outbox
        hands out (FLASH first) and waiting for its acks, so that the server always has the
        next window while the acks of the last come back. No more bytes are unacknowledged
        than the pacer allows (pacing.py: what keeps the link busy and no more, so a FLASH
        posted now does not queue behind a slow link's minutes of backlog); a copy leaves the
        queue only on its ack."""
        assert self.core.outbox is not None
        inflight: set[int] = set()  # keys of the copies published, ack not yet seen
        lanes = [
            asyncio.create_task(self._lane(n, inflight), name=f"blo-pump-lane-{n}") for n in range(_WINDOWS_IN_FLIGHT)
        ]
        try:
            await asyncio.gather(*lanes)
        finally:
            for task in lanes:
                task.cancel()
            for task in lanes:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _lane(self, lane: int, inflight: set[int]) -> None:
        """One lane of the pump: take a window, publish it, settle its acks; again.

        A lane takes its window and writes it in one step (nothing awaits between the
        outbox's ``next_batch`` and the write: ``BusClient.publish_batch``), so the wire
        keeps outbox order across lanes. And it takes its next window as soon as its acks
        are read, in the same turn of the event loop: ack-clocked, as TCP is. On an event
        loop busy sealing (an officer's batch, a centre's forwards) a turn can take tens of
        milliseconds, and a round trip that cost three turns (acks read, pump woken, window
        written) kept the pacer's budget growing three times slower."""
        opts = self.options
        while not self.core.closing:
            try:
                client = await self.core.ready()
            except PermissionDenied as exc:
                if lane == 0:  # one lane speaks for the pump
                    log.error("%s", exc)
                await asyncio.sleep(5 * opts.retry_delay_s)
                continue
            except BusError as exc:
                if lane == 0:
                    log.warning("bus not ready: %s", exc)
                await asyncio.sleep(opts.retry_delay_s)
                continue
            batch = self._next_window(inflight)
            if not batch:  # nothing queued, or no room beside what is in flight: until a post or an ack
                self.core.wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.core.wake.wait(), 1.0)
                continue
            await self._send_round(client, batch, inflight)

    def _next_window(self, inflight: set[int]) -> list[Any]:
        """The next window: what the outbox hands out first, no more than the pacer's budget
        leaves room for beside what is in flight (at least one message when nothing is),
        and at most a quarter of the budget, so that several windows are on the wire at
        once and each one's acks time the link closely. Its copies are marked in flight."""
        assert self.core.outbox is not None
        budget = self.pacer.budget()
        room = min(budget - self.pacer.in_flight, budget // _WINDOWS_IN_FLIGHT)
        idle = self.pacer.in_flight == 0
        if room <= 0 and not idle:
            return []
        batch = self.core.outbox.next_batch(self.options.pump_window, exclude=inflight)
        batch = batch[: take([len(p.payload) for p in batch], room, nothing_in_flight=idle)]
        inflight.update(p.key for p in batch)
        return batch

    async def _send_round(self, client: BusClient, batch: list[Any], inflight: set[int]) -> None:
        """Publish one window; mark the acked copies sent, leave the others queued."""
        assert self.core.outbox is not None
        opts = self.options
        nbytes, acked = sum(len(p.payload) for p in batch), 0
        sending = self.pacer.sent(nbytes, time.monotonic())
        try:
            try:
                results: list[Ack | BusError] = await client.publish_batch(
                    [(p.subject, p.payload, p.msg_id) for p in batch]
                )
            except BusError as exc:  # the link dropped before the window went out
                results = [exc] * len(batch)
            now = self.core.clock()
            sent: list[Any] = []
            failed: list[tuple[Any, Ack | BusError]] = []
            per_rank = [0] * len(self._sent_metrics)
            for p, r in zip(batch, results, strict=True):
                if type(r) is Ack:
                    sent.append(p)
                    acked += len(p.payload)
                    if p.kind == "bulletin":
                        per_rank[p.rank] += 1
                else:
                    failed.append((p, r))
            self.core.outbox.mark_sent([p.key for p in sent], now_ms=now)
            for counter, n in zip(self._sent_metrics, per_rank, strict=True):
                if n:
                    counter.inc(n)
            if self.hooks.on_state is not None:
                self.emit_states(
                    [StateChange(p.bulletin_id, p.recipient, "sent", now) for p in sent if p.kind == "bulletin"]
                )
            if failed:
                self.core.outbox.note_failures([(p.key, str(r)) for p, r in failed])
                first = failed[0][1]
                if isinstance(first, NoStream):  # a hub restarting, or streams missing: look again
                    self.core.streams_missing()
                log.warning("%d of %d sends failed (%s); retrying", len(failed), len(batch), first)
                await asyncio.sleep(opts.retry_delay_s)  # the failed copies wait this long to be tried again
            # Counting the queue costs in proportion to its length: while a backlog drains,
            # refresh the gauge twice a second rather than after every window.
            if len(batch) < opts.pump_window or time.monotonic() - self._depth_at >= 0.5:
                self._depth_at = time.monotonic()
                self.metrics.outbox_depth.set(self.core.outbox.depth())
        finally:
            self.pacer.done(sending, nbytes, acked, time.monotonic())
            inflight.difference_update(p.key for p in batch)
            self.core.wake.set()  # the pump looks again: those left queued go in a later window
