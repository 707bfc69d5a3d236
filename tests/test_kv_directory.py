"""The directory over a real nats-server: KV bucket, watcher, local copy."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from bus import errors
from bus.directory import (
    Directory,
    DirectoryRecord,
    centre_self_record,
    decode_item,
    enrol_office,
    make_request,
    read_request,
    revoke_key,
    sign_record,
)
from bus.envelope import OfficeRecipient, Opener, Sealer
from bus.keys import Identity
from bus.transport.kv_directory import (
    DirectoryCache,
    DirectoryMetrics,
    DirectoryWatcher,
    kv_key,
    open_bucket,
    publish_all,
    publish_item,
)
from bus.transport.server import NatsServer
from tests.helpers import NOW, bulletin, identity

YEAR = 365 * 86_400_000
TH_C, LA_C, MUK, SVK = identity("TH-TCCC"), identity("LA-TCCC"), identity("TH-MUK"), identity("LA-SVK")
ANCHORS = {"TH-TCCC": TH_C.signing.public, "LA-TCCC": LA_C.signing.public}


def enrol(ident: Identity, centre: Identity, *, seq: int = 1) -> bytes:
    req = read_request(make_request(ident, name="BLO", country=ident.office_id[:2], role="office", now_ms=NOW))
    return enrol_office(req, centre, sequence=seq, now_ms=NOW, valid_until=NOW + YEAR)


def centre(ident: Identity) -> bytes:
    return centre_self_record(ident, name="centre", now_ms=NOW, valid_until=NOW + YEAR)


def rejected(metrics: DirectoryMetrics, reason: str) -> float:
    return metrics.rejected.labels(reason=reason)._value.get()


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[nats.js.JetStreamContext]:
    nc = await nats.connect(nats_server.url, connect_timeout=5, allow_reconnect=False)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def centre_publishes(js: nats.js.JetStreamContext, *items: bytes) -> list[str]:
    kv = await open_bucket(js, create=True)
    return [await publish_item(kv, item) for item in items]


async def test_node_loads_the_bucket_and_watches_new_records(js, tmp_path: Path) -> None:
    await centre_publishes(js, centre(TH_C), centre(LA_C), enrol(MUK, TH_C))
    d = Directory(ANCHORS)
    watcher = DirectoryWatcher(
        js, d, cache=DirectoryCache(tmp_path / "directory.json"), metrics=DirectoryMetrics(CollectorRegistry())
    )
    await watcher.start(timeout=5)
    try:
        assert [r.office_id for r in d.records()] == ["LA-TCCC", "TH-MUK", "TH-TCCC"]
        await centre_publishes(js, enrol(SVK, LA_C))
        await watcher.wait_until(lambda d: d.record("LA-SVK") is not None, timeout=5)
    finally:
        await watcher.stop()


async def test_record_tampered_in_kv_is_ignored_and_reported(js, tmp_path: Path, caplog) -> None:
    keys = await centre_publishes(js, centre(TH_C), centre(LA_C), enrol(MUK, TH_C), enrol(SVK, LA_C))
    d = Directory(ANCHORS)
    metrics = DirectoryMetrics(CollectorRegistry())
    watcher = DirectoryWatcher(js, d, metrics=metrics)
    await watcher.start(timeout=5)
    try:
        original = d.sender_keys("TH-MUK", MUK.signing.kid)
        # Someone with write access to the bucket swaps TH-MUK's encryption key for their own.
        kv = await js.key_value("blo_directory")
        good = await kv.get(keys[2])
        attacker = identity("TH-MUK", seed="attacker")
        payload = good.value.replace(MUK.box.public, attacker.box.public).replace(MUK.box.kid, attacker.box.kid)
        assert payload != good.value
        with caplog.at_level(logging.WARNING, logger="bus.directory"):
            await kv.put(keys[2], payload)
            # A record for TH-MUK signed by LA's centre is refused too.
            forged = read_request(make_request(attacker, name="x", country="TH", role="office", now_ms=NOW))
            r = DirectoryRecord(
                "TH-MUK",
                "x",
                "TH",
                "office",
                (),
                (),
                forged.sign_public,
                forged.sign_kid,
                forged.box_public,
                forged.box_kid,
                NOW,
                None,
                9,
                NOW,
                "LA-TCCC",
                LA_C.signing.kid,
            )
            bad = sign_record(r, LA_C.signing)
            await kv.put(kv_key(decode_item(bad)), bad)
            deadline = time.monotonic() + 5
            while rejected(metrics, "cross_country") < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        assert rejected(metrics, "bad_signature") == 1
        assert rejected(metrics, "cross_country") == 1
        assert "ignored (bad_signature)" in caplog.text and keys[2] in caplog.text
        assert d.sender_keys("TH-MUK", MUK.signing.kid) == original
        assert d.record("TH-MUK").box_public == MUK.box.public  # the centre's record stands
        assert d.sender_keys("TH-MUK", forged.sign_kid) is None
    finally:
        await watcher.stop()


async def test_tampered_entry_already_in_the_bucket_at_start_is_ignored(js) -> None:
    await centre_publishes(js, centre(TH_C))
    kv = await js.key_value("blo_directory")
    good = enrol(MUK, TH_C)
    await kv.put(kv_key(decode_item(good)), good[:-1] + bytes([good[-1] ^ 0x01]))
    await kv.put("record.TH.TH-NKP.0000000000000000", good)  # a valid record under the wrong key
    metrics = DirectoryMetrics(CollectorRegistry())
    d = Directory(ANCHORS)
    watcher = DirectoryWatcher(js, d, metrics=metrics)
    await watcher.start(timeout=5)
    await watcher.stop()
    assert d.record("TH-MUK") is None and d.record("TH-TCCC") is not None
    assert rejected(metrics, "bad_signature") == 1 and rejected(metrics, "misplaced") == 1


async def test_revocation_published_at_the_centre_takes_effect_on_a_running_node_within_seconds(js) -> None:
    await centre_publishes(js, centre(TH_C), centre(LA_C), enrol(MUK, TH_C), enrol(SVK, LA_C))
    node = Directory(ANCHORS)  # LA-SVK's node
    watcher = DirectoryWatcher(js, node, metrics=DirectoryMetrics(CollectorRegistry()))
    await watcher.start(timeout=5)
    try:
        revoked_at = NOW + 60_000
        before = Sealer(MUK).seal(bulletin("TH-MUK"), [OfficeRecipient(SVK.public())], now_ms=revoked_at - 1)
        after = Sealer(MUK).seal(bulletin("TH-MUK"), [OfficeRecipient(SVK.public())], now_ms=revoked_at + 1)
        opener = Opener.for_identity(SVK, node)
        opener.open(after, witnessed_at=revoked_at + 1_000)  # not revoked yet
        started = time.monotonic()
        await centre_publishes(js, revoke_key(TH_C, "TH-MUK", MUK.signing.kid, revoked_at=revoked_at, reason="stolen"))
        await watcher.wait_until(lambda d: d.revoked_at("TH-MUK", MUK.signing.kid) is not None, timeout=5)
        assert time.monotonic() - started < 5
        # Each judged as stored a second after it was sealed: before stands, after does not.
        assert opener.open(before, witnessed_at=revoked_at + 999).bulletin.sender == "TH-MUK"
        with pytest.raises(errors.SenderKeyInvalid, match="revoked"):
            opener.open(after, witnessed_at=revoked_at + 1_001)
    finally:
        await watcher.stop()


async def test_node_starts_offline_from_its_verified_local_copy(js, nats_server: NatsServer, tmp_path: Path) -> None:
    await centre_publishes(js, centre(TH_C), enrol(MUK, TH_C))
    cache = DirectoryCache(tmp_path / "data" / "directory.json")
    watcher = DirectoryWatcher(js, Directory(ANCHORS), cache=cache, metrics=DirectoryMetrics(CollectorRegistry()))
    await watcher.start(timeout=5)
    await watcher.stop()
    assert (cache.path.stat().st_mode & 0o777) == 0o600
    nats_server.stop()  # the bus is down; the node still knows TH-MUK
    offline = Directory(ANCHORS)
    assert cache.load_into(offline) == 2
    assert offline.sender_keys("TH-MUK", MUK.signing.kid) is not None


def test_a_tampered_local_copy_is_reverified_and_refused(tmp_path: Path) -> None:
    d = Directory(ANCHORS)
    d.apply(centre(TH_C), witnessed_at=NOW)
    d.apply(enrol(MUK, TH_C), witnessed_at=NOW)
    cache = DirectoryCache(tmp_path / "directory.json")
    cache.save(d)
    text = cache.path.read_text()
    item = decode_item(enrol(MUK, TH_C))
    b64 = base64.b64encode(item.raw).decode()
    flipped = base64.b64encode(item.raw[:-1] + bytes([item.raw[-1] ^ 4])).decode()
    cache.path.write_text(text.replace(b64, flipped))
    metrics = DirectoryMetrics(CollectorRegistry())
    fresh = Directory(ANCHORS)
    assert cache.load_into(fresh, metrics) == 1
    assert fresh.record("TH-MUK") is None and rejected(metrics, "bad_signature") == 1
    cache.path.write_text("{not json")
    with pytest.raises(errors.DirectoryError, match="unreadable"):
        cache.load_into(Directory(ANCHORS))


async def test_deleting_a_record_from_the_bucket_does_not_remove_trust_and_a_republish_repairs_it(js) -> None:
    keys = await centre_publishes(js, centre(TH_C), enrol(MUK, TH_C))
    centre_copy = Directory(ANCHORS)
    for item in (centre(TH_C), enrol(MUK, TH_C)):
        centre_copy.apply(item, witnessed_at=NOW)
    metrics = DirectoryMetrics(CollectorRegistry())
    node = Directory(ANCHORS)
    watcher = DirectoryWatcher(js, node, metrics=metrics)
    await watcher.start(timeout=5)
    try:
        kv = await js.key_value("blo_directory")
        await kv.delete(keys[1])
        deadline = time.monotonic() + 5
        while rejected(metrics, "deleted") < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert rejected(metrics, "deleted") == 1
        assert node.record("TH-MUK") is not None
        assert sorted(await publish_all(kv, centre_copy)) == sorted(keys)
        assert (await kv.get(keys[1])).value == enrol(MUK, TH_C)
    finally:
        await watcher.stop()


async def test_a_node_without_the_bucket_gets_a_clear_error(js) -> None:
    with pytest.raises(errors.NotConnected, match="does not exist yet"):
        await DirectoryWatcher(js, Directory(ANCHORS), metrics=DirectoryMetrics(CollectorRegistry())).start(timeout=5)


async def test_record_signed_by_the_th_centre_for_a_la_office_is_refused_from_kv(js) -> None:
    await centre_publishes(js, centre(TH_C), centre(LA_C))
    metrics = DirectoryMetrics(CollectorRegistry())
    node = Directory(ANCHORS)
    watcher = DirectoryWatcher(js, node, metrics=metrics)
    await watcher.start(timeout=5)
    try:
        req = read_request(make_request(SVK, name="Savannakhet", country="LA", role="office", now_ms=NOW))
        forged = DirectoryRecord(
            "LA-SVK", "Savannakhet", "LA", "office", (), (), req.sign_public, req.sign_kid,
            req.box_public, req.box_kid, NOW, None, 1, NOW, "TH-TCCC", TH_C.signing.kid,
        )  # fmt: skip
        await centre_publishes(js, sign_record(forged, TH_C.signing))
        deadline = time.monotonic() + 5
        while rejected(metrics, "cross_country") < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert rejected(metrics, "cross_country") == 1
        assert node.record("LA-SVK") is None
    finally:
        await watcher.stop()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_cache_files_give_only_directory_errors(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("cache") / "directory.json"
    path.write_bytes(data)
    try:
        DirectoryCache(path).load_into(Directory(ANCHORS), DirectoryMetrics(CollectorRegistry()))
    except errors.DirectoryError:
        pass
