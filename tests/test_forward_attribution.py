"""A centre cannot put words in an office's mouth (issue 15, hole 5; ENVELOPE.md 8.1).

A compromised Thai centre (or a thief holding its key) forwards to the feed, under
Mukdahan's name, text Mukdahan never wrote: once as a redacted forward with an invented
title and body (a redacted forward carries no signature of the office's, so nothing
compares its text with anything), once as a whole forward under a Mukdahan key id that
no directory holds. Nakhon Phanom, a member, must show both as the centre's words citing
the original id, never as Mukdahan's: in the API, on the officer's page (real Chromium)
and in `blo subscribe`. An honest forward, whose original signature Nakhon Phanom checks,
is still shown as Mukdahan's words forwarded by the centre. Real nodes, a real
nats-server, the centre's own sealing and sending."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import expect

from bus.bulletin import Bulletin
from bus.envelope import OfficeRecipient, Opener, Sealer
from bus.forward import forward
from bus.ids import new_bulletin_id
from bus.keys import Identity, PeerBook
from bus.transport.server import NatsServer
from office_node import audit as actions
from office_node.accounts import CHEAP, Accounts
from office_node.compose import Draft
from office_node.network import NodeSpec
from office_node.store import StoredBulletin
from office_node.views import attribution, summary
from tests.browser import browser_page, chromium, new_browser_page, page_log  # noqa: F401
from tests.node_helpers import BLO, api, blo_env, build, bulletin_request, eventually, running

FEED = "th-border"
SPECS = [
    NodeSpec("TH-TCCC", "Thailand TCCC", "centre", feeds=(FEED,)),
    NodeSpec("TH-MUK", "Mukdahan BLO", feeds=(FEED,)),
    NodeSpec("TH-NKP", "Nakhon Phanom BLO", feeds=(FEED,)),
]
INVENTED_TITLE = "ด่านมุกดาหารแจ้ง: ปิดสะพานมิตรภาพ 2 ทันที"
INVENTED_BODY = "Mukdahan BLO orders all offices to stop checks at Bridge 2 tonight."
UNKNOWN_KEY_TITLE = "ด่านมุกดาหารแจ้ง: ปล่อยรถบรรทุก 70-1234"


@dataclass(frozen=True)
class SignedOriginal:
    bulletin: Bulletin
    header: bytes
    body: bytes
    signature: bytes


def _now() -> int:
    return int(time.time() * 1000)


async def _received(client, title: str) -> list[dict]:
    _, page = await client.get("/api/bulletins", params={"direction": "received"})
    return [i for i in page["items"] if i["title"] == title]


async def _holds_key(client) -> bool:
    _, body = await client.get("/api/feeds")
    return any(f["name"] == FEED and f["have_key"] is True for f in body["feeds"])


def _invented_redacted_forward(centre_node, original_id: str) -> Bulletin:
    """What a lying centre seals: a redaction of a real original, then its own words."""
    stored, parts = centre_node.store.get(original_id), centre_node.store.sealed_parts(original_id)
    original = SignedOriginal(Bulletin.from_dict(stored.bulletin), parts.header, parts.body, parts.signature)
    honest = forward(original, centre="TH-TCCC", new_id=new_bulletin_id(_now(), os.urandom), created=_now(),
                     redact=["entities[1]"])  # fmt: skip
    return Bulletin.from_dict({**honest.to_dict(), "title": INVENTED_TITLE, "body": INVENTED_BODY})


def _forward_under_an_unknown_key(centre: Identity) -> Bulletin:
    """A whole forward of a bulletin "from TH-MUK" signed with a key no directory holds."""
    fake = Identity.generate("TH-MUK", os.urandom)
    fields = {k: v for k, v in bulletin_request().items() if k not in ("to", "feed")}
    made_up = Bulletin.from_dict(
        {**fields, "id": new_bulletin_id(_now(), os.urandom), "from": "TH-MUK", "created": _now(),
         "title": UNKNOWN_KEY_TITLE, "releasable_to": ["TH"]}
    )  # fmt: skip
    sealed = Sealer(fake).seal(made_up, [OfficeRecipient(centre.public())], now_ms=_now(), rng=os.urandom)
    opened = Opener.for_identity(centre, PeerBook([fake.public(), centre.public()])).open(sealed, witnessed_at=_now())
    return forward(opened, centre="TH-TCCC", new_id=new_bulletin_id(_now(), os.urandom), created=_now())


def _analyst_token(daemon) -> str:
    node = daemon.node
    Accounts(node.db, limits=CHEAP).add_user("analyst", "a long analyst password", role="supervisor", now_ms=node.clock())
    _, token = node.accounts.create_token("analyst", "test", now_ms=node.clock())
    return token


async def _sign_in(page, url: str, username: str, password: str) -> None:
    await page.goto(url + "/")
    await page.wait_for_url("**/login*")
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#app:not([hidden])")
    await expect(page.locator("#st-live")).to_have_text("connected")


def _stored_forward(carried: dict, provenance: dict | None) -> StoredBulletin:
    verification = {"verified": True, **({"provenance": provenance} if provenance is not None else {})}
    return StoredBulletin(
        seq=1, id="01JFORWARD0000000000000000", direction="received", sender="TH-TCCC", sender_sign_kid=None,
        sender_ephemeral=None, sent_at=1, received_at=2, witnessed_at=2, at=2, precedence="ROUTINE", kind="incident", tlp="AMBER",
        feed=FEED, title="t", bulletin={"forwarded": carried}, recipients=(FEED,), verified=True,
        verification=verification, read_at=None, read_by=None,
    )  # fmt: skip


ORIGINAL_ID = "01JORIGINAL000000000000000"
CHECKED = {"state": "original_checked", "original_id": ORIGINAL_ID, "verified": True, "redacted": False}


@pytest.mark.parametrize(
    ("carried", "provenance", "state", "words_of"),
    [
        ({"sender": "TH-MUK"}, CHECKED, "original_checked", "TH-MUK"),
        ({"sender": "TH-MUK"}, {**CHECKED, "verified": False, "reason": "unknown_sender"}, "original_not_checked",
         "TH-TCCC"),
        # Redacted is read from the bulletin: a stored provenance claiming a checked signature does not make it the office's.
        ({"sender": "TH-MUK", "redacted": ["title"]}, CHECKED, "redacted", "TH-TCCC"),
        ({"sender": "TH-MUK"}, {"verified": False, "reason": "forward_bad_signature", "text": "forged"},
         "original_refused", "TH-TCCC"),
        ({"sender": "TH-MUK"}, None, "original_not_checked", "TH-TCCC"),  # nothing checked: nothing claimed
    ],
)  # fmt: skip
def test_the_api_names_the_office_as_the_author_only_when_its_signature_was_checked(
    carried: dict, provenance: dict | None, state: str, words_of: str
) -> None:
    stored = _stored_forward(carried, provenance)
    shown = attribution(stored)
    assert shown is not None and (shown["state"], shown["words_of"]) == (state, words_of)
    listed = summary(stored)
    assert listed["attribution"] == shown
    assert listed["forwarded_from"] == ("TH-MUK" if state == "original_checked" else None)
    if state != "original_checked":
        assert "from TH-MUK" not in shown["text"] and "TH-MUK's bulletin" not in shown["text"]


def test_a_bulletin_that_is_not_a_forward_has_no_attribution() -> None:
    stored = _stored_forward({}, None)
    plain = dataclasses.replace(stored, bulletin={"title": "t"})
    assert attribution(plain) is None and summary(plain)["forwarded_from"] is None


async def test_a_redacted_forward_with_invented_text_is_shown_as_the_centres_words(
    tmp_path: Path, nats_server: NatsServer, new_browser_page  # noqa: F811
) -> None:
    network = build(tmp_path / "net", nats_server.url, SPECS)
    report_title = "รายงาน: รถบรรทุกยาบ้า ทะเบียน 70-1234"
    async with running(network, "TH-TCCC", "TH-MUK", "TH-NKP") as nodes:
        centre, nkp_url = nodes["TH-TCCC"].node, nodes["TH-NKP"].url
        assert nkp_url
        async with (
            api(nodes["TH-TCCC"], _analyst_token(nodes["TH-TCCC"])) as tccc,
            api(nodes["TH-MUK"], network["TH-MUK"].token) as muk,
            api(nodes["TH-NKP"], network["TH-NKP"].token) as nkp,
        ):
            status, _ = await tccc.post("/api/feeds", {"name": FEED, "members": ["TH-MUK", "TH-NKP"]})
            assert status == 201
            await eventually(lambda: _holds_key(nkp), 15, "the feed key on TH-NKP")
            _, posted = await muk.post(
                "/api/bulletins", bulletin_request(to=["TH-TCCC"], releasable_to=["TH"], title=report_title)
            )
            await eventually(lambda: _received(tccc, report_title), 15, "the report at the centre")

            subscriber = subprocess.Popen(
                [BLO, "--home", str(network["TH-NKP"].home.root), "subscribe", "--count", "3",
                 "--url", nkp_url, "--token", network["TH-NKP"].token or ""],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=blo_env(),
            )  # fmt: skip
            try:
                live = nodes["TH-NKP"].node.live
                await eventually(lambda: live.subscriber_count >= 1, 20, "`blo subscribe` on the live stream")

                # The honest forward, then the two the compromised centre seals and sends itself.
                status, honest = await tccc.post(f"/api/bulletins/{posted['id']}/forward", {"feed": FEED})
                assert status == 201, honest
                for lie in (_invented_redacted_forward(centre, posted["id"]),
                            _forward_under_an_unknown_key(network["TH-TCCC"].identity)):  # fmt: skip
                    await centre.sending.send_draft("intruder", Draft(lie, (), (FEED,)), actions.BULLETIN_FORWARD)

                # The API: whose words each one is.
                (real,) = await eventually(lambda: _received(nkp, report_title), 15, "the honest forward")
                (redacted,) = await eventually(lambda: _received(nkp, INVENTED_TITLE), 15, "the invented forward")
                (unchecked,) = await eventually(lambda: _received(nkp, UNKNOWN_KEY_TITLE), 15, "the unknown-key one")
                assert real["attribution"]["state"] == "original_checked"
                assert (real["attribution"]["words_of"], real["forwarded_from"]) == ("TH-MUK", "TH-MUK")
                assert real["attribution"]["text"] == (
                    f"TH-MUK's bulletin {posted['id']}, forwarded by TH-TCCC; TH-MUK's signature checked"
                )

                assert redacted["from"] == "TH-TCCC" and redacted["verified"] is True  # the centre did sign it
                shown = redacted["attribution"]
                assert (shown["state"], shown["words_of"], shown["original_id"]) == ("redacted", "TH-TCCC", posted["id"])
                assert redacted["forwarded_from"] is None
                assert shown["text"].startswith("TH-TCCC's own words") and "Not TH-MUK's words" in shown["text"]
                _, detail = await nkp.get(f"/api/bulletins/{redacted['id']}")
                assert detail["attribution"] == shown
                assert detail["verification"]["provenance"]["text"] == shown["text"]
                assert "from TH-MUK" not in json.dumps([redacted, detail], ensure_ascii=False)

                assert unchecked["attribution"]["state"] == "original_not_checked"
                assert (unchecked["attribution"]["words_of"], unchecked["forwarded_from"]) == ("TH-TCCC", None)
                assert "signature is not checked yet" in unchecked["attribution"]["text"]

                # `blo subscribe`: each forward under whose words it is, and the line that says so.
                out, err = await asyncio.to_thread(subscriber.communicate, timeout=30)
                assert subscriber.returncode == 0, err
            finally:
                if subscriber.poll() is None:
                    subscriber.kill()
                    subscriber.wait()
        lines = out.splitlines()
        printed = {title: (lines[i].split()[2], lines[i + 1]) for i, line in enumerate(lines)
                   for title in (report_title, INVENTED_TITLE, UNKNOWN_KEY_TITLE) if line.endswith(title)}  # fmt: skip
        assert printed[report_title][0] == "TH-MUK" and "forwarded by TH-TCCC" in printed[report_title][1]
        assert printed[INVENTED_TITLE][0] == "TH-TCCC" and "-> TH-TCCC's own words" in printed[INVENTED_TITLE][1]
        assert printed[UNKNOWN_KEY_TITLE][0] == "TH-TCCC" and "not checked yet" in printed[UNKNOWN_KEY_TITLE][1]
        assert "from TH-MUK" not in out

        # The officer's page at Nakhon Phanom.
        login = network["TH-NKP"].logins[0]
        page = await new_browser_page(viewport=(1280, 720), bypass_csp=False)
        await _sign_in(page, nkp_url, login.username, login.password)
        lie = page.locator("#feed-list li", has_text=INVENTED_TITLE)
        await expect(lie.locator(".who")).to_have_text("TH-TCCC")
        await expect(lie.locator(".attr-mark")).to_have_text("redacted forward: TH-TCCC's own words")
        await lie.locator("button").click()
        await expect(page.locator("#detail-title")).to_have_text(INVENTED_TITLE)
        attribution = page.locator("#attribution")
        await expect(attribution).to_have_text(shown["text"])
        assert "attr-redacted" in (await attribution.get_attribute("class") or "")
        await expect(page.locator("#provenance strong")).to_have_text(
            "✘ Redacted: TH-TCCC's own words, not TH-MUK's (no signature of TH-MUK's to check)"
        )
        await expect(page.locator("#detail")).not_to_contain_text("from TH-MUK")

        unknown = page.locator("#feed-list li", has_text=UNKNOWN_KEY_TITLE)
        await expect(unknown.locator(".who")).to_have_text("TH-TCCC")
        await unknown.locator("button").click()
        await expect(page.locator("#attribution")).to_contain_text("TH-MUK's signature is not checked yet")

        honest_item = page.locator("#feed-list li", has_text=report_title)
        await expect(honest_item.locator(".who")).to_have_text("TH-MUK")
        await expect(honest_item.locator(".attr-mark")).to_have_text("forwarded by TH-TCCC")
        await honest_item.locator("button").click()
        await expect(page.locator("#attribution")).to_have_text(real["attribution"]["text"])
        await expect(page.locator("#provenance strong")).to_have_text("✔ Original signature of TH-MUK checked")
        log = page_log(page)
        assert log.page_errors == [] and log.console_errors == [] and log.foreign_requests(nkp_url) == []
