"""Whole nodes under their generated least-privilege NATS users (`blo deploy nats-auth`):
a centre and two offices on a server that enforces the users, streams created by the
operator, and every job still works: post and receipts, the directory bucket, feed epoch
keys, forwarding, heartbeats and the network view. A grant missing from
bus/transport/permissions.py stalls a job here and a bounded wait fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bus.transport.permissions import inbox_prefix, node_access, parse_feed
from office_node.accounts import Accounts
from office_node.network import NodeSpec
from tests.deploy_helpers import Keys, secured_server
from tests.node_helpers import api, build, bulletin_request, eventually, running

pytestmark = pytest.mark.timeout(120)
FEED = "th-border"
SPECS = [
    NodeSpec("TH-TCCC", "Thailand TCCC", "centre", feeds=(FEED,)),
    NodeSpec("TH-MUK", "Mukdahan BLO", feeds=(FEED,)),
    NodeSpec("TH-NKP", "Nakhon Phanom BLO", feeds=(FEED,)),
]


@pytest.fixture
def secured(tmp_path: Path):
    keys = Keys(tmp_path / "keys")
    accesses = node_access(
        [(s.office, s.role) for s in SPECS], [parse_feed(f"{FEED}=TH-MUK,TH-NKP")]
    )
    server = secured_server(tmp_path, accesses, keys)
    try:
        network = build(tmp_path / "net", server.url, SPECS)
        for office, built in network.nodes.items():
            text = built.home.config_path.read_text(encoding="utf-8")
            restricted = (
                f'nkey_seed = "{keys.seeds[office]}"\ninbox_prefix = "{inbox_prefix(office)}"\ncreate_streams = false\n'
            )
            text = re.sub(r"(urls = \[[^\]]*\]\n)", lambda m, extra=restricted: m.group(1) + extra, text, count=1)
            text = re.sub(r"heartbeat_every_s = \d+", "heartbeat_every_s = 0.5", text)
            built.home.config_path.write_text(text, encoding="utf-8")
        yield network
    finally:
        server.stop()


async def test_a_centre_and_its_offices_do_every_job_under_their_generated_users(secured) -> None:
    network = secured
    async with running(network, "TH-TCCC", "TH-MUK", "TH-NKP") as nodes:
        centre = nodes["TH-TCCC"].node
        assert centre.config.nats.create_streams is False and centre.config.nats.nkey_seed is not None
        Accounts(centre.db).add_user("analyst", "a long analyst password", role="supervisor", now_ms=centre.clock())
        _, token = centre.accounts.create_token("analyst", "t", now_ms=centre.clock())
        async with (
            api(nodes["TH-TCCC"], token) as tccc,
            api(nodes["TH-MUK"], network["TH-MUK"].token) as muk,
            api(nodes["TH-NKP"], network["TH-NKP"].token) as nkp,
        ):
            status, _ = await tccc.post("/api/feeds", {"name": FEED, "members": ["TH-MUK", "TH-NKP"]})
            assert status == 201

            async def has_key(client) -> bool:
                _, feeds = await client.get("/api/feeds")
                return any(f["name"] == FEED and f["have_key"] for f in feeds["feeds"])

            await eventually(lambda: has_key(nkp), 20, "the feed key at TH-NKP (feed bucket read grants)")
            report = bulletin_request(to=["TH-TCCC"], releasable_to=["TH"], title="รายงานใต้สิทธิ์จำกัด")
            _, posted = await muk.post("/api/bulletins", report)

            async def at_centre() -> bool:
                status, _ = await tccc.get(f"/api/bulletins/{posted['id']}")
                return status == 200

            await eventually(at_centre, 20, "the report at the centre (office inbox grants)")

            async def delivered() -> bool:
                _, d = await muk.get(f"/api/bulletins/{posted['id']}")
                return d["receipts"][0]["state"] == "delivered"

            await eventually(delivered, 20, "the receipt back at TH-MUK (receipt grants)")
            status, fwd = await tccc.post(f"/api/bulletins/{posted['id']}/forward", {"feed": FEED})
            assert status == 201

            async def forwarded() -> bool:
                _, page = await nkp.get("/api/bulletins", params={"feed": FEED})
                return any(i["id"] == fwd["id"] for i in page["items"])

            await eventually(forwarded, 20, "the forward at TH-NKP (feed consumer grants)")

            async def both_online() -> bool:
                _, view = await tccc.get("/api/network")
                return {o["office"]: o["state"] for o in view["offices"]} == {"TH-MUK": "online", "TH-NKP": "online"}

            await eventually(both_online, 20, "heartbeats at the centre (heartbeat grants)")
        for daemon in nodes.values():  # a feed bulletin that beat its key is opened once the key is in
            await eventually(lambda q=daemon.node.bus.quarantine: q.counts() == {}, 10, "an empty quarantine")
