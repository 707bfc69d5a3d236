"""The coordination centre's work on top of a node: triage, forwarding with provenance,
feeds and their members (joint feeds included), and the network view.

A centre runs the same daemon as an office (``role = "centre"`` in node.toml); these are
the operations only a centre has. Each checks the role first (``Forbidden`` with reason
``not_centre`` on an office node), does its work through the node's own parts (store,
triage queue, feed owner, heartbeats) and writes what it did to the audit log.

Joint feeds: a feed has one owning centre (it signs the epochs); a centre may change only
its own country's members of it. On a feed another centre owns, the change travels to
the owner as a signed membership request (``office_node.feeds.membership_request``),
which the owner applies after checking the requesting centre and the offices' country.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from bus import Bulletin, check_forward, make_forward, new_bulletin_id
from bus.errors import BloError, HandlingRefused, NotFound, ValidationError
from office_node import audit as actions
from office_node import views
from office_node.accounts import Principal
from office_node.compose import Draft, draft_from_request
from office_node.errors import Forbidden
from office_node.feeds import (
    membership_outcome,
    membership_request,
    parse_membership_outcome,
    parse_membership_request,
)
from office_node.store import BulletinQuery
from office_node.triage import DISSEMINATED, KEEP, MAX_PAGE, Drafts

if TYPE_CHECKING:  # types of the host's parts only; none of them imports this module
    import sqlite3

    from bus import Directory, Rng
    from office_node.audit import AuditLog
    from office_node.config import NodeConfig
    from office_node.feeds import NodeFeeds
    from office_node.heartbeats import Heartbeats
    from office_node.live import LiveHub
    from office_node.sending import Sending
    from office_node.store import Store
    from office_node.triage import Triage


class CentreHost(Protocol):
    """What a centre's operations need of the node that runs them (``OfficeNode`` is one):
    its parts, ``sending`` (how a bulletin leaves the node) among them. Written out here so
    that the centre does not import the node that creates it."""

    config: NodeConfig
    office: str
    db: sqlite3.Connection | None
    directory: Directory
    feeds: NodeFeeds
    heartbeats: Heartbeats
    live: LiveHub
    store: Store
    audit: AuditLog
    triage: Triage
    sending: Sending
    clock: Callable[[], int]
    rng: Rng

log = logging.getLogger("blo.centre")
FORWARD_FIELDS = frozenset({"feed", "redact", "tags", "releasable_to", "tlp", "precedence"})
DRAFT_FIELDS = frozenset({"state", "note", "assignee", "fields"})


@dataclasses.dataclass(frozen=True, slots=True)
class _Original:
    """A stored bulletin with its exact signed bytes: what ``bus.forward`` forwards."""

    bulletin: Bulletin
    header: bytes
    body: bytes
    signature: bytes


class Centre:
    def __init__(self, node: CentreHost) -> None:
        self.node = node
        if node.db is None:
            raise RuntimeError("the centre's parts need the node's database open")
        self.drafts = Drafts(node.db)
        self._bridge: Any = None
        self._bridge_lock = asyncio.Lock()

    def is_own_office(self, office: str) -> bool:
        record = self.node.directory.record(office)
        return record is not None and record.role == "office" and record.country == self.node.office[:2]

    def _require_centre(self, what: str) -> None:
        if self.node.config.role != "centre":
            raise Forbidden(f"only a coordination centre {what}; {self.node.office} is an office node", reason="not_centre")

    async def forward(self, principal: Principal, bulletin_id: str, data: Any) -> dict[str, Any]:
        """A centre forwards an office bulletin to a feed, its provenance kept; optionally
        redacted (then it says so). The handling rules are checked first; a refusal is
        audited. The bulletin's triage state becomes ``disseminated``."""
        self._require_centre("forwards bulletins to feeds")
        if not isinstance(data, Mapping):
            raise ValidationError("", 'send {"feed": NAME, "redact": [field paths], ...}')
        for key in data:
            if key not in FORWARD_FIELDS:
                raise ValidationError(str(key)[:64], f"is not a forward field; use {', '.join(sorted(FORWARD_FIELDS))}")
        feed = data.get("feed")
        if not isinstance(feed, str) or feed not in self.node.feeds.keyring.feeds() + (self.node.feeds.owner.feeds() if self.node.feeds.owner else []):
            raise ValidationError("feed", f"{feed!r} is not a feed this centre knows (GET /api/feeds)"[:200])
        stored = self.node.store.require(bulletin_id)
        parts = self.node.store.sealed_parts(bulletin_id)
        if parts is None or parts.signature is None:
            raise ValidationError("id", "only a bulletin received here can be forwarded with its provenance")
        original = _Original(Bulletin.from_dict(stored.bulletin), parts.header, parts.body, parts.signature)
        now = self.node.clock()
        redact = data.get("redact") or ()
        if isinstance(redact, str) or not isinstance(redact, list | tuple):
            raise ValidationError("redact", 'must be a list of field paths, e.g. ["entities[0].name"]')
        try:
            fwd = make_forward(
                original,
                centre=self.node.office,
                new_id=new_bulletin_id(now, self.node.rng),
                created=now,
                redact=redact,
                tags=data.get("tags"),
                releasable_to=data.get("releasable_to"),
                tlp=data.get("tlp"),
                precedence=data.get("precedence"),
            )
            check_forward(original.bulletin, fwd, self.node.feeds.scope(feed))
        except HandlingRefused as exc:
            self.node.audit.append(
                principal.username, actions.BULLETIN_REFUSED, target=bulletin_id,
                details={"rule": exc.reason, "feed": feed, "attempted": actions.BULLETIN_FORWARD}, now_ms=now,
            )  # fmt: skip
            raise
        result = await self.node.sending.send_draft(principal.username, Draft(fwd, (), (feed,)), actions.BULLETIN_FORWARD)
        with contextlib.suppress(BloError):
            if self.is_own_office(stored.sender):
                self.node.triage.add(bulletin_id, at_ms=now)
                self.node.triage.move(bulletin_id, DISSEMINATED, by=principal.username, at_ms=now)
                self.node.live.publish("triage", {"id": bulletin_id, "state": DISSEMINATED})
        return {**result, "forward_of": bulletin_id, "redacted": list(redact)}

    def triage_view(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``?state=&limit=&cursor=``: one page of the queue, newest first."""
        self._require_centre("keeps a triage queue")
        for name in params:
            if name not in ("state", "limit", "cursor"):
                raise ValidationError(name[:64], "is not a triage filter; use state, limit, cursor")
        state = params.get("state") or None
        limit_text = params.get("limit", "100")
        if not limit_text.isdigit():
            raise ValidationError("limit", f"must be a whole number from 1 to {MAX_PAGE}")
        page = self.node.triage.items(state=state, limit=int(limit_text), cursor=params.get("cursor") or None)
        items = []
        for item in page.items:
            stored = self.node.store.get(item.bulletin_id)
            items.append(
                {**item.to_json(), "bulletin": views.summary(stored) if stored else None,
                 "notes": len(self.node.triage.notes(item.bulletin_id))}
            )  # fmt: skip
        return {"counts": self.node.triage.counts(), "items": items, "next": page.next_cursor}

    def triage_detail(self, bulletin_id: str) -> dict[str, Any]:
        self._require_centre("keeps a triage queue")
        item = self.node.triage.get(bulletin_id)
        return {**item.to_json(), "notes": [n.to_json() for n in self.node.triage.notes(bulletin_id)]}

    def triage_update(self, principal: Principal, bulletin_id: str, data: Any) -> dict[str, Any]:
        """Move a bulletin through the queue and/or add an analyst's note."""
        self._require_centre("keeps a triage queue")
        if not isinstance(data, Mapping) or not ({"state", "note", "assignee"} & set(data)):
            raise ValidationError("state", 'send {"state": ..., "note": ..., "assignee": ...} (any of them)')
        for key in data:
            if key not in ("state", "note", "assignee"):
                raise ValidationError(str(key)[:64], "is not a triage field; use state, note, assignee")
        now = self.node.clock()
        assignee = data.get("assignee", KEEP)  # null: nobody works on it any more
        if assignee not in (KEEP, None) and (not isinstance(assignee, str) or not 0 < len(assignee) <= 64):
            raise ValidationError("assignee", "must be a username (1-64 characters), or null for nobody")
        if "state" in data or "assignee" in data:
            current = self.node.triage.get(bulletin_id)
            self.node.triage.move(
                bulletin_id, data.get("state", current.state), by=principal.username, at_ms=now, assignee=assignee
            )
        if data.get("note"):
            self.node.triage.note(bulletin_id, data["note"], by=principal.username, at_ms=now)
        item = self.node.triage.get(bulletin_id)
        self.node.audit.append(
            principal.username, actions.TRIAGE, target=bulletin_id,
            details={"state": item.state, "note": bool(data.get("note"))}, now_ms=now,
        )  # fmt: skip
        self.node.live.publish("triage", {"id": bulletin_id, "state": item.state})
        return self.triage_detail(bulletin_id)

    async def create_feed(self, principal: Principal, data: Any) -> dict[str, Any]:
        self._require_centre("owns feeds")
        if not isinstance(data, Mapping):
            raise ValidationError("", 'send {"name": ..., "members": [...], "writers": [...], "scope": [countries]}')
        name = data.get("name")
        members, writers = _office_list(data, "members"), _office_list(data, "writers")
        scope = data.get("scope")
        issue = await self.node.feeds.create(name, members, scope=scope, writers=writers)
        self.node.audit.append(
            principal.username, actions.FEED_CREATE, target=issue.feed,
            details={"members": list(members), "writers": list(writers), "scope": scope, "epoch": issue.epoch},
            now_ms=self.node.clock(),
        )  # fmt: skip
        return self._feed_json(issue.feed)

    async def change_feed(self, principal: Principal, feed: str, data: Any) -> dict[str, Any]:
        """Add and remove members. On a feed another centre owns (a joint feed), this
        centre may change only its own country's members: the change travels to the owner
        as a signed membership request, which the owner applies."""
        self._require_centre("manages feed members")
        if not isinstance(data, Mapping):
            raise ValidationError("", 'send {"add": [...], "remove": [...], "post": false}')
        add, remove = _office_list(data, "add"), _office_list(data, "remove")
        post = data.get("post", False)
        if not isinstance(post, bool):
            raise ValidationError("post", "must be true (the added offices may post to the feed) or false")
        owner = self.node.feeds.owner
        if owner is None or feed not in owner.feeds():
            if post:
                raise Forbidden(f"post rights on {feed} are its owner's to give: ask it", reason="not_owner")
            return await self._request_membership(principal, feed, add, remove)
        self._check_own_country(feed, add)
        issue = await self.node.feeds.change_members(feed, add=add, remove=remove, post=post)
        self.node.audit.append(
            principal.username, actions.FEED_MEMBERS, target=feed,
            details={"add": list(add), "remove": list(remove), "post": post, "epoch": issue.epoch},
            now_ms=self.node.clock(),
        )  # fmt: skip
        return self._feed_json(feed)

    async def change_writers(self, principal: Principal, feed: str, data: Any) -> dict[str, Any]:
        """Give members post rights, or take them away (a new epoch, ``writers_changed``).
        Only on a feed this centre owns: the writers are in the record it signs."""
        self._require_centre("manages who posts to a feed")
        if not isinstance(data, Mapping):
            raise ValidationError("", 'send {"add": [...], "remove": [...]}')
        add, remove = _office_list(data, "add"), _office_list(data, "remove")
        owner = self.node.feeds.owner
        if owner is None or feed not in owner.feeds():
            raise Forbidden(f"post rights on {feed} are its owner's to give: ask it", reason="not_owner")
        issue = await self.node.feeds.change_writers(feed, add=add, remove=remove)
        self.node.audit.append(
            principal.username, actions.FEED_WRITERS, target=feed,
            details={"add": list(add), "remove": list(remove), "epoch": issue.epoch}, now_ms=self.node.clock(),
        )  # fmt: skip
        return self._feed_json(feed)

    def _check_own_country(self, feed: str, offices: list[str]) -> None:
        """A centre manages only its own country's members of a feed (a joint feed's other
        members are the other centre's to change)."""
        for office in offices:
            if isinstance(office, str) and office[:2] != self.node.office[:2] and office not in self.node.feeds.members(feed):
                raise Forbidden(
                    f"{office} is not of {self.node.office[:2]}: ask {office[:2]}'s centre to add it", reason="other_country"
                )

    async def _request_membership(self, principal: Principal, feed: str, add: list[str], remove: list[str]) -> dict[str, Any]:
        for office in (*add, *remove):
            if not isinstance(office, str) or office[:2] != self.node.office[:2]:
                raise Forbidden(
                    f"{office!r} is not of {self.node.office[:2]}; on a feed another centre owns this centre changes only "
                    f"{self.node.office[:2]} members", reason="other_country",
                )  # fmt: skip
        record = self.node.feeds.keyring.record(feed)
        if record is None:
            raise NotFound(f"no feed {feed!r} is known here (neither owned nor seen in the feed bucket)")
        request = membership_request(feed, add, remove, owner=record.owner, own=self.node.office)
        draft = draft_from_request(request, office=self.node.office, now_ms=self.node.clock(), rng=self.node.rng)
        sent = await self.node.sending.send_draft(principal.username, draft, actions.FEED_MEMBERS)
        self.node.feeds.request_sent(feed, sent["id"], owner=record.owner, add=add, remove=remove)
        self.node.live.publish("feed", {"feed": feed, "epoch": record.epoch, "status": "requested"})
        return {"name": feed, "requested_from": record.owner, "request_id": sent["id"], "add": add, "remove": remove}

    async def apply_membership_request(self, b: Bulletin) -> None:
        """The owner's side of a joint feed: another country's centre changes its members.
        What can be applied is; the requester is told what became of each office."""
        owner = self.node.feeds.owner
        sender = self.node.directory.record(b.sender)
        try:
            request = parse_membership_request(b)
            if sender is None or sender.role != "centre":
                raise Forbidden(f"{b.sender} is not a centre; only centres change feed members", reason="not_centre")
        except BloError as exc:  # not a centre's well-formed request: nobody to answer
            self._refuse_request(b, exc)
            return
        feed = request["feed"]
        try:
            if owner is None or feed not in owner.feeds():
                raise NotFound(f"{self.node.office} does not own a feed {feed!r}")
            issue, outcomes = await self.node.feeds.apply_request(
                feed, add=request["add"], remove=request["remove"], country=b.sender[:2]
            )
        except BloError as exc:
            self._refuse_request(b, exc)
            issue, outcomes = None, [
                {"office": o, "change": change, "result": "refused", "reason": exc.message[:500]}
                for change in ("add", "remove") for o in request[change]
            ]  # fmt: skip
        epoch = None if issue is None else issue.epoch
        refused = [o for o in outcomes if o["result"] == "refused"]
        if refused:
            log.warning(
                "membership request %s from %s: %s", b.id, b.sender,
                "; ".join(f"{o['change']} {o['office']} refused: {o['reason']}" for o in refused),
            )  # fmt: skip
        self.node.audit.append(
            f"centre:{b.sender}", actions.FEED_MEMBERS, target=feed,
            details={"add": request["add"], "remove": request["remove"], "epoch": epoch, "request": b.id,
                     "outcomes": outcomes},
            now_ms=self.node.clock(),
        )  # fmt: skip
        answer = membership_outcome(b, feed, outcomes, epoch)
        draft = draft_from_request(answer, office=self.node.office, now_ms=self.node.clock(), rng=self.node.rng)
        try:
            await self.node.sending.send_draft(f"centre:{b.sender}", draft, actions.FEED_MEMBERS)
        except BloError as exc:
            log.error("the outcome of membership request %s could not be sent to %s: %s", b.id, b.sender, exc.message)

    def _refuse_request(self, b: Bulletin, exc: BloError) -> None:
        log.warning("membership request %s from %s refused: %s", b.id, b.sender, exc.message)
        self.node.audit.append(
            f"centre:{b.sender}", actions.BULLETIN_REFUSED, target=b.id,
            details={"rule": exc.reason, "attempted": actions.FEED_MEMBERS}, now_ms=self.node.clock(),
        )  # fmt: skip

    def take_membership_outcome(self, b: Bulletin) -> None:
        """The requesting centre's side: the owner's answer, shown with the feed."""
        try:
            outcome = parse_membership_outcome(b)
        except BloError as exc:
            log.warning("membership outcome %s from %s refused: %s", b.id, b.sender, exc.message)
            return
        entry = self.node.feeds.outcome_received(b.sender, outcome)
        if entry is None:
            log.warning("membership outcome %s from %s ignored: %s does not own feed %s", b.id, b.sender, b.sender, outcome["feed"])
            return
        refused = [o for o in outcome["outcomes"] if o["result"] == "refused"]
        (log.warning if refused else log.info)(
            "%s answered membership request %s on feed %s: %s", b.sender, outcome["request"], outcome["feed"],
            "; ".join(f"{o['office']} {o['result']}" + (f" ({o['reason']})" if o["reason"] else "") for o in outcome["outcomes"]),
        )  # fmt: skip
        self.node.live.publish("feed", {"feed": outcome["feed"], "epoch": outcome["epoch"], "status": "answered"})

    async def rotate_feed(self, principal: Principal, feed: str) -> dict[str, Any]:
        self._require_centre("rotates feed keys")
        issue = await self.node.feeds.rotate(feed, reason="manual")
        self.node.audit.append(
            principal.username, actions.FEED_ROTATE, target=feed, details={"epoch": issue.epoch, "reason": "manual"},
            now_ms=self.node.clock(),
        )  # fmt: skip
        return self._feed_json(feed)

    def _feed_json(self, feed: str) -> dict[str, Any]:
        return next(f for f in self.node.feeds.view() if f["name"] == feed)

    def network_view(self) -> dict[str, Any]:
        self._require_centre("has a network view")
        return self.node.heartbeats.view()

    # -- drafts imported from MISP and STIX (office_node/exchange/) ------------------------

    def network_countries(self) -> list[str]:
        """The countries of this network: those of the directory's offices and centres."""
        return sorted({r.country for r in self.node.directory.records()} | {self.node.office[:2]})

    def import_document(self, principal: Principal, data: Any) -> dict[str, Any]:
        """A MISP or STIX file becomes drafts in the triage queue (nothing is sent)."""
        self._require_centre("imports MISP and STIX as drafts")
        if not isinstance(data, Mapping) or not isinstance(data.get("text"), str):
            raise ValidationError("text", 'send {"text": <the MISP JSON or STIX bundle, as text>, "name": <file name>}')
        for key in data:
            if key not in ("text", "name"):
                raise ValidationError(str(key)[:64], "is not an import field; use text, name")
        from office_node.exchange.importer import parse_document, sources_of

        sources = sources_of(parse_document(data["text"]))
        name = str(data.get("name") or "upload")[:200]
        return self.queue_sources(principal.username, sources, origin=name)

    def queue_sources(self, actor: str, sources: list[Any], *, origin: str) -> dict[str, Any]:
        """Make a draft of each source not queued before; audit the import."""
        from office_node.exchange.importer import proposal

        now = self.node.clock()
        fresh = [s for s in sources if self.drafts.by_source(s.ref) is None]
        skipped = [s.ref for s in sources if s not in fresh]
        # Every proposal first: a file whose third event cannot be read queues nothing.
        countries = self.network_countries()
        proposals = [proposal(s, own_country=self.node.office[:2], network_countries=countries, now_ms=now) for s in fresh]
        made = []
        for p in proposals:
            draft_id = new_bulletin_id(now, self.node.rng)
            added = self.drafts.add(
                draft_id, source=p.source.ref, format=p.source.format, fields=p.fields, derived=p.derived.to_json(),
                warnings=list(p.warnings), at_ms=now, by=actor,
            )  # fmt: skip
            if not added:  # the same event twice in one file
                skipped.append(p.source.ref)
                continue
            made.append(self.drafts.get(draft_id))
            self.node.live.publish("triage", {"id": draft_id, "state": "new", "draft": True})
        self.node.audit.append(
            actor, actions.DRAFT_IMPORT, target=origin,
            details={"drafts": [d.id for d in made][:50], "skipped": len(skipped)}, now_ms=now,
        )  # fmt: skip
        return {"drafts": [_draft_summary(d) for d in made], "skipped": skipped}

    def drafts_view(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``?state=&limit=&cursor=``: one page of drafts, newest first."""
        self._require_centre("keeps a triage queue")
        for name in params:
            if name not in ("state", "limit", "cursor"):
                raise ValidationError(name[:64], "is not a draft filter; use state, limit, cursor")
        limit_text = params.get("limit", "100")
        if not limit_text.isdigit():
            raise ValidationError("limit", f"must be a whole number from 1 to {MAX_PAGE}")
        items, more = self.drafts.items(state=params.get("state") or None, limit=int(limit_text), cursor=params.get("cursor") or None)
        return {"counts": self.drafts.counts(), "items": [_draft_summary(d) for d in items], "next": more}

    def draft_detail(self, draft_id: str) -> dict[str, Any]:
        self._require_centre("keeps a triage queue")
        item = self.drafts.get(draft_id)
        return {**item.to_json(), "notes": [n.to_json() for n in self.drafts.notes(draft_id)]}

    def draft_update(self, principal: Principal, draft_id: str, data: Any) -> dict[str, Any]:
        """Move a draft, edit its proposed fields, assign it, and/or add a note."""
        self._require_centre("keeps a triage queue")
        if not isinstance(data, Mapping) or not (DRAFT_FIELDS & set(data)):
            raise ValidationError("state", 'send {"state": ..., "fields": {...}, "note": ..., "assignee": ...} (any of them)')
        for key in data:
            if key not in DRAFT_FIELDS:
                raise ValidationError(str(key)[:64], f"is not a draft field; use {', '.join(sorted(DRAFT_FIELDS))}")
        now = self.node.clock()
        assignee = data.get("assignee", KEEP)
        if assignee not in (KEEP, None) and (not isinstance(assignee, str) or not 0 < len(assignee) <= 64):
            raise ValidationError("assignee", "must be a username (1-64 characters), or null for nobody")
        fields = None
        if "fields" in data:
            current = self.drafts.get(draft_id)
            fields = {**current.fields, **_draft_fields(data["fields"])}
            draft_from_request({**fields, "to": [_NOBODY]}, office=self.node.office, now_ms=now, rng=self.node.rng)
        if {"state", "fields", "assignee"} & set(data):
            self.drafts.update(draft_id, by=principal.username, at_ms=now, state=data.get("state"), fields=fields, assignee=assignee)
        if data.get("note"):
            self.drafts.note(draft_id, data["note"], by=principal.username, at_ms=now)
        item = self.drafts.get(draft_id)
        self.node.audit.append(
            principal.username, actions.TRIAGE, target=draft_id,
            details={"state": item.state, "note": bool(data.get("note")), "edited": fields is not None}, now_ms=now,
        )  # fmt: skip
        self.node.live.publish("triage", {"id": draft_id, "state": item.state, "draft": True})
        return self.draft_detail(draft_id)

    async def send_draft(self, principal: Principal, draft_id: str, data: Any) -> dict[str, Any]:
        """Seal and send a reviewed draft to offices and/or a feed: ``{"to": [...], "feed":
        ..., and any field to change}``. Its source's rules (X6, X7 in
        office_node/exchange/handling.py) and the handling rules of any post apply."""
        self._require_centre("sends imported drafts")
        if not isinstance(data, Mapping):
            raise ValidationError("", 'send {"to": [offices], "feed": name, and any bulletin field to change}')
        draft = self.drafts.get(draft_id)
        if draft.state == "sent":
            raise ValidationError("id", f"draft {draft_id} was sent already, as {draft.sent_id}")
        if draft.state == "closed":
            raise ValidationError("id", f"draft {draft_id} is closed; move it to in_review first")
        routing = {k: data[k] for k in ("to", "feed") if k in data}
        fields = {**draft.fields, **_draft_fields({k: v for k, v in data.items() if k not in routing})}
        now = self.node.clock()
        compose = draft_from_request({**fields, **routing}, office=self.node.office, now_ms=now, rng=self.node.rng)
        from office_node.exchange.handling import Derived, check_draft_send

        try:
            check_draft_send(Derived.from_json(draft.derived), compose.bulletin, source=draft.source)
        except HandlingRefused as exc:
            self.node.audit.append(
                principal.username, actions.BULLETIN_REFUSED, target=draft_id,
                details={"rule": exc.reason, "attempted": actions.DRAFT_SEND, "source": draft.source}, now_ms=now,
            )  # fmt: skip
            raise
        result = await self.node.sending.send_draft(principal.username, compose, actions.DRAFT_SEND)
        self.drafts.mark_sent(draft_id, result["id"], by=principal.username, at_ms=now, fields=fields)
        self.node.live.publish("triage", {"id": draft_id, "state": "sent", "draft": True})
        return {**result, "draft": draft_id}

    # -- the live bridge to a MISP server (office_node/exchange/bridge.py) ------------------

    def _bridge_state_path(self) -> Any:
        return self.node.config.data_dir / BRIDGE_STATE_FILE

    def _bridge_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self._bridge_state_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"push": {}, "pull_since": None}
        return state if isinstance(state, dict) else {"push": {}, "pull_since": None}

    def _save_bridge_state(self, state: dict[str, Any]) -> None:
        path = self._bridge_state_path()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
        tmp.replace(path)

    async def misp_sync(self, principal: Principal | None = None) -> dict[str, Any]:
        """One round of the bridge: push what the push feeds got since the last round,
        then pull the tagged events as drafts. Audited; refusals by rule X3 too."""
        self._require_centre("runs the MISP bridge")
        settings = self.node.config.misp
        if settings is None:
            raise ValidationError("misp", "this centre has no [misp] section in node.toml: no MISP bridge is configured")
        from office_node.exchange.bridge import MispBridge
        from office_node.exchange.service import exportable

        actor = principal.username if principal else f"node:{self.node.office}"
        async with self._bridge_lock:
            if self._bridge is None:
                self._bridge = MispBridge(settings)
            state = self._bridge_state()
            pushed, present, refused = [], [], []
            for feed in settings.push_feeds:
                mark = state["push"].get(feed) or {"at": 0, "ids": []}
                stored = self._feed_since(feed, mark["at"])
                fresh = [b for b in stored if b.id not in mark["ids"]]
                report = await self._bridge.push([exportable(b) for b in fresh])
                now = self.node.clock()
                for bid in report.pushed:
                    self.node.audit.append(actor, actions.MISP_PUSH, target=bid, details={"server": settings.url, "feed": feed}, now_ms=now)
                for bid, exc in report.refused:
                    self.node.audit.append(
                        actor, actions.BULLETIN_REFUSED, target=bid,
                        details={"rule": exc.reason, "attempted": actions.MISP_PUSH, "server": settings.url}, now_ms=now,
                    )  # fmt: skip
                pushed += report.pushed
                present += report.present
                refused += [{"id": bid, "rule": exc.reason, "message": exc.message} for bid, exc in report.refused]
                if stored:
                    last = stored[-1].at
                    state["push"][feed] = {"at": last, "ids": [b.id for b in stored if b.at == last]}
                self._save_bridge_state(state)
            sources, newest = await self._bridge.pull(since_s=state.get("pull_since"))
            queued = self.queue_sources(actor, sources, origin=f"misp pull {settings.url}") if sources else {"drafts": [], "skipped": []}
            state["pull_since"] = newest
            self._save_bridge_state(state)
        return {"pushed": pushed, "present": present, "refused": refused, **queued}

    def _feed_since(self, feed: str, since: int) -> list[Any]:
        """The stored bulletins of ``feed`` that reached this node at ``since`` or later, oldest first."""
        query = BulletinQuery(feed=feed, since=since, limit=500)
        out = []
        while True:
            page = self.node.store.list_bulletins(query)
            out += page.items
            if page.next_cursor is None:
                return list(reversed(out))
            query = BulletinQuery(feed=feed, since=since, limit=500, cursor=page.next_cursor)

    async def run_bridge(self, stopping: Any) -> None:
        """The bridge's timer: a round every ``[misp] every_s``; a failed round is logged
        and tried again next time (the node goes on)."""
        settings = self.node.config.misp
        if settings is None:
            return
        while not stopping():
            try:
                await self.misp_sync()
            except BloError as exc:
                log.warning("MISP bridge round failed (%s): %s", exc.reason, exc.message)
            except Exception:
                log.exception("MISP bridge round failed")
            await asyncio.sleep(settings.every_s)


#: Where the bridge remembers how far it pushed and pulled (in the node's data dir).
BRIDGE_STATE_FILE = "misp-bridge.json"
#: A syntactically valid recipient for checking a draft's fields alone (never sent to).
_NOBODY = "ZZ-CHECK"


def _draft_fields(value: Any) -> dict[str, Any]:
    """Fields an analyst may set on a draft: a post's bulletin fields, not its routing."""
    if not isinstance(value, Mapping):
        raise ValidationError("fields", "must be an object of bulletin fields, e.g. {\"title\": ...}")
    for key in value:
        if key in ("to", "feed", "id", "from", "created", "forwarded"):
            raise ValidationError(str(key), "is not a draft field (recipients are named when the draft is sent)")
    return dict(value)


def _draft_summary(d: Any) -> dict[str, Any]:
    f = d.fields
    return {
        "id": d.id, "source": d.source, "format": d.format, "state": d.state, "title": f.get("title"),
        "kind": f.get("kind"), "precedence": f.get("precedence"), "tlp": f.get("tlp"),
        "releasable_to": f.get("releasable_to"), "local_only": d.derived.get("local_only", False),
        "entities": len(f.get("entities") or ()), "warnings": len(d.warnings), "created_at": d.created_at,
        "sent_id": d.sent_id,
    }  # fmt: skip

def _office_list(data: Mapping[str, Any], key: str) -> list[str]:
    """``data[key]``: a list of office ids (absent or null: none)."""
    value = data.get(key) or []
    if isinstance(value, str) or not isinstance(value, list) or not all(isinstance(o, str) for o in value):
        raise ValidationError(key, "must be a list of office ids")
    return value
