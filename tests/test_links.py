"""An office behind a bad link, on loopback: the traffic-shaping proxy itself
(bus/testing_net.py), then whole nodes across it to a real nats-server. Every case is
bounded in count and time and stops by itself; the figures (FLASH latency at 64 kbit/s,
drain rate against raw nats-py) are ``make bench``'s (bench/bench_links.py), not asserted
here: these tests assert order and completeness."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from pathlib import Path

import pytest

from bus.testing_net import Line, Link, LinkProxy, Outages
from bus.transport.client import ClientConfig
from bus.transport.server import NatsServer
from tests.bus_helpers import Collector, bulletin, eventually, make_node, offices

# -- the model (pure) --------------------------------------------------------------------


def test_a_line_sends_at_its_rate_and_adds_its_delay() -> None:
    line = Line(8_000 * 8, delay_s=0.3, queue_bytes=16_000)  # 8 KB/s
    assert line.send(8_000, now=0.0) == pytest.approx(1.3)  # 1 s on the line, 0.3 s to arrive
    assert line.send(8_000, now=0.0) == pytest.approx(2.3)  # behind the first
    assert line.admit_at(8_000, now=0.0) == pytest.approx(1.0)  # 16 KB queued: room in 1 s


def test_a_stall_delays_what_waits_and_outages_follow_their_schedule() -> None:
    line = Line(8_000 * 8, delay_s=0.0)
    line.stall(0.0, 5.0)
    assert line.send(800, now=0.0) == pytest.approx(5.1)
    outages = Outages(every_s=30.0, down_s=10.0)
    assert [outages.is_down(t) for t in (0.0, 19.9, 20.0, 29.9, 30.0)] == [False, False, True, True, False]
    assert outages.next_change(5.0) == 20.0 and outages.next_change(25.0) == 30.0


# -- the proxy on loopback ---------------------------------------------------------------


async def _echo_server() -> tuple[asyncio.AbstractServer, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_the_proxy_carries_every_byte_in_order_across_a_slow_far_link() -> None:
    server, port = await _echo_server()
    link = Link(rate_bps=2_000_000, delay_s=0.02)
    try:
        async with LinkProxy(("127.0.0.1", port), link, lifetime_s=30) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            payload = bytes(range(256)) * 400  # 100 KB
            writer.write(payload)
            await writer.drain()
            echoed = await asyncio.wait_for(reader.readexactly(len(payload)), 20)
            assert echoed == payload
            writer.close()
        assert link.stats.bytes_up >= len(payload) and link.stats.bytes_down >= len(payload)
    finally:
        server.close()


async def test_a_dropped_link_cuts_its_connections_and_refuses_new_ones_until_it_is_back() -> None:
    server, port = await _echo_server()
    link = Link(rate_bps=None, delay_s=0.0)
    try:
        async with LinkProxy(("127.0.0.1", port), link, lifetime_s=30) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
            link.drop(1.0)
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await asyncio.wait_for(reader.readexactly(1), 5)  # cut
            refused_before = link.stats.refused
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                r2, w2 = await asyncio.open_connection("127.0.0.1", proxy.port)
                w2.write(b"x")
                await asyncio.wait_for(r2.readexactly(1), 5)
            assert link.stats.refused > refused_before and link.stats.cut >= 1
            await asyncio.sleep(1.1)
            r3, w3 = await asyncio.open_connection("127.0.0.1", proxy.port)  # back
            w3.write(b"again")
            assert await asyncio.wait_for(r3.readexactly(5), 5) == b"again"
            w3.close()
    finally:
        server.close()


async def test_the_proxy_forwards_to_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback only"):
        LinkProxy(("192.0.2.1", 4222), Link())
    assert socket.gethostbyname("localhost") == "127.0.0.1"


# -- whole nodes across the link ---------------------------------------------------------


def _direct(proxy: LinkProxy) -> ClientConfig:
    return ClientConfig(urls=(proxy.url,), publish_timeout_s=20.0, reconnect_wait_s=0.2, connect_timeout_s=5.0)


async def test_a_flash_overtakes_a_routine_backlog_on_a_slow_direct_link(tmp_path: Path) -> None:
    """The outbox hands FLASH out first; the pacer keeps what is already on the wire to
    about a quarter second of the link, so the FLASH does not queue behind the backlog.
    Before the pacer it arrived after the whole backlog (four windows of 512 in flight)."""
    (muk, svk), book = offices("TH-MUK", "LA-SVK")
    app = Collector()
    with NatsServer(tmp_path / "nats") as server:
        port = int(server.url.rsplit(":", 1)[1])
        link = Link(rate_bps=256_000, delay_s=0.05)  # 32 KB/s: the 120-bulletin backlog takes ~6 s
        async with LinkProxy(("127.0.0.1", port), link, lifetime_s=120) as proxy:
            sender = make_node(muk, book, tmp_path / "muk", proxy.url)
            sender.client_config = _direct(proxy)
            receiver = make_node(svk, book, tmp_path / "svk", server.url, app=app)
            await receiver.start()
            await sender.start()
            try:
                await sender.post_many([(bulletin("TH-MUK", i, body_bytes=1200), ["LA-SVK"], []) for i in range(120)])
                await app.wait_for(5, 30)  # the backlog is draining
                flash = bulletin("TH-MUK", 1000, precedence="FLASH")
                await sender.post(flash, offices=["LA-SVK"])
                await app.wait_for(121, 60)
                position = app.ids.index(flash.id)
                # It came in right behind what was on the wire when it was posted, far ahead
                # of the backlog's end (without the pacer: last, at 120).
                assert position < 40, f"the FLASH arrived {position}th of 121"
            finally:
                await sender.close()
                await receiver.close()


async def test_a_link_that_drops_every_few_seconds_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """A scaled-down 'down 10 s of every 30': down 1 s of every 3, over 150 bulletins."""
    (muk, svk), book = offices("TH-MUK", "LA-SVK")
    app = Collector()
    with NatsServer(tmp_path / "nats") as server:
        port = int(server.url.rsplit(":", 1)[1])
        link = Link(rate_bps=1_000_000, delay_s=0.02, outages=Outages(every_s=3.0, down_s=1.0))
        async with LinkProxy(("127.0.0.1", port), link, lifetime_s=120) as proxy:
            sender = make_node(muk, book, tmp_path / "muk", proxy.url)
            sender.client_config = _direct(proxy)
            receiver = make_node(svk, book, tmp_path / "svk", server.url, app=app)
            await receiver.start()
            await sender.start()
            try:
                posted = []
                for round_ in range(5):  # posted while the link comes and goes
                    batch = [(bulletin("TH-MUK", round_ * 30 + i), ["LA-SVK"], []) for i in range(30)]
                    posted += await sender.post_many(batch)
                    await asyncio.sleep(0.7)
                await app.wait_for(150, 90)
                await eventually(lambda: sender.outbox is not None and sender.outbox.depth() == 0, 60, "the outbox empty")
                await asyncio.sleep(1.0)  # anything duplicated would arrive by now
                assert Counter(app.ids) == Counter(posted)  # each exactly once
                assert link.stats.cut >= 1  # the link did drop under the node
            finally:
                await sender.close()
                await receiver.close()
