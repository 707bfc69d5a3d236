"""`blo` subcommands for the node's officers and audit log.

    blo user add USERNAME --role officer|supervisor|admin [--display-name NAME]
    blo user list
    blo user disable USERNAME | blo user enable USERNAME
    blo token create USERNAME --name NAME [--expires-days N]     (prints the token once)
    blo token list [USERNAME] | blo token revoke USERNAME --name NAME
    blo audit verify | blo audit show [--limit N]

They work on the node database directly, so an admin can set up the first account
before the daemon ever runs, and can run them while it runs (SQLite WAL). Every change
is written to the audit log as ``cli:<operating-system user>``.

The new password comes from ``BLO_NEW_PASSWORD`` when set (scripts, the demo), else
from a prompt asked twice; it is never taken from the command line, where it would sit
in the shell history and the process list.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import click

from bus.errors import ValidationError
from office_node import audit as actions
from office_node.accounts import ROLES, Accounts
from office_node.audit import AuditLog
from office_node.cli import cli
from office_node.db import Database, open_database
from office_node.home import node_paths

NEW_PASSWORD_ENV = "BLO_NEW_PASSWORD"
DAY_MS = 86_400_000


@dataclass
class _Node:
    db: Database
    accounts: Accounts
    audit: AuditLog


@contextlib.contextmanager
def _open(ctx: click.Context) -> Iterator[_Node]:
    paths = node_paths(ctx.obj["home"])
    paths.audit_key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = open_database(paths.db)
    try:
        yield _Node(db, Accounts(db), AuditLog.open(db, paths.audit_key, head_path=paths.audit_head))
    finally:
        db.close()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"cli:uid{os.getuid()}"


def _new_password() -> str:
    from_env = os.environ.get(NEW_PASSWORD_ENV)
    if from_env is not None:
        if not from_env:
            raise ValidationError("password", f"{NEW_PASSWORD_ENV} is set but empty")
        return from_env
    return click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password")


@cli.group("user")
def user_group() -> None:
    """Officer accounts on this node."""


@user_group.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True, help="officer: read and post; supervisor: also feeds and forwarding; admin: also accounts.")
@click.option("--display-name", default=None, help="The name shown on the page (default: the username).")
@click.pass_context
def user_add(ctx: click.Context, username: str, role: str, display_name: str | None) -> None:
    """Create an account (password from BLO_NEW_PASSWORD or a prompt)."""
    password = _new_password()
    with _open(ctx) as node:
        user = node.accounts.add_user(username, password, role=role, display_name=display_name, now_ms=_now_ms())
        node.audit.append(_actor(), actions.USER_ADD, target=username, details={"role": role}, now_ms=_now_ms())
    click.echo(f"added {user.username} ({user.role})")


@user_group.command("list")
@click.pass_context
def user_list(ctx: click.Context) -> None:
    """Every account with its role and state."""
    with _open(ctx) as node:
        users = node.accounts.list_users()
    if not users:
        click.echo("no accounts yet: add one with `blo user add NAME --role admin`")
    for u in users:
        state = "disabled" if u.disabled else "active"
        click.echo(f"{u.username:<24} {u.role:<10} {state:<8} {u.display_name}")


@user_group.command("disable")
@click.argument("username")
@click.pass_context
def user_disable(ctx: click.Context, username: str) -> None:
    """Stop an account: its sessions end and its tokens stop working at once."""
    with _open(ctx) as node:
        node.accounts.set_disabled(username, True)
        node.audit.append(_actor(), actions.USER_DISABLE, target=username, now_ms=_now_ms())
    click.echo(f"disabled {username}")


@user_group.command("enable")
@click.argument("username")
@click.pass_context
def user_enable(ctx: click.Context, username: str) -> None:
    """Let a disabled account log in again."""
    with _open(ctx) as node:
        node.accounts.set_disabled(username, False)
        node.audit.append(_actor(), actions.USER_ENABLE, target=username, now_ms=_now_ms())
    click.echo(f"enabled {username}")


@cli.group("token")
def token_group() -> None:
    """API tokens for scripts and `blo post` / `blo subscribe`."""


@token_group.command("create")
@click.argument("username")
@click.option("--name", required=True, help="What the token is for, e.g. 'laptop cli'.")
@click.option("--expires-days", type=click.IntRange(min=1), default=None, help="Expire after this many days (default: never).")
@click.option("--save", is_flag=True, help="Write it to keys/api.token (0600) for `blo post` / `blo subscribe` instead of printing it.")
@click.pass_context
def token_create(ctx: click.Context, username: str, name: str, expires_days: int | None, save: bool) -> None:
    """Create a token and print it once; only its hash is kept."""
    from bus import write_private_file
    from office_node.client import token_path
    from office_node.home import NodeHome

    now = _now_ms()
    expires = now + expires_days * DAY_MS if expires_days else None
    with _open(ctx) as node:
        info, secret = node.accounts.create_token(username, name, now_ms=now, expires_at=expires)
        node.audit.append(_actor(), actions.TOKEN_CREATE, target=username, details={"name": name, "id": info.id}, now_ms=now)
    if save:
        path = token_path(NodeHome(ctx.obj["home"]))
        write_private_file(path, (secret + "\n").encode())
        click.echo(f"token {name!r} for {username} saved to {path} (0600); `blo post` and `blo subscribe` use it")
        return
    click.echo(secret)
    click.echo(f"token {name!r} for {username}: shown once, store it now (send as 'Authorization: Bearer <token>')", err=True)


@token_group.command("list")
@click.argument("username", required=False)
@click.pass_context
def token_list(ctx: click.Context, username: str | None) -> None:
    """Tokens (never their values), live and revoked."""
    with _open(ctx) as node:
        tokens = node.accounts.list_tokens(username)
    for t in tokens:
        state = "revoked" if t.revoked_at else ("expires " + str(t.expires_at) if t.expires_at else "live")
        click.echo(f"{t.username:<24} {t.name:<24} {state}")


@token_group.command("revoke")
@click.argument("username")
@click.option("--name", required=True)
@click.pass_context
def token_revoke(ctx: click.Context, username: str, name: str) -> None:
    """Revoke a token at once."""
    with _open(ctx) as node:
        node.accounts.revoke_token(username, name, now_ms=_now_ms())
        node.audit.append(_actor(), actions.TOKEN_REVOKE, target=username, details={"name": name}, now_ms=_now_ms())
    click.echo(f"revoked {username}'s token {name!r}")


@cli.group("audit")
def audit_group() -> None:
    """The tamper-evident audit log."""


@audit_group.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Check the hash chain; exit 1 naming the first bad entry."""
    with _open(ctx) as node:
        report = node.audit.verify()
    if report.ok:
        click.echo(f"audit log intact: {report.entries} entries (head {report.head_hash})")
        return
    click.echo(f"audit log BROKEN at {report.problem}", err=True)
    click.echo(f"entries 1 to {report.entries} are intact (head {report.head_hash})", err=True)
    sys.exit(1)


@audit_group.command("show")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def audit_show(ctx: click.Context, limit: int, as_json: bool) -> None:
    """The latest entries, newest first."""
    with _open(ctx) as node:
        entries = node.audit.entries(limit=limit)
    for e in entries:
        if as_json:
            click.echo(json.dumps(e.to_json(), ensure_ascii=False))
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.at / 1000))
            click.echo(f"{e.seq:>6} {when}Z {e.actor:<20} {e.action:<18} {e.target}")
