"""Creating a deployment's streams (bus/transport/provision.py) against a real nats-server."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.errors import BusError
from bus.transport.client import BusClient, ClientConfig
from bus.transport.provision import apply_plans
from bus.transport.server import NatsServer
from bus.transport.topology import StreamPlan, leaf_outbox_streams


async def test_a_leaf_with_too_small_max_file_store_is_told_how_much_the_streams_need(tmp_path: Path) -> None:
    conf = tmp_path / "leaf.conf"
    conf.write_text("jetstream { max_file_store: 1048576 }\n")  # 1 MiB: far too small for BLO_OUTBOX
    server = NatsServer(tmp_path / "nats", config_file=conf).start()
    client = BusClient(ClientConfig(urls=(server.url,)))
    try:
        await client.start()
        assert await client.wait_connected(5)
        plans = [StreamPlan(s) for s in leaf_outbox_streams("TH-MUK")]
        with pytest.raises(BusError) as info:
            await apply_plans(client, plans)
        need = sum(p.spec.max_bytes for p in plans)
        assert "BLO_OUTBOX" in info.value.message and "2.0 GiB" in info.value.message
        assert f"max_file_store: {need}" in info.value.message, info.value.message
    finally:
        await client.close()
        server.stop()
