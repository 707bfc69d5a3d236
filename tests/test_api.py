"""The node's HTTP API end to end: two real office nodes on a real nats-server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from bus.transport.server import NatsServer
from office_node.api import ROUTES
from office_node.openapi import document
from tests.node_helpers import api, build, bulletin_request, eventually, running


@pytest.fixture
def network(tmp_path: Path, nats_server: NatsServer):
    return build(tmp_path / "net", nats_server.url)


async def _received(client, bid: str) -> bool:
    status, page = await client.get("/api/bulletins", params={"direction": "received"})
    return status == 200 and any(i["id"] == bid for i in page["items"])


async def test_every_route_but_health_answers_401_json_without_credentials(network) -> None:
    async with running(network, "TH-MUK") as nodes, api(nodes["TH-MUK"], None) as anon:
        for route in ROUTES:
            path = route.path.replace("{id}", "01JAAAAAAAAAAAAAAAAAAAAAAA").replace("{name}", "mekong-border")
            status, body = await anon.call(route.method, path, headers={"Accept": "application/json"})
            if route.role is None:
                assert status == 200, route
            else:
                assert status == 401, route
                assert body["error"]["code"] == "unauthenticated"
        status, health = await anon.get("/health")
        assert health["office"] == "TH-MUK" and health["role"] == "office"
        assert "csrf" not in json.dumps(health)


async def test_a_bulletin_posted_on_one_node_arrives_verified_on_the_other_with_receipts(network) -> None:
    async with running(network, "TH-MUK", "LA-SVK") as nodes:
        async with api(nodes["TH-MUK"], network["TH-MUK"].token) as muk, api(nodes["LA-SVK"], network["LA-SVK"].token) as svk:
            status, posted = await muk.post("/api/bulletins", bulletin_request())
            assert status == 201, posted
            assert posted["state"] == "queued" and posted["recipients"] == ["LA-SVK"]
            bid = posted["id"]
            await eventually(lambda: _received(svk, bid), 15, "the bulletin on LA-SVK")

            status, detail = await svk.get(f"/api/bulletins/{bid}")
            assert status == 200
            assert detail["bulletin"]["title"] == bulletin_request()["title"]
            assert detail["bulletin"]["entities"][1]["number"] == "P0847211"
            assert detail["verification"]["verified"] is True
            assert detail["verification"]["signer"] == "TH-MUK"
            assert detail["verification"]["key_id"] == network["TH-MUK"].identity.signing.kid.hex()
            assert detail["direction"] == "received" and detail["read"] is False

            async def state() -> str:
                _, d = await muk.get(f"/api/bulletins/{bid}")
                return d["receipts"][0]["state"]

            await eventually(lambda: _equals(state(), "delivered"), 15, "the delivered receipt")
            status, read = await svk.post(f"/api/bulletins/{bid}/read")
            assert status == 200 and read["first"] is True
            await eventually(lambda: _equals(state(), "read"), 15, "the read receipt")
            _, again = await svk.post(f"/api/bulletins/{bid}/read")
            assert again["first"] is False

            _, outbox = await muk.get("/api/outbox")
            assert outbox["items"][0]["id"] == bid
            assert outbox["items"][0]["recipients"][0]["recipient"] == "LA-SVK"


async def _equals(value, expected) -> bool:
    return (await value) == expected


async def test_malformed_requests_get_a_4xx_naming_the_problem(network) -> None:
    async with running(network, "TH-MUK") as nodes, api(nodes["TH-MUK"], network["TH-MUK"].token) as muk:
        status, body = await muk.post("/api/bulletins", raw=b"{not json")
        assert status == 400 and "not valid JSON" in body["error"]["message"]
        status, body = await muk.post("/api/bulletins", bulletin_request(colour="red"))
        assert status == 400 and body["error"]["field"] == "colour"
        request = bulletin_request()
        del request["title"]
        status, body = await muk.post("/api/bulletins", request)
        assert status == 400 and body["error"]["field"] == "title"
        status, body = await muk.post("/api/bulletins", bulletin_request(grading="Z9"))
        assert status == 400 and body["error"]["field"] == "grading"
        status, body = await muk.post("/api/bulletins", bulletin_request(id="01JAAAAAAAAAAAAAAAAAAAAAAA"))
        assert status == 400 and body["error"]["field"] == "id"
        status, body = await muk.post("/api/bulletins", bulletin_request(to=[]))
        assert status == 400 and body["error"]["field"] == "to"
        status, body = await muk.post("/api/bulletins", bulletin_request(to=["KH-PPT"], releasable_to=["TH", "KH"]))
        assert status == 422 and body["error"]["code"] == "unknown_office"
        assert "KH-PPT" in body["error"]["message"]
        status, body = await muk.call("POST", "/api/bulletins", data="x", headers={"Content-Type": "text/plain"})
        assert status == 400 and body["error"]["field"] == "Content-Type"
        status, body = await muk.get("/api/bulletins", params={"precedence": "URGENT"})
        assert status == 400 and body["error"]["field"] == "precedence"
        status, body = await muk.get("/api/bulletins", params={"colour": "red"})
        assert status == 400 and body["error"]["field"] == "colour"
        status, body = await muk.get("/api/bulletins/01JAAAAAAAAAAAAAAAAAAAAAAA")
        assert status == 404 and body["error"]["code"] == "not_found"
        status, body = await muk.get("/api/search")
        assert status == 400 and body["error"]["field"] == "q"
        # Nothing was queued by the refused posts.
        _, outbox = await muk.get("/api/outbox")
        assert outbox["items"] == [] and outbox["depth"] == 0


async def test_search_finds_thai_and_lao_text_and_document_numbers_over_the_api(network) -> None:
    async with running(network, "TH-MUK", "LA-SVK") as nodes:
        async with api(nodes["TH-MUK"], network["TH-MUK"].token) as muk, api(nodes["LA-SVK"], network["LA-SVK"].token) as svk:
            _, thai = await muk.post("/api/bulletins", bulletin_request())
            lao = bulletin_request(
                to=["TH-MUK"], title="ແຈ້ງເຕືອນ: ຜູ້ຕ້ອງສົງໄສ ລັກລອບຄ້າມະນຸດ", body="ອາດຈະຂ້າມດ່ານຂົວມິດຕະພາບ 2", entities=[]
            )
            _, lao_posted = await svk.post("/api/bulletins", lao)
            await eventually(lambda: _received(muk, lao_posted["id"]), 15, "the Lao bulletin on TH-MUK")
            for query, expected in (("ซุกซ่อน", thai["id"]), ("ລັກລອບ", lao_posted["id"]), ("P-0847 211", thai["id"])):
                status, found = await muk.get("/api/search", params={"q": query})
                assert status == 200
                assert [i["id"] for i in found["items"]] == [expected], query
                assert found["items"][0]["copies"] == 1
            _, found = await muk.get("/api/search", params={"q": "ซุกซ่อน"})
            assert found["items"][0]["snippet"]["match"] == "ซุกซ่อน"
            _, nothing = await muk.get("/api/search", params={"q": "ไม่มีคำนี้"})
            assert nothing["items"] == []


async def test_reply_goes_back_to_the_sender_threaded_under_the_original(network) -> None:
    async with running(network, "TH-MUK", "LA-SVK") as nodes:
        async with api(nodes["TH-MUK"], network["TH-MUK"].token) as muk, api(nodes["LA-SVK"], network["LA-SVK"].token) as svk:
            _, posted = await muk.post("/api/bulletins", bulletin_request(kind="request_for_information"))
            await eventually(lambda: _received(svk, posted["id"]), 15, "the request on LA-SVK")
            reply = bulletin_request(kind="reply", title="ຕອບ: ຂໍ້ມູນເພີ່ມເຕີມ", body="ລົດຄັນນີ້ຜ່ານດ່ານມື້ວານ", entities=[])
            del reply["to"], reply["feed"]
            status, answer = await svk.post(f"/api/bulletins/{posted['id']}/reply", reply)
            assert status == 201 and answer["recipients"] == ["TH-MUK"]
            await eventually(lambda: _received(muk, answer["id"]), 15, "the reply on TH-MUK")
            _, thread = await muk.get("/api/bulletins", params={"in_reply_to": posted["id"]})
            assert [i["id"] for i in thread["items"]] == [answer["id"]]
            status, body = await svk.post(f"/api/bulletins/{posted['id']}/reply", {**reply, "to": ["TH-NKP"]})
            assert status == 400 and body["error"]["field"] == "to"


async def test_the_live_stream_pushes_a_new_bulletin_to_the_receiving_node(network) -> None:
    async with running(network, "TH-MUK", "LA-SVK") as nodes:
        async with api(nodes["TH-MUK"], network["TH-MUK"].token) as muk:
            headers = {"Authorization": f"Bearer {network['LA-SVK'].token}"}
            async with aiohttp.ClientSession(headers=headers) as session:
                async with session.get(nodes["LA-SVK"].url + "/api/events") as stream:
                    assert stream.status == 200
                    assert stream.headers["Content-Type"].startswith("text/event-stream")
                    await stream.content.readline()  # ": connected"
                    _, posted = await muk.post("/api/bulletins", bulletin_request(precedence="FLASH"))

                    async def next_bulletin() -> dict:
                        kind = None
                        async for raw in stream.content:
                            line = raw.decode().strip()
                            if line.startswith("event:"):
                                kind = line[6:].strip()
                            elif line.startswith("data:") and kind == "bulletin":
                                return json.loads(line[5:])
                        raise AssertionError("the stream ended")

                    event = await asyncio.wait_for(next_bulletin(), 15)
                    assert event["id"] == posted["id"] and event["precedence"] == "FLASH"
                    assert event["direction"] == "received" and event["from"] == "TH-MUK"


async def test_metrics_count_what_was_sent_received_and_rejected(network) -> None:
    async with running(network, "TH-MUK", "LA-SVK") as nodes:
        async with api(nodes["TH-MUK"], network["TH-MUK"].token) as muk, api(nodes["LA-SVK"], network["LA-SVK"].token) as svk:
            _, posted = await muk.post("/api/bulletins", bulletin_request())
            await eventually(lambda: _received(svk, posted["id"]), 15, "the bulletin")
            status, text = await svk.get("/metrics")
            assert status == 200
            assert 'blo_bulletins_received_total{precedence="IMMEDIATE"} 1.0' in text
            assert "blo_delivery_latency_seconds_bucket" in text
            assert "blo_outbox_depth" in text
            _, sender_text = await muk.get("/metrics")
            assert 'blo_bulletins_sent_total{precedence="IMMEDIATE"} 1.0' in sender_text


async def test_officers_may_not_read_quarantine_or_audit_but_admins_may(network, tmp_path: Path) -> None:
    from office_node.accounts import Accounts

    async with running(network, "TH-MUK") as nodes:
        node = nodes["TH-MUK"].node
        Accounts(node.db).add_user("chief", "a long admin password", role="admin", now_ms=node.clock())
        _, token = node.accounts.create_token("chief", "test", now_ms=node.clock())
        async with api(nodes["TH-MUK"], network["TH-MUK"].token) as officer, api(nodes["TH-MUK"], token) as admin:
            status, body = await officer.get("/api/quarantine")
            assert status == 403 and body["error"]["code"] == "forbidden_role"
            status, body = await officer.get("/api/audit")
            assert status == 403
            status, log = await admin.get("/api/audit")
            assert status == 200 and log["ok"] is True
            assert {e["action"] for e in log["items"]} >= {"node.start", "user.add"}
            status, q = await admin.get("/api/quarantine")
            assert status == 200 and q["counts"] == {}


async def test_posting_reading_and_viewing_are_in_the_audit_log_which_verifies(network) -> None:
    async with running(network, "TH-MUK", "LA-SVK") as nodes:
        async with api(nodes["TH-MUK"], network["TH-MUK"].token) as muk, api(nodes["LA-SVK"], network["LA-SVK"].token) as svk:
            _, posted = await muk.post("/api/bulletins", bulletin_request())
            await eventually(lambda: _received(svk, posted["id"]), 15, "the bulletin")
            await svk.get(f"/api/bulletins/{posted['id']}")
            await svk.post(f"/api/bulletins/{posted['id']}/read")
            await svk.get("/api/search", params={"q": "ซุกซ่อน"})
        entries = {(e.actor, e.action, e.target) for e in nodes["LA-SVK"].node.audit.entries(limit=50)}
        assert ("officer", "bulletin.view", posted["id"]) in entries
        assert ("officer", "bulletin.read", posted["id"]) in entries
        assert ("officer", "search", "ซุกซ่อน") in entries
        sent = nodes["TH-MUK"].node.audit.entries(limit=50)
        assert any(e.action == "bulletin.post" and e.target == posted["id"] for e in sent)
        assert nodes["LA-SVK"].node.audit.verify().ok


async def test_bulletins_survive_a_restart_of_the_node(network) -> None:
    async with running(network, "TH-MUK", "LA-SVK") as nodes:
        async with api(nodes["TH-MUK"], network["TH-MUK"].token) as muk, api(nodes["LA-SVK"], network["LA-SVK"].token) as svk:
            _, posted = await muk.post("/api/bulletins", bulletin_request())
            await eventually(lambda: _received(svk, posted["id"]), 15, "the bulletin")
    async with running(network, "LA-SVK", "TH-MUK") as nodes:
        async with api(nodes["LA-SVK"], network["LA-SVK"].token) as svk, api(nodes["TH-MUK"], network["TH-MUK"].token) as muk:
            status, detail = await svk.get(f"/api/bulletins/{posted['id']}")
            assert status == 200 and detail["verification"]["verified"] is True
            _, sent = await muk.get("/api/bulletins", params={"direction": "sent"})
            assert [i["id"] for i in sent["items"]] == [posted["id"]]


async def test_the_openapi_document_describes_exactly_the_routes(network) -> None:
    doc = document(ROUTES)
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == {(r.method, r.path) for r in ROUTES}
    assert doc["paths"]["/health"]["get"]["security"] == []
    assert doc["paths"]["/api/bulletins"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"]
    async with running(network, "TH-MUK") as nodes, api(nodes["TH-MUK"], network["TH-MUK"].token) as muk:
        status, served = await muk.get("/api/openapi.json")
        assert status == 200 and served["openapi"] == "3.1.0" and served["paths"].keys() == doc["paths"].keys()


async def test_pages_and_answers_carry_security_headers(network) -> None:
    async with running(network, "TH-MUK") as nodes, api(nodes["TH-MUK"], network["TH-MUK"].token) as muk:
        async with muk.session.get(nodes["TH-MUK"].url + "/") as page:
            assert page.status == 200
            assert "script-src 'self'" in page.headers["Content-Security-Policy"]
            assert page.headers["X-Frame-Options"] == "DENY"
        async with muk.session.get(nodes["TH-MUK"].url + "/api/me") as me:
            assert me.headers["Cache-Control"] == "no-store"
            assert (await me.json())["office"] == "TH-MUK"


async def test_a_bulletin_releasable_to_th_only_is_refused_for_a_lao_office_and_the_attempt_is_audited(network) -> None:
    async with running(network, "TH-MUK") as nodes, api(nodes["TH-MUK"], network["TH-MUK"].token) as muk:
        status, body = await muk.post("/api/bulletins", bulletin_request(releasable_to=["TH"]))
        assert status == 422 and body["error"]["code"] == "not_releasable"
        assert "LA-SVK" in body["error"]["message"] and "releasable_to" in body["error"]["message"]
        _, outbox = await muk.get("/api/outbox")
        assert outbox["items"] == []
        refused = [e for e in nodes["TH-MUK"].node.audit.entries(limit=10) if e.action == "bulletin.refused"]
        assert refused and refused[0].details["rule"] == "not_releasable" and refused[0].actor == "officer"
