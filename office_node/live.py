"""The live stream: server-sent events pushing new bulletins and state changes.

Server-sent events rather than a WebSocket: the flow is one-way (node to page), SSE
reconnects by itself in every browser, and it passes through proxies as plain HTTP.
Each subscriber gets a bounded queue; a subscriber too slow to keep up is dropped
(its browser reconnects and reloads the list) rather than letting memory grow.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

QUEUE_LIMIT = 256
KEEPALIVE_S = 15.0


@dataclass(frozen=True)
class Event:
    id: int
    kind: str  # "bulletin", "state", "receipt", "escalation", "hit", ...
    data: dict[str, Any]

    def encode(self) -> bytes:
        payload = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"))
        return f"id: {self.id}\nevent: {self.kind}\ndata: {payload}\n\n".encode()


class LiveHub:
    """Fans events out to every connected subscriber."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[Event | None]] = set()
        self._ids = itertools.count(1)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        event = Event(next(self._ids), kind, data)
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._end(queue)

    async def subscribe(self) -> AsyncIterator[Event]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers.add(queue)
        try:
            while True:
                event = await queue.get()
                if event is None:
                    return
                yield event
        finally:
            self._subscribers.discard(queue)

    def close(self) -> None:
        """End every subscription (shutdown)."""
        for queue in list(self._subscribers):
            self._end(queue)

    def _end(self, queue: asyncio.Queue[Event | None]) -> None:
        # Make room for the end-of-stream marker: a dropped subscriber loses its backlog
        # anyway (the page reloads the list when it reconnects).
        self._subscribers.discard(queue)
        while queue.full():
            queue.get_nowait()
        queue.put_nowait(None)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler body for ``GET /api/events``."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        # The queue is read directly, not through ``subscribe()``: cancelling a pending
        # ``anext()`` of an async generator and closing it at once raised "aclose():
        # asynchronous generator is already running" whenever a tab closed. It listens
        # before the answer starts, so a client that has the answer misses no event.
        queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers.add(queue)
        try:
            await response.prepare(request)
            await response.write(b": connected\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if event is None:
                    break
                await response.write(event.encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the tab closed (or the node is stopping): nothing to report
        finally:
            self._subscribers.discard(queue)
        return response
