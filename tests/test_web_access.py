"""The page for a border post: at 360 px wide (a phone), by keyboard alone, and to
axe-core's WCAG 2 A/AA rules, in a real headless Chromium against the stub node of
tests/test_web_static.py. Screenshots of each view at 360 px are kept as test artefacts
in ``test-artifacts/screens/`` (or ``$BLO_TEST_ARTIFACTS``; git ignores the folder)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from tests.browser import launch_chromium, open_page
from tests.test_web_static import PASSPORT, StubNode, login, lookout_summary, match, serve

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).parent.parent
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("BLO_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "screens"
PHONE = (360, 740)
VIEWS = ("feed", "read", "compose", "check")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_chromium() -> AsyncIterator[Browser]:
    async with launch_chromium() as browser:
        yield browser


@pytest_asyncio.fixture(loop_scope="module")
async def new_page(shared_chromium: Browser) -> AsyncIterator[Callable[..., Awaitable[Page]]]:
    pages: list[Page] = []

    async def make(viewport: tuple[int, int] = (1280, 720), **options: Any) -> Page:
        page = await open_page(shared_chromium, viewport, **options)
        pages.append(page)
        return page

    yield make
    for page in pages:
        await page.context.close()


@pytest_asyncio.fixture(loop_scope="module")
async def stub() -> AsyncIterator[tuple[StubNode, str]]:
    node = StubNode()
    lookout = lookout_summary()
    node.items.insert(0, lookout)
    node.check_answer = {"flagged": True, "matches": [match(lookout)], "mentions": []}
    async with serve(node) as base:
        yield node, base


async def show(page: Page, view: str) -> None:
    """Open one of the officer's views the way an officer would."""
    if view == "read":
        await page.locator("#feed-list li").first.locator("button").click()
        await page.wait_for_selector("#receipts")
    elif view != "feed":
        await page.click(f".tab[data-view={view}]")
        await page.locator(f"#view-{view}").wait_for(state="visible")


async def overflow(page: Page) -> list[str]:
    """What sticks out of the screen sideways: the page itself (a horizontal scroll), or a
    visible control whose box leaves the viewport (out of reach on a phone)."""
    return await page.evaluate(
        """() => {
          const width = window.innerWidth, out = [];
          if (document.documentElement.scrollWidth > width) out.push(`page ${document.documentElement.scrollWidth}px`);
          for (const e of document.querySelectorAll("button, input, select, textarea, a[href]")) {
            const r = e.getBoundingClientRect(), style = getComputedStyle(e);
            if (r.width === 0 || r.height === 0 || style.visibility === "hidden") continue;
            if (e.closest("[hidden]")) continue;
            if (r.left < -1 || r.right > width + 1) out.push(`${e.tagName.toLowerCase()}#${e.id || e.className} ${Math.round(r.left)}..${Math.round(r.right)}`);
          }
          return out;
        }"""
    )


@pytest.mark.parametrize("language", ["en", "th"])
@pytest.mark.parametrize("view", VIEWS)
async def test_every_view_works_on_a_360_px_screen(new_page, stub, view: str, language: str) -> None:
    _, base = stub
    page = await new_page(PHONE, locale=language)
    await login(page, base)
    await show(page, view)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{view}-{language}-360.png"), full_page=True)
    assert await overflow(page) == []


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    assert AXE.is_file(), f"{AXE} is missing: `make test` installs axe-core (npm) before the tests"
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        """async () => {
          const r = await axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
          if (r.passes.length < 10) throw new Error(`axe checked almost nothing (${r.passes.length} rules passed)`);
          return r.violations.map((v) => ({ id: v.id, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ") + ": " + n.failureSummary) }));
        }"""
    )
    return result


@pytest.mark.parametrize("language", ["en", "th"])
@pytest.mark.parametrize("view", VIEWS)
async def test_every_view_passes_axe_wcag_2_aa(new_page, stub, view: str, language: str) -> None:
    """Labels on every control, contrast of the precedence and TLP badges and of all text,
    landmarks, names: axe-core's WCAG 2.0/2.1 A and AA rules, none violated."""
    _, base = stub
    page = await new_page(locale=language)
    await login(page, base)
    await show(page, view)
    violations = await axe_violations(page)
    assert violations == [], "\n".join(f"{v['id']}: {v['help']}\n  " + "\n  ".join(v["nodes"]) for v in violations)


async def test_the_checks_themselves_catch_an_unlabelled_control_and_a_too_wide_one(new_page, stub) -> None:
    """The harness can fail: a control with no label, text of too little contrast and a
    control wider than the phone are each reported."""
    _, base = stub
    page = await new_page(PHONE)
    await login(page, base)
    await page.evaluate(
        """() => {
          const bad = document.createElement("div");
          bad.innerHTML = '<input id="no-label"><span style="color:#bbb;background:#fff">faint</span>'
            + '<button id="too-wide" style="width:500px">wide</button>';
          document.querySelector("main, body").appendChild(bad);
        }"""
    )
    assert any("too-wide" in o for o in await overflow(page))
    found = {v["id"] for v in await axe_violations(page)}
    assert {"label", "color-contrast"} <= found, found


async def tab_to(page: Page, selector: str, *, limit: int = 120) -> None:
    """Press Tab until the focus is on ``selector``: reachable by keyboard, in tab order."""
    for _ in range(limit):
        if await page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"{selector} cannot be reached with Tab ({limit} presses)")


async def test_a_bulletin_is_composed_and_sent_by_keyboard_alone(new_page, stub) -> None:
    node, base = stub
    page = await new_page(PHONE)
    await login(page, base)
    await tab_to(page, ".tab[data-view=compose]")
    await page.keyboard.press("Enter")
    await page.locator("#view-compose").wait_for(state="visible")
    await tab_to(page, "#to-offices input[type=checkbox]")
    await page.keyboard.press("Space")
    for grading in ("#c-source", "#c-information"):  # a closed select takes the arrow keys
        await tab_to(page, grading)
        await page.keyboard.press("ArrowDown")
        await page.keyboard.press("ArrowDown")
    await tab_to(page, "#c-title")
    await page.keyboard.type("รถบรรทุกต้องสงสัย ทะเบียน 70-1234")
    await page.keyboard.press("Tab")
    await page.keyboard.type("ข้ามสะพานมิตรภาพ 2 เวลา 14:00")
    await tab_to(page, "#compose-send")
    await page.keyboard.press("Enter")
    await expect(page.locator("#compose-result")).to_be_visible()
    posted = node.posts_to("/api/bulletins")
    assert len(posted) == 1
    body = posted[0][2]
    assert body["title"] == "รถบรรทุกต้องสงสัย ทะเบียน 70-1234" and body["to"] and body["body"].startswith("ข้ามสะพาน")


async def test_a_border_check_is_run_and_read_by_keyboard_alone(new_page, stub) -> None:
    node, base = stub
    page = await new_page(PHONE)
    await login(page, base)
    await page.keyboard.press("F2")  # the counter's key: the check, its first field focused
    await page.locator("#view-check").wait_for(state="visible")
    await page.keyboard.type(PASSPORT["number"])
    await page.keyboard.press("Enter")
    verdict = page.locator("#check-result")
    await expect(verdict).to_contain_text("FLAGGED")
    # The answer's link to the lookout is reachable by keyboard and opens it.
    await tab_to(page, "#check-result a, #check-result button")
    assert node.posts_to("/api/check")[0][2]["number"] == PASSPORT["number"]
