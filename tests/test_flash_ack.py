"""A FLASH is acknowledged by a person, not only delivered by a machine: until an
officer at the recipient acknowledges it, the sender sees "delivered, not acknowledged"
and the recipient's centre, then the sender's own centre, are told. Real nodes on a
real nats-server."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from bus.transport.outbox import BulletinStatus, RecipientStatus
from bus.transport.server import NatsServer
from office_node.flash import OWN_CENTRE, RECIPIENT_CENTRE, FlashTimers, Notice, due_notices
from tests.node_helpers import api, build, bulletin_request, eventually, running

BLO = str(Path(sys.executable).parent / "blo")
FLASH = bulletin_request(precedence="FLASH", kind="alert", title="FLASH: ผู้ต้องสงสัยกำลังข้ามสะพาน")
CENTRES = {"TH": "TH-TCCC", "LA": "LA-TCCC"}


def _status(posted_at: int, **states: str) -> BulletinStatus:
    return BulletinStatus("B", "FLASH", posted_at, {r: RecipientStatus(r, s) for r, s in states.items()}, None)


def test_notices_fall_due_by_the_stated_timers_once_per_centre_and_never_to_a_centre_about_itself() -> None:
    timers = FlashTimers(recipient_centre_after_s=120, own_centre_after_s=600)
    status = _status(0, **{"LA-SVK": "delivered", "LA-THK": "read", "LA-TCCC": "sent", "TH-NKP": "acknowledged",
                           "feed:mekong-border": "sent"})  # fmt: skip

    def due(now_s: float, already=()):
        return due_notices(status, sender="TH-MUK", centre_of=lambda o: CENTRES[o[:2]], timers=timers,
                           now_ms=int(now_s * 1000), already=already)  # fmt: skip

    assert due(119) == []
    assert due(120) == [Notice("B", RECIPIENT_CENTRE, "LA-TCCC", ("LA-SVK", "LA-THK"))]
    assert due(599, already=[(RECIPIENT_CENTRE, "LA-TCCC")]) == []
    assert due(600, already=[(RECIPIENT_CENTRE, "LA-TCCC")]) == [
        Notice("B", OWN_CENTRE, "TH-TCCC", ("LA-SVK", "LA-TCCC", "LA-THK"))
    ]
    everyone = _status(0, **{"LA-SVK": "acknowledged"})
    assert due_notices(everyone, sender="TH-MUK", centre_of=lambda o: CENTRES[o[:2]], timers=timers, now_ms=10**6) == []
    # A centre's own FLASH: nobody to tell at home.
    assert [n.centre for n in due_notices(status, sender="TH-TCCC", centre_of=lambda o: CENTRES[o[:2]],
                                           timers=timers, now_ms=10**6)] == ["LA-TCCC"]  # fmt: skip


@pytest.fixture
def network(tmp_path: Path, nats_server: NatsServer):
    net = build(tmp_path / "net", nats_server.url)
    toml = net["TH-MUK"].home.root / "node.toml"
    text = toml.read_text(encoding="utf-8")
    text = text.replace("ack_timeout_s = 120 ", "ack_timeout_s = 1 ").replace("own_centre_after_s = 600 ", "own_centre_after_s = 2 ")
    toml.write_text(text, encoding="utf-8")
    return net


async def _notices(client, sender: str) -> list[dict]:
    _, page = await client.get("/api/bulletins", params={"direction": "received"})
    return [b for b in page["items"] if b["from"] == sender and b["kind"] == "alert" and "acknowledged" in b["title"]]


async def test_a_flash_escalates_to_both_centres_until_an_officer_acknowledges_it(network) -> None:
    async with running(network, "TH-TCCC", "LA-TCCC", "TH-MUK", "LA-SVK", flash_ack_timeout_s=1.0) as nodes:
        tokens = {o: network[o].token for o in nodes}
        async with (
            api(nodes["TH-MUK"], tokens["TH-MUK"]) as muk, api(nodes["LA-SVK"], tokens["LA-SVK"]) as svk,
            api(nodes["LA-TCCC"], tokens["LA-TCCC"]) as la_centre, api(nodes["TH-TCCC"], tokens["TH-TCCC"]) as th_centre,
        ):  # fmt: skip
            status, posted = await muk.post("/api/bulletins", FLASH)
            assert status == 201
            bid = posted["id"]

            async def muk_state() -> str:
                _, detail = await muk.get(f"/api/bulletins/{bid}")
                return detail["receipts"][0]["state"]

            # LA-SVK's node took it in; no person there has acknowledged it.
            await eventually(lambda: _is(muk_state(), "delivered"), 15, "the delivered receipt")
            (la_notice,) = await eventually(lambda: _notices(la_centre, "TH-MUK"), 15, "the notice to LA-TCCC")
            assert la_notice["precedence"] == "FLASH" and "LA-SVK" in la_notice["title"]
            _, full = await la_centre.get(f"/api/bulletins/{la_notice['id']}")
            assert bid in full["bulletin"]["body"] and "flash-unacknowledged" in full["bulletin"]["tags"]
            assert FLASH["body"] not in full["bulletin"]["body"]  # names the FLASH, carries none of it
            (_th_notice,) = await eventually(lambda: _notices(th_centre, "TH-MUK"), 15, "the notice to TH-TCCC")
            _, detail = await muk.get(f"/api/bulletins/{bid}")
            assert [(e["level"], e["centre"]) for e in detail["escalations"]] == [
                ("recipient_centre", "LA-TCCC"), ("own_centre", "TH-TCCC")
            ]
            assert await muk_state() == "delivered"

            # An officer at Savannakhet acknowledges it.
            status, acked = await svk.post(f"/api/bulletins/{bid}/ack")
            assert status == 200 and acked["first"] is True and acked["acknowledged"]["by"]
            await eventually(lambda: _is(muk_state(), "acknowledged"), 15, "the acknowledgement on TH-MUK")
            _, detail = await muk.get(f"/api/bulletins/{bid}")
            assert detail["receipts"][0]["acknowledged_at"] is not None
            _, seen = await svk.get(f"/api/bulletins/{bid}")
            assert seen["acknowledged"] == acked["acknowledged"] and seen["read"] is True
            status, again = await svk.post(f"/api/bulletins/{bid}/ack")
            assert again["first"] is False
            await eventually(lambda: bid not in nodes["TH-MUK"].node.bus.outbox.flash_watch_ids(), 10, "the watch to settle")
            await asyncio.sleep(1.5)
            assert len(await _notices(la_centre, "TH-MUK")) == 1 and len(await _notices(th_centre, "TH-MUK")) == 1

            # Only a FLASH received here is acknowledged.
            _, routine = await muk.post("/api/bulletins", bulletin_request())
            await eventually(lambda: _has(svk, routine["id"]), 15, "the routine bulletin")
            status, refused = await svk.post(f"/api/bulletins/{routine['id']}/ack")
            assert status == 400 and "only a FLASH" in refused["error"]["message"]
            status, refused = await muk.post(f"/api/bulletins/{bid}/ack")
            assert status == 400
        svk_audit = [(e.action, e.target) for e in nodes["LA-SVK"].node.audit.entries(limit=50)]
        assert ("flash.acknowledge", bid) in svk_audit
        muk_audit = [(e.actor, e.action, e.target) for e in nodes["TH-MUK"].node.audit.entries(limit=50)]
        assert ("office:LA-SVK", "flash.acknowledged", bid) in muk_audit
        assert sum(1 for _, action, _ in muk_audit if action == "flash.escalation") == 2


async def test_blo_ack_acknowledges_a_flash_from_the_cli(network) -> None:
    async with running(network, "TH-MUK", "LA-SVK") as nodes:
        async with api(nodes["TH-MUK"], network["TH-MUK"].token) as muk, api(nodes["LA-SVK"], network["LA-SVK"].token) as svk:
            _, posted = await muk.post("/api/bulletins", FLASH)
            bid = posted["id"]
            await eventually(lambda: _has(svk, bid), 15, "the FLASH on LA-SVK")
            base = ("--home", str(network["LA-SVK"].home.root), "ack", bid, "--url", nodes["LA-SVK"].url,
                    "--token", network["LA-SVK"].token)  # fmt: skip
            proc = await asyncio.create_subprocess_exec(BLO, *base, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out = (await proc.communicate())[0].decode()
            assert proc.returncode == 0 and out.startswith(f"acknowledged {bid}"), out

            async def acknowledged() -> bool:
                _, detail = await muk.get(f"/api/bulletins/{bid}")
                return detail["receipts"][0]["state"] == "acknowledged"

            await eventually(acknowledged, 15, "the acknowledgement on TH-MUK")
            proc = await asyncio.create_subprocess_exec(BLO, *base, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out = (await proc.communicate())[0].decode()
            assert proc.returncode == 0 and "already acknowledged by" in out and "Z" in out, out


async def _is(awaitable, value) -> bool:
    return await awaitable == value


async def _has(client, bid: str) -> bool:
    status, _ = await client.get(f"/api/bulletins/{bid}")
    return status == 200
