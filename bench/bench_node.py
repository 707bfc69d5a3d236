"""The office node as an officer meets it, beside raw nats-py in the same run.

* **Idle memory**: resident set size of a running ``blo node run`` (bus, 13 durable
  consumers, HTTP server, SQLite, directory watcher) after it has settled, beside a bare
  Python process holding one nats-py connection with one JetStream pull subscription.
* **Latency**: from the start of ``POST /api/bulletins`` on TH-MUK to the bulletin's
  event on LA-SVK's live stream (``/api/events``), at a paced 100 bulletins/s: HTTP,
  validation, seal, outbox, JetStream, pull, open, verify, store, receipt, SSE. The
  baseline is raw nats-py at the same pace with a same-size payload: JetStream publish
  with ack to a pull consumer in another process.

Both nodes run as real ``blo node run`` processes on one loopback nats-server (default
sync interval, as for the raw baseline). Most of the node's latency is disk: the post
is fsynced into the outbox, the store and the audit log before the API answers, and the
receiver stores the bulletin before it is shown, because a bulletin an officer was told
is queued, or was shown, must survive a power cut.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.table import print_table

N = 300  # 3 s at 100/s
PACE_HZ = 100
SETTLE_S = 3.0


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def _wait_health(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("a node exited at start")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if json.load(r)["nats"] == "connected":
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("a node did not come up")


# -- the raw baseline ------------------------------------------------------------------


def _raw_idle(url: str, ready: Any, stop: Any) -> None:
    async def main() -> None:
        import nats

        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name="RAWIDLE", subjects=["rawidle.>"])
        await js.pull_subscribe("rawidle.x", durable="idle", stream="RAWIDLE")
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await nc.close()

    asyncio.run(main())


def _raw_consumer(url: str, n: int, ready: Any, out: Any) -> None:
    async def main() -> None:
        import nats

        nc = await nats.connect(url)
        js = nc.jetstream()
        sub = await js.pull_subscribe("rawlat.x", durable="lat", stream="RAWLAT")
        ready.set()
        lat: list[float] = []
        while len(lat) < n:
            try:
                msgs = await sub.fetch(1, timeout=1.0)
            except TimeoutError:
                continue
            now = time.time_ns()
            for m in msgs:
                lat.append((now - int(m.data[:19])) / 1e6)
                await m.ack()
        out.put(lat)
        await nc.close()

    asyncio.run(main())


async def _raw_latency(url: str, size: int) -> list[float]:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="RAWLAT", subjects=["rawlat.>"])
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    consumer = ctx.Process(target=_raw_consumer, args=(url, N, ready, out))
    consumer.start()
    ready.wait(30)
    started = time.time()
    for i in range(N):
        stamp = str(time.time_ns()).encode()
        await js.publish("rawlat.x", stamp + b"." * (size - len(stamp)), headers={"Nats-Msg-Id": str(i)})
        await asyncio.sleep(max(0.0, started + (i + 1) / PACE_HZ - time.time()))
    lat = await asyncio.to_thread(out.get, True, 60)
    consumer.join(10)
    await nc.close()
    return lat


# -- the node ---------------------------------------------------------------------------


async def _node_latency(muk_url: str, muk_token: str, svk_url: str, svk_token: str) -> tuple[list[float], int]:
    import aiohttp

    from tests.node_helpers import bulletin_request

    sent: dict[str, float] = {}
    lat: list[float] = []
    size = 0
    done = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        async with session.get(svk_url + "/api/events", headers={"Authorization": f"Bearer {svk_token}"}) as stream:
            await stream.content.readline()

            async def listen() -> None:
                kind = None
                async for raw in stream.content:
                    line = raw.decode().strip()
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:") and kind == "bulletin":
                        now = time.perf_counter()
                        data = json.loads(line[5:])
                        t0 = sent.get(data["id"])
                        if t0 is not None:
                            lat.append((now - t0) * 1000)
                            if len(lat) >= N:
                                done.set()
                                return

            listener = asyncio.create_task(listen())
            headers = {"Authorization": f"Bearer {muk_token}"}
            body = bulletin_request(body="เอกสารปลอม " * 80)
            size = len(json.dumps(body, ensure_ascii=False).encode())
            started = time.time()
            for i in range(N):
                t0 = time.perf_counter()
                async with session.post(muk_url + "/api/bulletins", json=body, headers=headers) as r:
                    answer = await r.json()
                sent[answer["id"]] = t0
                await asyncio.sleep(max(0.0, started + (i + 1) / PACE_HZ - time.time()))
            await asyncio.wait_for(done.wait(), 60)
            listener.cancel()
    return lat, size


def main() -> None:
    from bus.transport.server import NatsServer, free_port
    from office_node.accounts import CHEAP
    from office_node.network import NodeSpec, build_network

    blo = str(Path(sys.executable).parent / "blo")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = NatsServer(root / "nats").start()
        procs: list[subprocess.Popen[bytes]] = []
        try:
            p1, p2 = free_port(), free_port()
            specs = [
                NodeSpec("TH-TCCC", "Thailand TCCC", "centre"),
                NodeSpec("LA-TCCC", "Lao TCCC", "centre"),
                NodeSpec("TH-MUK", "Mukdahan BLO", http_port=p1),
                NodeSpec("LA-SVK", "Savannakhet BLO", http_port=p2),
            ]
            net = build_network(root / "net", specs, nats_urls=[server.url], now_ms=int(time.time() * 1000), hash_limits=CHEAP)
            env = {k: v for k, v in os.environ.items() if not k.startswith("BLO_")}
            for office, port in (("TH-MUK", p1), ("LA-SVK", p2)):
                proc = subprocess.Popen(
                    [blo, "node", "run", "--config", str(net[office].home.config_path), "--log-level", "warning"],
                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                procs.append(proc)
                _wait_health(port, proc)
            ctx = mp.get_context("spawn")
            ready, stop = ctx.Event(), ctx.Event()
            raw = ctx.Process(target=_raw_idle, args=(server.url, ready, stop))
            raw.start()
            ready.wait(30)
            time.sleep(SETTLE_S)
            node_rss = _rss_kb(procs[1].pid)
            raw_rss = _rss_kb(raw.pid or 0)
            stop.set()
            raw.join(10)

            lat, size = asyncio.run(_node_latency(f"http://127.0.0.1:{p1}", net["TH-MUK"].token or "",
                                                  f"http://127.0.0.1:{p2}", net["LA-SVK"].token or ""))  # fmt: skip
            raw_lat = asyncio.run(_raw_latency(server.url, size))
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(15)
            server.stop()

    print(f"idle resident memory after {SETTLE_S:.0f} s, and latency at a paced {PACE_HZ}/s over {N} bulletins of {size} B")
    print_table(
        ("what", "RSS MB", "p50 ms", "p99 ms", "max ms"),
        [
            ("raw nats-py: one connection, one pull subscription", raw_rss / 1024, "-", "-", "-"),
            ("raw nats-py JetStream publish -> pull consumer", "-", statistics.median(raw_lat), _pct(raw_lat, 99), max(raw_lat)),
            ("blo node run (idle, 13 consumers, HTTP, SQLite)", node_rss / 1024, "-", "-", "-"),
            ("node: POST on TH-MUK -> live stream of LA-SVK", "-", statistics.median(lat), _pct(lat, 99), max(lat)),
        ],
    )
    print(
        f"ratios: node RSS / raw = {node_rss / max(raw_rss, 1):.1f}; "
        f"node p99 / raw p99 = {_pct(lat, 99) / max(_pct(raw_lat, 99), 1e-9):.1f}"
    )


if __name__ == "__main__":
    main()
