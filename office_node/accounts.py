"""Officer accounts on one node: users with roles, API tokens, and web sessions.

Secrets are never stored as given. Passwords are argon2id hashes (PyNaCl; the parameters
travel inside each hash string, so raising them later does not break old hashes). API
tokens and session ids are 32 random bytes that the node shows once and keeps only as a
SHA-256 hash: they are long and random, so a fast hash is enough (no dictionary to try)
and lookup stays one indexed query per request. A stolen database therefore gives no
usable token, session or password without a slow guessing attack.

Refusals never tell an attacker whether a username exists: an unknown user, a wrong
password and a disabled account get the same error and message, and an unknown user
still costs one argon2id verification so timing does not tell either.

Roles are ordered: officer < supervisor < admin; a check for "supervisor" admits admins.

The argon2id verification is slow on purpose (tens of ms to a second): ``login`` holds
no database lock while it runs, so an HTTP handler can call it in a worker thread
(``asyncio.to_thread``) without stalling other requests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.utils

from bus import Rng, errors
from office_node.db import Database
from office_node.errors import BadCredentials, NotAuthenticated
from office_node.i18n import check_language

ROLES = ("officer", "supervisor", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}

MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
TOKEN_PREFIX = "blo_"
SECRET_BYTES = 32
#: A web session lasts one working shift at most, and ends after two idle hours.
SESSION_TTL_MS = 12 * 3600 * 1000
SESSION_IDLE_MS = 2 * 3600 * 1000
#: Last-used times are written at most this often: a write per API request would make
#: every read a write transaction.
TOUCH_EVERY_MS = 60 * 1000

_USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}\Z")
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}\Z")
_BAD_LOGIN = "wrong username or password, or the account is disabled"


@dataclass(frozen=True, slots=True)
class HashLimits:
    """argon2id cost. ``INTERACTIVE`` for real accounts; ``CHEAP`` only in tests."""

    opslimit: int
    memlimit: int


INTERACTIVE = HashLimits(nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE, nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE)
CHEAP = HashLimits(nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    display_name: str
    role: str
    disabled: bool
    created_at: int
    #: The officer's language for the page and the node's messages (office_node/i18n.py);
    #: None: the browser's.
    language: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role,
            "disabled": self.disabled,
            "language": self.language,
        }


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is making a request, and how they proved it."""

    user: User
    via: str  # "token" or "session"
    token_id: int | None = None
    csrf_token: str | None = None  # sessions only
    session_expires_at: int | None = None

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def role(self) -> str:
        return self.user.role

    def has_role(self, required: str) -> bool:
        return role_at_least(self.user.role, required)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    username: str
    name: str
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "name": self.name,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
        }


@dataclass(frozen=True, slots=True)
class NewSession:
    """What a successful login hands the browser: the cookie value and the CSRF token."""

    session_id: str
    csrf_token: str
    expires_at: int
    principal: Principal


def role_at_least(role: str, required: str) -> bool:
    if required not in _RANK:
        raise errors.ValidationError("role", f"must be one of {', '.join(ROLES)}; got {required!r}"[:200])
    return _RANK.get(role, -1) >= _RANK[required]


def check_username(username: Any) -> str:
    if not isinstance(username, str) or _USERNAME.match(username) is None:
        raise errors.ValidationError(
            "username", "must be 2-32 characters: lowercase letters, digits, '.', '_' or '-', starting with a letter"
        )
    return username


def check_password(password: Any) -> str:
    if not isinstance(password, str):
        raise errors.ValidationError("password", "must be text")
    if len(password) < MIN_PASSWORD_CHARS:
        raise errors.ValidationError("password", f"must be at least {MIN_PASSWORD_CHARS} characters; a short phrase works well")
    if len(password) > MAX_PASSWORD_CHARS:
        raise errors.ValidationError("password", f"must be at most {MAX_PASSWORD_CHARS} characters")
    return password


def _check_role(role: Any) -> str:
    if role not in _RANK:
        raise errors.ValidationError("role", f"must be one of {', '.join(ROLES)}; got {role!r}"[:200])
    return role


def _sha256(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def _random_text(rng: Rng) -> str:
    return base64.urlsafe_b64encode(rng(SECRET_BYTES)).decode("ascii").rstrip("=")


_USER_COLUMNS = "u.id, u.username, u.display_name, u.role, u.disabled, u.created_at, u.language"
#: Where the columns a query selects after ``_USER_COLUMNS`` start.
_N = 7


def _user(row: Any) -> User:
    return User(row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6])


class Accounts:
    """Users, tokens and sessions in the node database."""

    def __init__(self, db: Database, *, limits: HashLimits = INTERACTIVE, rng: Rng = nacl.utils.random) -> None:
        self.db = db
        self.limits = limits
        self.rng = rng
        self._dummy_hash: bytes | None = None

    # -- passwords ----------------------------------------------------------------------

    def _hash(self, password: str) -> bytes:
        return nacl.pwhash.argon2id.str(password.encode("utf-8"), opslimit=self.limits.opslimit, memlimit=self.limits.memlimit)

    def _verify(self, stored: bytes, password: str) -> bool:
        try:
            return nacl.pwhash.argon2id.verify(stored, password.encode("utf-8"))
        except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, nacl.exceptions.ValueError):
            return False

    # -- users --------------------------------------------------------------------------

    def add_user(self, username: str, password: str, *, role: str, display_name: str | None = None, now_ms: int) -> User:
        check_username(username)
        check_password(password)
        _check_role(role)
        display = (display_name if display_name is not None else username).strip()
        if not display or len(display) > 100:
            raise errors.ValidationError("display_name", "must be 1-100 characters")
        hashed = self._hash(password).decode("ascii")
        with self.db.write() as c:
            if c.execute("SELECT 1 FROM auth_users WHERE username = ?", (username,)).fetchone():
                raise errors.ValidationError("username", f"{username!r} is already taken on this node")
            cur = c.execute(
                "INSERT INTO auth_users (username, display_name, role, password_hash, created_at, password_changed_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (username, display, role, hashed, now_ms, now_ms),
            )
        return User(int(cur.lastrowid or 0), username, display, role, False, now_ms)

    def get_user(self, username: str) -> User:
        with self.db.read() as c:
            row = c.execute(f"SELECT {_USER_COLUMNS} FROM auth_users u WHERE u.username = ?", (username,)).fetchone()
        if row is None:
            raise errors.NotFound(f"no user {username!r} on this node")
        return _user(row)

    def list_users(self) -> list[User]:
        with self.db.read() as c:
            rows = c.execute(f"SELECT {_USER_COLUMNS} FROM auth_users u ORDER BY u.username").fetchall()
        return [_user(r) for r in rows]

    def set_disabled(self, username: str, disabled: bool = True) -> User:
        """Disable (or re-enable) an account. Disabling ends its sessions at once; its
        tokens stop working too (they are checked against the account on every use)."""
        with self.db.write() as c:
            cur = c.execute("UPDATE auth_users SET disabled = ? WHERE username = ?", (1 if disabled else 0, username))
            if cur.rowcount == 0:
                raise errors.NotFound(f"no user {username!r} on this node")
            if disabled:
                c.execute("DELETE FROM auth_sessions WHERE user_id = (SELECT id FROM auth_users WHERE username = ?)", (username,))
        return self.get_user(username)

    def set_role(self, username: str, role: str) -> User:
        _check_role(role)
        with self.db.write() as c:
            if c.execute("UPDATE auth_users SET role = ? WHERE username = ?", (role, username)).rowcount == 0:
                raise errors.NotFound(f"no user {username!r} on this node")
        return self.get_user(username)

    def set_language(self, username: str, language: str | None) -> User:
        """Save the officer's language (``office_node.i18n.LANGUAGES``; None: the browser's)."""
        if language is not None:
            check_language(language)
        with self.db.write() as c:
            if c.execute("UPDATE auth_users SET language = ? WHERE username = ?", (language, username)).rowcount == 0:
                raise errors.NotFound(f"no user {username!r} on this node")
        return self.get_user(username)

    def set_password(self, username: str, password: str, *, now_ms: int) -> None:
        """Change a password and end the user's web sessions (a reset after a suspected
        compromise must lock the attacker out)."""
        check_password(password)
        hashed = self._hash(password).decode("ascii")
        with self.db.write() as c:
            cur = c.execute(
                "UPDATE auth_users SET password_hash = ?, password_changed_at = ? WHERE username = ?",
                (hashed, now_ms, username),
            )
            if cur.rowcount == 0:
                raise errors.NotFound(f"no user {username!r} on this node")
            c.execute("DELETE FROM auth_sessions WHERE user_id = (SELECT id FROM auth_users WHERE username = ?)", (username,))

    def check_credentials(self, username: str, password: str) -> User:
        """The user if the password is right and the account enabled; BadCredentials otherwise.
        Slow (argon2id); holds no lock while hashing."""
        if not isinstance(username, str) or not isinstance(password, str):
            raise BadCredentials(_BAD_LOGIN)
        with self.db.read() as c:
            row = c.execute(
                f"SELECT {_USER_COLUMNS}, u.password_hash FROM auth_users u WHERE u.username = ?", (username,)
            ).fetchone()
        if row is None:
            # Spend the same time as a real check so response timing does not reveal
            # which usernames exist.
            if self._dummy_hash is None:
                self._dummy_hash = self._hash(_random_text(self.rng))
            self._verify(self._dummy_hash, password)
            raise BadCredentials(_BAD_LOGIN)
        ok = self._verify(row[_N].encode("ascii"), password)
        user = _user(row)
        if not ok or user.disabled:
            raise BadCredentials(_BAD_LOGIN)
        return user

    # -- web sessions -------------------------------------------------------------------

    def login(self, username: str, password: str, *, now_ms: int) -> NewSession:
        """Check the password and open a web session (cookie value + CSRF token)."""
        user = self.check_credentials(username, password)
        session_id = _random_text(self.rng)
        csrf = _random_text(self.rng)
        expires = now_ms + SESSION_TTL_MS
        with self.db.write() as c:
            # Housekeeping at a natural moment: logins are rare, sessions short.
            c.execute("DELETE FROM auth_sessions WHERE expires_at <= ? OR last_seen_at <= ?", (now_ms, now_ms - SESSION_IDLE_MS))
            c.execute(
                "INSERT INTO auth_sessions (id_hash, user_id, csrf_token, created_at, expires_at, last_seen_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (_sha256(session_id), user.id, csrf, now_ms, expires, now_ms),
            )
        principal = Principal(user, "session", csrf_token=csrf, session_expires_at=expires)
        return NewSession(session_id, csrf, expires, principal)

    def authenticate_session(self, session_id: str, *, now_ms: int) -> Principal:
        """The principal for a session cookie, or NotAuthenticated (unknown, expired,
        idle too long, or the account disabled)."""
        if not isinstance(session_id, str) or not session_id or len(session_id) > 128:
            raise NotAuthenticated("not logged in: log in again")
        key = _sha256(session_id)
        with self.db.read() as c:
            row = c.execute(
                f"SELECT {_USER_COLUMNS}, s.csrf_token, s.expires_at, s.last_seen_at FROM auth_sessions s "
                "JOIN auth_users u ON u.id = s.user_id WHERE s.id_hash = ?",
                (key,),
            ).fetchone()
        if row is None or row[4] or row[_N + 1] <= now_ms or row[_N + 2] <= now_ms - SESSION_IDLE_MS:
            raise NotAuthenticated("your session has ended: log in again")
        if now_ms - row[_N + 2] >= TOUCH_EVERY_MS:
            with self.db.write() as c:
                c.execute("UPDATE auth_sessions SET last_seen_at = ? WHERE id_hash = ?", (now_ms, key))
        return Principal(_user(row), "session", csrf_token=row[_N], session_expires_at=row[_N + 1])

    def logout(self, session_id: str) -> None:
        with self.db.write() as c:
            c.execute("DELETE FROM auth_sessions WHERE id_hash = ?", (_sha256(session_id),))

    # -- API tokens ---------------------------------------------------------------------

    def create_token(self, username: str, name: str, *, now_ms: int, expires_at: int | None = None) -> tuple[TokenInfo, str]:
        """A new bearer token for ``username``: ``(info, secret)``. The secret is shown
        to the caller once and never stored; only its SHA-256 is kept."""
        if not isinstance(name, str) or _TOKEN_NAME.match(name) is None:
            raise errors.ValidationError("name", "must be 1-64 characters: letters, digits, spaces, '.', '_' or '-'")
        if expires_at is not None and expires_at <= now_ms:
            raise errors.ValidationError("expires_at", "must be in the future")
        secret = TOKEN_PREFIX + _random_text(self.rng)
        user = self.get_user(username)
        with self.db.write() as c:
            live = c.execute(
                "SELECT 1 FROM auth_tokens WHERE user_id = ? AND name = ? AND revoked_at IS NULL", (user.id, name)
            ).fetchone()
            if live:
                raise errors.ValidationError("name", f"{username} already has a token named {name!r}; revoke it first")
            cur = c.execute(
                "INSERT INTO auth_tokens (user_id, name, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                (user.id, name, _sha256(secret), now_ms, expires_at),
            )
        return TokenInfo(int(cur.lastrowid or 0), username, name, now_ms, expires_at, None, None), secret

    def authenticate_token(self, secret: str, *, now_ms: int) -> Principal:
        """The principal for a bearer token, or NotAuthenticated."""
        if not isinstance(secret, str) or not secret.startswith(TOKEN_PREFIX) or len(secret) > 128:
            raise NotAuthenticated("the API token is not valid: create a new one with `blo token create`")
        with self.db.read() as c:
            row = c.execute(
                f"SELECT {_USER_COLUMNS}, t.id, t.expires_at, t.revoked_at, t.last_used_at FROM auth_tokens t "
                "JOIN auth_users u ON u.id = t.user_id WHERE t.token_hash = ?",
                (_sha256(secret),),
            ).fetchone()
        if row is None or row[4] or row[_N + 2] is not None or (row[_N + 1] is not None and row[_N + 1] <= now_ms):
            raise NotAuthenticated(
                "the API token is not valid (unknown, expired, revoked, or its account disabled): "
                "create a new one with `blo token create`"
            )
        if row[_N + 3] is None or now_ms - row[_N + 3] >= TOUCH_EVERY_MS:
            with self.db.write() as c:
                c.execute("UPDATE auth_tokens SET last_used_at = ? WHERE id = ?", (now_ms, row[_N]))
        return Principal(_user(row), "token", token_id=row[_N])

    def list_tokens(self, username: str | None = None) -> list[TokenInfo]:
        sql = (
            "SELECT t.id, u.username, t.name, t.created_at, t.expires_at, t.revoked_at, t.last_used_at "
            "FROM auth_tokens t JOIN auth_users u ON u.id = t.user_id"
        )
        args: tuple[Any, ...] = ()
        if username is not None:
            sql += " WHERE u.username = ?"
            args = (username,)
        with self.db.read() as c:
            rows = c.execute(sql + " ORDER BY u.username, t.id", args).fetchall()
        return [TokenInfo(*r) for r in rows]

    def revoke_token(self, username: str, name: str, *, now_ms: int) -> TokenInfo:
        with self.db.write() as c:
            row = c.execute(
                "SELECT t.id FROM auth_tokens t JOIN auth_users u ON u.id = t.user_id "
                "WHERE u.username = ? AND t.name = ? AND t.revoked_at IS NULL",
                (username, name),
            ).fetchone()
            if row is None:
                raise errors.NotFound(f"{username} has no live token named {name!r}")
            c.execute("UPDATE auth_tokens SET revoked_at = ? WHERE id = ?", (now_ms, row[0]))
        return next(t for t in self.list_tokens(username) if t.id == row[0])


def csrf_matches(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of a session's CSRF token with the one a request sent."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))

