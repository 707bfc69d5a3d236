"""The scale benchmark's cluster fixture (bench/cluster.py) runs three real servers that
elect a JetStream meta leader, hold an R3 stream, report their memory and CPU, and are
all gone after the context exits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import pytest

from bench.cluster import Cluster

pytestmark = pytest.mark.timeout(90)


async def test_cluster_holds_an_r3_stream_and_stops_every_server(tmp_path: Path) -> None:
    with Cluster(tmp_path) as cluster:
        procs = [s.proc for s in cluster.servers]
        nc = await nats.connect(list(cluster.urls), connect_timeout=5)
        try:
            js = nc.jetstream(timeout=2.0)
            deadline = time.monotonic() + 40
            while True:  # the meta leader takes a few seconds to be elected
                try:
                    info = await js.add_stream(name="R3", subjects=["r3.>"], num_replicas=3)
                    break
                except (nats.errors.TimeoutError, nats.js.errors.APIError):
                    assert time.monotonic() < deadline, "no JetStream meta leader within 40 s"
                    await asyncio.sleep(0.5)
            assert info.config.num_replicas == 3
            assert len(info.cluster.replicas or []) == 2  # a leader and two followers: all three servers
            assert all(rss > 1_000_000 for rss in cluster.rss_bytes())
            assert all(cpu > 0 for cpu in cluster.cpu_seconds())
        finally:
            await nc.close()
    assert all(p is not None and p.poll() is not None for p in procs)
    assert cluster.rss_bytes() == [0, 0, 0]
