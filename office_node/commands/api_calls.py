"""What every command that talks to the local node's HTTP API shares: its --url, --token
and --json options, one call, and how a time is printed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import click

from office_node.client import NodeClient, find_token, find_url
from office_node.home import NodeHome

url_option = click.option("--url", default=None, help="The node's base URL (default: node.toml http.bind, or BLO_URL).")
token_option = click.option("--token", default=None, help="API token (default: BLO_TOKEN or keys/api.token).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the node's answer as JSON.")


def call(ctx: click.Context, url: str | None, token: str | None, method: str, path: str, body: Any = None, **params: str) -> Any:
    """One request to the node of ``ctx``'s home (or ``url``); its JSON answer."""
    home = NodeHome(ctx.obj["home"])

    async def go() -> Any:
        async with NodeClient(find_url(home, url), find_token(home, token)) as client:
            return await client.request(method, path, body=body, params=params or None)

    return asyncio.run(go())


def when(ms: int | None) -> str:
    """A time in ms as local date and minute, or ``-``."""
    return "-" if ms is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))
