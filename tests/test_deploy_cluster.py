"""The deploy/ configs run for real on loopback: the Thai and Lao hubs (3 servers each,
joined by the gateway, TLS on every port, the generated per-office nkey users), streams
at replicas 3, and an office leaf node.

* a BusNode keeps publishing while the BLO_OFFICES stream leader is SIGKILLed and
  restarted: every bulletin reaches the application exactly once;
* an office behind its leaf node keeps posting while its hub is down; everything reaches
  the Lao centre (through the gateway) once the hub is back, and the receipts come back.

The two hubs run once for the module (JetStream's meta group spans both: neither hub
elects a meta leader alone). Every wait is bounded; every server is stopped in finally.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bus.errors import NotConnected
from bus.transport.client import BusClient, ClientConfig
from bus.transport.permissions import NodeAccess, inbox_prefix
from bus.transport.provision import apply_plans
from bus.transport.server import NatsServer
from bus.transport.topology import StreamPlan, hub_plans, leaf_outbox_streams
from tests.bus_helpers import Collector, bulletin, eventually, make_node, offices
from tests.deploy_helpers import (
    HUB_SITES,
    Certs,
    Hub,
    Keys,
    Site,
    auth_include,
    client_config,
    render_tree,
    wait_jetstream,
)

pytestmark = pytest.mark.timeout(150)

LEAF_OFFICE = "TH-MUK"  # deploy/nats/leaf-office.conf is written for Mukdahan
NODES = [
    NodeAccess("TH-NKP", "office"),
    NodeAccess("TH-TCCC", "centre"),
    NodeAccess(LEAF_OFFICE, "office", leaf=True),
    NodeAccess("LA-TCCC", "centre"),
]


@dataclass
class Network:
    root: Path
    certs: Certs
    keys: Keys
    sites: dict[str, Site]
    th: Hub
    la: Hub

    def config(self, who: str, hub: Hub, **kw: object) -> ClientConfig:
        return client_config(hub.urls, self.keys, who, self.certs, **kw)

    def heal(self) -> None:
        """Every hub server running (a failed test may have left one down)."""
        for hub in (self.th, self.la):
            for server in hub.servers.values():
                if not server.running:
                    server.start()


async def _admin(net: Network, plans: list[StreamPlan]) -> list[str]:
    # Generous timeouts: right after a server was killed and restarted, the meta leader
    # may take a few seconds to answer stream updates on a loaded machine.
    admin = BusClient(net.config("admin", net.th, publish_timeout_s=10.0))
    await admin.start()
    try:
        await wait_jetstream(admin, timeout=40)
        for attempt in range(3):
            try:
                return await apply_plans(admin, plans)
            except NotConnected:
                if attempt == 2:
                    raise
                await asyncio.sleep(1.0)
        raise AssertionError("unreachable")
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("network")
    certs = Certs.make(root / "tls")
    keys = Keys(root / "keys")
    auth = auth_include(NODES, keys)
    sites = {name: Site.allocate(name) for name in HUB_SITES}
    net = Network(root, certs, keys, sites, Hub(root, "th", sites, certs, auth), Hub(root, "la", sites, certs, auth))
    try:
        net.th.start()
        net.la.start()
        done = asyncio.run(_admin(net, hub_plans(replicas=3)))
        assert all("replicas 3" in line for line in done), done
        yield net
    finally:
        net.th.stop()
        net.la.stop()


async def _stream_leader(net: Network, stream: str) -> str:
    admin = BusClient(net.config("admin", net.th))
    await admin.start()
    try:
        assert await admin.wait_connected(10)
        for _ in range(100):
            try:
                info = await admin.jetstream().stream_info(stream)
                if info.cluster and info.cluster.leader:
                    return info.cluster.leader
            except Exception:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"{stream} has no leader")
    finally:
        await admin.close()


async def test_five_thousand_bulletins_arrive_exactly_once_while_the_stream_leader_is_killed(network: Network) -> None:
    net = network
    net.heal()
    (nkp, tccc), book = offices("TH-NKP", "TH-TCCC")
    app = Collector()
    sender = make_node(nkp, book, net.root / "a-nkp", None, ensure_streams=False)
    sender.client_config = net.config("TH-NKP", net.th)
    receiver = make_node(tccc, book, net.root / "a-tccc", None, app=app, ensure_streams=False)
    receiver.client_config = net.config("TH-TCCC", net.th)
    total, killed = 5000, None
    await sender.start()
    await receiver.start()
    try:
        posted: list[str] = []

        async def post_all() -> None:
            for start in range(0, total, 100):
                items = [(bulletin("TH-NKP", i, seed="leader"), ["TH-TCCC"], []) for i in range(start, start + 100)]
                posted.extend(await sender.post_many(items))
                await asyncio.sleep(0.01)

        poster = asyncio.create_task(post_all())
        await eventually(lambda: len(app.got) >= 1000, 60, "the first 1,000 bulletins")
        killed = await _stream_leader(net, "BLO_OFFICES")
        net.th.servers[killed].kill()  # SIGKILL: no goodbye to the cluster
        await asyncio.sleep(2.0)  # a new leader is elected while posting goes on
        net.th.servers[killed].start()
        await poster
        await app.wait_for(total, 90)
        await asyncio.sleep(0.5)  # room for a duplicate to show up
        assert len(app.ids) == total
        assert set(app.ids) == set(posted)
        await eventually(lambda: sender.outbox.depth() == 0, 20, "the sender's outbox to drain")
    finally:
        await sender.close()
        await receiver.close()
        net.heal()


async def test_an_office_leaf_node_accepts_bulletins_while_the_hub_is_down_and_delivers_them_after(
    network: Network,
) -> None:
    net = network
    net.heal()
    site = Site.allocate("leaf-th-muk")
    seed = net.keys.seeds[LEAF_OFFICE].read_text().strip()
    tree = render_tree(site, net.sites, net.root / "leaf" / "etc", net.certs, {"uplink.conf": f'nkey: "{seed}"\n'})
    leaf = NatsServer(net.root / "leaf" / "log", port=site.ports["client"], config_file=tree / "leaf-office.conf", config_only=True)
    leaf_url = f"nats://127.0.0.1:{site.ports['client']}"
    (muk, la_tccc), book = offices(LEAF_OFFICE, "LA-TCCC")
    app = Collector()
    office = make_node(muk, book, net.root / "b-muk", None, ensure_streams=False)
    # The node talks to its own leaf node (loopback, no credentials) and reads the hub's
    # streams as domain HUB; the leaf signs in to the hub as TH-MUK.
    office.client_config = ClientConfig(
        urls=(leaf_url,), jetstream_domain="HUB", inbox_prefix=inbox_prefix(LEAF_OFFICE), publish_timeout_s=2.0,
        reconnect_wait_s=0.2,
    )
    centre = make_node(la_tccc, book, net.root / "b-la-tccc", None, app=app, ensure_streams=False)
    centre.client_config = net.config("LA-TCCC", net.la)
    leaf.start()
    try:
        local = BusClient(ClientConfig(urls=(leaf_url,)))
        await local.start()
        try:
            assert await local.wait_connected(10)
            await apply_plans(local, [StreamPlan(s) for s in leaf_outbox_streams(LEAF_OFFICE)])
        finally:
            await local.close()
        # As DEPLOY.md orders it: once the leaf is up, the hub streams get their source.
        done = await _admin(net, hub_plans(replicas=3, leaf_offices=[LEAF_OFFICE]))
        assert all("sourcing 1 leaf" in line for line in done), done
        await office.start()
        await centre.start()
        first = await office.post_many([(bulletin(LEAF_OFFICE, i, seed="leaf"), ["LA-TCCC"], []) for i in range(20)])
        await app.wait_for(20, 40)

        net.th.stop()  # the office's uplink has nowhere to go
        during = await office.post_many(
            [(bulletin(LEAF_OFFICE, i, seed="leaf", body_bytes=2_000), ["LA-TCCC"], []) for i in range(20, 320)]
        )
        # The leaf node took them all: the office's outbox is empty with the hub down.
        await eventually(lambda: office.outbox.depth() == 0, 30, "the leaf node to accept every bulletin")
        assert len(app.got) == 20

        net.th.start()
        await app.wait_for(320, 90)
        await asyncio.sleep(0.5)
        assert len(app.ids) == 320 and set(app.ids) == set(first + during)
        last = during[-1]
        await eventually(
            lambda: office.status(last).recipients["LA-TCCC"].state == "delivered", 40, "the receipt back at the office"
        )
    finally:
        await office.close()
        await centre.close()
        leaf.stop()
        net.heal()


async def test_a_leaf_office_without_the_sourcing_grants_stalls_silently(network: Network) -> None:
    """TH-NKP's user is a direct office's (no leaf grants): its leaf node signs in fine and
    stores what the node posts, but the hub's sourcing requests never reach it. Nothing
    errors anywhere; the bulletins just never arrive. This is why the grants are pinned."""
    net = network
    net.heal()
    site = Site.allocate("leaf-th-nkp")
    seed = net.keys.seeds["TH-NKP"].read_text().strip()
    tree = render_tree(site, net.sites, net.root / "leaf-nkp" / "etc", net.certs, {"uplink.conf": f'nkey: "{seed}"\n'})
    conf = tree / "leaf-office.conf"
    conf.write_text(conf.read_text().replace("TH-MUK", "TH-NKP").replace("leaf-th-muk", "leaf-th-nkp"))
    leaf = NatsServer(net.root / "leaf-nkp" / "log", port=site.ports["client"], config_file=conf, config_only=True)
    leaf_url = f"nats://127.0.0.1:{site.ports['client']}"
    leaf.start()
    local = BusClient(ClientConfig(urls=(leaf_url,), publish_timeout_s=2.0))
    admin = BusClient(net.config("admin", net.th))
    try:
        await local.start()
        await admin.start()
        assert await local.wait_connected(10) and await admin.wait_connected(10)
        await apply_plans(local, [StreamPlan(s) for s in leaf_outbox_streams("TH-NKP")])
        await admin.close()
        await _admin(net, hub_plans(replicas=3, leaf_offices=[LEAF_OFFICE, "TH-NKP"]))
        admin = BusClient(net.config("admin", net.th, publish_timeout_s=10.0))
        await admin.start()
        assert await admin.wait_connected(10)
        subject = "blo.office.LA-TCCC.routine.TH-NKP"
        for i in range(5):
            ack = await local.publish(subject, b"sealed", f"stall-{i}")
            assert ack.stream == "BLO_OUTBOX"  # the leaf accepted it
        await asyncio.sleep(5.0)
        info = await admin.jetstream().stream_info("BLO_OFFICES", subjects_filter=subject)
        assert not (info.state.subjects or {}).get(subject), "sourced without the grants?"
        leaf_info = await local.jetstream().stream_info("BLO_OUTBOX")
        assert leaf_info.state.messages == 5
        # The check itself works: one publish straight to the hub shows up as exactly one.
        direct = BusClient(net.config("TH-NKP", net.th))
        await direct.start()
        try:
            assert await direct.wait_connected(10)
            await direct.publish(subject, b"sealed", "direct-1")
        finally:
            await direct.close()
        info = await admin.jetstream().stream_info("BLO_OFFICES", subjects_filter=subject)
        assert (info.state.subjects or {}).get(subject) == 1
    finally:
        await local.close()
        await admin.close()
        leaf.stop()
