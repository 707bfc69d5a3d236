"""A real headless Chromium for tests of the officer's web page.

Debian's ``chromium`` driven by Playwright's async API (the async API because the nodes
under test run on the same asyncio loop as the test). Playwright's own browser download
is never used: it needs the internet, and the suite must run without it.

Use in a test module (fixtures are plain imports; pytest finds them in the module)::

    from tests.browser import browser_page, chromium, new_browser_page, page_log  # noqa: F401

    async def test_officer_sees_the_feed(browser_page):
        await browser_page.goto(url)
        page_log(browser_page).assert_clean(url)

``new_browser_page()`` opens further pages, each in its own browser context: cookies
are per host, not per port, so two nodes on 127.0.0.1 must not share a context or their
session cookies would overwrite each other.

These fixtures are function-scoped (a browser per test, about 2 s). A module with many
browser tests can share one browser on a module-scoped loop with ``launch_chromium()``
and ``open_page()``, as tests/test_web_static.py does.
"""

from __future__ import annotations

import os
import shutil
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = os.environ.get("BLO_CHROMIUM", "/usr/bin/chromium")
# Every flag keeps the browser quiet and local: no GPU, no QUIC, no phoning home, no
# first-run UI, no component downloads. --no-sandbox because tests may run as root.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEFAULT_VIEWPORT = (1280, 720)
# Bounds every wait in a browser test: a page that never shows what the test expects
# fails in seconds instead of hanging the suite.
DEFAULT_TIMEOUT_MS = 10_000
INSTALL_HINT = "`make test` installs it (apt-get install chromium; pip install playwright)"
#: Where browser tests keep what a person looks at after the run (screenshots): the
#: directory named by $BLO_TEST_ARTIFACTS (a CI job can collect it), or else test-artifacts/
#: at the top of the repository, which git ignores. Overwritten by each run.
ARTIFACTS = Path(os.environ.get("BLO_TEST_ARTIFACTS") or Path(__file__).resolve().parent.parent / "test-artifacts")

NewPage = Callable[..., Awaitable["Page"]]

try:  # Imported lazily so the error below is a clear test failure, not a collection error.
    from playwright.async_api import Browser, ConsoleMessage, Page, Request, Response, async_playwright
except ImportError:  # pragma: no cover - exercised only on a machine missing the package
    async_playwright = None


@dataclass
class PageLog:
    """What a page did that a test may want to assert on: errors and every request."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    #: (status, url) of every answer >= 400. Chromium also logs each one to the console
    #: as "Failed to load resource"; those lines are kept here instead, with their URL,
    #: because a 401 from /api/me before login is the page working as designed.
    failed_responses: list[tuple[int, str]] = field(default_factory=list)

    def foreign_requests(self, origin: str) -> list[str]:
        """Requests that left ``origin`` (data: URLs are not network requests)."""
        base = _origin(origin)
        return [url for url in self.requests if not url.startswith("data:") and _origin(url) != base]

    def assert_clean(self, origin: str) -> None:
        """No console errors, no uncaught exceptions, no request to anywhere but ``origin``."""
        assert self.page_errors == [], f"uncaught exceptions in the page: {self.page_errors}"
        assert self.console_errors == [], f"console errors: {self.console_errors}"
        assert self.foreign_requests(origin) == [], f"requests off the node: {self.foreign_requests(origin)}"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


_logs: weakref.WeakKeyDictionary[object, PageLog] = weakref.WeakKeyDictionary()


def page_log(page: Page) -> PageLog:
    """The log of a page opened by these fixtures."""
    return _logs[page]


def _attach_log(page: Page) -> PageLog:
    log = PageLog()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            log.console_errors.append(message.text)

    def on_response(response: Response) -> None:
        if response.status >= 400:
            log.failed_responses.append((response.status, response.url))

    def on_request(request: Request) -> None:
        log.requests.append(request.url)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: log.page_errors.append(str(exc)))
    page.on("request", on_request)
    page.on("response", on_response)
    _logs[page] = log
    return log


def artifacts_dir(name: str) -> Path:
    """``ARTIFACTS/name``, created: one directory per kind of artefact (e.g. "small-screen")."""
    path = ARTIFACTS / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _require_chromium() -> None:
    if async_playwright is None:
        pytest.fail(f"the playwright package is not installed; {INSTALL_HINT}", pytrace=False)
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.fail(f"no chromium at {CHROMIUM} (set BLO_CHROMIUM to another path); {INSTALL_HINT}", pytrace=False)


@asynccontextmanager
async def launch_chromium(env: dict[str, str] | None = None) -> AsyncIterator[Browser]:
    """Start Debian's Chromium headless; Playwright gives each launch a new temporary profile.
    ``env``: the browser's environment instead of this process's (e.g. FONTCONFIG_FILE)."""
    _require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000, handle_sigint=False,
            **({"env": env} if env is not None else {}),
        )
        try:
            yield browser
        finally:
            await browser.close()


async def open_page(
    browser: Browser,
    viewport: tuple[int, int] = DEFAULT_VIEWPORT,
    *,
    bypass_csp: bool = True,
    locale: str = "en-GB",
    **context_options: Any,
) -> Page:
    """A new page in its own context (own cookies), with its ``page_log`` recording.

    ``bypass_csp`` defaults to True because Playwright's ``wait_for_function`` evaluates
    strings, which the page's Content-Security-Policy forbids; pass False to check that
    the page works under its own policy. ``context_options`` go to ``Browser.new_context``
    (e.g. ``java_script_enabled=False``). Close it with ``await page.context.close()``.
    """
    context = await browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]},
        locale=locale,
        bypass_csp=bypass_csp,
        service_workers="block",
        **context_options,
    )
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = await context.new_page()
    _attach_log(page)
    return page


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    """A fresh headless Chromium for one test."""
    async with launch_chromium() as browser:
        yield browser


@pytest.fixture
async def new_browser_page(chromium: Browser) -> AsyncIterator[NewPage]:
    """A factory: ``await new_browser_page(viewport=(1024, 600))`` -> a Page in its own context."""
    pages: list[Page] = []

    async def make(viewport: tuple[int, int] = DEFAULT_VIEWPORT, **options: Any) -> Page:
        page = await open_page(chromium, viewport, **options)
        pages.append(page)
        return page

    try:
        yield make
    finally:
        for page in pages:
            await page.context.close()


@pytest.fixture
async def browser_page(new_browser_page: NewPage) -> Page:
    """One page at 1280x720 in a fresh context, with its ``page_log`` recording."""
    return await new_browser_page()
