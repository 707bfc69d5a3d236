"""A stand-in MISP server for the bridge tests: a local aiohttp server on 127.0.0.1 that
answers PyMISP's requests with recorded MISP replies (``tests/data/misp-server/``, whose
README says where each comes from). No MISP server can run here; PyMISP's REST client,
requests and the HTTP exchange are real.

It keeps the little state the bridge's exchange needs to be faithful: which event uuids
were added (``HEAD /events/view/<uuid>`` answers 200 for those, 404 otherwise, as MISP
does), and every request it got, for the tests to inspect.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymisp
from aiohttp import web

REPLIES = Path(__file__).resolve().parent / "data" / "misp-server"
DESCRIBE_TYPES = Path(pymisp.__file__).resolve().parent / "data" / "describeTypes.json"
KEY = "mispkey0000000000000000000000000000000001"  # a test key, 40 characters as MISP's are


def reply(name: str) -> Any:
    return json.loads((REPLIES / name).read_text(encoding="utf-8"))


def search_reply() -> Any:
    """``POST /events/restSearch``'s answer: MISP's envelope around PyMISP's recorded event."""
    event = json.loads((REPLIES.parent / "pymisp" / "existing_event.json").read_text(encoding="utf-8"))
    return {"response": [{"Event": event}]}


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    authorization: str | None


@dataclass
class MispReplay:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    events: dict[str, Any] = field(default_factory=dict)  # uuid -> the event added
    search_reply: Any = field(default_factory=lambda: search_reply())

    def posted(self, path: str) -> list[Any]:
        return [r.body for r in self.requests if r.method == "POST" and r.path == path]


def _app(state: MispReplay) -> web.Application:
    @web.middleware
    async def record_and_authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        auth = request.headers.get("Authorization")
        state.requests.append(Recorded(request.method, request.path, body, auth))
        if auth != KEY:
            return web.json_response(reply("error_403.json"), status=403)
        return await handler(request)

    async def get_version(request: web.Request) -> web.Response:
        return web.json_response(reply("servers_getVersion.json"))

    async def get_pymisp_version(request: web.Request) -> web.Response:
        return web.json_response(reply("servers_getPyMISPVersion.json"))

    async def user_me(request: web.Request) -> web.Response:
        return web.json_response(reply("users_view_me.json"))

    async def describe_types(request: web.Request) -> web.Response:
        # MISP's reply to this request as PyMISP records it in its own package data.
        return web.json_response(json.loads(DESCRIBE_TYPES.read_text(encoding="utf-8")))

    async def not_found(request: web.Request) -> web.Response:
        return web.json_response(reply("error_404.json"), status=404)

    async def event_view(request: web.Request) -> web.Response:
        if request.method == "HEAD":
            return web.Response(status=200 if request.match_info["id"] in state.events else 404)
        return await not_found(request)

    async def event_add(request: web.Request) -> web.Response:
        event = (await request.json()).get("Event") or await request.json()
        state.events[event["uuid"]] = event
        return web.json_response(reply("events_add.json"))

    async def rest_search(request: web.Request) -> web.Response:
        return web.json_response(state.search_reply)

    app = web.Application(middlewares=[record_and_authenticate])
    app.router.add_get("/servers/getVersion", get_version)
    app.router.add_get("/servers/getPyMISPVersion.json", get_pymisp_version)
    app.router.add_get("/users/view/me", user_me)
    app.router.add_get("/attributes/describeTypes.json", describe_types)
    app.router.add_route("*", "/events/view/{id}", event_view)
    app.router.add_post("/events/add", event_add)
    app.router.add_post("/events/restSearch", rest_search)
    return app


@asynccontextmanager
async def misp_replay() -> AsyncIterator[MispReplay]:
    """A running replay server on a free loopback port."""
    state = MispReplay()
    runner = web.AppRunner(_app(state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()
