"""Per-office NATS users (`blo deploy nats-auth`, bus/transport/permissions.py) against a real
nats-server: enough for every node to work, and not one subject more.

* the generated users run the whole bus: office to centre, centre to feed, receipts,
  the directory bucket (a centre writes it, an office watches it), heartbeats; a grant
  missing here stalls a node, and these tests fail on their bounded waits;
* office A cannot publish as office B, cannot read B's inbox (neither by B's durable nor
  by its own durable name with B's filter, nor by subscribing to B's replies), cannot post
  to a feed it only reads, cannot create streams: the server refuses and the client says
  ``PermissionDenied`` naming the subject;
* the CLI writes seeds 0600, keeps them across runs, and drops revoked offices.
"""

from __future__ import annotations

import json
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from click.testing import CliRunner, Result

from bus.directory import Directory, centre_self_record
from bus.errors import BusError, PermissionDenied, ValidationError
from bus.feeds import FeedKeyring, FeedOwner, decode_item
from bus.testing import add_inbox_key
from bus.transport import subjects as sj
from bus.transport.client import BusClient, ClientConfig
from bus.transport.kv import wall_ms
from bus.transport.kv_directory import DirectoryWatcher, open_bucket, publish_item
from bus.transport.kv_feeds import FeedKeyCache
from bus.transport.object_store import bucket_list_json, parse_bucket_list
from bus.transport.permissions import (
    FeedMembers,
    NodeAccess,
    inbox_prefix,
    node_access,
    node_permissions,
    parse_feed,
)
from bus.transport.server import NatsServer
from bus.transport.subjects import ConsumerSpec
from office_node.cli import cli
from office_node.config import load_config
from office_node.home import NodeHome, load_home_identity
from tests.bus_helpers import Collector, bulletin, eventually, make_node, offices
from tests.deploy_helpers import Keys, auth_include, check_config, secured_server
from tests.feed_helpers import TH_C, new_directory
from tests.helpers import NOW

pytestmark = pytest.mark.timeout(90)

FEED = "mekong-border"
NODES = node_access(
    [("TH-MUK", "office"), ("LA-SVK", "office"), ("TH-TCCC", "centre")],
    [parse_feed(f"{FEED}=TH-TCCC:post,LA-SVK:post,TH-MUK")],
)


class Bus:
    def __init__(self, server: NatsServer, keys: Keys) -> None:
        self.server, self.keys = server, keys

    def config(self, who: str, **kw: object) -> ClientConfig:
        extra: dict[str, object] = {"publish_timeout_s": 1.5, "reconnect_wait_s": 0.2}
        if who != "admin":
            extra["inbox_prefix"] = inbox_prefix(who)
        return ClientConfig(urls=(self.server.url,), nkey_seed=self.keys.seeds[who], **{**extra, **kw})  # type: ignore[arg-type]

    async def client(self, who: str) -> BusClient:
        client = BusClient(self.config(who))
        await client.start()
        assert await client.wait_connected(5), client.last_error
        return client


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[Bus]:
    keys = Keys(tmp_path / "keys")
    server = secured_server(tmp_path, NODES, keys)
    try:
        yield Bus(server, keys)
    finally:
        server.stop()


# -- pure ------------------------------------------------------------------------------


def test_feed_members_are_parsed_and_mistakes_named() -> None:
    assert parse_feed("mekong-border=TH-TCCC:post,TH-MUK,LA-SVK:post") == FeedMembers(
        "mekong-border", ("TH-TCCC", "TH-MUK", "LA-SVK"), ("TH-TCCC", "LA-SVK")
    )
    for bad in ("mekong-border", "Mekong=TH-MUK", "f=TH-MUK:write", "f=th-muk", "f="):
        with pytest.raises(ValidationError, match="--feed"):
            parse_feed(bad)
    with pytest.raises(ValidationError, match="LA-XYZ"):
        node_access([("TH-MUK", "office")], [parse_feed("f=TH-MUK,LA-XYZ")])
    with pytest.raises(ValidationError, match="--leaf"):
        node_access([("TH-MUK", "office")], [], leaf_offices=["LA-SVK"])


def test_an_offices_grants_name_only_itself_and_its_feeds() -> None:
    muk = next(a for a in NODES if a.office == "TH-MUK")
    perms = node_permissions(muk)
    assert perms.subscribe == ("_INBOX.TH-MUK.>",)
    publishes = [s for s in perms.publish if s.startswith("blo.")]
    assert publishes == ["blo.office.*.*.TH-MUK", "blo.receipt.*.TH-MUK", "blo.hb.TH-MUK"]  # reads the feed, never posts
    # Pinned JetStream subjects: the consumer's filter is part of its create subject.
    assert "$JS.API.CONSUMER.CREATE.BLO_OFFICES.inbox-TH-MUK-flash.blo.office.TH-MUK.flash.*" in perms.publish
    assert "$JS.API.CONSUMER.CREATE.BLO_FEEDS.feed-mekong-border-TH-MUK-routine.blo.feed.mekong-border.routine.*" in (
        perms.publish
    )
    assert "$JS.ACK.BLO_RECEIPTS.receipts-TH-MUK.>" in perms.publish
    assert "$JS.FC.KV_blo_directory.>" in perms.publish
    for grant in perms.publish:  # everything else names TH-MUK, its feed, or a public bucket
        assert "TH-MUK" in grant or FEED in grant or "KV_blo" in grant, grant
    # Into the directory bucket it puts its own inbox keys, and nothing else (DIRECTORY.md 7).
    assert [g for g in perms.publish if "$KV." in g] == ["$KV.blo_directory.inbox.TH-MUK.*"]
    assert not any("STREAM.CREATE" in g or "$JSC" in g for g in perms.publish)
    leaf = node_permissions(NodeAccess("TH-MUK", "office", leaf=True), hub_domain="HUB")
    assert "$JS.TH-MUK.API.CONSUMER.CREATE.BLO_OUTBOX.>" in leaf.subscribe
    assert "$JS.HUB.API.CONSUMER.MSG.NEXT.BLO_OFFICES.inbox-TH-MUK-flash" in leaf.publish
    assert {"$JSC.R.>", "$JS.S.>"} <= set(leaf.publish)


def test_the_generated_include_is_a_valid_server_config(tmp_path: Path) -> None:
    keys = Keys(tmp_path / "keys")
    (tmp_path / "blo-auth.conf").write_text(auth_include(NODES, keys))
    (tmp_path / "server.conf").write_text('include "blo-auth.conf"\n')
    result = check_config(tmp_path / "server.conf")
    assert result.returncode == 0, result.stderr


# -- against the server --------------------------------------------------------------


async def test_an_office_cannot_publish_as_another_office(bus: Bus) -> None:
    muk = await bus.client("TH-MUK")
    try:
        ack = await muk.publish(sj.office_subject("LA-SVK", "ROUTINE", "TH-MUK"), b"x", "own")
        assert ack.stream == sj.STREAM_OFFICES
        forged = sj.office_subject("TH-TCCC", "FLASH", "LA-SVK")
        with pytest.raises(PermissionDenied, match="(?i)" + re.escape(forged)):
            await muk.publish(forged, b"x", "forged")
        [result] = await muk.publish_batch([(sj.receipt_subject("TH-TCCC", "LA-SVK"), b"x", "forged-receipt")])
        assert isinstance(result, PermissionDenied) and "blo.receipt.TH-TCCC.LA-SVK" in result.message
        with pytest.raises(PermissionDenied, match="(?i)" + re.escape(sj.heartbeat_subject("LA-SVK"))):
            await muk.publish(sj.heartbeat_subject("LA-SVK"), b"x", "forged-hb")
    finally:
        await muk.close()


async def test_an_office_cannot_read_another_offices_inbox(bus: Bus) -> None:
    svk_inbox = sj.node_consumers("LA-SVK")[0]  # inbox-LA-SVK-flash
    muk = await bus.client("TH-MUK")
    try:
        with pytest.raises(PermissionDenied, match="(?i)" + re.escape(f"$JS.API.CONSUMER.INFO.BLO_OFFICES.{svk_inbox.durable}")):
            await muk.pull(svk_inbox)
        # Its own durable name with LA-SVK's filter: the filter is in the subject, refused.
        disguised = ConsumerSpec(sj.STREAM_OFFICES, sj.inbox_consumer("TH-MUK", "FLASH"), svk_inbox.filter_subject, 0)
        with pytest.raises(PermissionDenied, match="(?i)" + re.escape(svk_inbox.filter_subject)):
            await muk.pull(disguised)
        with pytest.raises(PermissionDenied, match="heartbeats-TH-TCCC"):
            await muk.pull(sj.heartbeats_consumer_spec("TH-TCCC"))
        own = await muk.pull(sj.node_consumers("TH-MUK")[0])  # its own inbox: allowed
        await own.close()
    finally:
        await muk.close()
    # Listening in on LA-SVK's replies (where its pulled bulletins arrive) or on the raw subjects.
    refused: list[str] = []

    async def on_error(exc: Exception) -> None:
        refused.append(str(exc))

    nc = await nats.connect(bus.server.url, nkeys_seed=str(bus.keys.seeds["TH-MUK"]), error_cb=on_error)
    try:
        for subject in (f"{inbox_prefix('LA-SVK')}.>", "_INBOX.>", "blo.office.LA-SVK.>", "$JS.ACK.>"):
            await nc.subscribe(subject)
        await nc.flush()
        await eventually(lambda: len(refused) >= 4, 5, "four refused subscriptions")
        assert all("permissions violation for subscription" in r.lower() for r in refused), refused
    finally:
        await nc.close()


async def test_an_office_cannot_post_to_a_feed_it_only_reads_nor_create_streams(bus: Bus) -> None:
    muk, svk = await bus.client("TH-MUK"), await bus.client("LA-SVK")
    try:
        with pytest.raises(PermissionDenied, match="(?i)" + re.escape(f"blo.feed.{FEED}.routine.TH-MUK")):
            await muk.publish(sj.feed_subject(FEED, "ROUTINE", "TH-MUK"), b"x", "feed-post")
        ack = await svk.publish(sj.feed_subject(FEED, "ROUTINE", "LA-SVK"), b"x", "feed-post")  # LA-SVK:post
        assert ack.stream == sj.STREAM_FEEDS
        with pytest.raises(PermissionDenied, match="BLO_OFFICES"):
            await muk.ensure_streams(sj.default_streams())
        with pytest.raises(BusError):
            await open_bucket(muk.jetstream(), create=True)  # only centres write the directory
    finally:
        await muk.close()
        await svk.close()


async def test_the_generated_users_carry_bulletins_feeds_receipts_directory_and_heartbeats(
    bus: Bus, tmp_path: Path
) -> None:
    (muk, _svk, tccc), book = offices("TH-MUK", "LA-SVK", "TH-TCCC")
    feed_key = {(FEED, 1): b"k" * 32}
    got_centre, got_muk = Collector(), Collector()
    office = make_node(muk, book, tmp_path / "muk", None, app=got_muk, feeds=(FEED,), feed_keys=dict(feed_key), ensure_streams=False)
    office.client_config = bus.config("TH-MUK")
    centre = make_node(tccc, book, tmp_path / "tccc", None, app=got_centre, feeds=(FEED,), feed_keys=dict(feed_key), ensure_streams=False)
    centre.client_config = bus.config("TH-TCCC")
    await office.start()
    await centre.start()
    try:
        up = await office.post_many([(bulletin("TH-MUK", i, seed="auth"), ["TH-TCCC"], []) for i in range(30)])
        down = await centre.post_many([(bulletin("TH-TCCC", i, seed="auth"), [], [FEED]) for i in range(10)])
        await got_centre.wait_for(40, 30)
        await got_muk.wait_for(10, 30)
        assert set(got_centre.ids) == set(up) | set(down) and set(got_muk.ids) == set(down)  # the centre reads its feed too
        await eventually(lambda: office.status(up[-1]).recipients["TH-TCCC"].state == "delivered", 20, "a receipt")
    finally:
        await office.close()
        await centre.close()

    centre_c, office_c = await bus.client("TH-TCCC"), await bus.client("TH-MUK")
    try:
        kv = await open_bucket(centre_c.jetstream(), create=True)
        await publish_item(kv, centre_self_record(tccc, name="TH centre", now_ms=NOW, valid_until=NOW + 10**10))
        directory = Directory({"TH-TCCC": tccc.signing.public})
        watcher = DirectoryWatcher(office_c.jetstream(), directory)
        await watcher.start(timeout=10)
        await watcher.stop()
        assert directory.record("TH-TCCC") is not None  # the office read the bucket the centre wrote
        await office_c.publish(sj.heartbeat_subject("TH-MUK"), b"hb", "hb-1")
        hb = await centre_c.pull(sj.heartbeats_consumer_spec("TH-TCCC"))
        msgs = await hb.fetch(10, 2.0)
        assert [m.subject for m in msgs] == ["blo.hb.TH-MUK"]
        await hb.close()
    finally:
        await centre_c.close()
        await office_c.close()


# -- the command ---------------------------------------------------------------------


def _blo(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args], env={"BLO_PASSPHRASE": None})


def _ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def test_nats_auth_writes_private_seeds_keeps_them_and_drops_revoked_offices(tmp_path: Path) -> None:
    centre = tmp_path / "TH-TCCC"
    out = _ok(
        _blo(centre, "init", "--office", "TH-TCCC", "--country", "TH", "--name", "TH centre", "--role", "centre",
             "--insecure-no-passphrase")
    )
    pin = re.search(r'"([0-9a-f]{64})"', out)
    assert pin is not None
    for office in ("TH-MUK", "TH-NKP"):
        home = tmp_path / office
        _ok(_blo(home, "init", "--office", office, "--country", "TH", "--name", office, "--trust",
                 f"TH-TCCC={pin.group(1)}", "--insecure-no-passphrase"))
        _ok(_blo(centre, "directory", "enroll", str(home / "keys" / "enrolment-request.json")))
    auth = tmp_path / "auth"
    hub = ("--hub-url", "tls://th-hub-1.blo.example:4222", "--hub-url", "TH=tls://th-hub-2.blo.example:4222")
    args = ("deploy", "nats-auth", "--out", str(auth), *hub, "--feed", f"{FEED}=TH-TCCC:post,TH-MUK,TH-NKP", "--leaf", "TH-NKP")
    printed = _ok(_blo(centre, *args))
    for name in ("TH-TCCC", "TH-MUK", "TH-NKP", "admin", "sys"):
        seed = auth / "seeds" / f"{name}.nk"
        assert stat.S_IMODE(seed.stat().st_mode) == 0o600
        assert seed.read_text().strip() not in printed  # seeds are never printed
    assert stat.S_IMODE((auth / "leaf" / "TH-NKP-uplink.conf").stat().st_mode) == 0o600
    assert 'jetstream_domain = "HUB"' in (auth / "nodes" / "TH-NKP.toml").read_text()
    # nodes/TH-MUK.toml is TH-MUK's whole node.toml: nothing to merge by hand.
    node_toml = tmp_path / "node-check" / "node.toml"
    node_toml.parent.mkdir()
    node_toml.write_text((auth / "nodes" / "TH-MUK.toml").read_text())
    loaded = load_config(node_toml)  # what the daemon reads
    nats = loaded.nats
    assert (loaded.office, nats.inbox_prefix, nats.create_streams, nats.nkey_seed.name) == ("TH-MUK", "_INBOX.TH-MUK", False, "nats.nk")
    assert nats.urls == ("tls://th-hub-2.blo.example:4222",) and nats.tls_ca.name == "nats-ca.pem"
    assert set(loaded.trust_anchors) == {"TH-TCCC"}
    # The attachment buckets the users are granted, for `blo deploy streams --buckets`.
    assert json.loads((auth / "buckets.json").read_text()) == {"offices": ["TH-MUK", "TH-NKP", "TH-TCCC"], "feeds": [FEED]}
    config = (auth / "blo-auth.conf").read_text()
    (auth / "server.conf").write_text('include "blo-auth.conf"\n')
    assert check_config(auth / "server.conf").returncode == 0
    muk_seed = (auth / "seeds" / "TH-MUK.nk").read_bytes()

    listed = _ok(_blo(centre, "directory", "list"))
    nkp_kid = next(line.split()[3] for line in listed.splitlines() if line.startswith("TH-NKP"))
    _ok(_blo(centre, "directory", "revoke", nkp_kid, "--reason", "laptop stolen"))
    revoked_row = next(line for line in _ok(_blo(centre, "directory", "list")).splitlines() if line.startswith("TH-NKP"))
    assert re.search(r"revoked at \d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", revoked_row), revoked_row
    again = _ok(_blo(centre, *args))  # the same flags after the revocation: TH-NKP is skipped, with a warning
    assert re.search(r"no NATS user for TH-NKP: .*revoked at \d{4}-\d{2}-\d{2}T", again), again
    assert f"--feed {FEED}: skipped TH-NKP" in again and "--leaf: skipped TH-NKP" in again
    assert not re.search(r"\d{13} ms", again)  # dates, not milliseconds
    assert (auth / "seeds" / "TH-MUK.nk").read_bytes() == muk_seed  # kept, not rotated
    new_config = (auth / "blo-auth.conf").read_text()
    assert "# TH-NKP" in config and "# TH-NKP" not in new_config and "TH-NKP" not in new_config
    assert json.loads((auth / "buckets.json").read_text())["offices"] == ["TH-MUK", "TH-TCCC"]  # no bucket for it
    result = _blo(centre, "deploy", "nats-auth", "--out", str(auth), *hub, "--feed", f"{FEED}=TH-NKQ")
    assert result.exit_code == 2 and "TH-NKQ" in result.output  # a typo is still an error, not a silent skip



def test_feed_readers_and_posters_come_from_the_signed_record() -> None:
    d = new_directory()
    issue = FeedOwner(TH_C).create(FEED, ["TH-MUK", "LA-SVK"], d, now_ms=NOW, writers=["LA-SVK"])
    record = decode_item(issue.record).item
    assert FeedMembers.of_record(record) == FeedMembers(FEED, ("TH-TCCC", "LA-SVK", "TH-MUK"), ("TH-TCCC", "LA-SVK"))


def test_nats_auth_takes_feed_readers_and_writers_from_the_signed_epoch_record(tmp_path: Path) -> None:
    centre = tmp_path / "TH-TCCC"
    out = _ok(
        _blo(centre, "init", "--office", "TH-TCCC", "--country", "TH", "--name", "TH centre", "--role", "centre",
             "--insecure-no-passphrase")
    )  # fmt: skip
    pin = re.search(r'"([0-9a-f]{64})"', out)
    assert pin is not None
    for office in ("TH-MUK", "TH-NKP"):
        home = tmp_path / office
        _ok(_blo(home, "init", "--office", office, "--country", "TH", "--name", office, "--trust",
                 f"TH-TCCC={pin.group(1)}", "--insecure-no-passphrase"))  # fmt: skip
        _ok(_blo(centre, "directory", "enroll", str(home / "keys" / "enrolment-request.json")))
    # The centre's node holds the feed's signed record in its verified local copy.
    node_home = NodeHome(centre)
    identity, _ = load_home_identity(node_home)
    directory, _ = node_home.open_directory()
    now = wall_ms()
    for office in ("TH-MUK", "TH-NKP"):  # their nodes have published an inbox key
        add_inbox_key(directory, load_home_identity(NodeHome(tmp_path / office))[0], now_ms=now)
    issue = FeedOwner(identity).create("th-border", ["TH-MUK", "TH-NKP"], directory, now_ms=now, writers=["TH-MUK"])
    ring = FeedKeyring("TH-TCCC", {}, directory)
    ring.apply(issue.record, witnessed_at=now)
    FeedKeyCache(node_home.config().data_dir / "feeds.json").save(ring)
    auth = tmp_path / "auth"
    _ok(_blo(centre, "deploy", "nats-auth", "--out", str(auth), "--hub-url", "nats://127.0.0.1:4222"))
    config = (auth / "blo-auth.conf").read_text()
    assert "blo.feed.th-border.*.TH-MUK" in config  # a writer posts
    assert "blo.feed.th-border.*.TH-NKP" not in config  # a reader does not
    assert "feed-th-border-TH-NKP-routine" in config and "feed-th-border-TH-TCCC-routine" in config  # all read
    twice = _blo(centre, "deploy", "nats-auth", "--out", str(auth), "--hub-url", "nats://127.0.0.1:4222", "--feed", "th-border=TH-NKP:post")
    assert twice.exit_code == 2 and "signed epoch record" in twice.output

async def test_an_office_deletes_its_own_feed_consumer_and_no_one_elses(bus: Bus) -> None:
    muk_feed = next(c for c in sj.node_consumers("TH-MUK", [FEED]) if c.feed == FEED)
    svk_feed = next(c for c in sj.node_consumers("LA-SVK", [FEED]) if c.feed == FEED)
    muk, svk = await bus.client("TH-MUK"), await bus.client("LA-SVK")
    try:
        for client, spec in ((muk, muk_feed), (svk, svk_feed)):
            consumer = await client.pull(spec)
            await consumer.close()
        started = time.monotonic()
        with pytest.raises(BusError):  # the server refuses; the request only times out
            await muk.delete_consumer(svk_feed)
        assert muk.violation_for(f"$JS.API.CONSUMER.DELETE.{sj.STREAM_FEEDS}.{svk_feed.durable}", started)
        await muk.delete_consumer(muk_feed)  # leaving the feed: its own durable goes
        admin = await bus.client("admin")
        try:
            names = [c.name for c in await admin.jetstream().consumers_info(sj.STREAM_FEEDS)]
        finally:
            await admin.close()
        assert muk_feed.durable not in names and svk_feed.durable in names
    finally:
        await muk.close()
        await svk.close()


async def test_an_office_puts_only_its_own_inbox_keys_in_the_directory_bucket(bus: Bus) -> None:
    """DIRECTORY.md 7: an office's node publishes its inbox keys itself, so its NATS user may
    write the directory bucket, but only under ``inbox.<ITSELF>.``: not another office's
    inbox keys, not records, not revocations (which centres sign)."""
    admin = await nats.connect(bus.server.url, nkeys_seed=str(bus.keys.seeds["admin"]))
    try:
        await admin.jetstream().create_key_value(bucket="blo_directory", history=1)
    finally:
        await admin.close()
    refused: list[str] = []

    async def on_error(exc: Exception) -> None:
        refused.append(str(exc))

    nc = await nats.connect(bus.server.url, nkeys_seed=str(bus.keys.seeds["TH-MUK"]), error_cb=on_error,
                            inbox_prefix=inbox_prefix("TH-MUK").encode())  # fmt: skip
    js = nc.jetstream(timeout=1.5)
    try:
        ack = await js.publish("$KV.blo_directory.inbox.TH-MUK.0011223344556677", b"item")
        assert ack.stream == "KV_blo_directory"
        for key in ("inbox.LA-SVK.0011223344556677", "record.TH.TH-MUK.0011223344556677", "revocation.TH-MUK.00"):
            with pytest.raises(nats.errors.TimeoutError):
                await js.publish(f"$KV.blo_directory.{key}", b"item")
        await eventually(lambda: len(refused) >= 3, 5, "three refused publishes")
        assert all("permissions violation for publish" in r.lower() for r in refused), refused
    finally:
        await nc.close()


def test_a_bucket_list_reads_back_what_nats_auth_wrote_and_names_what_is_wrong() -> None:
    assert parse_bucket_list(bucket_list_json(["TH-MUK", "LA-SVK", "TH-MUK"], [FEED])) == (["LA-SVK", "TH-MUK"], [FEED])
    for text, problem in (
        ("not json", "is not JSON"),
        ('{"offices": []}', "expected"),
        ('{"offices": "TH-MUK", "feeds": []}', "must be lists"),
        ('{"offices": ["th-muk"], "feeds": []}', "office id"),
        ('{"offices": [], "feeds": ["Bad Feed"]}', "1-63 characters"),
    ):
        with pytest.raises(ValidationError, match=problem):
            parse_bucket_list(text)


def test_deploy_streams_names_a_bad_bucket_list_before_connecting(tmp_path: Path) -> None:
    bad = tmp_path / "buckets.json"
    bad.write_text('{"offices": ["TH-MUK/../x"], "feeds": []}')
    result = CliRunner().invoke(cli, ["deploy", "streams", "--nats", "nats://127.0.0.1:1", "--buckets", str(bad)])
    assert result.exit_code == 2 and "--buckets" in result.output and str(bad) in result.output, result.output
