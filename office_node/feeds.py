"""Feeds on a node: the member's keyring on every node, the owner's state on a centre.

Every node keeps a ``FeedKeyring`` filled from the ``blo_feeds`` KV bucket (verified
local copy first, so feed bulletins open with the link down) into ``BusNode.feed_keys``:
each new epoch key is usable the moment it is unwrapped, and quarantined feed bulletins
that were waiting for it are opened again.

A centre also owns feeds (``FeedOwner``). Every operation that changes a feed (create,
add or remove a member, grant or withdraw post rights, rotate) starts a new epoch and, in
this order:

1. writes the owner state (``keys/feeds.state``, 0600, encrypted under the centre's box
   key): a centre that published epoch n and then lost it would sign another epoch n,
   which members refuse as a fork;
2. gives the centre's own bus the new epoch key, and its own keyring the new record
   (witnessed by its own clock), so that it seals under the new epoch and judges posts on
   the feed like every member (schemas/FEEDS.md 6.1);
3. publishes the epoch record and the members' grants to the bucket; if the link is
   down, they are published when it is back (records are re-published idempotently and
   the current epoch is re-granted on every reconnect).

Epochs rotate on every change of members or writers, on a timer (``[feeds]
rotate_hours``), and when the directory revokes a member's key (the member is removed
from every feed). A member with no usable inbox key when an epoch is issued (offline too
long) gets no grant then and holds nothing up; it is granted the current epoch as soon as
the directory shows an inbox key for it (a directory change ``inbox_key``, or a new record).

Epoch keys are erased ``EPOCH_KEY_KEPT_MS`` after the next epoch's record was witnessed,
by the member's keyring and by the owner (its state keeps the record, not the key).

Which feeds a node reads: those listed in ``[feeds] subscribe`` and every feed the
office belongs to now, without a restart or a config line once a centre adds it. Either
way, reading starts once the node holds an epoch key of the feed, from the first epoch
of its membership: what was sealed before that was sealed to others and would only fill
the quarantine with bulletins it can never open. A feed read for its membership (not
listed) is left when a new epoch's record no longer names the office: it is read on
until caught up (what was sealed to the office still arrives), then its consumers are
deleted (``BusNode.leave_feed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from bus import (
    BoxKeyPair,
    Change,
    Directory,
    FeedChange,
    FeedKeyring,
    FeedOwner,
    FeedScope,
    Identity,
    Issue,
    Rng,
    is_office_id,
    read_secret,
    write_private_file,
)
from bus import decode_feed_item as decode_item
from bus.errors import BloError, FeedError, FeedKeyPending, KeyStoreError, ValidationError
from bus.transport import BusNode, FeedKeyCache, FeedKeyWatcher, FeedMetrics, publish_issue
from bus.transport import open_feed_bucket as open_bucket
from bus.transport import publish_feed_item as publish_item

log = logging.getLogger("blo.feeds")
STATE_FILE = "feeds.state"
#: A feed joined now is read from this long before its first epoch held here: the owning
#: centre's clock (the epoch's time) and the NATS server's (the messages') may disagree.
CLOCK_SKEW_MS = 5 * 60_000
#: The tag of a centre-to-centre membership request for a joint feed (body: JSON).
MEMBERSHIP_TAG = "feed-membership"
#: The tag of the owner's answer to one: what became of each office (body: JSON).
OUTCOME_TAG = "feed-membership-outcome"
#: What became of one office of a request: ``change`` "add" or "remove", then the result.
RESULTS = {"add": ("added", "already_member", "refused"), "remove": ("removed", "not_member", "refused")}
#: The requests (and their outcomes) a centre keeps per feed to show, newest first.
KEPT_REQUESTS = 10


def membership_request(feed: str, add: list[str], remove: list[str], *, owner: str, own: str) -> dict[str, Any]:
    """The post request a centre sends the owner of a joint feed to change its own
    country's members. A sealed, signed bulletin like any other; its body is JSON."""
    return {
        "to": [owner],
        "kind": "request_for_information",
        "precedence": "IMMEDIATE",
        "tlp": "AMBER",
        "releasable_to": sorted({owner[:2], own[:2]}),
        "grading": "A1",
        "title": f"Feed membership request: {feed}",
        "body": json.dumps({"feed": feed, "add": sorted(add), "remove": sorted(remove)}, separators=(",", ":")),
        "tags": [MEMBERSHIP_TAG],
    }


def parse_membership_request(bulletin: Any) -> dict[str, Any]:
    """``{"feed", "add", "remove"}`` from a membership request; ValidationError otherwise."""
    try:
        data = json.loads(bulletin.body)
    except (ValueError, RecursionError):
        raise ValidationError("body", "a membership request's body is JSON: {feed, add, remove}") from None
    if not isinstance(data, dict) or set(data) != {"feed", "add", "remove"} or not isinstance(data["feed"], str):
        raise ValidationError("body", "a membership request's body is exactly {feed, add, remove}")
    for key in ("add", "remove"):
        if not isinstance(data[key], list) or not all(isinstance(o, str) and is_office_id(o) for o in data[key]):
            raise ValidationError(key, "must be a list of office ids")
    return data


def membership_outcome(request: Any, feed: str, outcomes: list[dict[str, Any]], epoch: int | None) -> dict[str, Any]:
    """The owner's answer to the membership request ``request`` (a Bulletin): one outcome
    per office named (``{office, change, result, reason}``; ``reason`` only when refused),
    and the epoch the applied changes started (None when nothing was applied)."""
    body = {"feed": feed, "request": request.id, "epoch": epoch, "outcomes": outcomes}
    return {
        "to": [request.sender],
        "in_reply_to": request.id,
        "kind": "request_for_information",
        "precedence": "IMMEDIATE",
        "tlp": "AMBER",
        "releasable_to": list(request.releasable_to),
        "grading": "A1",
        "title": f"Feed membership outcome: {feed}",
        "body": json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        "tags": [OUTCOME_TAG],
    }


def parse_membership_outcome(bulletin: Any) -> dict[str, Any]:
    """``{"feed", "request", "epoch", "outcomes"}`` from an outcome; ValidationError otherwise."""
    try:
        data = json.loads(bulletin.body)
    except (ValueError, RecursionError):
        raise ValidationError("body", "a membership outcome's body is JSON: {feed, request, epoch, outcomes}") from None
    if not isinstance(data, dict) or set(data) != {"feed", "request", "epoch", "outcomes"}:
        raise ValidationError("body", "a membership outcome's body is exactly {feed, request, epoch, outcomes}")
    if not isinstance(data["feed"], str) or not isinstance(data["request"], str):
        raise ValidationError("feed", "feed and request are strings")
    epoch = data["epoch"]
    if epoch is not None and (not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1):
        raise ValidationError("epoch", "is an epoch (an integer from 1) or null")
    if not isinstance(data["outcomes"], list) or len(data["outcomes"]) > 2 * 2048:
        raise ValidationError("outcomes", "must be a list of at most 4096 outcomes")
    for o in data["outcomes"]:
        if not isinstance(o, dict) or set(o) != {"office", "change", "result", "reason"}:
            raise ValidationError("outcomes", "each outcome is exactly {office, change, result, reason}")
        if not isinstance(o["office"], str) or not is_office_id(o["office"]):
            raise ValidationError("outcomes", "an outcome's office must be an office id")
        if o["result"] not in RESULTS.get(o["change"], ()):
            raise ValidationError("outcomes", f"an outcome's change and result must be one of {RESULTS}")
        if not (o["reason"] is None or (isinstance(o["reason"], str) and len(o["reason"]) <= 500)):
            raise ValidationError("outcomes", "an outcome's reason is null or a text of at most 500 characters")
    return data


class NodeFeeds:
    def __init__(
        self,
        identity: Identity,
        directory: Directory,
        bus: BusNode,
        *,
        keys_dir: Path,
        data_dir: Path,
        is_centre: bool,
        metrics: FeedMetrics,
        clock: Callable[[], int],
        rng: Rng,
        on_change: Callable[[str, dict[str, Any]], None] | None = None,
        configured: Iterable[str] = (),
        inbox_keys: Mapping[bytes, BoxKeyPair] | None = None,
    ) -> None:
        self.identity = identity
        self.office = identity.office_id
        self.directory = directory
        self.bus = bus
        self.is_centre = is_centre
        self.metrics = metrics
        self.clock = clock
        self.rng = rng
        self.on_change = on_change
        #: the feeds ``[feeds] subscribe`` lists: read once a key is held, member or not
        self.configured = tuple(configured)
        #: how far before its joining a feed is read (CLOCK_SKEW_MS; a test may shrink it)
        self.clock_skew_ms = CLOCK_SKEW_MS
        #: ``inbox_keys``: the inbox ring's live dict (kid -> key pair) that grants are wrapped to
        self.keyring = FeedKeyring.for_identity(identity, directory, feed_keys=bus.feed_keys, inbox_keys=inbox_keys)
        self.cache = FeedKeyCache(data_dir / "feeds.json")
        self.state_path = keys_dir / STATE_FILE
        self.owner: FeedOwner | None = None
        self._unpublished: set[str] = set()
        #: membership requests this centre sent for feeds others own, and their outcomes
        #: (per feed, newest first; in memory: the outcome bulletins themselves are stored)
        self.requests: dict[str, list[dict[str, Any]]] = {}
        self._lock = asyncio.Lock()
        self.keyring.add_listener(self._keyring_changed)

    # -- start -----------------------------------------------------------------------

    def load(self) -> None:
        """Load the local copy (and, on a centre, the owner state) before any network."""
        self.cache.load_into(self.keyring, self.metrics)
        if self.is_centre:
            if self.state_path.exists():
                self.owner = FeedOwner.from_bytes(read_secret(self.state_path, "feed owner state"), self.identity)
            else:
                self.owner = FeedOwner(self.identity)
            self.bus.feed_keys.update(self.owner.epoch_keys())
            for feed in self.owner.feeds():
                self._take_own(self.owner.record_items(feed))
            # Re-grant once per start: a publish lost with the last run is repaired.
            self._unpublished = set(self.owner.feeds())
            self.directory.add_listener(self._directory_changed)
        self.erase_expired()
        self.follow()

    def _take_own(self, records: Iterable[bytes]) -> None:
        """The owner's own records into its keyring, witnessed by its own clock when it
        signed them (their ``created_at``; TRUST.md 2.1): it posts under and judges its
        feeds as every member does."""
        for raw in records:
            try:
                self.keyring.apply(raw, witnessed_at=decode_item(raw).signed_at)
            except FeedError as exc:
                log.error("this centre's own feed record is refused by its keyring (%s): %s", exc.reason, exc.message)

    def erase_expired(self) -> list[tuple[str, int]]:
        """Erase the epoch keys kept long enough (schemas/FEEDS.md 7.3): the member's, and on
        a centre the owner's (its state is written again without them)."""
        now = self.clock()
        erased = {(c.feed, c.epoch) for c in self.keyring.erase_expired(now)}
        owner = self.owner
        if owner is not None:
            dropped = owner.erase_expired(now)
            for slot in dropped:
                self.bus.feed_keys.pop(slot, None)
            if dropped:
                write_private_file(self.state_path, owner.to_bytes(rng=self.rng))
            erased.update(dropped)
        if erased:
            self.bus.forget_keys()  # and every wrap key derived from them
            self.metrics.applied.labels(status="erased").inc(len(erased))
            log.info("feed epoch keys erased (kept long enough): %s", ", ".join(f"{f}#{e}" for f, e in sorted(erased)))
        return sorted(erased)

    # -- the feed's rules for bulletins (schemas/FEEDS.md 6.2, 7.2) ------------------

    def post_epoch(self, feed: str) -> int:
        """The epoch this node seals a bulletin to ``feed`` under now (its newest record's;
        while that key has not arrived, the bulletin waits); ``FeedPostForbidden`` when it
        may not post."""
        return self.keyring.post_epoch(feed, self.office)

    def check_post(self, feed: str, epoch: int, sender: str, witnessed_at: int) -> None:
        """Whether a bulletin opened through ``(feed, epoch)`` from ``sender``, stored at
        ``witnessed_at``, stands: ``StaleEpoch``, ``NotAWriter`` or ``FeedKeyPending`` if not."""
        self.keyring.check_post(feed, epoch, sender, witnessed_at)

    def inbox_kids_in_use(self) -> set[bytes]:
        """The inbox keys the inbox ring must keep for the feed grants still in use."""
        return self.keyring.inbox_kids_in_use(self.clock())

    def follow(self) -> None:
        """Read (from the bus) every configured feed and every feed this office belongs to
        now, each once this node holds one of its epoch keys; stop reading, once caught
        up, a feed it was removed from (see the module docstring). Run at start, on every
        keyring change and every watch tick, so a missed event is caught up."""
        for feed in dict.fromkeys((*self.configured, *self.keyring.member_feeds())):
            self._follow(feed)
        for feed in self.bus.feeds - set(self.configured):
            if self.keyring.record(feed) is not None and self.office not in self.keyring.members(feed):
                if self.bus.leave_feed(feed):
                    log.info("removed from feed %s: reading it until caught up, then stopping", feed)
                    if self.on_change is not None:
                        self.on_change(
                            "feed", {"feed": feed, "epoch": self.keyring.current_epoch(feed), "status": "left"}
                        )

    def _follow(self, feed: str) -> None:
        epochs = self.keyring.epochs_with_keys(feed)
        if not epochs or feed in self.bus.feeds:
            return  # no key yet (its arrival calls this again), or read already
        current = self.keyring.current_epoch(feed)
        if current is not None and current not in epochs and self.office in self.keyring.members(feed):
            return  # a member whose newest key is on its way: its arrival starts the reading there
        # From the first epoch of the latest membership (held keys without a gap up to the
        # newest held): after a removal and a new joining, not the old membership's start.
        joined = epochs[-1]
        while joined - 1 in epochs:
            joined -= 1
        first = self.keyring.record(feed, joined)
        start = None if first is None else max(0, first.created_at - self.clock_skew_ms)
        if self.bus.subscribe_feed(feed, start_ms=start):
            log.info("reading feed %s from epoch %d", feed, joined)
            if self.on_change is not None:
                self.on_change("feed", {"feed": feed, "epoch": joined, "status": "subscribed"})

    async def watch(self, client: Any, *, stop: Callable[[], bool], check_s: float = 1.0) -> None:
        """While connected: publish what waits, then keep the keyring in step with the bucket.
        Restarted by the caller's loop after every reconnect."""
        js = client.jetstream()
        watcher = FeedKeyWatcher(js, self.keyring, cache=self.cache, metrics=self.metrics, create_bucket=self.is_centre)

        async def tick() -> None:
            if self._unpublished:
                await self.publish_pending(js)
            await self._retry_waiting()
            self.erase_expired()
            self.follow()  # a feed left and joined again is read again once the leaving is done

        await watcher.watch_while(
            lambda: not stop() and client.connected,
            check_s=check_s,
            started=lambda: self.publish_pending(js),
            tick=tick,
        )

    async def _retry_waiting(self) -> None:
        """Open again feed bulletins quarantined while their key was on its way. The key's
        arrival triggers a retry too; this sweep closes the gap when a bulletin was
        quarantined just after that retry ran."""
        quarantine = self.bus.quarantine
        if quarantine is not None and quarantine.counts().get(FeedKeyPending.reason):
            await self.bus.retry_quarantine()

    # -- the member side -------------------------------------------------------------

    def _keyring_changed(self, change: FeedChange) -> None:
        if change.status in ("key", "epoch", "dropped", "erased"):
            # Copies to this feed waiting in the outbox are looked at again (FEEDS.md 6.2): a
            # new record holds them, its key releases them re-sealed, a removal fails them.
            self.bus.feed_changed(change.feed)
        if change.status in ("key", "epoch", "dropped"):
            self.follow()  # a first key starts the reading; a record without this office ends it
            # Feed bulletins that arrived before their epoch key wait in quarantine; a new
            # record may also tell them their key will never come (the office was removed).
            # (Before the bus started there is no quarantine yet, and nothing in it.)
            if self.bus.quarantine is not None:
                with contextlib.suppress(RuntimeError):
                    asyncio.get_running_loop().create_task(self.bus.retry_quarantine())
        if self.on_change is not None:
            self.on_change("feed", {"feed": change.feed, "epoch": change.epoch, "status": change.status})

    def members(self, feed: str) -> tuple[str, ...]:
        """The members of ``feed`` at the epoch this node seals under (the newest record it
        holds: FEEDS.md 6.2)."""
        if self.owner is not None and feed in self.owner.feeds():
            return self.owner.members(feed)
        return self.keyring.members(feed)

    def scope(self, feed: str) -> FeedScope:
        """``feed`` as the handling rules see it: the countries of its current members."""
        return FeedScope.of_members(feed, self.members(feed))

    def writers(self, feed: str) -> tuple[str, ...]:
        if self.owner is not None and feed in self.owner.feeds():
            return self.owner.writers(feed)
        return self.keyring.writers(feed)

    def view(self) -> list[dict[str, Any]]:
        """Every feed this node knows of: configured, held, owned. ``subscribed``: read now."""
        subscribed = self.bus.feeds
        names = set(self.configured) | subscribed | set(self.keyring.feeds())
        if self.owner is not None:
            names |= set(self.owner.feeds())
        out = []
        for name in sorted(names):
            owned = self.owner is not None and name in self.owner.feeds()
            epoch = self.owner.current_epoch(name) if owned and self.owner else self.keyring.current_epoch(name)
            record = self.owner.record(name) if owned and self.owner else self.keyring.record(name)
            out.append(
                {
                    "name": name,
                    "epoch": epoch,
                    "members": list(self.members(name)) if (owned or record) else [],
                    "writers": list(self.writers(name)) if (owned or record) else [],
                    "ungranted": list(self.owner.ungranted(name)) if owned and self.owner else [],
                    "owner": record.owner if record is not None else None,
                    "owned_here": owned,
                    "member_here": self.office in (record.members if record is not None else ()),
                    "subscribed": name in subscribed,
                    "have_key": bool(epoch and (name, epoch) in self.bus.feed_keys),
                    "since": record.created_at if record is not None else None,
                    "unpublished": name in self._unpublished,
                    "requests": self.requests.get(name, []),
                }
            )
        return out

    # -- the owner side ----------------------------------------------------------------

    def _owner(self) -> FeedOwner:
        if self.owner is None:
            raise ValidationError("role", f"{self.office} is not a centre: only a centre owns and manages feeds")
        return self.owner

    async def _apply(self, issues: list[Issue]) -> list[Issue]:
        """Persist, arm our own bus, publish (or queue) the issues of one operation."""
        if not issues:
            return issues
        owner = self._owner()
        write_private_file(self.state_path, owner.to_bytes(rng=self.rng))
        for issue in issues:
            self.bus.feed_keys[(issue.feed, issue.epoch)] = issue.epoch_key
            self._take_own([issue.record])
            self._unpublished.add(issue.feed)
            if issue.ungranted:
                log.warning(
                    "feed %s epoch %d: no grant yet for %s (no usable inbox key: offline too long); granted when one "
                    "appears", issue.feed, issue.epoch, ", ".join(issue.ungranted),
                )  # fmt: skip
            if self.on_change is not None:
                self.on_change("feed", {"feed": issue.feed, "epoch": issue.epoch, "status": "epoch"})
        return await self._publish(issues)

    async def _publish(self, issues: list[Issue]) -> list[Issue]:
        """Publish the issues now if connected; otherwise they wait for the link."""
        client = self.bus.client
        if client is not None and client.connected:
            with contextlib.suppress(BloError):
                await self.publish_pending(client.jetstream(), issued=issues)
        return issues

    async def publish_pending(self, js: Any, *, issued: list[Issue] | None = None) -> None:
        """Publish the records of every feed with unpublished changes, and grants for its
        current epoch (the issue just made, or a fresh re-grant)."""
        owner = self.owner
        if owner is None or not self._unpublished:
            return
        async with self._lock:
            try:
                kv = await open_bucket(js, create=True)
                by_feed = {i.feed: i for i in issued or []}
                for feed in sorted(self._unpublished):
                    for raw in owner.record_items(feed):
                        await publish_item(kv, raw)
                    issue = by_feed.get(feed) or owner.regrant(feed, self.directory, now_ms=self.clock(), rng=self.rng)
                    await publish_issue(kv, issue)
                    self._unpublished.discard(feed)
            except BloError as exc:
                log.warning("feed keys not published yet (%s); retrying while connected", exc.message)
            except Exception as exc:  # nats-py errors while the link flaps: retried on the next round
                log.warning("feed keys not published yet (%s); retrying while connected", exc)

    async def create(
        self,
        feed: str,
        members: Iterable[str],
        *,
        scope: Iterable[str] | None = None,
        writers: Iterable[str] = (),
    ) -> Issue:
        owner = self._owner()
        issue = owner.create(
            feed, list(members), self.directory, now_ms=self.clock(), rng=self.rng, scope=scope, writers=list(writers)
        )
        return (await self._apply([issue]))[0]

    async def change_members(
        self, feed: str, *, add: Iterable[str] = (), remove: Iterable[str] = (), post: bool = False
    ) -> Issue:
        """One new epoch with ``add`` joined (writers too when ``post``) and ``remove`` gone."""
        owner = self._owner()
        current = owner.members(feed)
        add, remove = list(add), list(remove)
        for office in add:
            if office in current:
                raise ValidationError("add", f"{office} is already a member of {feed}")
        for office in remove:
            if office not in current:
                raise ValidationError("remove", f"{office} is not a member of {feed}")
        if not add and not remove:
            raise ValidationError("add", "name offices to add or remove")
        members = [m for m in current if m not in remove] + add
        writers = [w for w in owner.writers(feed) if w not in remove] + (add if post else [])
        # One epoch for the whole change; a removal is what a member's reader must learn.
        reason = "member_removed" if remove else "member_added"
        issue = owner.set_members(
            feed, members, self.directory, reason=reason, now_ms=self.clock(), rng=self.rng, writers=writers
        )
        return (await self._apply([issue]))[0]

    async def apply_request(
        self, feed: str, *, add: Iterable[str], remove: Iterable[str], country: str
    ) -> tuple[Issue | None, list[dict[str, Any]]]:
        """Another country's centre asks for changes to its ``country``'s members of
        ``feed``: each office is judged on its own, what can be applied is, in one epoch,
        and the outcome of every office named is returned (FEEDS.md 16)."""
        owner = self._owner()
        current = owner.members(feed)
        outcomes: list[dict[str, Any]] = []
        adding: list[str] = []
        removing: list[str] = []

        def outcome(office: str, change: str, result: str, reason: str | None = None) -> None:
            outcomes.append({"office": office, "change": change, "result": result, "reason": reason})

        for change, offices, done, already in (("add", add, adding, "already_member"), ("remove", remove, removing, "not_member")):
            for office in dict.fromkeys(offices):
                if office[:2] != country:
                    outcome(office, change, "refused", f"a {country} centre changes only {country} members")
                elif (office in current) == (change == "add"):
                    outcome(office, change, already)
                elif change == "add":
                    try:
                        owner.check_addable(feed, office, self.directory, now_ms=self.clock())
                    except BloError as exc:
                        outcome(office, change, "refused", exc.message[:500])
                    else:
                        done.append(office)
                else:
                    done.append(office)
        if not adding and not removing:
            return None, outcomes
        issue = await self.change_members(feed, add=adding, remove=removing)
        for office in adding:
            outcome(office, "add", "added")
        for office in removing:
            outcome(office, "remove", "removed")
        return issue, outcomes

    def request_sent(self, feed: str, request_id: str, *, owner: str, add: list[str], remove: list[str]) -> None:
        """Remember a membership request this centre sent, to show until and once it is answered."""
        entry = {"id": request_id, "at": self.clock(), "owner": owner, "add": add, "remove": remove,
                 "answered_at": None, "epoch": None, "outcomes": []}  # fmt: skip
        self.requests[feed] = [entry, *self.requests.get(feed, [])][:KEPT_REQUESTS]

    def outcome_received(self, sender: str, outcome: dict[str, Any]) -> dict[str, Any] | None:
        """Take the owner's answer to one of this centre's requests; None (ignored) when
        ``sender`` is not the feed's owner as its signed record says."""
        feed = outcome["feed"]
        record = self.keyring.record(feed)
        if record is None or record.owner != sender:
            return None
        kept = self.requests.setdefault(feed, [])
        entry = next((e for e in kept if e["id"] == outcome["request"]), None)
        if entry is None:  # sent before a restart: kept from the answer alone
            entry = {"id": outcome["request"], "at": None, "owner": sender, "add": [], "remove": []}
            kept.insert(0, entry)
            del kept[KEPT_REQUESTS:]
        entry.update(answered_at=self.clock(), epoch=outcome["epoch"], outcomes=outcome["outcomes"])
        return entry

    async def change_writers(self, feed: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()) -> Issue:
        """One new epoch (``writers_changed``) in which ``add`` may post and ``remove`` may not."""
        owner = self._owner()
        current = owner.writers(feed)
        add, remove = list(add), list(remove)
        if not add and not remove:
            raise ValidationError("add", "name members to give post rights to, or to take them from")
        for office in add:
            if office in current:
                raise ValidationError("add", f"{office} may already post to {feed}")
            if office not in owner.members(feed):
                raise ValidationError("add", f"{office} is not a member of {feed}: add it first")
        for office in remove:
            if office not in current:
                raise ValidationError("remove", f"{office} may not post to {feed} now")
        writers = [w for w in current if w not in remove] + add
        issue = owner.set_writers(feed, writers, self.directory, now_ms=self.clock(), rng=self.rng)
        return (await self._apply([issue]))[0]

    async def rotate(self, feed: str, *, reason: str = "manual") -> Issue:
        issue = self._owner().rotate(feed, self.directory, now_ms=self.clock(), rng=self.rng, reason=reason)
        return (await self._apply([issue]))[0]

    async def rotate_due(self, max_age_ms: int) -> list[Issue]:
        """The timer: a fresh key for every feed whose epoch is older than ``max_age_ms``."""
        owner = self.owner
        if owner is None:
            return []
        issues = []
        for feed in owner.due(self.clock(), max_age_ms):
            try:
                issues.append(owner.rotate(feed, self.directory, now_ms=self.clock(), rng=self.rng, reason="timer"))
            except BloError as exc:
                log.error("cannot rotate feed %s: %s", feed, exc.message)
        return await self._apply(issues)

    def _directory_changed(self, change: Change) -> None:
        """A revoked member leaves every feed at once: nothing sent after can reach it. A
        member that was left without a grant gets one when an inbox key appears for it."""
        owner = self.owner
        if owner is None:
            return
        if change.status in ("inbox_key", "added", "updated"):
            self._grant_ungranted(change.office_id)
            return
        if change.status != "revoked":
            return
        if not any(change.office_id in owner.members(f) for f in owner.feeds()):
            return
        try:
            issues = owner.remove_everywhere(change.office_id, self.directory, now_ms=self.clock(), rng=self.rng)
        except (FeedError, KeyStoreError, BloError) as exc:
            log.error("cannot remove revoked %s from its feeds: %s", change.office_id, exc.message)
            return
        log.warning("%s revoked: removed from %s", change.office_id, ", ".join(i.feed for i in issues))
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(self._apply(issues))

    def _grant_ungranted(self, office: str) -> None:
        """Grant ``office`` the current epoch of every owned feed it was left without a grant of."""
        owner = self.owner
        assert owner is not None
        issues = []
        for feed in owner.feeds():
            if office not in owner.ungranted(feed):
                continue
            try:
                issue = owner.regrant(feed, self.directory, now_ms=self.clock(), rng=self.rng, offices=[office])
            except BloError as exc:
                log.error("cannot grant %s feed %s: %s", office, feed, exc.message)
                continue
            if issue.grants:
                log.info("%s has an inbox key again: granted feed %s epoch %d", office, feed, issue.epoch)
                issues.append(issue)
        if issues:
            for issue in issues:
                self._unpublished.add(issue.feed)
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().create_task(self._publish(issues))
