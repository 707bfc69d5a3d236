"""The NATS client shell: configuration checks, nkey sign-in, permission refusals, dedup ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from bus.errors import BusError, ConfigError, NotConnected, PermissionDenied, PublishUnconfirmed
from bus.transport.client import Ack, BusClient, ClientConfig
from bus.transport.server import NatsServer
from bus.transport.subjects import default_streams

pytestmark = pytest.mark.timeout(60)

# The example user nkey from the NATS documentation: a test identity, never a real one.
SEED = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY"
PUBLIC = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"


def test_config_problems_are_reported_before_connecting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="URL"):
        ClientConfig(urls=("localhost:4222",)).check()
    with pytest.raises(ConfigError, match="creds"):
        ClientConfig(urls=("nats://127.0.0.1:4222",), creds=tmp_path / "missing.creds").check()
    with pytest.raises(ConfigError, match="tls_cert and tls_key"):
        seed = tmp_path / "x"
        seed.write_text("x")
        ClientConfig(urls=("nats://127.0.0.1:4222",), tls_cert=seed).check()


async def test_publishing_while_disconnected_says_not_connected(tmp_path: Path) -> None:
    client = BusClient(ClientConfig(urls=("nats://127.0.0.1:1",), reconnect_wait_s=0.1))
    await client.start()
    try:
        assert not await client.wait_connected(0.3)
        with pytest.raises(NotConnected):
            await client.publish("blo.office.LA-SVK.flash", b"x", "id-1")
    finally:
        await client.close()


async def test_republishing_with_the_same_id_is_stored_once(nats_server: NatsServer) -> None:
    client = BusClient(ClientConfig(urls=(nats_server.url,)))
    await client.start()
    try:
        assert await client.wait_connected(5)
        await client.ensure_streams(default_streams())
        await client.ensure_streams(default_streams())  # idempotent
        first = await client.publish("blo.office.LA-SVK.routine", b"one", "same-id")
        again = await client.publish("blo.office.LA-SVK.routine", b"one", "same-id")
        assert (first.duplicate, again.duplicate, again.seq) == (False, True, first.seq)
        batch = await client.publish_batch(
            [("blo.office.LA-SVK.routine", b"two", "id-2"), ("blo.office.LA-SVK.routine", b"one", "same-id")]
        )
        assert all(isinstance(r, Ack) for r in batch) and [r.duplicate for r in batch] == [False, True]
    finally:
        await client.close()


async def test_a_window_reports_each_copy_stored_refused_or_without_a_stream_in_order(nats_server: NatsServer) -> None:
    client = BusClient(ClientConfig(urls=(nats_server.url,)))
    await client.start()
    try:
        assert await client.wait_connected(5)
        await client.ensure_streams(default_streams())
        too_big = b"r" * 5000  # the receipt stream takes 4 KiB at most
        results = await client.publish_batch(
            [
                ("blo.office.LA-SVK.routine.TH-MUK", b"one", "w-1"),
                ("blo.nowhere.LA-SVK", b"two", "w-2"),
                ("blo.receipt.TH-MUK.LA-SVK", too_big, "w-3"),
                ("blo.office.LA-SVK.routine.TH-MUK", b"four", "w-4"),
            ]
        )
        assert isinstance(results[0], Ack) and isinstance(results[3], Ack) and results[3].seq == results[0].seq + 1
        assert isinstance(results[1], BusError) and "no stream stores blo.nowhere.LA-SVK" in results[1].message
        assert isinstance(results[2], BusError) and "JetStream refused w-3" in results[2].message
    finally:
        await client.close()


async def test_a_denied_publish_is_permission_denied_naming_the_subject(tmp_path: Path) -> None:
    conf = tmp_path / "auth.conf"
    conf.write_text(
        "jetstream {}\n"
        "authorization {\n"
        "  users = [\n"
        f'    {{ nkey: "{PUBLIC}", permissions: {{ publish: {{ allow: [">"], deny: ["blo.office.TH-TCCC.>"] }} }} }}\n'
        "  ]\n"
        "}\n"
    )
    seed = tmp_path / "office.nk"
    seed.write_text(SEED)
    seed.chmod(0o600)
    events: list[tuple[str, str]] = []
    with NatsServer(tmp_path / "nats", config_file=conf) as server:
        client = BusClient(
            ClientConfig(urls=(server.url,), nkey_seed=seed, publish_timeout_s=1.0),
            listener=lambda e, d: events.append((e, d)),
        )
        await client.start()
        try:
            assert await client.wait_connected(5), events
            await client.ensure_streams(default_streams())
            await client.publish("blo.office.LA-SVK.flash", b"ok", "allowed")  # signed in with the nkey, allowed
            with pytest.raises(PermissionDenied, match=r"blo\.office\.TH-TCCC\.flash"):
                await client.publish("blo.office.TH-TCCC.flash", b"no", "denied")
            results = await client.publish_batch([("blo.office.TH-TCCC.routine", b"no", "denied-2")])
            assert isinstance(results[0], PermissionDenied)
            assert not isinstance(results[0], PublishUnconfirmed)
            assert any(e == "permission_denied" for e, _ in events)
        finally:
            await client.close()
