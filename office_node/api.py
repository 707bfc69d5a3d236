"""The node's HTTP API and web page: a thin aiohttp layer over ``OfficeNode`` and its
jobs (``node.actions``, what officers do; ``node.reads``, what they read; ``node.centre``,
a centre's work): each handler translates HTTP to one of their methods.

Routes are listed once, in ``ROUTES``, with the role each needs; the OpenAPI document
(``office_node/openapi.py``, served at ``/api/openapi.json``) is checked against this
table by the tests, so the two cannot drift. The page's contract is at the top of
``office_node/web/app.js``.

Middlewares, outermost first:

1. ``security_headers``: a Content-Security-Policy that forbids inline script and any
   request off the node, no sniffing, no framing, no referrer, and ``no-store`` on API
   answers (bulletins must not linger in a shared browser's cache);
2. ``errors``: every ``BloError`` becomes ``{"error": {"code", "message", "field"?}}``
   with a status from its kind; anything unexpected is logged and answered 500 without
   details (no stack traces to the client);
3. authentication (``office_node/auth.py``): nothing but health, the login page and its
   static files answers without a session or a bearer token.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import BodyPartReader, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bus import errors
from office_node import i18n
from office_node.auth import PRINCIPAL_KEY, AuthSettings, error_response, require_role, setup_auth
from office_node.errors import AuthError, http_status
from office_node.node import OfficeNode
from office_node.openapi import Route, document

log = logging.getLogger("blo.api")
WEB = Path(__file__).resolve().parent / "web"
MAX_BODY_BYTES = 8 * 1024 * 1024  # a watch-list import is the largest body
NODE_KEY = web.AppKey("blo_node", OfficeNode)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def json_response(data: Any, *, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def status_of(exc: errors.BloError) -> int:
    """The HTTP status for a refusal (``office_node.errors.http_status``)."""
    return http_status(exc)


def refusal(exc: errors.BloError) -> web.Response:
    if isinstance(exc, AuthError | errors.ValidationError | errors.NotFound):
        return error_response(exc)  # auth.py's answer, with its headers (WWW-Authenticate, Retry-After)
    return json_response({"error": {"code": exc.reason, "message": exc.message}}, status=status_of(exc))


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith("/api/") or request.path in ("/session", "/login", "/metrics"):
        h.setdefault("Cache-Control", "no-store")
    if isinstance(response, web.HTTPException):
        raise response
    return response


@web.middleware
async def error_answers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.BloError as exc:
        return refusal(exc)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return json_response(
            {"error": {"code": "internal", "message": "the node failed on this request; its log has the details"}},
            status=500,
        )


async def read_json(request: web.Request) -> Any:
    """The request's JSON body, or ValidationError naming what is wrong with it."""
    if request.content_type != "application/json":
        raise errors.ValidationError("Content-Type", "send the body as application/json")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise errors.ValidationError("", f"the body is over {MAX_BODY_BYTES // 1024} KiB") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.ValidationError("", f"the request body is not valid JSON ({exc})") from None
    except RecursionError:
        raise errors.ValidationError("", "the request body is nested too deeply") from None


# -- the routes -------------------------------------------------------------------------




ROUTES: tuple[Route, ...] = (
    Route("GET", "/health", None, "health", "Liveness and link state (public)"),
    Route("GET", "/api/me", "officer", "me", "The signed-in officer, this node, and the CSRF token"),
    Route("POST", "/api/me", "officer", "set_me", "The officer's own settings: the language of the page and of messages"),
    Route("GET", "/api/bulletins", "officer", "list_bulletins", "Received and sent bulletins, newest first, filtered"),
    Route("POST", "/api/bulletins", "officer", "post_bulletin", "Post a bulletin: sealed, queued in the outbox"),
    Route(
        "GET", "/api/bulletins/{id}", "officer", "get_bulletin",
        "One bulletin with verification and receipts; with ?format=misp|stix, the bulletin as a MISP event or STIX 2.1 bundle",
    ),
    Route("GET", "/api/export", "officer", "export", "Bulletins of a time range or feed as one MISP or STIX 2.1 document"),
    Route("GET", "/api/bulletins/{id}/attachments/{n}", "officer", "attachment", "Attachment n of a bulletin: the file, as a download"),
    Route(
        "GET", "/api/bulletins/{id}/attachments/{n}/thumbnail", "officer", "attachment_thumbnail",
        "An image attachment as a small JPEG the node re-encoded",
    ),
    Route(
        "GET", "/api/bulletins/{id}/attachments/{n}/view", "officer", "attachment_view",
        "An image attachment as a larger JPEG the node re-encoded, for the viewer",
    ),
    Route("POST", "/api/bulletins/{id}/read", "officer", "mark_read", "Mark read; the first read sends a receipt"),
    Route("POST", "/api/bulletins/{id}/ack", "officer", "acknowledge", "Acknowledge a FLASH received: a signed receipt to its sender"),
    Route("POST", "/api/bulletins/{id}/reply", "officer", "reply", "Reply to the sender of a bulletin"),
    Route("GET", "/api/search", "officer", "search", "Full-text search (Thai, Lao and any script; document numbers)"),
    Route("GET", "/api/outbox", "officer", "outbox", "Bulletins sent from here and each recipient's state"),
    Route("GET", "/api/directory", "officer", "directory", "The verified directory of offices and centres"),
    Route("GET", "/api/feeds", "officer", "feeds", "Feeds this node reads and their current epochs"),
    Route("POST", "/api/check", "officer", "check", "Border check: is this document, person, plate or phone flagged?"),
    Route("GET", "/api/hits", "officer", "hits", "Recent lookout hits: new bulletins naming a lookout's subject"),
    Route("POST", "/api/watchlists", "supervisor", "import_watchlist", "Import a watch list (CSV) as lookouts"),
    Route("POST", "/api/bulletins/{id}/forward", "supervisor", "forward", "Centre: forward to a feed, provenance kept"),
    Route("GET", "/api/triage", "officer", "triage", "Centre: the triage queue of office bulletins"),
    Route("GET", "/api/triage/{id}", "officer", "triage_item", "Centre: one triage item with its notes"),
    Route("POST", "/api/triage/{id}", "officer", "triage_update", "Centre: move a bulletin through triage, add a note"),
    Route("POST", "/api/feeds", "supervisor", "create_feed", "Centre: create a feed with its members"),
    Route("POST", "/api/feeds/{name}/members", "supervisor", "feed_members", "Centre: add and remove feed members"),
    Route("POST", "/api/feeds/{name}/writers", "supervisor", "feed_writers", "Centre: give or take post rights"),
    Route("POST", "/api/feeds/{name}/rotate", "supervisor", "rotate_feed", "Centre: start a new epoch (fresh key)"),
    Route("GET", "/api/network", "officer", "network", "Centre: every office of the country, online or silent"),
    Route("POST", "/api/imports", "supervisor", "import_document", "Centre: a MISP or STIX file becomes drafts in triage"),
    Route("GET", "/api/drafts", "officer", "drafts", "Centre: imported drafts awaiting review, newest first"),
    Route("GET", "/api/drafts/{id}", "officer", "draft", "Centre: one draft with its fields, handling, warnings and notes"),
    Route("POST", "/api/drafts/{id}", "officer", "draft_update", "Centre: move, edit or assign a draft, add a note"),
    Route("POST", "/api/drafts/{id}/send", "supervisor", "send_draft", "Centre: seal and send a reviewed draft"),
    Route("POST", "/api/misp/sync", "supervisor", "misp_sync", "Centre: run the MISP bridge now (push, then pull)"),
    Route("GET", "/api/quarantine", "supervisor", "quarantine", "Messages that failed to open, with reasons"),
    Route("GET", "/api/audit", "admin", "audit", "The audit log, newest first, and whether its chain verifies"),
    Route(
        "GET", "/api/events", "officer", "events",
        "Live stream (server-sent events): bulletin, state, read, acknowledged, escalation, hit, triage, feed, heartbeat",
    ),
    Route("GET", "/api/openapi.json", "officer", "openapi", "This API's OpenAPI 3.1 document"),
    Route("GET", "/metrics", "officer", "metrics", "Prometheus metrics"),
)


def _node(request: web.Request) -> OfficeNode:
    return request.app[NODE_KEY]


async def health(request: web.Request) -> web.Response:
    return json_response(_node(request).health())


async def me(request: web.Request) -> web.Response:
    return json_response(_node(request).reads.me(require_role(request, "officer")))


async def set_me(request: web.Request) -> web.Response:
    """Body ``{"language": tag | null}`` (office_node/i18n.py LANGUAGES; null: the browser's)."""
    principal = require_role(request, "officer")
    data = await read_json(request)
    if not isinstance(data, dict) or set(data) != {"language"}:
        raise errors.ValidationError("", 'send {"language": ...} (a language tag, or null for the browser\'s)')
    node = _node(request)
    user = node.accounts.set_language(principal.username, data["language"])
    return json_response(node.reads.me(dataclasses.replace(principal, user=user)))


def request_language(request: web.Request) -> str:
    """The language to answer in: the officer's saved one, else the browser's."""
    principal = request.get(PRINCIPAL_KEY)
    saved = principal.user.language if principal is not None else None
    return saved or i18n.negotiate(request.headers.get("Accept-Language"))


@web.middleware
async def localised_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An error answer's message in the caller's language (office_node/i18n.py); the
    ``code`` and ``field`` stay as they are, for programs."""
    response = await handler(request)
    if response.status < 400 or not isinstance(response, web.Response) or response.content_type != "application/json":
        return response
    language = request_language(request)
    if i18n.catalogue_of(language) == i18n.DEFAULT:
        return response
    try:
        data = json.loads(response.body or b"")
        data["error"]["message"] = i18n.localise(str(data["error"]["message"]), language)
    except (ValueError, TypeError, KeyError):
        return response
    response.body = json.dumps(data, ensure_ascii=False).encode("utf-8")
    return response


async def page_catalogue(request: web.Request) -> web.Response:
    """GET /static/i18n/{language}.json: the page's texts in a language (public, like the page)."""
    language = request.match_info["language"]
    if language not in i18n.LANGUAGES:
        raise web.HTTPNotFound()
    response = json_response(i18n.page_catalogue(language))
    response.headers["Cache-Control"] = "no-cache"
    return response


async def list_bulletins(request: web.Request) -> web.Response:
    principal = require_role(request, "officer")
    return json_response(_node(request).reads.list_bulletins(principal, dict(request.query)))


async def post_bulletin(request: web.Request) -> web.Response:
    principal = require_role(request, "officer")
    if request.content_type == "multipart/form-data":
        data = await read_multipart_post(request)
    else:
        data = await read_json(request)
    return json_response(await _node(request).actions.post(principal, data), status=201)


async def read_multipart_post(request: web.Request) -> Any:
    """A post with files: a ``bulletin`` part (the JSON of a post) first, then ``file``
    parts, each sealed into the spool as it streams in (schemas/ATTACHMENTS.md 4): the
    bulletin's ``attachments`` are their entries, in order."""
    node = _node(request)
    reader = await request.multipart()
    data: Any = None
    entries: list[dict[str, Any]] = []
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise errors.ValidationError("", "nested multipart bodies are not accepted")
        if part.name == "bulletin" and data is None:
            raw = await part.read(decode=True)
            if len(raw) > MAX_BODY_BYTES:
                raise errors.ValidationError("bulletin", f"is over {MAX_BODY_BYTES // 1024} KiB")
            try:
                data = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise errors.ValidationError("bulletin", f"is not valid JSON ({exc})") from None
        elif part.name == "file":
            entries.append(await node.attachments.seal_upload(part.filename or "", part.read_chunk))
            node.attachments.limits.check_bulletin([e["size"] for e in entries])
        else:
            raise errors.ValidationError(str(part.name)[:64], "send a 'bulletin' part, then 'file' parts")
    if not isinstance(data, dict):
        raise errors.ValidationError("bulletin", "send the post's fields as a JSON part named bulletin")
    if "attachments" in data:
        raise errors.ValidationError("attachments", "is filled in from the files sent; leave it out")
    return {**data, "attachments": entries} if entries else data


async def get_bulletin(request: web.Request) -> web.Response:
    principal = require_role(request, "officer")
    if "format" in request.query:
        from office_node.exchange.service import export_bulletin

        return json_response(export_bulletin(_node(request), principal, request.match_info["id"], dict(request.query)))
    return json_response(_node(request).reads.view(principal, request.match_info["id"]))


async def export(request: web.Request) -> web.Response:
    principal = require_role(request, "officer")
    from office_node.exchange.service import export_range

    return json_response(export_range(_node(request), principal, dict(request.query)))


async def attachment(request: web.Request) -> web.StreamResponse:
    """The file, decrypted from the spool chunk by chunk: always as a download, never as
    something the browser renders (ATTACHMENTS.md 8)."""
    principal = require_role(request, "officer")
    node = _node(request)
    _, entry = node.reads.attachment(principal, request.match_info["id"], request.match_info["n"])
    chunks = node.attachments.stream(entry)
    first = await anext(chunks, b"")  # refuses here (409) if the file is not complete yet
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(entry.name, safe='')}",
            "Content-Length": str(entry.size),
        }
    )
    await response.prepare(request)
    await response.write(first)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


async def _image(request: web.Request, *, thumbnail: bool) -> web.Response:
    principal = require_role(request, "officer")
    node = _node(request)
    _, entry = node.reads.attachment(principal, request.match_info["id"], request.match_info["n"])
    body = await node.attachments.image(entry, thumbnail=thumbnail)
    return web.Response(body=body, headers={"Content-Type": "image/jpeg"})


async def attachment_thumbnail(request: web.Request) -> web.Response:
    return await _image(request, thumbnail=True)


async def attachment_view(request: web.Request) -> web.Response:
    return await _image(request, thumbnail=False)


async def mark_read(request: web.Request) -> web.Response:
    principal = require_role(request, "officer")
    return json_response(await _node(request).actions.mark_read(principal, request.match_info["id"]))


async def acknowledge(request: web.Request) -> web.Response:
    principal = require_role(request, "officer")
    return json_response(await _node(request).actions.acknowledge(principal, request.match_info["id"]))


async def reply(request: web.Request) -> web.Response:
    principal = require_role(request, "officer")
    body = await read_json(request)
    return json_response(await _node(request).actions.reply(principal, request.match_info["id"], body), status=201)


async def search(request: web.Request) -> web.Response:
    principal = require_role(request, "officer")
    return json_response(_node(request).reads.search(principal, dict(request.query)))


async def outbox(request: web.Request) -> web.Response:
    require_role(request, "officer")
    return json_response(_node(request).reads.outbox())


async def directory(request: web.Request) -> web.Response:
    require_role(request, "officer")
    return json_response(_node(request).reads.directory_view())


async def feeds(request: web.Request) -> web.Response:
    require_role(request, "officer")
    return json_response(_node(request).reads.feeds_view())


async def check(request: web.Request) -> web.Response:
    principal = require_role(request, "officer")
    return json_response(_node(request).actions.check(principal, await read_json(request)))


async def hits(request: web.Request) -> web.Response:
    require_role(request, "officer")
    return json_response(_node(request).reads.hits_view())


async def import_watchlist(request: web.Request) -> web.Response:
    principal = require_role(request, "supervisor")
    return json_response(await _node(request).actions.import_watchlist(principal, await read_json(request)), status=201)


async def forward(request: web.Request) -> web.Response:
    principal = require_role(request, "supervisor")
    body = await read_json(request)
    return json_response(await _node(request).centre.forward(principal, request.match_info["id"], body), status=201)


async def triage(request: web.Request) -> web.Response:
    require_role(request, "officer")
    return json_response(_node(request).centre.triage_view(dict(request.query)))


async def triage_item(request: web.Request) -> web.Response:
    require_role(request, "officer")
    return json_response(_node(request).centre.triage_detail(request.match_info["id"]))


async def triage_update(request: web.Request) -> web.Response:
    principal = require_role(request, "officer")
    body = await read_json(request)
    return json_response(_node(request).centre.triage_update(principal, request.match_info["id"], body))


async def create_feed(request: web.Request) -> web.Response:
    principal = require_role(request, "supervisor")
    return json_response(await _node(request).centre.create_feed(principal, await read_json(request)), status=201)


async def feed_members(request: web.Request) -> web.Response:
    principal = require_role(request, "supervisor")
    body = await read_json(request)
    return json_response(await _node(request).centre.change_feed(principal, request.match_info["name"], body))


async def feed_writers(request: web.Request) -> web.Response:
    principal = require_role(request, "supervisor")
    body = await read_json(request)
    return json_response(await _node(request).centre.change_writers(principal, request.match_info["name"], body))


async def rotate_feed(request: web.Request) -> web.Response:
    principal = require_role(request, "supervisor")
    return json_response(await _node(request).centre.rotate_feed(principal, request.match_info["name"]))


async def network(request: web.Request) -> web.Response:
    require_role(request, "officer")
    return json_response(_node(request).centre.network_view())


async def import_document(request: web.Request) -> web.Response:
    principal = require_role(request, "supervisor")
    return json_response(_node(request).centre.import_document(principal, await read_json(request)), status=201)


async def drafts(request: web.Request) -> web.Response:
    require_role(request, "officer")
    return json_response(_node(request).centre.drafts_view(dict(request.query)))


async def draft(request: web.Request) -> web.Response:
    require_role(request, "officer")
    return json_response(_node(request).centre.draft_detail(request.match_info["id"]))


async def draft_update(request: web.Request) -> web.Response:
    principal = require_role(request, "officer")
    body = await read_json(request)
    return json_response(_node(request).centre.draft_update(principal, request.match_info["id"], body))


async def send_draft(request: web.Request) -> web.Response:
    principal = require_role(request, "supervisor")
    body = await read_json(request)
    return json_response(await _node(request).centre.send_draft(principal, request.match_info["id"], body), status=201)


async def misp_sync(request: web.Request) -> web.Response:
    principal = require_role(request, "supervisor")
    return json_response(await _node(request).centre.misp_sync(principal))


async def quarantine(request: web.Request) -> web.Response:
    require_role(request, "supervisor")
    return json_response(_node(request).reads.quarantine_view())


async def audit(request: web.Request) -> web.Response:
    require_role(request, "admin")
    node = _node(request)
    report = node.audit.verify()
    limit = request.query.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise errors.ValidationError("limit", "must be a whole number from 1 to 1000")
    entries = node.audit.entries(limit=int(limit))
    return json_response(
        {
            "ok": report.ok,
            "entries": report.entries,
            "head_hash": report.head_hash,
            "problem": str(report.problem) if report.problem else None,
            "items": [e.to_json() for e in entries],
        }
    )


async def events(request: web.Request) -> web.StreamResponse:
    require_role(request, "officer")
    return await _node(request).live.stream(request)


async def openapi(request: web.Request) -> web.Response:
    require_role(request, "officer")
    return json_response(document(ROUTES))


async def metrics(request: web.Request) -> web.Response:
    require_role(request, "officer")
    node = _node(request)
    node.refresh_gauges()
    body = generate_latest(node.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB / "index.html")


async def login_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB / "login.html")


HANDLERS: dict[str, Handler] = {
    name: globals()[name]
    for name in (
        "health", "me", "set_me", "list_bulletins", "post_bulletin", "get_bulletin", "attachment", "attachment_thumbnail",
        "attachment_view", "mark_read", "acknowledge", "reply", "search",
        "outbox", "directory", "feeds", "check", "hits", "import_watchlist", "forward", "triage", "triage_item",
        "triage_update", "create_feed", "feed_members", "feed_writers", "rotate_feed", "network", "quarantine", "audit", "events",
        "openapi", "metrics", "export", "import_document", "drafts", "draft", "draft_update", "send_draft", "misp_sync",
    )
}  # fmt: skip


def build_app(node: OfficeNode, *, extra_routes: Callable[[web.Application], None] | None = None) -> web.Application:
    """The aiohttp application serving ``node``'s API and page."""
    app = web.Application(middlewares=[security_headers, localised_errors, error_answers], client_max_size=MAX_BODY_BYTES)
    app[NODE_KEY] = node
    settings = AuthSettings(secure_cookies=node.config.http.secure_cookies)
    setup_auth(app, node.accounts, node.audit, settings, clock=node.clock)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, HANDLERS[route.name], name=route.name)
    app.router.add_get("/", index_page)
    app.router.add_get("/login", login_page)
    app.router.add_get("/static/i18n/{language}.json", page_catalogue)
    app.router.add_static("/static/", WEB, follow_symlinks=False)
    if extra_routes is not None:
        extra_routes(app)
    return app
