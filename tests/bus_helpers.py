"""Builders for the bus tests: a directory stand-in, nodes on a real server, a collecting app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bus.bulletin import Bulletin
from bus.envelope import Opened
from bus.ids import new_bulletin_id
from bus.keys import Identity, PeerBook, PeerKeys
from bus.testing import DeterministicRng
from bus.transport.client import ClientConfig
from bus.transport.metrics import BusMetrics
from bus.transport.node import BusNode, NodeHooks, NodeOptions
from tests.helpers import NOW, identity


class Book(PeerBook):
    """PeerBook plus the two things the node wants from the real directory:
    ``recipient_keys`` and change listeners."""

    def __init__(self, peers: list[PeerKeys] | tuple[PeerKeys, ...] = ()) -> None:
        self._by_office: dict[str, PeerKeys] = {}
        self._listeners: list[Callable[[], None]] = []
        super().__init__(peers)

    def add(self, peer: PeerKeys) -> None:
        super().add(peer)
        self._by_office[peer.office_id] = peer
        for listener in getattr(self, "_listeners", []):
            listener()

    def recipient_keys(self, office_id: str, now_ms: int) -> PeerKeys | None:
        return self._by_office.get(office_id)

    def add_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)


def bulletin(sender: str, n: int, *, precedence: str = "ROUTINE", body_bytes: int = 200, seed: str = "b") -> Bulletin:
    """The n-th distinct bulletin from ``sender`` (ids sort by n)."""
    return Bulletin.from_dict(
        {
            "id": new_bulletin_id(NOW + n, DeterministicRng(f"{seed}:{sender}:{n}")),
            "from": sender,
            "precedence": precedence,
            "kind": "alert",
            "tlp": "AMBER",
            "releasable_to": ["TH", "LA"],
            "grading": "B2",
            "title": f"bulletin {n}",
            "body": "x" * body_bytes,
            "created": NOW,
        }
    )


class Collector:
    """An application callback that records every bulletin handed over, in order."""

    def __init__(self) -> None:
        self.got: list[Opened] = []
        self.changed = asyncio.Event()

    async def __call__(self, opened: Opened) -> None:
        self.got.append(opened)
        self.changed.set()

    @property
    def ids(self) -> list[str]:
        return [o.bulletin.id for o in self.got]

    async def wait_for(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.got) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"only {len(self.got)} of {n} bulletins arrived in {timeout} s")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(left, 0.5))
            except TimeoutError:
                pass


def make_node(
    who: Identity,
    book: Book,
    data_dir: Path,
    url: str | None,
    *,
    app: Any = None,
    feeds: tuple[str, ...] = (),
    feed_keys: dict[tuple[str, int], bytes] | None = None,
    on_escalation: Any = None,
    **options: Any,
) -> BusNode:
    config = ClientConfig(urls=(url,), publish_timeout_s=2.0, reconnect_wait_s=0.2) if url else None
    opts = NodeOptions(feeds=feeds, **{"fetch_wait_s": 0.5, "retry_delay_s": 0.2, **options})
    return BusNode(
        who,
        book,
        data_dir,
        client_config=config,
        feed_keys=feed_keys,
        options=opts,
        hooks=NodeHooks(on_bulletin=app, on_escalation=on_escalation),
        metrics=BusMetrics.fresh(),
    )


def offices(*ids: str) -> tuple[list[Identity], Book]:
    who = [identity(i) for i in ids]
    return who, Book([w.public() for w in who])


async def eventually(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
