"""A centre analyst's commands, through the local centre node's API.

    blo feed list
    blo feed create NAME --member TH-MUK [--member ...] [--writer TH-MUK]... [--scope TH --scope LA]
    blo feed add NAME OFFICE... [--post] | blo feed remove NAME OFFICE...
    blo feed writers NAME [--add OFFICE]... [--remove OFFICE]...
    blo feed rotate NAME
    blo triage list [--state new]
    blo triage move ID STATE [--note TEXT]
    blo forward ID --feed NAME [--redact entities[0].name]... [--precedence FLASH] [--tlp AMBER]
    blo network

Every change starts a new feed epoch (a fresh key); a removed office reads nothing
sent after. Only the owning centre and the members it made writers may post to a feed
(members refuse anyone else's bulletins). On a joint feed another centre owns,
``add``/``remove`` of this country's offices is sent to the owner as a signed request;
post rights there are the owner's to give.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from office_node.cli import cli
from office_node.commands.api_calls import call, json_option, token_option, url_option, when
from office_node.triage import STATES


def _print_feed(f: dict[str, Any]) -> None:
    where = "owned here" if f.get("owned_here") else f"owner {f.get('owner') or '?'}"
    key = "key held" if f.get("have_key") else "no key"
    writers = set(f.get("writers") or [])
    # A member that may post is marked "+post"; one waiting for its grant "(no grant yet)".
    members = [
        m + ("+post" if m in writers else "") + (" (no grant yet)" if m in (f.get("ungranted") or []) else "")
        for m in f.get("members") or []
    ]
    click.echo(f"{f['name']:<20} epoch {f.get('epoch') or '-':<4} {where:<18} {key:<8} members: {', '.join(members) or '-'}")


@cli.group("feed")
def feed_group() -> None:
    """Feeds: create them, change members (each change is a new epoch key), rotate keys."""


@feed_group.command("list")
@url_option
@token_option
@json_option
@click.pass_context
def feed_list(ctx: click.Context, url: str | None, token: str | None, as_json: bool) -> None:
    """The feeds this node owns, belongs to or reads."""
    feeds = call(ctx, url, token, "GET", "/api/feeds")["feeds"]
    if as_json:
        click.echo(json.dumps(feeds, ensure_ascii=False))
        return
    if not feeds:
        click.echo("no feeds")
    for f in feeds:
        _print_feed(f)
        for entry in (f.get("requests") or [])[:1]:  # the latest request this centre sent its owner
            if entry.get("answered_at") is None:
                click.echo(f"  request {entry['id']} to {entry['owner']}: no answer yet")
            else:
                click.echo(f"  request {entry['id']} answered by {entry['owner']}:")
                _print_outcomes(entry)


@feed_group.command("create")
@click.argument("name")
@click.option("--member", "members", multiple=True, required=True, metavar="OFFICE")
@click.option("--writer", "writers", multiple=True, metavar="OFFICE", help="A member that may post to the feed too.")
@click.option("--scope", "scope", multiple=True, metavar="COUNTRY", help="Countries members may come from (joint feeds).")
@url_option
@token_option
@click.pass_context
def feed_create(
    ctx: click.Context,
    name: str,
    members: tuple[str, ...],
    writers: tuple[str, ...],
    scope: tuple[str, ...],
    url: str | None,
    token: str | None,
) -> None:
    """Create a feed owned by this centre, with its first members (epoch 1). Only this centre
    and the --writer members may post to it."""
    body: dict[str, Any] = {"name": name, "members": list(members), "writers": list(writers)}
    if scope:
        body["scope"] = list(scope)
    _print_feed(call(ctx, url, token, "POST", "/api/feeds", body))


def _print_outcomes(entry: dict[str, Any]) -> None:
    """What the owning centre did with each office of a membership request."""
    for o in entry.get("outcomes") or []:
        words = {"added": "added", "removed": "removed", "already_member": "already a member",
                 "not_member": "not a member", "refused": "refused"}.get(o["result"], o["result"])  # fmt: skip
        click.echo(f"  {o['office']:<12} {o['change']:<7} {words}" + (f": {o['reason']}" if o.get("reason") else ""))


def _answer(ctx: click.Context, url: str | None, token: str | None, name: str, request_id: str, wait: float) -> dict[str, Any] | None:
    """The owner's answer to request ``request_id``, waited for up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        feeds = call(ctx, url, token, "GET", "/api/feeds")["feeds"]
        feed = next((f for f in feeds if f["name"] == name), {})
        entry = next((r for r in feed.get("requests") or [] if r["id"] == request_id), None)
        if entry is not None and entry.get("answered_at") is not None:
            return entry
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.5)


def _members(
    ctx: click.Context, name: str, key: str, offices: tuple[str, ...], url: str | None, token: str | None,
    post: bool = False, wait: float = 30.0,
) -> None:  # fmt: skip
    body: dict[str, Any] = {key: list(offices)}
    if post:
        body["post"] = True
    answer = call(ctx, url, token, "POST", f"/api/feeds/{name}/members", body)
    if "requested_from" not in answer:
        _print_feed(answer)
        return
    owner = answer["requested_from"]
    click.echo(f"requested from {owner} (it owns {name}): {key} {', '.join(offices)}")
    entry = _answer(ctx, url, token, name, answer["request_id"], wait) if wait > 0 else None
    if entry is None:
        click.echo(f"no answer from {owner} yet; `blo feed list` shows it when it comes")
        return
    click.echo(f"{owner} answered" + (f" (epoch {entry['epoch']}):" if entry.get("epoch") else ", nothing changed:"))
    _print_outcomes(entry)
    if any(o["result"] == "refused" for o in entry["outcomes"]):
        ctx.exit(1)


_wait = click.option(
    "--wait", default=30.0, show_default=True, metavar="SECONDS",
    help="On a feed another centre owns: how long to wait for its answer (0: do not wait). Exit 1 if it refused any office.",
)  # fmt: skip


@feed_group.command("add")
@click.argument("name")
@click.argument("offices", nargs=-1, required=True)
@click.option("--post", is_flag=True, help="The added members may post to the feed too.")
@_wait
@url_option
@token_option
@click.pass_context
def feed_add(
    ctx: click.Context, name: str, offices: tuple[str, ...], post: bool, wait: float, url: str | None, token: str | None
) -> None:
    """Add members; they read from the new epoch on (and post, with --post). On a feed another
    centre owns, the request's outcome per office: added, already a member, or refused (why)."""
    _members(ctx, name, "add", offices, url, token, post=post, wait=wait)


@feed_group.command("remove")
@click.argument("name")
@click.argument("offices", nargs=-1, required=True)
@_wait
@url_option
@token_option
@click.pass_context
def feed_remove(ctx: click.Context, name: str, offices: tuple[str, ...], wait: float, url: str | None, token: str | None) -> None:
    """Remove members; they read nothing sent after."""
    _members(ctx, name, "remove", offices, url, token, wait=wait)


@feed_group.command("writers")
@click.argument("name")
@click.option("--add", "add", multiple=True, metavar="OFFICE", help="A member that may post from now on.")
@click.option("--remove", "remove", multiple=True, metavar="OFFICE", help="A member that may no longer post.")
@url_option
@token_option
@click.pass_context
def feed_writers(
    ctx: click.Context, name: str, add: tuple[str, ...], remove: tuple[str, ...], url: str | None, token: str | None
) -> None:
    """Give members post rights or take them away (a new epoch; members refuse posts from
    anyone else than this centre and the writers)."""
    if not add and not remove:
        raise click.UsageError("name members with --add or --remove")
    _print_feed(call(ctx, url, token, "POST", f"/api/feeds/{name}/writers", {"add": list(add), "remove": list(remove)}))


@feed_group.command("rotate")
@click.argument("name")
@url_option
@token_option
@click.pass_context
def feed_rotate(ctx: click.Context, name: str, url: str | None, token: str | None) -> None:
    """Start a new epoch with a fresh key, same members."""
    _print_feed(call(ctx, url, token, "POST", f"/api/feeds/{name}/rotate"))


@cli.group("triage")
def triage_group() -> None:
    """A centre's triage queue of its offices' bulletins."""


@triage_group.command("list")
@click.option("--state", type=click.Choice(STATES), default=None)
@click.option("--all", "every", is_flag=True, help="Every item, not only the newest 100.")
@url_option
@token_option
@json_option
@click.pass_context
def triage_list(
    ctx: click.Context, state: str | None, every: bool, url: str | None, token: str | None, as_json: bool
) -> None:
    """The queue, newest first."""
    params = {"state": state} if state else {}
    answer = call(ctx, url, token, "GET", "/api/triage", **params)
    while every and answer.get("next"):
        more = call(ctx, url, token, "GET", "/api/triage", **params, cursor=answer["next"])
        answer = {**more, "items": [*answer["items"], *more["items"]]}
    if as_json:
        click.echo(json.dumps(answer, ensure_ascii=False))
        return
    click.echo("  ".join(f"{k}: {v}" for k, v in answer["counts"].items()))
    for item in answer["items"]:
        b = item.get("bulletin") or {}
        click.echo(
            f"{item['state']:<13} {when(item['created_at'])}  {b.get('precedence', '?'):<9} {b.get('from', '?'):<8} "
            f"{item['bulletin_id']}  {b.get('title', '')}"
        )


@triage_group.command("move")
@click.argument("bulletin_id")
@click.argument("state", type=click.Choice(STATES))
@click.option("--note", default=None)
@url_option
@token_option
@click.pass_context
def triage_move(ctx: click.Context, bulletin_id: str, state: str, note: str | None, url: str | None, token: str | None) -> None:
    """Move a bulletin to STATE (with an optional note)."""
    body: dict[str, Any] = {"state": state}
    if note:
        body["note"] = note
    item = call(ctx, url, token, "POST", f"/api/triage/{bulletin_id}", body)
    click.echo(f"{bulletin_id} is {item['state']} ({len(item['notes'])} notes)")


@cli.command("forward")
@click.argument("bulletin_id")
@click.option("--feed", required=True)
@click.option("--redact", "redact", multiple=True, metavar="PATH", help="e.g. entities[0].name, body (repeatable).")
@click.option("--precedence", default=None, help="Keep or raise; never lower.")
@click.option("--tlp", default=None, help="Keep or tighten; never loosen.")
@click.option("--releasable-to", "releasable", default=None, help="Keep or narrow, e.g. TH,LA.")
@click.option("--tag", "tags", multiple=True)
@url_option
@token_option
@click.pass_context
def forward(ctx: click.Context, bulletin_id: str, feed: str, redact: tuple[str, ...], precedence: str | None, tlp: str | None,
            releasable: str | None, tags: tuple[str, ...], url: str | None, token: str | None) -> None:  # fmt: skip
    """Forward an office bulletin to a feed, its original signature kept (unless redacted)."""
    body: dict[str, Any] = {"feed": feed}
    if redact:
        body["redact"] = list(redact)
    for key, value in (("precedence", precedence), ("tlp", tlp)):
        if value:
            body[key] = value
    if releasable:
        body["releasable_to"] = [c.strip() for c in releasable.split(",") if c.strip()]
    if tags:
        body["tags"] = list(tags)
    answer = call(ctx, url, token, "POST", f"/api/bulletins/{bulletin_id}/forward", body)
    note = f", redacted {', '.join(answer['redacted'])}" if answer.get("redacted") else ""
    click.echo(f"forwarded {bulletin_id} to {feed} as {answer['id']} ({answer['state']}{note})")


@cli.command("network")
@url_option
@token_option
@json_option
@click.pass_context
def network(ctx: click.Context, url: str | None, token: str | None, as_json: bool) -> None:
    """A centre's view of its country's offices: online, silent, outbox lag, keys."""
    view = call(ctx, url, token, "GET", "/api/network")
    if as_json:
        click.echo(json.dumps(view, ensure_ascii=False))
        return
    click.echo("  ".join(f"{k}: {v}" for k, v in view["counts"].items()))
    for o in view["offices"]:
        week = sum(d["sent"] + d["received"] for d in o["days"])
        click.echo(
            f"{o['office']:<9} {o['state']:<11} last seen {when(o['last_seen'])}  outbox {o['outbox_depth']:<4} "
            f"FLASH unacked {o['unacked_flash']:<3} key until {when(o['key_expires_at'])}  7 days: {week:<5} "
            f"{' '.join(o['flags'])}"
        )
