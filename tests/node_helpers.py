"""Real nodes for the API, CLI and browser tests: a built network on a real nats-server,
daemons on free loopback ports, and an authenticated HTTP client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bus.transport.node import NodeOptions
from office_node.accounts import CHEAP
from office_node.daemon import Daemon
from office_node.network import Network, NodeSpec, build_network
from office_node.node import OfficeNode

BLO = str(Path(sys.executable).parent / "blo")

PAIR = [
    NodeSpec("TH-TCCC", "Thailand TCCC", "centre"),
    NodeSpec("LA-TCCC", "Lao TCCC", "centre"),
    NodeSpec("TH-MUK", "Mukdahan BLO", counterparts=("LA-SVK",)),
    NodeSpec("LA-SVK", "Savannakhet BLO", counterparts=("TH-MUK",)),
]


def build(root: Path, nats_url: str, specs: Sequence[NodeSpec] = PAIR) -> Network:
    return build_network(root, specs, nats_urls=[nats_url], now_ms=int(time.time() * 1000), hash_limits=CHEAP)


def fast_options(**overrides: Any) -> NodeOptions:
    """Quick retries and short parks, so tests wait little for links and redeliveries."""
    return NodeOptions(**{"fetch_wait_s": 0.5, "retry_delay_s": 0.2, "flash_ack_timeout_s": 30.0, **overrides})


def make_office_node(network: Network, office: str, **options: Any) -> OfficeNode:
    built = network[office]
    config = built.home.config()
    return OfficeNode(
        built.home,
        config,
        built.identity,
        hash_limits=CHEAP,
        options=fast_options(feeds=config.feeds, ensure_streams=config.nats.create_streams, **options),
    )


@asynccontextmanager
async def running(network: Network, *offices: str, **options: Any) -> AsyncIterator[dict[str, Daemon]]:
    """Start the named offices' daemons on free ports; stop them all afterwards."""
    daemons: dict[str, Daemon] = {}
    try:
        for office in offices:
            daemon = Daemon(make_office_node(network, office, **options), host="127.0.0.1", port=0)
            await daemon.start()
            daemons[office] = daemon
        yield daemons
    finally:
        for daemon in daemons.values():
            await daemon.stop(drain_s=0)


class Api:
    """An HTTP client of one node, signed in with the network's API token."""

    def __init__(self, base: str, token: str | None) -> None:
        self.base = base
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.session = aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=20))

    async def close(self) -> None:
        await self.session.close()

    async def call(self, method: str, path: str, *, body: Any = None, raw: bytes | None = None, **kw: Any) -> tuple[int, Any]:
        if raw is not None:
            kw["data"] = raw
            kw.setdefault("headers", {"Content-Type": "application/json"})
        elif body is not None:
            kw["json"] = body
        async with self.session.request(method, self.base + path, **kw) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text) if text else None
            except json.JSONDecodeError:
                return response.status, text

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.call("POST", path, body=body, **kw)


@asynccontextmanager
async def api(daemon: Daemon, token: str | None) -> AsyncIterator[Api]:
    assert daemon.url is not None
    client = Api(daemon.url, token)
    try:
        yield client
    finally:
        await client.close()


async def eventually(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll a sync or async predicate until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


def bulletin_request(**fields: Any) -> dict[str, Any]:
    """A valid post request to LA-SVK, Thai text, two entities."""
    body: dict[str, Any] = {
        "to": ["LA-SVK"],
        "feed": None,
        "precedence": "IMMEDIATE",
        "kind": "incident",
        "tlp": "AMBER",
        "releasable_to": ["TH", "LA"],
        "grading": "B2",
        "title": "ยึดยาบ้า 200,000 เม็ด ที่ด่านสะพานมิตรภาพ 2",
        "body": "เจ้าหน้าที่ตรวจพบยาบ้าซุกซ่อนในรถบรรทุกสินค้า ผู้ขับขี่ถือหนังสือเดินทางลาว",
        "entities": [
            {"type": "vehicle", "plate": "70-1234", "country": "TH"},
            {"type": "document", "doc_type": "passport", "number": "P0847211", "country": "LA"},
        ],
        "tags": ["bridge2"],
    }
    body.update(fields)
    return body


def blo_env(**extra: str) -> dict[str, str]:
    """This environment without any BLO_ variable of the test runner's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLO_")}
    return {**env, **extra}


@contextmanager
def node_process(home: Path, port: int, **env: str) -> Iterator[subprocess.Popen[str]]:
    """`blo node run` of ``home`` as its own process (``env`` added to its environment),
    once its /health on ``port`` says NATS is connected; SIGTERM at the end."""
    proc = subprocess.Popen(
        [BLO, "node", "run", "--config", str(home / "node.toml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=blo_env(**env),
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if json.load(r)["nats"] == "connected":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the node did not come up: {proc.stdout.read() if proc.stdout else ''}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
