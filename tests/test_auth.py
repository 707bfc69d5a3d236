"""The auth middleware on a real aiohttp server: 401s, bearer tokens, sessions, CSRF, roles."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from bus import errors
from office_node.accounts import CHEAP, Accounts
from office_node.audit import AuditLog
from office_node.auth import (
    CSRF_HEADER,
    AuthSettings,
    LoginLimiter,
    parse_login_json,
    require_role,
    requires,
    setup_auth,
)
from office_node.db import open_database

NOW = 1_795_000_000_000
PW = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


async def list_bulletins(request: web.Request) -> web.Response:
    officer = require_role(request, "officer")
    return web.json_response({"items": [], "who": officer.username})


async def post_bulletin(request: web.Request) -> web.Response:
    officer = require_role(request, "officer")
    return web.json_response({"posted_by": officer.username}, status=201)


@requires("supervisor")
async def change_feed(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def page(request: web.Request) -> web.Response:
    return web.Response(text="<html>page</html>", content_type="text/html")


class Node:
    def __init__(self, tmp_path, settings: AuthSettings | None = None) -> None:
        self.db = open_database(tmp_path / "node.db")
        self.accounts = Accounts(self.db, limits=CHEAP)
        self.audit = AuditLog.open(self.db, tmp_path / "audit.key", head_path=tmp_path / "audit.head")
        self.accounts.add_user("somchai", PW, role="officer", now_ms=NOW)
        self.accounts.add_user("noi", PW, role="supervisor", now_ms=NOW)
        self.clock = Clock()
        app = web.Application()
        setup_auth(app, self.accounts, self.audit, settings, clock=self.clock)
        app.router.add_get("/health", health)
        app.router.add_get("/login", page)
        app.router.add_get("/", page)
        app.router.add_get("/static/app.js", page)
        app.router.add_get("/api/bulletins", list_bulletins)
        app.router.add_post("/api/bulletins", post_bulletin)
        app.router.add_put("/api/feeds/mekong", change_feed)
        self.app = app


@pytest.fixture
async def node(tmp_path):
    n = Node(tmp_path)
    async with TestClient(TestServer(n.app)) as client:
        n.client = client
        yield n
    n.db.close()


async def error_of(resp) -> dict:
    body = await resp.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    return body["error"]


async def login(node, username="somchai", password=PW) -> str:
    resp = await node.client.post("/login", json={"username": username, "password": password})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["csrf_token"]


# -- unauthenticated -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/bulletins"), ("POST", "/api/bulletins"), ("PUT", "/api/feeds/mekong"), ("GET", "/session"),
     ("POST", "/logout"), ("GET", "/no/such/route"), ("POST", "/health"), ("GET", "/static/../api/bulletins")],
)  # fmt: skip
async def test_everything_but_health_and_login_answers_401_without_credentials(node, method, path):
    resp = await node.client.request(method, path)
    assert resp.status == 401
    assert (await error_of(resp))["code"] == "unauthenticated"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ["/health", "/login", "/static/app.js"])
async def test_health_login_page_and_static_files_answer_without_credentials(node, path):
    resp = await node.client.get(path)
    assert resp.status == 200


async def test_a_browser_asking_for_a_page_is_sent_to_the_login_page(node):
    resp = await node.client.get("/", headers={"Accept": "text/html,application/xhtml+xml"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"


# -- bearer tokens ---------------------------------------------------------------------------


async def test_bearer_token_works_for_reads_and_posts_without_csrf(node):
    _, token = node.accounts.create_token("somchai", "cli", now_ms=NOW)
    headers = {"Authorization": f"Bearer {token}"}
    resp = await node.client.get("/api/bulletins", headers=headers)
    assert resp.status == 200 and (await resp.json())["who"] == "somchai"
    resp = await node.client.post("/api/bulletins", headers=headers, json={})
    assert resp.status == 201


@pytest.mark.parametrize("header", ["Bearer blo_wrong", "Bearer ", "Basic c29tY2hhaTpwdw==", "blo_token-without-scheme"])
async def test_bad_authorization_headers_get_401(node, header):
    resp = await node.client.get("/api/bulletins", headers={"Authorization": header})
    assert resp.status == 401
    assert (await error_of(resp))["code"] == "unauthenticated"


async def test_revoked_token_stops_working(node):
    _, token = node.accounts.create_token("somchai", "cli", now_ms=NOW)
    node.accounts.revoke_token("somchai", "cli", now_ms=NOW)
    resp = await node.client.get("/api/bulletins", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401


# -- browser sessions and CSRF ---------------------------------------------------------------


async def test_session_login_sets_a_strict_httponly_cookie_and_works(node):
    resp = await node.client.post("/login", json={"username": "somchai", "password": PW})
    assert resp.status == 200
    body = await resp.json()
    assert body["user"]["username"] == "somchai" and body["csrf_token"]
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    resp = await node.client.get("/api/bulletins")
    assert resp.status == 200 and (await resp.json())["who"] == "somchai"
    resp = await node.client.get("/session")
    assert (await resp.json())["csrf_token"] == body["csrf_token"]


async def test_secure_cookie_flag_is_configurable(tmp_path):
    n = Node(tmp_path, AuthSettings(secure_cookies=True))
    async with TestClient(TestServer(n.app)) as client:
        resp = await client.post("/login", json={"username": "somchai", "password": PW})
        assert resp.status == 200 and "Secure" in resp.headers["Set-Cookie"]
    n.db.close()


async def test_post_with_session_cookie_but_no_csrf_token_is_403(node):
    await login(node)
    resp = await node.client.post("/api/bulletins", json={})
    assert resp.status == 403
    assert (await error_of(resp))["code"] == "csrf"


async def test_post_with_session_cookie_and_wrong_csrf_token_is_403(node):
    await login(node)
    resp = await node.client.post("/api/bulletins", json={}, headers={CSRF_HEADER: "guessed"})
    assert resp.status == 403


async def test_post_with_session_cookie_and_its_csrf_token_succeeds(node):
    csrf = await login(node)
    resp = await node.client.post("/api/bulletins", json={}, headers={CSRF_HEADER: csrf})
    assert resp.status == 201 and (await resp.json())["posted_by"] == "somchai"


async def test_post_from_another_sites_page_is_403_even_with_the_token(node):
    csrf = await login(node)
    resp = await node.client.post(
        "/api/bulletins", json={}, headers={CSRF_HEADER: csrf, "Origin": "http://evil.example"}
    )
    assert resp.status == 403
    assert (await error_of(resp))["code"] == "cross_origin"


async def test_logout_ends_the_session(node):
    csrf = await login(node)
    cookie = node.client.session.cookie_jar.filter_cookies(node.client.make_url("/"))["blo_session"].value
    resp = await node.client.post("/logout", headers={CSRF_HEADER: csrf})
    assert resp.status == 200
    # even a client that kept the old cookie is refused now
    resp = await node.client.get("/api/bulletins", headers={"Cookie": f"blo_session={cookie}"})
    assert resp.status == 401


async def test_html_form_login_redirects_to_the_page(node):
    resp = await node.client.post("/login", data={"username": "somchai", "password": PW}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"
    assert "blo_session=" in resp.headers["Set-Cookie"]
    resp = await node.client.post("/login", data={"username": "somchai", "password": "nope"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login?error=bad_credentials"


# -- roles -----------------------------------------------------------------------------------


async def test_wrong_role_is_403_and_the_right_role_passes(node):
    _, officer = node.accounts.create_token("somchai", "cli", now_ms=NOW)
    _, supervisor = node.accounts.create_token("noi", "cli", now_ms=NOW)
    resp = await node.client.put("/api/feeds/mekong", headers={"Authorization": f"Bearer {officer}"})
    assert resp.status == 403
    assert (await error_of(resp))["code"] == "forbidden_role"
    resp = await node.client.put("/api/feeds/mekong", headers={"Authorization": f"Bearer {supervisor}"})
    assert resp.status == 200


# -- bad logins ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, ""),
        ({"json": ["somchai", PW]}, ""),
        ({"json": {"username": "somchai"}}, "password"),
        ({"json": {"username": 7, "password": PW}}, "username"),
        ({"data": b"somchai:pw", "headers": {"Content-Type": "text/plain"}}, "Content-Type"),
    ],
)
async def test_malformed_login_is_400_with_a_json_error(node, kwargs, field):
    resp = await node.client.post("/login", **kwargs)
    assert resp.status == 400
    error = await error_of(resp)
    assert error["code"] == "invalid" and error["field"] == field


async def test_wrong_password_and_unknown_user_get_the_same_401(node):
    a = await node.client.post("/login", json={"username": "somchai", "password": "wrong password"})
    b = await node.client.post("/login", json={"username": "ghost", "password": PW})
    assert a.status == b.status == 401
    assert await a.json() == await b.json()
    assert (await a.json())["error"]["code"] == "bad_credentials"


async def test_repeated_failures_are_throttled_then_allowed_after_the_window(node):
    for _ in range(5):
        resp = await node.client.post("/login", json={"username": "somchai", "password": "wrong password"})
        assert resp.status == 401
    resp = await node.client.post("/login", json={"username": "somchai", "password": PW})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    assert (await error_of(resp))["code"] == "rate_limited"
    # another officer on the same machine is not locked out
    resp = await node.client.post("/login", json={"username": "noi", "password": PW})
    assert resp.status == 200
    node.clock.now += AuthSettings().failure_window_ms
    resp = await node.client.post("/login", json={"username": "somchai", "password": PW})
    assert resp.status == 200


async def test_logins_and_failures_are_audited_and_the_log_stays_intact(node):
    await node.client.post("/login", json={"username": "somchai", "password": "wrong password"})
    await login(node)
    actions = [(e.actor, e.action, e.target) for e in reversed(node.audit.entries())]
    assert actions == [("anonymous", "login.failed", "somchai"), ("somchai", "login", "somchai")]
    assert node.audit.entries()[0].details == {"ip": "127.0.0.1"}
    assert node.audit.verify().ok


def test_login_limiter_forgets_old_failures_and_stays_bounded():
    limiter = LoginLimiter(3, 1000, max_keys=2)
    key = ("somchai", "10.0.0.1")
    for t in (0, 10, 20):
        assert limiter.retry_after_ms(key, t) == 0
        limiter.failure(key, t)
    assert limiter.retry_after_ms(key, 30) == 970
    assert limiter.retry_after_ms(key, 1000) == 0  # the first failure left the window
    limiter.failure(("a", "ip"), 0)
    limiter.failure(("b", "ip"), 0)
    assert len(limiter._failures) == 2


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["username", "password", "x"]), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200) | _json_values.map(lambda v: json.dumps(v).encode()))
def test_any_login_body_gives_credentials_or_a_validation_error(body):
    try:
        username, password = parse_login_json(body)
    except errors.ValidationError:
        return
    assert isinstance(username, str) and isinstance(password, str) and username and password


def test_deeply_nested_login_json_is_a_validation_error():
    with pytest.raises(errors.ValidationError):
        parse_login_json(b"[" * 100_000)


def test_public_prefix_does_not_cover_dot_segments(tmp_path):
    from aiohttp.test_utils import make_mocked_request

    from office_node.auth import AUTH_KEY

    n = Node(tmp_path)
    auth = n.app[AUTH_KEY]
    assert auth.is_public(make_mocked_request("GET", "/static/app.js"))
    assert auth.is_public(make_mocked_request("HEAD", "/health"))
    assert not auth.is_public(make_mocked_request("GET", "/static/../api/bulletins"))
    assert not auth.is_public(make_mocked_request("POST", "/static/app.js"))
    n.db.close()
