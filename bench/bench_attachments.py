"""Attachment throughput and memory, beside raw nats-py Object Store put/get in the same run.

On one loopback nats-server (default sync interval, as for the raw side):

* **raw**: nats-py's ``ObjectStore.put`` of the file's bytes (from a file object), then
  ``ObjectStore.get`` into a file object: no encryption, one object.
* **bus**: ``Transfers`` seals the same file from disk into the spool (per-chunk
  XChaCha20-Poly1305, two SHA-256s) and uploads its chunk objects until every one is
  acknowledged; then a second ``Transfers`` fetches them, checks each (R3-R5), writes the
  spool and checks the whole file (R6-R7).

Upload rate = file bytes / (seal + upload); download rate = file bytes / (fetch + checks).
``ROUNDS`` paired rounds (raw, then bus); the ratio is the median of the rounds' ratios.
Target (issue 16): each ratio >= 0.7. On a shared machine the rates move with the load, so
each side's CPU time is printed too (this process, its threads included, plus the
nats-server's): the CPU ratio (raw / bus) is the figure that stays put under load.

Memory: a child process seals, uploads, downloads and checks a 100 MiB file, streamed
from and to disk; reported is its peak resident set size minus its resident size once
connected and idle, before the file. Target: < 64 MiB. The peak is the child's own
``VmHWM``: ``ru_maxrss`` would carry over the parent's peak through fork and exec, which
after the other benchmarks of ``make bench`` is some 300 MiB.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.table import print_table

SIZE = 20 * 1024 * 1024
BIG = 100 * 1024 * 1024
ROUNDS = 3


def _write_file(path: Path, size: int) -> None:
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as f:
        f.write(b"%PDF-1.4\n")
        written = 9
        while written < size:
            piece = block[: min(len(block), size - written)]
            f.write(piece)
            written += len(piece)


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Cpu:
    """CPU seconds of this process and of the nats-server over a phase."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.used = 0.0

    def __enter__(self) -> _Cpu:
        self._start = time.process_time() + _cpu_s(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.used = time.process_time() + _cpu_s(self.pid) - self._start


async def _raw(url: str, path: Path, out: Path, n: int, server_pid: int) -> tuple[float, float, float, float]:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream(timeout=30)
    store = await js.create_object_store(f"raw{n}")
    t = time.perf_counter()
    with _Cpu(server_pid) as up_cpu, open(path, "rb") as f:
        await store.put("file", f)
    up = time.perf_counter() - t
    t = time.perf_counter()
    with _Cpu(server_pid) as down_cpu, open(out, "wb") as f:
        await store.get("file", writeinto=f)
    down = time.perf_counter() - t
    await js.delete_object_store(f"raw{n}")
    await nc.close()
    return up, down, up_cpu.used, down_cpu.used


async def _bus(url: str, path: Path, root: Path, n: int, size: int, server_pid: int) -> tuple[float, float, float, float]:
    from bus.attachments import Limits
    from bus.testing import DeterministicRng
    from bus.transport.client import BusClient, ClientConfig
    from bus.transport.object_store import office_bucket
    from bus.transport.transfers import Transfers

    limits = Limits(size, size)
    client = BusClient(ClientConfig(urls=(url,), publish_timeout_s=30.0))
    await client.start()
    await client.wait_connected(5)
    sender = Transfers(root / f"s{n}", bucket_max_age_s=3600, limits=limits)
    receiver = Transfers(root / f"r{n}", bucket_max_age_s=3600, limits=limits)
    bucket = office_bucket(f"LA-B{n}")
    t = time.perf_counter()
    with _Cpu(server_pid) as up_cpu:
        with open(path, "rb") as f:
            entry = await asyncio.to_thread(sender.seal_to_spool, "file.pdf", "application/pdf", f, DeterministicRng(str(n)))
        sender.queue_uploads("B", 3, [entry], [bucket])
        task = asyncio.create_task(sender.run(client))
        while sender.pending()[0]:
            await asyncio.sleep(0.005)
    up = time.perf_counter() - t
    task.cancel()
    t = time.perf_counter()
    with _Cpu(server_pid) as down_cpu:
        receiver.queue_downloads("B", 3, [entry], bucket)
        task = asyncio.create_task(receiver.run(client))
        while receiver.pending()[1]:
            await asyncio.sleep(0.005)
    down = time.perf_counter() - t
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert receiver.downloads("B")[0].state == "complete"
    sender.close()
    receiver.close()
    await client.close()
    return up, down, up_cpu.used, down_cpu.used


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    """This process's own peak resident size (``VmHWM``; not inherited through exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _memory_child(url: str, root: str, server_pid: int, queue: mp.Queue) -> None:
    async def run() -> tuple[int, int]:
        from bus.transport.client import BusClient, ClientConfig

        path = Path(root) / "big.pdf"
        client = BusClient(ClientConfig(urls=(url,)))
        await client.start()
        await client.wait_connected(5)
        await client.close()
        idle = _rss_bytes()
        await _bus(url, path, Path(root), 99, BIG, server_pid)
        peak = _peak_rss_bytes()
        return idle, peak

    queue.put(asyncio.run(run()))


def main() -> None:
    from bus.transport.server import NatsServer

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = NatsServer(root / "nats").start()
        try:
            path = root / "file.pdf"
            _write_file(path, SIZE)
            assert server.proc is not None
            pid = server.proc.pid
            ups, downs, cpu_ups, cpu_downs, rows, cpu_rows = [], [], [], [], [], []
            for n in range(ROUNDS):
                raw_up, raw_down, raw_up_cpu, raw_down_cpu = asyncio.run(_raw(server.url, path, root / f"raw{n}.out", n, pid))
                bus_up, bus_down, bus_up_cpu, bus_down_cpu = asyncio.run(_bus(server.url, path, root, n, SIZE, pid))
                ups.append(raw_up / bus_up)
                downs.append(raw_down / bus_down)
                cpu_ups.append(raw_up_cpu / bus_up_cpu)
                cpu_downs.append(raw_down_cpu / bus_down_cpu)
                rows.append((n + 1, SIZE / raw_up / 2**20, SIZE / bus_up / 2**20, ups[-1],
                             SIZE / raw_down / 2**20, SIZE / bus_down / 2**20, downs[-1]))  # fmt: skip
                cpu_rows.append((n + 1, raw_up_cpu * 1000, bus_up_cpu * 1000, cpu_ups[-1],
                                 raw_down_cpu * 1000, bus_down_cpu * 1000, cpu_downs[-1]))  # fmt: skip
            print(f"{SIZE // 2**20} MiB file, MiB/s (upload: seal + store every chunk; download: fetch + every check)")
            print_table(("round", "raw put", "bus upload", "ratio", "raw get", "bus download", "ratio"), rows)
            print("CPU ms, this process and the nats-server (ratio raw / bus: above 1, the bus used less)")
            print_table(("round", "raw put", "bus upload", "ratio", "raw get", "bus download", "ratio"), cpu_rows)
            print(f"median ratio: upload {statistics.median(ups):.2f}, download {statistics.median(downs):.2f} (target >= 0.7)")
            print(f"median CPU ratio: upload {statistics.median(cpu_ups):.2f}, download {statistics.median(cpu_downs):.2f}")

            _write_file(root / "big.pdf", BIG)
            ctx = mp.get_context("spawn")
            queue: mp.Queue = ctx.Queue()
            child = ctx.Process(target=_memory_child, args=(server.url, str(root), pid, queue))
            child.start()
            idle, peak = queue.get(timeout=600)
            child.join()
            print_table(
                ("100 MiB file, streamed", "MiB"),
                [("idle (connected)", idle / 2**20), ("peak", peak / 2**20), ("peak above idle", (peak - idle) / 2**20)],
            )
            print(f"peak above idle: {(peak - idle) / 2**20:.1f} MiB (target < 64)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
