"""`blo user`, `blo token` and `blo audit` against a real node database in a temp home."""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner

from office_node.accounts import CHEAP, Accounts
from office_node.cli import cli
from office_node.db import open_database
from office_node.home import node_paths

PW = "correct horse battery"


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def blo(home, *args, env=None, input=None):
    runner = CliRunner()
    return runner.invoke(cli, ["--home", str(home), *args], env=env, input=input, catch_exceptions=False)


def test_user_add_with_env_password_then_list_and_login(home):
    r = blo(home, "user", "add", "somchai", "--role", "supervisor", "--display-name", "Somchai K.", env={"BLO_NEW_PASSWORD": PW})
    assert r.exit_code == 0, r.output
    assert "added somchai (supervisor)" in r.output
    r = blo(home, "user", "list")
    assert "somchai" in r.output and "supervisor" in r.output and "active" in r.output and "Somchai K." in r.output
    db = open_database(node_paths(home).db)
    assert Accounts(db, limits=CHEAP).check_credentials("somchai", PW).role == "supervisor"
    db.close()


def test_user_add_prompts_twice_and_refuses_a_mismatch(home):
    r = blo(home, "user", "add", "noi", "--role", "officer", input=f"{PW}\n{PW}\n", env={"BLO_NEW_PASSWORD": None})
    assert r.exit_code == 0, r.output
    r = blo(home, "user", "add", "khamla", "--role", "officer", input=f"{PW}\nsomething else\n{PW}\n{PW}\n", env={"BLO_NEW_PASSWORD": None})
    # click asks again after a mismatch; the second pair matched
    assert "do not match" in r.output and r.exit_code == 0
    assert "added khamla" in r.output


def test_bad_input_gives_one_clear_line_and_exit_2(home):
    r = blo(home, "user", "add", "Bad Name", "--role", "officer", env={"BLO_NEW_PASSWORD": PW})
    assert r.exit_code == 2 and "blo: username:" in r.output
    r = blo(home, "user", "add", "somchai", "--role", "officer", env={"BLO_NEW_PASSWORD": "short"})
    assert r.exit_code == 2 and "password" in r.output
    r = blo(home, "user", "disable", "ghost")
    assert r.exit_code == 2 and "ghost" in r.output


def test_disable_stops_the_account(home):
    blo(home, "user", "add", "somchai", "--role", "officer", env={"BLO_NEW_PASSWORD": PW})
    r = blo(home, "user", "disable", "somchai")
    assert r.exit_code == 0 and "disabled somchai" in r.output
    assert "disabled" in blo(home, "user", "list").output


def test_token_create_prints_a_working_token_once(home):
    blo(home, "user", "add", "somchai", "--role", "officer", env={"BLO_NEW_PASSWORD": PW})
    runner = CliRunner()
    r = runner.invoke(cli, ["--home", str(home), "token", "create", "somchai", "--name", "laptop"], catch_exceptions=False)
    assert r.exit_code == 0
    token = r.stdout.strip()
    assert token.startswith("blo_") and "shown once" in r.stderr
    db = open_database(node_paths(home).db)
    acc = Accounts(db, limits=CHEAP)
    assert acc.authenticate_token(token, now_ms=1).username == "somchai"
    db.close()
    listing = blo(home, "token", "list").output
    assert "laptop" in listing and token not in listing
    r = blo(home, "token", "revoke", "somchai", "--name", "laptop")
    assert r.exit_code == 0 and "revoked" in blo(home, "token", "list").output


def test_audit_verify_reports_intact_log_with_its_entry_count(home):
    blo(home, "user", "add", "somchai", "--role", "officer", env={"BLO_NEW_PASSWORD": PW})
    blo(home, "token", "create", "somchai", "--name", "laptop")
    r = blo(home, "audit", "verify")
    assert r.exit_code == 0
    assert "audit log intact: 2 entries" in r.output
    shown = blo(home, "audit", "show").output
    assert "user.add" in shown and "token.create" in shown


def test_audit_verify_fails_naming_the_edited_row(home):
    for name in ("a-officer", "b-officer", "c-officer"):
        blo(home, "user", "add", name, "--role", "officer", env={"BLO_NEW_PASSWORD": PW})
    conn = sqlite3.connect(node_paths(home).db)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET target = 'someone-else' WHERE seq = 2")
    conn.commit()
    conn.close()
    r = blo(home, "audit", "verify")
    assert r.exit_code == 1
    assert "entry 2" in r.stderr and "changed" in r.stderr
    assert "entries 1 to 1 are intact" in r.stderr


def test_private_files_are_private(home):
    blo(home, "user", "add", "somchai", "--role", "officer", env={"BLO_NEW_PASSWORD": PW})
    paths = node_paths(home)
    for path in (paths.db, paths.audit_key):
        assert path.stat().st_mode & 0o077 == 0, path
