"""`blo node run`: run this home's office (or centre) node until SIGTERM or Ctrl-C.

    blo node run [--config PATH/node.toml]

With ``--config``, the home is the folder holding that file (keys/, data/ beside it).
An empty ``[nats] urls`` runs the node's own nats-server on 127.0.0.1 in its data dir.
"""

from __future__ import annotations

from pathlib import Path

import click

from office_node.cli import cli
from office_node.daemon import Daemon, load_node, run, serve_until_stopped, setup_logging
from office_node.home import NodeHome


@cli.group("node")
def node_group() -> None:
    """Run the node daemon."""


@node_group.command("run")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="node.toml to run (default: <home>/node.toml).",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True)
@click.pass_context
def node_run(ctx: click.Context, config_path: Path | None, log_level: str) -> None:
    """Run the node: bus, HTTP API and web page, until SIGTERM or Ctrl-C."""
    setup_logging(log_level)
    home = NodeHome(config_path.resolve().parent if config_path else ctx.obj["home"])
    if config_path is not None and config_path.name != "node.toml":
        raise click.UsageError("--config must name a node.toml file in a node home (its folder holds keys/ and data/)")
    node = load_node(home)

    def started(url: str) -> None:
        click.echo(f"{node.office} ({node.config.role}) on {url}  (Ctrl-C stops it)")

    run(serve_until_stopped(Daemon(node), on_started=started))
