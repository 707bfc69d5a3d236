"""Build a whole network of node homes in one folder: centres, offices, enrolment done.

``blo demo`` and the end-to-end tests use it, so the demo runs exactly the code paths
an operator runs by hand (DEPLOY.md): keys generated, each office's enrolment request
signed by its own country's centre, every node pinning the centres, every node's local
directory copy holding the signed records and every node's first inbox key (each node's
inbox key ring written, as its node would on first start), officer accounts created.

Keys are written **unprotected** (``protection: none``) because a demo cannot ask for
passphrases; that is what the explicit "insecure" marking in the key file is for. Do
not use this for a real deployment.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nacl.utils

from bus import (
    Directory,
    Identity,
    InboxRing,
    Rng,
    anchors_from_hex,
    centre_self_record,
    enrol_office,
    make_request,
    read_request,
    save_identity,
    write_private_file,
)
from bus.transport import DirectoryCache
from office_node import audit as actions
from office_node.accounts import INTERACTIVE, Accounts, HashLimits
from office_node.audit import AuditLog
from office_node.config import render_config
from office_node.db import open_database
from office_node.home import NodeHome, node_paths

DAY_MS = 86_400_000


@dataclass(frozen=True)
class NodeSpec:
    office: str
    name: str
    role: str = "office"
    counterparts: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()  # feeds this node reads
    http_port: int = 0  # 0: a free port chosen when it starts


@dataclass(frozen=True)
class Login:
    username: str
    password: str
    role: str


@dataclass
class BuiltNode:
    spec: NodeSpec
    home: NodeHome
    identity: Identity
    logins: list[Login] = field(default_factory=list)
    token: str | None = None  # an API token for the first login (scripts, tests)


@dataclass
class Network:
    root: Path
    nodes: dict[str, BuiltNode]
    items: list[bytes]  # every signed directory item (self records, enrolments, first inbox keys)

    def __getitem__(self, office: str) -> BuiltNode:
        return self.nodes[office]


def _password() -> str:
    return secrets.token_urlsafe(12)


def build_network(
    root: Path,
    specs: Sequence[NodeSpec],
    *,
    nats_urls: Sequence[str],
    now_ms: int,
    rng: Rng = nacl.utils.random,
    hash_limits: HashLimits = INTERACTIVE,
    users: Sequence[tuple[str, str]] = (("officer", "officer"), ("supervisor", "supervisor")),
    valid_days: int = 365,
) -> Network:
    """Create one home per spec under ``root/<office>``. ``users`` are (username, role)
    pairs created on every node with random passwords (returned in ``Network``)."""
    identities = {s.office: Identity.generate(s.office, rng) for s in specs}
    centres = {s.office[:2]: s for s in specs if s.role == "centre"}
    valid_until = now_ms + valid_days * DAY_MS
    items: list[bytes] = []
    for spec in centres.values():
        items.append(centre_self_record(identities[spec.office], name=spec.name, now_ms=now_ms, valid_until=valid_until))
    for spec in specs:
        if spec.role == "centre":
            continue
        centre = centres.get(spec.office[:2])
        if centre is None:
            raise ValueError(f"{spec.office} has no centre of its country ({spec.office[:2]}) in the network")
        request = make_request(identities[spec.office], name=spec.name, country=spec.office[:2], role="office", now_ms=now_ms)
        items.append(
            enrol_office(
                read_request(request),
                identities[centre.office],
                sequence=1,
                now_ms=now_ms,
                valid_until=valid_until,
                regions=spec.regions,
                counterparts=spec.counterparts,
            )
        )
    rings = {s.office: InboxRing(identities[s.office]) for s in specs}
    items += [ring.make(now_ms, rng).raw for ring in rings.values()]
    anchors = {c.office: identities[c.office].signing.public.hex() for c in centres.values()}
    nodes: dict[str, BuiltNode] = {}
    for spec in specs:
        home = NodeHome(root / spec.office)
        home.create_layout()
        identity = identities[spec.office]
        save_identity(home.identity_path, identity, None)
        write_private_file(home.inbox_ring_path, rings[spec.office].to_bytes(rng))
        config_text = render_config(
            spec.office,
            spec.role,
            anchors=anchors,
            urls=list(nats_urls),
            bind=f"127.0.0.1:{spec.http_port}" if spec.http_port else "127.0.0.1:8080",
            feeds=list(spec.feeds),
        )
        write_private_file(home.config_path, config_text.encode())
        config = home.config()
        directory = Directory(anchors_from_hex(config.trust_anchors))
        for item in items:
            directory.apply(item, witnessed_at=now_ms)
        DirectoryCache(config.data_dir / "directory.json").save(directory)
        built = BuiltNode(spec, home, identity)
        paths = node_paths(home.root, config.data_dir)
        db = open_database(paths.db)
        try:
            accounts = Accounts(db, limits=hash_limits)
            audit = AuditLog.open(db, paths.audit_key, head_path=paths.audit_head)
            for username, role in users:
                login = Login(username, _password(), role)
                accounts.add_user(username, login.password, role=role, now_ms=now_ms)
                audit.append("setup:network", actions.USER_ADD, target=username, details={"role": role}, now_ms=now_ms)
                built.logins.append(login)
            if built.logins:
                _, built.token = accounts.create_token(built.logins[0].username, "network setup", now_ms=now_ms)
                audit.append(
                    "setup:network", actions.TOKEN_CREATE, target=built.logins[0].username, now_ms=now_ms
                )
        finally:
            db.close()
        nodes[spec.office] = built
    return Network(root, nodes, items)


def mekong_pilot(*, base_http_port: int = 0) -> list[NodeSpec]:
    """The demo network: centres of TH and LA, two cross-border pairs, one regional feed.

    Mukdahan (TH) faces Savannakhet (LA) across Friendship Bridge 2; Nakhon Phanom (TH)
    faces Thakhek (LA) across Bridge 3 (office_node/data/crossings.json).
    """
    feed = "mekong-border"

    def port(i: int) -> int:
        return base_http_port + i if base_http_port else 0

    return [
        NodeSpec("TH-TCCC", "Thailand Transnational Crime Coordination Centre", "centre", feeds=(feed,), http_port=port(0)),
        NodeSpec("LA-TCCC", "Lao PDR Transnational Crime Coordination Centre", "centre", feeds=(feed,), http_port=port(1)),
        NodeSpec("TH-MUK", "Mukdahan BLO", counterparts=("LA-SVK",), regions=(feed,), feeds=(feed,), http_port=port(2)),
        NodeSpec("LA-SVK", "Savannakhet BLO", counterparts=("TH-MUK",), regions=(feed,), feeds=(feed,), http_port=port(3)),
        NodeSpec("TH-NKP", "Nakhon Phanom BLO", counterparts=("LA-THK",), regions=(feed,), feeds=(feed,), http_port=port(4)),
        NodeSpec("LA-THK", "Thakhek BLO", counterparts=("TH-NKP",), regions=(feed,), feeds=(feed,), http_port=port(5)),
    ]
