"""Honest link status: a frozen server is "stalled", not "connected"; a node whose NATS
user the server refuses says its credentials were refused. On real nats-servers,
bounded in time, the frozen one always thawed."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import nacl.utils
import pytest

from bus.transport.client import BusClient, ClientConfig
from bus.transport.nkey import new_user_seed
from bus.transport.server import NatsServer
from tests.bus_helpers import eventually, make_node, offices
from tests.deploy_helpers import Keys, secured_server


async def test_a_frozen_server_makes_the_link_stalled_and_it_is_connected_again_when_it_thaws(tmp_path: Path) -> None:
    (muk,), book = offices("TH-MUK")
    with NatsServer(tmp_path / "nats") as server:
        assert server.proc is not None
        node = make_node(muk, book, tmp_path / "muk", server.url)
        node.client_config = ClientConfig(
            urls=(server.url,), liveness_every_s=0.2, liveness_timeout_s=0.5, reconnect_wait_s=0.2
        )
        await node.start()
        try:
            await eventually(lambda: node.link == "connected", 10, "connected")
            os.kill(server.proc.pid, signal.SIGSTOP)
            try:
                # The TCP link stays open and nats-py's own pings take minutes: the probe sees it.
                await eventually(lambda: node.link == "stalled", 10, "stalled")
                assert any(e == "stalled" for e, _ in node.events)
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
            await eventually(lambda: node.link == "connected", 15, "connected again")
            assert any(e == "resumed" for e, _ in node.events)
        finally:
            await node.close()


async def test_a_node_whose_nats_user_is_unknown_says_its_credentials_were_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keys = Keys(tmp_path / "keys")
    server = await asyncio.to_thread(secured_server, tmp_path, [], keys)  # it runs its own event loop
    try:
        stranger = tmp_path / "keys" / "removed.nk"
        stranger.write_bytes(new_user_seed(nacl.utils.random))  # a user the server does not know (removed)
        stranger.chmod(0o600)
        client = BusClient(ClientConfig(urls=(server.url,), nkey_seed=stranger, reconnect_wait_s=0.2, connect_timeout_s=1.0))
        with caplog.at_level(logging.ERROR, logger="blo.bus.client"):
            await client.start()
            try:
                await eventually(lambda: client.credentials_refused, 10, "the refusal")
                assert not client.connected
                assert "this node's NATS credentials were refused" in (client.last_error or "")
            finally:
                await client.close()
        assert any("NATS credentials were refused" in r.getMessage() for r in caplog.records)
    finally:
        server.stop()
