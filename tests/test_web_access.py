"""Accessibility of the officer's page, in a real headless Chromium against the stub node of
tests/test_web_static.py:

* axe-core (npm ``axe-core``, pinned in package.json, installed into node_modules/ by
  ``make test``; injected into the page by Playwright, never fetched at test time) finds
  nothing in the main views (sign-in, feed with a bulletin open, compose with entities,
  check with an answer and hits, outbox), in English and Thai, on a desktop and a phone;
* compose and check are used with the keyboard alone: Tab to each control (its focus
  drawn), keys to choose, type and press; a bulletin is sent, a check is run and its
  answer read;
* the precedence and TLP badges, and the text of every input and select, meet WCAG AA
  contrast (4.5:1 for their small text), in both frames of the FLASH blink.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from bus.bulletin import PRECEDENCES, TLP_LABELS
from tests.browser import launch_chromium, open_page, page_log
from tests.test_web_i18n import LanguageStub
from tests.test_web_static import CSRF, PASSPORT, hit, login, serve

pytestmark = pytest.mark.asyncio(loop_scope="module")

AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
AA_SMALL_TEXT = 4.5


def axe_script() -> Path:
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `make test` (it installs axe-core from package.json with npm)", pytrace=False)
    return AXE


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_chromium() -> AsyncIterator[Browser]:
    async with launch_chromium() as browser:
        yield browser


def stub(language: str) -> LanguageStub:
    """The stub in ``language``, with a lookout hit to show beside the check."""
    node = LanguageStub(language)
    node.hits = [hit(node.items[1], node.items[0])]
    return node


#: The rules a view must pass, and so run on something: a label on every control, a name on
#: every button and select, readable contrast.
MUST_PASS = {"label", "button-name", "select-name", "color-contrast"}


async def axe_violations(page: Page, must_pass: set[str] = MUST_PASS) -> list[str]:
    """What axe-core finds on the page as it is now (every rule axe runs by default: WCAG
    2.x A and AA, and its best practices), one line per rule and element."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(axe_script()))
    result = await page.evaluate("""async () => {
      const r = await axe.run(document);
      return {
        violations: r.violations.flatMap((v) => v.nodes.map((n) => `${v.id} (${v.impact}): ${n.target.join(" ")}: ${v.help}`)),
        passed: r.passes.map((p) => p.id),
      };
    }""")
    assert must_pass <= set(result["passed"]), result["passed"]
    return result["violations"]


@pytest.mark.parametrize("viewport", [(1280, 720), (360, 740)], ids=["desktop", "phone"])
@pytest.mark.parametrize("language", ["en", "th"])
async def test_axe_finds_nothing_in_the_main_views(shared_chromium, language, viewport):
    node = stub(language)
    async with serve(node) as base:
        page = await open_page(shared_chromium, viewport)
        try:
            found: dict[str, list[str]] = {}
            node.logged_in = False
            await page.goto(base + "/")
            await page.locator("#login-form").wait_for()
            found["sign-in"] = await axe_violations(page, MUST_PASS - {"select-name"})  # it has no select
            node.logged_in = True
            await login(page, base)
            await page.locator("#feed-list li button").nth(1).click()
            await page.locator("#detail .sig").wait_for()
            found["feed, reading a bulletin"] = await axe_violations(page)
            await page.click(".tab[data-view=compose]")
            for kind in ("person", "document", "vehicle", "location"):
                await page.select_option("#entity-type", kind)
                await page.click("#entity-add")
            await page.click("#compose-send")  # refused in the page: its error shown
            await page.locator("#compose-error").wait_for()
            found["compose"] = await axe_violations(page)
            await page.click(".tab[data-view=check]")
            await page.fill("#check-number", PASSPORT["number"])
            await page.press("#check-number", "Enter")
            await page.locator("#check-matches li").first.wait_for()
            await page.locator("#hits-list li").first.wait_for()
            found["check"] = await axe_violations(page)
            await page.click(".tab[data-view=outbox]")
            await page.locator("#outbox-body tr").first.wait_for()
            found["outbox"] = await axe_violations(page)
            assert {view: v for view, v in found.items() if v} == {}
            page_log(page).assert_clean(base)
        finally:
            await page.context.close()


# -- the keyboard alone ----------------------------------------------------------------------


async def tab_to(page: Page, selector: str, *, limit: int = 80, back: bool = False) -> None:
    """Press Tab (Shift+Tab with ``back``) until the focus is on ``selector``, as a person
    without a mouse does; the focused control must show where the focus is."""
    for _ in range(limit):
        await page.keyboard.press("Shift+Tab" if back else "Tab")
        if await page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            ring = await page.evaluate("""() => {
              const el = document.activeElement, cs = getComputedStyle(el);
              return el.matches(':focus-visible') && cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 1;
            }""")
            assert ring, f"{selector} has the focus but does not show it"
            return
    raise AssertionError(f"{selector} is not reached by {'Shift+' if back else ''}Tab within {limit} presses")


async def choose(page: Page, selector: str, value: str) -> None:
    """Tab to a select and move through its options with the arrow keys to ``value``."""
    await tab_to(page, selector)
    await choose_here(page, selector, value)


async def choose_here(page: Page, selector: str, value: str) -> None:
    """Move the focused select to ``value`` with the arrow keys."""
    values = await page.eval_on_selector(selector, "s => [...s.options].map((o) => o.value)")
    steps = values.index(value) - values.index(await page.input_value(selector))
    for _ in range(abs(steps)):
        await page.keyboard.press("ArrowDown" if steps > 0 else "ArrowUp")
    assert await page.input_value(selector) == value


async def type_into(page: Page, selector: str, text: str) -> None:
    await tab_to(page, selector)
    await page.keyboard.type(text)


async def open_view_by_keyboard(page: Page, base: str, view: str) -> None:
    """Signed in, focus nowhere, then Tab to the view's tab and Enter: the view shows."""
    await login(page, base)
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    await tab_to(page, f".tab[data-view={view}]")
    await page.keyboard.press("Enter")
    await expect(page.locator(f"#view-{view}")).to_be_visible()


async def test_a_bulletin_is_composed_and_sent_with_the_keyboard_alone(shared_chromium):
    node = stub("en")
    async with serve(node) as base:
        page = await open_page(shared_chromium)
        try:
            await open_view_by_keyboard(page, base, "compose")
            await tab_to(page, ".to-office[value=LA-SVK]")
            await page.keyboard.press("Space")
            assert await page.is_checked(".to-office[value=LA-SVK]")
            await choose(page, "#c-precedence", "IMMEDIATE")
            await choose(page, "#c-kind", "lookout")
            await choose(page, "#c-tlp", "AMBER")
            await choose(page, "#c-source", "B")
            await choose(page, "#c-information", "2")
            await type_into(page, "#c-title", "ยึดหนังสือเดินทางปลอม ที่ด่านสะพานมิตรภาพ 2")
            await type_into(page, "#c-body", "Passport P0847211 seized at the counter.")
            await choose(page, "#entity-type", "document")
            await tab_to(page, "#entity-add")
            await page.keyboard.press("Enter")
            row = page.locator(".entity-row[data-type=document]")
            await expect(row).to_have_count(1)
            await choose(page, ".entity-row[data-type=document] [data-field=doc_type]", "passport")
            await type_into(page, ".entity-row[data-type=document] [data-field=number]", "P0847211")
            await tab_to(page, "#compose-send")
            await page.keyboard.press("Enter")
            await expect(page.locator("#compose-result")).to_be_visible()
            (_, headers, body), = node.posts_to("/api/bulletins")
            assert headers["X-CSRF-Token"] == CSRF
            assert body["to"] == ["LA-SVK"]
            assert (body["precedence"], body["kind"], body["tlp"], body["grading"]) == ("IMMEDIATE", "lookout", "AMBER", "B2")
            assert body["title"] == "ยึดหนังสือเดินทางปลอม ที่ด่านสะพานมิตรภาพ 2"
            assert body["body"] == "Passport P0847211 seized at the counter."
            assert body["entities"] == [{"type": "document", "doc_type": "passport", "number": "P0847211"}]
            page_log(page).assert_clean(base)
        finally:
            await page.context.close()


async def test_a_check_is_run_and_its_answer_read_with_the_keyboard_alone(shared_chromium):
    node = stub("en")
    lookout = node.items[0]
    async with serve(node) as base:
        page = await open_page(shared_chromium)
        try:
            await open_view_by_keyboard(page, base, "check")
            # The number field takes the focus: the officer types at once.
            assert await page.evaluate("document.activeElement.id") == "check-number"
            await page.keyboard.type("P0847211")
            await type_into(page, "#check-country", "la")
            await page.keyboard.press("Enter")
            verdict = page.locator("#check-verdict")
            await expect(verdict).to_contain_text("FLAGGED")
            # The answer is announced (a live region) and the number is ready for the next traveller.
            assert await page.get_attribute("#check-result", "aria-live") == "polite"
            assert await page.evaluate("document.activeElement.id") == "check-number"
            (_, _, body), = node.posts_to("/api/check")
            assert body == PASSPORT
            # Reading the answer: Tab on to the lookout it names, Enter opens it.
            await tab_to(page, "#check-matches .match-title")
            await page.keyboard.press("Enter")
            await expect(page.locator("#view-feed")).to_be_visible()
            await expect(page.locator("#detail-title")).to_have_text(lookout["title"])

            # A person, chosen with the keys: the form changes to a person's fields.
            await tab_to(page, ".tab[data-view=check]", back=True)
            await page.keyboard.press("Enter")
            await expect(page.locator("#view-check")).to_be_visible()
            await tab_to(page, "#check-type", back=True)
            await choose_here(page, "#check-type", "person")
            await type_into(page, "#check-name", "Souksavanh Phommachanh")
            await page.keyboard.press("Enter")
            await expect(page.locator("#check-verdict")).to_be_visible()
            assert node.posts_to("/api/check")[-1][2] == {"type": "person", "name": "Souksavanh Phommachanh"}
            page_log(page).assert_clean(base)
        finally:
            await page.context.close()


# -- contrast -----------------------------------------------------------------------------------


def luminance(rgb: tuple[float, ...]) -> float:
    """WCAG 2 relative luminance of an sRGB colour (0-255 channels)."""
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


# Each badge's text and background colours as drawn; the FLASH badge in both frames of its
# blink (red on white half the second).
BADGE_COLOURS = """async () => {
  const m = await import('/static/app.js');
  const rgb = (s) => s.match(/[\\d.]+/g).map(Number);
  const out = [];
  const measure = (badge, frame) => {
    const cs = getComputedStyle(badge);
    out.push({ text: badge.textContent, frame, color: rgb(cs.color), background: rgb(cs.backgroundColor),
               weight: cs.fontWeight, size: cs.fontSize });
  };
  for (const badge of [...m.PRECEDENCES.map(m.precedenceBadge), ...m.TLP_LABELS.map(m.tlpBadge)]) {
    document.body.append(badge);
    const blink = badge.getAnimations();
    if (!blink.length) { measure(badge, "still"); continue; }
    for (const at of [250, 750]) {
      blink.forEach((a) => { a.pause(); a.currentTime = at; });
      measure(badge, `${at} ms`);
    }
  }
  return out;
}"""


async def test_precedence_and_tlp_badges_meet_wcag_aa_contrast(shared_chromium):
    node = stub("en")
    async with serve(node) as base:
        page = await open_page(shared_chromium)
        try:
            await login(page, base)
            badges: list[dict[str, Any]] = await page.evaluate(BADGE_COLOURS)
            assert {b["text"] for b in badges} == {*PRECEDENCES, *(f"TLP:{t}" for t in TLP_LABELS)}
            flash = [b for b in badges if b["text"] == "FLASH"]
            assert len(flash) == 2 and flash[0]["background"] != flash[1]["background"]  # it does blink
            for b in badges:
                assert b["background"][3:] in ([], [1]), f"{b['text']}: a see-through background"
                ratio = contrast(b["color"], b["background"])
                # 11 px text: small text for WCAG, 4.5:1 whatever its weight.
                assert ratio >= AA_SMALL_TEXT, f"{b['text']} ({b['frame']}): {ratio:.2f}:1"
        finally:
            await page.context.close()


# The text colour of every shown input and select against the background it is drawn on.
FIELD_COLOURS = """() => {
  const rgb = (s) => s.match(/[\\d.]+/g).map(Number);
  return [...document.querySelectorAll("input:not([type=checkbox]):not([type=file]), select, textarea")]
    .filter((el) => el.getClientRects().length > 0)
    .map((el) => {
      const cs = getComputedStyle(el);
      return { id: el.id || el.className, color: rgb(cs.color), background: rgb(cs.backgroundColor) };
    });
}"""


@pytest.mark.parametrize("view", ["feed", "compose", "check"])
async def test_what_is_typed_or_chosen_in_every_field_is_readable(shared_chromium, view):
    node = stub("en")
    async with serve(node) as base:
        page = await open_page(shared_chromium)
        try:
            await login(page, base)
            await page.click(f".tab[data-view={view}]")
            fields = await page.evaluate(FIELD_COLOURS)
            assert {"search-input", "language"} <= {f["id"] for f in fields}
            low = {f["id"]: round(contrast(f["color"], f["background"]), 2) for f in fields
                   if contrast(f["color"], f["background"]) < AA_SMALL_TEXT}
            assert low == {}
        finally:
            await page.context.close()
