"""A feed bulletin that arrives before its epoch key waits in quarantine as retryable
(``feed_key_pending``) and is delivered once the key is in; one whose key can never come
is refused for good."""

from __future__ import annotations

from pathlib import Path

from bus.envelope import FeedRecipient, Sealer
from bus.transport.client import BusClient, ClientConfig
from bus.transport.node import wall_ms
from bus.transport.server import NatsServer
from tests.bus_helpers import Collector, bulletin, eventually, make_node, offices

FEED = "th-border"
KEY = b"e" * 32


async def test_a_feed_bulletin_waits_for_its_epoch_key_then_opens(tmp_path: Path, nats_server: NatsServer) -> None:
    (centre, muk), book = offices("TH-TCCC", "TH-MUK")
    app = Collector()
    member = make_node(muk, book, tmp_path / "muk", nats_server.url, app=app, feeds=(FEED,))
    may_arrive = {2}  # epoch 2's grant is on its way; epoch 3 does not name this office
    member.hooks.key_pending = lambda feed, epoch: feed == FEED and epoch in may_arrive
    await member.start()
    publisher = BusClient(ClientConfig(urls=(nats_server.url,)))
    await publisher.start()
    try:
        assert await publisher.wait_connected(5)
        await eventually(lambda: member.core.streams_ready, 10, "the streams")
        sealer = Sealer(centre)
        early = sealer.seal(bulletin("TH-TCCC", 1), [FeedRecipient(FEED, 2, KEY)], now_ms=wall_ms())
        never = sealer.seal(bulletin("TH-TCCC", 2), [FeedRecipient(FEED, 3, b"n" * 32)], now_ms=wall_ms())
        subject = f"blo.feed.{FEED}.routine.TH-TCCC"
        await publisher.publish(subject, early, "early")
        await publisher.publish(subject, never, "never")
        q = member.quarantine
        await eventually(lambda: q.counts() == {"feed_key_pending": 1, "not_addressed_to_us": 1}, 10, "both held")
        assert app.got == []
        member.feed_keys[(FEED, 2)] = KEY  # the grant arrived
        may_arrive.clear()
        assert await member.retry_quarantine() == 1
        assert app.ids == [bulletin("TH-TCCC", 1).id]
        assert q.counts() == {"not_addressed_to_us": 1}
    finally:
        await publisher.close()
        await member.close()
