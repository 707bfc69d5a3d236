"""The page's attachments in real headless Chromium against real nodes: an officer attaches
a photo with the file picker, sees the upload's progress bar go and the bulletin queued;
the counterpart's page shows a thumbnail the node re-encoded (a JPEG, whatever was sent),
opens it in the viewer, and offers the file as a download."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image
from playwright.async_api import expect

from bus.transport.server import NatsServer
from tests.browser import browser_page, chromium, new_browser_page, page_log  # noqa: F401
from tests.node_helpers import build, running
from tests.test_web_e2e import _sign_in


async def test_an_officer_attaches_a_photo_and_the_counterpart_sees_its_thumbnail(
    tmp_path: Path, nats_server: NatsServer, new_browser_page  # noqa: F811
) -> None:
    photo = tmp_path / "passport.png"
    out = io.BytesIO()
    Image.new("RGB", (800, 600), (20, 90, 160)).save(out, "PNG")
    photo.write_bytes(out.getvalue())
    network = build(tmp_path / "net", nats_server.url)
    muk_login, svk_login = network["TH-MUK"].logins[0], network["LA-SVK"].logins[0]
    async with running(network, "TH-MUK", "LA-SVK") as nodes:
        muk_url, svk_url = nodes["TH-MUK"].url, nodes["LA-SVK"].url
        assert muk_url and svk_url
        muk = await new_browser_page(viewport=(1280, 900), bypass_csp=False)
        svk = await new_browser_page(viewport=(1280, 900), bypass_csp=False)
        await _sign_in(muk, muk_url, muk_login.username, muk_login.password)
        await _sign_in(svk, svk_url, svk_login.username, svk_login.password)

        await muk.click(".tab[data-view=compose]")
        await muk.check(".to-office[value=LA-SVK]")
        await muk.fill("#c-releasable", "TH, LA")
        await muk.select_option("#c-source", "B")
        await muk.select_option("#c-information", "2")
        title = "ภาพถ่ายหนังสือเดินทางปลอม"
        await muk.fill("#c-title", title)
        await muk.set_input_files("#c-files", str(photo))
        await expect(muk.locator("#c-file-list li")).to_contain_text("passport.png")
        await muk.evaluate("""() => { window.__progress = [];
            new MutationObserver(() => window.__progress.push($('c-progress').value))
              .observe(document.getElementById('c-progress'), {attributes: true}); }""".replace("$('c-progress')", "document.getElementById('c-progress')"))
        await muk.click("#compose-send")
        await expect(muk.locator("#compose-result")).to_be_visible(timeout=15_000)
        await expect(muk.locator("#compose-error")).to_be_hidden()
        assert await muk.evaluate("() => window.__progress.length") > 0  # the bar was shown and moved

        arrived = svk.locator("#feed-list li", has_text=title)
        await expect(arrived).to_be_visible(timeout=15_000)
        await arrived.click()
        thumb = svk.locator("#detail img.thumbnail")
        await expect(thumb).to_be_visible(timeout=20_000)
        assert await thumb.evaluate("img => img.complete && img.naturalWidth") == 320  # re-encoded, at most 320 px
        src = await thumb.get_attribute("src")
        assert src and src.endswith("/attachments/0/thumbnail")
        download = svk.locator("#detail a.download")
        await expect(download).to_have_text("passport.png")
        await svk.click("#detail button.thumb")
        viewer = svk.locator("#image-viewer-img")
        await expect(viewer).to_be_visible()
        assert await viewer.evaluate("img => img.complete && img.naturalWidth") == 800
        for page, url in ((muk, muk_url), (svk, svk_url)):
            log = page_log(page)
            assert log.page_errors == [] and log.console_errors == []
            assert log.foreign_requests(url) == []
