"""The ``blo`` command. Thin: parses arguments, calls the library, prints results."""

from __future__ import annotations

import sys
import time

import click

from bus.errors import BloError


class _Group(click.Group):
    """Prints BloError messages as one clean line instead of a traceback, in the
    terminal's language (office_node/i18n.py)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BloError as exc:
            # In the terminal's language (LANGUAGE, LC_ALL, LANG) when its catalogue has the message.
            from office_node.i18n import localise, terminal_language

            click.echo(f"blo: {localise(exc.message, terminal_language())}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="blo-bus")
@click.option(
    "--home",
    envvar="BLO_HOME",
    default="~/.blo",
    show_default=True,
    help="The node home: keys, config, local store (see office_node/home.py).",
)
@click.pass_context
def cli(ctx: click.Context, home: str) -> None:
    """BLO Bus: signed, encrypted bulletins between Border Liaison Offices."""
    from pathlib import Path

    ctx.obj = {"home": Path(home).expanduser()}


@cli.command("seal-demo")
def seal_demo() -> None:
    """Seal one sample bulletin per language for two offices and open it again, offline."""
    import nacl.utils

    from bus import Identity, OfficeRecipient, Opener, PeerBook, Sealer
    from office_node.samples import sample_bulletins, sample_to_bulletin

    rng = nacl.utils.random
    samples = sample_bulletins()
    # Each office reports to its own country's centre; the TH centre writes to the LA one.
    def centre_of(office: str) -> str:
        return f"{office[:2]}-TCCC" if not office.endswith("-TCCC") else "LA-TCCC"

    offices = {s["from"] for s in samples}
    people = {o: Identity.generate(o, rng) for o in sorted(offices | {centre_of(o) for o in offices})}
    book = PeerBook([p.public() for p in people.values()])
    for sample in samples:
        sender = people[sample["from"]]
        centre = people[centre_of(sample["from"])]
        now = int(time.time() * 1000)
        bulletin = sample_to_bulletin(sample, now_ms=now, rng=rng)
        sealed = Sealer(sender).seal(bulletin, [OfficeRecipient(centre.public())], now_ms=now)
        opened = Opener.for_identity(centre, book).open(sealed, witnessed_at=now)
        assert opened.bulletin == bulletin
        click.echo(
            f"{bulletin.sender:>8} -> {centre.office_id:<8} {bulletin.precedence:<9} {bulletin.tlp:<12} "
            f"{len(sealed):>5} B sealed, opened and verified (key {opened.sender_sign_kid.hex()}): {bulletin.title}"
        )


def main() -> None:
    cli()


def _register_commands() -> None:
    """Import every module of ``office_node.commands``: each registers its commands on
    ``cli`` when imported, so adding a command area is adding a file."""
    import importlib
    import pkgutil

    from office_node import commands

    for module in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"office_node.commands.{module}")


_register_commands()
