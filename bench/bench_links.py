"""An office behind a bad link: a 64 kbit/s line with 600 ms round trip, between the office's
node and the hub (bus.testing_net's proxy on loopback; a direct connection).

* **FLASH behind a backlog.** 5,000 ROUTINE bulletins are posted (the outbox holds them;
  the line drains about five a second); once the first have arrived, a FLASH is posted:
  the time until the counterpart has it (target: under 2 s plus its own transfer time,
  about 0.2 s for 1.6 KB at 8 KB/s).
* **Drain rate.** Bulletin bytes delivered per second while the backlog drains, beside raw
  nats-py publishing the same number of same-size messages to JetStream over the same
  line (windowed, 32 unacknowledged): the ratio (target >= 0.8) and each as a share of
  the line's capacity.
* **Bytes on the wire** per bulletin (client to hub: the PUB line, headers, the envelope,
  and the acks' share the other way) against the sealed size; and what compressing the
  body before sealing would save on the sample bulletins in five languages (zlib level 6,
  from the standard library, standing for zstd level 3: not on the wire, measured only).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from bench.table import print_table

RATE_BPS = 64_000
ONE_WAY_S = 0.3
BACKLOG = 5_000
DRAIN_SAMPLE = 60  # bulletins timed for the drain rate (about 12 s at 8 KB/s)
FLASHES = 3


async def _raw(url: str, payload: bytes, n: int) -> float:
    """Seconds for raw nats-py to publish ``n`` messages of ``payload`` to JetStream and
    have every ack, 32 unacknowledged at most."""
    import nats

    nc = await nats.connect(url, connect_timeout=10)
    js = nc.jetstream(timeout=120)
    try:
        window = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with window:
                await js.publish("blo.office.LA-SVK.routine.TH-MUK", payload, headers={"Nats-Msg-Id": f"raw-{i}"})

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.monotonic() - started
    finally:
        await nc.close()


async def _run() -> dict[str, Any]:
    from bus.testing_net import Link, LinkProxy
    from bus.transport.client import ClientConfig
    from bus.transport.node import NodeOptions
    from bus.transport.server import NatsServer
    from tests.bus_helpers import Collector, bulletin, make_node, offices

    (muk, svk), book = offices("TH-MUK", "LA-SVK")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, NatsServer(Path(tmp) / "nats") as server:
        port = int(server.url.rsplit(":", 1)[1])
        app = Collector()
        receiver = make_node(svk, book, Path(tmp) / "svk", server.url, app=app)
        await receiver.start()
        link = Link(rate_bps=RATE_BPS, delay_s=ONE_WAY_S)
        async with LinkProxy(("127.0.0.1", port), link, lifetime_s=900) as proxy:
            sender = make_node(muk, book, Path(tmp) / "muk", proxy.url, fetch_wait_s=NodeOptions().fetch_wait_s)
            sender.client_config = ClientConfig(urls=(proxy.url,), publish_timeout_s=60, reconnect_wait_s=0.2, connect_timeout_s=10)
            await sender.start()
            try:
                await sender.ready()
                posted = await sender.submit_many([(bulletin("TH-MUK", i, body_bytes=1000), ["LA-SVK"], []) for i in range(BACKLOG)])
                sealed = statistics.mean(len(p.sealed) for p in posted)
                await app.wait_for(5, 120)
                # drain: DRAIN_SAMPLE bulletins from here, and the bytes the line carried for them
                n0, up0, t0 = len(app.got), link.stats.bytes_up, time.monotonic()
                await app.wait_for(n0 + DRAIN_SAMPLE, 300)
                drain_s, up_bytes = time.monotonic() - t0, link.stats.bytes_up - up0
                out["bus_drain"] = DRAIN_SAMPLE * sealed / drain_s
                out["wire_per_bulletin"] = up_bytes / DRAIN_SAMPLE
                out["sealed"] = sealed
                latencies = []
                for k in range(FLASHES):
                    flash = bulletin("TH-MUK", 100_000 + k, precedence="FLASH", body_bytes=1000)
                    started = time.monotonic()
                    await sender.post(flash, offices=["LA-SVK"])
                    while flash.id not in {o.bulletin.id for o in app.got[-50:]}:
                        await asyncio.sleep(0.02)
                        if time.monotonic() - started > 120:
                            raise AssertionError("the FLASH did not arrive in 120 s")
                    latencies.append(time.monotonic() - started)
                    await asyncio.sleep(2.0)
                out["flash"] = latencies
                out["backlog_left"] = sender.outbox.depth() if sender.outbox is not None else None
            finally:
                await sender.close()
        await receiver.close()
        # raw nats-py over a fresh line of the same shape (the bus's backlog is not on it)
        raw_link = Link(rate_bps=RATE_BPS, delay_s=ONE_WAY_S)
        async with LinkProxy(("127.0.0.1", port), raw_link, lifetime_s=900) as proxy:
            payload = bytes(int(out["sealed"]))
            raw_s = await _raw(proxy.url, payload, DRAIN_SAMPLE)
            out["raw_drain"] = DRAIN_SAMPLE * len(payload) / raw_s
    return out


_LANGUAGES = {"TH": "Thai", "LA": "Lao", "KH": "Khmer", "MM": "Burmese", "VN": "Vietnamese"}


def _compression() -> list[list[object]]:
    from office_node.samples import sample_bulletins

    rows = []
    by_language: dict[str, list[bytes]] = {}
    for s in sample_bulletins():
        text = (s.get("title", "") + "\n" + s.get("body", "")).encode()
        language = _LANGUAGES.get(str(s["from"])[:2], "?")
        by_language.setdefault(language, []).append(text)
    for language, texts in sorted(by_language.items()):
        raw = sum(len(t) for t in texts)
        packed = sum(len(zlib.compress(t, 6)) for t in texts)
        rows.append([language, len(texts), raw / len(texts), packed / len(texts), packed / raw])
    return rows


def main() -> None:
    found = asyncio.run(_run())
    capacity = RATE_BPS / 8
    flash = found["flash"]
    print(f"a line of {RATE_BPS // 1000} kbit/s ({capacity:,.0f} bytes/s), {2 * ONE_WAY_S * 1000:.0f} ms round trip; "
          f"direct connection; {BACKLOG:,} ROUTINE bulletins of {found['sealed']:,.0f} sealed bytes queued")  # fmt: skip
    own = found["sealed"] / capacity
    print_table(
        ["what", "value", "target"],
        [
            ["FLASH behind the backlog, median s", statistics.median(flash), f"< 2 + {own:.1f} (its own transfer)"],
            ["FLASH, worst of the runs, s", max(flash), ""],
            ["raw nats-py over the line, bytes/s", found["raw_drain"], f"{found['raw_drain'] / capacity:.0%} of the line"],
            ["bus backlog drain, bulletin bytes/s", found["bus_drain"], f"{found['bus_drain'] / capacity:.0%} of the line"],
            ["ratio bus / raw", found["bus_drain"] / found["raw_drain"], ">= 0.8"],
            ["bytes on the line per bulletin (up)", found["wire_per_bulletin"], f"sealed {found['sealed']:,.0f}"],
            ["overhead per bulletin (up), bytes", found["wire_per_bulletin"] - found["sealed"], ""],
            ["backlog still queued at the end", found["backlog_left"], "(drains on; not waited for)"],
        ],
    )
    print("compressing the text before sealing (measured, not done; zlib level 6 for zstd level 3):")
    print_table(["language", "bulletins", "text bytes", "compressed", "ratio"], _compression())
    print(json.dumps({"flash_s": [round(x, 2) for x in flash]}))
