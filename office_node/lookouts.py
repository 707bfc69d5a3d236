"""Lookouts on a node: border checks and hits, answered from memory, offline.

``bus.lookout.LookoutIndex`` holds the normalised entities of every bulletin stored
here (rebuilt from the store at start, then kept current as bulletins are sent and
received). Two questions go to it:

* **check** (an officer at the counter, ``POST /api/check``, ``blo check``): does any
  active lookout name this document, person, vehicle or phone? Answered with links to
  the bulletins and their grading, plus *mentions* in other bulletins (incidents,
  replies) kept apart, since they are not lookouts.
* **hits** (every new bulletin): does it name the subject of an active lookout? A hit
  is recorded, shown to the officers (live stream, page, metric) and, when the lookout
  came from another office, reported to that office by a signed **hit notice**.

A hit notice is an ordinary sealed bulletin: kind ``reply``, ``in_reply_to`` the
lookout, tag ``hit``, the lookout's precedence (a FLASH lookout's hit is FLASH). It
names the matching bulletin's id and sender and no content. Because even that tells
the originator the bulletin exists, the notice is sent automatically only when the
matching bulletin may reach the originator's country (its ``releasable_to``) and its
TLP is not RED or AMBER+STRICT; otherwise the hit is recorded as ``withheld:<rule>``
and the officer decides. Hit notices carry no entities and are never checked for hits
themselves, so notices cannot echo back and forth.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import Counter

from bus import Bulletin, Hit, LookoutIndex, Match, Rng
from bus.errors import BloError
from office_node import audit
from office_node.compose import SendDraft, draft_from_request
from office_node.store import HitRecord, Store

log = logging.getLogger("blo.lookouts")

HIT_TAG = "hit"
#: TLP labels whose bulletins are never revealed to another office by an automatic notice.
RESTRICTED_TLP = ("RED", "AMBER+STRICT")


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))


def notice_decision(bulletin: Bulletin, lookout_sender: str, own_office: str) -> str:
    """What to do about a hit on ``lookout_sender``'s lookout raised by ``bulletin``:
    ``own`` (our lookout: nothing to send), ``send``, or ``withheld:<rule>``."""
    if lookout_sender == own_office:
        return "own"
    if lookout_sender[:2] not in bulletin.releasable_to:
        return "withheld:not_releasable"
    if bulletin.tlp in RESTRICTED_TLP:
        return "withheld:tlp"
    return "send"


def hit_notice_request(hit: Hit, bulletin: Bulletin, lookout_title: str, *, own_office: str, now_ms: int) -> dict[str, Any]:
    """The post request of the hit notice to the lookout's originator."""
    lookout = hit.lookout
    match = "a similar spelling of a name" if lookout.strength == "similar" else f"the same {lookout.key_kind}"
    return {
        "to": [lookout.sender],
        "kind": "reply",
        "in_reply_to": lookout.bulletin_id,
        "precedence": lookout.precedence,
        "tlp": "AMBER",
        "releasable_to": sorted({own_office[:2], lookout.sender[:2]}),
        "grading": bulletin.grading,
        "title": f"HIT on your lookout: {lookout_title}"[:300],
        "body": (
            f"{own_office} holds bulletin {bulletin.id} from {bulletin.sender}, created {_iso(bulletin.created)}, "
            f"whose entity {hit.entity_index + 1} has {match} as entity {lookout.entity_index + 1} of your lookout "
            f"{lookout.bulletin_id}. Contact {own_office} for the details."
        ),
        "tags": [HIT_TAG],
    }


class Lookouts:
    def __init__(self, store: Store, office: str) -> None:
        self.store = store
        self.office = office
        self.country = office[:2]
        self.index = LookoutIndex()

    def rebuild(self) -> int:
        """Index everything in the store (at start); returns how many bulletins."""
        self.index = LookoutIndex.from_bulletins(self.store.iter_bulletins())
        return len(self.index)

    def add(self, bulletin: Bulletin, now_ms: int) -> list[Hit]:
        """Index a new bulletin; the active lookouts it names (none for hit notices)."""
        hits = [] if HIT_TAG in bulletin.tags else self.index.hits_for(bulletin, now_ms)
        self.index.add_bulletin(bulletin)
        return hits

    def _match_json(self, m: Match) -> dict[str, Any]:
        out = m._asdict()
        stored = self.store.get(m.bulletin_id)
        if stored is not None:
            entities = stored.bulletin.get("entities") or []
            out["title"] = stored.title
            out["entity"] = entities[m.entity_index] if m.entity_index < len(entities) else None
            out["direction"] = stored.direction
        return out

    def check(self, query: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
        """Active lookouts naming ``query`` (an entity dict), and other bulletins that mention it."""
        matches = self.index.check(query, now_ms, country=self.country)
        mentions = self.index.mentions(query, now_ms, country=self.country, limit=20)
        return {
            "query": dict(query),
            "checked_at": now_ms,
            "flagged": bool(matches),
            "matches": [self._match_json(m) for m in matches],
            "mentions": [self._match_json(m) for m in mentions],
        }


class HitAlerts:
    """Every new bulletin, sent or received, goes through ``index``: it joins the index,
    and each hit it raises is recorded, counted, shown live and, when ``notice_decision``
    allows, reported to the lookout's originator by a hit notice."""

    def __init__(
        self,
        lookouts: Lookouts,
        store: Store,
        *,
        count: Counter,
        publish: Callable[[str, dict[str, Any]], None],
        rng: Rng,
    ) -> None:
        self.lookouts = lookouts
        self.store = store
        self.office = lookouts.office
        self.count = count
        self.publish = publish
        self.rng = rng

    async def index(self, bulletin: Bulletin, now: int, send: SendDraft) -> None:
        """Index ``bulletin``; its hit notices go out through ``send`` (the way the
        caller sends: a notice is an ordinary bulletin of this node)."""
        for hit in self.lookouts.add(bulletin, now):
            await self._alert(bulletin, hit, now, send)

    async def _alert(self, bulletin: Bulletin, hit: Hit, now: int, send: SendDraft) -> None:
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
            return
        self.count.labels(strength=hit.lookout.strength).inc()
        lookout = self.store.get(hit.lookout.bulletin_id)
        title = lookout.title if lookout is not None else hit.lookout.bulletin_id
        if decision == "send":
            record = await self._notify(record, hit, bulletin, title, now, send)
        self.publish(
            "hit",
            {**record.to_json(), "lookout_title": title, "bulletin_title": bulletin.title, "precedence": hit.lookout.precedence},
        )

    async def _notify(self, record: HitRecord, hit: Hit, bulletin: Bulletin, title: str, now: int, send: SendDraft) -> HitRecord:
        """Send the hit notice; the record says whether it went (its id) or why not."""
        request = hit_notice_request(hit, bulletin, title, own_office=self.office, now_ms=now)
        try:
            draft = draft_from_request(request, office=self.office, now_ms=now, rng=self.rng)
            sent = await send(f"node:{self.office}", draft, audit.HIT_NOTICE)
            record = dataclasses.replace(record, notice="sent", notice_id=sent["id"])
        except BloError as exc:
            log.warning("hit notice to %s not sent: %s", hit.lookout.sender, exc.message)
            record = dataclasses.replace(record, notice=f"withheld:{exc.reason}")
        self.store.set_hit_notice(record, record.notice, record.notice_id)
        return record
