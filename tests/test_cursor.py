"""A node reads its inbox, feeds and receipts through consumers the server keeps only while
they are read, and keeps where it reached itself (bus/transport/cursor.py,
schemas/SUBJECTS.md "Consumers of one node"): a consumer lost on the server (expired
while the link was down, a hub restart, its one server gone) is made again from the
node's cursor, losing nothing, handing nothing over twice, and not reading the stream
again from the start."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus.transport import subjects as sj
from bus.transport.client import BusClient, ClientConfig
from bus.transport.cursor import Cursor, CursorStore
from bus.transport.embedded import write_config
from bus.transport.node import BusNode
from bus.transport.outbox import connect_sqlite
from bus.transport.server import NatsServer
from tests.bus_helpers import Collector, bulletin, eventually, make_node, offices

pytestmark = pytest.mark.timeout(90)

FEED, KEY = "mekong-drugs", b"k" * 32


# -- the pure cursor -----------------------------------------------------------------------


def test_the_restart_point_is_the_newest_message_when_all_are_settled() -> None:
    c = Cursor()
    assert c.delivered([(1, 100, True), (2, 200, True), (3, 300, True)]) and c.restart_ns == 300


def test_an_unsettled_message_holds_the_restart_point_until_it_comes_again_settled() -> None:
    c = Cursor()
    c.delivered([(1, 100, True), (2, 200, False), (3, 300, True)])
    assert c.restart_ns == 200
    c.delivered([(4, 400, True)])
    assert c.restart_ns == 200  # still open: a consumer made now must bring it again
    c.delivered([(2, 200, True)])  # redelivered and settled
    assert c.restart_ns == 400


def test_a_consumer_made_afresh_forgets_what_was_open_and_starts_at_the_cursor() -> None:
    c = Cursor(250)
    c.delivered([(9, 250, False)])
    c.recreated()
    assert c.restart_ns == 250 and not c.delivered([])


@given(
    st.lists(
        st.lists(st.tuples(st.integers(1, 60), st.booleans()), max_size=12),
        max_size=12,
    )
)
def test_the_restart_point_never_passes_a_message_not_yet_settled(batches: list[list[tuple[int, bool]]]) -> None:
    """Stored times rise with the sequence; whatever the batches and their outcomes, a
    consumer made at the restart point brings again every message delivered and not
    settled since."""
    c = Cursor()
    open_: set[int] = set()
    for batch in batches:
        c.delivered([(seq, seq * 10, settled) for seq, settled in batch])
        for seq, settled in batch:
            (open_.discard if settled else open_.add)(seq)
        if open_:
            assert c.restart_ns is not None and c.restart_ns <= min(open_) * 10


def test_restart_points_are_kept_by_consumer_name(tmp_path: Path) -> None:
    store = CursorStore(connect_sqlite(tmp_path / "seen.db"))
    store.put("feed-a", 5)
    store.put("feed-a", 7)
    store.put("feed-b", 1)
    assert store.get("feed-a") == 7 and store.get("feed-b") == 1 and store.get("feed-c") is None
    store.forget("feed-a")
    assert store.get("feed-a") is None


# -- over a real nats-server ---------------------------------------------------------------


def _routine(office: str) -> sj.ConsumerSpec:
    return next(s for s in sj.feed_consumers(office, FEED) if s.rank == sj.precedence_rank("ROUTINE"))


async def _delivered_by(url: str, spec: sj.ConsumerSpec) -> int:
    """How many messages the consumer now on the server has delivered since it was made."""
    client = BusClient(ClientConfig(urls=(url,)))
    await client.start()
    try:
        assert await client.wait_connected(10)
        info = await client.jetstream().consumer_info(spec.stream, spec.durable)
        assert info.config.durable_name is None and info.config.mem_storage and info.config.num_replicas in (None, 1)
        return info.delivered.consumer_seq
    finally:
        await client.close()


async def _drop_consumers(url: str, office: str) -> None:
    client = BusClient(ClientConfig(urls=(url,)))
    await client.start()
    try:
        assert await client.wait_connected(10)
        for spec in [*sj.node_consumers(office), *sj.feed_consumers(office, FEED), sj.receipts_consumer_spec(office)]:
            await client.delete_consumer(spec)
    finally:
        await client.close()


def _pair(tmp_path: Path, url: str) -> tuple[BusNode, BusNode, Collector]:
    """TH-TCCC, which posts to the feed and to LA-SVK; LA-SVK, a member; LA-SVK's application."""
    (tccc, svk), book = offices("TH-TCCC", "LA-SVK")
    app = Collector()
    sender = make_node(tccc, book, tmp_path / "tccc", url, feed_keys={(FEED, 1): KEY})
    member = make_node(svk, book, tmp_path / "svk", url, app=app, feeds=(FEED,), feed_keys={(FEED, 1): KEY})
    return sender, member, app


async def _post(sender, first: int, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    """``n`` bulletins to the feed, and every fifth to LA-SVK's inbox instead."""
    posted = []
    for i in range(first, first + n):
        where = {"offices": ["LA-SVK"]} if i % 5 == 0 else {"feeds": [FEED]}
        posted.append((await sender.submit(bulletin("TH-TCCC", i), **where)).bulletin.id)
    return posted


async def test_consumers_deleted_on_the_server_are_made_again_from_the_cursors_losing_and_repeating_nothing(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    sender, member, app = _pair(tmp_path, nats_server.url)
    await sender.start()
    await member.start()
    try:
        posted = await _post(sender, 0, 30)
        await app.wait_for(30, 30)
        for office in ("LA-SVK", "TH-TCCC"):  # expired, or their server lost
            await _drop_consumers(nats_server.url, office)
        posted += await _post(sender, 30, 20)
        await app.wait_for(50, 30)
        await asyncio.sleep(0.5)
        assert Counter(app.ids) == Counter(posted)  # each once, none lost
        # made again at the cursor: it brought the 16 new ones (and the last one settled,
        # dropped by the dedupe), not the feed from its start
        assert await _delivered_by(nats_server.url, _routine("LA-SVK")) <= 17
        # and the sender's receipts consumer, dropped too, brought the new receipts
        await eventually(lambda: sender.status(posted[-5]).recipients["LA-SVK"].state == "delivered", 10, "a receipt")
    finally:
        await sender.close()
        await member.close()


async def test_a_hub_restart_loses_the_consumers_and_the_nodes_make_them_again_from_their_cursors(
    tmp_path: Path,
) -> None:
    server = NatsServer(tmp_path / "nats", config_file=write_config(tmp_path / "nats.conf", sync_always=True)).start()
    sender, member, app = _pair(tmp_path, server.url)
    await sender.start()
    await member.start()
    try:
        posted = await _post(sender, 0, 10)
        await app.wait_for(10, 30)
        server.stop()  # consumers held in memory are gone with it; the streams are on disk
        server.start()
        await eventually(lambda: sender.connected and member.connected, 30, "both back")
        posted += await _post(sender, 10, 10)
        await app.wait_for(20, 60)
        await asyncio.sleep(0.5)
        assert Counter(app.ids) == Counter(posted)
        assert await _delivered_by(server.url, _routine("LA-SVK")) <= 9
    finally:
        await sender.close()
        await member.close()
        server.stop()
