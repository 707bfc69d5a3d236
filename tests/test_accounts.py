"""Officer accounts: password hashes, roles, tokens, sessions, and no user enumeration."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from bus import errors
from bus.testing import DeterministicRng
from office_node.accounts import CHEAP, SESSION_IDLE_MS, SESSION_TTL_MS, Accounts, csrf_matches, role_at_least
from office_node.db import open_database
from office_node.errors import BadCredentials, NotAuthenticated

NOW = 1_795_000_000_000
PW = "correct horse battery"


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "node.db"


@pytest.fixture
def accounts(db_path):
    db = open_database(db_path)
    acc = Accounts(db, limits=CHEAP, rng=DeterministicRng("accounts"))
    acc.add_user("somchai", PW, role="officer", display_name="Somchai K.", now_ms=NOW)
    acc.add_user("noi", PW, role="supervisor", now_ms=NOW)
    yield acc
    db.close()


def test_passwords_are_stored_as_argon2id_hashes_only(accounts, db_path):
    conn = sqlite3.connect(db_path)
    stored = conn.execute("SELECT password_hash FROM auth_users WHERE username = 'somchai'").fetchone()[0]
    conn.close()
    assert stored.startswith("$argon2id$") and PW not in stored


def test_right_password_logs_in_and_wrong_ones_do_not(accounts):
    assert accounts.check_credentials("somchai", PW).display_name == "Somchai K."
    with pytest.raises(BadCredentials):
        accounts.check_credentials("somchai", PW + "x")


def test_unknown_user_wrong_password_and_disabled_account_are_indistinguishable(accounts):
    accounts.set_disabled("noi")
    messages = set()
    for username, password in (("nobody", PW), ("somchai", "wrong password!"), ("noi", PW)):
        with pytest.raises(BadCredentials) as exc:
            accounts.login(username, password, now_ms=NOW)
        messages.add((type(exc.value), exc.value.reason, exc.value.message))
    assert len(messages) == 1
    assert "nobody" not in next(iter(messages))[2]


def test_usernames_are_unique_and_checked(accounts):
    with pytest.raises(errors.ValidationError, match="already taken"):
        accounts.add_user("somchai", PW, role="admin", now_ms=NOW)
    with pytest.raises(errors.ValidationError) as exc:
        accounts.add_user("Bad Name", PW, role="officer", now_ms=NOW)
    assert exc.value.field == "username"
    with pytest.raises(errors.ValidationError) as exc:
        accounts.add_user("khamla", "short", role="officer", now_ms=NOW)
    assert exc.value.field == "password"
    with pytest.raises(errors.ValidationError) as exc:
        accounts.add_user("khamla", PW, role="chief", now_ms=NOW)
    assert exc.value.field == "role"


def test_roles_are_ordered():
    assert role_at_least("admin", "supervisor") and role_at_least("supervisor", "supervisor")
    assert not role_at_least("officer", "supervisor")
    with pytest.raises(errors.ValidationError):
        role_at_least("officer", "chief")


def test_session_gives_principal_and_csrf_until_it_expires(accounts):
    s = accounts.login("somchai", PW, now_ms=NOW)
    p = accounts.authenticate_session(s.session_id, now_ms=NOW + 1000)
    assert p.username == "somchai" and p.via == "session" and p.csrf_token == s.csrf_token
    assert csrf_matches(p.csrf_token, s.csrf_token) and not csrf_matches(p.csrf_token, "forged")
    assert not csrf_matches(p.csrf_token, None)
    # kept alive by use, but never beyond its absolute lifetime
    t = NOW
    while t + SESSION_IDLE_MS // 2 < NOW + SESSION_TTL_MS:
        t += SESSION_IDLE_MS // 2
        accounts.authenticate_session(s.session_id, now_ms=t)
    with pytest.raises(NotAuthenticated):
        accounts.authenticate_session(s.session_id, now_ms=NOW + SESSION_TTL_MS)


def test_idle_session_ends(accounts):
    s = accounts.login("somchai", PW, now_ms=NOW)
    with pytest.raises(NotAuthenticated):
        accounts.authenticate_session(s.session_id, now_ms=NOW + SESSION_IDLE_MS)


def test_session_ids_are_stored_only_hashed_and_logout_ends_them(accounts, db_path):
    s = accounts.login("somchai", PW, now_ms=NOW)
    conn = sqlite3.connect(db_path)
    stored = [r[0] for r in conn.execute("SELECT id_hash FROM auth_sessions")]
    conn.close()
    assert stored == [hashlib.sha256(s.session_id.encode()).digest()]
    accounts.logout(s.session_id)
    with pytest.raises(NotAuthenticated):
        accounts.authenticate_session(s.session_id, now_ms=NOW)


def test_disabling_a_user_ends_sessions_and_stops_tokens(accounts):
    s = accounts.login("somchai", PW, now_ms=NOW)
    _, token = accounts.create_token("somchai", "laptop", now_ms=NOW)
    accounts.set_disabled("somchai")
    with pytest.raises(NotAuthenticated):
        accounts.authenticate_session(s.session_id, now_ms=NOW)
    with pytest.raises(NotAuthenticated):
        accounts.authenticate_token(token, now_ms=NOW)
    accounts.set_disabled("somchai", False)
    assert accounts.authenticate_token(token, now_ms=NOW).username == "somchai"


def test_password_change_ends_sessions(accounts):
    s = accounts.login("somchai", PW, now_ms=NOW)
    accounts.set_password("somchai", "a brand new passphrase", now_ms=NOW + 1)
    with pytest.raises(NotAuthenticated):
        accounts.authenticate_session(s.session_id, now_ms=NOW + 2)
    with pytest.raises(BadCredentials):
        accounts.check_credentials("somchai", PW)
    assert accounts.check_credentials("somchai", "a brand new passphrase").username == "somchai"


def test_tokens_are_shown_once_stored_hashed_and_revocable(accounts, db_path):
    info, token = accounts.create_token("noi", "ops-script", now_ms=NOW)
    assert token.startswith("blo_") and len(token) > 40
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT token_hash FROM auth_tokens").fetchone()[0] == hashlib.sha256(token.encode()).digest()
    conn.close()
    p = accounts.authenticate_token(token, now_ms=NOW + 5)
    assert (p.username, p.role, p.via, p.token_id) == ("noi", "supervisor", "token", info.id)
    assert accounts.list_tokens("noi")[0].last_used_at == NOW + 5
    with pytest.raises(errors.ValidationError, match="already has a token"):
        accounts.create_token("noi", "ops-script", now_ms=NOW)
    accounts.revoke_token("noi", "ops-script", now_ms=NOW + 10)
    with pytest.raises(NotAuthenticated):
        accounts.authenticate_token(token, now_ms=NOW + 11)
    _, again = accounts.create_token("noi", "ops-script", now_ms=NOW + 12)  # the name is free again
    assert again != token


def test_expired_and_forged_tokens_are_refused(accounts):
    _, token = accounts.create_token("noi", "short-lived", now_ms=NOW, expires_at=NOW + 1000)
    assert accounts.authenticate_token(token, now_ms=NOW + 999).username == "noi"
    with pytest.raises(NotAuthenticated):
        accounts.authenticate_token(token, now_ms=NOW + 1000)
    for forged in ("", "blo_", "blo_" + "A" * 43, "Bearer x", "x" * 1000):
        with pytest.raises(NotAuthenticated):
            accounts.authenticate_token(forged, now_ms=NOW)


def test_admin_errors_name_what_is_missing(accounts):
    with pytest.raises(errors.NotFound):
        accounts.set_disabled("ghost")
    with pytest.raises(errors.NotFound):
        accounts.create_token("ghost", "x", now_ms=NOW)
    with pytest.raises(errors.NotFound):
        accounts.revoke_token("noi", "never-made", now_ms=NOW)


def test_accounts_survive_reopen(db_path, accounts):
    accounts.db.close()
    db = open_database(db_path)
    again = Accounts(db, limits=CHEAP)
    assert [u.username for u in again.list_users()] == ["noi", "somchai"]
    assert again.check_credentials("noi", PW).role == "supervisor"
    db.close()
