"""Serving consumers by precedence: FLASH work first, even inside one process.

Each precedence has its own durable consumer and its own fetch task, so a FLASH message
is fetched at once however long the ROUTINE backlog. What remains is the hand-over to
the application: before each message, a task waits while any higher precedence has
fetched messages not yet handed over. So once a FLASH message is fetched, at most one
message per lower-precedence task (the one already being handed over) gets ahead of it.
"""

from __future__ import annotations

import asyncio


class PrecedenceGate:
    def __init__(self, levels: int = 4) -> None:
        self._pending = [0] * levels
        self._changed = asyncio.Condition()

    def add(self, rank: int, n: int) -> None:
        """``n`` messages of ``rank`` were fetched and wait for their turn."""
        self._pending[rank] += n

    def _clear_above(self, rank: int) -> bool:
        return not any(self._pending[:rank])

    async def turn(self, rank: int) -> None:
        """Return when no higher precedence (lower rank) has messages waiting."""
        if self._clear_above(rank):
            return
        async with self._changed:
            await self._changed.wait_for(lambda: self._clear_above(rank))

    async def done(self, rank: int, n: int = 1) -> None:
        """``n`` messages of ``rank`` were handed over (or given up)."""
        self._pending[rank] -= n
        async with self._changed:
            self._changed.notify_all()

    def waiting(self, rank: int) -> int:
        return self._pending[rank]
