"""Whole nodes under their generated least-privilege NATS users (`blo deploy nats-auth`):
a centre and two offices on a server that enforces the users, streams created by the
operator, and every job still works: post and receipts, the directory bucket, feed epoch
keys, forwarding, heartbeats and the network view. A grant missing from
bus/transport/permissions.py stalls a job here and a bounded wait fails."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from bus.testing import DeterministicRng
from bus.transport.object_store import bucket_list_json
from bus.transport.permissions import inbox_prefix, node_access, parse_feed
from office_node.accounts import Accounts
from office_node.cli import cli
from office_node.network import NodeSpec
from tests.deploy_helpers import Keys, secured_server
from tests.node_helpers import api, build, bulletin_request, eventually, running
from tests.test_attachments_nodes import post_files

pytestmark = pytest.mark.timeout(120)
FEED = "th-border"
SPECS = [
    NodeSpec("TH-TCCC", "Thailand TCCC", "centre", feeds=(FEED,)),
    NodeSpec("TH-MUK", "Mukdahan BLO", feeds=(FEED,)),
    NodeSpec("TH-NKP", "Nakhon Phanom BLO", feeds=(FEED,)),
]


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path / "keys")


@pytest.fixture
def secured(tmp_path: Path, keys: Keys):
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


async def test_files_go_between_nodes_under_their_generated_users_once_deploy_streams_made_the_buckets(
    secured, keys: Keys, tmp_path: Path
) -> None:
    network = secured
    scan = (b"%PDF-1.4\n" + DeterministicRng("scan")(700_000))[:700_000]
    async with running(network, "TH-TCCC", "TH-MUK") as nodes:
        url = network["TH-MUK"].home.config().nats.urls[0]
        async with api(nodes["TH-MUK"], network["TH-MUK"].token) as muk:
            report = bulletin_request(to=["TH-TCCC"], releasable_to=["TH"], title="สแกนใต้สิทธิ์จำกัด")
            status, posted = await post_files(muk, report, [("scan.pdf", scan)])
            assert status == 201, posted

            async def told_to_create_buckets() -> bool:
                _, view = await muk.get(f"/api/bulletins/{posted['id']}")
                return "blo deploy streams --buckets" in (view["attachments"][0]["uploads"][0]["error"] or "")

            # The nodes may not create the buckets: the sender says who must, and waits.
            await eventually(told_to_create_buckets, 20, "the upload naming the missing bucket")
            buckets = tmp_path / "buckets.json"
            buckets.write_text(bucket_list_json([s.office for s in SPECS], [FEED]))
            args = ["deploy", "streams", "--nats", url, "--nkey-seed", str(keys.seeds["admin"]), "--replicas", "1",
                    "--buckets", str(buckets), "--bucket-mib", "64"]  # fmt: skip
            made = await asyncio.to_thread(CliRunner().invoke, cli, args)  # the command runs its own event loop
            assert made.exit_code == 0, made.output
            assert "created OBJ_blo-att-office-TH-TCCC (bucket blo-att-office-TH-TCCC, replicas 1)" in made.output
            assert "updated BLO_OFFICES" in made.output  # the hub's streams were there: brought to the plan
            centre = nodes["TH-TCCC"].node

            def whole_at_centre() -> bool:
                return [d.state for d in centre.attachments.transfers.downloads(posted["id"])] == ["complete"]

            await eventually(whole_at_centre, 45, "the file at the centre (bucket write and read grants)")
            entry = centre.attachments.transfers.downloads(posted["id"])[0].entry
            assert hashlib.sha256(b"".join(centre.attachments.plaintext(entry))).digest() == hashlib.sha256(scan).digest()
