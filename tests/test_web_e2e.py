"""The officer's page against real nodes in a real headless Chromium: two offices on a
real nats-server; an officer at Mukdahan signs in, posts, and an officer at Savannakhet
sees it arrive live, opens it and sees it verified; Mukdahan's outbox shows it read.
At Savannakhet's counter, a passport named in Mukdahan's lookout checks FLAGGED, and a
bulletin naming it raises a hit on the page. At the Thai centre, an analyst creates a
feed on the page, finds Mukdahan's report in triage and forwards it to the feed;
Nakhon Phanom's officer reads it with its provenance."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import expect

from bus.transport.server import NatsServer
from office_node.accounts import CHEAP, Accounts
from office_node.network import NodeSpec
from tests.browser import browser_page, chromium, new_browser_page, page_log  # noqa: F401
from tests.node_helpers import api, build, bulletin_request, eventually, running

FEED = "th-border"
CENTRE_SPECS = [
    NodeSpec("TH-TCCC", "Thailand TCCC", "centre", feeds=(FEED,)),
    NodeSpec("TH-MUK", "Mukdahan BLO", feeds=(FEED,)),
    NodeSpec("TH-NKP", "Nakhon Phanom BLO", feeds=(FEED,)),
]


async def _sign_in(page, url: str, username: str, password: str) -> None:
    await page.goto(url + "/")
    await page.wait_for_url("**/login*")  # no session: sent to the login page
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#app:not([hidden])")
    await expect(page.locator("#st-live")).to_have_text("connected")


async def test_officers_sign_in_on_two_nodes_and_a_bulletin_travels_between_their_pages(
    tmp_path: Path, nats_server: NatsServer, new_browser_page  # noqa: F811
) -> None:
    network = build(tmp_path / "net", nats_server.url)
    muk_login, svk_login = network["TH-MUK"].logins[0], network["LA-SVK"].logins[0]
    async with running(network, "TH-MUK", "LA-SVK") as nodes:
        muk_url, svk_url = nodes["TH-MUK"].url, nodes["LA-SVK"].url
        assert muk_url and svk_url
        muk = await new_browser_page(viewport=(1280, 720), bypass_csp=False)
        svk = await new_browser_page(viewport=(1280, 720), bypass_csp=False)
        await _sign_in(muk, muk_url, muk_login.username, muk_login.password)
        await _sign_in(svk, svk_url, svk_login.username, svk_login.password)
        await expect(svk.locator("#st-office")).to_have_text("LA-SVK")
        await expect(svk.locator("#st-nats")).to_have_text("connected")

        await muk.click(".tab[data-view=compose]")
        await muk.check(".to-office[value=LA-SVK]")
        await muk.fill("#c-releasable", "TH, LA")
        await muk.select_option("#c-precedence", "FLASH")
        await muk.select_option("#c-kind", "lookout")
        await muk.select_option("#c-tlp", "AMBER")
        await muk.select_option("#c-source", "B")
        await muk.select_option("#c-information", "2")
        title = "เฝ้าระวัง: หนังสือเดินทางปลอม P0847211"
        await muk.fill("#c-title", title)
        await muk.fill("#c-body", "ผู้ถือหนังสือเดินทางอาจข้ามสะพานมิตรภาพ 2 คืนนี้")
        await muk.select_option("#entity-type", "document")
        await muk.click("#entity-add")
        document = muk.locator(".entity-row").nth(0)
        await document.locator("[data-field=doc_type]").select_option("passport")
        await document.locator("[data-field=number]").fill("P0847211")
        await document.locator("[data-field=country]").fill("LA")
        await muk.click("#compose-send")
        await expect(muk.locator("#compose-result")).to_be_visible()
        await expect(muk.locator("#compose-error")).to_be_hidden()

        # Savannakhet's page gets it on the live stream, without a reload.
        arrived = svk.locator("#feed-list li", has_text=title)
        await expect(arrived).to_be_visible(timeout=15_000)
        await arrived.click()
        detail = svk.locator("#detail")
        await expect(detail).to_contain_text(title)
        await expect(detail).to_contain_text("TH-MUK")
        await expect(detail).to_contain_text(network["TH-MUK"].identity.signing.kid.hex())
        await expect(detail).to_contain_text("P0847211")

        # The officer marks it read; Mukdahan's outbox shows the signed read receipt.
        await svk.click("#mark-read")
        await expect(svk.locator("#mark-read")).to_be_hidden()
        await muk.click(".tab[data-view=outbox]")
        row = muk.locator("#outbox-body tr", has_text=title)
        await expect(row).to_contain_text("read", timeout=15_000)

        for page, url in ((muk, muk_url), (svk, svk_url)):
            log = page_log(page)
            assert log.page_errors == [] and log.console_errors == []
            assert log.foreign_requests(url) == []


async def test_a_passport_in_a_lookout_from_the_counterpart_checks_flagged_and_a_new_mention_raises_a_hit(
    tmp_path: Path, nats_server: NatsServer, new_browser_page  # noqa: F811
) -> None:
    network = build(tmp_path / "net", nats_server.url)
    svk_login = network["LA-SVK"].logins[0]
    title = "เฝ้าระวัง: หนังสือเดินทางปลอม P0847211"
    lookout_request = bulletin_request(
        kind="lookout", precedence="IMMEDIATE", title=title,
        entities=[{"type": "document", "doc_type": "passport", "number": "P0847211", "country": "LA", "status": "forged"}],
    )
    async with running(network, "TH-MUK", "LA-SVK") as nodes:
        svk_url = nodes["LA-SVK"].url
        assert svk_url
        svk = await new_browser_page(viewport=(1024, 600), bypass_csp=False)
        await _sign_in(svk, svk_url, svk_login.username, svk_login.password)
        async with api(nodes["TH-MUK"], network["TH-MUK"].token) as muk_api, \
                api(nodes["LA-SVK"], network["LA-SVK"].token) as svk_api:
            status, lookout = await muk_api.post("/api/bulletins", lookout_request)
            assert status == 201
            await eventually(lambda: _stored(svk_api, lookout["id"]), 15, "the lookout at LA-SVK")

            # The officer at the counter types the number as it reads on the page.
            await svk.keyboard.press("F2")
            await svk.fill("#check-number", "p 0847211")
            await svk.fill("#check-country", "la")
            await svk.press("#check-number", "Enter")
            await expect(svk.locator("#check-verdict")).to_contain_text("FLAGGED")
            await expect(svk.locator("#check-verdict")).to_contain_text("1 active lookout")
            found = svk.locator("#check-matches li")
            await expect(found).to_have_count(1)
            await expect(found.locator(".match-title")).to_have_text(title)
            await expect(found).to_contain_text("TH-MUK")
            await expect(found).to_contain_text("B2 — Usually reliable; Probably true")
            await expect(found).to_contain_text("exact match")
            await found.locator(".match-title").click()
            await expect(svk.locator("#detail-title")).to_have_text(title)

            # An incident from Savannakhet naming the same passport is a hit on Mukdahan's lookout.
            incident = bulletin_request(
                to=["LA-TCCC"], title="ສະກັດກັ້ນຜູ້ໂດຍສານ ຖືໜັງສືຜ່ານແດນປອມ",
                entities=[{"type": "document", "doc_type": "passport", "number": "P0847211", "country": "LA"}],
            )
            status, _ = await svk_api.post("/api/bulletins", incident)
            assert status == 201
        await expect(svk.locator(".banner-hit")).to_contain_text(title)
        await svk.click(".tab[data-view=check]")
        listed = svk.locator("#hits-list li", has_text=incident["title"])
        await expect(listed).to_contain_text(title)
        await expect(listed.locator(".notice-text")).to_have_text("originator notified")

        log = page_log(svk)
        assert log.page_errors == [] and log.console_errors == []
        assert log.foreign_requests(svk_url) == []


async def _stored(client, bulletin_id: str) -> bool:
    status, _ = await client.get(f"/api/bulletins/{bulletin_id}")
    return status == 200


async def _holds_key(client, feed: str) -> bool:
    _, body = await client.get("/api/feeds")
    return any(f["name"] == feed and f["have_key"] is True and f["epoch"] == 1 for f in body["feeds"])


async def test_a_centre_analyst_forwards_an_office_report_to_a_feed_from_the_page_with_its_provenance(
    tmp_path: Path, nats_server: NatsServer, new_browser_page  # noqa: F811
) -> None:
    network = build(tmp_path / "net", nats_server.url, CENTRE_SPECS)
    nkp_login = network["TH-NKP"].logins[0]
    title = "รายงาน: รถบรรทุกยาบ้า ทะเบียน 70-1234"
    async with running(network, "TH-TCCC", "TH-MUK", "TH-NKP") as nodes:
        centre_node = nodes["TH-TCCC"].node
        Accounts(centre_node.db, limits=CHEAP).add_user(
            "analyst", "a long analyst password", role="supervisor", display_name="Analyst", now_ms=centre_node.clock()
        )
        tccc_url, nkp_url = nodes["TH-TCCC"].url, nodes["TH-NKP"].url
        assert tccc_url and nkp_url
        tccc = await new_browser_page(viewport=(1024, 600), bypass_csp=False)
        nkp = await new_browser_page(viewport=(1280, 720), bypass_csp=False)
        await _sign_in(tccc, tccc_url, "analyst", "a long analyst password")
        await _sign_in(nkp, nkp_url, nkp_login.username, nkp_login.password)

        # The analyst creates the feed on the page, with both offices of the country.
        await tccc.click(".tab[data-view=centre]")
        await tccc.click(".subtab[data-centre=feeds]")
        await tccc.fill("#feed-name", FEED)
        await tccc.check(".feed-member[value=TH-MUK]")
        await tccc.check(".feed-member[value=TH-NKP]")
        await tccc.click("#feed-create")
        await expect(tccc.locator("#feeds-result")).to_contain_text(f"Created #{FEED}")
        row = tccc.locator(f"#feeds-body tr[data-feed={FEED}]")
        await expect(row).to_contain_text("owned here")
        assert await row.locator(".member").evaluate_all("els => els.map(e => e.dataset.office)") == ["TH-MUK", "TH-NKP"]

        async with api(nodes["TH-MUK"], network["TH-MUK"].token) as muk_api, \
                api(nodes["TH-NKP"], network["TH-NKP"].token) as nkp_api:
            for member in (muk_api, nkp_api):
                await eventually(lambda m=member: _holds_key(m, FEED), 15, "the feed key on the members")
            status, posted = await muk_api.post(
                "/api/bulletins", bulletin_request(to=["TH-TCCC"], releasable_to=["TH"], title=title))
            assert status == 201

        # The report is in the centre's triage queue (the live event brings it in).
        await tccc.click(".subtab[data-centre=triage]")
        queued = tccc.locator("#triage-list li", has_text=title)
        await expect(queued).to_have_attribute("data-state", "new", timeout=15_000)
        await queued.locator("button").click()
        await expect(tccc.locator("#triage-detail-title")).to_have_text(title)
        await tccc.click("#triage-forward-button")
        await tccc.select_option("#forward-feed", FEED)
        await expect(tccc.locator("#forward-members")).to_have_text("Members: TH-MUK, TH-NKP")
        await tccc.click("#forward-send")
        await expect(tccc.locator("#forward-dialog")).to_be_hidden()
        await expect(tccc.locator("#forward-error")).to_be_hidden()
        await expect(queued).to_have_attribute("data-state", "disseminated")
        await expect(tccc.locator("#triage-state")).to_have_text("Disseminated")

        # Nakhon Phanom's officer sees it arrive on the feed, forwarded, the original checked.
        arrived = nkp.locator("#feed-list li", has_text=title)
        await expect(arrived).to_be_visible(timeout=15_000)
        await expect(arrived).to_contain_text(f"#{FEED}")
        await arrived.locator("button").click()
        await expect(nkp.locator("#attribution")).to_have_text(
            f"TH-MUK's bulletin {posted['id']}, forwarded by TH-TCCC; TH-MUK's signature checked")
        original = nkp.locator("#provenance")
        await expect(original.locator("strong")).to_have_text("✔ Original signature of TH-MUK checked")
        await expect(original).to_contain_text(posted["id"])
        await expect(original).to_contain_text(network["TH-MUK"].identity.signing.kid.hex())
        await expect(nkp.locator("#signature")).to_contain_text("TH-TCCC, the forwarding centre")

        for page, url in ((tccc, tccc_url), (nkp, nkp_url)):
            log = page_log(page)
            assert log.page_errors == [] and log.console_errors == []
            assert log.foreign_requests(url) == []
