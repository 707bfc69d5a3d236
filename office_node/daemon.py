"""Serving a node: ``OfficeNode`` plus its HTTP server, started and stopped together.

``Daemon`` is what ``blo node run`` runs until SIGTERM or Ctrl-C, what ``blo demo`` runs
six of, and what the tests run on free loopback ports. Shutdown order matters: stop
taking HTTP requests, give the outbox a few seconds to drain while the link is up
(what does not leave stays queued on disk for the next start), then stop the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bus import Identity
from bus.errors import ConfigError
from office_node.api import build_app
from office_node.config import NodeConfig
from office_node.home import NodeHome, load_home_identity
from office_node.node import OfficeNode

log = logging.getLogger("blo.daemon")

#: What asyncio logs when a TLS server closes the link on us (a removed NATS user, a
#: restart): noise with no cause in it; the client says what happened in its own words.
_ASYNCIO_NOISE = ("returning true from eof_received() has no effect when using ssl",)


def setup_logging(level: str) -> None:
    """The node's log: one line per record to stderr, at ``level``, without asyncio's
    noise (``_ASYNCIO_NOISE``)."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncio").addFilter(
        lambda record: not any(noise in record.getMessage() for noise in _ASYNCIO_NOISE)
    )
DRAIN_S = 5.0


class Daemon:
    def __init__(
        self,
        node: OfficeNode,
        *,
        host: str | None = None,
        port: int | None = None,
        extra_routes: Callable[[web.Application], None] | None = None,
    ) -> None:
        self.node = node
        self.host = host if host is not None else node.config.http.host
        self.port = port if port is not None else node.config.http.port
        self._extra_routes = extra_routes
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    async def start(self) -> str:
        """Start the node and its HTTP server; returns the base URL."""
        await self.node.start()
        app = build_app(self.node, extra_routes=self._extra_routes)
        self._runner = web.AppRunner(app, shutdown_timeout=2.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self.node.close()
            raise ConfigError(
                f"{self.node.config.source}: http.bind: cannot listen on {self.host}:{self.port} ({exc.strerror}); "
                "is another node running there?"
            ) from None
        # The port bound (the one asked for, or the free one chosen for port 0).
        addresses = self._runner.addresses
        port = addresses[0][1] if addresses else self.port
        self.url = f"http://{self.host}:{port}"
        log.info("%s (%s) serving on %s", self.node.office, self.node.config.role, self.url)
        return self.url

    async def stop(self, *, drain_s: float = DRAIN_S) -> None:
        """Stop HTTP, let the outbox drain for up to ``drain_s`` while connected, stop the node."""
        if self._runner is not None:
            self.node.live.close()  # ends the event streams so the runner's shutdown does not wait on them
            await self._runner.cleanup()
            self._runner = None
        bus = getattr(self.node, "bus", None)
        if bus is not None and bus.connected and drain_s > 0:
            with contextlib.suppress(Exception):
                if not await bus.wait_outbox_empty(drain_s):
                    log.warning("outbox not empty at shutdown: %d messages stay queued for the next start", bus.outbox.depth())
        await self.node.close()

    async def __aenter__(self) -> Daemon:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def load_node(home: NodeHome, **node_options: Any) -> OfficeNode:
    """The node of ``home`` (its node.toml and key file). The key's passphrase comes from
    BLO_PASSPHRASE or a prompt (see office_node/home.py)."""
    config: NodeConfig = home.config()
    identity: Identity
    identity, _ = load_home_identity(home)
    return OfficeNode(home, config, identity, **node_options)


async def serve_until_stopped(daemon: Daemon, *, on_started: Callable[[str], None] | None = None) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    url = await daemon.start()
    if on_started is not None:
        on_started(url)
    try:
        await stop.wait()
    finally:
        log.info("stopping %s", daemon.node.office)
        await daemon.stop()


def run(coro: Any) -> Any:
    """asyncio.run, on uvloop when it is installed (the `fast` extra): measurably faster
    request/ack paths, nothing else changes."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
