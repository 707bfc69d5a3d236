"""Creating a deployment's streams (bus/transport/provision.py) against a real nats-server."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.errors import BusError
from bus.transport.client import BusClient, ClientConfig
from bus.transport.object_store import bucket_specs
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


async def test_attachment_buckets_too_big_for_the_server_are_named_with_the_total_and_the_way_out(tmp_path: Path) -> None:
    conf = tmp_path / "hub.conf"
    conf.write_text("jetstream { max_file_store: 104857600 }\n")  # 100 MiB: room for one 64 MiB bucket, not two
    server = NatsServer(tmp_path / "nats", config_file=conf).start()
    client = BusClient(ClientConfig(urls=(server.url,)))
    try:
        await client.start()
        assert await client.wait_connected(5)
        buckets = bucket_specs(["TH-MUK", "LA-SVK"], [], max_age_s=86_400, max_bytes=64 * 1024**2)
        with pytest.raises(BusError) as info:
            await apply_plans(client, [], buckets)
        message = info.value.message
        assert "OBJ_blo-att-office-LA-SVK" in message and f"max_file_store: {128 * 1024**2}" in message, message
        assert "--bucket-mib" in message
    finally:
        await client.close()
        server.stop()
