"""Whole nodes behind a bad link (bus/testing_net.py's proxy; the proxy itself is
tests/test_link_proxy.py), to a real nats-server: directly, and through the office's leaf
node. Every case is bounded in count and time and stops by itself; the figures (FLASH
latency at 64 kbit/s, drain rate against raw nats-py) are ``make bench``'s
(bench/bench_links.py, docs/LINKS.md), not asserted here: these tests assert order and
completeness."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from bus.testing_net import Link, Outages
from tests.bus_helpers import Collector, bulletin, eventually
from tests.link_helpers import office_net

# -- whole nodes across the link ---------------------------------------------------------


async def test_a_flash_overtakes_a_routine_backlog_on_a_slow_direct_link(tmp_path: Path) -> None:
    """The outbox hands FLASH out first; the pacer keeps what is already on the wire to
    about a quarter second of the link, so the FLASH does not queue behind the backlog.
    Before the pacer it arrived after the whole backlog (four windows of 512 in flight)."""
    link = Link(rate_bps=256_000, delay_s=0.05)  # 32 KB/s: the 120-bulletin backlog takes ~6 s
    async with office_net(tmp_path, link, office="TH-MUK", leaf=False) as net:
        app = Collector()
        sender, receiver = net.office_and_counterpart(tmp_path, app, counterpart="TH-TCCC")
        await receiver.start()
        await sender.start()
        try:
            await sender.post_many([(bulletin("TH-MUK", i, body_bytes=1200), ["TH-TCCC"], []) for i in range(120)])
            await app.wait_for(5, 30)  # the backlog is draining
            flash = bulletin("TH-MUK", 1000, precedence="FLASH")
            await sender.post(flash, offices=["TH-TCCC"])
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
    link = Link(rate_bps=1_000_000, delay_s=0.02, outages=Outages(every_s=3.0, down_s=1.0))
    async with office_net(tmp_path, link, office="TH-MUK", leaf=False) as net:
        app = Collector()
        sender, receiver = net.office_and_counterpart(tmp_path, app, counterpart="TH-TCCC")
        await receiver.start()
        await sender.start()
        try:
            posted = []
            for round_ in range(5):  # posted while the link comes and goes
                batch = [(bulletin("TH-MUK", round_ * 30 + i), ["TH-TCCC"], []) for i in range(30)]
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


async def test_an_office_behind_its_leaf_node_on_a_flapping_link_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """The leaf's outbox stream, sourced by the hub across a link down 1.5 s of every 4 s:
    300 bulletins, each delivered exactly once (the leaf's source resumes from its last
    sequence; receivers drop what they delivered already)."""
    total = 300
    link = Link(rate_bps=2_000_000, delay_s=0.05, outages=Outages(every_s=4.0, down_s=1.5))
    async with office_net(tmp_path, link, office="TH-MUK", leaf=True) as net:
        app = Collector()
        office, centre = net.office_and_counterpart(tmp_path, app, counterpart="TH-TCCC")
        await office.start()
        await centre.start()
        try:
            posted: list[str] = []
            for start in range(0, total, 30):  # posted over several outages
                items = [(bulletin("TH-MUK", i, seed="flap", body_bytes=800), ["TH-TCCC"], []) for i in range(start, start + 30)]
                posted.extend(await office.post_many(items))
                await asyncio.sleep(0.5)
            await app.wait_for(total, 60)
            await eventually(lambda: office.outbox is not None and office.outbox.depth() == 0, 30, "the outbox empty")
            await asyncio.sleep(1.0)  # room for a duplicate to show up
            assert Counter(app.ids) == Counter(posted)
            assert link.stats.cut >= 1
        finally:
            await office.close()
            await centre.close()
