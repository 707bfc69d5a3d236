"""MISP and STIX on real nodes and a real nats-server: export over the authenticated API
(TLP:RED only for its addressees, refusals audited), a centre's import of MISP's example
event as a draft reviewed and sent in triage, and a round of the MISP bridge configured
in node.toml against the stand-in MISP server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from stix2validator import ValidationOptions, validate_string

from bus.transport.server import NatsServer
from office_node.exchange import mapping
from office_node.network import NodeSpec
from tests.misp_server import KEY, misp_replay
from tests.node_helpers import api, build, bulletin_request, eventually, running
from tests.test_centre import analyst_token

DATA = Path(__file__).resolve().parent / "data"
FEED = "th-border"
SPECS = [
    NodeSpec("TH-TCCC", "Thailand TCCC", "centre", feeds=(FEED,)),
    NodeSpec("LA-TCCC", "Lao TCCC", "centre"),
    NodeSpec("TH-MUK", "Mukdahan BLO", counterparts=("LA-SVK",), feeds=(FEED,)),
    NodeSpec("LA-SVK", "Savannakhet BLO", counterparts=("TH-MUK",)),
]


@pytest.fixture
def network(tmp_path: Path, nats_server: NatsServer):
    return build(tmp_path / "net", nats_server.url, SPECS)


async def _received(client, title: str) -> list[dict]:
    _, page = await client.get("/api/bulletins", params={"direction": "received"})
    return [i for i in page["items"] if i["title"] == title]


async def test_a_bulletin_exports_over_the_api_and_red_only_for_its_addressees(network) -> None:
    async with running(network, "TH-MUK") as nodes, api(nodes["TH-MUK"], network["TH-MUK"].token) as muk:
        _, amber = await muk.post("/api/bulletins", bulletin_request())
        _, red = await muk.post("/api/bulletins", bulletin_request(tlp="RED", title="RED only"))

        async with api(nodes["TH-MUK"], None) as anonymous:
            status, _ = await anonymous.get(f"/api/bulletins/{amber['id']}", params={"format": "stix"})
            assert status == 401
        status, bundle = await muk.get(f"/api/bulletins/{amber['id']}", params={"format": "stix"})
        assert status == 200 and bundle["type"] == "bundle"
        assert validate_string(json.dumps(bundle), ValidationOptions(version="2.1")).is_valid
        status, event = await muk.get(f"/api/bulletins/{amber['id']}", params={"format": "misp"})
        assert status == 200 and event["Event"]["uuid"] == mapping.stable_uuid("bulletin", amber["id"])
        status, refused = await muk.get(f"/api/bulletins/{amber['id']}", params={"format": "csv"})
        assert status == 400 and refused["error"]["field"] == "format"

        status, refused = await muk.get(f"/api/bulletins/{red['id']}", params={"format": "misp"})
        assert status == 422 and refused["error"]["code"] == "tlp_red_export"
        status, refused = await muk.get(f"/api/bulletins/{red['id']}", params={"format": "stix", "for": "LA-TCCC"})
        assert status == 422 and refused["error"]["code"] == "tlp_red_export"
        status, event = await muk.get(f"/api/bulletins/{red['id']}", params={"format": "misp", "for": "LA-SVK"})
        assert status == 200 and "tlp:red" in {t["name"] for t in event["Event"]["Tag"]}

        status, answer = await muk.get("/api/export", params={"format": "misp", "since": "0"})
        assert status == 200 and answer["exported"] == 1
        assert [w["id"] for w in answer["withheld"]] == [red["id"]]
        assert [e["Event"]["info"] for e in answer["document"]["response"]] == [bulletin_request()["title"]]

        _, openapi = await muk.get("/api/openapi.json")
        names = [p["name"] for p in openapi["paths"]["/api/bulletins/{id}"]["get"]["parameters"]]
        assert names == ["id", "format", "for"]
        audit = nodes["TH-MUK"].node.audit.entries(limit=50)
        assert sum(1 for e in audit if e.action == "bulletin.export") == 4
        refusals = [e for e in audit if e.action == "bulletin.refused"]
        assert {(e.target, e.details["rule"]) for e in refusals} == {(red["id"], "tlp_red_export")} and len(refusals) == 2


async def test_a_misp_event_imported_at_the_centre_is_reviewed_and_sent_as_a_bulletin(network) -> None:
    async with running(network, "TH-TCCC", "TH-MUK") as nodes:
        async with (
            api(nodes["TH-TCCC"], analyst_token(nodes["TH-TCCC"])) as tccc,
            api(nodes["TH-MUK"], network["TH-MUK"].token) as muk,
        ):
            text = (DATA / "pymisp" / "existing_event.json").read_text(encoding="utf-8")
            status, imported = await tccc.post("/api/imports", {"text": text, "name": "existing_event.json"})
            assert status == 201, imported
            [draft] = imported["drafts"]
            assert (draft["tlp"], draft["entities"], draft["local_only"]) == ("CLEAR", 1, False)
            status, again = await tccc.post("/api/imports", {"text": text})
            assert status == 201 and again["drafts"] == [] and len(again["skipped"]) == 1

            _, listed = await tccc.get("/api/drafts", params={"state": "new"})
            assert [d["id"] for d in listed["items"]] == [draft["id"]]
            status, detail = await tccc.post(
                f"/api/drafts/{draft['id']}",
                {"state": "in_review", "note": "relevant to Bridge 2", "fields": {"kind": "strategic_intelligence"}},
            )
            assert status == 200 and detail["state"] == "in_review" and detail["notes"][0]["text"] == "relevant to Bridge 2"
            assert detail["fields"]["kind"] == "strategic_intelligence" and detail["derived"]["reasons"]

            status, refused = await tccc.post(f"/api/drafts/{draft['id']}/send", {"to": ["TH-MUK"], "releasable_to": ["TH", "VN"]})
            assert status == 422 and refused["error"]["code"] == "releasability_widened"
            status, refused = await tccc.post(f"/api/drafts/{draft['id']}/send", {"to": ["LA-SVK"], "releasable_to": ["TH"]})
            assert status == 422 and refused["error"]["code"] == "not_releasable"
            status, sent = await tccc.post(
                f"/api/drafts/{draft['id']}/send", {"to": ["TH-MUK"], "releasable_to": ["TH"], "tlp": "GREEN"}
            )
            assert status == 201, sent
            (got,) = await eventually(lambda: _received(muk, detail["fields"]["title"]), 15, "the sent draft on TH-MUK")
            assert got["from"] == "TH-TCCC" and got["kind"] == "strategic_intelligence" and got["tlp"] == "GREEN"
            _, full = await muk.get(f"/api/bulletins/{got['id']}")
            assert full["bulletin"]["entities"][0]["name"] == "Sofacy"
            _, detail = await tccc.get(f"/api/drafts/{draft['id']}")
            assert (detail["state"], detail["sent_id"]) == ("sent", sent["id"])
            status, refused = await tccc.post(f"/api/drafts/{draft['id']}", {"state": "new"})
            assert status == 400

            red = json.loads(text)
            red["uuid"] = "5a3c2fcd-8328-42bb-a95e-4f4402de0b82"
            red["Tag"] = [{"name": "tlp:red"}]
            _, imported = await tccc.post("/api/imports", {"text": json.dumps(red)})
            [red_draft] = imported["drafts"]
            assert red_draft["local_only"] is True
            status, refused = await tccc.post(f"/api/drafts/{red_draft['id']}/send", {"to": ["TH-MUK"]})
            assert status == 422 and refused["error"]["code"] == "tlp_red_import"

            status, refused = await muk.post("/api/imports", {"text": text})
            assert status == 403  # an officer's token: imports are for supervisors of a centre
        audit = nodes["TH-TCCC"].node.audit.entries(limit=80)
        assert {e.action for e in audit} >= {"draft.import", "draft.send", "triage"}
        assert {e.details["rule"] for e in audit if e.action == "bulletin.refused"} >= {"releasability_widened", "tlp_red_import"}


async def test_a_round_of_the_misp_bridge_configured_in_node_toml_pushes_the_feed_and_pulls_drafts(network) -> None:
    async with misp_replay() as misp:
        centre = network["TH-TCCC"].home
        key_file = centre.root / "keys" / "misp.key"
        key_file.write_text(KEY, encoding="utf-8")
        os.chmod(key_file, 0o600)
        with centre.config_path.open("a", encoding="utf-8") as toml:
            toml.write(
                f'\n[misp]\nurl = "{misp.url}"\nkey_file = "keys/misp.key"\npush_feeds = ["{FEED}"]\ncountries = ["TH", "LA"]\n'
                'pull_tag = "blo-bus:pull"\nevery_s = 3600\n'
            )
        async with running(network, "TH-TCCC", "TH-MUK") as nodes:
            async with (
                api(nodes["TH-TCCC"], analyst_token(nodes["TH-TCCC"])) as tccc,
                api(nodes["TH-MUK"], network["TH-MUK"].token) as muk,
            ):
                await tccc.post("/api/feeds", {"name": FEED, "members": ["TH-MUK"]})
                intel = bulletin_request(to=[], feed=FEED, title="เส้นทางใหม่", kind="strategic_intelligence")
                status, posted = await tccc.post("/api/bulletins", intel)
                assert status == 201, posted
                # releasable to TH only: the MISP server's users are in TH and LA (rule X3)
                _, th_only = await tccc.post("/api/bulletins", {**intel, "releasable_to": ["TH"], "title": "TH only"})
                await eventually(lambda: _received(muk, intel["title"]), 15, "the feed bulletin on TH-MUK")
                status, sync = await tccc.post("/api/misp/sync", {})
                assert status == 200, sync
                # the bridge's own first round (at start) or this one pushed it: once, and only it
                added = [e["uuid"] for e in misp.posted("/events/add")]
                assert added == [mapping.stable_uuid("bulletin", posted["id"])]
                assert [r["id"] for r in sync["refused"]] in ([], [th_only["id"]])
                assert [d["title"] for d in sync["drafts"]] in ([], ["OSINT - Sednit update: How Fancy Bear Spent the Year"])
                _, drafts = await tccc.get("/api/drafts")
                assert [d["title"] for d in drafts["items"]] == ["OSINT - Sednit update: How Fancy Bear Spent the Year"]
                status, _ = await muk.post("/api/misp/sync", {})
                assert status == 403
            audit = nodes["TH-TCCC"].node.audit.entries(limit=80)
            assert [e.target for e in audit if e.action == "misp.push"] == [posted["id"]]
            refusals = [e for e in audit if e.action == "bulletin.refused"]
            assert [(e.target, e.details["rule"]) for e in refusals] == [(th_only["id"], "not_releasable")]


async def test_an_import_queues_all_of_its_events_or_none_and_each_once(network) -> None:
    async with running(network, "TH-TCCC") as nodes, api(nodes["TH-TCCC"], analyst_token(nodes["TH-TCCC"])) as tccc:
        event = json.loads((DATA / "pymisp" / "existing_event.json").read_text(encoding="utf-8"))
        status, refused = await tccc.post("/api/imports", {"text": json.dumps([event, {"info": "x", "uuid": 5, "Object": 7}])})
        assert status == 400 and refused["error"]["field"].startswith("[1]"), refused
        _, listed = await tccc.get("/api/drafts")
        assert listed["items"] == []  # the readable first event was not queued either
        status, imported = await tccc.post("/api/imports", {"text": json.dumps([event, event])})
        assert status == 201 and len(imported["drafts"]) == 1 and len(imported["skipped"]) == 1
        status, refused = await tccc.post("/api/imports", {"text": "not json"})
        assert status == 400 and "is not JSON" in refused["error"]["message"]
