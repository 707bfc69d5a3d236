"""Lookouts on real nodes: border checks (also offline), expiry, hits and hit notices
to the originator, and a centre's watch list with bad rows."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from bus.transport.server import NatsServer
from tests.node_helpers import api, build, bulletin_request, eventually, running

LOOKOUT = bulletin_request(
    kind="lookout",
    precedence="FLASH",
    title="เฝ้าระวัง: หนังสือเดินทางปลอม",
    entities=[{"type": "document", "doc_type": "passport", "number": "P0847211", "country": "LA", "status": "forged"}],
)
BLO = str(Path(sys.executable).parent / "blo")
DOC = {"type": "document", "doc_type": "passport", "number": "p-0847 211", "country": "LA"}


@pytest.fixture
def network(tmp_path: Path, nats_server: NatsServer):
    return build(tmp_path / "net", nats_server.url)


async def _has(client, bid: str) -> bool:
    status, _ = await client.get(f"/api/bulletins/{bid}")
    return status == 200


async def test_a_check_matches_however_the_number_is_typed_and_works_with_the_link_down(
    network, nats_server: NatsServer
) -> None:
    async with running(network, "TH-MUK", "LA-SVK") as nodes:
        async with api(nodes["TH-MUK"], network["TH-MUK"].token) as muk, api(nodes["LA-SVK"], network["LA-SVK"].token) as svk:
            _, posted = await muk.post("/api/bulletins", LOOKOUT)
            await eventually(lambda: _has(svk, posted["id"]), 15, "the lookout on LA-SVK")
            nats_server.stop()  # the border post loses its link
            await eventually(lambda: not nodes["LA-SVK"].node.bus.connected, 10, "the link to drop")
            status, result = await svk.post("/api/check", DOC)
            assert status == 200 and result["flagged"] is True
            (match,) = result["matches"]
            assert match["bulletin_id"] == posted["id"] and match["sender"] == "TH-MUK"
            assert match["grading"] == "B2" and match["precedence"] == "FLASH" and match["strength"] == "exact"
            assert match["entity"]["number"] == "P0847211" and match["title"] == LOOKOUT["title"]
            status, other = await svk.post("/api/check", {**DOC, "country": "TH"})  # another country's passport
            assert other["flagged"] is False
            status, bad = await svk.post("/api/check", {"type": "document"})
            assert status == 400 and bad["error"]["field"]
        entries = nodes["LA-SVK"].node.audit.entries(limit=20)
        checks = [e for e in entries if e.action == "check"]
        assert len(checks) == 2 and "P-0847 211" in checks[-1].target.upper()
        assert checks[-1].details["matches"] == [posted["id"]]


async def test_an_expired_lookout_stops_matching(network) -> None:
    async with running(network, "TH-MUK", "LA-SVK") as nodes:
        async with api(nodes["TH-MUK"], network["TH-MUK"].token) as muk, api(nodes["LA-SVK"], network["LA-SVK"].token) as svk:
            expires = int(time.time() * 1000) + 2500
            _, posted = await muk.post("/api/bulletins", {**LOOKOUT, "expires": expires})
            await eventually(lambda: _has(svk, posted["id"]), 15, "the lookout")
            _, before = await svk.post("/api/check", DOC)
            assert before["flagged"] is True
            await asyncio.sleep(max(0.0, expires / 1000 - time.time()) + 0.2)
            _, after = await svk.post("/api/check", DOC)
            assert after["flagged"] is False


async def test_a_bulletin_naming_a_lookouts_subject_raises_a_hit_and_a_notice_reaches_the_originator(network) -> None:
    async with running(network, "TH-MUK", "LA-SVK") as nodes:
        async with api(nodes["TH-MUK"], network["TH-MUK"].token) as muk, api(nodes["LA-SVK"], network["LA-SVK"].token) as svk:
            _, lookout = await muk.post("/api/bulletins", LOOKOUT)
            await eventually(lambda: _has(svk, lookout["id"]), 15, "the lookout on LA-SVK")
            # An officer at Savannakhet reports an incident naming the same passport.
            incident = bulletin_request(
                to=["LA-TCCC"], title="ສະກັດກັ້ນຜູ້ໂດຍສານ", body="ຖືໜັງສືຜ່ານແດນປອມ",
                entities=[{"type": "document", "doc_type": "passport", "number": "P 0847211", "country": "LA"}],
            )  # fmt: skip
            status, posted = await svk.post("/api/bulletins", incident)
            assert status == 201
            _, hits = await svk.get("/api/hits")
            (hit,) = hits["items"]
            assert hit["bulletin_id"] == posted["id"] and hit["lookout_id"] == lookout["id"]
            assert hit["notice"] == "sent" and hit["notice_id"]

            async def notice_on_muk():
                _, page = await muk.get("/api/bulletins", params={"in_reply_to": lookout["id"]})
                return page["items"]

            (notice,) = await eventually(notice_on_muk, 15, "the hit notice on TH-MUK")
            assert notice["id"] == hit["notice_id"] and notice["from"] == "LA-SVK"
            assert notice["kind"] == "reply" and notice["precedence"] == "FLASH" and notice["verified"] is True
            _, full = await muk.get(f"/api/bulletins/{notice['id']}")
            assert posted["id"] in full["bulletin"]["body"] and "hit" in full["bulletin"]["tags"]
            assert not full["bulletin"].get("entities")  # names the bulletin, carries none of its content
            _, muk_hits = await muk.get("/api/hits")
            assert muk_hits["items"] == []  # a notice is not itself a hit

            # A bulletin Laos may not release to Thailand still raises the hit here, but no notice.
            secret = {**incident, "releasable_to": ["LA"], "title": "ລັບ"}
            _, kept = await svk.post("/api/bulletins", secret)
            _, hits = await svk.get("/api/hits")
            withheld = next(h for h in hits["items"] if h["bulletin_id"] == kept["id"])
            assert withheld["notice"] == "withheld:not_releasable" and withheld["notice_id"] is None
            text = (await svk.get("/metrics"))[1]
            assert 'blo_lookout_hits_total{strength="exact"} 2.0' in text


WATCHLIST = """list_id,entry_id,action,type,number,country,doc_type,status,name,dob,plate,expires,note
TH-SLTD,e1,add,document,AA1234567,TH,passport,stolen,,,,,stolen at Nong Khai
TH-SLTD,e2,add,person,,,,,Somchai Rakthai,1979-02-03,,,wanted: fraud
TH-SLTD,e3,add,document,,TH,passport,stolen,,,,,
TH-SLTD,e4,explode,document,BB1,TH,,,,,,,
TH-SLTD,e5,add,vehicle,,TH,,,,,กข 1234,,
"""


async def test_a_centre_imports_a_watch_list_with_bad_rows_and_its_offices_can_check_it(network) -> None:
    async with running(network, "TH-TCCC", "TH-MUK") as nodes:
        from office_node.accounts import Accounts

        centre = nodes["TH-TCCC"].node
        Accounts(centre.db).add_user("analyst", "a long analyst password", role="supervisor", now_ms=centre.clock())
        _, token = centre.accounts.create_token("analyst", "test", now_ms=centre.clock())
        async with api(nodes["TH-TCCC"], token) as tccc, api(nodes["TH-MUK"], network["TH-MUK"].token) as muk:
            status, denied = await muk.post("/api/watchlists", {"csv": WATCHLIST})
            assert status == 403 and denied["error"]["code"] == "forbidden_role"  # officers do not import lists
            status, refused = await tccc.post("/api/watchlists", {"csv": WATCHLIST, "releasable_to": ["LA"]})
            assert status == 422 and refused["error"]["code"] == "not_releasable"  # TH-MUK is in TH
            assert centre.bus.outbox.depth() == 0
            status, result = await tccc.post("/api/watchlists", {"csv": WATCHLIST})
            assert status == 201, result
            assert result["imported"] == 3 and result["recipients"] == ["TH-MUK"]
            assert [(e["line"], e["column"], e["reason"]) for e in result["errors"]] == [
                (4, "number", "invalid"),
                (5, "action", "bad_action"),
            ]

            async def flagged() -> bool:
                _, r = await muk.post("/api/check", {"type": "document", "doc_type": "passport", "number": "AA 1234567", "country": "TH"})
                return r["flagged"]

            await eventually(flagged, 15, "the watch list's lookouts on TH-MUK")
            _, plate = await muk.post("/api/check", {"type": "vehicle", "plate": "กข  1234", "country": "TH"})
            assert plate["flagged"] is True
            withdraw = "list_id,entry_id,action\nTH-SLTD,e1,withdraw\n"
            status, result = await tccc.post("/api/watchlists", {"csv": withdraw})
            assert status == 201 and result["imported"] == 1

            async def cleared() -> bool:
                return not await flagged()

            await eventually(cleared, 15, "the withdrawal to clear the document")
        assert any(e.action == "watchlist.import" for e in centre.audit.entries(limit=20))


PHONE_AND_ALIAS_LIST = """list_id,entry_id,type,number,country,name,aliases
TH-WL,p1,phone,020 5555 1234,LA,,
TH-WL,p2,phone,081 234 5678,,,
TH-WL,n1,person,,,Souksavanh Phommachanh,Somchai Jaidee;Somchai
"""


async def _blo(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        BLO, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return proc.returncode, out.decode()


async def test_blo_check_flags_the_local_form_of_a_listed_phone_and_exits_with_distinct_codes(network) -> None:
    async with running(network, "TH-TCCC", "TH-MUK") as nodes:
        from office_node.accounts import Accounts

        centre = nodes["TH-TCCC"].node
        Accounts(centre.db).add_user("analyst", "a long analyst password", role="supervisor", now_ms=centre.clock())
        _, token = centre.accounts.create_token("analyst", "test", now_ms=centre.clock())
        async with api(nodes["TH-TCCC"], token) as tccc, api(nodes["TH-MUK"], network["TH-MUK"].token) as muk:
            # The second phone names no country: it is read in the importing centre's (TH).
            status, result = await tccc.post("/api/watchlists", {"csv": PHONE_AND_ALIAS_LIST})
            assert status == 201 and result["imported"] == 3 and result["errors"] == [], result

            async def listed() -> bool:
                _, r = await muk.post("/api/check", {"type": "phone", "number": "+856 20 5555 1234"})
                return r["flagged"]

            await eventually(listed, 15, "the watch list on TH-MUK")
        base = ("--home", str(network["TH-MUK"].home.root), "check", "--url", nodes["TH-MUK"].url,
                "--token", network["TH-MUK"].token)  # fmt: skip
        code, out = await _blo(*base, "--phone", "020 5555 1234", "--country", "LA")
        assert (code, out.splitlines()[0]) == (3, "FLAGGED"), out
        code, out = await _blo(*base, "--phone", "020 5555 1234", "--country", "la", "--json")
        assert code == 3 and json.loads(out)["flagged"] is True
        code, out = await _blo(*base, "--phone", "081-234-5678")  # TH-MUK's own country by default
        assert code == 3, out
        code, out = await _blo(*base, "--person", "Somchai Jaidee")  # a multi-word alias
        assert code == 3, out
        code, out = await _blo(*base, "--phone", "020 5555 1234")  # read in Thailand: another number
        assert code == 0 and out.startswith("CLEAR"), out
        code, out = await _blo(*base, "--phone", "020 5555 1234", "--country", "LA", "--json", "--document", "P1")
        assert code == 2 and "exactly one" in out
        code, out = await _blo(*base[:3], "--url", "http://127.0.0.1:9", "--token", "x", "--phone", "+66812345678")
        assert code == 2, out


def test_blo_check_help_lists_its_exit_codes() -> None:
    from click.testing import CliRunner

    from office_node.cli import cli

    text = CliRunner().invoke(cli, ["check", "--help"]).output
    assert "0  CLEAR" in text and "3  FLAGGED" in text and "2  not checked" in text
