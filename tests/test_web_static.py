"""The officer's page itself, in a real headless Chromium, against a stub of the node API.

The stub serves office_node/web/ exactly as the node does ("/" and "/static/...") and
answers the API contract written at the top of app.js with canned data, recording what
the page sends. That isolates the page: its escaping, login flow, CSRF header, compose
payload, border check, live updates (bulletins, receipts, hits), the centre's views
(triage, forwarding, feeds, network) and layout. The end-to-end tests against real nodes
are tests/test_web_e2e.py.
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
from office_node.api import page_catalogue
from office_node.triage import MOVES, STATES
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


DAY = 86_400_000


def days(*counts: tuple[int, int]) -> list[dict[str, int]]:
    """An office's 7 days of (sent, received), oldest first, as /api/network gives them."""
    start = NOW - NOW % DAY - 6 * DAY
    return [{"start": start + i * DAY, "sent": s, "received": r} for i, (s, r) in enumerate(counts)]


def triage_item(item: dict[str, Any], state: str = "new", **fields: Any) -> dict[str, Any]:
    """One row of /api/triage, about the stored bulletin ``item``."""
    out = {"bulletin_id": item["id"], "state": state, "assignee": None, "created_at": item["received_at"],
           "updated_at": item["received_at"], "updated_by": None, "bulletin": item, "notes": 0}
    out.update(fields)
    return out


def feed(name: str, members: list[str], **fields: Any) -> dict[str, Any]:
    """One feed of /api/feeds, owned by the stub centre unless said otherwise."""
    out = {"name": name, "epoch": 1, "members": members, "writers": [], "ungranted": [], "owner": "TH-TCCC",
           "owned_here": True, "member_here": False, "subscribed": True, "have_key": True, "since": NOW - DAY,
           "unpublished": False}
    out.update(fields)
    return out


def provenance(**fields: Any) -> dict[str, Any]:
    out = {"state": "original_checked", "forwarded_by": "TH-TCCC", "original_id": _id("original"),
           "original_sender": "TH-MUK", "original_sign_kid": "4be0c1d2e3f40516", "original_sent_at": NOW - 60_000,
           "verified": True, "redacted": False, "redacted_fields": [], "reason": None,
           "text": f"TH-MUK's bulletin {_id('original')}, forwarded by TH-TCCC; TH-MUK's signature checked"}
    out.update(fields)
    return out


def attribution(prov: dict[str, Any]) -> dict[str, Any]:
    """A forward's attribution as the API gives it, beside its provenance ``prov``."""
    centre_words = prov["state"] != "original_checked"
    return {"state": prov["state"], "words_of": prov["forwarded_by"] if centre_words else prov["original_sender"],
            "forwarded_by": prov["forwarded_by"], "original_sender": prov["original_sender"],
            "original_id": prov["original_id"], "text": prov["text"]}


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

    def __init__(self, *, logged_in: bool = True, centre: bool = False) -> None:
        self.logged_in = logged_in
        # Who the page talks to: an office (TH-MUK) or, with centre=True, the Thai centre.
        self.office = "TH-TCCC" if centre else "TH-MUK"
        self.role = "centre" if centre else "office"
        self.user_role = "supervisor" if centre else "officer"
        self.offices = [("TH-MUK", "Mukdahan", "office", False), ("LA-SVK", "Savannakhet", "office", False),
                        ("TH-TCCC", "Thai TCCC", "centre", False), ("LA-THK", "Thakhek", "office", True)]
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
        # FLASH acknowledgement: who acknowledged a received FLASH here; escalations of ours.
        self.acks: dict[str, dict[str, Any]] = {}
        self.escalations: dict[str, list[dict[str, Any]]] = {}
        self.receipts: dict[str, list[dict[str, Any]]] = {}
        self.outbox = [
            {"id": self.items[3]["id"], "title": self.items[3]["title"], "precedence": "ROUTINE", "created": NOW,
             "recipients": [{"recipient": "LA-SVK", "state": "delivered", "at": NOW + 5},
                            {"recipient": "TH-TCCC", "state": "queued", "at": NOW + 1}]},
        ]
        self.feed_list: list[dict[str, Any]] = [
            {"name": "mekong-regional", "epoch": 3, "members": ["TH-MUK", "LA-SVK"], "owner": "TH-TCCC",
             "owned_here": False, "member_here": True, "subscribed": True, "have_key": True, "since": NOW - DAY,
             "unpublished": False}]
        # The centre: its triage queue and notes, the refusals it may answer, its network view.
        self.triage: list[dict[str, Any]] = []
        self.notes: dict[str, list[dict[str, Any]]] = {}
        self.triage_refusal: dict[str, Any] | None = None
        self.forward_refusal: tuple[int, dict[str, Any]] | None = None
        self.feed_refusal: tuple[int, dict[str, Any]] | None = None
        self.network: dict[str, Any] = {"at": NOW, "country": "TH", "silent_after_ms": 600_000,
                                        "counts": {"online": 0, "silent": 0, "never_seen": 0}, "offices": []}
        self.network_requests = 0
        self.triage_requests: list[str] = []
        self.triage_page: int | None = None  # items per /api/triage page (None: all in one)
        if centre:
            self.centre_data()

    def centre_data(self) -> None:
        """TH-TCCC's world: reports from two Thai offices in triage, two feeds, three offices."""
        self.offices.append(("TH-NKP", "Nakhon Phanom", "office", False))
        self.items = [
            summary("r1", 3000, precedence="IMMEDIATE", tlp="AMBER", **{"from": "TH-MUK"},
                    title="รายงาน: รถบรรทุกยาบ้า ทะเบียน 70-1234"),
            summary("r2", 2000, precedence="PRIORITY", tlp="GREEN", **{"from": "TH-NKP"},
                    title="รายงาน: เรือข้ามฟากผิดกฎหมาย"),
            summary("r3", 1000, precedence="ROUTINE", tlp="GREEN", **{"from": "TH-MUK"}, read=True,
                    title="รายงาน: ผู้โดยสารถือหนังสือเดินทางปลอม"),
        ]
        self.triage = [triage_item(self.items[0]), triage_item(self.items[1], notes=1),
                       triage_item(self.items[2], "closed", assignee="somchai")]
        self.notes = {self.items[1]["id"]: [{"author": "niran", "at": NOW + 2500, "text": "ตรวจสอบกับ TH-NKP แล้ว"}]}
        self.feed_list = [
            feed("th-border", ["TH-MUK", "TH-NKP"], epoch=2),
            feed("th-la-border", ["LA-SVK", "TH-MUK"], owner="LA-TCCC", owned_here=False, epoch=5),
        ]
        self.network = {
            "at": NOW + 60_000, "country": "TH", "silent_after_ms": 600_000,
            "counts": {"online": 1, "silent": 1, "never_seen": 1},
            "offices": [
                {"office": "TH-CKG", "name": "Chiang Khong BLO", "state": "never_seen", "flags": ["never_seen"],
                 "last_seen": None, "age_ms": None, "outbox_depth": None, "outbox_lag_ms": None, "unacked_flash": None,
                 "key_expires_at": NOW + 300 * DAY, "software": None, "days": []},
                {"office": "TH-MUK", "name": "Mukdahan BLO", "state": "online", "flags": [], "last_seen": NOW + 50_000,
                 "age_ms": 10_000, "outbox_depth": 0, "outbox_lag_ms": None, "unacked_flash": 0,
                 "key_expires_at": NOW + 300 * DAY, "software": "0.1.0",
                 "days": days((1, 2), (0, 0), (4, 6), (2, 3), (0, 1), (5, 5), (3, 5))},
                {"office": "TH-NKP", "name": "Nakhon Phanom BLO", "state": "silent",
                 "flags": ["silent", "outbox_lag", "unacked_flash", "key_expiring"], "last_seen": NOW - 3_600_000,
                 "age_ms": 3_660_000, "outbox_depth": 7, "outbox_lag_ms": 1_800_000, "unacked_flash": 2,
                 "key_expires_at": NOW + 5 * DAY, "software": "0.1.0",
                 "days": days((2, 0), (1, 1), (0, 0), (0, 0), (3, 1), (1, 0), (0, 0))},
            ],
        }

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
        app.router.add_get("/static/i18n/{language}.json", page_catalogue)  # the node's own handler
        app.router.add_static("/static/", WEB)
        app.router.add_get("/health", self.health)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/api/me", self.me)
        app.router.add_get("/api/bulletins", self.list_bulletins)
        app.router.add_post("/api/bulletins", self.post_bulletin)
        app.router.add_get("/api/bulletins/{id}", self.get_bulletin)
        app.router.add_post("/api/bulletins/{id}/read", self.mark_read)
        app.router.add_post("/api/bulletins/{id}/ack", self.acknowledge)
        app.router.add_post("/api/bulletins/{id}/reply", self.post_bulletin)
        app.router.add_get("/api/search", self.search)
        app.router.add_get("/api/outbox", self.get_outbox)
        app.router.add_get("/api/directory", self.directory)
        app.router.add_get("/api/feeds", self.feeds)
        app.router.add_post("/api/check", self.check)
        app.router.add_get("/api/hits", self.get_hits)
        app.router.add_get("/api/events", self.stream)
        app.router.add_post("/api/bulletins/{id}/forward", self.forward)
        app.router.add_get("/api/triage", self.get_triage)
        app.router.add_get("/api/triage/{id}", self.get_triage_item)
        app.router.add_post("/api/triage/{id}", self.post_triage)
        app.router.add_post("/api/feeds", self.create_feed)
        app.router.add_post("/api/feeds/{name}/members", self.feed_members)
        app.router.add_post("/api/feeds/{name}/rotate", self.rotate_feed)
        app.router.add_post("/api/feeds/{name}/writers", self.feed_writers)
        app.router.add_get("/api/network", self.get_network)
        return app

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB / "index.html")

    async def login_page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB / "login.html")

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "office": self.office, "role": self.role, "nats": self.nats,
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
        me = {"user": {"username": "somchai", "display_name": "Somchai K.", "role": self.user_role}, "csrf_token": CSRF}
        if self.me_names_office:
            me.update(office=self.office, role=self.role)
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
            "receipts": self.receipts.get(item["id"], [{"recipient": "TH-MUK", "state": "delivered", "at": item["received_at"]}]),
            "acknowledged": self.acks.get(item["id"]),
            "escalations": self.escalations.get(item["id"], []),
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

    async def acknowledge(self, request: web.Request) -> web.Response:
        denied = await self.record_post(request)
        if denied:
            return denied
        ack = self.acks.setdefault(request.match_info["id"], {"by": "somchai", "at": NOW + 9000})
        return web.json_response({"ok": True, "first": True, "acknowledged": ack})

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
            for o, n, r, rv in self.offices
        ]
        return web.json_response({"offices": offices})

    async def feeds(self, request: web.Request) -> web.Response:
        if not self.authed(request):
            return self.deny()
        return web.json_response({"feeds": self.feed_list})

    # -- the centre's API --------------------------------------------------------------------

    def not_centre(self) -> web.Response | None:
        if self.role == "centre":
            return None
        return web.json_response({"error": {"code": "not_centre", "message": "TH-MUK is an office node."}}, status=403)

    def triage_detail(self, bulletin_id: str) -> dict[str, Any] | None:
        row = next((i for i in self.triage if i["bulletin_id"] == bulletin_id), None)
        if row is None:
            return None
        fields = {k: v for k, v in row.items() if k not in ("bulletin", "notes")}
        return {**fields, "notes": self.notes.get(bulletin_id, [])}

    async def get_triage(self, request: web.Request) -> web.Response:
        if not self.authed(request):
            return self.deny()
        self.triage_requests.append(request.query_string)
        wanted = request.query.get("state")
        counts = {s: sum(1 for i in self.triage if i["state"] == s) for s in STATES}
        items = [i for i in self.triage if wanted in (None, i["state"])]
        start = int(request.query.get("cursor", "0"))  # this stub's cursors: where the page starts
        size = int(request.query.get("limit", "0")) or self.triage_page or len(items)
        more = str(start + size) if start + size < len(items) else None
        return self.not_centre() or web.json_response(
            {"counts": counts, "items": items[start : start + size], "next": more}
        )

    async def get_triage_item(self, request: web.Request) -> web.Response:
        if not self.authed(request):
            return self.deny()
        found = self.triage_detail(request.match_info["id"])
        if found is None:
            return web.json_response({"error": {"code": "not_found", "message": "Not in the queue."}}, status=404)
        return web.json_response(found)

    async def post_triage(self, request: web.Request) -> web.Response:
        denied = await self.record_post(request)
        if denied:
            return denied
        if self.triage_refusal:
            return web.json_response({"error": self.triage_refusal}, status=400)
        _, _, body = self.posts[-1]
        bulletin_id = request.match_info["id"]
        row = next(i for i in self.triage if i["bulletin_id"] == bulletin_id)
        if "state" in body:  # the workflow of office_node/triage.py
            if body["state"] != row["state"] and body["state"] not in MOVES[row["state"]]:
                return web.json_response({"error": {"code": "invalid", "field": "state",
                                                    "message": f"it is {row['state']}; not {body['state']}"}}, status=400)
            row["state"] = body["state"]
        if body.get("assignee"):
            row["assignee"] = body["assignee"]
        if body.get("note"):
            self.notes.setdefault(bulletin_id, []).append({"author": "somchai", "at": NOW + 70_000, "text": body["note"]})
            row["notes"] = len(self.notes[bulletin_id])
        row.update(updated_at=NOW + 70_000, updated_by="somchai")
        return web.json_response(self.triage_detail(bulletin_id))

    async def forward(self, request: web.Request) -> web.Response:
        denied = await self.record_post(request)
        if denied:
            return denied
        if self.forward_refusal:
            status, error = self.forward_refusal
            return web.json_response({"error": error}, status=status)
        _, _, body = self.posts[-1]
        bulletin_id = request.match_info["id"]
        for row in self.triage:  # like the node: forwarded means disseminated, and the page hears it
            if row["bulletin_id"] == bulletin_id:
                row["state"] = "disseminated"
                await self.events.put(("triage", {"id": bulletin_id, "state": "disseminated"}))
        return web.json_response({"id": _id("forward"), "state": "queued", "recipients": ["feed:" + body["feed"]],
                                  "forward_of": bulletin_id, "redacted": body.get("redact", [])}, status=201)

    def find_feed(self, name: str) -> dict[str, Any] | None:
        return next((f for f in self.feed_list if f["name"] == name), None)

    async def create_feed(self, request: web.Request) -> web.Response:
        denied = await self.record_post(request)
        if denied:
            return denied
        if self.feed_refusal:
            status, error = self.feed_refusal
            return web.json_response({"error": error}, status=status)
        _, _, body = self.posts[-1]
        created = feed(body["name"], sorted(body["members"]))
        self.feed_list.append(created)
        return web.json_response(created, status=201)

    async def feed_members(self, request: web.Request) -> web.Response:
        denied = await self.record_post(request)
        if denied:
            return denied
        if self.feed_refusal:
            status, error = self.feed_refusal
            return web.json_response({"error": error}, status=status)
        _, _, body = self.posts[-1]
        found = self.find_feed(request.match_info["name"])
        assert found is not None
        add, remove = body.get("add", []), body.get("remove", [])
        if not found["owned_here"]:  # a joint feed: the change is asked of its owner
            return web.json_response({"name": found["name"], "requested_from": found["owner"], "request_id": _id("req"),
                                      "add": add, "remove": remove})
        found["members"] = sorted({*found["members"], *add} - set(remove))
        found["epoch"] += 1
        return web.json_response(found)

    async def feed_writers(self, request: web.Request) -> web.Response:
        denied = await self.record_post(request)
        if denied:
            return denied
        _, _, body = self.posts[-1]
        found = self.find_feed(request.match_info["name"])
        assert found is not None and found["owned_here"]
        found["writers"] = sorted({*found["writers"], *body.get("add", [])} - set(body.get("remove", [])))
        found["epoch"] += 1
        return web.json_response(found)

    async def rotate_feed(self, request: web.Request) -> web.Response:
        denied = await self.record_post(request)
        if denied:
            return denied
        found = self.find_feed(request.match_info["name"])
        assert found is not None
        found["epoch"] += 1
        return web.json_response(found)

    async def get_network(self, request: web.Request) -> web.Response:
        if not self.authed(request):
            return self.deny()
        self.network_requests += 1
        return self.not_centre() or web.json_response(self.network)

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


@pytest_asyncio.fixture(loop_scope="module")
async def centre() -> AsyncIterator[tuple[StubNode, str]]:
    """The stub as TH-TCCC, a coordination centre, with a supervisor signed in."""
    node = StubNode(centre=True)
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
        # The SVG namespace is a name (createElementNS), never fetched: the only URL allowed.
        text = (WEB / name).read_text(encoding="utf-8").replace('"http://www.w3.org/2000/svg"', "")
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


async def test_compose_keeps_a_multi_word_alias_whole_and_splits_only_on_commas(page, stub):
    node, base = stub
    await login(page, base)
    await page.click(".tab[data-view=compose]")
    await page.check(".to-office[value=LA-SVK]")
    await page.fill("#c-title", "Wanted: Somchai Jaidee")
    await page.select_option("#entity-type", "person")
    await page.click("#entity-add")
    person = page.locator(".entity-row").nth(0)
    await person.locator("[data-field=name]").fill("Somchai Rakthai")
    await person.locator("[data-field=aliases]").fill("Somchai Jaidee, Somchai ; ສົມໃຈ ໃຈດີ")
    await page.select_option("#c-source", "B")
    await page.select_option("#c-information", "2")
    await page.click("#compose-send")
    await page.locator("#compose-result").wait_for(state="visible")
    _, _, body = node.posts_to("/api/bulletins")[0]
    assert body["entities"][0]["aliases"] == ["Somchai Jaidee", "Somchai", "ສົມໃຈ ໃຈດີ"]


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


async def test_a_received_flash_is_acknowledged_by_the_officer_and_then_says_who(page, stub):
    node, base = stub
    await login(page, base)
    flash = node.items[0]  # a FLASH from LA-SVK
    await page.locator("#feed-list li").first.locator("button").click()
    await page.click("#ack-button")
    await page.wait_for_selector("#acknowledged")
    assert "Acknowledged by somchai" in await page.text_content("#acknowledged")
    assert await page.locator("#ack-button").count() == 0
    (_path, headers, _), = node.posts_to(f"/api/bulletins/{flash['id']}/ack")
    assert headers["X-CSRF-Token"] == CSRF
    # A routine bulletin offers no Acknowledge button.
    await page.locator("#feed-list li").nth(1).locator("button").click()
    await page.wait_for_selector("#mark-read, #detail-title")
    assert await page.locator("#ack-button").count() == 0


async def test_a_sent_flash_shows_delivered_not_acknowledged_and_where_it_escalated(page, stub):
    node, base = stub
    sent = summary("f", 4000, precedence="FLASH", direction="sent", **{"from": "TH-MUK"}, title="FLASH sent")
    node.items.insert(0, sent)
    node.receipts[sent["id"]] = [{"recipient": "LA-SVK", "state": "delivered", "at": NOW + 4100},
                                 {"recipient": "LA-THK", "state": "acknowledged", "at": NOW + 4200}]
    node.escalations[sent["id"]] = [{"level": "recipient_centre", "centre": "LA-TCCC", "offices": ["LA-SVK"],
                                     "notice_id": _id("n"), "at": NOW + 124_000}]
    await login(page, base)
    await page.locator("#feed-list li").first.locator("button").click()
    await page.wait_for_selector("#receipts tr[data-recipient='LA-SVK']")
    assert await page.text_content("#receipts tr[data-recipient='LA-SVK'] .chip") == "delivered, not acknowledged"
    assert await page.text_content("#receipts tr[data-recipient='LA-THK'] .chip") == "acknowledged"
    escalated = await page.text_content("#escalations")
    assert "LA-TCCC" in escalated and "the recipient's centre" in escalated and "LA-SVK" in escalated
    assert await page.locator("#ack-button").count() == 0  # the sender does not acknowledge its own


async def test_a_feed_copy_held_or_failed_shows_the_nodes_reason(page, stub):
    node, base = stub
    sent = summary("h", 5000, direction="sent", **{"from": "TH-MUK"}, title="to the feed")
    node.items.insert(0, sent)
    node.receipts[sent["id"]] = [
        {"recipient": "feed:mekong-border", "state": "held", "at": None,
         "problem": "waiting for the key of epoch 3 of feed mekong-border (the grant is on its way)"},
        {"recipient": "feed:old-feed", "state": "failed", "at": None, "problem": "TH-MUK was removed from old-feed"},
    ]  # fmt: skip
    await login(page, base)
    await page.locator("#feed-list li").first.locator("button").click()
    held = page.locator("#receipts tr[data-recipient='feed:mekong-border']")
    await held.wait_for()
    assert await held.locator(".chip").text_content() == "held"
    assert "waiting for the key of epoch 3" in await held.locator(".problem").text_content()
    failed = page.locator("#receipts tr[data-recipient='feed:old-feed']")
    assert await failed.locator(".chip").get_attribute("class") == "chip state-failed"
    assert "was removed from old-feed" in await failed.locator(".problem").text_content()


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
    await page.fill("#check-number", "+856 20 5555 1234")
    await page.press("#check-number", "Enter")
    await expect(page.locator("#check-verdict")).to_be_visible()
    # A phone in its national form: the officer names its country (empty: the office's own).
    assert await page.get_attribute("#check-country", "placeholder") == "TH"
    await page.fill("#check-number", "020 5555 1234")
    await page.fill("#check-country", "la")
    await page.press("#check-number", "Enter")
    await expect(page.locator("#check-verdict")).to_be_visible()
    assert [body for _, _, body in node.posts_to("/api/check")] == [
        {"type": "document", "doc_type": "passport", "number": "p-0847 211", "country": "LA"},
        {"type": "document", "doc_type": "id_card", "number": "p-0847 211", "country": "LA"},
        {"type": "vehicle", "plate": "70-1234", "country": "TH"},
        {"type": "phone", "number": "+856 20 5555 1234"},
        {"type": "phone", "number": "020 5555 1234", "country": "LA"},
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


# -- the centre: triage, forwarding, feeds, network ----------------------------------------


async def local_date(page, ms: int) -> str:
    """The page's own YYYY-MM-DD for ``ms`` (the browser's time zone, not the test's)."""
    return await page.evaluate("ms => import('/static/app.js').then(m => m.formatDate(ms))", ms)


async def open_centre(page, base: str, tab: str = "triage") -> None:
    await login(page, base)
    await page.click(".tab[data-view=centre]")
    await page.click(f".subtab[data-centre={tab}]")
    await page.locator(f"#centre-{tab}").wait_for(state="visible")


async def test_the_centre_view_appears_only_on_a_centre(page, stub, new_page, centre):
    node, base = stub
    await page.context.add_cookies([{"name": "stub_session", "value": "ok", "url": base}])
    await page.goto(base + "/#triage")  # an office's bookmark of a centre view opens the feed
    await page.wait_for_selector("#feed-list li")
    await expect(page.locator(".tab[data-view=centre]")).to_be_hidden()
    await expect(page.locator("#view-feed")).to_be_visible()
    assert await page.locator("#view-centre").is_hidden()
    assert page.url == base + "/"
    await page.locator("#feed-list li").first.locator("button").click()
    await page.wait_for_selector("#signature")
    assert await page.locator("#forward-button, #triage-button").count() == 0
    assert node.triage_requests == [] and node.network_requests == 0

    centre_node, centre_base = centre
    other = await new_page(bypass_csp=False)  # the chart and the dialog under the page's own policy
    await other.context.add_cookies([{"name": "stub_session", "value": "ok", "url": centre_base}])
    await other.goto(centre_base + "/#network")
    await other.locator("#centre-network").wait_for(state="visible")
    await expect(other.locator(".tab[data-view=centre]")).to_have_attribute("aria-pressed", "true")
    await expect(other.locator("#network-body svg.volume")).to_have_count(2)
    await expect(other.locator("#triage-new")).to_have_text("2")  # two new in the queue
    await expect(other.locator("#network-alert")).to_have_text("1")  # one office silent
    await other.click(".subtab[data-centre=feeds]")
    assert other.url == centre_base + "/#feeds"
    # From a report's detail in the Feed view, one click to its triage item.
    await other.click(".tab[data-view=feed]")
    await other.locator("#feed-list li").nth(1).locator("button").click()
    await other.click("#triage-button")
    await other.locator("#centre-triage").wait_for(state="visible")
    assert other.url == centre_base + "/#triage"
    await expect(other.locator("#triage-detail-title")).to_have_text(centre_node.items[1]["title"])
    await expect(other.locator("#triage-list li.selected")).to_have_attribute("data-id", centre_node.items[1]["id"])
    await other.click("#triage-forward-button")
    await expect(other.locator("#forward-dialog")).to_be_visible()
    await other.keyboard.press("Escape")
    await expect(other.locator("#forward-dialog")).to_be_hidden()
    page_log(other).assert_clean(centre_base)


async def test_a_long_triage_queue_loads_older_pages_on_request(page, centre):
    node, base = centre
    node.triage_page = 2
    await open_centre(page, base)
    rows = page.locator("#triage-list li")
    await expect(rows).to_have_count(2)
    more = page.locator("#triage-more")
    await expect(more).to_be_visible()
    await more.click()
    await expect(rows).to_have_count(3)
    await expect(more).to_be_hidden()
    assert node.triage_requests[-1] == "cursor=2"
    assert [await r.get_attribute("data-id") for r in await rows.all()] == [i["bulletin_id"] for i in node.triage]
    await page.click("#triage-refresh")  # back to the newest page
    await expect(rows).to_have_count(2)
    assert node.triage_requests[-1] == ""
    page_log(page).assert_clean(base)


async def test_a_refresh_keeps_the_older_pages_loaded(page, centre):
    node, base = centre
    template = node.triage[0]
    node.triage = [{**template, "bulletin_id": f"r{i:03d}", "created_at": template["created_at"] - i} for i in range(150)]
    node.triage_page = 100
    await open_centre(page, base)
    rows = page.locator("#triage-list li")
    await expect(rows).to_have_count(100)
    await page.click("#triage-more")
    await expect(rows).to_have_count(150)
    await page.click("#triage-refresh")  # as a live triage event does
    await expect(page.locator("#triage-more")).to_be_hidden()
    assert node.triage_requests[-1] == "limit=150"
    await expect(rows).to_have_count(150)
    await page.click("#triage-filter-new")  # another filter starts from its first page
    assert (await _eventually_request(node, "state=new")) is True
    page_log(page).assert_clean(base)


async def _eventually_request(node, query: str) -> bool:
    for _ in range(50):
        if node.triage_requests and node.triage_requests[-1] == query:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_triage_lists_by_state_and_a_move_with_a_note_posts_it_and_updates_the_row(page, centre):
    node, base = centre
    await open_centre(page, base)
    rows = page.locator("#triage-list li")
    await expect(rows).to_have_count(3)
    await expect(page.locator("#triage-filter-new")).to_have_text("New 2")
    await expect(page.locator("#triage-filter-closed")).to_have_text("Closed 1")
    await page.click("#triage-filter-new")
    await expect(rows).to_have_count(2)
    assert node.triage_requests[-1] == "state=new"
    await page.click("#triage-filter-all")
    await expect(rows).to_have_count(3)
    assert await rows.nth(2).locator(".assignee").text_content() == "@somchai"

    first = node.items[0]
    await rows.nth(0).locator("button").click()
    await expect(page.locator("#triage-state")).to_have_text("New")
    await expect(page.locator("#triage-detail-title")).to_have_text(first["title"])
    # Only the moves the workflow allows from "new" are offered.
    moves = await page.locator("#triage-box .triage-move").evaluate_all("els => els.map(e => e.dataset.state)")
    assert moves == ["in_review", "disseminated", "closed"]
    await page.fill("#triage-note", "ตรวจสอบทะเบียนรถกับกรมการขนส่ง")
    await page.click("#triage-box .triage-move[data-state=in_review]")
    await expect(page.locator("#triage-state")).to_have_text("In review")
    _, headers, body = node.posts_to(f"/api/triage/{first['id']}")[0]
    assert headers["X-CSRF-Token"] == CSRF
    assert body == {"state": "in_review", "note": "ตรวจสอบทะเบียนรถกับกรมการขนส่ง"}
    row = rows.nth(0)
    await expect(row).to_have_attribute("data-state", "in_review")
    await expect(row.locator(".chip.triage-in-review")).to_have_text("In review")
    await expect(row.locator(".notes-count")).to_have_text("✎ 1")
    await expect(page.locator("#triage-filter-new")).to_have_text("New 1")
    await expect(page.locator("#triage-notes li")).to_have_text(re.compile("ตรวจสอบทะเบียนรถ"))
    assert await page.input_value("#triage-note") == ""

    # A note on its own, then assigning: each posts only its own field.
    await page.fill("#triage-note", "รอผลจาก TH-NKP")
    await page.click("#triage-add-note")
    await expect(page.locator("#triage-notes li")).to_have_count(2)
    await page.click("#triage-assign")
    await expect(page.locator("#triage-assignee")).to_have_text("assigned to somchai")
    assert [b for _, _, b in node.posts_to(f"/api/triage/{first['id']}")][1:] == [
        {"note": "รอผลจาก TH-NKP"}, {"assignee": "somchai"}]
    # A move the node refuses: its message, the state unchanged.
    node.triage_refusal = {"code": "invalid", "field": "state", "message": "it is in_review; it can go to new, disseminated, closed"}
    await page.click("#triage-box .triage-move[data-state=closed]")
    await expect(page.locator("#triage-error")).to_have_text("it is in_review; it can go to new, disseminated, closed")
    await expect(page.locator("#triage-state")).to_have_text("In review")

    # A new report arrives: the live event brings it into the list and the count.
    node.triage_refusal = None
    fresh = summary("r4", 9000, **{"from": "TH-NKP"}, title="รายงานด่วน: ลักลอบขนสินค้า")
    node.items.append(fresh)
    node.triage.insert(0, triage_item(fresh))
    await node.events.put(("triage", {"id": fresh["id"], "state": "new"}))
    await expect(rows).to_have_count(4)
    await expect(rows.nth(0)).to_contain_text(fresh["title"])
    await expect(page.locator("#triage-new")).to_have_text("2")


async def test_a_forward_posts_the_feed_and_the_redactions_and_shows_a_refusal_in_words(page, centre):
    node, base = centre
    await open_centre(page, base)
    first = node.items[0]
    await page.locator("#triage-list li").nth(0).locator("button").click()
    await page.click("#triage-forward-button")
    dialog = page.locator("#forward-dialog")
    await expect(dialog).to_be_visible()
    # Feeds this centre can seal to; the members of the chosen one.
    assert await page.locator("#forward-feed option").evaluate_all("els => els.map(e => e.value)") == [
        "th-border", "th-la-border"]
    await expect(page.locator("#forward-members")).to_have_text("Members: TH-MUK, TH-NKP")
    # A checkbox for title, body, tags, each entity and each entity's fields.
    paths = await page.locator("#forward-form .redact").evaluate_all("els => els.map(e => e.value)")
    assert paths == ["title", "body", "tags", "entities[0]", "entities[0].name", "entities[0].dob",
                     "entities[0].nationality", "entities[1]", "entities[1].plate", "entities[1].country"]
    await expect(page.locator("#forward-redact-note")).to_be_hidden()
    await page.check("#forward-form .redact[value='entities[0].name']")
    await expect(page.locator("#forward-redact-note")).to_contain_text(
        "this centre's own words citing the original, not as the office's")
    # Redacting a whole entity takes its fields with it.
    await page.check("#forward-form .redact[value='entities[1]']")
    assert await page.is_disabled("#forward-form .redact[value='entities[1].plate']")
    await page.check("#forward-form .redact[value=title]")

    node.forward_refusal = (422, {"code": "not_releasable", "message":
                                  "th-la-border reaches LA; bulletin releasable only to TH, LA: narrow the feed or ask TH-MUK"})
    await page.select_option("#forward-feed", "th-la-border")
    await page.click("#forward-send")
    await expect(page.locator("#forward-error")).to_have_text(
        "th-la-border reaches LA; bulletin releasable only to TH, LA: narrow the feed or ask TH-MUK")
    await expect(dialog).to_be_visible()

    node.forward_refusal = None
    await page.select_option("#forward-feed", "th-border")
    await page.click("#forward-send")
    await expect(dialog).to_be_hidden()
    posted = node.posts_to(f"/api/bulletins/{first['id']}/forward")
    assert len(posted) == 2
    _, headers, body = posted[1]
    assert headers["X-CSRF-Token"] == CSRF
    assert body == {"feed": "th-border", "redact": ["title", "entities[0].name", "entities[1]"]}
    assert posted[0][2]["feed"] == "th-la-border"
    await expect(page.locator("#triage-detail .forward-result")).to_contain_text(
        "Forwarded to #th-border, redacted (title, entities[0].name, entities[1])")
    # The node moved it to disseminated and said so on the live stream.
    await expect(page.locator("#triage-list li").nth(0)).to_have_attribute("data-state", "disseminated")
    await expect(page.locator("#triage-state")).to_have_text("Disseminated")


async def test_a_forward_that_changes_the_handling_sends_only_what_changed(page, centre):
    node, base = centre
    second = node.items[1]  # PRIORITY, GREEN, releasable to TH and LA
    await login(page, base)  # from the Feed view's detail this time
    await page.locator("#feed-list li").nth(1).locator("button").click()
    await page.click("#forward-button")
    options = await page.locator("#forward-precedence option").evaluate_all("els => els.map(e => e.value)")
    assert options == ["", "FLASH", "IMMEDIATE"]  # keep or raise, never lower
    # Keep or tighten, and never to a TLP that no feed may carry.
    assert await page.locator("#forward-tlp option").evaluate_all("els => els.map(e => e.value)") == ["", "AMBER"]
    await page.select_option("#forward-precedence", "IMMEDIATE")
    await page.select_option("#forward-tlp", "AMBER")
    await page.uncheck(".forward-country[value=LA]")
    await page.fill("#forward-tags", "bridge2, สำคัญ")
    await page.click("#forward-send")
    await expect(page.locator("#forward-dialog")).to_be_hidden()
    _, _, body = node.posts_to(f"/api/bulletins/{second['id']}/forward")[0]
    assert body == {"feed": "th-border", "redact": [], "precedence": "IMMEDIATE", "tlp": "AMBER",
                    "releasable_to": ["TH"], "tags": ["bridge2", "สำคัญ"]}
    await expect(page.locator("#detail .forward-result")).to_contain_text("Forwarded to #th-border: ")
    # Unticking every country is refused in the page: a forward must reach somewhere.
    await page.click("#forward-button")
    await page.uncheck(".forward-country[value=TH]")
    await page.uncheck(".forward-country[value=LA]")
    await page.click("#forward-send")
    await expect(page.locator("#forward-error")).to_have_text("Keep at least one country it may reach.")
    assert len(node.posts_to(f"/api/bulletins/{second['id']}/forward")) == 1


async def test_signing_out_at_a_centre_leaves_no_queue_notes_or_dialog_on_screen(page, centre):
    _, base = centre
    await open_centre(page, base)
    await page.locator("#triage-list li").nth(1).locator("button").click()
    await expect(page.locator("#triage-notes li")).to_have_count(1)
    await page.click("#triage-forward-button")
    await page.click("#forward-cancel")
    await page.click("#logout-button")
    await page.locator("#login-form").wait_for(state="visible")
    for selector in ("#triage-list li", "#triage-notes", "#forward-form", "#feeds-body tr", "#network-body tr"):
        assert await page.locator(selector).count() == 0, selector
    await expect(page.locator(".tab[data-view=centre]")).to_be_hidden()


async def test_an_officer_at_a_centre_sees_forwarding_and_feed_changes_disabled_with_the_reason(page, centre):
    node, base = centre
    node.user_role = "officer"
    await open_centre(page, base)
    await page.locator("#triage-list li").nth(0).locator("button").click()
    forward = page.locator("#triage-forward-button")
    await expect(forward).to_be_disabled()
    assert "supervisor" in await forward.get_attribute("title")
    await expect(page.locator("#triage-detail")).to_contain_text("Forwarding needs a supervisor.")
    # Triage itself is every analyst's work.
    await expect(page.locator("#triage-box .triage-move").first).to_be_enabled()
    await page.click(".subtab[data-centre=feeds]")
    await expect(page.locator("#feeds-role")).to_contain_text("Needs a supervisor or admin account")
    await expect(page.locator("#feed-create")).to_be_disabled()
    await expect(page.locator("#feeds-body .feed-add-button").first).to_be_disabled()
    assert await page.locator("#feeds-body .member-remove").count() == 0
    assert await page.locator("#feeds-body button.member-post").count() == 0  # post rights: a supervisor's too


async def test_feeds_are_listed_created_and_changed_and_a_joint_feed_change_is_asked_of_its_owner(page, centre):
    node, base = centre
    await open_centre(page, base, "feeds")
    rows = page.locator("#feeds-body tr")
    await expect(rows).to_have_count(2)
    own, joint = rows.nth(0), rows.nth(1)
    await expect(own).to_contain_text("#th-border")
    await expect(own).to_contain_text("owned here")
    await expect(own.locator(".feed-epoch")).to_have_text("2")
    assert await own.locator(".member").evaluate_all("els => els.map(e => e.dataset.office)") == ["TH-MUK", "TH-NKP"]
    await expect(joint).to_contain_text("owner LA-TCCC")
    # On another centre's feed, only this country's members are this centre's to change.
    assert await joint.locator(".member-remove").count() == 1
    assert await joint.locator(".member[data-office=TH-MUK] .member-remove").count() == 1

    # Create: this country's offices are offered; others typed; a joint scope.
    offered = await page.locator(".feed-member").evaluate_all("els => els.map(e => e.value)")
    assert offered == ["TH-MUK", "TH-NKP"]
    await page.fill("#feed-name", "th-mekong")
    await page.check(".feed-member[value=TH-NKP]")
    await page.fill("#feed-extra", "th-ckg")
    await page.fill("#feed-scope", "th")
    await page.click("#feed-create")
    await expect(page.locator("#feeds-result")).to_contain_text("Created #th-mekong")
    _, headers, body = node.posts_to("/api/feeds")[0]
    assert headers["X-CSRF-Token"] == CSRF
    assert body == {"name": "th-mekong", "members": ["TH-NKP", "TH-CKG"], "scope": ["TH"]}
    await expect(rows).to_have_count(3)
    assert await page.input_value("#feed-name") == ""

    # Add and remove on a feed owned here: a new epoch each time.
    await own.locator(".feed-add-input").fill("th-ckg")
    await own.locator(".feed-add-button").click()
    await expect(page.locator("#feeds-result")).to_contain_text("#th-border: add TH-CKG done; epoch 3")
    await expect(own.locator(".feed-epoch")).to_have_text("3")
    await own.locator(".member[data-office=TH-NKP] .member-remove").click()
    await expect(page.locator("#feeds-result")).to_contain_text("remove TH-NKP done; epoch 4")
    assert await own.locator(".member").evaluate_all("els => els.map(e => e.dataset.office)") == ["TH-CKG", "TH-MUK"]
    await own.locator(".feed-rotate").click()
    await expect(page.locator("#feeds-result")).to_contain_text("#th-border: a fresh key, epoch 5")
    assert [b for _, _, b in node.posts_to("/api/feeds/th-border/members")] == [{"add": ["TH-CKG"]}, {"remove": ["TH-NKP"]}]
    assert len(node.posts_to("/api/feeds/th-border/rotate")) == 1

    # The joint feed: the change is requested from the owner centre, and the page says so.
    await joint.locator(".feed-add-input").fill("TH-NKP")
    await joint.locator(".feed-add-input").press("Enter")
    await expect(page.locator("#feeds-result")).to_have_text(
        "Requested from LA-TCCC, which owns #th-la-border: add TH-NKP. The members change when LA-TCCC applies it.")
    assert node.posts_to("/api/feeds/th-la-border/members")[0][2] == {"add": ["TH-NKP"]}
    # Another country's office: the node's refusal, in its words.
    node.feed_refusal = (403, {"code": "other_country", "message": "LA-SVK is not of TH: ask LA's centre to add it"})
    await own.locator(".feed-add-input").fill("LA-SVK")
    await own.locator(".feed-add-button").click()
    await expect(page.locator("#feeds-error")).to_have_text("LA-SVK is not of TH: ask LA's centre to add it")
    await expect(page.locator("#feeds-result")).to_be_hidden()


async def test_post_rights_are_shown_per_member_and_a_supervisor_gives_and_takes_them(page, centre):
    node, base = centre
    own = node.find_feed("th-border")
    joint = node.find_feed("th-la-border")
    assert own is not None and joint is not None
    own.update(writers=["TH-MUK"], ungranted=["TH-NKP"])
    joint.update(writers=["LA-SVK"])
    await open_centre(page, base, "feeds")
    rows = page.locator("#feeds-body tr")
    await expect(rows).to_have_count(2)
    mine, theirs = rows.nth(0), rows.nth(1)
    muk, nkp = mine.locator(".member[data-office=TH-MUK]"), mine.locator(".member[data-office=TH-NKP]")
    await expect(muk).to_have_class("member writer")
    await expect(muk.locator(".member-post")).to_have_attribute("aria-pressed", "true")
    await expect(nkp.locator(".member-post")).to_have_attribute("aria-pressed", "false")
    await expect(nkp.locator(".member-pending")).to_be_visible()  # no grant of the current key yet
    assert "back online" in (await nkp.get_attribute("title") or "")
    # On a feed another centre owns, post rights are shown, not changeable here.
    await expect(theirs.locator(".member[data-office=LA-SVK] span.member-post")).to_be_visible()
    assert await theirs.locator("button.member-post").count() == 0

    await nkp.locator(".member-post").click()
    await expect(page.locator("#feeds-result")).to_have_text("#th-border: TH-NKP may post; epoch 3 (a fresh key).")
    await expect(mine.locator(".member[data-office=TH-NKP]")).to_have_class("member writer")
    await mine.locator(".member[data-office=TH-MUK] .member-post").click()
    await expect(page.locator("#feeds-result")).to_have_text("#th-border: TH-MUK may no longer post; epoch 4 (a fresh key).")
    _, headers, _ = node.posts_to("/api/feeds/th-border/writers")[0]
    assert headers["X-CSRF-Token"] == CSRF
    assert [b for _, _, b in node.posts_to("/api/feeds/th-border/writers")] == [{"add": ["TH-NKP"]}, {"remove": ["TH-MUK"]}]


async def test_write_intelligence_opens_compose_with_the_kind_and_the_feed(page, centre):
    node, base = centre
    joint = node.find_feed("th-la-border")
    assert joint is not None
    joint.update(members=["LA-SVK", "TH-MUK", "TH-TCCC"], writers=["TH-TCCC"], member_here=True)  # LA-TCCC lets it post
    await open_centre(page, base, "feeds")
    await page.locator("#feeds-body tr").nth(1).locator(".feed-intel").click()
    await page.locator("#view-compose").wait_for(state="visible")
    assert await page.input_value("#c-kind") == "strategic_intelligence"
    assert await page.input_value("#to-feed") == "th-la-border"
    # The joint feed's members are in LA too: releasability follows them.
    assert await page.input_value("#c-releasable") == "TH, LA"
    assert await page.evaluate("document.activeElement.id") == "c-title"
    await page.click(".tab[data-view=centre]")
    await page.click("#write-intel")
    assert await page.input_value("#to-feed") == "th-border"  # the feed this centre owns
    assert await page.input_value("#c-releasable") == "TH"
    await page.select_option("#c-source", "B")
    await page.select_option("#c-information", "2")
    await page.fill("#c-title", "ข่าวกรอง: เส้นทางขนยาเสพติดใหม่")
    await page.click("#compose-send")
    await page.locator("#compose-result").wait_for(state="visible")
    _, _, body = node.posts_to("/api/bulletins")[0]
    assert (body["kind"], body["feed"], body["to"], body["releasable_to"]) == ("strategic_intelligence", "th-border", [], ["TH"])


async def test_the_network_view_flags_the_silent_office_and_draws_seven_days_per_office(page, centre):
    node, base = centre
    await open_centre(page, base, "network")
    rows = page.locator("#network-body tr")
    await expect(rows).to_have_count(3)
    assert await rows.evaluate_all("els => els.map(e => [e.dataset.office, e.dataset.state])") == [
        ["TH-CKG", "never_seen"], ["TH-MUK", "online"], ["TH-NKP", "silent"]]
    await expect(page.locator("#network-summary")).to_contain_text("1 online")
    await expect(page.locator("#network-summary")).to_contain_text("1 silent")
    await expect(page.locator("#network-summary")).to_contain_text("silent after 10 min")
    silent = page.locator("#network-body tr[data-office=TH-NKP]")
    assert "net-silent" in await silent.get_attribute("class")
    await expect(silent.locator(".net-state")).to_have_text("SILENT")
    assert "No heartbeat for 1 h 1 min" in await silent.locator(".net-state").get_attribute("title")
    flags = await silent.locator(".flag").evaluate_all("els => els.map(e => [e.dataset.flag, e.textContent])")
    expiry = await local_date(page, NOW + 5 * DAY)
    assert flags == [["outbox_lag", "outbox lag 30 min"], ["unacked_flash", "2 FLASH unacknowledged"],
                     ["key_expiring", f"key expires {expiry}"]]
    await expect(silent).to_contain_text("1 h 1 min ago")
    await expect(silent.locator("td").nth(3)).to_contain_text("oldest 30 min")
    online = page.locator("#network-body tr[data-office=TH-MUK]")
    await expect(online.locator(".net-state")).to_have_text("online")
    assert await online.locator(".flag").count() == 0
    never = page.locator("#network-body tr[data-office=TH-CKG]")
    await expect(never.locator(".net-state")).to_have_text("never seen")
    await expect(never).to_contain_text("no heartbeat yet")
    assert await never.locator("svg").count() == 0

    # The chart: inline SVG, one bar group per day, its numbers in its title.
    for office, counts in (("TH-MUK", [(1, 2), (0, 0), (4, 6), (2, 3), (0, 1), (5, 5), (3, 5)]),
                           ("TH-NKP", [(2, 0), (1, 1), (0, 0), (0, 0), (3, 1), (1, 0), (0, 0)])):
        chart = page.locator(f"#network-body tr[data-office={office}] svg.volume")
        assert await chart.evaluate("e => e.namespaceURI") == "http://www.w3.org/2000/svg"
        titles = await chart.locator("g.day > title").evaluate_all("els => els.map(e => e.textContent)")
        assert len(titles) == 7
        assert [t.split(": ")[1] for t in titles] == [f"{s} sent, {r} received" for s, r in counts]
        assert titles[0].split(": ")[0].endswith(await local_date(page, NOW - NOW % DAY - 6 * DAY))
        # A bar for each side of each day that had any; the sent part above the received one.
        assert await chart.locator("rect.bar-sent").count() == sum(1 for s, _ in counts if s)
        assert await chart.locator("rect.bar-received").count() == sum(1 for _, r in counts if r)
    # One scale for every office: the busiest day (10) is the full height; TH-NKP's 4 is lower.
    heights = await page.evaluate("""() => [...document.querySelectorAll('#network-body svg.volume')].map(svg =>
        Math.max(...[...svg.querySelectorAll('g.day')].map(g =>
            [...g.querySelectorAll('rect.bar-sent, rect.bar-received')].reduce((h, r) => h + Number(r.getAttribute('height')), 0))))""")
    assert heights[0] > heights[1] > 0

    # Heartbeats on the live stream read the view again: once for a burst, not once each.
    before = node.network_requests
    node.network["offices"][2].update(state="online", flags=[], age_ms=5_000)
    node.network["counts"] = {"online": 2, "silent": 0, "never_seen": 1}
    for i in range(20):
        await node.events.put(("heartbeat", {"office": "TH-NKP", "sent_at": NOW + 61_000 + i}))
    await expect(silent.locator(".net-state")).to_have_text("online")
    assert 1 <= node.network_requests - before <= 2
    await expect(page.locator("#network-alert")).to_be_hidden()


async def test_a_forwarded_bulletin_shows_its_provenance_apart_from_the_centres_own_signature(page, stub):
    node, base = stub
    original_id = _id("original")
    redacted_text = (f"TH-TCCC's own words: a redacted forward citing bulletin {original_id}, which TH-TCCC "
                     "attributes to TH-MUK. Not TH-MUK's words: a redacted forward carries no signature of TH-MUK's "
                     "to check them against")  # fmt: skip
    unchecked_text = (f"TH-TCCC's forward of bulletin {original_id}, which TH-TCCC attributes to TH-MUK: TH-MUK's "
                      "signature is not checked yet (its key is not in this node's directory), so these are TH-TCCC's "
                      "words until it is")  # fmt: skip
    forwards = [
        (summary("fwd-whole", 8000, **{"from": "TH-TCCC"}, feed="th-border", title="รถบรรทุกยาบ้า (ส่งต่อ)"),
         provenance()),
        (summary("fwd-red", 7000, **{"from": "TH-TCCC"}, feed="th-border", title="TH-MUK: ปิดสะพาน"),
         provenance(state="redacted", verified=False, redacted=True, redacted_fields=["title", "entities[1]"],
                    reason="redacted", text=redacted_text)),
        (summary("fwd-unchecked", 6000, **{"from": "TH-TCCC"}, feed="th-border", title="ปล่อยรถ"),
         provenance(state="original_not_checked", verified=False, reason="unknown_sender", text=unchecked_text)),
        (summary("fwd-refused", 5000, **{"from": "TH-TCCC"}, feed="th-border", title="ถูกปฏิเสธ"),
         {"state": "original_refused", "verified": False, "reason": "forward_bad_signature", "text": "forged"}),
    ]  # fmt: skip
    refused_text = "TH-TCCC's words: the original it attributes to TH-MUK does not stand (forged)"
    node.items[:0] = [item for item, _ in forwards]
    for item, prov in forwards:
        shown = attribution(prov) if "forwarded_by" in prov else {
            "state": "original_refused", "words_of": "TH-TCCC", "forwarded_by": "TH-TCCC",
            "original_sender": "TH-MUK", "original_id": None, "text": refused_text}  # fmt: skip
        item.update(attribution=shown, forwarded_from="TH-MUK" if prov["verified"] else None)
        detail = node.full(item)
        detail["verification"]["provenance"] = prov
        detail["attribution"] = shown
        node.details[item["id"]] = detail
    await login(page, base)

    # The list names whose words each forward is: the office only when its signature was checked.
    items = page.locator("#feed-list li")
    await expect(items.nth(0).locator(".who")).to_have_text("TH-MUK")
    assert (await items.locator(".who").all_text_contents())[:4] == ["TH-MUK", "TH-TCCC", "TH-TCCC", "TH-TCCC"]
    assert await items.locator(".attr-mark").all_text_contents() == [
        "forwarded by TH-TCCC", "redacted forward: TH-TCCC's own words",
        "forward: TH-MUK's signature not checked yet", "forward: the original does not stand",
    ]  # fmt: skip

    await items.nth(0).locator("button").click()
    own = page.locator("#signature")
    await expect(own).to_contain_text("Signature verified — TH-TCCC, the forwarding centre")
    original = page.locator("#provenance")
    assert "prov-ok" in await original.get_attribute("class")
    await expect(original.locator("strong")).to_have_text("✔ Original signature of TH-MUK checked")
    await expect(original).to_contain_text("4be0c1d2e3f40516")
    await expect(page.locator("#attribution")).to_have_text(provenance()["text"])
    await expect(page.locator("#detail tr", has_text="Words of")).to_have_text("Words ofTH-MUK")
    await expect(original.locator("tr", has_text="Original office")).to_contain_text("TH-MUK")
    # A forward is not forwarded again, and an office node forwards nothing anyway.
    assert await page.locator("#forward-button").count() == 0

    await items.nth(1).locator("button").click()
    original = page.locator("#provenance")
    await expect(page.locator("#attribution")).to_have_text(redacted_text)
    assert "attr-redacted" in await page.locator("#attribution").get_attribute("class")
    assert "prov-redacted" in await original.get_attribute("class")
    await expect(original.locator("strong")).to_have_text(
        "✘ Redacted: TH-TCCC's own words, not TH-MUK's (no signature of TH-MUK's to check)")
    await expect(original).to_contain_text("title, entities[1]")
    await expect(original.locator("tr", has_text="Cited bulletin")).to_contain_text(original_id)
    await expect(original.locator("tr", has_text="Attributed by TH-TCCC to")).to_contain_text("TH-MUK")
    await expect(page.locator("#detail tr", has_text="Words of")).to_have_text("Words ofTH-TCCC")
    # The centre's own signature still verified: the two are told apart.
    assert "sig-ok" in await page.locator("#signature").get_attribute("class")
    await expect(page.locator("#detail")).not_to_contain_text("from TH-MUK")
    await expect(page.locator("#detail")).not_to_contain_text("Original office")

    await items.nth(2).locator("button").click()
    await expect(page.locator("#attribution")).to_have_text(unchecked_text)
    await expect(page.locator("#provenance strong")).to_have_text(
        "? TH-MUK's original signature NOT checked: TH-TCCC's word until it is")
    await expect(page.locator("#detail tr", has_text="Words of")).to_have_text("Words ofTH-TCCC")

    await items.nth(3).locator("button").click()
    await expect(page.locator("#attribution")).to_have_text(refused_text)
    assert "prov-refused" in await page.locator("#provenance").get_attribute("class")
    await expect(page.locator("#provenance strong")).to_have_text("✘ The original this forward carries does not stand")
    await expect(items.nth(3).locator(".who")).to_have_text("TH-TCCC")
    await expect(items.nth(3).locator(".attr-mark")).to_have_text("forward: the original does not stand")


async def test_markup_in_office_names_feed_names_notes_and_provenance_renders_as_text(page, centre):
    node, base = centre
    evil = summary("evil-report", 9500, **{"from": "TH-MUK"}, title=EVIL, kind=EVIL)
    node.items.append(evil)
    detail = node.full(evil)
    detail["bulletin"]["entities"] = [{"type": "person", "name": EVIL, EVIL: EVIL}]
    node.details[evil["id"]] = detail
    forwarded = summary("evil-forward", 9600, **{"from": "LA-TCCC"}, feed=EVIL, title="forwarded")
    node.items.insert(0, forwarded)
    detail = node.full(forwarded)
    detail["verification"]["provenance"] = provenance(text=EVIL, original_sender=EVIL, forwarded_by=EVIL,
                                                      redacted_fields=[EVIL], verified=False, reason=EVIL)
    shown = {"state": "redacted", "words_of": EVIL, "forwarded_by": EVIL, "original_sender": EVIL,
             "original_id": EVIL, "text": EVIL}
    forwarded["attribution"] = detail["attribution"] = shown
    node.details[forwarded["id"]] = detail
    node.triage.insert(0, triage_item(evil, assignee=EVIL, notes=1))
    node.notes[evil["id"]] = [{"author": EVIL, "at": NOW, "text": EVIL}]
    node.feed_list.append(feed(EVIL, [EVIL], owner=EVIL, owned_here=False))
    node.network["offices"][1].update(office=EVIL, name=EVIL, flags=[EVIL], state=EVIL, software=EVIL)
    await open_centre(page, base)
    row = page.locator("#triage-list li").nth(0)
    assert await row.locator(".item-title").text_content() == EVIL
    assert await row.locator(".assignee").text_content() == "@" + EVIL
    await row.locator("button").click()
    await expect(page.locator("#triage-notes .note-text")).to_have_text(EVIL)
    assert await page.locator("#triage-notes .who").text_content() == EVIL
    await page.click("#triage-forward-button")
    labels = await page.locator("#forward-form .redact-check span").evaluate_all("els => els.map(e => e.textContent)")
    assert f"{EVIL}: {EVIL}" in labels and f"name: {EVIL}" in labels
    assert await page.locator(f"#forward-feed option[value='{EVIL}']").count() == 1
    await page.click("#forward-cancel")
    await page.click(".subtab[data-centre=feeds]")
    listed = page.locator("#feeds-body tr").nth(2)
    assert await listed.locator(".feed-name").text_content() == f"#{EVIL}"
    assert await listed.locator(".member .rname").text_content() == EVIL
    await page.click(".subtab[data-centre=network]")
    office = page.locator("#network-body tr").nth(1)
    assert await office.locator(".who").text_content() == EVIL
    assert await office.locator(".net-state").text_content() == EVIL
    assert await office.locator(".flag").text_content() == EVIL.replace("_", " ")  # an unknown flag, in words
    await page.click(".tab[data-view=feed]")
    first = page.locator("#feed-list li").nth(0)
    assert await first.locator(".who").text_content() == EVIL
    assert await first.locator(".attr-mark").text_content() == f"redacted forward: {EVIL}'s own words"
    await first.locator("button").click()
    assert await page.locator("#attribution").text_content() == EVIL
    assert await page.locator("#provenance .prov-text").text_content() == EVIL
    await expect(page.locator("#provenance")).to_contain_text(f"Redacted{EVIL}")
    await expect(page.locator("#provenance strong")).to_have_text(
        f"? {EVIL}'s original signature NOT checked: {EVIL}'s word until it is")
    assert await page.locator("img").count() == 0
    assert await page.evaluate("window.__pwned") is None
    page_log(page).assert_clean(base)


async def test_the_triage_workflow_matches_the_python_one(page, stub):
    _, base = stub
    await login(page, base)
    js = await page.evaluate("import('/static/app.js').then(m => [m.TRIAGE_STATES, m.TRIAGE_MOVES])")
    assert js == [list(STATES), {k: list(v) for k, v in MOVES.items()}]


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


@pytest.mark.parametrize("size", [(1024, 600), (1280, 720)])
async def test_the_centre_views_fit_a_small_laptop_screen_without_sideways_scrolling(new_page, centre, size):
    node, base = centre
    long_title = "รายงาน: รถบรรทุกยาบ้า ทะเบียน 70-1234 ที่ด่านสะพานมิตรภาพ 2 " * 5
    for i in range(12):
        item = summary(f"many-{i}", 100 + i, **{"from": "TH-NKP"}, title=long_title)
        node.items.append(item)
        node.triage.append(triage_item(item, "in_review", assignee="a-long-analyst-name", notes=12))
    node.notes[node.items[0]["id"]] = [{"author": "niran", "at": NOW, "text": long_title}] * 6
    # A country's worth of offices, every flag raised, and feeds with many members.
    template = node.network["offices"][2]
    node.network["offices"] += [
        {**template, "office": f"TH-B{i:02d}", "name": f"Border post {i} " * 3,
         "flags": ["silent", "outbox_lag", "unacked_flash", "key_expiring", "clock_ahead"]} for i in range(40)]
    members = [f"TH-B{i:02d}" for i in range(30)]
    node.feed_list.append(feed("th-all-border-posts-of-the-country", members, unpublished=True))
    page = await new_page(viewport=size)
    fits = "document.documentElement.scrollWidth <= window.innerWidth && document.documentElement.scrollHeight <= window.innerHeight"
    await open_centre(page, base)
    await page.locator("#triage-list li").nth(0).locator("button").click()
    await page.wait_for_selector("#triage-signature")
    assert await page.evaluate(fits), f"triage overflows at {size}"
    await page.click("#triage-forward-button")
    dialog = await page.locator("#forward-dialog").bounding_box()
    assert dialog["x"] >= 0 and dialog["y"] >= 0
    assert dialog["x"] + dialog["width"] <= size[0] and dialog["y"] + dialog["height"] <= size[1]
    send = await page.locator("#forward-send").bounding_box()  # reachable: the dialog scrolls inside
    assert send is not None
    await page.click("#forward-cancel")
    for tab in ("feeds", "network"):
        await page.click(f".subtab[data-centre={tab}]")
        await page.locator(f"#centre-{tab} tbody tr").first.wait_for()
        assert await page.evaluate(fits), f"{tab} overflows at {size}"
        pane = await page.locator(f"#centre-{tab}").bounding_box()
        assert pane["x"] + pane["width"] <= size[0]
        # The table itself fits the pane: nothing hides past its right edge.
        wide = await page.evaluate(f"(() => {{ const p = document.getElementById('centre-{tab}'); return p.scrollWidth <= p.clientWidth; }})()")
        assert wide, f"the {tab} table is wider than the screen at {size}"
    box = await page.locator(".statusbar").bounding_box()
    assert box["y"] + box["height"] <= size[1]


@pytest.mark.parametrize(
    ("link", "shown", "cls"),
    [
        ("stalled", "stalled: the server does not answer", "dot stalled"),
        ("credentials_refused", "credentials refused: ask the operator", "dot down"),
        ("disconnected", "disconnected", "dot down"),
    ],
)
async def test_the_status_bar_says_a_frozen_server_or_refused_credentials_not_connected(page, stub, link, shown, cls):
    node, base = stub
    node.nats = link
    await login(page, base)
    await expect(page.locator("#st-nats")).to_have_text(shown)
    assert await page.locator("#st-nats").get_attribute("class") == cls


async def test_write_is_offered_only_on_feeds_this_centre_can_post_to(page, centre):
    """A joint feed another centre owns, where this centre is no writer or lacks the key,
    offers no Write (its bulletin could never be sealed); its own feed and a joint feed it
    may post to with the key held do."""
    node, base = centre
    node.feed_list = [
        feed("th-border", ["TH-MUK", "TH-NKP"], epoch=2),
        feed("la-only", ["LA-SVK"], owner="LA-TCCC", owned_here=False, have_key=False, epoch=4),
        feed("th-la-border", ["LA-SVK", "TH-MUK", "TH-TCCC"], owner="LA-TCCC", owned_here=False, member_here=True,
             writers=["TH-TCCC"], epoch=5),
        feed("th-la-read", ["LA-SVK", "TH-TCCC"], owner="LA-TCCC", owned_here=False, member_here=True, epoch=2),
    ]
    await open_centre(page, base, "feeds")
    rows = page.locator("#feeds-body tr")
    await expect(rows).to_have_count(4)
    writable = await page.locator("#feeds-body tr:has(.feed-intel)").evaluate_all("els => els.map(e => e.dataset.feed)")
    assert writable == ["th-border", "th-la-border"]
    await expect(page.locator("#feeds-body tr[data-feed=la-only] .bad-text")).to_have_count(1)  # no key: ✘


async def test_a_joint_feed_shows_what_its_owner_did_with_each_office_of_the_last_request(page, centre):
    node, base = centre
    joint = node.find_feed("th-la-border")
    assert joint is not None
    joint.update(requests=[{
        "id": "req2", "at": NOW, "owner": "LA-TCCC", "add": ["TH-MUK", "TH-NKP", "TH-XYZ"], "remove": [],
        "answered_at": NOW + 5, "epoch": 6, "outcomes": [
            {"office": "TH-MUK", "change": "add", "result": "already_member", "reason": None},
            {"office": "TH-XYZ", "change": "add", "result": "refused",
             "reason": "cannot grant feed th-la-border to TH-XYZ: no current keys in the directory"},
            {"office": "TH-NKP", "change": "add", "result": "added", "reason": None}]}])  # fmt: skip
    await open_centre(page, base, "feeds")
    outcome = page.locator("#feeds-body tr[data-feed=th-la-border] .feed-request")
    await expect(outcome).to_contain_text("Last request to LA-TCCC:")
    await expect(outcome.locator("li[data-office=TH-MUK]")).to_have_text("TH-MUK (+): already a member")
    await expect(outcome.locator("li[data-office=TH-NKP]")).to_have_text("TH-NKP (+): added")
    await expect(outcome.locator("li[data-office=TH-XYZ]")).to_have_text(
        "TH-XYZ (+): refused — cannot grant feed th-la-border to TH-XYZ: no current keys in the directory")
    await expect(outcome.locator("li[data-office=TH-XYZ]")).to_have_class("bad-text")
    joint.update(requests=[{"id": "req3", "at": NOW, "owner": "LA-TCCC", "add": ["TH-NKP"], "remove": [],
                            "answered_at": None, "epoch": None, "outcomes": []}])  # fmt: skip
    await page.reload()
    await open_centre(page, base, "feeds")
    await expect(page.locator("#feeds-body tr[data-feed=th-la-border] .feed-request")).to_have_text(
        "Last request to LA-TCCC: no answer yet")
