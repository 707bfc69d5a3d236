"""Feeds on a node: the member's keyring on every node, the owner's state on a centre.

Every node keeps a ``FeedKeyring`` filled from the ``blo_feeds`` KV bucket (verified
local copy first, so feed bulletins open with the link down) into ``BusNode.feed_keys``:
each new epoch key is usable the moment it is unwrapped, and quarantined feed bulletins
that were waiting for it are opened again.

A centre also owns feeds (``FeedOwner``). Every operation that changes a feed (create,
add or remove a member, rotate) starts a new epoch and, in this order:

1. writes the owner state (``keys/feeds.state``, 0600, encrypted under the centre's box
   key): a centre that published epoch n and then lost it would sign another epoch n,
   which members refuse as a fork;
2. gives the centre's own bus the new epoch key (it seals feed bulletins under it);
3. publishes the epoch record and the members' grants to the bucket; if the link is
   down, they are published when it is back (records are re-published idempotently and
   the current epoch is re-granted on every reconnect).

Epochs rotate on every membership change, on a timer (``[feeds] rotate_hours``), and
when the directory revokes a member's key (the member is removed from every feed).

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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bus.bulletin import is_office_id
from bus.directory import Change, Directory
from bus.errors import BloError, FeedError, FeedKeyPending, KeyStoreError, ValidationError
from bus.feeds import FeedChange, FeedKeyring, FeedOwner, Issue
from bus.ids import Rng
from bus.keys import Identity
from bus.keystore import write_private_file
from bus.transport.kv_feeds import FeedKeyCache, FeedKeyWatcher, FeedMetrics, open_bucket, publish_issue, publish_item
from bus.transport.node import BusNode

log = logging.getLogger("blo.feeds")
STATE_FILE = "feeds.state"
#: A feed joined now is read from this long before its first epoch held here: the owning
#: centre's clock (the epoch's time) and the NATS server's (the messages') may disagree.
CLOCK_SKEW_MS = 5 * 60_000
#: The tag of a centre-to-centre membership request for a joint feed (body: JSON).
MEMBERSHIP_TAG = "feed-membership"


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
        self.keyring = FeedKeyring.for_identity(identity, directory, feed_keys=bus.feed_keys)
        self.cache = FeedKeyCache(data_dir / "feeds.json")
        self.state_path = keys_dir / STATE_FILE
        self.owner: FeedOwner | None = None
        self._unpublished: set[str] = set()
        self._lock = asyncio.Lock()
        self.keyring.add_listener(self._keyring_changed)

    # -- start -----------------------------------------------------------------------

    def load(self) -> None:
        """Load the local copy (and, on a centre, the owner state) before any network."""
        self.cache.load_into(self.keyring, self.metrics)
        if self.is_centre:
            if self.state_path.exists():
                self.owner = FeedOwner.from_bytes(self.state_path.read_bytes(), self.identity)
            else:
                self.owner = FeedOwner(self.identity)
            self.bus.feed_keys.update(self.owner.epoch_keys())
            # Re-grant once per start: a publish lost with the last run is repaired.
            self._unpublished = set(self.owner.feeds())
            self.directory.add_listener(self._directory_changed)
        self.follow()

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
                        self.on_change("feed", {"feed": feed, "epoch": self.keyring.current_epoch(feed), "status": "left"})

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
            self.follow()  # a feed left and joined again is read again once the leaving is done

        await watcher.watch_while(
            lambda: not stop() and client.connected, check_s=check_s, started=lambda: self.publish_pending(js), tick=tick
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
        if change.status in ("key", "epoch"):
            self.follow()  # a first key starts the reading; a record without this office ends it
            # Feed bulletins that arrived before their epoch key wait in quarantine; a new
            # record may also tell them their key will never come (the office was removed).
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().create_task(self.bus.retry_quarantine())
        if self.on_change is not None:
            self.on_change("feed", {"feed": change.feed, "epoch": change.epoch, "status": change.status})

    def members(self, feed: str) -> tuple[str, ...]:
        """The members of ``feed`` at the epoch this node seals under (its newest key)."""
        if self.owner is not None and feed in self.owner.feeds():
            return self.owner.members(feed)
        epochs = self.keyring.epochs_with_keys(feed)
        return self.keyring.members(feed, max(epochs)) if epochs else ()

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
                    "owner": record.owner if record is not None else None,
                    "owned_here": owned,
                    "member_here": self.office in (record.members if record is not None else ()),
                    "subscribed": name in subscribed,
                    "have_key": bool(epoch and (name, epoch) in self.bus.feed_keys),
                    "since": record.created_at if record is not None else None,
                    "unpublished": name in self._unpublished,
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
            self._unpublished.add(issue.feed)
            if self.on_change is not None:
                self.on_change("feed", {"feed": issue.feed, "epoch": issue.epoch, "status": "epoch"})
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

    async def create(self, feed: str, members: Iterable[str], *, scope: Iterable[str] | None = None) -> Issue:
        owner = self._owner()
        issue = owner.create(feed, list(members), self.directory, now_ms=self.clock(), rng=self.rng, scope=scope)
        return (await self._apply([issue]))[0]

    async def change_members(self, feed: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()) -> Issue:
        """One new epoch with ``add`` joined and ``remove`` gone."""
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
        # One epoch for the whole change; a removal is what a member's reader must learn.
        reason = "member_removed" if remove else "member_added"
        issue = owner.set_members(feed, members, self.directory, reason=reason, now_ms=self.clock(), rng=self.rng)
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
        """A revoked member leaves every feed at once: nothing sent after can reach it."""
        owner = self.owner
        if owner is None or change.status != "revoked":
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
