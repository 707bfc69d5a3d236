"""Serving consumers by precedence: FLASH work first, even inside one process.

Each precedence has its own consumer and its own fetch task, so a FLASH message
is fetched at once however long the ROUTINE backlog. What remains is the hand-over to
the application: before each message, a task waits while any higher precedence has
fetched messages not yet handed over. So once a FLASH message is fetched, at most one
message per lower-precedence task (the one already being handed over) gets ahead of it.

"Fetched" starts as early as the process can see it: each consumer registers a probe
(``watch``) saying how many messages reached it but are not yet counted with ``add``
(in the client's queues, or in a fetch still collecting its batch). A positive probe
holds lower precedences back too, until that consumer's fetch returns (``fetched``)
and at most ``PROBE_WAIT_S``: a probe can see a status reply that no hand-over follows.

Runs once per message handed over, so the common case (nothing of higher precedence
waiting, nobody parked) costs a few list operations and never touches the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

#: How long a task waits on a probe alone before it looks again.
PROBE_WAIT_S = 0.05

Probe = Callable[[], int]


class PrecedenceGate:
    def __init__(self, levels: int = 4) -> None:
        self._pending = [0] * levels
        self._probes: list[list[Probe]] = [[] for _ in range(levels)]
        self._parked: list[asyncio.Future[None]] = []

    def add(self, rank: int, n: int) -> None:
        """``n`` messages of ``rank`` were fetched and wait for their turn."""
        self._pending[rank] += n
        self._wake()  # parked tasks may have been waiting on a probe: they look again

    def watch(self, rank: int, probe: Probe) -> None:
        """Count what ``probe()`` reports as arriving at ``rank`` (until ``unwatch``)."""
        self._probes[rank].append(probe)

    def fetched(self) -> None:
        """A watched consumer's fetch returned: what its probe saw is counted (``add``) or
        was no message at all, so tasks waiting on probes look again."""
        self._wake()

    def unwatch(self, rank: int, probe: Probe) -> None:
        with contextlib.suppress(ValueError):
            self._probes[rank].remove(probe)
        self._wake()

    def _clear_above(self, rank: int) -> bool:
        return not any(self._pending[:rank])

    def _arriving_above(self, rank: int) -> bool:
        for probes in self._probes[:rank]:  # loops, not a generator: this runs per message
            for probe in probes:
                if probe():
                    return True
        return False

    async def turn(self, rank: int) -> None:
        """Return when no higher precedence (lower rank) has messages waiting."""
        probe_deadline: float | None = None
        while True:
            if not self._clear_above(rank):
                await self._park(None)
            elif self._arriving_above(rank):
                now = asyncio.get_running_loop().time()
                if probe_deadline is None:
                    probe_deadline = now + PROBE_WAIT_S
                elif now >= probe_deadline:
                    return  # what the probe saw did not turn into messages in time: go on
                await self._park(probe_deadline - now)
            else:
                return

    async def _park(self, timeout: float | None) -> None:
        parked = asyncio.get_running_loop().create_future()
        self._parked.append(parked)
        if timeout is None:
            await parked
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(parked, timeout)

    def done(self, rank: int, n: int = 1) -> None:
        """``n`` messages of ``rank`` were handed over (or given up)."""
        self._pending[rank] -= n
        self._wake()

    def _wake(self) -> None:
        if self._parked:  # wake every parked task; each checks its own condition again
            parked, self._parked = self._parked, []
            for fut in parked:
                if not fut.done():
                    fut.set_result(None)

    def waiting(self, rank: int) -> int:
        return self._pending[rank]
