"""Who may call the node's HTTP API and web page: aiohttp middleware, login, role checks.

The rule: **nothing answers without authentication except health, the login page, the
page's static files, and the login itself.** Everything else needs either

* ``Authorization: Bearer <token>`` (scripts, ``blo post``): no cookies involved, so no
  cross-site request can carry it, and it is exempt from CSRF checks; or
* the session cookie a browser gets from ``POST /login`` (HttpOnly, SameSite=Strict,
  Secure when the node is behind TLS). Every state-changing request (not GET/HEAD/
  OPTIONS) made with the cookie must also send the session's CSRF token in the
  ``X-CSRF-Token`` header, and a request whose ``Origin`` names another site is refused.
  SameSite=Strict alone already stops cross-site posts in current browsers; the token
  covers older browsers and same-site attackers (another app on the same host name).

Refusals are JSON ``{"error": {"code": ..., "message": ...}}``: 401 when the caller is
not authenticated (browsers asking for a page are sent to the login page instead), 403
when it is but may not do this, 429 when login attempts are throttled.

Failed logins are limited per (username, client address) in memory: a few tries, then a
wait. It is per node and forgets on restart; that is enough to make online guessing
of an argon2id-hashed password hopeless without locking real officers out for long.
Logins, failures, throttling and logouts go to the audit log.

Usage in the daemon::

    auth = setup_auth(app, accounts, audit, AuthSettings(secure_cookies=config.http.secure_cookies))

    async def post_bulletin(request):
        officer = require_role(request, "officer")
        ...
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from bus import errors
from office_node import audit as audit_actions
from office_node.accounts import Accounts, Principal, csrf_matches, role_at_least
from office_node.audit import AuditLog
from office_node.errors import AuthError, BadCredentials, Forbidden, NotAuthenticated, RateLimited, http_status

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Clock = Callable[[], int]

# aiohttp >= 3.13 wants typed request keys; older releases (pyproject allows 3.9) take a string.
PRINCIPAL_KEY: Any = web.RequestKey("blo_principal", Principal) if hasattr(web, "RequestKey") else "blo.principal"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class AuthSettings:
    secure_cookies: bool = False  # true when the node is served over HTTPS
    cookie_name: str = "blo_session"
    login_path: str = "/login"
    #: (method, path) pairs that answer without authentication. GET also covers HEAD.
    public: frozenset[tuple[str, str]] = frozenset({("GET", "/health"), ("GET", "/login"), ("POST", "/login")})
    #: GET-only path prefixes of the web page's static files (no data in them).
    public_prefixes: tuple[str, ...] = ("/static/",)
    max_failures: int = 5
    failure_window_ms: int = 5 * 60 * 1000


class LoginLimiter:
    """Failed logins per key in a sliding window; pure (the caller passes the time)."""

    def __init__(self, max_failures: int, window_ms: int, *, max_keys: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window_ms = window_ms
        self.max_keys = max_keys
        self._failures: dict[tuple[str, str], deque[int]] = {}

    def retry_after_ms(self, key: tuple[str, str], now_ms: int) -> int:
        """0 if an attempt may go ahead now, else how long to wait."""
        times = self._failures.get(key)
        if not times:
            return 0
        while times and times[0] <= now_ms - self.window_ms:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0
        return times[0] + self.window_ms - now_ms if len(times) >= self.max_failures else 0

    def failure(self, key: tuple[str, str], now_ms: int) -> None:
        if key not in self._failures and len(self._failures) >= self.max_keys:
            # Bounded memory under a spray of usernames: forget the oldest key.
            del self._failures[next(iter(self._failures))]
        self._failures.setdefault(key, deque(maxlen=self.max_failures)).append(now_ms)

    def success(self, key: tuple[str, str]) -> None:
        self._failures.pop(key, None)


def _json_response(data: Any, *, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=functools.partial(json.dumps, ensure_ascii=False))


def error_response(exc: errors.BloError) -> web.Response:
    """The JSON error answer for a refusal: status from the error's kind."""
    body: dict[str, Any] = {"code": exc.reason, "message": exc.message}
    status = http_status(exc)
    if isinstance(exc, errors.ValidationError):
        body["field"] = exc.field
    response = _json_response({"error": body}, status=status)
    if isinstance(exc, NotAuthenticated | BadCredentials):
        response.headers["WWW-Authenticate"] = 'Bearer realm="blo"'
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


def login_fields(data: Any) -> tuple[str, str]:
    """``(username, password)`` from a decoded login body; ValidationError naming what is missing."""
    if not isinstance(data, Mapping):
        raise errors.ValidationError("", 'send a JSON object: {"username": ..., "password": ...}')
    username, password = data.get("username"), data.get("password")
    for name, value in (("username", username), ("password", password)):
        if not isinstance(value, str) or not value:
            raise errors.ValidationError(name, "is required, as text")
    return username, password


def parse_login_json(body: bytes) -> tuple[str, str]:
    """``(username, password)`` from a JSON login body, or ValidationError (HTTP 400)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.ValidationError("", f"the request body is not valid JSON ({exc})") from None
    except RecursionError:
        raise errors.ValidationError("", "the request body is nested too deeply") from None
    return login_fields(data)


def principal_of(request: web.Request) -> Principal:
    """The authenticated caller of ``request`` (set by the middleware)."""
    principal = request.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise NotAuthenticated("log in, or send Authorization: Bearer <token>")
    return principal


def require_role(request: web.Request, role: str) -> Principal:
    """The caller, if their role is ``role`` or higher; Forbidden (403) otherwise."""
    principal = principal_of(request)
    if not role_at_least(principal.role, role):
        raise Forbidden(f"this needs the {role} role; {principal.username} is {principal.role}", reason="forbidden_role")
    return principal


def requires(role: str) -> Callable[[Handler], Handler]:
    """Decorator form of ``require_role`` for handlers."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            require_role(request, role)
            return await handler(request)

        return checked

    return wrap


@dataclass
class Auth:
    """The middleware and login handlers, bound to one node's accounts and audit log."""

    accounts: Accounts
    audit: AuditLog
    settings: AuthSettings = field(default_factory=AuthSettings)
    clock: Clock = wall_clock_ms
    limiter: LoginLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = LoginLimiter(self.settings.max_failures, self.settings.failure_window_ms)

    # -- the middleware ------------------------------------------------------------------

    def is_public(self, request: web.Request) -> bool:
        method = "GET" if request.method == "HEAD" else request.method
        if (method, request.path) in self.settings.public:
            return True
        # No dot segments: the router does not normalise them, but a later static handler
        # or proxy might, and a public prefix must never reach anything outside it.
        return (
            method == "GET"
            and request.path.startswith(self.settings.public_prefixes)
            and ".." not in request.path.split("/")
        )

    def authenticate(self, request: web.Request) -> Principal:
        now = self.clock()
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise NotAuthenticated("the Authorization header must be 'Bearer <token>'")
            return self.accounts.authenticate_token(token.strip(), now_ms=now)
        cookie = request.cookies.get(self.settings.cookie_name)
        if cookie:
            return self.accounts.authenticate_session(cookie, now_ms=now)
        raise NotAuthenticated("log in, or send Authorization: Bearer <token>")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if not self.is_public(request):
                try:
                    principal = self.authenticate(request)
                except NotAuthenticated:
                    if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
                        raise web.HTTPSeeOther(self.settings.login_path) from None
                    raise
                if principal.via == "session" and request.method not in SAFE_METHODS:
                    self._check_origin(request)
                    if not csrf_matches(principal.csrf_token, request.headers.get(CSRF_HEADER)):
                        raise Forbidden(
                            f"missing or wrong {CSRF_HEADER} header: reload the page and try again", reason="csrf"
                        )
                request[PRINCIPAL_KEY] = principal
            return await handler(request)
        except AuthError as exc:
            return error_response(exc)

    def _check_origin(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        # "null" is what browsers send from sandboxed or file: pages: never our page.
        if origin is not None and (origin == "null" or urlsplit(origin).netloc != request.host):
            raise Forbidden("this request came from another site's page", reason="cross_origin")

    # -- login, logout, whoami -----------------------------------------------------------

    async def login(self, request: web.Request) -> web.StreamResponse:
        """POST /login with JSON ``{"username", "password"}`` or a form. JSON gets JSON
        back; a plain HTML form is redirected to ``/`` (or back to the login page)."""
        is_form = request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data")
        try:
            self._check_origin(request)
            username, password = await self._read_login(request, is_form)
            session = await self._login(request, username, password)
        except (AuthError, errors.ValidationError) as exc:
            if is_form:
                raise web.HTTPSeeOther(f"{self.settings.login_path}?error={exc.reason}") from None
            return error_response(exc)
        response: web.StreamResponse
        if is_form:
            response = web.Response(status=303, headers={"Location": "/"})
        else:
            response = _json_response(self._session_json(session.principal))
        response.set_cookie(
            self.settings.cookie_name,
            session.session_id,
            max_age=max(0, (session.expires_at - self.clock()) // 1000),
            path="/",
            httponly=True,
            secure=self.settings.secure_cookies,
            samesite="Strict",
        )
        return response

    async def _read_login(self, request: web.Request, is_form: bool) -> tuple[str, str]:
        if is_form:
            return login_fields(await request.post())
        if request.content_type == "application/json":
            return parse_login_json(await request.read())
        raise errors.ValidationError("Content-Type", "send the login as application/json or as a form")

    async def _login(self, request: web.Request, username: str, password: str) -> Any:
        ip = request.remote or "unknown"
        key = (username.lower(), ip)
        now = self.clock()
        wait_ms = self.limiter.retry_after_ms(key, now)
        if wait_ms:
            self.audit.append("anonymous", audit_actions.LOGIN_THROTTLED, target=username[:64], details={"ip": ip}, now_ms=now)
            wait_s = -(-wait_ms // 1000)
            raise RateLimited(f"too many failed logins; wait {wait_s} seconds and try again", wait_s)
        try:
            # argon2id is slow on purpose: keep it off the event loop.
            session = await asyncio.to_thread(self.accounts.login, username, password, now_ms=now)
        except BadCredentials:
            self.limiter.failure(key, now)
            self.audit.append("anonymous", audit_actions.LOGIN_FAILED, target=username[:64], details={"ip": ip}, now_ms=now)
            raise
        self.limiter.success(key)
        self.audit.append(username, audit_actions.LOGIN, target=username, details={"ip": ip}, now_ms=now)
        return session

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """POST /logout: ends the browser session (needs the CSRF token like any post)."""
        principal = principal_of(request)
        cookie = request.cookies.get(self.settings.cookie_name)
        if principal.via == "session" and cookie:
            self.accounts.logout(cookie)
            self.audit.append(principal.username, audit_actions.LOGOUT, target=principal.username, now_ms=self.clock())
        response = _json_response({"ok": True})
        response.del_cookie(self.settings.cookie_name, path="/")
        return response

    async def whoami(self, request: web.Request) -> web.StreamResponse:
        """GET /session: the caller, and for a browser session its CSRF token (the page
        fetches it after a reload, since the cookie itself is HttpOnly)."""
        return _json_response(self._session_json(principal_of(request)))

    @staticmethod
    def _session_json(principal: Principal) -> dict[str, Any]:
        out: dict[str, Any] = {"user": principal.user.to_json(), "via": principal.via}
        if principal.via == "session":
            out["csrf_token"] = principal.csrf_token
            out["expires_at"] = principal.session_expires_at
        return out


AUTH_KEY = web.AppKey("blo_auth", Auth)


def setup_auth(
    app: web.Application,
    accounts: Accounts,
    audit: AuditLog,
    settings: AuthSettings | None = None,
    *,
    clock: Clock = wall_clock_ms,
) -> Auth:
    """Install the middleware and the POST /login, POST /logout, GET /session routes."""
    auth = Auth(accounts, audit, settings or AuthSettings(), clock)
    app.middlewares.append(auth.middleware)
    app.router.add_post(auth.settings.login_path, auth.login)
    app.router.add_post("/logout", auth.logout)
    app.router.add_get("/session", auth.whoami)
    app[AUTH_KEY] = auth
    return auth
