"""A centre node's feeds (office_node/feeds.py) without a bus link: an ungranted member
holds nothing up and is granted once an inbox key appears for it, the centre's own records
are witnessed by its own clock, and old epoch keys are erased from its state."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from bus.directory import Change, Directory, centre_self_record
from bus.errors import RecipientKeyInvalid
from bus.feeds import FeedOwner, decode_item
from bus.keys import PeerKeys
from bus.testing import DeterministicRng
from bus.timing import EPOCH_KEY_KEPT_MS
from bus.transport.kv_feeds import FeedMetrics
from office_node.feeds import NodeFeeds
from tests.bus_helpers import make_node
from tests.feed_helpers import ANCHORS, FEED, HOUR, LA_C, MUK, NKP, SVK, TH_C, THK, YEAR, apply_inbox_keys, enrol
from tests.helpers import NOW


class SwitchedOff(Directory):
    """The verified directory, in which the offices in ``offline`` have no usable inbox key
    now (switched off for longer than an inbox key lives)."""

    def __init__(self) -> None:
        super().__init__(ANCHORS)
        self.offline: set[str] = set()
        for c in (TH_C, LA_C):
            self.apply(centre_self_record(c, name="centre", now_ms=NOW - HOUR, valid_until=NOW + YEAR), witnessed_at=NOW)
        for office, centre in ((MUK, TH_C), (NKP, TH_C), (SVK, LA_C), (THK, LA_C)):
            self.apply(enrol(office, centre), witnessed_at=NOW)
        apply_inbox_keys(self)

    def recipient_keys(self, office_id: str, now_ms: int) -> PeerKeys:
        if office_id in self.offline:
            raise RecipientKeyInvalid(f"cannot seal to {office_id}: its inbox key expired")
        return super().recipient_keys(office_id, now_ms)


def centre_feeds(tmp_path: Path, directory: Directory, clock: list[int]) -> NodeFeeds:
    for sub in ("keys", "data"):
        (tmp_path / sub).mkdir(exist_ok=True)
    feeds = NodeFeeds(
        TH_C, directory, make_node(TH_C, directory, tmp_path / "bus", None),
        keys_dir=tmp_path / "keys", data_dir=tmp_path / "data", is_centre=True,
        metrics=FeedMetrics(CollectorRegistry()), clock=lambda: clock[0], rng=DeterministicRng("node feeds"),
    )  # fmt: skip
    feeds.load()
    return feeds


def _view(feeds: NodeFeeds) -> dict:
    return next(f for f in feeds.view() if f["name"] == FEED)


async def test_an_offline_member_is_granted_when_its_inbox_key_appears(tmp_path: Path) -> None:
    d = SwitchedOff()
    clock = [NOW]
    feeds = centre_feeds(tmp_path, d, clock)
    await feeds.create(FEED, ["TH-MUK", "TH-NKP", "LA-SVK"], writers=["TH-MUK"])
    d.offline.add("TH-NKP")
    clock[0] += HOUR
    issue = await feeds.change_members(FEED, remove=["LA-SVK"])
    assert issue.epoch == 2 and issue.ungranted == ("TH-NKP",) and [m for m, _ in issue.grants] == ["TH-MUK"]
    assert _view(feeds)["ungranted"] == ["TH-NKP"] and _view(feeds)["writers"] == ["TH-MUK"]
    # The centre took its own record in (witnessed when it signed it) and seals under it.
    assert feeds.keyring.witnessed_at(FEED, 2) == decode_item(issue.record).signed_at == clock[0]
    assert feeds.post_epoch(FEED) == 2
    # A directory change about another office, or TH-NKP still without a key, grants nothing.
    feeds._directory_changed(Change("inbox_key", "TH-MUK", MUK.box.kid, d.record("TH-MUK")))
    feeds._directory_changed(Change("inbox_key", "TH-NKP", NKP.box.kid, d.record("TH-NKP")))
    assert feeds.owner is not None and feeds.owner.ungranted(FEED) == ("TH-NKP",)
    d.offline.clear()  # back online: the directory helper reports its new inbox key
    feeds._directory_changed(Change("inbox_key", "TH-NKP", NKP.box.kid, d.record("TH-NKP")))
    assert feeds.owner.ungranted(FEED) == () and _view(feeds)["ungranted"] == []
    assert _view(feeds)["unpublished"] is True  # its grant goes out with the link


async def test_a_centre_erases_old_epoch_keys_from_its_bus_and_its_state(tmp_path: Path) -> None:
    d = SwitchedOff()
    clock = [NOW]
    feeds = centre_feeds(tmp_path, d, clock)
    first = await feeds.create(FEED, ["TH-MUK"])
    clock[0] += HOUR
    second = await feeds.rotate(FEED)
    assert feeds.bus.feed_keys == {(FEED, 1): first.epoch_key, (FEED, 2): second.epoch_key}
    clock[0] += EPOCH_KEY_KEPT_MS - 1
    assert feeds.erase_expired() == []
    clock[0] += 1
    assert feeds.erase_expired() == [(FEED, 1)]
    assert feeds.bus.feed_keys == {(FEED, 2): second.epoch_key}
    state = FeedOwner.from_bytes((tmp_path / "keys" / "feeds.state").read_bytes(), TH_C)
    assert state.epoch_keys() == {(FEED, 2): second.epoch_key} and len(state.record_items(FEED)) == 2
    # A restart loads the erased state: the old key stays gone.
    again = centre_feeds(tmp_path, d, clock)
    assert again.bus.feed_keys == {(FEED, 2): second.epoch_key} and again.post_epoch(FEED) == 2
