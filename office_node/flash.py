"""FLASH bulletins a person must acknowledge, and who is told when nobody has.

A FLASH is urgent by definition: a machine taking it in (the ``delivered`` receipt) is
not enough. An officer at each recipient office acknowledges it (the page's
Acknowledge button, ``blo ack``); the node then sends a signed ``acknowledged``
receipt (``bus.receipt``, schemas/SUBJECTS.md "Receipts"). Until every office
recipient's acknowledgement is back the sender sees "delivered, not acknowledged" and
escalation goes on, on stated timers from the time of posting:

* ``[flash] ack_timeout_s`` (default 120 s): the sender's own page raises the alarm
  (``BusNode``'s FLASH watcher) and each silent recipient's **national centre** gets a
  FLASH notice naming the bulletin and the office that has not acknowledged it;
* ``[flash] own_centre_after_s`` (default 600 s): the sender's **own centre** gets one.

A notice is an ordinary sealed bulletin (kind ``alert``, FLASH, tag
``flash-unacknowledged``) naming the bulletin's id, sender and recipients and none of
its content. Each (bulletin, level, centre) is notified once, remembered in the
database across restarts; a notice is not escalated in its turn (no cascade). A centre is never notified about itself (a centre that was
the recipient, or a centre that sent the FLASH): its own page already shows it.

``due_notices`` is the rule (pure); ``FlashAcks`` the records; ``FlashWatch`` the loop;
``EscalationNotices`` sends each notice (through the node's ``Sending``) and shows it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bus import Directory, Rng
from bus.errors import BloError
from bus.transport import ACKNOWLEDGED, BulletinStatus
from office_node import audit
from office_node.compose import SendDraft, draft_from_request
from office_node.db import Database
from office_node.times import iso_utc

log = logging.getLogger(__name__)

RECIPIENT_CENTRE = "recipient_centre"
OWN_CENTRE = "own_centre"
NOTICE_TAG = "flash-unacknowledged"
DEFAULT_OWN_CENTRE_AFTER_S = 600.0


@dataclass(frozen=True, slots=True)
class FlashTimers:
    """Seconds after posting at which each escalation level is due."""

    recipient_centre_after_s: float = 120.0
    own_centre_after_s: float = DEFAULT_OWN_CENTRE_AFTER_S


@dataclass(frozen=True, slots=True)
class Notice:
    """Tell ``centre`` that ``offices`` have not acknowledged FLASH ``bulletin_id``."""

    bulletin_id: str
    level: str  # RECIPIENT_CENTRE or OWN_CENTRE
    centre: str
    offices: tuple[str, ...]


def unacknowledged(status: BulletinStatus) -> tuple[str, ...]:
    """The office recipients of a bulletin where no person acknowledged it yet (feed
    copies are not waited for: a feed's members belong to its centre)."""
    return tuple(
        sorted(r.recipient for r in status.recipients.values() if not r.recipient.startswith("feed:") and r.state != ACKNOWLEDGED)
    )


def national_centre(directory: Directory, office: str) -> str | None:
    """The national centre of ``office``'s country in the directory (None if none is known)."""
    centres = sorted(r.office_id for r in directory.records() if r.role == "centre" and r.country == office[:2])
    return centres[0] if centres else None


def due_notices(
    status: BulletinStatus,
    *,
    sender: str,
    centre_of: Callable[[str], str | None],
    timers: FlashTimers,
    now_ms: int,
    already: Iterable[tuple[str, str]] = (),
) -> list[Notice]:
    """The notices due now for one FLASH bulletin ``sender`` posted; ``already`` holds the
    ``(level, centre)`` pairs notified before."""
    missing = unacknowledged(status)
    if not missing:
        return []
    done = set(already)
    out: list[Notice] = []
    elapsed_s = (now_ms - status.posted_at) / 1000
    if elapsed_s >= timers.recipient_centre_after_s:
        by_centre: dict[str, list[str]] = {}
        for office in missing:
            centre = centre_of(office)
            if centre is not None and centre not in (office, sender):
                by_centre.setdefault(centre, []).append(office)
        for centre, offices in sorted(by_centre.items()):
            if (RECIPIENT_CENTRE, centre) not in done:
                out.append(Notice(status.bulletin_id, RECIPIENT_CENTRE, centre, tuple(offices)))
    if elapsed_s >= timers.own_centre_after_s:
        own = centre_of(sender)
        if own is not None and own != sender and (OWN_CENTRE, own) not in done:
            out.append(Notice(status.bulletin_id, OWN_CENTRE, own, missing))
    return out


def notice_request(notice: Notice, status: BulletinStatus, *, sender: str, now_ms: int) -> dict[str, Any]:
    """The post request of one escalation notice: who has not acknowledged what, no content."""
    minutes = max(1, round((now_ms - status.posted_at) / 60_000))
    offices = ", ".join(notice.offices)
    return {
        "to": [notice.centre],
        "kind": "alert",
        "precedence": "FLASH",
        "tlp": "AMBER",
        "releasable_to": sorted({sender[:2], notice.centre[:2]}),
        "grading": "A1",
        "title": f"FLASH from {sender} not acknowledged by {offices}"[:300],
        "body": (
            f"{sender} posted FLASH bulletin {notice.bulletin_id} at {iso_utc(status.posted_at)}. After {minutes} min "
            f"no officer at {offices} has acknowledged it. Please reach {offices} by other means and ask them to "
            f"acknowledge it, or contact {sender}."
        ),
        "tags": [NOTICE_TAG],
    }


class FlashAcks:
    """The node's records: FLASH bulletins acknowledged here (by whom, when), and the
    escalation notices this node sent."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def acknowledge(self, bulletin_id: str, *, by: str, at_ms: int) -> bool:
        """Record that officer ``by`` acknowledged it; True the first time (the first is kept)."""
        with self.db.write() as c:
            cur = c.execute(
                "INSERT INTO flash_acks (bulletin_id, by, at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (bulletin_id, by, at_ms),
            )
            return cur.rowcount == 1

    def acknowledgement(self, bulletin_id: str) -> dict[str, Any] | None:
        with self.db.read() as c:
            row = c.execute("SELECT by, at FROM flash_acks WHERE bulletin_id = ?", (bulletin_id,)).fetchone()
        return {"by": row[0], "at": row[1]} if row else None

    def notified(self, bulletin_id: str) -> set[tuple[str, str]]:
        with self.db.read() as c:
            rows = c.execute("SELECT level, centre FROM flash_escalations WHERE bulletin_id = ?", (bulletin_id,))
            return {(level, centre) for level, centre in rows}

    def escalations(self, bulletin_id: str) -> list[dict[str, Any]]:
        with self.db.read() as c:
            rows = c.execute(
                "SELECT level, centre, offices, notice_id, at FROM flash_escalations WHERE bulletin_id = ? ORDER BY at",
                (bulletin_id,),
            ).fetchall()
        return [{"level": r[0], "centre": r[1], "offices": r[2].split(","), "notice_id": r[3], "at": r[4]} for r in rows]

    def is_notice(self, bulletin_id: str) -> bool:
        """True for a notice this node sent: a notice is not escalated in its turn."""
        with self.db.read() as c:
            return c.execute("SELECT 1 FROM flash_escalations WHERE notice_id = ?", (bulletin_id,)).fetchone() is not None

    def record_notice(self, notice: Notice, *, notice_id: str | None, at_ms: int) -> None:
        with self.db.write() as c:
            c.execute(
                "INSERT INTO flash_escalations (bulletin_id, level, centre, offices, notice_id, at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (notice.bulletin_id, notice.level, notice.centre, ",".join(notice.offices), notice_id, at_ms),
            )


class FlashWatch:
    """Every ``period_s``, sends the escalation notices due for the FLASH bulletins this
    node posted that still wait for an acknowledgement."""

    def __init__(
        self,
        acks: FlashAcks,
        *,
        sender: str,
        watched: Callable[[], Sequence[str]],
        status: Callable[[str], BulletinStatus | None],
        centre_of: Callable[[str], str | None],
        send: Callable[[Notice, dict[str, Any]], Awaitable[str | None]],
        timers: FlashTimers,
        clock: Callable[[], int],
    ) -> None:
        self.acks = acks
        self.sender = sender
        self.watched = watched
        self.status = status
        self.centre_of = centre_of
        self.send = send
        self.timers = timers
        self.clock = clock

    async def tick(self) -> list[Notice]:
        """Send what is due now; the notices sent."""
        sent: list[Notice] = []
        for bulletin_id in self.watched():
            status = self.status(bulletin_id)
            if status is None or status.precedence != "FLASH" or self.acks.is_notice(bulletin_id):
                continue
            now = self.clock()
            for notice in due_notices(
                status,
                sender=self.sender,
                centre_of=self.centre_of,
                timers=self.timers,
                now_ms=now,
                already=self.acks.notified(bulletin_id),
            ):
                notice_id = await self.send(notice, notice_request(notice, status, sender=self.sender, now_ms=now))
                self.acks.record_notice(notice, notice_id=notice_id, at_ms=now)
                sent.append(notice)
        return sent

    async def run(self, period_s: float) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("FLASH escalation check failed; trying again in %.0f s", period_s)
            await asyncio.sleep(period_s)


class EscalationNotices:
    """``FlashWatch``'s ``send``: one notice sealed and sent as an ordinary bulletin of
    this node, logged, and shown on the page; None when it could not be sent (logged)."""

    def __init__(
        self,
        send_draft: SendDraft,
        *,
        office: str,
        publish: Callable[[str, dict[str, Any]], None],
        clock: Callable[[], int],
        rng: Rng,
    ) -> None:
        self.send_draft = send_draft
        self.office = office
        self.publish = publish
        self.clock = clock
        self.rng = rng

    async def send(self, notice: Notice, request: dict[str, Any]) -> str | None:
        try:
            draft = draft_from_request(request, office=self.office, now_ms=self.clock(), rng=self.rng)
            sent = await self.send_draft(f"node:{self.office}", draft, audit.FLASH_ESCALATION)
        except BloError as exc:
            log.error("FLASH %s: the escalation notice to %s could not be sent: %s", notice.bulletin_id, notice.centre, exc.message)
            return None
        log.warning(
            "FLASH %s not acknowledged by %s: %s told (%s)",
            notice.bulletin_id, ", ".join(notice.offices), notice.centre, notice.level,
        )  # fmt: skip
        self.publish(
            "escalation",
            {"id": notice.bulletin_id, "missing": list(notice.offices), "level": notice.level, "centre": notice.centre,
             "message": f"FLASH {notice.bulletin_id} not acknowledged by {', '.join(notice.offices)}: {notice.centre} told"},
        )  # fmt: skip
        return str(sent["id"])
