"""Feed epoch keys over a real nats-server: the bucket, the watcher, the local copy, and
real BusNodes posting to and reading a feed across removals, rotations and an offline member.

Every wait is bounded; pytest-timeout stops a hung test.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from bus import errors
from bus.directory import Directory, revoke_key
from bus.feeds import FeedKeyring, FeedOwner, decode_item
from bus.keys import Identity
from bus.transport.kv_feeds import (
    BUCKET,
    FeedKeyCache,
    FeedKeyWatcher,
    FeedMetrics,
    kv_key,
    open_bucket,
    publish_issue,
    publish_item,
)
from bus.transport.node import BusNode, wall_ms
from bus.transport.server import NatsServer
from tests.bus_helpers import Collector, bulletin, eventually, make_node
from tests.feed_helpers import FEED, MUK, NKP, SVK, TH_C, new_directory

pytestmark = pytest.mark.timeout(90)


def rejected(metrics: FeedMetrics, reason: str) -> float:
    return metrics.rejected.labels(reason=reason)._value.get()


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[nats.js.JetStreamContext]:
    nc = await nats.connect(nats_server.url, connect_timeout=5, allow_reconnect=False)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


def watcher_for(js, who: Identity, directory: Directory, cache: Path | None = None, **kwargs) -> FeedKeyWatcher:
    ring = FeedKeyring.for_identity(who, directory, **kwargs)
    return FeedKeyWatcher(
        js, ring, cache=FeedKeyCache(cache) if cache else None, metrics=FeedMetrics(CollectorRegistry())
    )


def has_epoch(epoch: int):
    return lambda ring: (FEED, epoch) in ring.feed_keys


# -- the bucket and the watcher ----------------------------------------------------------


async def test_members_watchers_load_the_bucket_then_pick_up_new_epochs(js, tmp_path: Path) -> None:
    d = new_directory()
    owner = FeedOwner(TH_C)
    kv = await open_bucket(js, create=True)
    first = owner.create(FEED, ["TH-MUK", "LA-SVK"], d, now_ms=wall_ms())
    keys = await publish_issue(kv, first)
    assert keys == [f"epoch.{FEED}.1", f"grant.LA-SVK.{FEED}.1", f"grant.TH-MUK.{FEED}.1"]
    watcher = watcher_for(js, MUK, new_directory(), tmp_path / "data" / "feeds.json")
    await watcher.start(timeout=5)
    try:
        assert watcher.keyring.feed_keys == {(FEED, 1): first.epoch_key}
        second = owner.rotate(FEED, d, now_ms=wall_ms())
        await publish_issue(kv, second)
        await watcher.wait_until(has_epoch(2), timeout=5)
        assert watcher.keyring.feed_keys[(FEED, 2)] == second.epoch_key
        assert watcher.metrics.applied.labels(status="key")._value.get() == 2
    finally:
        await watcher.stop()
    cache = FeedKeyCache(tmp_path / "data" / "feeds.json")
    assert (cache.path.stat().st_mode & 0o777) == 0o600
    offline = FeedKeyring.for_identity(MUK, new_directory())
    assert cache.load_into(offline) == 4  # two records, two grants; no bus needed
    assert offline.feed_keys == {(FEED, 1): first.epoch_key, (FEED, 2): second.epoch_key}


async def test_each_item_is_witnessed_at_its_stored_time_and_the_local_copy_keeps_it(js, tmp_path: Path) -> None:
    d = new_directory()
    kv = await open_bucket(js, create=True)
    # Signed "a day ago" (the signer's clock says so); stored now: the stored time is what counts.
    day = 86_400_000
    issue = FeedOwner(TH_C).create(FEED, ["TH-MUK"], d, now_ms=wall_ms() - day)
    before = wall_ms()
    await publish_issue(kv, issue)
    after = wall_ms()
    watcher = watcher_for(js, MUK, new_directory(), tmp_path / "feeds.json")
    await watcher.start(timeout=5)
    await watcher.stop()
    stored = watcher.keyring.witnessed_at(FEED, 1)
    assert stored is not None and before - 1 <= stored <= after + 1
    saved = FeedKeyCache(tmp_path / "feeds.json").read_witnessed()
    assert [raw for raw, _ in saved] == issue.items() and saved[0][1] == stored
    assert '"format": "blo-feed-cache/v2"' in (tmp_path / "feeds.json").read_text()
    # Reloaded offline, the record keeps the time the server stored it, not the reload's.
    offline = FeedKeyring.for_identity(MUK, new_directory())
    FeedKeyCache(tmp_path / "feeds.json").load_into(offline)
    assert offline.witnessed_at(FEED, 1) == stored


async def test_a_backdated_record_from_a_revoked_centre_key_is_refused_by_its_stored_time(js) -> None:
    """The thief of TH-TCCC's signing key, revoked an hour ago, puts a record dated before
    the revocation in the bucket: the server's stored time refuses it."""
    d = new_directory()
    owner = FeedOwner(TH_C)
    kv = await open_bucket(js, create=True)
    revoked_at = wall_ms() - 3_600_000
    first = owner.create(FEED, ["TH-MUK"], d, now_ms=revoked_at - 7_200_000)
    second = owner.rotate(FEED, d, now_ms=revoked_at - 1, reason="manual")  # made now by the thief, backdated
    await publish_issue(kv, first)
    await publish_issue(kv, second)
    directory = new_directory()
    directory.apply(revoke_key(TH_C, "TH-TCCC", TH_C.signing.kid, revoked_at=revoked_at, reason="key stolen"), witnessed_at=revoked_at)
    watcher = watcher_for(js, MUK, directory)
    await watcher.start(timeout=5)
    await watcher.stop()
    # Everything in the bucket was stored after the revocation: refused, the backdated epoch 2
    # (and epoch 1 too, republished after it: a revoked key vouches for nothing stored later).
    assert watcher.keyring.feed_keys == {} and watcher.keyring.current_epoch(FEED) is None
    assert rejected(watcher.metrics, "signer_key_invalid") == 4  # both records and both grants


async def test_a_member_watches_only_its_own_grants(js) -> None:
    d = new_directory()
    await publish_issue(
        await open_bucket(js, create=True), FeedOwner(TH_C).create(FEED, ["TH-MUK", "LA-SVK"], d, now_ms=wall_ms())
    )
    watcher = watcher_for(js, SVK, new_directory())
    await watcher.start(timeout=5)
    await watcher.stop()
    assert watcher.filters == ("epoch.>", "grant.LA-SVK.>")
    applied = {s: watcher.metrics.applied.labels(status=s)._value.get() for s in ("epoch", "key", "waiting")}
    assert applied == {"epoch": 1, "key": 1, "waiting": 0}  # TH-MUK's grant never reached it
    assert watcher.keyring.rejected == {}


async def test_tampered_misplaced_and_deleted_entries_are_ignored_and_counted(js, caplog) -> None:
    d = new_directory()
    owner = FeedOwner(TH_C)
    kv = await open_bucket(js, create=True)
    first = owner.create(FEED, ["TH-MUK"], d, now_ms=wall_ms())
    await publish_issue(kv, first)
    watcher = watcher_for(js, MUK, new_directory())
    await watcher.start(timeout=5)
    try:
        second = owner.rotate(FEED, d, now_ms=wall_ms())
        record = second.record
        with caplog.at_level(logging.WARNING, logger="bus.feeds"):
            await kv.put(kv_key(decode_item(record)), record[:-1] + bytes([record[-1] ^ 0x01]))
            await kv.put(f"grant.TH-MUK.{FEED}.7", second.grant_for("TH-MUK"))
            await kv.delete(f"grant.TH-MUK.{FEED}.1")
            deadline = time.monotonic() + 5
            while rejected(watcher.metrics, "deleted") < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        assert rejected(watcher.metrics, "bad_signature") == 1
        assert rejected(watcher.metrics, "misplaced") == 1
        assert rejected(watcher.metrics, "deleted") == 1
        assert "ignored (bad_signature)" in caplog.text and f"epoch.{FEED}.2" in caplog.text
        assert watcher.keyring.feed_keys == {(FEED, 1): first.epoch_key}  # nothing taken away, nothing forged
        await publish_issue(kv, second)  # the centre republishes: repaired
        await watcher.wait_until(has_epoch(2), timeout=5)
    finally:
        await watcher.stop()


async def test_a_forked_record_in_the_bucket_is_refused_and_the_first_kept(js) -> None:
    d = new_directory()
    owner = FeedOwner(TH_C)
    kv = await open_bucket(js, create=True)
    await publish_issue(kv, owner.create(FEED, ["TH-MUK"], d, now_ms=wall_ms()))
    saved = owner.to_bytes()
    second = owner.rotate(FEED, d, now_ms=wall_ms())
    await publish_issue(kv, second)
    watcher = watcher_for(js, MUK, new_directory())
    await watcher.start(timeout=5)
    try:
        forked = FeedOwner.from_bytes(saved, TH_C).rotate(FEED, d, now_ms=wall_ms() + 1, reason="manual")
        await publish_issue(kv, forked)  # overwrites epoch 2 in the bucket
        deadline = time.monotonic() + 5
        while rejected(watcher.metrics, "feed_fork") < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert rejected(watcher.metrics, "feed_fork") == 2  # the record, and the grant for it
        assert watcher.keyring.feed_keys[(FEED, 2)] == second.epoch_key
        assert watcher.keyring.record(FEED, 2).reason == "timer"
    finally:
        await watcher.stop()


async def test_items_waiting_for_the_centre_record_apply_when_the_directory_learns_it(js) -> None:
    d = new_directory()
    issue = FeedOwner(TH_C).create(FEED, ["TH-MUK"], d, now_ms=wall_ms())
    await publish_issue(await open_bucket(js, create=True), issue)
    late = new_directory(with_centres=False)
    watcher = watcher_for(js, MUK, late)
    await watcher.start(timeout=5)
    try:
        assert watcher.keyring.waiting == 2 and watcher.metrics.waiting._value.get() == 2
        for item in d.signed_items():  # the directory watcher brings the centres' records
            if item.item.office_id.endswith("TCCC"):
                late.apply(item.raw, witnessed_at=wall_ms())
        await watcher.wait_until(has_epoch(1), timeout=5)
        assert watcher.keyring.waiting == 0
    finally:
        await watcher.stop()


async def test_a_node_without_the_bucket_gets_a_clear_error(js) -> None:
    with pytest.raises(errors.NotConnected, match="does not exist yet"):
        await watcher_for(js, MUK, new_directory()).start(timeout=5)
    assert BUCKET == "blo_feeds"


async def test_publishing_an_item_refuses_what_is_not_a_feed_item(js) -> None:
    kv = await open_bucket(js, create=True)
    with pytest.raises(errors.FeedError):
        await publish_item(kv, b"\x93\x01\x02\x03")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_cache_files_give_only_feed_errors(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("cache") / "feeds.json"
    path.write_bytes(data)
    try:
        FeedKeyCache(path).load_into(FeedKeyring.for_identity(MUK, new_directory()), FeedMetrics(CollectorRegistry()))
    except errors.FeedError:
        pass


def test_a_tampered_local_copy_is_reverified_and_refused(tmp_path: Path) -> None:
    d = new_directory()
    issue = FeedOwner(TH_C).create(FEED, ["TH-MUK"], d, now_ms=wall_ms())
    ring = FeedKeyring.for_identity(MUK, d)
    for item in issue.items():
        ring.apply(item, witnessed_at=wall_ms())
    cache = FeedKeyCache(tmp_path / "feeds.json")
    cache.save(ring)
    grant = issue.grant_for("TH-MUK")
    text = cache.path.read_text()
    cache.path.write_text(
        text.replace(base64.b64encode(grant).decode(), base64.b64encode(grant[:-1] + bytes([grant[-1] ^ 1])).decode())
    )
    metrics = FeedMetrics(CollectorRegistry())
    fresh = FeedKeyring.for_identity(MUK, d)
    assert cache.load_into(fresh, metrics) == 1 and fresh.feed_keys == {}
    assert rejected(metrics, "bad_signature") == 1
    cache.path.write_text("{not json")
    with pytest.raises(errors.FeedError, match="unreadable"):
        cache.load_into(fresh)


# -- real nodes on a feed ----------------------------------------------------------------


@dataclass
class Member:
    """One office as its daemon would wire it: directory, keyring feeding the node's feed keys."""

    who: Identity
    directory: Directory
    watcher: FeedKeyWatcher
    node: BusNode
    app: Collector

    @property
    def ring(self) -> FeedKeyring:
        return self.watcher.keyring


def member(js, who: Identity, tmp_path: Path, url: str) -> Member:
    directory = new_directory()
    feed_keys: dict[tuple[str, int], bytes] = {}
    data = tmp_path / who.office_id
    ring = FeedKeyring.for_identity(who, directory, feed_keys=feed_keys)
    watcher = FeedKeyWatcher(
        js, ring, cache=FeedKeyCache(data / "feeds.json"), metrics=FeedMetrics(CollectorRegistry())
    )
    app = Collector()
    node = make_node(who, directory, data, url, app=app, feeds=(FEED,), feed_keys=feed_keys)
    return Member(who, directory, watcher, node, app)


async def start(m: Member) -> None:
    await m.watcher.start(timeout=10)  # keys first, as a node starting offline would have them
    assert m.node.feed_keys is m.ring.feed_keys
    await m.node.start()


async def stop(m: Member) -> None:
    await m.node.close()
    await m.watcher.stop()


def caught_up(ring: FeedKeyring, epoch: int, members: tuple[str, ...]) -> bool:
    """The ring holds the epoch's record and, if it is a member, its key."""
    return ring.current_epoch(FEED) == epoch and (ring.office_id not in members or (FEED, epoch) in ring.feed_keys)


class Centre:
    """The owning centre: its FeedOwner, the bucket, and a node posting to the feed."""

    def __init__(self, js, tmp_path: Path, url: str) -> None:
        self.directory = new_directory()
        self.owner = FeedOwner(TH_C)
        self.js = js
        self.node = make_node(TH_C, self.directory, tmp_path / "centre", url)

    async def issue(self, issue, *, wait_for: list[Member]) -> None:
        """Publish, wait until the online members hold the key, then post under it."""
        kv = await open_bucket(self.js, create=True)
        await publish_issue(kv, issue)
        members = decode_item(issue.record).item.members
        for m in wait_for:
            await m.watcher.wait_until(lambda ring: caught_up(ring, issue.epoch, members), timeout=10)
        self.node.feed_keys[(FEED, issue.epoch)] = issue.epoch_key

    async def post(self, n: int) -> str:
        return await self.node.post(bulletin("TH-TCCC", n), feeds=[FEED])


async def test_removed_member_cannot_open_the_next_epoch_while_the_others_do(
    js, nats_server: NatsServer, tmp_path: Path
) -> None:
    centre = Centre(js, tmp_path, nats_server.url)
    await centre.node.start()
    members = {w.office_id: member(js, w, tmp_path, nats_server.url) for w in (MUK, NKP, SVK)}
    first = centre.owner.create(FEED, list(members), centre.directory, now_ms=wall_ms())
    await centre.issue(first, wait_for=[])
    try:
        for m in members.values():
            await start(m)
        before = await centre.post(1)
        for m in members.values():
            await m.app.wait_for(1, 20)
        second = centre.owner.remove_member(FEED, "LA-SVK", centre.directory, now_ms=wall_ms())
        await centre.issue(second, wait_for=list(members.values()))
        after = await centre.post(2)
        for office in ("TH-MUK", "TH-NKP"):
            await members[office].app.wait_for(2, 20)
            assert members[office].app.ids == [before, after]
            assert members[office].app.got[1].opened_via.ref == 2
        removed = members["LA-SVK"]
        await eventually(
            lambda: bool(removed.node.quarantine.entries(reason="not_addressed_to_us")), 20, "the quarantine entry"
        )
        assert removed.app.ids == [before]
        assert removed.ring.epochs_with_keys(FEED) == [1] and removed.ring.member_feeds() == []
    finally:
        for m in members.values():
            await stop(m)
        await centre.node.close()


async def test_a_member_offline_during_two_rotations_catches_up_on_both_and_the_current_epoch(
    js, nats_server: NatsServer, tmp_path: Path
) -> None:
    centre = Centre(js, tmp_path, nats_server.url)
    await centre.node.start()
    online, away = member(js, MUK, tmp_path, nats_server.url), member(js, NKP, tmp_path, nats_server.url)
    first = centre.owner.create(FEED, ["TH-MUK", "TH-NKP"], centre.directory, now_ms=wall_ms())
    await centre.issue(first, wait_for=[])
    try:
        for m in (online, away):
            await start(m)
        posted = [await centre.post(1)]
        await away.app.wait_for(1, 20)
        await stop(away)  # the link at the border post goes down: watcher and node
        for n in (2, 3):
            rotation = centre.owner.rotate(FEED, centre.directory, now_ms=wall_ms())
            await centre.issue(rotation, wait_for=[online])
            posted.append(await centre.post(n))
        await online.app.wait_for(3, 20)
        # Back online: a fresh process, from the local copy (epoch 1) and then the bucket.
        back = member(js, NKP, tmp_path, nats_server.url)
        assert FeedKeyCache(tmp_path / "TH-NKP" / "feeds.json").read_witnessed()  # the copy it left behind
        await start(back)
        assert back.ring.epochs_with_keys(FEED) == [1, 2, 3]
        posted.append(await centre.post(4))
        await back.app.wait_for(3, 20)
        assert away.app.ids + back.app.ids == posted
        assert [o.opened_via.ref for o in back.app.got] == [2, 3, 3]
        assert back.node.quarantine.counts() == {}
        await stop(back)
    finally:
        await stop(online)
        await centre.node.close()
