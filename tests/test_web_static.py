"""The officer's page itself, in a real headless Chromium, against a stub of the node API.

The stub serves office_node/web/ exactly as the node does ("/" and "/static/...") and
answers the API contract written at the top of app.js with canned data, recording what
the page sends. That isolates the page: its escaping, login flow, CSRF header, compose
payload, border check, live updates (bulletins, receipts, hits) and layout. The end-to-end
test against real nodes is tests/test_web_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, Page, expect

from bus.bulletin import DOCUMENT_STATUSES, DOCUMENT_TYPES, ENTITY_FIELDS, KINDS, PRECEDENCES, TLP_LABELS, Bulletin
from bus.ids import new_bulletin_id
from bus.testing import DeterministicRng
from tests.browser import browser_page, chromium, launch_chromium, new_browser_page, open_page, page_log  # noqa: F401

# One browser for the whole module (launching costs ~2 s): the tests, the browser and the
# stub node all run on the module's event loop. Each test still gets fresh contexts.
pytestmark = pytest.mark.asyncio(loop_scope="module")

WEB = Path(__file__).resolve().parent.parent / "office_node" / "web"
NOW = 1_795_000_000_000
CSRF = "csrf-token-7f3a"
EVIL = '<img src=x onerror="window.__pwned=1">'


def _id(seed: str, offset: int = 0) -> str:
    return new_bulletin_id(NOW + offset, DeterministicRng(seed))


def summary(seed: str, offset: int = 0, **fields: Any) -> dict[str, Any]:
    out = {
        "id": _id(seed, offset),
        "from": "LA-SVK",
        "precedence": "ROUTINE",
        "kind": "incident",
        "tlp": "GREEN",
        "title": "ແຈ້ງເຕືອນ: ຜູ້ຕ້ອງສົງໄສ ລັກລອບຄ້າມະນຸດ",
        "created": NOW + offset,
        "sent_at": NOW + offset + 100,
        "received_at": NOW + offset + 900,
        "direction": "received",
        "feed": None,
        "read": False,
    }
    out.update(fields)
    return out


PASSPORT = {"type": "document", "doc_type": "passport", "number": "P0847211", "country": "LA"}


def lookout_summary(seed: str = "lookout", offset: int = 4000, **fields: Any) -> dict[str, Any]:
    """A lookout received from Savannakhet (the stub node is TH-MUK)."""
    return summary(seed, offset, **{"kind": "lookout", "precedence": "FLASH", "tlp": "AMBER",
                                    "title": "เฝ้าระวัง: หนังสือเดินทางปลอม P0847211", **fields})


def match(item: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """One entry of a check answer's matches or mentions, about the bulletin ``item``."""
    out = {
        "bulletin_id": item["id"], "sender": item["from"], "kind": item["kind"], "precedence": item["precedence"],
        "tlp": item["tlp"], "grading": "B2", "created": item["created"], "expires": NOW + 86_400_000,
        "entity_index": 0, "key_kind": "document", "strength": "exact", "title": item["title"],
        "entity": {**PASSPORT, "status": "forged"}, "direction": item["direction"],
    }
    out.update(fields)
    return out


def hit(bulletin: dict[str, Any], lookout: dict[str, Any], offset: int = 0, **fields: Any) -> dict[str, Any]:
    """A hit as /api/hits lists it and the "hit" event carries it: ``bulletin`` names ``lookout``'s subject."""
    out = {
        "bulletin_id": bulletin["id"], "lookout_id": lookout["id"], "entity_index": 0,
        "lookout_sender": lookout["from"], "key_kind": "document", "strength": "exact", "at": NOW + offset,
        "notice": "sent", "notice_id": _id("notice", offset), "lookout_title": lookout["title"],
        "bulletin_title": bulletin["title"], "precedence": lookout["precedence"],
    }
    out.update(fields)
    return out


class StubNode:
    """The node's HTTP API as the page sees it, with canned answers and a record of requests."""

    def __init__(self, *, logged_in: bool = True) -> None:
        self.logged_in = logged_in
        self.items: list[dict[str, Any]] = [
            summary("a", 3000, precedence="FLASH", tlp="RED", title="ยึดยาบ้า 200,000 เม็ด ที่ด่านสะพานมิตรภาพ 2"),
            summary("b", 2000, precedence="IMMEDIATE", tlp="AMBER", read=True),
            summary("c", 1000, precedence="PRIORITY", tlp="AMBER+STRICT", **{"from": "KH-PPT"},
                    title="ការចាប់យកសត្វព្រៃខុសច្បាប់ នៅព្រំដែន"),
            summary("d", 500, precedence="ROUTINE", tlp="CLEAR", direction="sent", **{"from": "TH-MUK"},
                    title="Thông báo: xe tải biển số 29C-123.45 nghi vận chuyển hàng lậu"),
            summary("e", 100, precedence="ROUTINE", tlp="GREEN", **{"from": "MM-MWD"},
                    title="မြဝတီ နယ်စပ်ဂိတ်တွင် တရားမဝင် ကုန်စည်များ ဖမ်းဆီးရမိ"),
        ]
        self.details: dict[str, dict[str, Any]] = {}
        self.posts: list[tuple[str, dict[str, str], Any]] = []
        self.list_requests: list[str] = []
        self.event_connections = 0
        self.end_first_stream = False
        self.refusal: dict[str, str] | None = None
        self.me_names_office = True
        self.nats = "connected"
        self.events: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        # The border check: what POST /api/check answers ("query" and "checked_at" are added),
        # or the refusal it gives instead (status 400, like the node's ValidationError).
        self.check_answer: dict[str, Any] = {"flagged": False, "matches": [], "mentions": []}
        self.check_refusal: dict[str, Any] | None = None
        self.hits: list[dict[str, Any]] = []
        self.hits_requests = 0
        self.outbox = [
            {"id": self.items[3]["id"], "title": self.items[3]["title"], "precedence": "ROUTINE", "created": NOW,
             "recipients": [{"recipient": "LA-SVK", "state": "delivered", "at": NOW + 5},
                            {"recipient": "TH-TCCC", "state": "queued", "at": NOW + 1}]},
        ]

    # -- helpers ---------------------------------------------------------------------------

    def authed(self, request: web.Request) -> bool:
        return self.logged_in and request.cookies.get("stub_session") == "ok"

    def deny(self) -> web.Response:
        return web.json_response({"error": {"code": "not_authenticated", "message": "Sign in first."}}, status=401)

    async def record_post(self, request: web.Request) -> web.Response | None:
        text = await request.text()
        body = json.loads(text) if text else None
        self.posts.append((request.path, dict(request.headers), body))
        if not self.authed(request):
            return self.deny()
        if request.headers.get("X-CSRF-Token") != CSRF:
            return web.json_response({"error": {"code": "csrf", "message": "Missing CSRF token."}}, status=403)
        return None

    def posts_to(self, path: str) -> list[tuple[str, dict[str, str], Any]]:
        return [p for p in self.posts if p[0] == path]

    async def push_hit(self, item: dict[str, Any]) -> None:
        """A hit as the node raises it: recorded first (so /api/hits lists it), then live."""
        self.hits.insert(0, item)
        await self.events.put(("hit", item))

    # -- handlers --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.index)
        app.router.add_get("/login", self.login_page)
        app.router.add_static("/static/", WEB)
        app.router.add_get("/health", self.health)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/api/me", self.me)
        app.router.add_get("/api/bulletins", self.list_bulletins)
        app.router.add_post("/api/bulletins", self.post_bulletin)
        app.router.add_get("/api/bulletins/{id}", self.get_bulletin)
        app.router.add_post("/api/bulletins/{id}/read", self.mark_read)
        app.router.add_post("/api/bulletins/{id}/reply", self.post_bulletin)
        app.router.add_get("/api/search", self.search)
        app.router.add_get("/api/outbox", self.get_outbox)
        app.router.add_get("/api/directory", self.directory)
        app.router.add_get("/api/feeds", self.feeds)
        app.router.add_post("/api/check", self.check)
        app.router.add_get("/api/hits", self.get_hits)
        app.router.add_get("/api/events", self.stream)
        return app

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB / "index.html")

    async def login_page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB / "login.html")

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "office": "TH-MUK", "role": "office", "nats": self.nats,
                                  "outbox_depth": 2})

    async def login(self, request: web.Request) -> web.Response:
        # Like the node: JSON gets JSON back; a plain HTML form gets redirects.
        is_form = request.content_type == "application/x-www-form-urlencoded"
        body = dict(await request.post()) if is_form else await request.json()
        self.posts.append((request.path, dict(request.headers), body))
        if body != {"username": "somchai", "password": "correct horse"}:
            if is_form:
                raise web.HTTPSeeOther("/login?error=bad_credentials")
            return web.json_response({"error": {"code": "bad_credentials", "message": "Wrong username or password."}},
                                     status=401)
        self.logged_in = True
        response: web.Response
        if is_form:
            response = web.Response(status=303, headers={"Location": "/"})
        else:
            response = web.json_response({"user": {"username": "somchai", "display_name": "Somchai K.",
                                                    "role": "officer"}, "csrf_token": CSRF})
        response.set_cookie("stub_session", "ok", httponly=True, samesite="Strict")
        return response

    async def logout(self, request: web.Request) -> web.Response:
        denied = await self.record_post(request)
        self.logged_in = False
        return denied or web.json_response({"ok": True})

    async def me(self, request: web.Request) -> web.Response:
        if not self.authed(request):
            return self.deny()
        me = {"user": {"username": "somchai", "display_name": "Somchai K.", "role": "officer"}, "csrf_token": CSRF}
        if self.me_names_office:
            me.update(office="TH-MUK", role="office")
        return web.json_response(me)

    async def list_bulletins(self, request: web.Request) -> web.Response:
        if not self.authed(request):
            return self.deny()
        self.list_requests.append(request.query_string)
        items = [i for i in self.items if request.query.get("direction") in (None, i["direction"])]
        return web.json_response({"items": items, "next": None})

    def full(self, item: dict[str, Any]) -> dict[str, Any]:
        if item["id"] in self.details:
            return self.details[item["id"]]
        bulletin = {
            "id": item["id"], "from": item["from"], "precedence": item["precedence"], "kind": item["kind"],
            "tlp": item["tlp"], "releasable_to": ["TH", "LA"], "grading": "B2", "title": item["title"],
            "body": "ผู้ขับขี่ถือหนังสือเดินทางลาว\nsecond line", "created": item["created"],
            "entities": [{"type": "person", "name": "Souksavanh Phommachanh", "dob": "1985-03-14", "nationality": "LA"},
                         {"type": "vehicle", "plate": "70-1234", "country": "TH"}],
            "tags": ["bridge2", "ยาบ้า"],
        }
        return {
            "bulletin": bulletin, "direction": item["direction"], "feed": item["feed"], "sent_at": item["sent_at"],
            "received_at": item["received_at"], "read": item["read"],
            "verification": {"verified": True, "signer": item["from"], "key_id": "9f1c2ab4d5e6f708", "sent_at": item["sent_at"]},
            "receipts": [{"recipient": "TH-MUK", "state": "delivered", "at": item["received_at"]}],
        }

    async def get_bulletin(self, request: web.Request) -> web.Response:
        if not self.authed(request):
            return self.deny()
        for item in self.items:
            if item["id"] == request.match_info["id"]:
                return web.json_response(self.full(item))
        return web.json_response({"error": {"code": "not_found", "message": "No such bulletin."}}, status=404)

    async def post_bulletin(self, request: web.Request) -> web.Response:
        denied = await self.record_post(request)
        if not denied and self.refusal:
            return web.json_response({"error": self.refusal}, status=422)
        return denied or web.json_response({"id": _id("new"), "state": "queued"}, status=201)

    async def mark_read(self, request: web.Request) -> web.Response:
        denied = await self.record_post(request)
        return denied or web.json_response({"ok": True})

    async def search(self, request: web.Request) -> web.Response:
        if not self.authed(request):
            return self.deny()
        q = request.query.get("q", "")
        return web.json_response({"items": [i for i in self.items if q in i["title"]]})

    async def get_outbox(self, request: web.Request) -> web.Response:
        if not self.authed(request):
            return self.deny()
        return web.json_response({"items": self.outbox})

    async def directory(self, request: web.Request) -> web.Response:
        if not self.authed(request):
            return self.deny()
        offices = [
            {"office": o, "name": n, "country": o[:2], "role": r, "sign_kid": "aa", "box_kid": "bb",
             "valid_until": NOW + 10**10, "revoked": rv}
            for o, n, r, rv in [("TH-MUK", "Mukdahan", "office", False), ("LA-SVK", "Savannakhet", "office", False),
                                ("TH-TCCC", "Thai TCCC", "centre", False), ("LA-THK", "Thakhek", "office", True)]
        ]
        return web.json_response({"offices": offices})

    async def feeds(self, request: web.Request) -> web.Response:
        if not self.authed(request):
            return self.deny()
        return web.json_response({"feeds": [{"name": "mekong-regional", "epoch": 3, "members": ["TH-MUK", "LA-SVK"]}]})

    async def check(self, request: web.Request) -> web.Response:
        denied = await self.record_post(request)
        if denied:
            return denied
        if self.check_refusal:
            return web.json_response({"error": self.check_refusal}, status=400)
        _, _, body = self.posts[-1]
        return web.json_response({"query": body, "checked_at": NOW + 50_000, **self.check_answer})

    async def get_hits(self, request: web.Request) -> web.Response:
        if not self.authed(request):
            return self.deny()
        self.hits_requests += 1
        return web.json_response({"items": self.hits})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        if not self.authed(request):
            return self.deny()
        self.event_connections += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        # A short retry so the reconnect test takes a fraction of a second.
        await response.write(b"retry: 200\n: connected\n\n")
        if self.end_first_stream and self.event_connections == 1:
            return response
        while True:
            event = await self.events.get()
            if event is None:
                return response
            kind, data = event
            await response.write(f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode())


@asynccontextmanager
async def serve(node: StubNode) -> AsyncIterator[str]:
    """Run the stub on a free loopback port; yields its base URL."""
    runner = web.AppRunner(node.app(), shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        node.events.put_nowait(None)
        await runner.cleanup()


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
async def page(new_page: Callable[..., Awaitable[Page]]) -> Page:
    return await new_page()


@pytest_asyncio.fixture(loop_scope="module")
async def stub() -> AsyncIterator[tuple[StubNode, str]]:
    node = StubNode()
    async with serve(node) as base:
        yield node, base


async def login(page, base: str) -> None:
    """Set the stub's session cookie as a completed login would, then open the page."""
    await page.context.add_cookies([{"name": "stub_session", "value": "ok", "url": base}])
    await page.goto(base + "/")
    await page.wait_for_selector("#feed-list li")


# -- the page as a whole -------------------------------------------------------------------


async def test_page_runs_under_its_own_csp_without_errors_or_requests_off_the_node(new_page, stub):
    node, base = stub
    page = await new_page(bypass_csp=False)
    await login(page, base)
    await expect(page.locator("#st-outbox")).to_have_text("2")
    await expect(page.locator("#st-nats")).to_have_text("connected")
    await expect(page.locator("#st-live")).to_have_text("connected")
    await expect(page.locator("#st-office")).to_have_text("TH-MUK")
    assert await page.locator("#feed-list li").count() == len(node.items)
    # Open a bulletin and the compose form too: CSP violations would show as console errors.
    await page.locator("#feed-list li").first.locator("button").click()
    await page.wait_for_selector("#signature")
    await page.click(".tab[data-view=compose]")
    await page.click("#entity-add")
    await page.click(".tab[data-view=check]")
    await page.fill("#check-number", "P0847211")
    await page.press("#check-number", "Enter")
    await expect(page.locator("#check-verdict")).to_contain_text("CLEAR")
    await node.push_hit(hit(node.items[1], node.items[0]))
    await expect(page.locator("#hits-list li")).to_have_count(1)
    log = page_log(page)
    log.assert_clean(base)
    assert log.failed_responses == []
    assert any(url.endswith("/static/app.js") for url in log.requests)


@pytest.mark.asyncio(loop_scope="function")
async def test_browser_page_fixture_gives_a_working_page_on_the_tests_own_loop(browser_page):  # noqa: F811
    node = StubNode(logged_in=False)
    async with serve(node) as base:
        await browser_page.goto(base + "/")
        await browser_page.locator("#login-form").wait_for(state="visible")
        await browser_page.wait_for_function("document.getElementById('login-view').hidden === false")
        assert await browser_page.evaluate("window.innerWidth") == 1280
        log = page_log(browser_page)
        log.assert_clean(base)
        assert log.failed_responses == [(401, base + "/api/me")]


async def test_app_js_never_hands_data_to_the_html_parser():
    source = (WEB / "app.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source, f"app.js uses {sink}"
    for name in ("index.html", "login.html", "app.js", "app.css"):
        text = (WEB / name).read_text(encoding="utf-8")
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), f"{name} names an external URL"


async def test_entity_fields_and_vocabularies_match_the_python_schema(page, stub):
    _, base = stub
    await login(page, base)
    js = await page.evaluate(
        """async () => {
            const m = await import('/static/app.js');
            const fields = {};
            for (const [t, list] of Object.entries(m.ENTITY_FIELDS)) {
                fields[t] = Object.fromEntries(list.map((f) => [f.name, f.required]));
            }
            const choices = Object.fromEntries(
                m.ENTITY_FIELDS.document.filter((f) => f.choices).map((f) => [f.name, f.choices]));
            return {fields, choices, precedences: m.PRECEDENCES, tlp: m.TLP_LABELS, kinds: m.KINDS};
        }"""
    )
    assert js["fields"] == {t: {name: required for name, (_, required) in spec.items()} for t, spec in ENTITY_FIELDS.items()}
    assert js["choices"] == {"doc_type": list(DOCUMENT_TYPES), "status": list(DOCUMENT_STATUSES)}
    assert js["precedences"] == list(PRECEDENCES)
    assert js["tlp"] == list(TLP_LABELS)
    assert js["kinds"] == list(KINDS)


# -- login ---------------------------------------------------------------------------------


async def test_login_form_appears_without_a_session_and_signing_in_opens_the_feed(page, stub):
    node, base = stub
    node.logged_in = False
    await page.goto(base + "/")
    await page.locator("#login-form").wait_for(state="visible")
    assert await page.locator("#app").is_hidden()

    await page.fill("#login-username", "somchai")
    await page.fill("#login-password", "correct horse")
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#feed-list li")
    assert await page.locator("#login-view").is_hidden()
    assert await page.locator("#top-user").text_content() == "Somchai K. (officer)"
    _, headers, body = node.posts_to("/login")[0]
    assert body == {"username": "somchai", "password": "correct horse"}
    assert headers["Content-Type"].startswith("application/json")

    await page.click("#logout-button")
    await page.locator("#login-form").wait_for(state="visible")
    assert node.posts_to("/logout")[0][1]["X-CSRF-Token"] == CSRF


async def test_wrong_password_keeps_the_login_form_with_an_error(page, stub):
    node, base = stub
    node.logged_in = False
    await page.goto(base + "/")
    await page.fill("#login-username", "somchai")
    await page.fill("#login-password", "guess")
    await page.click("#login-form button[type=submit]")
    await page.locator("#login-error").wait_for(state="visible")
    assert "Wrong username or password" in await page.locator("#login-error").text_content()
    assert await page.locator("#app").is_hidden()


async def test_login_page_shows_the_reason_then_signs_in_and_opens_the_page(page, stub):
    node, base = stub
    node.logged_in = False
    await page.goto(base + "/login?error=bad_credentials")
    await expect(page.locator("#login-error")).to_have_text("Wrong username or password.")
    await page.fill("#login-username", "somchai")
    await page.fill("#login-password", "correct horse")
    await page.click("#login-form button[type=submit]")
    await page.wait_for_url(base + "/")
    await page.wait_for_selector("#feed-list li")
    _, headers, body = node.posts_to("/login")[0]
    assert body == {"username": "somchai", "password": "correct horse"}
    assert headers["Content-Type"].startswith("application/json")  # the script's JSON sign-in, not the form
    page_log(page).assert_clean(base)


async def test_login_page_signs_in_as_a_plain_form_with_javascript_off(new_page, stub):
    node, base = stub
    node.logged_in = False
    page = await new_page(java_script_enabled=False)
    await page.goto(base + "/login")
    await page.fill("#login-username", "somchai")
    await page.fill("#login-password", "correct horse")
    await page.click("#login-form button[type=submit]")
    await page.wait_for_url(base + "/")
    _, headers, body = node.posts_to("/login")[0]
    assert body == {"username": "somchai", "password": "correct horse"}
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert [c["name"] for c in await page.context.cookies()] == ["stub_session"]


async def test_office_id_comes_from_health_when_api_me_does_not_name_it(page, stub):
    node, base = stub
    node.me_names_office = False
    await login(page, base)
    await expect(page.locator("#top-office")).to_have_text("TH-MUK")
    await expect(page.locator("#st-role")).to_have_text("office")


# -- untrusted content ---------------------------------------------------------------------


async def test_markup_in_a_bulletin_from_another_office_renders_as_text(page, stub):
    node, base = stub
    evil = summary("evil", 9000, title=EVIL, **{"from": "LA-SVK"}, kind=EVIL, feed=EVIL)
    node.items.insert(0, evil)
    detail = node.full(evil)
    detail["bulletin"]["body"] = f"body {EVIL}"
    detail["bulletin"]["entities"] = [{"type": "person", "name": EVIL, "aliases": [EVIL]}]
    detail["bulletin"]["tags"] = [EVIL]
    detail["verification"]["signer"] = EVIL
    detail["receipts"] = [{"recipient": EVIL, "state": EVIL, "at": NOW}]
    node.details[evil["id"]] = detail

    await login(page, base)
    first = page.locator("#feed-list li").first
    assert await first.locator(".item-title").text_content() == EVIL
    await first.locator("button").click()
    await page.wait_for_selector("#detail-title")
    assert await page.locator("#detail-title").text_content() == EVIL
    assert EVIL in await page.locator("#detail-body").text_content()
    assert EVIL in await page.locator("#signature").text_content()
    assert EVIL in await page.locator("#receipts").text_content()
    await node.events.put(("escalation", {"id": evil["id"], "message": EVIL}))
    await page.wait_for_selector(".banner-escalation")
    assert await page.locator(".banner-text").text_content() == EVIL

    assert await page.locator("img").count() == 0
    assert await page.evaluate("window.__pwned") is None
    page_log(page).assert_clean(base)


# -- compose -------------------------------------------------------------------------------


async def test_compose_posts_a_bulletin_the_schema_accepts_with_the_csrf_header(page, stub):
    node, base = stub
    await login(page, base)
    await page.click(".tab[data-view=compose]")
    # Revoked offices and our own office are not offered as recipients.
    offered = await page.locator(".to-office").evaluate_all("els => els.map(e => e.value)")
    assert offered == ["LA-SVK", "TH-TCCC"]
    await page.check(".to-office[value=LA-SVK]")
    await page.fill("#to-extra", "th-nkp")
    assert await page.input_value("#c-releasable") == "TH, LA"
    await page.select_option("#to-feed", "mekong-regional")
    await page.select_option("#c-precedence", "IMMEDIATE")
    await page.select_option("#c-kind", "lookout")
    await page.select_option("#c-tlp", "AMBER+STRICT")
    await page.select_option("#c-source", "B")
    await page.select_option("#c-information", "2")
    await page.fill("#c-title", "ແຈ້ງເຕືອນ: ຜູ້ຕ້ອງສົງໄສ")
    await page.fill("#c-body", "ผู้ต้องสงสัยอาจข้ามด่าน\nภายใน 48 ชั่วโมง")
    await page.fill("#c-expires", "2030-01-02T03:04")
    await page.fill("#c-tags", "bridge2, ค้ามนุษย์")

    await page.select_option("#entity-type", "person")
    await page.click("#entity-add")
    person = page.locator(".entity-row").nth(0)
    await person.locator("[data-field=name]").fill("Souksavanh Phommachanh")
    await person.locator("[data-field=aliases]").fill("Souk, ສຸກ")
    await person.locator("[data-field=dob]").fill("1985-03-14")
    await person.locator("[data-field=nationality]").fill("la")
    await person.locator("[data-field=sex]").select_option("M")
    await page.select_option("#entity-type", "document")
    await page.click("#entity-add")
    document = page.locator(".entity-row").nth(1)
    await document.locator("[data-field=doc_type]").select_option("passport")
    await document.locator("[data-field=number]").fill("P0847211")
    await document.locator("[data-field=status]").select_option("forged")
    await page.select_option("#entity-type", "location")
    await page.click("#entity-add")
    location = page.locator(".entity-row").nth(2)
    await location.locator("[data-field=name]").fill("Friendship Bridge 2")
    await location.locator("[data-field=lat]").fill("16.5937")
    await location.locator("[data-field=lon]").fill("104.7408")
    await location.locator("[data-field=note]").fill("Lao side")

    await page.click("#compose-send")
    await page.locator("#compose-result").wait_for(state="visible")
    _, headers, body = node.posts_to("/api/bulletins")[0]
    assert headers["X-CSRF-Token"] == CSRF
    assert body["to"] == ["LA-SVK", "TH-NKP"]
    assert body["feed"] == "mekong-regional"
    assert body["in_reply_to"] is None
    assert body["grading"] == "B2"
    assert body["releasable_to"] == ["TH", "LA"]
    assert body["tags"] == ["bridge2", "ค้ามนุษย์"]
    assert body["entities"] == [
        {"type": "person", "name": "Souksavanh Phommachanh", "aliases": ["Souk", "ສຸກ"], "dob": "1985-03-14",
         "nationality": "LA", "sex": "M"},
        {"type": "document", "doc_type": "passport", "number": "P0847211", "status": "forged"},
        {"type": "location", "name": "Friendship Bridge 2", "lat": 16.5937, "lon": 104.7408, "note": "Lao side"},
    ]
    # The expiry typed in local time arrives as the same instant in ms.
    expected_expiry = await page.evaluate("new Date('2030-01-02T03:04').getTime()")
    assert body["expires"] == expected_expiry
    # What the page sends is a bulletin the real schema accepts once the node adds its header.
    fields = {k: v for k, v in body.items() if k not in ("to", "feed")}
    bulletin = Bulletin.from_dict({**fields, "id": _id("check"), "from": "TH-MUK", "created": NOW})
    assert bulletin.title == "ແຈ້ງເຕືອນ: ຜູ້ຕ້ອງສົງໄສ"
    assert bulletin.body == "ผู้ต้องสงสัยอาจข้ามด่าน\nภายใน 48 ชั่วโมง"
    # The form is cleared for the next bulletin.
    assert await page.locator(".entity-row").count() == 0
    assert await page.input_value("#c-title") == ""


async def test_compose_without_recipients_is_refused_in_the_page(page, stub):
    node, base = stub
    await login(page, base)
    await page.click(".tab[data-view=compose]")
    await page.fill("#c-title", "no one to send to")
    await page.click("#compose-send")
    await page.locator("#compose-error").wait_for(state="visible")
    assert "at least one office or a feed" in await page.locator("#compose-error").text_content()
    assert node.posts_to("/api/bulletins") == []


async def test_server_error_message_is_shown_to_the_officer(page, stub):
    node, base = stub
    await login(page, base)
    await page.click(".tab[data-view=compose]")
    await page.check(".to-office[value=LA-SVK]")
    await page.select_option("#c-source", "A")
    await page.select_option("#c-information", "1")
    await page.fill("#c-title", "t")
    node.refusal = {"code": "invalid", "message": "entities[0].number: must not be empty"}
    await page.click("#compose-send")
    await page.locator("#compose-error").wait_for(state="visible")
    assert await page.locator("#compose-error").text_content() == "entities[0].number: must not be empty"


# -- detail, read, reply -------------------------------------------------------------------


async def test_detail_shows_signature_and_receipts_and_mark_read_is_posted(page, stub):
    node, base = stub
    await login(page, base)
    first = page.locator("#feed-list li").first
    assert "unread" in (await first.get_attribute("class"))
    await first.locator("button").click()
    await page.wait_for_selector("#signature")
    signature = await page.locator("#signature").text_content()
    assert "Signature verified" in signature
    assert "LA-SVK" in signature and "9f1c2ab4d5e6f708" in signature
    assert "B2 — Usually reliable; Probably true" in await page.locator("#detail").text_content()
    assert await page.locator(".entity-list li").count() == 2
    assert await page.locator("#receipts tbody tr").count() == 1

    await page.click("#mark-read")
    await page.wait_for_function("!document.querySelector('#feed-list li').classList.contains('unread')")
    _, headers, _ = node.posts_to(f"/api/bulletins/{node.items[0]['id']}/read")[0]
    assert headers["X-CSRF-Token"] == CSRF
    assert await page.locator("#mark-read").count() == 0

    # A receipt state change for the open bulletin updates its receipts live.
    await node.events.put(("state", {"id": node.items[0]["id"], "recipient": "LA-TCCC", "state": "read"}))
    await page.wait_for_selector("#receipts tr[data-recipient='LA-TCCC'] .state-read")


async def test_unverified_signature_is_shown_as_not_verified(page, stub):
    node, base = stub
    detail = node.full(node.items[1])
    detail["verification"]["verified"] = False
    node.details[node.items[1]["id"]] = detail
    await login(page, base)
    await page.locator("#feed-list li").nth(1).locator("button").click()
    await page.wait_for_selector("#signature.sig-bad")
    assert "NOT verified" in await page.locator("#signature").text_content()


async def test_reply_posts_to_the_reply_endpoint_without_recipients(page, stub):
    node, base = stub
    await login(page, base)
    original = node.items[0]
    await page.locator("#feed-list li").first.locator("button").click()
    await page.click("#reply-button")
    await page.locator("#reply-banner").wait_for(state="visible")
    assert await page.locator("#recipients-fieldset").is_hidden()
    assert await page.input_value("#c-kind") == "reply"
    assert await page.input_value("#c-title") == f"Re: {original['title']}"
    await page.select_option("#c-source", "A")
    await page.select_option("#c-information", "1")
    await page.fill("#c-body", "ได้รับแล้ว")
    await page.click("#compose-send")
    await page.locator("#compose-result").wait_for(state="visible")
    _, headers, body = node.posts_to(f"/api/bulletins/{original['id']}/reply")[0]
    assert headers["X-CSRF-Token"] == CSRF
    assert "to" not in body and "in_reply_to" not in body and "feed" not in body
    assert body["tlp"] == original["tlp"] and body["releasable_to"] == ["TH", "LA"]
    assert node.posts_to("/api/bulletins") == []


# -- live updates, search, outbox ------------------------------------------------------------


async def test_live_bulletin_appears_at_the_top_unread_and_flash_raises_a_banner(page, stub):
    node, base = stub
    await login(page, base)
    fresh = summary("live", 99_000, precedence="FLASH", tlp="RED", title="ດ່ວນທີ່ສຸດ: live", **{"from": "LA-SVK"})
    node.items.append(fresh)  # stored by the node, so the banner's "Open" can fetch it
    await node.events.put(("bulletin", fresh))
    await page.wait_for_function(
        "id => document.querySelector('#feed-list li').dataset.id === id", arg=fresh["id"])
    first = page.locator("#feed-list li").first
    assert "unread" in (await first.get_attribute("class"))
    assert await first.locator(".item-title").text_content() == "ດ່ວນທີ່ສຸດ: live"
    await page.wait_for_selector(".banner-flash")
    await page.click(".banner-flash button:has-text('Open')")
    await page.wait_for_function(
        "t => document.getElementById('detail-title')?.textContent === t", arg="ດ່ວນທີ່ສຸດ: live")


async def test_live_stream_reconnects_by_itself_and_reloads_the_list(page, stub):
    node, base = stub
    node.end_first_stream = True
    await login(page, base)
    await page.wait_for_function("document.getElementById('st-live').textContent === 'connected'")
    # One list load at start, one more after the stream came back (events may have been missed).
    try:
        async with asyncio.timeout(8):
            while node.event_connections < 2 or len(node.list_requests) < 2:
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{node.event_connections} stream connections, list loads: {node.list_requests}") from None
    await page.wait_for_function("document.getElementById('st-live').textContent === 'connected'")


async def test_search_lists_matching_bulletins_and_returns_to_the_feed(page, stub):
    node, base = stub
    await login(page, base)
    await page.fill("#search-input", "สะพานมิตรภาพ")
    await page.press("#search-input", "Enter")
    await page.locator("#search-heading").wait_for(state="visible")
    assert await page.locator("#feed-list li").count() == 1
    assert "1 result" in await page.locator("#search-summary").text_content()
    await page.click("#search-clear")
    await page.locator("#search-heading").wait_for(state="hidden")
    await page.wait_for_function(f"document.querySelectorAll('#feed-list li').length === {len(node.items)}")


async def test_outbox_shows_each_recipient_state_and_updates_live(page, stub):
    node, base = stub
    await login(page, base)
    await page.click(".tab[data-view=outbox]")
    row = page.locator("#outbox-body tr").first
    await row.wait_for()
    assert await row.locator(".recipient[data-recipient='LA-SVK'] .state-delivered").count() == 1
    assert await row.locator(".recipient[data-recipient='TH-TCCC'] .state-queued").count() == 1
    await node.events.put(("state", {"id": node.outbox[0]["id"], "recipient": "TH-TCCC", "state": "sent"}))
    await row.locator(".recipient[data-recipient='TH-TCCC'] .state-sent").wait_for()


# -- border check and lookout hits -----------------------------------------------------------


async def check_passport(page, number: str = "P0847211") -> None:
    await page.click(".tab[data-view=check]")
    await page.fill("#check-number", number)
    await page.press("#check-number", "Enter")


async def test_a_flagged_check_shows_the_lookout_with_its_grading_and_its_link_opens_it(page, stub):
    node, base = stub
    lookout = lookout_summary()
    node.items.append(lookout)
    incident = node.items[1]
    node.check_answer = {
        "flagged": True,
        "matches": [match(lookout, grading="B2")],
        "mentions": [match(incident, grading="C3", strength="similar", key_kind="name~", expires=None,
                           entity={"type": "person", "name": "Souksavan Phommachan"})],
    }
    await login(page, base)
    await page.click(".tab[data-view=check]")
    # The counter's field has the focus: the officer types the number straight away.
    assert await page.evaluate("document.activeElement.id") == "check-number"
    await page.keyboard.type("P0847211")
    await page.keyboard.press("Enter")

    verdict = page.locator("#check-verdict")
    await expect(verdict).to_contain_text("FLAGGED")
    await expect(verdict).to_contain_text("1 active lookout on this node names this passport")
    assert "verdict-flagged" in await verdict.get_attribute("class")
    await expect(page.locator("#check-provenance")).to_contain_text("TH-MUK's local copy")
    await expect(page.locator("#check-provenance")).to_contain_text("works while the link is down")
    assert await page.locator("#check-result .warn").count() == 0  # the link is up
    found = page.locator("#check-matches li")
    await expect(found).to_have_count(1)
    await expect(found).to_contain_text("B2 — Usually reliable; Probably true")
    await expect(found).to_contain_text("exact match")
    await expect(found).to_contain_text("LA-SVK")
    await expect(found).to_contain_text("forged")
    assert await found.locator(".prec-flash").text_content() == "FLASH"
    assert await found.locator(".tlp-amber").text_content() == "TLP:AMBER"
    mentioned = page.locator("#check-mentions li")
    await expect(mentioned).to_have_count(1)
    await expect(mentioned).to_contain_text("similar spelling")
    await expect(mentioned).to_contain_text("C3 — Fairly reliable; Possibly true")
    await expect(mentioned).to_contain_text(incident["title"])
    # The next traveller: the number is selected, so typing replaces it.
    assert await page.evaluate("document.activeElement.id") == "check-number"
    selected = await page.evaluate("[document.activeElement.selectionStart, document.activeElement.selectionEnd]")
    assert selected == [0, len("P0847211")]

    await found.locator(".match-title").click()
    await page.locator("#view-feed").wait_for(state="visible")
    await expect(page.locator("#detail-title")).to_have_text(lookout["title"])
    _, headers, body = node.posts_to("/api/check")[0]
    assert headers["X-CSRF-Token"] == CSRF
    assert body == {"type": "document", "doc_type": "passport", "number": "P0847211"}


async def test_a_clear_check_says_clear_and_editing_the_form_removes_the_answer(page, stub):
    node, base = stub
    await login(page, base)
    node.nats = "disconnected"  # the border post lost its link: the check still answers
    await page.click(".tab[data-view=check]")
    await page.select_option("#check-type", "person")
    assert await page.evaluate("document.activeElement.id") == "check-name"
    await page.fill("#check-name", "  Souksavanh Phommachanh ")
    await page.fill("#check-dob", "1985-03-14")
    await page.fill("#check-nationality", "la")
    await page.click("#check-submit")
    verdict = page.locator("#check-verdict")
    await expect(verdict).to_contain_text("CLEAR")
    await expect(verdict).to_contain_text("No active lookout held on this node names this person")
    assert "FLAGGED" not in await page.locator("#check-result").text_content()
    assert await page.locator("#check-matches, #check-mentions").count() == 0
    # ...and says that lookouts sent since the link dropped cannot be in the answer.
    await expect(page.locator("#check-result .warn")).to_contain_text("The link to the bus is down")
    _, _, body = node.posts_to("/api/check")[0]
    assert body == {"type": "person", "name": "Souksavanh Phommachanh", "dob": "1985-03-14", "nationality": "LA"}
    # An answer stays only while it is about what the form says.
    await page.fill("#check-name", "Someone else")
    await expect(page.locator("#check-verdict")).to_have_count(0)


async def test_the_check_sends_exactly_the_entity_the_form_describes(page, stub):
    node, base = stub
    await login(page, base)
    await page.click(".tab[data-view=check]")
    # Document: its type, the number as typed (the node normalises it), the country in capitals.
    assert await page.input_value("#check-doc_type") == "passport"
    await page.fill("#check-number", " p-0847 211 ")
    await page.fill("#check-country", "la")
    await page.click("#check-submit")
    await expect(page.locator("#check-verdict")).to_be_visible()
    await page.select_option("#check-doc_type", "id_card")
    await page.click("#check-submit")
    await expect(page.locator("#check-verdict")).to_be_visible()
    await page.select_option("#check-type", "vehicle")
    await page.fill("#check-plate", "70-1234")
    await page.fill("#check-country", "th")
    await page.click("#check-submit")
    await expect(page.locator("#check-verdict")).to_be_visible()
    await page.select_option("#check-type", "phone")
    assert await page.locator("#check-country").count() == 0
    await page.fill("#check-number", "+856 20 5555 1234")
    await page.press("#check-number", "Enter")
    await expect(page.locator("#check-verdict")).to_be_visible()
    assert [body for _, _, body in node.posts_to("/api/check")] == [
        {"type": "document", "doc_type": "passport", "number": "p-0847 211", "country": "LA"},
        {"type": "document", "doc_type": "id_card", "number": "p-0847 211", "country": "LA"},
        {"type": "vehicle", "plate": "70-1234", "country": "TH"},
        {"type": "phone", "number": "+856 20 5555 1234"},
    ]


async def test_a_refused_check_shows_the_nodes_message_and_never_an_answer(page, stub):
    node, base = stub
    await login(page, base)
    await page.click(".tab[data-view=check]")
    # Nothing to look up: refused in the page, nothing sent.
    await page.press("#check-number", "Enter")
    await expect(page.locator("#check-error")).to_have_text("Enter the document number to check.")
    assert node.posts_to("/api/check") == []
    node.check_refusal = {"code": "invalid", "message": "country: must be two capital letters, got 'L1'", "field": "country"}
    await page.fill("#check-number", "P0847211")
    await page.fill("#check-country", "l1")
    await page.press("#check-number", "Enter")
    await expect(page.locator("#check-error")).to_have_text("Not checked: country: must be two capital letters, got 'L1'")
    assert await page.get_attribute("#check-country", "aria-invalid") == "true"
    assert await page.locator("#check-verdict").count() == 0
    assert len(node.posts_to("/api/check")) == 1


async def test_signing_out_leaves_nothing_of_the_last_check_or_hits_on_screen(page, stub):
    node, base = stub
    node.hits = [hit(node.items[1], node.items[0])]
    await login(page, base)
    await check_passport(page)
    await expect(page.locator("#check-verdict")).to_be_visible()
    await expect(page.locator("#hits-list li")).to_have_count(1)
    await page.click("#logout-button")
    await page.locator("#login-form").wait_for(state="visible")
    assert await page.locator("#check-verdict").count() == 0
    assert await page.input_value("#check-number") == ""
    assert await page.locator("#hits-list li").count() == 0


async def test_the_check_is_one_key_or_one_bookmark_away(page, stub):
    _, base = stub
    await page.context.add_cookies([{"name": "stub_session", "value": "ok", "url": base}])
    await page.goto(base + "/#check")
    await page.locator("#view-check").wait_for(state="visible")
    await page.wait_for_function("document.activeElement && document.activeElement.id === 'check-number'")
    await page.click(".tab[data-view=compose]")
    assert page.url == base + "/#compose"
    await page.click("#c-title")
    await page.keyboard.press("F2")
    await page.locator("#view-check").wait_for(state="visible")
    assert await page.evaluate("document.activeElement.id") == "check-number"
    await page.click(".tab[data-view=feed]")
    assert page.url == base + "/"


async def test_a_live_hit_raises_a_banner_and_joins_the_hits_list_with_its_notice_in_words(page, stub):
    node, base = stub
    lookout, own_lookout = lookout_summary(), lookout_summary("own", 3500, **{"from": "TH-MUK"}, direction="sent",
                                                                     title="Own lookout: truck 70-1234")
    node.items += [lookout, own_lookout]
    node.hits = [
        hit(node.items[2], lookout, 200, notice="withheld:not_releasable", notice_id=None),
        hit(node.items[4], own_lookout, 100, notice="own", notice_id=None, strength="similar", key_kind="name~"),
    ]
    await login(page, base)
    fresh = summary("hitting", 99_000, title="ສະກັດກັ້ນຜູ້ໂດຍສານ ຖືໜັງສືຜ່ານແດນປອມ", **{"from": "LA-TCCC"})
    node.items.append(fresh)
    await node.push_hit(hit(fresh, lookout, 99_000))

    banner = page.locator(".banner-hit")
    await expect(banner).to_contain_text(f"HIT on lookout “{lookout['title']}”: {fresh['title']}")
    await expect(page.locator("#hits-unseen")).to_have_text("1")
    await page.click(".tab[data-view=check]")
    await expect(page.locator("#hits-unseen")).to_be_hidden()
    items = page.locator("#hits-list li")
    await expect(items).to_have_count(3)
    newest = items.nth(0)
    await expect(newest).to_contain_text(lookout["title"])
    await expect(newest).to_contain_text(fresh["title"])
    await expect(newest).to_contain_text("exact match")
    await expect(newest.locator(".notice")).to_have_text("Notice: originator notified open notice")
    await expect(items.nth(1).locator(".notice-text")).to_have_text("withheld: not releasable to their country")
    await expect(items.nth(2).locator(".notice-text")).to_have_text("our own lookout")
    await expect(items.nth(2)).to_contain_text("similar spelling")
    # The same hit again (e.g. after a reconnect) is listed once.
    await node.events.put(("hit", node.hits[0]))
    await expect(page.locator(".banner-hit")).to_have_count(2)
    await expect(items).to_have_count(3)

    await banner.first.locator("button:has-text('Open')").click()
    await expect(page.locator("#detail-title")).to_have_text(fresh["title"])
    await page.click(".tab[data-view=check]")
    await items.nth(1).locator(".hit-lookout").click()
    await expect(page.locator("#detail-title")).to_have_text(lookout["title"])


async def test_markup_in_a_hit_and_in_a_check_answer_renders_as_text(page, stub):
    node, base = stub
    evil = summary("evil-hit", 9000, title=EVIL, **{"from": EVIL}, kind=EVIL)
    node.items.append(evil)
    node.check_answer = {
        "flagged": True,
        "matches": [match(evil, grading=EVIL, strength=EVIL, key_kind=EVIL, entity={"type": EVIL, "name": EVIL})],
        "mentions": [match(evil, title=EVIL, sender=EVIL)],
    }
    await login(page, base)
    await node.push_hit(hit(evil, evil, lookout_title=EVIL, bulletin_title=EVIL, lookout_sender=EVIL,
                            notice=f"withheld:{EVIL}", precedence=EVIL, strength=EVIL))
    await expect(page.locator(".banner-hit .banner-text")).to_have_text(f"HIT on lookout “{EVIL}”: {EVIL}")
    await check_passport(page)
    await expect(page.locator("#check-verdict")).to_contain_text("FLAGGED")
    matched = page.locator("#check-matches li")
    assert await matched.locator(".match-title").text_content() == EVIL
    assert EVIL in await matched.text_content()
    assert await page.locator("#check-mentions .match-title").text_content() == EVIL
    listed = page.locator("#hits-list li").first
    assert await listed.locator(".hit-lookout").text_content() == EVIL
    assert await listed.locator(".hit-bulletin").text_content() == EVIL
    # An unknown rule is shown in words (underscores as spaces), and as text.
    assert await listed.locator(".notice-text").text_content() == "withheld: " + EVIL.replace("_", " ")
    assert await page.locator("img").count() == 0
    assert await page.evaluate("window.__pwned") is None
    page_log(page).assert_clean(base)


# -- look: colours and the small screen ------------------------------------------------------


async def test_badges_use_tlp_2_colours_and_flash_blinks(page, stub):
    _, base = stub
    await login(page, base)
    colours = await page.evaluate(
        """async () => {
            const m = await import('/static/app.js');
            const out = {};
            for (const label of m.TLP_LABELS) {
                const b = m.tlpBadge(label);
                document.body.append(b);
                const s = getComputedStyle(b);
                out[label] = [b.textContent, s.color, s.backgroundColor];
            }
            for (const p of m.PRECEDENCES) {
                const b = m.precedenceBadge(p);
                document.body.append(b);
                const s = getComputedStyle(b);
                out[p] = [b.textContent, s.backgroundColor, s.animationName];
            }
            return out;
        }"""
    )
    black = "rgb(0, 0, 0)"
    assert colours["RED"] == ["TLP:RED", "rgb(255, 43, 43)", black]
    assert colours["AMBER"] == ["TLP:AMBER", "rgb(255, 192, 0)", black]
    assert colours["AMBER+STRICT"] == ["TLP:AMBER+STRICT", "rgb(255, 192, 0)", black]
    assert colours["GREEN"] == ["TLP:GREEN", "rgb(51, 255, 0)", black]
    assert colours["CLEAR"] == ["TLP:CLEAR", "rgb(255, 255, 255)", black]
    assert colours["FLASH"][2] == "flash"
    assert colours["IMMEDIATE"][1:] == ["rgb(255, 140, 0)", "none"]
    assert colours["PRIORITY"][1:] == ["rgb(255, 212, 0)", "none"]
    assert colours["ROUTINE"][1:] == ["rgb(154, 160, 166)", "none"]


@pytest.mark.parametrize("size", [(1024, 600), (1280, 720)])
async def test_every_view_fits_a_small_laptop_screen_without_sideways_scrolling(new_page, stub, size):
    node, base = stub
    # The check view at its fullest: a flagged answer with long titles, mentions and hits.
    long_title = "เฝ้าระวัง: หนังสือเดินทางปลอม P0847211 " * 6
    lookout = lookout_summary(title=long_title)
    node.items.append(lookout)
    node.check_answer = {"flagged": True, "matches": [match(lookout)] * 3, "mentions": [match(node.items[1])] * 4}
    node.hits = [hit(node.items[i], lookout, i, bulletin_title=long_title, notice="withheld:not_releasable")
                 for i in range(5)]
    page = await new_page(viewport=size)
    await login(page, base)
    await page.locator("#feed-list li").first.locator("button").click()
    await page.wait_for_selector("#signature")
    fits = "document.documentElement.scrollWidth <= window.innerWidth && document.documentElement.scrollHeight <= window.innerHeight"
    assert await page.evaluate(fits)
    # The status bar and the list stay on screen; the detail scrolls inside its pane.
    box = await page.locator(".statusbar").bounding_box()
    assert box["y"] + box["height"] <= size[1]
    for view in ("compose", "outbox", "check"):
        await page.click(f".tab[data-view={view}]")
        if view == "compose":
            await page.select_option("#entity-type", "document")
            await page.click("#entity-add")
        if view == "check":
            await page.fill("#check-number", "P0847211")
            await page.fill("#check-country", "LA")
            await page.press("#check-number", "Enter")
            await expect(page.locator("#check-matches li")).to_have_count(3)
            await expect(page.locator("#hits-list li")).to_have_count(5)
            # The answer starts on screen, right under the form.
            verdict = await page.locator("#check-verdict").bounding_box()
            assert verdict["y"] + verdict["height"] <= size[1]
        assert await page.evaluate(fits), f"{view} overflows at {size}"
        pane = await page.locator(f"#view-{view}").bounding_box()
        assert pane["x"] + pane["width"] <= size[0]
