"""The spool's lifetime (bus/transport/spool_sweep.py, schemas/ATTACHMENTS.md 5.5): which
local copies of attachments a node deletes, and when; files moved on a real nats-server."""

from __future__ import annotations

import asyncio
import io
import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus.attachments import Limits, seal_file
from bus.errors import AttachmentError
from bus.testing import DeterministicRng
from bus.transport.client import BusClient, ClientConfig
from bus.transport.object_store import office_bucket
from bus.transport.server import NatsServer
from bus.transport.spool_sweep import DAY_MS, UNSENT_GRACE_MS, Swept, due, sweep
from bus.transport.transfers import TransferMetrics, Transfers
from office_node.attachments import NodeAttachments
from tests.bus_helpers import eventually

pytestmark = pytest.mark.timeout(90)
STATES = ("queued", "complete", "refused", "corrupt", "expired")
RETENTION = 2 * DAY_MS  # the buckets (and bulletin streams) keep things two days here


def test_a_received_file_stays_a_sent_one_goes_with_the_buckets_and_an_unsent_one_after_a_day() -> None:
    kw = {"last_upload_done": 5_000, "sealed_at": 1_000, "retention_ms": RETENTION}
    assert due([], ["complete"], **kw) is None  # received: kept with its bulletin
    assert due(["done"], ["complete"], **kw) is None  # received and forwarded by a centre
    assert due(["queued"], [], **kw) is None and due([], ["queued"], **kw) is None  # still moving
    assert due(["done", "done"], [], **kw) == 5_000 + RETENTION  # sent: as long as the buckets keep it
    assert due([], ["corrupt"], **kw) == 0 and due([], ["refused", "expired"], **kw) == 0  # never whole here
    assert due([], [], **kw) == 1_000 + UNSENT_GRACE_MS  # sealed, never sent


@given(st.lists(st.sampled_from(("queued", "done"))), st.lists(st.sampled_from(STATES)))
def test_a_file_still_moving_or_received_whole_is_never_due(uploads: list[str], downloads: list[str]) -> None:
    when = due(uploads, downloads, last_upload_done=1, sealed_at=1, retention_ms=RETENTION)
    keep = "queued" in uploads or "queued" in downloads or "complete" in downloads
    assert (when is None) == keep


def _pdf(size: int, seed: str) -> bytes:
    return (b"%PDF-1.4\n" + DeterministicRng(seed)(size))[:size]


async def test_the_sweep_deletes_each_local_copy_when_its_rule_says_and_keeps_the_received_evidence(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    now = [1_700_000_000_000]
    clock = lambda: now[0]  # noqa: E731
    sender = NodeAttachments(
        "TH-MUK", tmp_path / "muk", limits=Limits(), bucket_max_age_s=RETENTION / 1000, ensure_buckets=True,
        quarantine=None, metrics=TransferMetrics(), publish=lambda _k, _d: None, rng=DeterministicRng("muk"),
    )  # fmt: skip
    sender.transfers.clock = clock
    receiver = Transfers(tmp_path / "svk", bucket_max_age_s=RETENTION / 1000, clock=clock, limits=Limits(1024 * 1024))
    sent = sender.transfers.seal_to_spool("scan.pdf", "application/pdf", io.BytesIO(_pdf(600_000, "s")), DeterministicRng("s"))
    unsent = sender.transfers.seal_to_spool("draft.pdf", "application/pdf", io.BytesIO(_pdf(1000, "u")), DeterministicRng("u"))
    _, too_big = seal_file("big.pdf", "application/pdf", _pdf(1_100_000, "b"), DeterministicRng("b"))  # sealed elsewhere
    _, never = seal_file("lost.pdf", "application/pdf", _pdf(1000, "l"), DeterministicRng("l"))
    crashed = sender.transfers.spool / ".0123.part"  # a file being sealed when the node died
    crashed.write_bytes(b"half a file")
    os.utime(crashed, (time.time() - 7200, time.time() - 7200))
    bucket = office_bucket("LA-SVK")
    client = BusClient(ClientConfig(urls=(nats_server.url,), publish_timeout_s=2.0))
    await client.start()
    assert await client.wait_connected(5)
    tasks = []
    try:
        sender.transfers.queue_uploads("B1", 3, [sent], [bucket])
        receiver.queue_downloads("B1", 3, [sent], bucket)
        receiver.queue_downloads("B2", 3, [too_big], bucket)  # over the receiver's 1 MiB: refused (R2)
        receiver.queue_downloads("B3", 3, [never], bucket)  # its sender never uploads it
        tasks = [asyncio.create_task(sender.transfers.run(client)), asyncio.create_task(receiver.run(client))]
        await eventually(lambda: receiver.downloads("B1")[0].state == "complete", 30, "the file at the receiver")
        await eventually(lambda: sender.transfers.pending()[0] == 0, 10, "the upload recorded done")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
    try:
        sent_at = now[0]
        view = {"id": "B1", "attachments": [sent.as_dict()]}
        # The pumps swept as they started: the crash's .part, and the refused file (nothing whole to keep).
        assert not crashed.exists()
        assert receiver.removed_at(too_big.object_hex) == sent_at
        now[0] += 3_600_000  # an hour on
        assert sweep(sender.transfers) == sweep(receiver) == Swept()
        assert sender.transfers.spool_path(unsent.object_hex).exists()  # maybe its post is still coming

        now[0] = sent_at + UNSENT_GRACE_MS + 1  # a day on: the post of draft.pdf never came
        assert sweep(sender.transfers).removed == 1
        assert not sender.transfers.spool_path(unsent.object_hex).exists()
        assert sender.transfers.removed_at(unsent.object_hex) is None  # nothing referred to it: forgotten
        assert receiver.downloads("B3")[0].state == "queued"  # the buckets may still bring it

        now[0] = sent_at + RETENTION + DAY_MS + 1  # the buckets no longer keep anything of then
        assert sweep(receiver).expired == 1
        [lost] = receiver.downloads("B3")
        assert lost.state == "expired" and lost.reason == "attachment_expired" and "cannot arrive" in (lost.message or "")
        assert sweep(sender.transfers).removed == 1  # the sent file: its uploads done two days ago
        assert not sender.transfers.spool_path(sent.object_hex).exists()
        with pytest.raises(AttachmentError, match="no longer kept on this node") as refused:
            list(sender.transfers.read_plaintext(sent))
        assert refused.value.reason == "attachment_removed"
        [shown], complete = sender.describe(view, sent=True)
        assert shown["state"] == "removed" and "removed from this node on" in shown["message"] and not complete
        # The receiver keeps its copy of the evidence, whatever the date.
        now[0] += 365 * DAY_MS
        assert sweep(receiver).removed == 0
        assert b"".join(receiver.read_plaintext(sent)) == _pdf(600_000, "s")
    finally:
        sender.close()
        receiver.close()
