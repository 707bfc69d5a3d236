"""`blo check` and `blo watchlist import`, through the local node's API.

    blo check --document P1234567 [--country LA]
    blo check --person "Souksavanh Phommachanh" [--dob 1985-03-14] [--nationality LA]
    blo check --vehicle 70-1234 [--country TH]
    blo check --phone "020 5555 1234" --country LA
    blo watchlist import list.csv [--to TH-MUK]... [--feed NAME] [--releasable-to TH,LA]

`blo check` answers from the node's local index, so it works while the link is down.
It prints FLAGGED or CLEAR first (``--json``: the node's answer as JSON) and exits
with a code a checkpoint script can act on: ``CHECK_EXIT`` below, listed in ``--help``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from bus.errors import ValidationError
from office_node.cli import cli
from office_node.client import NodeClient, find_token, find_url
from office_node.home import NodeHome

#: ``blo check`` exit codes (written out in its --help). Anything but CLEAR means "do not wave through".
EXIT_CLEAR = 0
EXIT_FLAGGED = 3
EXIT_NOT_CHECKED = 2  # bad input, no token, the node unreachable or refusing: the same as every blo error


def _client(ctx: click.Context, url: str | None, token: str | None) -> NodeClient:
    home = NodeHome(ctx.obj["home"])
    return NodeClient(find_url(home, url), find_token(home, token))


def check_query(
    document: str | None, person: str | None, vehicle: str | None, phone: str | None,
    country: str | None, dob: str | None, nationality: str | None,
) -> dict[str, Any]:  # fmt: skip
    """The entity to check from the command's options (exactly one of the four kinds)."""
    given = [(k, v) for k, v in (("document", document), ("person", person), ("vehicle", vehicle), ("phone", phone)) if v]
    if len(given) != 1:
        raise ValidationError("--document", "give exactly one of --document, --person, --vehicle, --phone")
    kind, value = given[0]
    query: dict[str, Any] = {"type": kind}
    if kind == "document":
        query.update(number=value, doc_type="passport")
    elif kind == "person":
        query["name"] = value
        if dob:
            query["dob"] = dob
        if nationality:
            query["nationality"] = nationality
    elif kind == "vehicle":
        query["plate"] = value
    else:
        query["number"] = value
    if country and kind in ("document", "vehicle", "phone"):
        query["country"] = country.upper()
    return query


@cli.command("check")
@click.option("--document", default=None, metavar="NUMBER", help="A travel document number.")
@click.option("--person", default=None, metavar="NAME")
@click.option("--vehicle", default=None, metavar="PLATE")
@click.option("--phone", default=None, metavar="NUMBER")
@click.option(
    "--country",
    default=None,
    help="Issuing country of the document or plate (narrows the match); for a phone written without +, "
    "its country (default: this office's).",
)
@click.option("--dob", default=None, help="Date of birth YYYY-MM-DD (persons).")
@click.option("--nationality", default=None)
@click.option("--url", default=None)
@click.option("--token", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the node's answer as JSON (same exit codes).")
@click.pass_context
def check(ctx: click.Context, document: str | None, person: str | None, vehicle: str | None, phone: str | None,
          country: str | None, dob: str | None, nationality: str | None, url: str | None, token: str | None,
          as_json: bool) -> None:  # fmt: skip
    """Is this document, person, vehicle or phone the subject of an active lookout?

    \b
    Exit codes:
      0  CLEAR: no active lookout names it on this node
      3  FLAGGED: at least one active lookout names it
      2  not checked: bad input, no token, the node unreachable or refusing
      1  an unexpected failure
    Only 0 is CLEAR.
    """
    query = check_query(document, person, vehicle, phone, country, dob, nationality)

    async def ask() -> dict[str, Any]:
        async with _client(ctx, url, token) as client:
            return await client.request("POST", "/api/check", body=query)

    result = asyncio.run(ask())
    matches = result["matches"]
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
        ctx.exit(EXIT_FLAGGED if matches else EXIT_CLEAR)
    click.echo("FLAGGED" if matches else "CLEAR: no active lookout names it on this node")
    for m in matches:
        click.echo(
            f"  {m['precedence']:<9} {m['tlp']:<12} grading {m['grading']}  {m['strength']:<7} {m['key_kind']:<9} "
            f"{m['sender']:<8} {m['bulletin_id']}  {m.get('title', '')}"
        )
    for m in result["mentions"]:
        click.echo(f"  also mentioned in {m['kind']} {m['bulletin_id']} from {m['sender']}: {m.get('title', '')}")
    ctx.exit(EXIT_FLAGGED if matches else EXIT_CLEAR)


@cli.group("watchlist")
def watchlist_group() -> None:
    """Watch lists: a CSV of wanted documents, persons, vehicles and phones, sent as lookouts."""


@watchlist_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--to", "to", multiple=True, metavar="OFFICE", help="Send to these offices (default: this country's).")
@click.option("--feed", default=None)
@click.option("--releasable-to", "releasable", default=None, help="e.g. TH,LA (default: the recipients' countries).")
@click.option("--default-country", default=None, help="Issuing country for rows that name none.")
@click.option("--url", default=None)
@click.option("--token", default=None)
@click.pass_context
def watchlist_import(ctx: click.Context, csv_file: Path, to: tuple[str, ...], feed: str | None, releasable: str | None,
                     default_country: str | None, url: str | None, token: str | None) -> None:  # fmt: skip
    """Import a watch list; bad rows are reported by line number, good rows are sent."""
    body: dict[str, Any] = {"csv": csv_file.read_text(encoding="utf-8-sig"), "to": list(to), "feed": feed}
    if releasable:
        body["releasable_to"] = [c.strip() for c in releasable.split(",") if c.strip()]
    if default_country:
        body["default_country"] = default_country

    async def send() -> dict[str, Any]:
        async with _client(ctx, url, token) as client:
            return await client.request("POST", "/api/watchlists", body=body)

    result = asyncio.run(send())
    click.echo(f"imported {result['imported']} lookouts -> {', '.join(result['recipients'])}")
    for e in result["errors"]:
        where = f"line {e['line']}" + (f", column {e['column']}" if e["column"] else "")
        click.echo(f"  skipped {where}: {e['message']}")
