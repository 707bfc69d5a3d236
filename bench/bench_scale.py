"""Many offices on one 3-server hub: what each office costs the servers (issue 19).

A load generator, not full nodes: for every simulated office it creates the
consumers a real node holds (``bus.transport.subjects.node_consumers`` with two feeds,
plus ``receipts_consumer_spec``: 4 inbox + 8 feed + 1 receipts = 13) on a real 3-server
cluster on 127.0.0.1 (``bench.cluster``) with the streams at R3 (``default_streams``),
and publishes as offices do (``office_subject``). Then it measures:

* server memory (RSS, the three servers summed) and idle CPU, per office;
* consumer creation rate;
* a hub restart (all three servers stopped, started): seconds until every consumer is
  back (the streams count them all, a sample answers ``consumer info``, a FLASH goes
  through);
* end-to-end FLASH latency (publish start -> message in the receiver's hands, through
  the real ``BusClient.publish`` and ``PullConsumer.fetch``) with every office idle, and
  while ``min(N, 1000)`` offices post a 2 KiB ROUTINE bulletin each, all at once, over
  and over;
* the directory of ``--directory`` offices: verified and applied from scratch
  (``bench_directory``), and put into the ``blo_directory`` KV bucket (its stored bytes).

Design variants (``--variants``), each in the same harness:

* ``durable``: the design before issue 19: one durable consumer per spec, consumer
  replicas = the stream's (R3);
* ``r1``: the same consumers at 1 replica (``num_replicas=1``) on the R3 streams;
* ``merged``: one consumer per office and stream, carrying the specs' filter subjects
  together (``filter_subjects``): 4 per office instead of 13; precedence would then be
  kept by the node;
* ``merged-r1``: both;
* ``feeds-cursor``: the inbox and receipts consumers durable at R3 (5 per office), each
  feed's four held by the server only while read (one replica, in memory; the node keeps
  where it reached);
* ``cursor``: the design since issue 19 (``bus/transport/cursor.py``, SUBJECTS.md
  "Consumers of one node"): every consumer so, none durable.

``python -m bench scale`` runs a small size; ``python -m bench.bench_scale --help`` the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bench.cluster import Cluster
from bench.table import print_table
from bus.transport.client import BusClient, ClientConfig, ack
from bus.transport.cursor import INACTIVE_S
from bus.transport.subjects import (
    ConsumerSpec,
    default_streams,
    node_consumers,
    office_subject,
    receipts_consumer_spec,
)

FEEDS = ("mekong-drugs", "border-alerts")
VARIANTS = ("durable", "r1", "merged", "merged-r1", "feeds-cursor", "cursor")
PAYLOAD = 2048
PROBES = 40


def office_id(i: int) -> str:
    return f"TH-B{i:05d}"


def office_specs(office: str) -> list[ConsumerSpec]:
    """The durable consumers a node of ``office`` (member of ``FEEDS``) creates."""
    return [*node_consumers(office, FEEDS), receipts_consumer_spec(office)]


def consumer_configs(office: str, variant: str) -> list[tuple[str, ConsumerConfig]]:
    """(stream, config) of every consumer one office holds under ``variant``. The fields
    are those ``BusClient.pull`` sets (explicit ack, never give up, 2000 in flight)."""
    specs = office_specs(office)

    def config(durable: str, filters: list[str], ephemeral: bool = False) -> ConsumerConfig:
        cfg = ConsumerConfig(
            name=durable,
            durable_name=None if ephemeral else durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30.0,
            max_deliver=-1,
            max_ack_pending=2000,
            filter_subject=filters[0] if len(filters) == 1 else None,
            filter_subjects=filters if len(filters) > 1 else None,
            num_replicas=1 if variant.endswith("r1") or ephemeral else None,
        )
        if ephemeral:  # as BusClient.pull makes an ephemeral ConsumerSpec's
            cfg.mem_storage = True
            # A node's pull requests keep its consumers alive; the simulated offices send
            # none, so a run longer than INACTIVE_S would see them expire.
            cfg.inactive_threshold = max(INACTIVE_S, 4 * 3600)
        return cfg

    if variant == "feeds-cursor":
        return [(s.stream, config(s.durable, [s.filter_subject], s.feed is not None)) for s in specs]
    if variant == "cursor":
        return [(s.stream, config(s.durable, [s.filter_subject], True)) for s in specs]
    if not variant.startswith("merged"):
        return [(s.stream, config(s.durable, [s.filter_subject])) for s in specs]
    # One consumer per (stream, feed or inbox) with all four precedences' filters.
    groups: dict[tuple[str, str | None], list[ConsumerSpec]] = defaultdict(list)
    for s in specs:
        groups[(s.stream, s.feed)].append(s)
    out = []
    for (stream, _), members in groups.items():
        durable = members[0].durable.removesuffix("-flash")  # inbox-TH-B00001, feed-<feed>-TH-B00001
        out.append((stream, config(durable, [s.filter_subject for s in members])))
    return out


def probe_spec(office: str, variant: str) -> ConsumerSpec:
    """The consumer the latency probe reads ``office``'s FLASH inbox through."""
    stream, cfg = consumer_configs(office, variant)[0]
    return ConsumerSpec(stream, cfg.name or "", cfg.filter_subject or (cfg.filter_subjects or [""])[0], 0)


@dataclass
class Result:
    variant: str
    offices: int
    consumers: int = 0
    create_s: float = 0.0
    rss_base: int = 0
    rss: int = 0
    idle_cpu: float = 0.0  # server CPU seconds per second, all three, offices idle
    restart_s: float = 0.0
    idle_ms: tuple[float, float] = (0.0, 0.0)  # median, p95
    busy_ms: tuple[float, float] = (0.0, 0.0)
    posters: int = 0
    posted_per_s: float = 0.0
    store: int = 0


async def _client(urls: tuple[str, ...]) -> BusClient:
    client = BusClient(ClientConfig(urls=urls, publish_timeout_s=60.0, connect_timeout_s=10.0))
    await client.start()
    if not await client.wait_connected(30.0):
        raise TimeoutError("the bench client did not connect within 30 s")
    return client


async def _js(urls: tuple[str, ...], timeout: float = 60.0):  # type: ignore[no-untyped-def]
    nc = await nats.connect(list(urls), connect_timeout=10, max_reconnect_attempts=-1, reconnect_time_wait=0.5)
    return nc, nc.jetstream(timeout=timeout)


async def _wait_meta(urls: tuple[str, ...], timeout: float) -> None:
    """Until the cluster's JetStream answers (a meta leader is elected)."""
    nc, js = await _js(urls, timeout=2.0)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                await js.account_info()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.25)
    finally:
        await nc.close()


def _ephemeral(cfg: ConsumerConfig) -> bool:
    return cfg.durable_name is None


async def _create(js, offices: list[str], variant: str, concurrency: int = 48, *, only_ephemeral: bool = False) -> int:  # type: ignore[no-untyped-def]
    todo = [c for o in offices for c in consumer_configs(o, variant) if not only_ephemeral or _ephemeral(c[1])]
    sem = asyncio.Semaphore(concurrency)

    async def one(stream: str, cfg: ConsumerConfig) -> None:
        async with sem:
            for attempt in range(5):
                try:
                    await js.add_consumer(stream, config=cfg)
                    return
                except Exception:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(1.0)

    await asyncio.gather(*(one(s, c) for s, c in todo))
    return len(todo)


async def _latency(client: BusClient, variant: str, probes: int, sender: str, receiver: str) -> list[float]:
    pc = await client.pull(probe_spec(receiver, variant))
    subject = office_subject(receiver, "FLASH", sender)
    out = []
    try:
        for i in range(probes):
            fetch = asyncio.create_task(pc.fetch(1, 10.0))
            started = time.perf_counter()
            await client.publish(subject, os.urandom(PAYLOAD), f"probe-{variant}-{time.time_ns()}-{i}")
            msgs = await fetch
            out.append((time.perf_counter() - started) * 1000)
            for m in msgs:
                await ack(m)
            await asyncio.sleep(0.02)
    finally:
        await pc.close()
    return out


async def _post_all(clients: list[BusClient], posters: list[str], stop: asyncio.Event) -> int:
    """Every office in ``posters`` posts one ROUTINE bulletin to the next office, all at
    once, round after round until ``stop``; the number stored."""
    done = 0
    body = os.urandom(PAYLOAD)
    rounds = 0
    while not stop.is_set():
        rounds += 1
        jobs = []
        for i, sender in enumerate(posters):
            to = posters[(i + 1) % len(posters)]
            c = clients[i % len(clients)]
            jobs.append(c.publish(office_subject(to, "ROUTINE", sender), body, f"load-{rounds}-{sender}"))
        acks = await asyncio.gather(*jobs, return_exceptions=True)
        done += sum(1 for a in acks if not isinstance(a, BaseException))
    return done


def _pct(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    return statistics.median(xs), xs[min(len(xs) - 1, int(len(xs) * 0.95))]


async def _ready_after_restart(cluster: Cluster, offices: list[str], variant: str) -> float:
    """Stop all three servers, start them; seconds until every consumer is back: the
    durable ones recovered by the servers, the ephemeral ones (gone with the servers'
    memory) made again as the nodes do on reconnecting."""
    expected = sum(1 for o in offices for _, c in consumer_configs(o, variant) if not _ephemeral(c))
    ephemerals = any(_ephemeral(c) for _, c in consumer_configs(offices[0], variant))
    cluster.stop()
    started = time.monotonic()
    cluster.start()
    await _wait_meta(cluster.urls, 600)
    phases = [("meta", time.monotonic() - started)]
    nc, js = await _js(cluster.urls, timeout=5.0)
    try:
        streams = {s for o in offices[:1] for s, _ in consumer_configs(o, variant)}
        while True:
            try:
                counts = [(await js.stream_info(s)).state.consumer_count for s in streams]
                if sum(counts) >= expected:
                    break
            except Exception:
                pass
            if time.monotonic() - started > 900:
                raise TimeoutError("consumers not back within 900 s")
            await asyncio.sleep(0.5)
        phases.append(("counted", time.monotonic() - started))
        if ephemerals:
            await _create(js, offices, variant, only_ephemeral=True)
            phases.append(("re-made", time.monotonic() - started))
        step = max(1, len(offices) // 30)  # a sample answers consumer info (its Raft group has a leader)
        for o in offices[::step]:
            for stream, cfg in consumer_configs(o, variant)[:1]:
                while True:
                    try:
                        await js.consumer_info(stream, cfg.name)
                        break
                    except Exception:
                        await asyncio.sleep(0.25)
        phases.append(("sampled", time.monotonic() - started))
    finally:
        await nc.close()
    client = await _client(cluster.urls)
    try:
        await _latency(client, variant, 1, "TH-PROBE", offices[0])
    finally:
        await client.close()
    phases.append(("flash", time.monotonic() - started))
    print("  restart phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in phases))
    return time.monotonic() - started


async def measure(n: int, variant: str, *, restart: bool = True, posters_max: int = 1000, log=print) -> Result:  # type: ignore[no-untyped-def]
    offices = [office_id(i) for i in range(n)]
    r = Result(variant, n)
    with tempfile.TemporaryDirectory(prefix="blo-scale-") as tmp, Cluster(Path(tmp)) as cluster:
        await _wait_meta(cluster.urls, 60)
        admin = await _client(cluster.urls)
        try:
            await admin.ensure_streams(default_streams(replicas=3))
        finally:
            await admin.close()
        await asyncio.sleep(2)
        r.rss_base = sum(cluster.rss_bytes())
        nc, js = await _js(cluster.urls)
        try:
            t = time.monotonic()
            r.consumers = await _create(js, offices, variant)
            r.create_s = time.monotonic() - t
        finally:
            await nc.close()
        log(f"  {variant} {n}: {r.consumers} consumers in {r.create_s:.1f} s")
        await asyncio.sleep(5)
        cpu0, t0 = sum(cluster.cpu_seconds()), time.monotonic()
        await asyncio.sleep(10)
        r.idle_cpu = (sum(cluster.cpu_seconds()) - cpu0) / (time.monotonic() - t0)
        r.rss = sum(cluster.rss_bytes())

        clients = [await _client(cluster.urls) for _ in range(4)]
        try:
            r.idle_ms = _pct(await _latency(clients[0], variant, PROBES, "TH-PROBE", offices[0]))
            posters = offices[1 : 1 + min(posters_max, n - 1)]
            r.posters = len(posters)
            stop = asyncio.Event()
            load = asyncio.create_task(_post_all(clients[1:], posters, stop))
            t = time.monotonic()
            await asyncio.sleep(1.0)
            busy = await _latency(clients[0], variant, PROBES, "TH-PROBE", offices[0])
            stop.set()
            r.posted_per_s = await load / (time.monotonic() - t)
            r.busy_ms = _pct(busy)
        finally:
            for c in clients:
                await c.close()
        log(f"  {variant} {n}: flash idle {r.idle_ms[0]:.1f} ms, busy {r.busy_ms[0]:.1f} ms")
        if restart:
            r.restart_s = await _ready_after_restart(cluster, offices, variant)
            log(f"  {variant} {n}: restart ready in {r.restart_s:.1f} s")
        r.store = cluster.store_bytes()
    return r


async def directory_bucket(n: int) -> tuple[float, int, int]:
    """Seconds to verify and apply a directory of ``n`` offices from scratch, its items,
    and the bytes its KV bucket stores."""
    from bench.bench_directory import build, verify_all
    from bus.transport.kv_directory import open_bucket, publish_item

    anchors, items = build(n)
    t = time.perf_counter()
    verify_all(anchors, items, n)
    applied = time.perf_counter() - t
    with tempfile.TemporaryDirectory(prefix="blo-scale-dir-") as tmp, Cluster(Path(tmp)) as cluster:
        await _wait_meta(cluster.urls, 60)
        nc, js = await _js(cluster.urls)
        try:
            kv = await open_bucket(js, create=True)
            sem = asyncio.Semaphore(64)

            async def put(raw: bytes) -> None:
                async with sem:
                    await publish_item(kv, raw)

            await asyncio.gather(*(put(raw) for raw in items))
            info = await js.stream_info("KV_blo_directory")
            size = info.state.bytes
        finally:
            await nc.close()
    return applied, len(items), size


def _mib(b: float) -> float:
    return b / 2**20


def report(results: list[Result]) -> None:
    rows = []
    for r in results:
        per = (r.rss - r.rss_base) / r.offices
        rows.append(
            [
                r.variant,
                r.offices,
                r.consumers,
                f"{r.consumers / r.create_s:.0f}",
                f"{_mib(r.rss):.0f}",
                f"{per / 1024:.0f}",
                f"{r.idle_cpu * 100:.1f}",
                f"{r.idle_cpu / r.offices * 1e5:.2f}",
                f"{r.restart_s:.1f}",
                f"{r.idle_ms[0]:.1f}/{r.idle_ms[1]:.1f}",
                r.posters,
                f"{r.busy_ms[0]:.1f}/{r.busy_ms[1]:.1f}",
                f"{r.posted_per_s:.0f}",
                f"{_mib(r.store):.0f}",
            ]
        )
    print_table(
        [
            "variant",
            "offices",
            "consumers",
            "created/s",
            "RSS MiB (3)",
            "KiB/office",
            "idle CPU %",
            "CPU %/1000 off.",
            "restart s",
            "FLASH idle ms p50/p95",
            "posters",
            "FLASH busy ms p50/p95",
            "posted/s",
            "store MiB",
        ],
        rows,
    )


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bench_scale", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="100,300", help="office counts, comma-separated")
    p.add_argument("--variants", default="durable,cursor", help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--directory", type=int, default=10_000, help="offices in the directory (0: skip)")
    p.add_argument("--no-restart", action="store_true")
    a = p.parse_args(argv if argv is not None else [])
    # A run cut short (``timeout``, Ctrl-C) still stops its servers: they run in their own
    # session, so only the ``Cluster`` context's exit ends them.
    signal.signal(signal.SIGTERM, _exit_on_term)
    unknown = set(a.variants.split(",")) - set(VARIANTS)
    if unknown:
        p.error(f"no variant {', '.join(sorted(unknown))}; have {', '.join(VARIANTS)}")
    results = []
    failed = []
    for n in [int(x) for x in a.sizes.split(",")]:
        for v in a.variants.split(","):
            try:
                results.append(asyncio.run(measure(n, v, restart=not a.no_restart)))
            except Exception as exc:  # a size the hub cannot take is a result too
                failed.append((v, n, f"{type(exc).__name__}: {exc}"[:160]))
                print(f"  {v} {n}: did not finish: {failed[-1][2]}", flush=True)
    report(results)
    if failed:
        print_table(["variant", "offices", "did not finish"], [list(f) for f in failed])
    if a.directory:
        applied, items, size = asyncio.run(directory_bucket(a.directory))
        print_table(
            ["directory offices", "signed items", "verified+applied s", "KV bucket MiB", "bytes/office"],
            [[a.directory, items, f"{applied:.2f}", f"{_mib(size):.1f}", f"{size / a.directory:.0f}"]],
        )


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
