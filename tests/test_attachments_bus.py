"""Attachments on a real nats-server (bus/transport/transfers.py, object_store.py):

* an upload cut at half by a SIGKILL of the server resumes after the restart without sending
  a finished chunk again, and the download resumes without fetching a chunk twice;
* a flipped ciphertext byte in the bucket is caught (R5; R3 when the object info was left
  alone) and the chunk kept in quarantine with the reason;
* FLASH files are fetched before a ROUTINE backlog's;
* under the generated NATS users, an office reads only its own bucket.
"""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import nats
import pytest

from bus.attachments import Entry
from bus.errors import PermissionDenied
from bus.testing import DeterministicRng
from bus.transport.client import BusClient
from bus.transport.embedded import write_config
from bus.transport.metrics import sample
from bus.transport.object_store import BucketSpec, Reader, ensure_bucket, feed_bucket, office_bucket, put_chunks
from bus.transport.permissions import node_access, parse_feed
from bus.transport.quarantine import Quarantine
from bus.transport.server import NatsServer
from bus.transport.transfers import Transfers
from tests.bus_helpers import eventually
from tests.deploy_helpers import Keys, secured_server
from tests.test_deploy_auth import Bus

pytestmark = pytest.mark.timeout(90)
DAY = 86_400.0


def _pdf(size: int, seed: str) -> bytes:
    return (b"%PDF-1.4\n" + DeterministicRng(seed)(size))[:size]


async def _client(url: str) -> BusClient:
    client = BusClient(__import__("bus.transport.client", fromlist=["ClientConfig"]).ClientConfig(
        urls=(url,), publish_timeout_s=2.0, reconnect_wait_s=0.1))  # fmt: skip
    await client.start()
    assert await client.wait_connected(5)
    return client


def _transfers(path: Path, **kw: object) -> Transfers:
    return Transfers(path, bucket_max_age_s=DAY, publish_timeout_s=2.0, **kw)  # type: ignore[arg-type]


async def test_an_upload_cut_at_half_by_a_sigkill_resumes_without_sending_finished_chunks_again(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", config_file=write_config(tmp_path / "nats.conf")).start()  # fsync always
    published: Counter[int] = Counter()
    acked_at_kill: list[int] = []
    data = _pdf(8 * 1024 * 1024, "sigkill")  # 33 chunks; rounds of 7 (WINDOW_BYTES below)
    sender = _transfers(tmp_path / "muk", on_publish=lambda _obj, i: published.update([i]))
    receiver = _transfers(tmp_path / "svk")
    entry = sender.seal_to_spool("scan.pdf", "application/pdf", io.BytesIO(data), DeterministicRng("k"))
    half = entry.chunks // 2
    bucket = office_bucket("LA-SVK")

    def kill_at_half(_obj: str, i: int) -> None:
        published.update([i])
        if i >= half and not acked_at_kill:
            acked_at_kill.extend(j for j in range(entry.chunks) if _acked(sender, j))
            server.kill()
            asyncio.get_running_loop().call_later(0.5, server.start)

    sender.on_publish = kill_at_half
    import bus.transport.transfers as tr

    old_window = tr.WINDOW_BYTES
    tr.WINDOW_BYTES = 2 * 1024 * 1024  # 8 chunks a round, so half the file is several rounds
    s_client, r_client = await _client(server.url), await _client(server.url)
    tasks = []
    try:
        sender.queue_uploads("B1", 3, [entry], [bucket])
        receiver.queue_downloads("B1", 3, [entry], bucket)
        tasks = [asyncio.create_task(sender.run(s_client)), asyncio.create_task(receiver.run(r_client))]
        await eventually(lambda: receiver.downloads("B1")[0].state == "complete", 60, "the file on the receiver")
        assert half // 2 <= len(acked_at_kill) <= half, "the kill must land at about half"
        for i in acked_at_kill:
            assert published[i] == 1, f"chunk {i} was stored before the kill and sent again"
        assert sum(published.values()) < entry.chunks + 8 + 1  # at most the window in flight again
        assert b"".join(receiver.read_plaintext(entry)) == data
        fetched = sample(receiver.metrics.chunks_fetched)
        assert fetched == entry.chunks, "a chunk was fetched twice"
    finally:
        tr.WINDOW_BYTES = old_window
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await s_client.close()
        await r_client.close()
        sender.close()
        receiver.close()
        server.stop()


def _acked(t: Transfers, i: int) -> bool:
    (acked,) = t.db.execute("SELECT acked FROM uploads").fetchone()
    return bool(acked[i // 8] & (1 << (i % 8)))


@pytest.mark.parametrize(("rewrite_info", "reason"), [(True, "chunk_decryption_failed"), (False, "object_digest_mismatch")])
async def test_a_flipped_ciphertext_byte_in_the_bucket_is_caught_and_quarantined(
    tmp_path: Path, nats_server: NatsServer, rewrite_info: bool, reason: str
) -> None:
    data = _pdf(600_000, "flip")
    sender = _transfers(tmp_path / "muk")
    quarantine = Quarantine(tmp_path / "q.db")
    receiver = _transfers(tmp_path / "svk", quarantine=quarantine)
    entry = sender.seal_to_spool("scan.pdf", "application/pdf", io.BytesIO(data), DeterministicRng("k"))
    bucket = office_bucket("LA-SVK")
    client = await _client(nats_server.url)
    task = None
    try:
        await ensure_bucket(client, BucketSpec(bucket, DAY))
        sealed = sender.spool_path(entry.object_hex).read_bytes()
        chunks = [(i, sealed[i * 262160 : (i + 1) * 262160]) for i in range(entry.chunks)]
        flipped = bytearray(chunks[1][1])
        flipped[1000] ^= 0x04
        if rewrite_info:  # a writer who rewrites the object's info too: the chunk does not open
            chunks[1] = (1, bytes(flipped))
            assert await put_chunks(client, bucket, entry.object_hex, chunks, timeout=5) == [None] * entry.chunks
        else:  # only the data changed (a disk fault): the object's digest no longer matches
            assert await put_chunks(client, bucket, entry.object_hex, chunks, timeout=5) == [None] * entry.chunks
            js = client.jetstream()
            await js.publish(f"$O.{bucket}.C.{entry.object_hex}-1", bytes(flipped))
        receiver.queue_downloads("B1", 3, [entry], bucket)
        task = asyncio.create_task(receiver.run(client))
        await eventually(lambda: receiver.downloads("B1")[0].state == "corrupt", 20, "the refusal")
        assert receiver.downloads("B1")[0].reason == reason
        [kept] = quarantine.entries()
        assert kept.reason == reason and kept.subject == f"$O.{bucket}.C.{entry.object_hex}-1"
        if rewrite_info:
            assert kept.raw == bytes(flipped)
        assert not receiver.is_complete(entry.object_hex)
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await client.close()
        sender.close()
        receiver.close()
        quarantine.close()


async def test_a_flash_file_is_fetched_before_a_routine_backlogs(tmp_path: Path, nats_server: NatsServer) -> None:
    sender = _transfers(tmp_path / "muk")
    order: list[str] = []
    receiver = _transfers(tmp_path / "svk", on_complete=lambda d: order.append(d.bulletin_id))
    bucket = office_bucket("LA-SVK")
    routine = [
        sender.seal_to_spool(f"r{i}.pdf", "application/pdf", io.BytesIO(_pdf(700_000, f"r{i}")), DeterministicRng(f"r{i}"))
        for i in range(4)
    ]
    flash = sender.seal_to_spool("photo.jpg", "image/jpeg", io.BytesIO(_pdf(300_000, "f")), DeterministicRng("f"))
    client = await _client(nats_server.url)
    tasks = []
    try:
        for i, e in enumerate(routine):
            sender.queue_uploads(f"R{i}", 3, [e], [bucket])
        sender.queue_uploads("F", 0, [flash], [bucket])
        tasks.append(asyncio.create_task(sender.run(client)))
        await eventually(lambda: sender.pending()[0] == 0, 30, "every upload stored")
        for i, e in enumerate(routine):  # the backlog is queued first
            receiver.queue_downloads(f"R{i}", 3, [e], bucket)
        receiver.queue_downloads("F", 0, [flash], bucket)
        tasks.append(asyncio.create_task(receiver.run(client)))
        await eventually(lambda: len(order) == 5, 30, "every download")
        assert order[0] == "F"
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
        sender.close()
        receiver.close()


async def test_a_flash_upload_queued_mid_file_goes_before_the_rest_of_a_routine_upload(
    tmp_path: Path, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bus.transport.transfers as tr

    monkeypatch.setattr(tr, "WINDOW_BYTES", 2 * 1024 * 1024)  # 7 chunks in flight
    done: list[str] = []
    published: list[str] = []

    def finished(kind: str, d: dict[str, object]) -> None:
        if kind == "upload" and d["sent"] == d["chunks"]:
            done.append(str(d["id"]))

    sender = _transfers(tmp_path / "muk", on_event=finished)
    bucket = office_bucket("LA-SVK")
    routine = sender.seal_to_spool("r.pdf", "application/pdf", io.BytesIO(_pdf(8 * 1024 * 1024, "r")), DeterministicRng("r"))
    flash = sender.seal_to_spool("f.jpg", "image/jpeg", io.BytesIO(_pdf(300_000, "f")), DeterministicRng("f"))

    def flash_arrives(obj: str, i: int) -> None:
        published.append("F" if obj == flash.object_hex else "R")
        if obj == routine.object_hex and i == 3:
            sender.queue_uploads("F", 0, [flash], [bucket])

    sender.on_publish = flash_arrives
    client = await _client(nats_server.url)
    task = None
    try:
        sender.queue_uploads("R", 3, [routine], [bucket])
        task = asyncio.create_task(sender.run(client))
        await eventually(lambda: done == ["F", "R"], 30, "both uploads, the FLASH first")
        # The routine file took no new chunks once the FLASH was queued: only the window
        # it had read for sending (chunks 0-6) went before the FLASH file, then the rest.
        before_flash = published.index("F")
        assert before_flash <= 7 < routine.chunks, published
        assert published.count("R") == routine.chunks  # nothing sent twice
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await client.close()
        sender.close()


async def test_a_bulletins_files_go_to_one_recipient_after_another(tmp_path: Path, nats_server: NatsServer) -> None:
    finished: list[tuple[int, str]] = []

    def on_event(kind: str, d: dict[str, object]) -> None:
        if kind == "upload" and d["sent"] == d["chunks"]:
            finished.append((int(str(d["n"])), str(d["bucket"])))

    sender = _transfers(tmp_path / "muk", on_event=on_event)
    files = [
        sender.seal_to_spool(f"{i}.pdf", "application/pdf", io.BytesIO(_pdf(300_000, str(i))), DeterministicRng(str(i)))
        for i in range(2)
    ]
    first, second = office_bucket("LA-SVK"), office_bucket("TH-TCCC")
    client = await _client(nats_server.url)
    task = None
    try:
        sender.queue_uploads("B", 2, files, [first, second])
        task = asyncio.create_task(sender.run(client))
        await eventually(lambda: len(finished) == 4, 30, "every upload")
        assert finished == [(0, first), (1, first), (0, second), (1, second)]  # LA-SVK has both files first
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await client.close()
        sender.close()


async def test_a_direct_get_by_subject_takes_a_wildcard_so_one_shared_bucket_could_not_keep_objects_apart(
    nats_server: NatsServer,
) -> None:
    """Why each reader has its own bucket (ATTACHMENTS.md 5.1): were all offices to read one
    shared bucket by naming objects in the subject of a direct get, a request with a
    wildcard where the object id goes would return another office's newest chunk."""
    client = await _client(nats_server.url)
    try:
        shared = "blo-att-shared-probe"
        await ensure_bucket(client, BucketSpec(shared, DAY))
        mine, theirs = "aa" * 16, "bb" * 16
        assert await put_chunks(client, shared, mine, [(0, b"mine")], timeout=3) == [None]
        assert await put_chunks(client, shared, theirs, [(0, b"theirs")], timeout=3) == [None]
        nc = await nats.connect(nats_server.url)  # a raw request, as any NATS client can send
        try:
            answer = await nc.request(f"$JS.API.DIRECT.GET.OBJ_{shared}.$O.{shared}.C.*", b"", timeout=3)
        finally:
            await nc.close()
        assert answer.data == b"theirs"
    finally:
        await client.close()


FEED = "mekong-border"


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Bus]:
    nodes = node_access(
        [("TH-MUK", "office"), ("LA-SVK", "office"), ("TH-TCCC", "centre")],
        [parse_feed(f"{FEED}=TH-TCCC:post,LA-SVK,TH-MUK")],
    )
    keys = Keys(tmp_path / "keys")
    server = secured_server(tmp_path, nodes, keys)
    try:
        yield Bus(server, keys)
    finally:
        server.stop()


async def test_under_the_generated_users_an_office_reads_only_its_own_bucket(secured: Bus) -> None:
    admin, muk, svk, tccc = [await secured.client(w) for w in ("admin", "TH-MUK", "LA-SVK", "TH-TCCC")]
    try:
        for bucket in (office_bucket("LA-SVK"), office_bucket("TH-MUK"), office_bucket("TH-TCCC"), feed_bucket(FEED)):
            await ensure_bucket(admin, BucketSpec(bucket, DAY))
        svk_bucket = office_bucket("LA-SVK")
        obj = "ab" * 16
        # TH-MUK writes to LA-SVK's bucket (as it posts to its inbox), and LA-SVK reads it.
        assert await put_chunks(muk, svk_bucket, obj, [(0, b"sealed chunk")], timeout=3) == [None]
        assert await Reader(svk, svk_bucket).get_chunk(obj, 0) == b"sealed chunk"
        # Neither the writer nor another office may read LA-SVK's objects.
        for other in (muk, tccc):
            with pytest.raises(PermissionDenied, match=svk_bucket):
                await Reader(other, svk_bucket).get_chunk(obj, 0)
        # A feed member reads the feed's bucket, and may not write to a feed it only reads.
        assert await put_chunks(tccc, feed_bucket(FEED), obj, [(0, b"to the feed")], timeout=3) == [None]
        assert await Reader(muk, feed_bucket(FEED)).get_chunk(obj, 0) == b"to the feed"
        [refused] = await put_chunks(muk, feed_bucket(FEED), obj, [(1, b"x")], timeout=2)
        assert isinstance(refused, PermissionDenied)
    finally:
        for c in (admin, muk, svk, tccc):
            await c.close()


def test_entries_never_show_their_key_in_a_repr() -> None:
    _, entry = __import__("bus.attachments", fromlist=["seal_file"]).seal_file("a.txt", "text/plain", b"x", DeterministicRng("r"))
    assert entry.key.hex() not in repr(entry) and entry.nonce.hex() not in repr(entry)
    assert msgspec.json.encode(entry.as_dict())  # the dict form is plain JSON
    assert isinstance(entry, Entry)
