"""The officer's page on a phone: 360x740 CSS pixels in a real headless Chromium, against the
stub node of tests/test_web_static.py, in English, Thai and Burmese (the longest labels).

Feed, read, compose and check each: the page body never scrolls sideways, no pane scrolls
sideways, and every control on screen is reachable and usable: inside the screen's width,
brought into view by scrolling only what the officer can scroll (never a pane that hides
its overflow), not cut off by any pane, and on top where it is drawn (a click there lands on
it). The officer then uses each view with the mouse as on a touch screen: reads a
bulletin, sends one, runs a check and reads its answer.

Each view is kept as a screenshot in ``artifacts_dir("small-screen")`` (tests/browser.py:
$BLO_TEST_ARTIFACTS, or test-artifacts/ in the repository, ignored by git), named
``<language>-<view>.png``, for a person to look at after the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from office_node import i18n
from tests.browser import artifacts_dir, launch_chromium, open_page, page_log
from tests.test_web_i18n import LanguageStub
from tests.test_web_static import PASSPORT, login, serve

pytestmark = pytest.mark.asyncio(loop_scope="module")

PHONE = (360, 740)

# Every control of the top bar, the status bar and the shown view that can be seen, with
# what stops an officer using it on this screen (none: an empty list).
UNREACHABLE = r"""(viewId) => {
  const problems = [];
  const W = window.innerWidth, H = window.innerHeight;
  const scope = [document.querySelector(".topbar"), document.getElementById(viewId), document.querySelector(".statusbar")];
  const controls = scope.flatMap((root) => [...root.querySelectorAll(
    "button, input, select, textarea, a[href], [tabindex]:not([tabindex='-1'])")]);
  const seen = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
  const name = (el) => `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}${el.className ? "." + String(el.className).split(" ").join(".") : ""}`;
  const clips = (el) => {
    const out = [];
    for (let a = el.parentElement; a; a = a.parentElement) {
      const cs = getComputedStyle(a);
      if (cs.overflowX !== "visible" || cs.overflowY !== "visible") out.push([a, cs]);
    }
    return out;
  };
  for (const el of controls.filter(seen)) {
    el.scrollIntoView({ block: "nearest", inline: "nearest" });
    const r = el.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) { problems.push(`${name(el)}: no size`); continue; }
    if (r.left < -0.5 || r.right > W + 0.5) problems.push(`${name(el)}: off the screen's width (${r.left}..${r.right})`);
    if (r.top < -0.5 || r.bottom > H + 0.5) problems.push(`${name(el)}: not brought on screen (${r.top}..${r.bottom})`);
    for (const [a, cs] of clips(el)) {
      // scrollIntoView also scrolls a pane that hides its overflow; the officer cannot.
      const hides = (v) => v === "hidden" || v === "clip";
      if ((hides(cs.overflowX) && a.scrollLeft) || (hides(cs.overflowY) && a.scrollTop)) {
        problems.push(`${name(el)}: only reachable by scrolling ${name(a)}, which hides its overflow`);
      }
      const box = a.getBoundingClientRect();
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5) {
        problems.push(`${name(el)}: cut off by ${name(a)}`);
      }
    }
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    const labels = el.labels ? [...el.labels] : [];
    if (!hit || !(el === hit || el.contains(hit) || labels.some((l) => l.contains(hit)))) {
      problems.push(`${name(el)}: covered by ${hit ? name(hit) : "nothing"}`);
    }
  }
  // Nothing scrolls sideways: not the page, not a pane of the view.
  for (const el of [document.documentElement, document.body, ...document.querySelectorAll(`#${viewId}, #${viewId} *`)]) {
    if (!seen(el)) continue;
    const cs = getComputedStyle(el);
    const scrolls = el === document.documentElement || el === document.body || cs.overflowX === "auto" || cs.overflowX === "scroll";
    if (scrolls && el.scrollWidth > el.clientWidth + 1) problems.push(`${name(el)} scrolls sideways (${el.scrollWidth} > ${el.clientWidth})`);
  }
  // The status bar's items all show (it wraps rather than hiding the last ones past the edge).
  for (const item of document.querySelectorAll(".statusbar > span")) {
    const r = item.getBoundingClientRect(), bar = item.parentElement.getBoundingClientRect();
    if (item.textContent.trim() && (r.right > Math.min(W, bar.right) + 0.5 || r.bottom > bar.bottom + 0.5)) {
      problems.push(`status bar item "${item.textContent.trim()}" is cut off`);
    }
  }
  return problems;
}"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_chromium() -> AsyncIterator[Browser]:
    async with launch_chromium() as browser:
        yield browser


async def fits_the_phone(page: Page, view: str, language: str, shot: str | None = None) -> None:
    """The view at its current state is usable at 360 px; its screenshot is kept as ``shot``."""
    await page.evaluate("document.fonts.ready")
    problems = await page.evaluate(UNREACHABLE, f"view-{view}")
    # Back to the top of every pane for the picture, as the officer first sees the view.
    await page.evaluate("document.querySelectorAll('*').forEach((el) => { if (el.scrollTop) el.scrollTop = 0; })")
    await page.screenshot(path=str(artifacts_dir("small-screen") / f"{language}-{shot or view}.png"))
    assert not problems, f"{language}, {view} at {PHONE[0]} px: " + "; ".join(problems)


@pytest.mark.parametrize("language", ["en", "th", "my"])
async def test_feed_read_compose_and_check_work_on_a_360_px_phone(shared_chromium, language):
    node = LanguageStub(language)
    messages = i18n.page_catalogue(language)["messages"]
    async with serve(node) as base:
        page = await open_page(shared_chromium, PHONE, locale="en-GB", has_touch=True)
        try:
            await login(page, base)
            await expect(page.locator("html")).to_have_attribute("lang", language)
            await fits_the_phone(page, "feed", language)

            # Read: the list and the bulletin both on screen, the bulletin's actions in reach.
            await page.locator("#feed-list li button").nth(1).click()
            await page.locator("#detail .sig").wait_for()
            title = await page.locator("#detail-title").bounding_box()
            assert title["y"] + title["height"] <= PHONE[1] and title["x"] + title["width"] <= PHONE[0]
            await fits_the_phone(page, "feed", language, shot="read")

            # Compose: with entities added, the whole form fits the width; then it is sent.
            await page.click(".tab[data-view=compose]")
            for kind in ("person", "document", "vehicle"):
                await page.select_option("#entity-type", kind)
                await page.click("#entity-add")
            await fits_the_phone(page, "compose", language)
            for row in ("vehicle", "document", "person"):
                await page.locator(f".entity-row[data-type={row}] .remove").click()
            await page.check(".to-office[value=LA-SVK]")
            await page.select_option("#c-source", "B")
            await page.select_option("#c-information", "2")
            await page.fill("#c-title", "ยึดยาบ้าที่ด่านสะพานมิตรภาพ 2")
            await page.click("#compose-send")
            await expect(page.locator("#compose-result")).to_be_visible()
            (_, _, body), = node.posts_to("/api/bulletins")
            assert body["to"] == ["LA-SVK"] and body["title"] == "ยึดยาบ้าที่ด่านสะพานมิตรภาพ 2"

            # Check: the answer starts on screen, right under the form.
            await page.click(".tab[data-view=check]")
            await page.fill("#check-number", PASSPORT["number"])
            await page.press("#check-number", "Enter")
            verdict = page.locator("#check-verdict")
            await expect(verdict).to_contain_text(messages.get("FLAGGED") or "FLAGGED")
            box = await verdict.bounding_box()
            assert 0 <= box["y"] and box["y"] + box["height"] <= PHONE[1]
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE[0]
            await expect(page.locator("#check-matches li")).to_have_count(1)
            await fits_the_phone(page, "check", language)
            page_log(page).assert_clean(base)
        finally:
            await page.context.close()
