"""Running the real configs of deploy/ on loopback: throwaway TLS certificates, a copy of
each config with its hosts, ports and paths moved to 127.0.0.1 and a temp folder, and
small clusters of nats-server processes that are always stopped.

The configs name production hosts (``th-hub-1.blo.example``), standard ports (4222
clients, 6222 routes, 7222 gateway, 7422 leaf nodes, 8222 monitoring) and paths
(``/etc/nats/``, ``/var/lib/nats``). ``render`` rewrites exactly those, so the test runs
the same text an operator installs.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nacl.utils
import trustme

from bus.transport.client import BusClient, ClientConfig
from bus.transport.nkey import new_user_seed, public_key
from bus.transport.permissions import NodeAccess, hub_users, inbox_prefix
from bus.transport.provision import apply_plans
from bus.transport.server import NatsServer, find_nats_server
from bus.transport.topology import hub_plans

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
NATS_DIR = DEPLOY / "nats"
KINDS = {"client": 4222, "cluster": 6222, "gateway": 7222, "leaf": 7422}
HUB_SITES = ("th-hub-1", "th-hub-2", "th-hub-3", "la-hub-1", "la-hub-2", "la-hub-3")


@dataclass
class Certs:
    """A throwaway CA and one server certificate for 127.0.0.1, localhost and *.blo.example."""

    folder: Path

    @classmethod
    def make(cls, folder: Path) -> Certs:
        folder.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost", "*.blo.example")
        ca.cert_pem.write_to_path(str(folder / "ca.pem"))
        cert.cert_chain_pems[0].write_to_path(str(folder / "server-cert.pem"))
        cert.private_key_pem.write_to_path(str(folder / "server-key.pem"))
        return cls(folder)

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"


_taken: set[int] = set()


def listen_port() -> int:
    """A free loopback port below the kernel's ephemeral range (32768+): a server that is
    restarted, or started after others, must not find its port taken by the source port of
    some outgoing route or gateway connection, which ``free_port`` (ephemeral) allows."""
    while True:
        port = random.randrange(20000, 32000)
        if port in _taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _taken.add(port)
        return port


@dataclass
class Site:
    """One server's loopback ports (client, cluster, gateway, leaf, http)."""

    name: str
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def allocate(cls, name: str) -> Site:
        return cls(name, {kind: listen_port() for kind in (*KINDS, "http")})

    @property
    def url(self) -> str:
        return f"tls://127.0.0.1:{self.ports['client']}"


def render(text: str, site: Site, sites: dict[str, Site], *, tls: Path, var: Path) -> str:
    """The config ``text`` as ``site`` runs it on loopback: listeners on its own ports,
    other hosts' ``host:port`` on theirs, /etc/nats and /var/lib/nats in temp folders."""
    for kind, std in KINDS.items():
        text = text.replace(f"0.0.0.0:{std}", f"127.0.0.1:{site.ports[kind]}")
    text = text.replace("listen: 127.0.0.1:4222", f"listen: 127.0.0.1:{site.ports['client']}")
    text = text.replace("127.0.0.1:8222", f"127.0.0.1:{site.ports['http']}")

    def host(m: re.Match[str]) -> str:
        name, std = m.group(1), int(m.group(2))
        kind = next(k for k, v in KINDS.items() if v == std)
        return f"127.0.0.1:{sites[name].ports[kind]}"

    text = re.sub(r"([a-z]{2}-hub-\d)\.blo\.example:(\d+)", host, text)
    return text.replace("/etc/nats/tls/", f"{tls}/").replace("/var/lib/nats", str(var))


def render_tree(
    site: Site, sites: dict[str, Site], dest: Path, certs: Certs, extra: dict[str, str] | None = None
) -> Path:
    """Copy every config of deploy/nats/ into ``dest`` rendered for ``site``; returns ``dest``.
    ``extra`` adds files (the generated ``blo-auth.conf``, a leaf's ``uplink.conf``)."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in sorted(NATS_DIR.glob("*.conf")):
        (dest / src.name).write_text(render(src.read_text(), site, sites, tls=certs.folder, var=dest.parent / "var"))
    for name, text in (extra or {}).items():
        (dest / name).write_text(text)
    return dest


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    """``nats-server -t``: parse the config (and load its TLS files and includes) and exit."""
    return subprocess.run([find_nats_server(), "-t", "-c", str(path)], capture_output=True, text=True, timeout=30)


@dataclass
class Keys:
    """Generated nkeys: office id (or "admin") -> (seed file, public key)."""

    folder: Path
    seeds: dict[str, Path] = field(default_factory=dict)
    public: dict[str, str] = field(default_factory=dict)

    def add(self, name: str) -> None:
        seed = new_user_seed(nacl.utils.random)
        path = self.folder / f"{name}.nk"
        self.folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(seed)
        path.chmod(0o600)
        self.seeds[name], self.public[name] = path, public_key(seed)


def auth_include(accesses: list[NodeAccess], keys: Keys, *, hub_domain: str | None = "HUB") -> str:
    """The generated ``blo-auth.conf`` for these nodes (and an admin user)."""
    for a in accesses:
        if a.office not in keys.public:
            keys.add(a.office)
    for name in ("admin", "sys"):
        if name not in keys.public:
            keys.add(name)
    return hub_users(
        accesses, keys.public, admin_nkey=keys.public["admin"], system_nkey=keys.public["sys"], hub_domain=hub_domain
    ).render()


def secured_server(folder: Path, accesses: list[NodeAccess], keys: Keys) -> NatsServer:
    """One started loopback nats-server (JetStream, no hub domain) under the generated
    users of ``accesses``, with the hub's streams created by the admin user, as the
    operator does (offices may not create streams)."""
    conf = folder / "etc" / "server.conf"
    conf.parent.mkdir(parents=True)
    (conf.parent / "blo-auth.conf").write_text(auth_include(accesses, keys, hub_domain=None))
    conf.write_text('jetstream {}\ninclude "blo-auth.conf"\n')
    server = NatsServer(folder / "nats", config_file=conf).start()
    try:
        asyncio.run(_create_streams(server.url, keys))
    except BaseException:
        server.stop()
        raise
    return server


async def _create_streams(url: str, keys: Keys) -> None:
    admin = BusClient(ClientConfig(urls=(url,), nkey_seed=keys.seeds["admin"]))
    await admin.start()
    try:
        assert await admin.wait_connected(5)
        await apply_plans(admin, hub_plans(replicas=1))
    finally:
        await admin.close()


def client_config(urls: Iterable[str], keys: Keys, who: str, certs: Certs, **kw: object) -> ClientConfig:
    extra: dict[str, object] = {"publish_timeout_s": 2.0, "reconnect_wait_s": 0.2, "connect_timeout_s": 2.0}
    if who != "admin":
        extra["inbox_prefix"] = inbox_prefix(who)
    extra.update(kw)
    return ClientConfig(urls=tuple(urls), nkey_seed=keys.seeds[who], tls_ca=certs.ca, name=f"test-{who}", **extra)  # type: ignore[arg-type]


class Hub:
    """The three servers of one national hub, from deploy/nats/<c>-hub-N.conf, on loopback."""

    def __init__(self, root: Path, country: str, sites: dict[str, Site], certs: Certs, auth: str) -> None:
        self.country = country
        self.sites = sites
        self.servers: dict[str, NatsServer] = {}
        for n in (1, 2, 3):
            name = f"{country}-hub-{n}"
            tree = render_tree(sites[name], sites, root / name / "etc", certs, {"blo-auth.conf": auth})
            self.servers[name] = NatsServer(
                root / name / "log", port=sites[name].ports["client"], config_file=tree / f"{name}.conf", config_only=True
            )

    @property
    def urls(self) -> list[str]:
        return [self.sites[name].url for name in self.servers]

    def start(self) -> None:
        for server in self.servers.values():
            server.start()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


@contextmanager
def running(*groups: Hub | NatsServer) -> Iterator[None]:
    """Start servers/hubs in order; stop all of them whatever happens."""
    try:
        for g in groups:
            g.start()
        yield
    finally:
        for g in reversed(groups):
            g.stop()


async def wait_jetstream(client: BusClient, stream_probe: str = "$JS.API.INFO", timeout: float = 30.0) -> None:
    """Wait until the cluster's JetStream answers (its meta leader is elected)."""
    deadline = asyncio.get_running_loop().time() + timeout
    assert await client.wait_connected(timeout), "cannot connect to the hub"
    js = client.jetstream()
    while True:
        try:
            await js.account_info()
            return
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.25)
