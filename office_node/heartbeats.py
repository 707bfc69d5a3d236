"""Heartbeats: every node says it is alive; a centre draws its country's network view.

Every node signs a small heartbeat (``bus.heartbeat``: online since, outbox depth and
lag, unacknowledged FLASH, last bulletin times, key expiry, bulletins per local day for
the last 7 days) every ``[network] heartbeat_every_s`` and publishes it on
``blo.hb.<OFFICE>``, where the stream keeps only the latest per office. A heartbeat is
not queued in the outbox: a stale one is worth nothing, and the next one comes soon.

A centre reads them all with one durable consumer, keeps the latest verified heartbeat
of each office in its database (so a restarted centre still knows when it last heard
from everyone), and builds the view of its own country's offices from the directory:
online, silent (flagged after ``silent_after_s``), never seen, outbox lag, FLASH not
acknowledged, keys near expiry, and the 7-day volume per office.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from bus import (
    DAYS,
    Directory,
    Heartbeat,
    Identity,
    NodeStatus,
    day_index,
    network_view,
    open_heartbeat,
    sign_heartbeat,
    witness_time,
)
from bus.errors import BloError, BusError
from bus.transport import (
    BusNode,
    ConsumerSpec,
    ack_all,
    heartbeat_subject,
    heartbeats_consumer_spec,
    sample,
    stored_at_ms,
    subject_sender,
)
from office_node.db import Database

log = logging.getLogger("blo.heartbeats")
DAY_MS = 86_400_000


def local_offset_min(now_ms: int) -> int:
    return int(time.localtime(now_ms / 1000).tm_gmtoff // 60)


class Heartbeats:
    def __init__(
        self,
        identity: Identity,
        directory: Directory,
        bus: BusNode,
        db: Database,
        *,
        is_centre: bool,
        version: str,
        started_at: int,
        every_s: float,
        silent_after_s: float,
        clock: Callable[[], int],
        on_heartbeat: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.identity = identity
        self.office = identity.office_id
        self.directory = directory
        self.bus = bus
        self.db = db
        self.is_centre = is_centre
        self.version = version
        self.started_at = started_at
        self.every_s = every_s
        self.silent_after_ms = int(silent_after_s * 1000)
        self.clock = clock
        self.on_heartbeat = on_heartbeat

    # -- every node ---------------------------------------------------------------------

    def status(self, now: int) -> NodeStatus:
        offset = local_offset_min(now)
        daily = [[0, 0] for _ in range(DAYS)]
        with self.db.read() as c:
            rows = c.execute(
                "SELECT direction, at FROM store_bulletins WHERE at >= ?", (now - (DAYS + 1) * DAY_MS,)
            ).fetchall()
            last = dict(c.execute("SELECT direction, MAX(at) FROM store_bulletins GROUP BY direction").fetchall())
        for direction, at in rows:
            i = day_index(at, now, offset)
            if i is not None:
                daily[i][0 if direction == "sent" else 1] += 1
        outbox = self.bus.outbox
        record = self.directory.record(self.office)
        return NodeStatus(
            online_since=self.started_at,
            software=self.version,
            outbox_depth=outbox.depth() if outbox is not None else 0,
            outbox_oldest_at=outbox.oldest_queued_at() if outbox is not None else None,
            unacked_flash=int(sample(self.bus.metrics.flash_unacknowledged)),
            last_sent_at=last.get("sent"),
            last_received_at=last.get("received"),
            key_expires_at=record.valid_until if record is not None else None,
            utc_offset_min=offset,
            daily=tuple((s, r) for s, r in daily),
        )

    async def beat(self) -> bool:
        """Sign and publish one heartbeat; False when the link is down (not retried)."""
        client = self.bus.client
        if client is None or not client.connected:
            return False
        now = self.clock()
        payload = sign_heartbeat(self.identity, self.status(now), now_ms=now)
        try:
            await client.publish(heartbeat_subject(self.office), payload, f"hb:{self.office}:{now}", timeout=5.0)
        except BusError as exc:
            log.info("heartbeat not published: %s", exc.message)
            return False
        return True

    async def run_publisher(self, stop: Callable[[], bool]) -> None:
        while not stop():
            try:
                await self.beat()
            except Exception:  # a heartbeat must never take the node down
                log.exception("heartbeat failed")
            await asyncio.sleep(self.every_s)

    # -- a centre -----------------------------------------------------------------------

    def keep(self, raw: bytes, subject: str, *, witnessed_at: int | None = None) -> Heartbeat | None:
        """Verify and remember the latest heartbeat of an office, stored by the server at
        ``witnessed_at`` (default: now); None if refused or older."""
        now = self.clock()
        try:
            hb = open_heartbeat(
                raw, self.directory, witnessed_at=now if witnessed_at is None else witnessed_at,
                office=subject_sender(subject),
            )  # fmt: skip
        except BloError as exc:
            log.warning("heartbeat on %s refused: %s", subject, exc.message)
            return None
        with self.db.write() as c:
            cur = c.execute(
                "INSERT INTO centre_heartbeats (office, raw, sent_at, received_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (office) DO UPDATE SET raw = excluded.raw, sent_at = excluded.sent_at, "
                "received_at = excluded.received_at WHERE excluded.sent_at > centre_heartbeats.sent_at",
                (hb.office, raw, hb.sent_at, now),
            )
        return hb if cur.rowcount else None

    async def run_consumer(self) -> None:
        """A centre's durable consumer of every heartbeat (the stream keeps the latest),
        run by the bus node's own fetch loop (reconnects, refusals) until it closes."""
        await self.bus.consume(heartbeats_consumer_spec(self.office), self._take)

    async def _take(self, spec: ConsumerSpec, msgs: list[Any]) -> None:
        now = self.clock()
        kept = [
            hb
            for hb in (
                self.keep(m.data, m.subject, witnessed_at=witness_time(stored_at_ms(m.reply), now)) for m in msgs
            )
            if hb is not None
        ]
        await ack_all(msgs)  # verified and kept, or refused and logged: the next beat comes soon
        if self.on_heartbeat is not None:
            for hb in kept:
                self.on_heartbeat({"office": hb.office, "sent_at": hb.sent_at})

    def latest(self) -> list[Heartbeat]:
        with self.db.read() as c:
            rows = c.execute("SELECT raw, received_at FROM centre_heartbeats").fetchall()
        out = []
        for raw, received_at in rows:
            try:  # judged again by when it arrived here: a later revocation voids it
                out.append(open_heartbeat(raw, self.directory, witnessed_at=received_at))
            except BloError:
                continue  # its key was revoked since: it no longer counts as a sign of life
        return out

    def view(self) -> dict[str, Any]:
        """The network view of this centre's country, as the page and the API show it."""
        now = self.clock()
        country = self.office[:2]
        records = [r for r in self.directory.records() if r.country == country and r.office_id != self.office]
        offices = sorted(r.office_id for r in records)
        expiry = {r.office_id: r.valid_until for r in records}
        view = network_view(self.latest(), offices, now, self.silent_after_ms, key_expiry=expiry)
        out = []
        for o in view.offices:
            days = [{"start": d.start_ms, "sent": d.sent, "received": d.received} for d in o.heartbeat.days()] if o.heartbeat else []
            out.append(
                {
                    "office": o.office,
                    "name": next((r.name for r in records if r.office_id == o.office), o.office),
                    "state": o.state,
                    "flags": list(o.flags),
                    "last_seen": o.last_seen,
                    "age_ms": o.age_ms,
                    "outbox_depth": o.outbox_depth,
                    "outbox_lag_ms": o.outbox_lag_ms,
                    "unacked_flash": o.unacked_flash,
                    "key_expires_at": o.key_expires_at,
                    "software": o.heartbeat.status.software if o.heartbeat else None,
                    "days": days,
                }
            )
        return {
            "at": now,
            "country": country,
            "silent_after_ms": self.silent_after_ms,
            "counts": {s: view.count(s) for s in ("online", "silent", "never_seen")},
            "offices": out,
        }
