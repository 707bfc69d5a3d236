"""The live event stream (office_node/live.py): a browser tab closing mid-stream ends
its stream cleanly, with nothing printed and nothing left subscribed."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from aiohttp import web

from office_node import live
from office_node.live import LiveHub


async def test_a_closed_tab_ends_its_stream_without_an_error(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setattr(live, "KEEPALIVE_S", 0.05)  # the first write after the tab closed comes fast
    hub = LiveHub()
    loop_errors: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: loop_errors.append(context))
    app = web.Application()
    app.router.add_get("/events", hub.stream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    caplog.set_level(logging.DEBUG)
    try:
        for _ in range(3):
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/events") as response:
                    assert await response.content.readline() == b": connected\n"
                    hub.publish("bulletin", {"id": "x"})
                    lines = [await response.content.readline() for _ in range(3)]
                    assert any(line.startswith(b"id: ") for line in lines), lines
            # The tab is closed: the server notices at its next write.
            for _ in range(100):
                if hub.subscriber_count == 0:
                    break
                await asyncio.sleep(0.05)
            assert hub.subscriber_count == 0
        await asyncio.sleep(0.2)
    finally:
        await runner.cleanup()
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    problems += [str(c.get("exception") or c.get("message")) for c in loop_errors]
    assert problems == []
