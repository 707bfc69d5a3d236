"""MISP and STIX 2.1 from the command line, through the local node's API.

    blo export --format misp|stix [--since 2024-05-01|7d] [--until ...] [--feed NAME]
               [--for OFFICE,...] [--id BULLETIN] [--output FILE]
    blo import FILE                  (a centre: MISP JSON or a STIX bundle -> drafts in triage)
    blo draft list [--state new] | blo draft show ID
    blo draft move ID STATE [--note TEXT]
    blo draft send ID --to OFFICE... [--feed NAME] [--tlp ...] [--releasable-to TH,LA] ...
    blo misp sync                    (a centre: one round of the MISP bridge now)

Exports and imports are authenticated and audited by the node like everything else; the
handling rules decide what leaves (schemas/MAPPING.md): a TLP:RED bulletin is withheld
unless ``--for`` names only its addressees.
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from bus import KINDS, PRECEDENCES, TLP_LABELS
from bus.errors import ValidationError
from office_node.cli import cli
from office_node.commands.api_calls import call, json_option, token_option, url_option, when
from office_node.triage import DRAFT_STATES

_RELATIVE = re.compile(r"^([0-9]{1,6})([hd])$")


def parse_when(text: str, *, now_ms: int | None = None) -> int:
    """``2024-05-01``, ``2024-05-01T08:00:00Z``, ``7d``, ``24h`` or milliseconds -> ms since the epoch."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    m = _RELATIVE.match(text)
    if m:
        return now - int(m.group(1)) * (3_600_000 if m.group(2) == "h" else 86_400_000)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError("--since", f"{text!r}: use a date (2024-05-01), a time (2024-05-01T08:00:00Z), 7d, 24h or milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@cli.command("export")
@click.option("--format", "fmt", type=click.Choice(["misp", "stix"]), required=True)
@click.option("--since", default=None, help="From this time on: 2024-05-01, 2024-05-01T08:00:00Z, 7d, 24h.")
@click.option("--until", default=None, help="Before this time (same forms).")
@click.option("--feed", default=None, help="Only bulletins of this feed.")
@click.option("--for", "audience", default=None, help="The offices it is for, e.g. TH-MUK,LA-SVK (TLP:RED needs its addressees).")
@click.option("--id", "bulletin_id", default=None, help="One bulletin only (refused, not withheld, if the rules say no).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write here (default: stdout).")
@url_option
@token_option
@click.pass_context
def export(
    ctx: click.Context, fmt: str, since: str | None, until: str | None, feed: str | None, audience: str | None,
    bulletin_id: str | None, output: Path | None, url: str | None, token: str | None,
) -> None:  # fmt: skip
    """Bulletins stored on this node as MISP JSON or a STIX 2.1 bundle."""
    params: dict[str, str] = {"format": fmt}
    if audience:
        params["for"] = audience
    if bulletin_id:
        if since or until or feed:
            raise ValidationError("--id", "export one bulletin (--id) or a range (--since, --until, --feed), not both")
        document = call(ctx, url, token, "GET", f"/api/bulletins/{bulletin_id}", **params)
        withheld: list[dict[str, Any]] = []
        count = 1
    else:
        for name, value in (("since", since), ("until", until)):
            if value:
                params[name] = str(parse_when(value))
        if feed:
            params["feed"] = feed
        answer = call(ctx, url, token, "GET", "/api/export", **params)
        document, withheld, count = answer["document"], answer["withheld"], answer["exported"]
    text = json.dumps(document, ensure_ascii=False, indent=1) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
    click.echo(f"exported {count} bulletin{'s' if count != 1 else ''} as {fmt}" + (f" to {output}" if output else ""), err=True)
    for w in withheld:
        click.echo(f"withheld {w['id']} ({w['rule']}): {w['message']}", err=True)


@cli.command("import")
@click.argument("file", type=click.File("rb"))
@url_option
@token_option
@json_option
@click.pass_context
def import_(ctx: click.Context, file: Any, url: str | None, token: str | None, as_json: bool) -> None:
    """A MISP event file or a STIX 2.1 bundle becomes drafts in this centre's triage queue."""
    raw = file.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValidationError("FILE", f"{file.name} is not UTF-8 text: export it from MISP or the STIX tool as JSON") from None
    answer = call(ctx, url, token, "POST", "/api/imports", {"text": text, "name": Path(file.name).name})
    if as_json:
        click.echo(json.dumps(answer, ensure_ascii=False))
        return
    for d in answer["drafts"]:
        local = "  (TLP:RED: kept here, never sent)" if d["local_only"] else ""
        click.echo(
            f"draft {d['id']}  {d['tlp']:<12} releasable {','.join(d['releasable_to']):<8} {d['entities']:>3} entities "
            f"{d['warnings']:>2} warnings  {d['title']}{local}"
        )
    for ref in answer["skipped"]:
        click.echo(f"already queued: {ref}")


@cli.group("draft")
def draft_group() -> None:
    """A centre's imported drafts: review, edit, send or close them."""


@draft_group.command("list")
@click.option("--state", type=click.Choice(DRAFT_STATES), default=None)
@url_option
@token_option
@json_option
@click.pass_context
def draft_list(ctx: click.Context, state: str | None, url: str | None, token: str | None, as_json: bool) -> None:
    """Drafts, newest first."""
    answer = call(ctx, url, token, "GET", "/api/drafts", **({"state": state} if state else {}))
    if as_json:
        click.echo(json.dumps(answer, ensure_ascii=False))
        return
    click.echo("  ".join(f"{k}: {v}" for k, v in answer["counts"].items()))
    for d in answer["items"]:
        click.echo(f"{d['state']:<10} {when(d['created_at'])}  {d['tlp']:<12} {d['id']}  {d['title']}")


@draft_group.command("show")
@click.argument("draft_id")
@url_option
@token_option
@click.pass_context
def draft_show(ctx: click.Context, draft_id: str, url: str | None, token: str | None) -> None:
    """One draft: its fields, the handling its source allows and why, the import's warnings."""
    click.echo(json.dumps(call(ctx, url, token, "GET", f"/api/drafts/{draft_id}"), ensure_ascii=False, indent=1))


@draft_group.command("move")
@click.argument("draft_id")
@click.argument("state", type=click.Choice([s for s in DRAFT_STATES if s != "sent"]))
@click.option("--note", default=None)
@url_option
@token_option
@click.pass_context
def draft_move(ctx: click.Context, draft_id: str, state: str, note: str | None, url: str | None, token: str | None) -> None:
    """Move a draft to STATE (with an optional note)."""
    body: dict[str, Any] = {"state": state, **({"note": note} if note else {})}
    item = call(ctx, url, token, "POST", f"/api/drafts/{draft_id}", body)
    click.echo(f"{draft_id} is {item['state']} ({len(item['notes'])} notes)")


@draft_group.command("send")
@click.argument("draft_id")
@click.option("--to", "to", multiple=True, metavar="OFFICE")
@click.option("--feed", default=None)
@click.option("--tlp", type=click.Choice(TLP_LABELS), default=None, help="Keep or tighten the source's.")
@click.option("--releasable-to", "releasable", default=None, help="Keep or narrow the source's, e.g. TH.")
@click.option("--precedence", type=click.Choice(PRECEDENCES), default=None)
@click.option("--kind", type=click.Choice(KINDS), default=None)
@click.option("--grading", default=None)
@click.option("--title", default=None)
@url_option
@token_option
@click.pass_context
def draft_send(
    ctx: click.Context, draft_id: str, to: tuple[str, ...], feed: str | None, tlp: str | None, releasable: str | None,
    precedence: str | None, kind: str | None, grading: str | None, title: str | None, url: str | None, token: str | None,
) -> None:  # fmt: skip
    """Seal and send a reviewed draft to offices and/or a feed."""
    body: dict[str, Any] = {"to": list(to), "feed": feed}
    for key, value in (("tlp", tlp), ("precedence", precedence), ("kind", kind), ("grading", grading), ("title", title)):
        if value:
            body[key] = value
    if releasable:
        body["releasable_to"] = [c.strip() for c in releasable.split(",") if c.strip()]
    answer = call(ctx, url, token, "POST", f"/api/drafts/{draft_id}/send", body)
    click.echo(f"draft {draft_id} sent as {answer['id']} ({answer['state']}) -> {', '.join(answer['recipients'])}")


@cli.group("misp")
def misp_group() -> None:
    """A centre's live bridge to a MISP server ([misp] in node.toml)."""


@misp_group.command("sync")
@url_option
@token_option
@json_option
@click.pass_context
def misp_sync(ctx: click.Context, url: str | None, token: str | None, as_json: bool) -> None:
    """Run one round of the bridge now: push, then pull."""
    answer = call(ctx, url, token, "POST", "/api/misp/sync", {})
    if as_json:
        click.echo(json.dumps(answer, ensure_ascii=False))
        return
    click.echo(
        f"pushed {len(answer['pushed'])}, already there {len(answer['present'])}, refused {len(answer['refused'])}, "
        f"new drafts {len(answer['drafts'])}"
    )
    for r in answer["refused"]:
        click.echo(f"not pushed {r['id']} ({r['rule']}): {r['message']}", err=True)
    sys.stdout.flush()
