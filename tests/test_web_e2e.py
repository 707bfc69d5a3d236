"""The officer's page against real nodes in a real headless Chromium: two offices on a
real nats-server; an officer at Mukdahan signs in, posts, and an officer at Savannakhet
sees it arrive live, opens it and sees it verified; Mukdahan's outbox shows it read.
At Savannakhet's counter, a passport named in Mukdahan's lookout checks FLAGGED, and a
bulletin naming it raises a hit on the page."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import expect

from bus.transport.server import NatsServer
from tests.browser import browser_page, chromium, new_browser_page, page_log  # noqa: F401
from tests.node_helpers import api, build, bulletin_request, eventually, running


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
