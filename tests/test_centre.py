"""The coordination centre on real nodes and a real nats-server: feeds with epoch keys,
forwarding with provenance, handling refusals, triage, joint feeds, the network view."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import nats.js.errors
import pytest

from bus import errors
from bus.transport.server import NatsServer
from office_node.accounts import Accounts
from office_node.network import NodeSpec
from tests.node_helpers import api, build, bulletin_request, eventually, running

FEED = "th-border"
JOINT = "th-la-border"
SPECS = [
    NodeSpec("TH-TCCC", "Thailand TCCC", "centre", feeds=(FEED, JOINT)),
    NodeSpec("LA-TCCC", "Lao TCCC", "centre", feeds=(JOINT,)),
    NodeSpec("TH-MUK", "Mukdahan BLO", feeds=(FEED, JOINT)),
    NodeSpec("TH-NKP", "Nakhon Phanom BLO", feeds=(FEED,)),
    NodeSpec("LA-SVK", "Savannakhet BLO", feeds=(JOINT,)),
]


@pytest.fixture
def network(tmp_path: Path, nats_server: NatsServer):
    net = build(tmp_path / "net", nats_server.url, SPECS)
    for built in net.nodes.values():  # quick heartbeats, so "silent" is seconds away
        text = built.home.config_path.read_text(encoding="utf-8")
        text = re.sub(r"heartbeat_every_s = \d+", "heartbeat_every_s = 0.3", text)
        text = re.sub(r"silent_after_s = \d+", "silent_after_s = 2", text)
        built.home.config_path.write_text(text, encoding="utf-8")
    return net


def analyst_token(daemon) -> str:
    node = daemon.node
    Accounts(node.db).add_user("analyst", "a long analyst password", role="supervisor", now_ms=node.clock())
    _, token = node.accounts.create_token("analyst", "test", now_ms=node.clock())
    return token


def intel(**fields):
    base = {
        "to": [], "feed": FEED, "kind": "strategic_intelligence", "releasable_to": ["TH"],
        "title": "ข่าวกรอง: เส้นทางขนยาเสพติดใหม่", "body": "เครือข่ายเปลี่ยนเส้นทางไปใช้ท่าเรือข้ามฟาก", "entities": [],
    }  # fmt: skip
    return bulletin_request(**{**base, **fields})


async def _feed(client, name: str) -> dict:
    _, body = await client.get("/api/feeds")
    return next((f for f in body["feeds"] if f["name"] == name), {})


async def _has_members(client, name: str, count: int) -> bool:
    return len((await _feed(client, name)).get("members") or []) == count


async def _epoch(client, name: str) -> int | None:
    return (await _feed(client, name)).get("epoch")


async def _has_key(client, name: str, epoch: int) -> bool:
    f = await _feed(client, name)
    return f.get("epoch") == epoch and f.get("have_key") is True


async def _received(client, title: str) -> list[dict]:
    _, page = await client.get("/api/bulletins", params={"direction": "received"})
    return [i for i in page["items"] if i["title"] == title]


async def test_a_removed_member_cannot_open_the_next_epoch_while_the_others_do(network) -> None:
    async with running(network, "TH-TCCC", "TH-MUK", "TH-NKP") as nodes:
        async with (
            api(nodes["TH-TCCC"], analyst_token(nodes["TH-TCCC"])) as tccc,
            api(nodes["TH-MUK"], network["TH-MUK"].token) as muk,
            api(nodes["TH-NKP"], network["TH-NKP"].token) as nkp,
        ):
            status, feed = await tccc.post("/api/feeds", {"name": FEED, "members": ["TH-MUK", "TH-NKP"]})
            assert status == 201 and feed["epoch"] == 1 and feed["members"] == ["TH-MUK", "TH-NKP"]
            for member in (muk, nkp):
                await eventually(lambda m=member: _has_key(m, FEED, 1), 15, "epoch 1's key on the members")
            status, _ = await tccc.post("/api/bulletins", intel(title="epoch one"))
            assert status == 201
            for member in (muk, nkp):
                await eventually(lambda m=member: _received(m, "epoch one"), 15, "epoch 1's bulletin")

            status, feed = await tccc.post(f"/api/feeds/{FEED}/members", {"remove": ["TH-NKP"]})
            assert status == 200 and feed["epoch"] == 2 and feed["members"] == ["TH-MUK"]
            await eventually(lambda: _has_key(muk, FEED, 2), 15, "epoch 2's key on TH-MUK")
            await tccc.post("/api/bulletins", intel(title="epoch two"))
            await eventually(lambda: _received(muk, "epoch two"), 15, "epoch 2's bulletin on TH-MUK")
            quarantine = nodes["TH-NKP"].node.bus.quarantine
            await eventually(lambda: quarantine.counts().get("not_addressed_to_us"), 15, "the refusal on TH-NKP")
            assert await _received(nkp, "epoch two") == []
            assert (FEED, 2) not in nodes["TH-NKP"].node.bus.feed_keys
        actions = [e.action for e in nodes["TH-TCCC"].node.audit.entries(limit=50)]
        assert "feed.create" in actions and "feed.members" in actions


async def test_post_rights_are_the_owning_centres_to_give_and_each_change_is_a_new_epoch(network) -> None:
    async with running(network, "TH-TCCC", "LA-TCCC", "TH-MUK", "TH-NKP") as nodes:
        async with (
            api(nodes["TH-TCCC"], analyst_token(nodes["TH-TCCC"])) as tccc,
            api(nodes["LA-TCCC"], analyst_token(nodes["LA-TCCC"])) as lac,
            api(nodes["TH-MUK"], network["TH-MUK"].token) as muk,
        ):
            status, feed = await tccc.post("/api/feeds", {"name": FEED, "members": ["TH-MUK"]})
            assert status == 201 and feed["writers"] == [] and feed["ungranted"] == []
            await eventually(lambda: _has_key(muk, FEED, 1), 15, "epoch 1's key on TH-MUK")
            feeds = nodes["TH-MUK"].node.feeds
            with pytest.raises(errors.FeedPostForbidden, match="without post rights"):
                feeds.post_epoch(FEED)  # a reader: its own node does not post to the feed
            status, refused = await muk.post("/api/bulletins", intel(title="from a reader"))
            assert status == 422 and refused["error"]["code"] == "not_a_writer"
            status, feed = await tccc.post(f"/api/feeds/{FEED}/writers", {"add": ["TH-MUK"]})
            assert status == 200 and feed["epoch"] == 2 and feed["writers"] == ["TH-MUK"]
            await eventually(lambda: _has_key(muk, FEED, 2), 15, "epoch 2's key on TH-MUK")
            assert (await _feed(muk, FEED))["writers"] == ["TH-MUK"] and feeds.post_epoch(FEED) == 2
            assert feeds.keyring.record(FEED).reason == "writers_changed"
            # The centre posts under its newest epoch, as its own keyring holds it.
            assert nodes["TH-TCCC"].node.feeds.post_epoch(FEED) == 2
            # A writer's bulletin reaches the feed's readers (the centre reads its own feed).
            status, _ = await muk.post("/api/bulletins", intel(title="from a writer"))
            assert status == 201
            await eventually(lambda: _received(tccc, "from a writer"), 15, "the writer's bulletin at the centre")
            status, feed = await tccc.post(f"/api/feeds/{FEED}/members", {"add": ["TH-NKP"], "post": True})
            assert status == 200 and feed["epoch"] == 3 and feed["writers"] == ["TH-MUK", "TH-NKP"]
            status, refused = await tccc.post(f"/api/feeds/{FEED}/writers", {"add": ["TH-CKG"]})
            assert status == 400 and "not a member" in refused["error"]["message"]
            await eventually(lambda: _epoch(lac, FEED), 15, "the feed's record at LA-TCCC")
            status, denied = await lac.post(f"/api/feeds/{FEED}/writers", {"add": ["TH-NKP"]})
            assert status == 403 and denied["error"]["code"] == "not_owner"
        entries = [e for e in nodes["TH-TCCC"].node.audit.entries(limit=50) if e.action == "feed.writers"]
        assert [e.details["add"] for e in entries] == [["TH-MUK"]]


async def test_a_forward_verifies_back_to_the_office_and_refusals_are_audited(network) -> None:
    async with running(network, "TH-TCCC", "TH-MUK", "TH-NKP") as nodes:
        async with (
            api(nodes["TH-TCCC"], analyst_token(nodes["TH-TCCC"])) as tccc,
            api(nodes["TH-MUK"], network["TH-MUK"].token) as muk,
            api(nodes["TH-NKP"], network["TH-NKP"].token) as nkp,
        ):
            await tccc.post("/api/feeds", {"name": FEED, "members": ["TH-MUK", "TH-NKP"]})
            await eventually(lambda: _has_key(nkp, FEED, 1), 15, "the feed key on TH-NKP")
            report = bulletin_request(to=["TH-TCCC"], releasable_to=["TH", "LA"], title="รายงาน: รถบรรทุกยาบ้า")
            _, posted = await muk.post("/api/bulletins", report)
            await eventually(lambda: _received(tccc, report["title"]), 15, "the report at the centre")
            _, queue = await tccc.get("/api/triage")
            assert [i["bulletin_id"] for i in queue["items"]] == [posted["id"]] and queue["counts"]["new"] == 1
            status, item = await tccc.post(f"/api/triage/{posted['id']}", {"state": "in_review", "note": "checking"})
            assert status == 200 and item["state"] == "in_review" and item["notes"][0]["text"] == "checking"
            _, item = await tccc.post(f"/api/triage/{posted['id']}", {"assignee": "analyst"})
            assert item["assignee"] == "analyst" and item["state"] == "in_review"
            _, item = await tccc.post(f"/api/triage/{posted['id']}", {"assignee": None})
            assert item["assignee"] is None
            _, first = await tccc.get("/api/triage", params={"limit": "1"})
            assert [i["bulletin_id"] for i in first["items"]] == [posted["id"]] and first["next"] is None
            for bad, field in (({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"), ({"page": "2"}, "page")):
                status, refused = await tccc.get("/api/triage", params=bad)
                assert status == 400 and refused["error"]["field"] == field, refused

            status, fwd = await tccc.post(f"/api/bulletins/{posted['id']}/forward", {"feed": FEED})
            assert status == 201, fwd
            (got,) = await eventually(lambda: _received(nkp, report["title"]), 15, "the forward on TH-NKP")
            assert got["from"] == "TH-TCCC" and got["verified"] is True
            _, detail = await nkp.get(f"/api/bulletins/{got['id']}")
            provenance = detail["verification"]["provenance"]
            assert provenance["verified"] is True and provenance["original_sender"] == "TH-MUK"
            assert provenance["original_id"] == posted["id"] and provenance["redacted"] is False
            assert provenance["original_sign_kid"] == network["TH-MUK"].identity.signing.kid.hex()
            _, item = await tccc.get(f"/api/triage/{posted['id']}")
            assert item["state"] == "disseminated"

            status, red = await tccc.post(
                f"/api/bulletins/{posted['id']}/forward", {"feed": FEED, "redact": ["entities[1]"], "tags": ["redacted"]}
            )
            assert status == 201, red
            await eventually(lambda: len(_received_sync(nodes["TH-NKP"], report["title"])) == 2, 15, "the redacted forward")
            redacted = next(i for i in _received_sync(nodes["TH-NKP"], report["title"]) if i.id == red["id"])
            assert redacted.verification["provenance"]["redacted"] is True
            assert redacted.verification["provenance"]["verified"] is False
            assert redacted.verification["provenance"]["text"].startswith("TH-TCCC's own words")
            assert [e["type"] for e in redacted.bulletin["entities"]] == ["vehicle"]

            strict = bulletin_request(to=["TH-TCCC"], tlp="AMBER+STRICT", releasable_to=["TH"], title="strict")
            _, strict_posted = await muk.post("/api/bulletins", strict)
            await eventually(lambda: _received(tccc, "strict"), 15, "the strict report")
            status, refused = await tccc.post(f"/api/bulletins/{strict_posted['id']}/forward", {"feed": FEED})
            assert status == 422 and refused["error"]["code"] == "tlp_no_feed"
            status, refused = await tccc.post(
                f"/api/bulletins/{posted['id']}/forward", {"feed": FEED, "precedence": "ROUTINE"}
            )
            assert status == 422 and refused["error"]["code"] == "precedence_downgrade"
        audit = nodes["TH-TCCC"].node.audit.entries(limit=60)
        rules = {e.details["rule"] for e in audit if e.action == "bulletin.refused"}
        assert rules == {"tlp_no_feed", "precedence_downgrade"}
        assert sum(1 for e in audit if e.action == "bulletin.forward") == 2


def _received_sync(daemon, title: str):
    from office_node.store import BulletinQuery

    page = daemon.node.store.list_bulletins(BulletinQuery(direction="received", limit=50))
    return [b for b in page.items if b.title == title]


async def test_a_member_offline_during_two_rotations_catches_up(network) -> None:
    async with running(network, "TH-TCCC", "TH-MUK") as nodes:
        async with (
            api(nodes["TH-TCCC"], analyst_token(nodes["TH-TCCC"])) as tccc,
            api(nodes["TH-MUK"], network["TH-MUK"].token) as muk,
        ):
            await tccc.post("/api/feeds", {"name": FEED, "members": ["TH-MUK", "TH-NKP"]})
            await eventually(lambda: _has_key(muk, FEED, 1), 15, "epoch 1 on TH-MUK")
            for epoch in (2, 3):  # TH-NKP is offline all along
                status, feed = await tccc.post(f"/api/feeds/{FEED}/rotate")
                assert status == 200 and feed["epoch"] == epoch
                await eventually(lambda e=epoch: _has_key(muk, FEED, e), 15, f"epoch {epoch} on TH-MUK")
                await tccc.post("/api/bulletins", intel(title=f"while away {epoch}"))
            async with running(network, "TH-NKP") as late, api(late["TH-NKP"], network["TH-NKP"].token) as nkp:
                for epoch in (2, 3):
                    await eventually(lambda e=epoch: _received(nkp, f"while away {e}"), 20, f"epoch {epoch}'s bulletin")
                assert {(FEED, 2), (FEED, 3)} <= set(late["TH-NKP"].node.bus.feed_keys)


async def test_on_a_joint_feed_each_centre_manages_only_its_own_country(network) -> None:
    async with running(network, "TH-TCCC", "LA-TCCC", "TH-MUK", "LA-SVK") as nodes:
        async with (
            api(nodes["TH-TCCC"], analyst_token(nodes["TH-TCCC"])) as th,
            api(nodes["LA-TCCC"], analyst_token(nodes["LA-TCCC"])) as la,
            api(nodes["LA-SVK"], network["LA-SVK"].token) as svk,
        ):
            status, _ = await th.post("/api/feeds", {"name": JOINT, "members": ["TH-MUK"], "scope": ["TH", "LA"]})
            assert status == 201
            status, denied = await th.post(f"/api/feeds/{JOINT}/members", {"add": ["LA-SVK"]})
            assert status == 403 and denied["error"]["code"] == "other_country"
            await eventually(lambda: _epoch(la, JOINT), 15, "the joint feed's record at LA-TCCC")
            status, denied = await la.post(f"/api/feeds/{JOINT}/members", {"add": ["TH-NKP"]})
            assert status == 403 and denied["error"]["code"] == "other_country"
            status, asked = await la.post(f"/api/feeds/{JOINT}/members", {"add": ["LA-SVK"]})
            assert status == 200 and asked["requested_from"] == "TH-TCCC"
            await eventually(lambda: _has_key(svk, JOINT, 2), 20, "LA-SVK's key to the joint feed")
            joint = await _feed(th, JOINT)
            assert joint["members"] == ["LA-SVK", "TH-MUK"]
            note = intel(feed=JOINT, releasable_to=["TH", "LA"], title="ແຈ້ງການຮ່ວມ: ຊາຍແດນ")
            status, _ = await th.post("/api/bulletins", note)
            assert status == 201
            await eventually(lambda: _received(svk, note["title"]), 15, "the joint bulletin on LA-SVK")
            # Releasable to TH only: never on a cross-border feed.
            status, refused = await th.post("/api/bulletins", {**note, "releasable_to": ["TH"]})
            assert status == 422 and refused["error"]["code"] == "not_releasable"
        entries = nodes["TH-TCCC"].node.audit.entries(limit=50)
        assert any(e.actor == "centre:LA-TCCC" and e.action == "feed.members" for e in entries)


async def test_a_stopped_office_shows_as_silent_on_the_network_view(network) -> None:
    async with running(network, "TH-TCCC", "TH-MUK", "TH-NKP") as nodes:
        async with api(nodes["TH-TCCC"], network["TH-TCCC"].token) as tccc:

            async def states() -> dict[str, str]:
                _, view = await tccc.get("/api/network")
                return {o["office"]: o["state"] for o in view["offices"]}

            await eventually(lambda: _all_online(states()), 15, "both offices online")
            await nodes["TH-NKP"].stop(drain_s=0)
            started = time.monotonic()
            await eventually(lambda: _silent(states(), "TH-NKP"), 15, "TH-NKP silent")
            assert time.monotonic() - started >= 1.0  # not before the threshold
            _, view = await tccc.get("/api/network")
            nkp = next(o for o in view["offices"] if o["office"] == "TH-NKP")
            assert "silent" in nkp["flags"] and len(nkp["days"]) == 7
            assert next(o for o in view["offices"] if o["office"] == "TH-MUK")["state"] == "online"
            assert view["country"] == "TH" and {o["office"] for o in view["offices"]} == {"TH-MUK", "TH-NKP"}
        async with api(nodes["TH-MUK"], network["TH-MUK"].token) as muk:
            status, refused = await muk.get("/api/network")
            assert status == 403 and refused["error"]["code"] == "not_centre"


async def _all_online(states) -> bool:
    s = await states
    return s.get("TH-MUK") == "online" and s.get("TH-NKP") == "online"


async def _silent(states, office: str) -> bool:
    return (await states).get(office) == "silent"


async def test_a_revoked_member_is_removed_from_every_feed_at_once(network) -> None:
    from bus.directory import revoke_key

    async with running(network, "TH-TCCC", "TH-MUK") as nodes:
        async with api(nodes["TH-TCCC"], analyst_token(nodes["TH-TCCC"])) as tccc, api(nodes["TH-MUK"], network["TH-MUK"].token) as muk:
            await tccc.post("/api/feeds", {"name": FEED, "members": ["TH-MUK", "TH-NKP"]})
            await eventually(lambda: _has_key(muk, FEED, 1), 15, "epoch 1 on TH-MUK")
            centre = nodes["TH-TCCC"].node
            nkp = network["TH-NKP"].identity
            # What `blo directory revoke` puts in the bucket, arriving at the centre's directory.
            centre.directory.apply(
                revoke_key(network["TH-TCCC"].identity, "TH-NKP", nkp.signing.kid, revoked_at=centre.clock(), reason="laptop stolen"),
                witnessed_at=centre.clock(),
            )
            feed = await eventually(lambda: _epoch_is(tccc, 2), 15, "a new epoch without TH-NKP")
            assert feed["members"] == ["TH-MUK"]
            await eventually(lambda: _has_key(muk, FEED, 2), 15, "epoch 2 on TH-MUK")
            assert (FEED, 2) in centre.bus.feed_keys


async def _epoch_is(client, epoch: int) -> dict | None:
    feed = await _feed(client, FEED)
    return feed if feed.get("epoch") == epoch else None


async def test_an_office_added_to_a_feed_reads_it_from_its_joining_and_stops_when_removed(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    specs = [
        NodeSpec("TH-TCCC", "Thailand TCCC", "centre", feeds=(FEED,)),
        NodeSpec("TH-MUK", "Mukdahan BLO"),  # no [feeds] subscribe line on either office
        NodeSpec("TH-NKP", "Nakhon Phanom BLO"),
    ]
    net = build(tmp_path / "net", nats_server.url, specs)
    async with running(net, "TH-TCCC", "TH-MUK", "TH-NKP") as nodes:
        async with (
            api(nodes["TH-TCCC"], analyst_token(nodes["TH-TCCC"])) as tccc,
            api(nodes["TH-MUK"], net["TH-MUK"].token) as muk,
            api(nodes["TH-NKP"], net["TH-NKP"].token) as nkp,
        ):
            assert FEED not in nodes["TH-NKP"].node.bus.feeds
            await tccc.post("/api/feeds", {"name": FEED, "members": ["TH-MUK"]})
            await tccc.post("/api/bulletins", intel(title="before TH-NKP joined"))
            await eventually(lambda: _received(muk, "before TH-NKP joined"), 15, "the first bulletin on TH-MUK")
            # The cut is made at the joining epoch's time less a clock-skew margin (five
            # minutes); with no margin, the cut shows within this test's seconds.
            nodes["TH-NKP"].node.feeds.clock_skew_ms = 0
            status, feed = await tccc.post(f"/api/feeds/{FEED}/members", {"add": ["TH-NKP"]})
            assert status == 200 and feed["epoch"] == 2
            await eventually(lambda: _has_key(nkp, FEED, 2), 15, "epoch 2's key on TH-NKP")
            assert (await _feed(nkp, FEED))["subscribed"] is True
            await tccc.post("/api/bulletins", intel(title="after TH-NKP joined"))
            await eventually(lambda: _received(nkp, "after TH-NKP joined"), 15, "the new member's first bulletin")
            await eventually(lambda: _received(muk, "after TH-NKP joined"), 15, "the same on TH-MUK")
            # The bulletin sealed before its joining never reached it: not received, and
            # not in its quarantine (it would have been, as not addressed to it).
            assert await _received(nkp, "before TH-NKP joined") == []
            assert nodes["TH-NKP"].node.bus.quarantine.counts() == {}

            # Removed: it reads on until caught up, then stops; what is sealed after the
            # removal neither reaches it nor fills its quarantine, and its consumers go.
            bus = nodes["TH-NKP"].node.bus
            status, feed = await tccc.post(f"/api/feeds/{FEED}/members", {"remove": ["TH-NKP"]})
            assert status == 200 and feed["epoch"] == 3
            keyring = nodes["TH-NKP"].node.feeds.keyring
            # (Had the bulletin beaten the record here, it would wait as feed_key_pending and
            # then stay quarantined as not addressed to it: the known race of any new epoch.)
            await eventually(lambda: keyring.current_epoch(FEED) == 3, 15, "epoch 3's record on TH-NKP")
            await tccc.post("/api/bulletins", intel(title="after TH-NKP left"))
            await eventually(lambda: _received(muk, "after TH-NKP left"), 15, "the bulletin after the removal on TH-MUK")
            await eventually(lambda: FEED not in bus.feeds, 20, "TH-NKP to stop reading the feed")
            js = bus.client.jetstream()
            for precedence in ("flash", "routine"):
                with pytest.raises(nats.js.errors.NotFoundError):
                    await js.consumer_info("BLO_FEEDS", f"feed-{FEED}-TH-NKP-{precedence}")
            assert await _received(nkp, "after TH-NKP left") == [] and bus.quarantine.counts() == {}

            # Added again: read again from the new joining, not the old one.
            status, feed = await tccc.post(f"/api/feeds/{FEED}/members", {"add": ["TH-NKP"]})
            assert status == 200 and feed["epoch"] == 4
            await eventually(lambda: FEED in bus.feeds, 15, "TH-NKP to read the feed again")
            await tccc.post("/api/bulletins", intel(title="after TH-NKP rejoined"))
            await eventually(lambda: _received(nkp, "after TH-NKP rejoined"), 15, "the bulletin after the new joining")
            assert await _received(nkp, "after TH-NKP left") == [] and bus.quarantine.counts() == {}


async def test_a_joint_feed_request_applies_what_it_can_and_the_requester_sees_each_offices_outcome(network) -> None:
    """LA-TCCC asks for an office already a member, one that can join and one unknown: the
    one that can join joins, and LA-TCCC's CLI prints what became of each (exit 1: one refused)."""
    from click.testing import CliRunner

    from office_node.cli import cli

    async with running(network, "TH-TCCC", "LA-TCCC", "TH-MUK", "LA-SVK") as nodes:
        la_token = analyst_token(nodes["LA-TCCC"])
        async with api(nodes["TH-TCCC"], analyst_token(nodes["TH-TCCC"])) as th, api(nodes["LA-TCCC"], la_token) as la:
            status, _ = await th.post("/api/feeds", {"name": JOINT, "members": ["TH-MUK"], "scope": ["TH", "LA"]})
            assert status == 201
            await eventually(lambda: _epoch(la, JOINT), 15, "the joint feed's record at LA-TCCC")
            status, _ = await la.post(f"/api/feeds/{JOINT}/members", {"add": ["LA-SVK"]})
            assert status == 200
            await eventually(lambda: _has_members(th, JOINT, 2), 20, "LA-SVK on the joint feed")

            args = ["--home", str(network["LA-TCCC"].home.root), "feed", "add", JOINT, "LA-SVK", "LA-TCCC", "LA-GHOST",
                    "--url", nodes["LA-TCCC"].url, "--token", la_token]  # fmt: skip
            result = await asyncio.to_thread(CliRunner().invoke, cli, args, catch_exceptions=False)
            assert result.exit_code == 1, result.output
            lines = result.output.splitlines()
            assert any(re.fullmatch(r"\s*LA-SVK\s+add\s+already a member", line) for line in lines), result.output
            assert any(re.fullmatch(r"\s*LA-TCCC\s+add\s+added", line) for line in lines), result.output
            assert any(re.match(r"\s*LA-GHOST\s+add\s+refused: .*LA-GHOST", line) for line in lines), result.output
            assert (await _feed(th, JOINT))["members"] == ["LA-SVK", "LA-TCCC", "TH-MUK"]
            (latest, *_) = (await _feed(la, JOINT))["requests"]
            assert {o["office"]: o["result"] for o in latest["outcomes"]} == {
                "LA-SVK": "already_member", "LA-TCCC": "added", "LA-GHOST": "refused"}  # fmt: skip

            # Everything refused: nothing changes, and the requester is still told.
            status, asked = await la.post(f"/api/feeds/{JOINT}/members", {"remove": ["LA-GHOST"]})
            assert status == 200

            async def answered() -> dict | None:
                found = [r for r in (await _feed(la, JOINT))["requests"] if r["id"] == asked["request_id"]]
                return found[0] if found and found[0]["answered_at"] else None

            entry = await eventually(answered, 20, "the owner's answer to the removal")
            assert entry["epoch"] is None and entry["outcomes"][0]["result"] == "not_member"
