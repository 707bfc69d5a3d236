"""An office behind a bad link, on loopback: a hub nats-server, the office's own leaf node
whose uplink crosses a ``bus.testing_net.LinkProxy``, and a second proxy on the same link
for a node that dials the hub directly. Used by the bad-link tests and ``bench link``.

The hub and the leaf run the layout of deploy/ (the hub's JetStream domain ``HUB``, the
leaf's the office id, the leaf's uplink denying ``blo.>`` as plain messages so the office's
messages reach the hub only by sourcing; the streams of ``bus.transport.topology``), without
TLS and users: what is measured here is the link, and the permissions are pinned by the
deploy tests. Every server is stopped and every proxy closed on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors

from bus.testing_net import Link, LinkProxy
from bus.transport.client import BusClient, ClientConfig
from bus.transport.node import BusNode
from bus.transport.permissions import api_prefix, inbox_prefix
from bus.transport.provision import apply_plans
from bus.transport.server import NatsServer, free_port
from bus.transport.topology import StreamPlan, hub_plans, leaf_outbox_streams
from tests.bus_helpers import make_node, offices


@dataclass
class OfficeNet:
    hub: NatsServer
    leaf: NatsServer | None
    link: Link
    leaf_proxy: LinkProxy | None
    direct_proxy: LinkProxy
    office: str

    @property
    def hub_url(self) -> str:
        return _signed_in(self.hub.url)

    def behind_leaf(self, **kw: object) -> ClientConfig:
        """A node of the office talking to its leaf node (as DEPLOY.md 5 configures it)."""
        assert self.leaf is not None
        return ClientConfig(
            urls=(self.leaf.url,), jetstream_domain="HUB", inbox_prefix=inbox_prefix(self.office), **_quick(kw)
        )

    def direct(self, **kw: object) -> ClientConfig:
        """A node of the office dialling the hub across the bad link."""
        return ClientConfig(urls=(_signed_in(self.direct_proxy.url),), **_quick(kw))

    def on_hub(self, **kw: object) -> ClientConfig:
        """A node at the hub's end (the counterpart, a centre): no bad link in between."""
        return ClientConfig(urls=(self.hub_url,), **_quick(kw))

    def office_and_counterpart(
        self, root: Path, app: Any, *, counterpart: str = "TH-TCCC", **options: Any
    ) -> tuple[BusNode, BusNode]:
        """Two nodes, not started: the office across the link (behind its leaf node if it has
        one, else dialling the hub) and ``counterpart`` at the hub, handing what it receives
        to ``app``. ``options`` go to the office's ``NodeOptions``."""
        (office, other), book = offices(self.office, counterpart)
        node = make_node(office, book, root / self.office, None, ensure_streams=False, **options)
        node.client_config = self.behind_leaf() if self.leaf is not None else self.direct()
        centre = make_node(other, book, root / counterpart, None, app=app, ensure_streams=False)
        centre.client_config = self.on_hub()
        return node, centre


#: The hub's one user (no permissions: they are pinned by the deploy tests, not here).
_USER, _PASSWORD = "blo", "blo-link-test"


def _quick(kw: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {"publish_timeout_s": 10.0, "reconnect_wait_s": 0.2, "connect_timeout_s": 5.0}
    out.update(kw)
    return out


def _signed_in(url: str) -> str:
    return url.replace("nats://", f"nats://{_USER}:{_PASSWORD}@")


def _hub_conf(folder: Path, port: int, leaf_port: int) -> Path:
    conf = folder / "hub.conf"
    conf.write_text(
        f"server_name: hub\nlisten: 127.0.0.1:{port}\nmax_payload: 1MB\n"
        f'jetstream {{ domain: HUB, store_dir: "{folder / "js"}" }}\n'
        f"leafnodes {{ listen: 127.0.0.1:{leaf_port} }}\n"
        # One account for the network and a system account, as deploy/ has them: JetStream
        # domains meet across a leaf connection only between such accounts.
        "accounts {\n"
        f'  BLO {{ jetstream: enabled, users = [ {{ user: "{_USER}", password: "{_PASSWORD}" }} ] }}\n'
        '  SYS { users = [ { user: "sys", password: "sys" } ] }\n'
        "}\nsystem_account: SYS\n"
    )
    return conf


def _leaf_conf(folder: Path, office: str, port: int, uplink: int) -> Path:
    conf = folder / "leaf.conf"
    conf.write_text(
        f"server_name: leaf-{office.lower()}\nlisten: 127.0.0.1:{port}\nmax_payload: 1MB\nwrite_deadline: \"120s\"\n"
        f'jetstream {{ domain: {office}, store_dir: "{folder / "js"}", sync_interval: always }}\n'
        "leafnodes { reconnect: 1s, remotes = [ {\n"
        f'  url: "nats-leaf://{_USER}:{_PASSWORD}@127.0.0.1:{uplink}"\n'
        '  first_info_timeout: 10s\n  deny_exports: ["blo.>"]\n  deny_imports: ["blo.>"]\n} ] }\n'
    )
    return conf


async def _apply(url: str, plans: Sequence[StreamPlan]) -> None:
    client = BusClient(ClientConfig(urls=(url,), publish_timeout_s=10.0))
    await client.start()
    try:
        assert await client.wait_connected(10), f"cannot reach {url}"
        await apply_plans(client, plans)
    finally:
        await client.close()


async def _wait_leaf_domain(hub_url: str, office: str, timeout: float = 60.0) -> None:
    """Until the leaf's JetStream answers the hub across the link: a source created before
    that is retried on a back-off of tens of seconds (DEPLOY.md 4, as an operator does)."""
    nc = await nats.connect(hub_url)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                await nc.request(f"{api_prefix(office)}.INFO", b"", timeout=5.0)
                return
            except nats.errors.Error:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def office_net(root: Path, link: Link, *, office: str = "TH-MUK", leaf: bool = True) -> AsyncIterator[OfficeNet]:
    """The hub, the two proxies on ``link`` and (``leaf``) the office's leaf node, with the
    hub's streams sourcing the leaf's outbox; everything stopped on the way out."""
    hub_dir, leaf_dir = root / "hub", root / "leaf"
    hub_dir.mkdir(parents=True)
    hub_port, hub_leaf_port = free_port(), free_port()
    hub = NatsServer(hub_dir, port=hub_port, config_file=_hub_conf(hub_dir, hub_port, hub_leaf_port), config_only=True)
    leaf_server: NatsServer | None = None
    proxies: list[LinkProxy] = []
    try:
        hub.start()
        direct = await LinkProxy(("127.0.0.1", hub_port), link).start()
        proxies.append(direct)
        leaf_proxy = None
        if leaf:
            leaf_proxy = await LinkProxy(("127.0.0.1", hub_leaf_port), link).start()
            proxies.append(leaf_proxy)
            leaf_dir.mkdir(parents=True)
            port = free_port()
            leaf_server = NatsServer(
                leaf_dir, port=port, config_file=_leaf_conf(leaf_dir, office, port, leaf_proxy.port), config_only=True
            )
            leaf_server.start()
            await _apply(leaf_server.url, [StreamPlan(s) for s in leaf_outbox_streams(office)])
        if leaf:
            await _wait_leaf_domain(_signed_in(hub.url), office)
        await _apply(_signed_in(hub.url), hub_plans(leaf_offices=[office] if leaf else []))
        yield OfficeNet(hub, leaf_server, link, leaf_proxy, direct, office)
    finally:
        for proxy in proxies:
            await proxy.close()
        if leaf_server is not None:
            leaf_server.stop()
        hub.stop()
