"""`blo demo`: the pilot network on one laptop (what `make run` runs). See office_node/demo.py."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import click

from office_node.cli import cli
from office_node.daemon import run, setup_logging
from office_node.demo import DemoPorts, run_demo


@cli.command("demo")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=".blo-demo", show_default=True)
@click.option("--fresh", is_flag=True, help="Delete the demo network and build a new one.")
@click.option("--base-port", type=click.IntRange(1024, 65000), default=8181, show_default=True,
              help="First of six HTTP ports; NATS listens on 14222 + (base-port - 8181).")  # fmt: skip
def demo(root: Path, fresh: bool, base_port: int) -> None:
    """Run a pilot network: NATS, TH and LA centres, two cross-border office pairs."""
    setup_logging("warning")
    ports = DemoPorts(nats=14222 + (base_port - 8181), http_base=base_port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await run_demo(root.resolve(), ports, fresh=fresh, echo=click.echo, stop=stop)
        click.echo("demo stopped; its network is kept in " + str(root))

    run(main())
