"""`blo post` and `blo subscribe`: an officer's jobs from the command line, through the
local node's HTTP API (so they are authenticated, audited and queued exactly like the
web page's).

    blo post --to LA-SVK [--to TH-TCCC] [--feed mekong-border] --kind incident \\
        --precedence IMMEDIATE --tlp AMBER --releasable-to TH,LA --grading B2 \\
        --title "..." [--body-file report.txt | --body-file - ] \\
        [--entity document:doc_type=passport,number=P0847211,country=LA] [--tag bridge2] \\
        [--expires-hours 48] [--attach photo.jpg [--attach manifest.pdf]] [--json]
    blo subscribe [--feed mekong-border] [--json] [--count N] [--save-attachments DIR]

``--attach`` sends each file with the post (multipart): the node sniffs its type, seals it
and uploads it to every recipient's bucket (schemas/ATTACHMENTS.md). ``--save-attachments``
saves each received bulletin's files in ``DIR/<bulletin id>/`` once the node holds them
whole and checked (``office_node/attachment_saver.py``).

Both find the node from node.toml (``http.bind``) or ``--url`` / ``BLO_URL``, and the
token from ``--token`` / ``BLO_TOKEN`` / ``keys/api.token``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from bus import KINDS, PRECEDENCES, TLP_LABELS
from bus.errors import ValidationError
from office_node.attachment_saver import SAVED, AttachmentSaver, Outcome
from office_node.cli import cli
from office_node.client import NodeClient, find_token, find_url
from office_node.home import NodeHome
from office_node.times import iso_utc

HOUR_MS = 3_600_000


def parse_entity(text: str) -> dict[str, Any]:
    """``type:key=value,key=value`` -> an entity dict (the node validates the fields)."""
    kind, sep, rest = text.partition(":")
    if not sep or not kind:
        raise ValidationError("--entity", f"{text!r}: expected TYPE:KEY=VALUE[,KEY=VALUE...], e.g. vehicle:plate=70-1234")
    entity: dict[str, Any] = {"type": kind.strip()}
    for pair in rest.split(","):
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise ValidationError("--entity", f"{pair!r} in {text!r} is not KEY=VALUE")
        key, value = key.strip(), value.strip()
        if key in ("lat", "lon"):
            try:
                entity[key] = float(value)
            except ValueError:
                raise ValidationError("--entity", f"{key} must be a number; got {value!r}") from None
        elif key == "aliases":
            entity[key] = [a.strip() for a in value.split(";") if a.strip()]
        else:
            entity[key] = value
    return entity


def _client(ctx: click.Context, url: str | None, token: str | None) -> NodeClient:
    home = NodeHome(ctx.obj["home"])
    return NodeClient(find_url(home, url), find_token(home, token))


@cli.command("post")
@click.option("--to", "to", multiple=True, metavar="OFFICE", help="Recipient office (repeatable).")
@click.option("--feed", default=None, help="Post to this feed too.")
@click.option("--kind", type=click.Choice(KINDS), required=True)
@click.option("--precedence", type=click.Choice(PRECEDENCES, case_sensitive=False), default="ROUTINE", show_default=True)
@click.option("--tlp", type=click.Choice(TLP_LABELS, case_sensitive=False), default="AMBER", show_default=True)
@click.option("--releasable-to", "releasable", required=True, help="Countries it may reach, e.g. TH,LA.")
@click.option("--grading", default="B2", show_default=True, help="Admiralty: source A-F, information 1-6.")
@click.option("--title", required=True)
@click.option("--body", "body_text", default=None, help="The body text (or use --body-file).")
@click.option("--body-file", type=click.File("r", encoding="utf-8"), default=None, help="Read the body from a file, - for stdin.")
@click.option("--entity", "entities", multiple=True, metavar="TYPE:K=V,...", help="A structured entity (repeatable).")
@click.option("--tag", "tags", multiple=True)
@click.option("--expires-hours", type=click.FloatRange(min=0.01), default=None, help="Lookouts: stop matching after this.")
@click.option("--in-reply-to", default=None)
@click.option(
    "--attach", "files", multiple=True, metavar="FILE",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
    help="Attach this file (repeatable): sealed and sent with the bulletin; the node checks its type and size.",
)  # fmt: skip
@click.option("--url", default=None, help="The node's base URL (default: node.toml http.bind, or BLO_URL).")
@click.option("--token", default=None, help="API token (default: BLO_TOKEN or keys/api.token).")
@click.option("--json", "as_json", is_flag=True, help="Print the node's answer as JSON.")
@click.pass_context
def post(
    ctx: click.Context,
    to: tuple[str, ...],
    feed: str | None,
    kind: str,
    precedence: str,
    tlp: str,
    releasable: str,
    grading: str,
    title: str,
    body_text: str | None,
    body_file: Any,
    entities: tuple[str, ...],
    tags: tuple[str, ...],
    expires_hours: float | None,
    in_reply_to: str | None,
    files: tuple[Path, ...],
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """Post a bulletin through the local node (sealed, queued, sent when the link allows)."""
    if body_text is not None and body_file is not None:
        raise ValidationError("--body", "give --body or --body-file, not both")
    body = body_file.read() if body_file is not None else (body_text or "")
    request: dict[str, Any] = {
        "to": list(to),
        "feed": feed,
        "kind": kind,
        "precedence": precedence,
        "tlp": tlp,
        "releasable_to": [c.strip() for c in releasable.split(",") if c.strip()],
        "grading": grading,
        "title": title,
        "body": body,
        "entities": [parse_entity(e) for e in entities],
        "tags": list(tags),
    }
    if expires_hours is not None:
        request["expires"] = int(time.time() * 1000 + expires_hours * HOUR_MS)
    if in_reply_to:
        request["in_reply_to"] = in_reply_to

    async def send() -> dict[str, Any]:
        async with _client(ctx, url, token) as client:
            answer = await client.post_bulletin(request, files)
            if files:  # what the node made of each file: its sniffed type, its size
                answer["attachments"] = (await client.get(f"/api/bulletins/{answer['id']}"))["attachments"]
            return answer

    answer = asyncio.run(send())
    if as_json:
        click.echo(json.dumps(answer, ensure_ascii=False))
        return
    click.echo(f"{answer['id']} {answer['state']} -> {', '.join(answer.get('recipients', []))}")
    for a in answer.get("attachments", ()):
        click.echo(f"  attached {a['name']} ({a['media_type']}, {a['size']} bytes): uploading to every recipient")


def _line(d: dict[str, Any]) -> str:
    """A bulletin as ``blo subscribe`` prints it. A forward is printed under whose words it
    is (the office only when its signature was checked: ENVELOPE.md 8.1), then a second
    line saying so, e.g. that a redacted forward is the centre's own words."""
    shown = d.get("attribution")
    who = shown["words_of"] if shown else d["from"]
    line = f"{d['precedence']:<9} {d['tlp']:<12} {who:<8} {d.get('feed') or '-':<14} {d['title']}"
    return f"{line}\n{'':<9} -> {shown['text']}" if shown else line


async def _require_feed_read(client: NodeClient, feed: str) -> None:
    """``blo subscribe --feed``: the node must read that feed, or nothing would ever come."""
    feeds = {f["name"] for f in (await client.get("/api/feeds"))["feeds"]}
    if feed not in feeds:
        raise ValidationError(
            "--feed", f"this node does not read {feed!r} (it reads: {', '.join(sorted(feeds)) or 'none'}); "
            "add it to [feeds] subscribe in node.toml"
        )


def _print_bulletin(d: dict[str, Any], *, as_json: bool) -> None:
    """One received bulletin on stdout, at once: a JSON line or ``_line``."""
    click.echo(json.dumps(d, ensure_ascii=False) if as_json else _line(d))
    sys.stdout.flush()


@cli.command("subscribe")
@click.option("--feed", default=None, help="Only bulletins of this feed (the node must read it).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, for scripts.")
@click.option(
    "--count", type=click.IntRange(min=1), default=None,
    help="Stop after this many bulletins (and, with --save-attachments, once their files are saved or refused).",
)  # fmt: skip
@click.option(
    "--save-attachments", "save_dir", default=None, metavar="DIR",
    type=click.Path(file_okay=False, writable=True, path_type=Path),
    help="Save each bulletin's attachments in DIR/<bulletin id>/ once the node holds them whole and checked.",
)  # fmt: skip
@click.option("--url", default=None)
@click.option("--token", default=None)
@click.pass_context
def subscribe(
    ctx: click.Context, feed: str | None, as_json: bool, count: int | None, save_dir: Path | None, url: str | None,
    token: str | None,
) -> None:  # fmt: skip
    """Print bulletins as they reach the local node (Ctrl-C stops)."""

    def report(outcome: Outcome) -> None:
        if as_json:
            click.echo(json.dumps({"attachment": outcome.as_dict()}, ensure_ascii=False))
        elif outcome.state == SAVED:
            click.echo(f"{'':<9} saved {outcome.path} ({outcome.size} bytes)")
        else:
            click.echo(f"{'':<9} not saved: {outcome.name} ({outcome.state}): {outcome.message}")
        sys.stdout.flush()

    async def follow() -> None:
        async with _client(ctx, url, token) as client:
            saver = AttachmentSaver(client, save_dir, report) if save_dir is not None else None
            if feed is not None:
                await _require_feed_read(client, feed)
            seen = 0
            opened = lambda: click.echo(f"blo: following the bulletins reaching {client.base_url} (Ctrl-C stops)", err=True)  # noqa: E731
            async for event in client.events(on_open=opened):
                if event.kind == "attachment" and saver is not None:
                    await saver.on_event(event.data)
                elif event.kind == "bulletin" and event.data.get("direction") == "received":
                    if feed is not None and event.data.get("feed") != feed:
                        continue
                    if count is not None and seen >= count:
                        continue  # only finishing the files of those already printed
                    _print_bulletin(event.data, as_json=as_json)
                    seen += 1
                    if saver is not None:
                        await saver.follow(event.data["id"])
                else:
                    continue
                if count is not None and seen >= count and (saver is None or saver.idle):
                    return

    try:
        asyncio.run(follow())
    except KeyboardInterrupt:
        pass


@cli.command("ack")
@click.argument("bulletin_id")
@click.option("--url", default=None)
@click.option("--token", default=None)
@click.pass_context
def ack(ctx: click.Context, bulletin_id: str, url: str | None, token: str | None) -> None:
    """Acknowledge a FLASH received here, as the officer the token belongs to.

    Its sender gets a signed `acknowledged` receipt, which ends the FLASH's escalation
    (until then the sender sees "delivered, not acknowledged" and tells the centres)."""

    async def send() -> dict[str, Any]:
        async with _client(ctx, url, token) as client:
            return await client.request("POST", f"/api/bulletins/{bulletin_id}/ack")

    result = asyncio.run(send())
    who = result["acknowledged"]
    if result["first"]:
        click.echo(f"acknowledged {bulletin_id}; the sender is told")
    else:
        click.echo(f"{bulletin_id} was already acknowledged by {who['by']} at {iso_utc(who['at'])}")
