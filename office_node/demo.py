"""``blo demo`` (what ``make run`` runs): a whole pilot network on one laptop.

One embedded nats-server with JetStream; the TH and LA coordination centres; four
offices in two cross-border pairs (Mukdahan TH - Savannakhet LA on Friendship Bridge 2,
Nakhon Phanom TH - Thakhek LA on Bridge 3); the regional feed; a few realistic sample
bulletins sent through the nodes' own API. Each node's URL and login is printed; Ctrl-C
stops everything cleanly. The network is kept in ``.blo-demo/`` (keys unprotected, as
marked in the key files: it is a demo), so a second ``make run`` finds yesterday's
bulletins; ``--fresh`` starts over.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.utils

from bus import write_private_file
from bus.errors import BloError, ConfigError, NotConnected
from bus.transport import NatsServer, embedded_server
from bus.transport import open_directory_bucket as open_bucket
from bus.transport import publish_directory_item as publish_item
from office_node.accounts import INTERACTIVE, HashLimits
from office_node.client import NodeClient
from office_node.daemon import Daemon
from office_node.home import NodeHome, load_home_identity
from office_node.network import BuiltNode, Login, Network, build_network, mekong_pilot
from office_node.node import OfficeNode
from office_node.samples import sample_bulletins

log = logging.getLogger("blo.demo")
STATE_FILE = "demo.json"


@dataclass(frozen=True)
class DemoPorts:
    nats: int
    http_base: int  # six consecutive ports from here

    def all(self) -> list[int]:
        return [self.nats, *range(self.http_base, self.http_base + 6)]


def _in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _check_ports(ports: DemoPorts) -> None:
    busy = [p for p in ports.all() if _in_use(p)]
    if busy:
        raise ConfigError(
            f"ports {', '.join(map(str, busy))} on 127.0.0.1 are in use (another demo?); stop it or pass "
            "--base-port to use others"
        )


def prepare(
    root: Path, ports: DemoPorts, *, fresh: bool, hash_limits: HashLimits = INTERACTIVE
) -> tuple[Network, dict[str, Any], bool]:
    """The demo network under ``root``: built now (True) or found from an earlier run."""
    state_path = root / STATE_FILE
    if fresh and root.exists():
        shutil.rmtree(root)
    if state_path.exists():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if state.get("ports") != ports.all():
            raise ConfigError(f"{root} was built for other ports; run `blo demo --fresh` to rebuild it")
        nodes = {}
        for spec in mekong_pilot(base_http_port=ports.http_base):
            home = NodeHome(root / spec.office)
            identity, _ = load_home_identity(home)
            logins = [Login(**login) for login in state["nodes"][spec.office]["logins"]]
            nodes[spec.office] = BuiltNode(spec, home, identity, logins, state["nodes"][spec.office]["token"])
        items = [bytes.fromhex(i) for i in state["items"]]
        return Network(root, nodes, items), state, False
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    network = build_network(
        root,
        mekong_pilot(base_http_port=ports.http_base),
        nats_urls=[f"nats://127.0.0.1:{ports.nats}"],
        now_ms=int(time.time() * 1000),
        rng=nacl.utils.random,
        users=(("officer", "officer"), ("supervisor", "supervisor"), ("admin", "admin")),
        hash_limits=hash_limits,
    )
    state = {
        "ports": ports.all(),
        "items": [i.hex() for i in network.items],
        "nodes": {
            office: {"logins": [vars(login) for login in n.logins], "token": n.token}
            for office, n in network.nodes.items()
        },
    }
    write_private_file(state_path, json.dumps(state, indent=2).encode())
    return network, state, True


async def publish_directory(url: str, items: list[bytes]) -> None:
    from bus.transport import one_shot_jetstream

    async with one_shot_jetstream(url, timeout=5.0) as js:
        kv = await open_bucket(js, create=True)
        for item in items:
            await publish_item(kv, item)


def _sample_posts() -> list[tuple[str, dict[str, Any]]]:
    """The TH and LA sample bulletins as posts between the pilot's offices."""
    to = {"TH-MUK": ["LA-SVK", "TH-TCCC"], "LA-SVK": ["TH-MUK", "LA-TCCC"]}
    posts = []
    for s in sample_bulletins():
        if s["from"] not in to:
            continue
        posts.append(
            (
                s["from"],
                {
                    "to": to[s["from"]],
                    "precedence": s["precedence"],
                    "kind": s["kind"],
                    "tlp": s["tlp"],
                    "releasable_to": ["TH", "LA"],
                    "grading": f"{s['source']}{s['information']}",
                    "title": s["title"],
                    "body": s["body"],
                    "entities": s.get("entities", []),
                },
            )
        )
    return posts


FEED = "mekong-border"
INTEL = {
    "to": [],
    "feed": FEED,
    "precedence": "PRIORITY",
    "kind": "strategic_intelligence",
    "tlp": "GREEN",
    "releasable_to": ["TH", "LA"],
    "grading": "B2",
    "title": "Strategic assessment: methamphetamine routes across the Mekong shift to river ferries",
    "body": "Seizures at Friendship Bridges 2 and 3 fell 40% this quarter while ferry-point seizures rose. "
    "Offices on both banks: check cargo on the Mukdahan-Savannakhet and Nakhon Phanom-Thakhek ferries.",
}


def _supervisor_token(daemon: Daemon) -> str:
    node = daemon.node
    _, token = node.accounts.create_token("supervisor", f"demo setup {node.clock()}", now_ms=node.clock())
    return token


async def seed_feed(daemons: dict[str, Daemon], *, timeout: float = 20.0) -> None:
    """The regional feed, set up as two real centres would: TH-TCCC creates the joint
    feed with its offices, LA-TCCC asks it to add the Lao offices and itself (a centre
    that does not own a feed reads it only as a member), TH-TCCC lets LA-TCCC post to it,
    then writes the first strategic assessment to it."""
    th, la = daemons["TH-TCCC"], daemons["LA-TCCC"]
    assert th.url and la.url
    async with NodeClient(th.url, _supervisor_token(th)) as thc, NodeClient(la.url, _supervisor_token(la)) as lac:
        await thc.request("POST", "/api/feeds", body={"name": FEED, "members": ["TH-MUK", "TH-NKP"], "scope": ["TH", "LA"]})

        async def until(check: Callable[[], Any]) -> None:
            async def loop() -> None:
                while not await check():
                    await asyncio.sleep(0.2)

            await asyncio.wait_for(loop(), timeout)

        async def la_sees_it() -> bool:
            feeds = (await lac.get("/api/feeds"))["feeds"]
            return any(f["name"] == FEED and f["epoch"] for f in feeds)

        await until(la_sees_it)
        await lac.request("POST", f"/api/feeds/{FEED}/members", body={"add": ["LA-TCCC", "LA-SVK", "LA-THK"]})

        async def joined() -> bool:
            feeds = (await thc.get("/api/feeds"))["feeds"]
            return any(f["name"] == FEED and len(f["members"]) == 5 for f in feeds)

        await until(joined)
        await thc.request("POST", f"/api/feeds/{FEED}/writers", body={"add": ["LA-TCCC"]})

        async def la_may_post() -> bool:
            feeds = (await lac.get("/api/feeds"))["feeds"]
            return any(f["name"] == FEED and "LA-TCCC" in f["writers"] and f["have_key"] for f in feeds)

        await until(la_may_post)
        await thc.post_bulletin(INTEL)


async def run_demo(
    root: Path,
    ports: DemoPorts,
    *,
    fresh: bool = False,
    echo: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
    hash_limits: HashLimits = INTERACTIVE,
    on_ready: Callable[[Network, list[Daemon]], None] | None = None,
) -> None:
    """Bring the network up, seed it on first run, print the logins, run until ``stop``."""
    _check_ports(ports)
    if fresh or not (root / STATE_FILE).exists():
        echo(f"building the pilot network in {root} (first run: keys, enrolments, officer accounts)...")
    network, _, first_run = prepare(root, ports, fresh=fresh, hash_limits=hash_limits)
    server: NatsServer = embedded_server(root / "nats-data", port=ports.nats)
    await asyncio.to_thread(server.start)
    daemons: list[Daemon] = []
    try:
        await publish_directory(server.url, network.items)
        for built in network.nodes.values():
            node = OfficeNode(built.home, built.home.config(), built.identity)
            daemon = Daemon(node)
            await daemon.start()
            daemons.append(daemon)
        if first_run:
            by_office = {d.node.office: d for d in daemons}
            for office, body in _sample_posts():
                daemon = by_office[office]
                assert daemon.url is not None
                async with NodeClient(daemon.url, network[office].token or "") as client:
                    await client.post_bulletin(body)
            try:
                await seed_feed(by_office)
            except (BloError, TimeoutError) as exc:
                echo(f"warning: the regional feed was not set up: {getattr(exc, 'message', exc) or 'timed out'}")
        echo(f"BLO Bus demo: nats-server {server.url} (JetStream store in {server.store_dir})")
        echo(f"{'node':<9} {'role':<7} {'URL':<24} logins (username / password)")
        for daemon in daemons:
            built = network[daemon.node.office]
            logins = ", ".join(f"{login.username} / {login.password}" for login in built.logins)
            echo(f"{daemon.node.office:<9} {built.spec.role:<7} {daemon.url:<24} {logins}")
        echo("Open two offices' pages (e.g. TH-MUK and LA-SVK), post on one, watch it arrive on the other.")
        muk = network["TH-MUK"]
        home = muk.home.root
        echo(f"The blo command against a node: its home is {home} (each node's under {root}).")
        echo(f"  save an API token once:  blo --home {home} token create {muk.logins[0].username} --name cli --save")
        echo(f"  then, e.g.:              blo --home {home} check --document P0847211")
        echo("Ctrl-C stops everything.")
        if on_ready is not None:
            on_ready(network, daemons)
        await (stop or asyncio.Event()).wait()
    except NotConnected as exc:
        raise ConfigError(f"the demo's nats-server could not be reached: {exc.message}") from None
    finally:
        for daemon in reversed(daemons):
            await daemon.stop(drain_s=2.0)
        await asyncio.to_thread(server.stop)
