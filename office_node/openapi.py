"""The OpenAPI 3.1 document of the node's HTTP API, built from ``api.ROUTES``.

Built from the route table, not written beside it, so a route cannot exist without
being documented (``tests/test_api.py`` also checks the reverse). The bulletin's own
fields are specified by ``schemas/bulletin.schema.json``; here they are summarised.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from bus import ENTITY_TYPES, FEED_NAME_PATTERN, KINDS, PRECEDENCES, TLP_LABELS
from office_node.node import VERSION


@dataclass(frozen=True)
class Route:
    """One route of the HTTP API (``office_node.api.ROUTES`` lists them all)."""

    method: str
    path: str
    role: str | None  # None: public (no authentication)
    name: str
    summary: str

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "stable reason code, e.g. invalid, not_found, forbidden"},
                "message": {"type": "string", "description": "what went wrong and what to do, for a person"},
                "field": {"type": "string", "description": "the request field at fault (validation errors)"},
            },
        }
    },
}

_POST = {
    "type": "object",
    "description": "A bulletin in its JSON form (schemas/bulletin.schema.json) without id, from and created, "
    "which the node sets, plus its recipients. Unknown fields are refused by name.",
    "required": ["precedence", "kind", "tlp", "releasable_to", "grading", "title", "body"],
    "properties": {
        "to": {"type": "array", "items": {"type": "string", "pattern": "^[A-Z]{2}-[A-Z0-9]{2,12}$"}},
        "feed": {"type": ["string", "null"], "pattern": FEED_NAME_PATTERN},
        "precedence": {"enum": list(PRECEDENCES)},
        "kind": {"enum": list(KINDS)},
        "tlp": {"enum": list(TLP_LABELS)},
        "releasable_to": {"type": "array", "items": {"type": "string", "pattern": "^[A-Z]{2}$"}},
        "grading": {"type": "string", "pattern": "^[A-F][1-6]$", "description": "Admiralty: source A-F, information 1-6"},
        "title": {"type": "string"},
        "body": {"type": "string"},
        "expires": {"type": ["integer", "null"], "description": "ms since the epoch; lookouts stop matching then"},
        "in_reply_to": {"type": ["string", "null"]},
        "entities": {"type": "array", "items": {"type": "object", "properties": {"type": {"enum": list(ENTITY_TYPES)}}}},
        "attachments": {"type": "array", "items": {"type": "object"}},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}

_CHECK = {
    "type": "object",
    "description": "The entity to check, as in a bulletin: document (number, country), person (name, dob, "
    "nationality), vehicle (plate, country) or phone (number, and country: the country of a number written "
    "without +, default this office's). Digits of any script are read as ASCII digits.",
    "required": ["type"],
    "properties": {"type": {"enum": ["document", "person", "vehicle", "phone", "vessel", "organisation"]}},
}
_WATCHLIST = {
    "type": "object",
    "required": ["csv"],
    "description": "A watch list (columns in schemas/WATCHLIST.md) and where its lookouts go "
    "(default: every office of this node's country).",
    "properties": {
        "csv": {"type": "string"},
        "to": {"type": "array", "items": {"type": "string"}},
        "feed": {"type": ["string", "null"]},
        "releasable_to": {"type": "array", "items": {"type": "string"}},
        "tlp": {"enum": list(TLP_LABELS)},
        "precedence": {"enum": list(PRECEDENCES)},
        "grading": {"type": "string"},
        "default_country": {"type": "string", "description": "Country of phones written without + in rows "
                            "that name none (default: this node's country)."},
    },
}

_FORWARD = {
    "type": "object",
    "required": ["feed"],
    "description": "Forward a received office bulletin to a feed. The original's signature travels with it "
    "unless fields are redacted (then the forward says so). Precedence, TLP and releasability may only be kept "
    "or tightened.",
    "properties": {
        "feed": {"type": "string"},
        "redact": {"type": "array", "items": {"type": "string"}, "description": "field paths, e.g. entities[0].name"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "releasable_to": {"type": "array", "items": {"type": "string"}},
        "tlp": {"enum": list(TLP_LABELS)},
        "precedence": {"enum": list(PRECEDENCES)},
    },
}
_OFFICES = {"type": "array", "items": {"type": "string", "pattern": "^[A-Z]{2}-[A-Z0-9]{2,12}$"}}
_FEED = {
    "type": "object",
    "required": ["name", "members"],
    "properties": {
        "name": {"type": "string", "pattern": FEED_NAME_PATTERN},
        "members": _OFFICES,
        "writers": {**_OFFICES, "description": "members that may post to the feed (the owning centre always may)"},
        "scope": {"type": "array", "items": {"type": "string"}, "description": "countries members may come from"},
    },
}
_MEMBERS = {
    "type": "object",
    "description": "One new epoch (a fresh key) with these members added and removed. On a feed another centre "
    "owns, the change is sent to it as a membership request.",
    "properties": {
        "add": _OFFICES,
        "remove": _OFFICES,
        "post": {"type": "boolean", "description": "the added members may post too (default false)"},
    },
}
_WRITERS = {
    "type": "object",
    "description": "One new epoch (writers_changed) in which these members may, or may no longer, post. "
    "Only on a feed this centre owns.",
    "properties": {"add": _OFFICES, "remove": _OFFICES},
}
_TRIAGE = {
    "type": "object",
    "properties": {
        "state": {"enum": ["new", "in_review", "disseminated", "closed"]},
        "note": {"type": "string"},
        "assignee": {"type": ["string", "null"], "description": "a username; null: nobody"},
    },
}

_IMPORT = {
    "type": "object",
    "required": ["text"],
    "description": "A MISP event file (one event, a list, or a REST search answer) or a STIX 2.1 bundle, as text. "
    "Each event or report becomes a draft in the triage queue; nothing is sent (schemas/MAPPING.md).",
    "properties": {"text": {"type": "string"}, "name": {"type": "string", "description": "the file's name, for the audit log"}},
}
_DRAFT_UPDATE = {
    "type": "object",
    "properties": {
        "state": {"enum": ["new", "in_review", "closed"]},
        "fields": {"type": "object", "description": "bulletin fields to change, as in a post (no to, feed)"},
        "note": {"type": "string"},
        "assignee": {"type": ["string", "null"]},
    },
}
_DRAFT_SEND = {
    **_POST,
    "required": [],
    "description": "Where the draft goes (to, feed) and any field to change. TLP may only be kept or tightened and "
    "releasability kept or narrowed from what the source allows; a TLP:RED source is never sent.",
}

_BODIES = {
    "import_document": _IMPORT,
    "draft_update": _DRAFT_UPDATE,
    "send_draft": _DRAFT_SEND,
    "forward": _FORWARD,
    "create_feed": _FEED,
    "feed_members": _MEMBERS,
    "feed_writers": _WRITERS,
    "triage_update": _TRIAGE,
    "check": _CHECK,
    "import_watchlist": _WATCHLIST,
    "post_bulletin": _POST,
    "reply": {**_POST, "description": "As a post, without to, feed and in_reply_to: they come from the original."},
}

def _text_params(*described: tuple[str, str]) -> list[dict[str, Any]]:
    """Optional text query parameters, each ``(name, description)``."""
    return [
        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}, "description": d}
        for n, d in described
    ]


_PARAMS: dict[str, list[dict[str, Any]]] = {
    "list_bulletins": _text_params(
        ("kind", "comma-separated kinds"),
        ("precedence", "comma-separated precedences"),
        ("feed", "feed name"),
        ("sender", "office id"),
        ("direction", "sent or received"),
        ("since", "ms, inclusive"),
        ("until", "ms, exclusive"),
        ("unread", "true: received and not read here"),
        ("in_reply_to", "bulletin id: the thread"),
        ("q", "search text"),
        ("limit", "1-500, default 50"),
        ("cursor", "the `next` of the previous page"),
    ),
    "search": [
        {"name": "q", "in": "query", "required": True, "schema": {"type": "string", "maxLength": 200}},
        {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}},
    ],
    "audit": [{"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}}],
    "get_bulletin": [
        {"name": "format", "in": "query", "required": False, "schema": {"enum": ["misp", "stix"]},
         "description": "export: a MISP event ({\"Event\": ...}) or a STIX 2.1 bundle instead of the detail view"},
        {"name": "for", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "export: the office ids it is for, comma-separated; TLP:RED exports only for its addressees"},
    ],
    "export": [
        {"name": "format", "in": "query", "required": True, "schema": {"enum": ["misp", "stix"]}},
        *_text_params(
            ("for", "office ids it is for, comma-separated; TLP:RED bulletins are withheld unless all are addressees"),
            ("since", "ms, inclusive (when the bulletin reached this node)"),
            ("until", "ms, exclusive"),
            ("feed", "feed name"),
        ),
    ],
    "drafts": _text_params(
        ("state", "new, in_review, sent or closed (omitted: all)"),
        ("limit", "1-200, default 100"),
        ("cursor", "the `next` of the previous page"),
    ),
    "triage": _text_params(
        ("state", "new, in_review, disseminated or closed (omitted: all)"),
        ("limit", "1-200, default 100"),
        ("cursor", "the `next` of the previous page"),
    ),
}


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
            "400": {"description": "invalid request", "content": {"application/json": {"schema": _ERROR}}},
        },
    }
    if route.method == "POST":
        op["responses"]["201"] = {"description": "created", "content": {"application/json": {"schema": {"type": "object"}}}}
        op["responses"]["403"] = {"description": "role or CSRF refused", "content": {"application/json": {"schema": _ERROR}}}
        op["responses"]["422"] = {
            "description": "refused by the directory or the handling rules",
            "content": {"application/json": {"schema": _ERROR}},
        }
    if route.name in _BODIES:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _BODIES[route.name]}}}
    params = list(_PARAMS.get(route.name, []))
    if route.name == "post_bulletin":  # or with files (schemas/ATTACHMENTS.md)
        op["requestBody"]["content"]["multipart/form-data"] = {
            "schema": {
                "type": "object",
                "properties": {
                    "bulletin": {**_POST, "description": "the post's fields, as a JSON part (first)"},
                    "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                             "description": "files to attach, in order (each within the per-file limit)"},
                },
                "required": ["bulletin"],
            }
        }  # fmt: skip
        op["responses"]["413"] = {"description": "a file or the files over the limit", "content": {"application/json": {"schema": _ERROR}}}
        op["responses"]["415"] = {"description": "a file of no accepted type", "content": {"application/json": {"schema": _ERROR}}}
    if route.name.startswith("attachment"):
        kind = "application/octet-stream" if route.name == "attachment" else "image/jpeg"
        op["responses"]["200"] = {"description": route.summary, "content": {kind: {}}}
        op["responses"]["422"] = {"description": "not complete on this node yet, or not an image", "content": {"application/json": {"schema": _ERROR}}}
    for name in ("id", "name", "n"):
        if "{" + name + "}" in route.path:
            params.insert(0, {"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
    if params:
        op["parameters"] = params
    if route.role is None:
        op["security"] = []
    else:
        op["description"] = f"Needs the {route.role} role or higher."
        op["responses"]["401"] = {"description": "not signed in", "content": {"application/json": {"schema": _ERROR}}}
    if route.name == "events":
        op["responses"]["200"] = {"description": "an endless text/event-stream", "content": {"text/event-stream": {}}}
    if route.name == "metrics":
        op["responses"]["200"] = {"description": "Prometheus text format", "content": {"text/plain": {}}}
    return op


@functools.cache
def document(routes: tuple[Route, ...]) -> dict[str, Any]:
    """The document of ``routes`` (``office_node.api.ROUTES``), made once."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "BLO Bus office node",
            "version": VERSION,
            "description": "The HTTP API of one Border Liaison Office (or centre) node. Authenticate with "
            "`Authorization: Bearer <token>` (`blo token create`), or with the session cookie from POST /login "
            "plus the X-CSRF-Token header on every POST. Times are integer milliseconds since 1970-01-01 UTC.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "blo_session"},
            },
            "schemas": {"Error": _ERROR, "PostBulletin": _POST},
        },
        "paths": paths,
    }
