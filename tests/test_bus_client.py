"""The NATS client shell: configuration checks, nkey sign-in, permission refusals, dedup ids."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import nats.errors
import pytest

from bus.errors import BusError, ConfigError, NoStream, NotConnected, PermissionDenied, PublishUnconfirmed
from bus.transport import client as client_module
from bus.transport.client import Ack, BusClient, ClientConfig, _ack_of, ack_all, stream_config
from bus.transport.server import NatsServer
from bus.transport.subjects import MAX_CONSUMERS, STREAM_OFFICES, ConsumerSpec, default_streams, node_consumers

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
        assert isinstance(results[1], NoStream) and "did not answer for blo.nowhere.LA-SVK" in results[1].message
        assert isinstance(results[2], BusError) and "JetStream refused w-3" in results[2].message
    finally:
        await client.close()


def _denied_tccc(tmp_path: Path) -> tuple[Path, Path]:
    """A server configuration whose one user (the nkey seed returned) may publish
    anything but what goes to TH-TCCC's inbox."""
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
    return conf, seed


async def test_a_denied_publish_is_permission_denied_naming_the_subject(tmp_path: Path) -> None:
    conf, seed = _denied_tccc(tmp_path)
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


class _Reply:
    """Just what ``_ack_of`` reads of nats-py's Msg."""

    def __init__(self, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.data = data
        self.headers = headers


@pytest.mark.parametrize(
    ("data", "want"),
    [
        (b'{"stream":"BLO_OFFICES","seq":7}', Ack("BLO_OFFICES", 7, False)),
        (b'{"stream":"BLO_OFFICES","seq":7,"duplicate":true}', Ack("BLO_OFFICES", 7, True)),
        (b'{"stream":"BLO_OFFICES","domain":"hub","seq":7}', Ack("BLO_OFFICES", 7, False)),
        (b'{"stream":"BLO_OFFICES","seq":7,"duplicate":false}', Ack("BLO_OFFICES", 7, False)),  # the JSON path
        (b'{ "seq": 7, "stream": "BLO_OFFICES" }', Ack("BLO_OFFICES", 7, False)),
        (b'{"stream":"BLO_OFFICES","seq":7,"duplicate":true,"val":"x"}', Ack("BLO_OFFICES", 7, True)),
    ],
)
def test_acks_read_the_same_on_the_fast_path_and_through_json(data: bytes, want: Ack) -> None:
    assert _ack_of(_Reply(data), "blo.office.LA-SVK.routine.TH-MUK", "id-1") == want


@pytest.mark.parametrize(
    ("data", "headers", "says"),
    [
        (b'{"error":{"code":400,"description":"bad"}}', None, "JetStream refused id-1"),
        (b"", {"Status": "503"}, "the hub is unreachable or restarting"),
        (b'{"stream":"BLO_OFFICES","seq":"x7"}', None, "unreadable"),
        (b"not json", None, "unreadable"),
    ],
)
def test_refusals_and_garbled_acks_are_bus_errors(data: bytes, headers: dict[str, str] | None, says: str) -> None:
    result = _ack_of(_Reply(data, headers), "blo.office.LA-SVK.routine.TH-MUK", "id-1")
    assert isinstance(result, BusError) and says in result.message


async def _window_results(client: BusClient) -> list[Ack | BusError]:
    await client.ensure_streams(default_streams())
    return await client.publish_batch(
        [
            ("blo.office.LA-SVK.routine.TH-MUK", b"one", "o-1"),
            ("blo.nowhere.LA-SVK", b"two", "o-2"),
            ("blo.office.LA-SVK.routine.TH-MUK", b"three", "o-3"),
            ("blo.office.LA-SVK.routine.TH-MUK", b"one", "o-1"),
        ]
    )


@pytest.mark.parametrize("one_by_one", [False, True])
async def test_a_window_gets_the_same_answers_written_whole_or_one_by_one(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch, one_by_one: bool
) -> None:
    if one_by_one:  # as with a nats-py lacking the write buffer the fast path uses

        async def no_fast_path(*args: object) -> bool:
            return False

        monkeypatch.setattr(client_module, "write_publishes", no_fast_path)
    client = BusClient(ClientConfig(urls=(nats_server.url,)))
    await client.start()
    try:
        assert await client.wait_connected(5)
        one, nowhere, three, again = await _window_results(client)
        assert isinstance(one, Ack) and isinstance(three, Ack) and three.seq == one.seq + 1
        assert isinstance(again, Ack) and again.duplicate and again.seq == one.seq
        assert isinstance(nowhere, NoStream) and "the hub is unreachable or restarting" in nowhere.message
    finally:
        await client.close()


async def test_a_payload_over_the_servers_limit_is_an_error_result_and_the_rest_go_out(tmp_path: Path) -> None:
    conf = tmp_path / "small.conf"
    conf.write_text("jetstream {}\nmax_payload: 4096\n")
    with NatsServer(tmp_path / "nats", config_file=conf) as server:
        client = BusClient(ClientConfig(urls=(server.url,)))
        await client.start()
        try:
            assert await client.wait_connected(5)
            await client.ensure_streams(default_streams())
            small, big, after = await client.publish_batch(
                [
                    ("blo.office.LA-SVK.routine.TH-MUK", b"s", "m-1"),
                    ("blo.office.LA-SVK.routine.TH-MUK", b"b" * 5000, "m-2"),
                    ("blo.office.LA-SVK.routine.TH-MUK", b"a", "m-3"),
                ]
            )
            assert isinstance(small, Ack) and isinstance(after, Ack) and after.seq == small.seq + 1
            assert isinstance(big, BusError) and "m-2" in big.message
            assert client.connected  # the server was never sent more than it takes
        finally:
            await client.close()


async def test_acked_messages_are_not_delivered_again(nats_server: NatsServer) -> None:
    client = BusClient(ClientConfig(urls=(nats_server.url,)))
    await client.start()
    try:
        assert await client.wait_connected(5)
        await client.ensure_streams(default_streams())
        for n in range(5):
            await client.publish("blo.office.LA-SVK.routine.TH-MUK", b"%d" % n, f"a-{n}")
        spec = ConsumerSpec("BLO_OFFICES", "acks-test", "blo.office.LA-SVK.routine.*", 3)
        consumer = await client.pull(spec, ack_wait_s=1.0)
        got = await consumer.fetch(10, 1.0)
        assert [m.data for m in got] == [b"0", b"1", b"2", b"3", b"4"]
        assert await ack_all(got[:3])
        await asyncio.sleep(1.5)  # past the ack wait: the unacked two come again, the acked three never
        again = await consumer.fetch(10, 2.0)
        assert [m.data for m in again] == [b"3", b"4"]
        assert await ack_all(again)
        with pytest.raises(nats.errors.Error):  # each is acked once only, as msg.ack() says
            await again[0].ack()
    finally:
        await client.close()


# -- fast batches (bus/transport/fast_batch.py) against a real server --------------------

OFFICE_SUBJECT = "blo.office.LA-SVK.routine.TH-MUK"


async def _connected(url: str, **config: object) -> BusClient:
    client = BusClient(ClientConfig(urls=(url,), **config))  # type: ignore[arg-type]
    await client.start()
    assert await client.wait_connected(5)
    return client


@pytest.fixture
async def streams_client(nats_server: NatsServer) -> AsyncIterator[BusClient]:
    """A client connected to the test server, the layout's streams in place."""
    client = await _connected(nats_server.url)
    try:
        await client.ensure_streams(default_streams())
        yield client
    finally:
        await client.close()


async def _stored(client: BusClient, stream: str) -> int:
    return (await client.jetstream().stream_info(stream)).state.messages


async def test_a_window_to_one_stream_is_stored_with_a_few_acks_not_one_per_message(streams_client: BusClient) -> None:
    items = [(OFFICE_SUBJECT, b"copy %d" % i, f"fb-{i}") for i in range(64)]
    before = streams_client._nc.stats["in_msgs"]
    results = await streams_client.publish_batch(items)
    replies = streams_client._nc.stats["in_msgs"] - before
    assert all(type(r) is Ack and r.stream == "BLO_OFFICES" for r in results)
    # The server chooses how often to ack (it may start at every message and double
    # the interval at each ack): a handful of replies, far fewer than one per message.
    assert replies <= 16, f"{replies} replies for one batch of 64"
    assert await _stored(streams_client, "BLO_OFFICES") == 64
    again = await streams_client.publish_batch(items)  # re-sent after a lost ack: the same ids
    assert all(type(r) is Ack for r in again)
    assert await _stored(streams_client, "BLO_OFFICES") == 64  # deduplicated inside the batch too


async def test_one_refused_message_in_a_batch_holds_back_none_behind_it(streams_client: BusClient) -> None:
    receipt = "blo.receipt.TH-MUK.LA-SVK"  # the receipt stream takes 4 KiB at most
    items = [(receipt, b"r%d" % i, f"rc-{i}") for i in range(12)]
    items[5] = (receipt, b"x" * 5000, "rc-big")
    results = await streams_client.publish_batch(items)
    assert [type(r) is Ack for r in results] == [i != 5 for i in range(12)]
    assert isinstance(results[5], BusError) and "JetStream refused rc-big" in results[5].message
    assert await _stored(streams_client, "BLO_RECEIPTS") == 11


async def test_a_window_across_streams_goes_as_one_batch_per_stream(streams_client: BusClient) -> None:
    items = [
        (OFFICE_SUBJECT if i % 2 else "blo.feed.mekong-drugs.routine.TH-MUK", b"m%d" % i, f"x-{i}") for i in range(20)
    ]
    items.insert(7, ("blo.nowhere.LA-SVK", b"lost", "x-nowhere"))
    results = await streams_client.publish_batch(items)
    assert isinstance(results[7], NoStream) and results[7].subject == "blo.nowhere.LA-SVK"
    assert all(type(r) is Ack for i, r in enumerate(results) if i != 7)
    assert (await _stored(streams_client, "BLO_OFFICES"), await _stored(streams_client, "BLO_FEEDS")) == (10, 10)


async def test_a_stream_that_takes_no_batches_gets_the_window_one_by_one(nats_server: NatsServer) -> None:
    client = await _connected(nats_server.url)
    try:
        js = client.jetstream()
        await js.add_stream(name="PLAIN", subjects=["plain.>"])  # allow_batched left off
        items = [("plain.x", b"p%d" % i, f"p-{i}") for i in range(10)]
        results = await client.publish_batch(items)
        assert all(type(r) is Ack and r.stream == "PLAIN" and r.seq > 0 for r in results)
        assert await _stored(client, "PLAIN") == 10
        before = client._nc.stats["in_msgs"]
        await client.publish_batch([("plain.x", b"q%d" % i, f"q-{i}") for i in range(10)])
        assert client._nc.stats["in_msgs"] - before == 10  # remembered: straight to single publishes
    finally:
        await client.close()


async def test_a_denied_subject_inside_a_batch_is_permission_denied_and_the_rest_are_stored(tmp_path: Path) -> None:
    conf, seed = _denied_tccc(tmp_path)
    with NatsServer(tmp_path / "nats", config_file=conf) as server:
        client = await _connected(server.url, nkey_seed=seed, publish_timeout_s=1.0)
        try:
            await client.ensure_streams(default_streams())
            items = [(OFFICE_SUBJECT, b"ok %d" % i, f"ok-{i}") for i in range(10)]
            items[4] = ("blo.office.TH-TCCC.routine.TH-MUK", b"no", "denied")
            results = await client.publish_batch(items)
            assert isinstance(results[4], PermissionDenied)
            assert all(type(r) is Ack for i, r in enumerate(results) if i != 4)
            assert await _stored(client, "BLO_OFFICES") == 9
        finally:
            await client.close()


async def test_office_stream_holds_more_consumers_than_the_servers_default_of_1000(
    streams_client: BusClient,
) -> None:
    # nats-server 2.15 caps a stream that sets no limit at 1,000 consumers: 250 offices.
    specs = [s for i in range(251) for s in node_consumers(f"TH-B{i:04d}") if s.stream == STREAM_OFFICES]
    assert len(specs) > 1000
    sem = asyncio.Semaphore(32)

    async def bind(spec: ConsumerSpec) -> None:
        async with sem:
            await (await streams_client.pull(spec)).close()

    await asyncio.gather(*(bind(s) for s in specs))
    info = await streams_client.jetstream().stream_info(STREAM_OFFICES)
    assert info.state.consumer_count == len(specs)


async def test_ensure_streams_lifts_the_consumer_limit_of_an_existing_stream(nats_server: NatsServer) -> None:
    client = await _connected(nats_server.url)
    try:
        old = replace(default_streams()[0], max_consumers=1000)  # as the server's default left it
        await client.jetstream().add_stream(stream_config(old))
        await client.ensure_streams(default_streams())
        info = await client.jetstream().stream_info(old.name)
        assert info.config.max_consumers == MAX_CONSUMERS
    finally:
        await client.close()
