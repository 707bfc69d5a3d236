"""The traffic-shaping proxy of bus/testing_net.py on its own: the pure line model on a
made-up clock (exact), and the asyncio proxy on loopback (bytes, order and counts; the
only timing checks are lower bounds, which load can never make fail)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus.testing_net import PACKET, Line, Link, LinkProxy, Outages

pytestmark = pytest.mark.timeout(30)


# -- the pure model ----------------------------------------------------------------------


def test_line_delivers_back_to_back_packets_at_the_rate_plus_the_delay() -> None:
    line = Line(8000 * 8, delay_s=0.3, queue_bytes=64 * 1024)  # 8,000 bytes a second
    arrivals = [line.send(1000, now=0.0) for _ in range(8)]
    assert arrivals == pytest.approx([0.3 + 0.125 * (i + 1) for i in range(8)])


def test_line_admits_only_what_fits_in_its_queue() -> None:
    line = Line(8000 * 8, queue_bytes=4000)
    for _ in range(4):
        line.send(1000, now=0.0)
    assert line.backlog(0.0) == pytest.approx(4000)
    # One more packet fits once one has left: 1,000 bytes at 8,000 B/s.
    assert line.admit_at(1000, now=0.0) == pytest.approx(0.125)
    assert line.admit_at(1000, now=0.5) == 0.5  # all sent by then


def test_a_stall_delays_what_waits_and_what_comes_next() -> None:
    line = Line(8000 * 8, delay_s=0.1)
    line.stall(now=0.0, seconds=2.0)
    assert line.send(800, now=1.0) == pytest.approx(2.0 + 0.1 + 0.1)
    line.clear()
    assert line.send(800, now=3.0) == pytest.approx(3.0 + 0.1 + 0.1)


def test_an_unlimited_line_only_delays() -> None:
    line = Line(None, delay_s=0.25)
    assert line.admit_at(10**9, now=5.0) == 5.0
    assert line.send(10**9, now=5.0) == 5.25


@pytest.mark.parametrize(("rate", "delay", "queue"), [(0, 0.0, PACKET), (-1, 0.0, PACKET), (None, -1.0, PACKET), (None, 0.0, 10)])
def test_line_refuses_a_meaningless_shape(rate: float | None, delay: float, queue: int) -> None:
    with pytest.raises(ValueError):
        Line(rate, delay, queue)


@given(st.floats(0, 10_000, allow_nan=False))
def test_outages_are_down_for_the_last_part_of_each_period(t: float) -> None:
    out = Outages(every_s=6.0, down_s=2.0)
    assert out.is_down(t) == (t % 6.0 >= 4.0)
    change = out.next_change(t)
    assert change > t
    assert out.is_down(change + 1e-6) != out.is_down(t) or change - t == pytest.approx(6.0)


def test_outages_refuse_a_link_that_is_never_up() -> None:
    with pytest.raises(ValueError):
        Outages(every_s=5.0, down_s=5.0)


# -- the proxy on loopback ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """A loopback server that sends back what it reads, until the client ends."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


async def round_trip(port: int, payload: bytes, *, chunk: int = 4096) -> bytes:
    """Send ``payload`` through the proxy on ``port`` and read everything echoed back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        for i in range(0, len(payload), chunk):
            writer.write(payload[i : i + chunk])
            await writer.drain()
        writer.write_eof()

    sending = asyncio.create_task(send())
    got = await reader.read(-1)
    await sending
    writer.close()
    return got


async def test_every_byte_comes_back_in_order_across_a_far_link() -> None:
    payload = os.urandom(300_000)
    link = Link(delay_s=0.05)
    async with echo_server() as port, LinkProxy(("127.0.0.1", port), link) as proxy:
        got = await asyncio.wait_for(round_trip(proxy.port, payload), 20)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    assert link.stats.bytes_up == link.stats.bytes_down == len(payload)
    assert link.stats.connections == 1 and link.stats.cut == 0


async def test_a_slow_link_holds_its_rate_and_keeps_every_byte_in_order() -> None:
    # 40 KB each way at 320 kbit/s (40,000 B/s): the echo cannot be back in under a second
    # (the queue lets at most 16 KiB through early); an upper bound would be a timing test.
    payload = os.urandom(40_000)
    link = Link(rate_bps=320_000, delay_s=0.02)
    async with echo_server() as port, LinkProxy(("127.0.0.1", port), link) as proxy:
        loop = asyncio.get_running_loop()
        started = loop.time()
        got = await asyncio.wait_for(round_trip(proxy.port, payload, chunk=1000), 20)
        took = loop.time() - started
    assert got == payload
    assert took >= (len(payload) - link.queue_bytes) / 40_000
    assert link.stats.bytes_down == len(payload)


async def test_connections_share_one_line() -> None:
    payload = os.urandom(20_000)
    link = Link(rate_bps=400_000)
    async with echo_server() as port, LinkProxy(("127.0.0.1", port), link) as proxy:
        loop = asyncio.get_running_loop()
        started = loop.time()
        got = await asyncio.wait_for(asyncio.gather(*(round_trip(proxy.port, payload) for _ in range(3))), 20)
        took = loop.time() - started
    assert got == [payload] * 3
    assert link.stats.connections == 3
    # 60,000 bytes up through one 50,000 B/s line, less what its queue took early.
    assert took >= (3 * len(payload) - link.queue_bytes) / 50_000


async def test_a_stall_holds_the_bytes_and_delivers_them_all_after() -> None:
    link = Link(rate_bps=8_000_000)
    async with echo_server() as port, LinkProxy(("127.0.0.1", port), link) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        loop = asyncio.get_running_loop()
        link.stall(1.0)
        started = loop.time()
        writer.write(b"held during the stall")
        got = await asyncio.wait_for(reader.readexactly(21), 10)
        took = loop.time() - started
        writer.close()
    assert got == b"held during the stall"
    assert took >= 0.9
    assert link.stats.cut == 0


async def test_a_drop_cuts_the_connection_and_refuses_new_ones_until_the_link_is_back() -> None:
    link = Link()
    async with echo_server() as port, LinkProxy(("127.0.0.1", port), link) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
        link.drop(1.0)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 5)
        writer.close()
        # While down: accepted by the kernel, then reset at once.
        r2, w2 = await asyncio.open_connection("127.0.0.1", proxy.port)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(r2.readexactly(1), 5)
        w2.close()
        await asyncio.sleep(1.1)
        got = await asyncio.wait_for(round_trip(proxy.port, b"back again"), 5)
    assert got == b"back again"
    assert link.stats.cut == 1 and link.stats.refused == 1 and link.stats.connections == 2


async def test_scheduled_outages_cut_the_link_each_period() -> None:
    link = Link(outages=Outages(every_s=1.0, down_s=0.4))
    async with echo_server() as port, LinkProxy(("127.0.0.1", port), link) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 5)  # cut when the first outage begins
        writer.close()
        await asyncio.sleep(0.5)  # the link is up again for 0.6 s of each second
        for _ in range(20):
            if not link.is_down(link.now()):
                break
            await asyncio.sleep(0.05)
        got = await asyncio.wait_for(round_trip(proxy.port, b"between outages"), 5)
    assert got == b"between outages"
    assert link.stats.cut >= 1


async def test_the_proxy_holds_at_most_max_connections() -> None:
    link = Link()
    async with echo_server() as port, LinkProxy(("127.0.0.1", port), link, max_connections=2) as proxy:
        held = [await asyncio.open_connection("127.0.0.1", proxy.port) for _ in range(2)]
        for r, w in held:  # both are through
            w.write(b"x")
            assert await asyncio.wait_for(r.readexactly(1), 5) == b"x"
        r3, w3 = await asyncio.open_connection("127.0.0.1", proxy.port)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(r3.readexactly(1), 5)
        for _, w in [*held, (r3, w3)]:
            w.close()
    assert link.stats.connections == 2 and link.stats.refused == 1


async def test_the_proxy_closes_itself_after_its_lifetime() -> None:
    link = Link()
    async with echo_server() as port:
        proxy = await LinkProxy(("127.0.0.1", port), link, lifetime_s=0.3).start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await asyncio.wait_for(reader.readexactly(1), 5)
            writer.close()
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", proxy.port)
        finally:
            await proxy.close()


def test_the_proxy_forwards_to_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        LinkProxy(("10.0.0.1", 4222), Link())
