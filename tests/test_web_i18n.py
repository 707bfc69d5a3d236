"""The officer's page in the officer's language, in a real headless Chromium against the
stub node of tests/test_web_static.py (which serves the node's own catalogue handler):
the browser's language by default, the officer's saved choice over it, every text on
screen from the catalogue, dates in the locale's form (the Buddhist era for Thai)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, Page, expect

from bus.bulletin import PRECEDENCES, TLP_LABELS
from office_node import i18n
from tests.browser import launch_chromium, open_page, page_log
from tests.page_texts import page_texts
from tests.test_web_static import NOW, PASSPORT, StubNode, hit, login, lookout_summary, match, serve

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Texts that are codes, names or examples, the same in every language (precedences and TLP
# labels are the handling codes officers know in English; "CLEAR" is also a TLP label).
SAME_EVERYWHERE = {"BLO Bus", "FLASH", "TLP", "NATS", "MMSI", "TH, LA", "th-border", *PRECEDENCES, *TLP_LABELS}


class LanguageStub(StubNode):
    """The stub node with the officer's saved language: GET /api/me names it, POST /api/me saves it."""

    def __init__(self, language: str | None = None) -> None:
        super().__init__()
        self.language = language
        lookout = lookout_summary()
        self.items.insert(0, lookout)
        self.check_answer = {"flagged": True, "matches": [match(lookout)], "mentions": [match(self.items[1])]}
        self.hits = [hit(self.items[1], lookout)]

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_post("/api/me", self.save_me)
        return app

    def me_json(self) -> dict[str, Any]:
        return {
            "user": {"username": "somchai", "display_name": "Somchai K.", "role": self.user_role, "language": self.language},
            "csrf_token": "csrf-token-7f3a", "office": self.office, "role": self.role,
            "languages": [{"tag": tag, "name": i18n.NAMES[tag]} for tag in i18n.LANGUAGES],
        }

    async def me(self, request: web.Request) -> web.Response:
        if not self.authed(request):
            return self.deny()
        return web.json_response(self.me_json())

    async def save_me(self, request: web.Request) -> web.Response:
        denied = await self.record_post(request)
        if denied:
            return denied
        self.language = self.posts[-1][2]["language"]
        return web.json_response(self.me_json())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_chromium() -> AsyncIterator[Browser]:
    async with launch_chromium() as browser:
        yield browser


@pytest_asyncio.fixture(loop_scope="module")
async def new_page(shared_chromium: Browser) -> AsyncIterator[Callable[..., Awaitable[Page]]]:
    pages: list[Page] = []

    async def make(**options: Any) -> Page:
        page = await open_page(shared_chromium, **options)
        pages.append(page)
        return page

    yield make
    for page in pages:
        await page.context.close()


def english_texts() -> set[str]:
    """Every English text of the page that a translation must replace."""
    texts, _ = page_texts()
    return {t for t in texts if t not in SAME_EVERYWHERE}


VISIBLE_TEXTS = r"""() => {
  const out = [];
  const seen = (el) => el && el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT | NodeFilter.SHOW_ELEMENT);
  for (let node = walker.currentNode; node; node = walker.nextNode()) {
    if (node.nodeType === Node.TEXT_NODE) {
      const text = node.data.replace(/\s+/g, " ").trim();
      if (text && seen(node.parentElement)) out.push(text);
    } else if (seen(node)) {
      for (const name of ["placeholder", "title", "aria-label", "alt"]) {
        const value = node.getAttribute(name);
        if (value) out.push(value.trim());
      }
    }
  }
  for (const option of document.querySelectorAll("select option")) {
    if (seen(option.parentElement)) out.push(option.textContent.trim());
  }
  return out;
}"""


async def screen_texts(page: Page) -> set[str]:
    return set(await page.evaluate(VISIBLE_TEXTS))


async def tour(page: Page) -> set[str]:
    """Every view an officer uses, with something in it: the texts seen on the way."""
    seen = await screen_texts(page)
    await page.locator("#feed-list li button").nth(1).click()
    await page.locator("#detail .sig").wait_for()
    seen |= await screen_texts(page)
    await page.click(".tab[data-view=compose]")
    for kind in ("person", "document", "vehicle"):
        await page.select_option("#entity-type", kind)
        await page.click("#entity-add")
    await page.click("#compose-send")  # refused in the page: an error in words
    await page.locator("#compose-error").wait_for()
    seen |= await screen_texts(page)
    await page.click(".tab[data-view=check]")
    await page.fill("#check-number", PASSPORT["number"])
    await page.press("#check-number", "Enter")
    await page.locator("#check-verdict").wait_for()
    seen |= await screen_texts(page)
    await page.click(".tab[data-view=outbox]")
    await page.locator("#outbox-body tr").first.wait_for()
    seen |= await screen_texts(page)
    return seen


@pytest.mark.parametrize("language", ["th", "lo", "km", "vi", "my"])
async def test_every_text_the_officer_sees_comes_from_the_chosen_languages_catalogue(new_page, language):
    node = LanguageStub(language)
    catalogue = i18n.page_catalogue(language)["messages"]
    async with serve(node) as base:
        page = await new_page(locale="en-GB")  # the saved choice wins over the browser's
        await login(page, base)
        await expect(page.locator("html")).to_have_attribute("lang", language)
        seen = await tour(page)
        english = {t for t in seen & english_texts() if catalogue.get(t) != t}
        assert not english, f"{language}: shown in English: {sorted(english)}"
        # And the catalogue's words are what is shown, e.g. the tabs and the verdict.
        for text in ("Check", "Compose", "Outbox", "FLAGGED"):
            assert catalogue[text] in seen, text
        page_log(page).assert_clean(base)


async def test_the_page_follows_the_browsers_language_and_thai_dates_are_in_the_buddhist_era(new_page):
    node = LanguageStub()
    async with serve(node) as base:
        page = await new_page(locale="th-TH")
        await login(page, base)
        await expect(page.locator("html")).to_have_attribute("lang", "th")
        await expect(page.locator(".tab[data-view=feed]")).to_have_text("ฟีด")
        assert await page.get_attribute("#search-input", "placeholder") == "ค้นหาข่าวสาร (ชื่อ หมายเลข อักษรใดก็ได้)"
        when = await page.locator("#feed-list .when").first.text_content()
        assert "2569" in when and "2026" not in when  # 2026 CE is 2569 in the Buddhist era
        assert await page.locator("#language").input_value() == ""  # nothing saved: the browser's

        # A browser in a language without a catalogue gets English, dates as YYYY-MM-DD.
        page = await new_page(locale="fr-FR")
        await login(page, base)
        await expect(page.locator(".tab[data-view=feed]")).to_have_text("Feed")
        assert (await page.locator("#feed-list .when").first.text_content()).startswith("2026-")


async def test_the_officer_chooses_a_language_it_is_saved_in_the_account_and_the_page_follows(new_page):
    node = LanguageStub()
    async with serve(node) as base:
        page = await new_page(locale="lo-LA")
        await login(page, base)
        await expect(page.locator(".tab[data-view=feed]")).to_have_text("ຟີດ")
        options = await page.locator("#language option").all_text_contents()
        assert options[1:] == [i18n.NAMES[tag] for tag in i18n.LANGUAGES]
        async with page.expect_navigation():
            await page.select_option("#language", "th-u-ca-gregory")
        assert node.posts_to("/api/me")[-1][2] == {"language": "th-u-ca-gregory"}
        await page.locator("#feed-list li").first.wait_for()
        await expect(page.locator(".tab[data-view=feed]")).to_have_text("ฟีด")
        assert await page.locator("#language").input_value() == "th-u-ca-gregory"
        when = await page.locator("#feed-list .when").first.text_content()
        assert "2026" in when and "2569" not in when  # Thai, with Gregorian years
        # Back to the browser's language: null is saved.
        async with page.expect_navigation():
            await page.select_option("#language", "")
        assert node.posts_to("/api/me")[-1][2] == {"language": None}
        await expect(page.locator(".tab[data-view=feed]")).to_have_text("ຟີດ")


async def test_the_sign_in_page_speaks_the_browsers_language(new_page):
    node = LanguageStub()
    node.logged_in = False
    async with serve(node) as base:
        page = await new_page(locale="km-KH")
        await page.goto(base + "/login?error=bad_credentials")
        await expect(page.locator("#login-error")).to_have_text("ឈ្មោះអ្នកប្រើ ឬពាក្យសម្ងាត់មិនត្រឹមត្រូវ")
        await expect(page.locator("#login-form button[type=submit]")).to_have_text("ចូល")
        assert await page.title() == "ចូល · BLO Bus"
        assert json.loads(json.dumps(await page.evaluate("document.documentElement.lang"))) == "km"
        assert NOW  # the stub's clock
