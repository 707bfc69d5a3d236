"""Feeds at scale: what a member count costs a feed bulletin, and fan-out to 1,000 members.

* **Size.** A feed bulletin's content key is wrapped once under the feed's epoch key,
  so its size must not grow with the member count (target, issue 8: 1 and 1,000
  members differ by under 200 bytes). Beside it: the same bulletin sealed to 1,000
  offices one by one, which is what a feed without epoch keys would cost. The epoch's
  *grants* do grow with members, but they travel once per epoch, not per bulletin.
* **Fan-out.** The centre publishes one sealed 1 KB feed bulletin to JetStream; 1,000
  simulated members (lightweight subscribers: 4 processes x 250 subscriptions on the
  feed subject, no nodes) each verify the centre's signature and decrypt it. Time from
  publish until the last member has the verified bulletin, beside raw nats-py: the same
  1,000 subscribers receiving a same-size payload without any crypto. Each member opens
  for itself (one Ed25519 verify and two AEAD decryptions each): what 1,000 offices do.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import statistics
import time
from typing import Any

import nacl.utils

from bench.table import print_table

MEMBERS = 1000
PROCS = 4
RUNS = 3
SUBJECT = "blo.feed.mekong-border.priority.TH-TCCC"


def _bulletin(sender: str = "TH-TCCC") -> Any:
    from tests.helpers import bulletin

    body = ("ข่าวกรองเชิงกลยุทธ์: เส้นทางขนยาเสพติดย้ายไปท่าเรือข้ามฟาก " * 12)[: 1024 // 3]
    return bulletin(sender, precedence="PRIORITY", kind="strategic_intelligence", body=body, entities=[])


def sizes() -> list[tuple[object, ...]]:
    from bus.envelope import FeedRecipient, OfficeRecipient, Sealer
    from bus.feeds import FeedOwner
    from bus.keys import Identity
    from tests.helpers import NOW, identity

    centre = identity("TH-TCCC")
    members = [Identity.generate(f"TH-M{i:04d}", nacl.utils.random) for i in range(MEMBERS)]
    keys = {m.office_id: m.public() for m in members}

    class Keys:
        def recipient_keys(self, office: str, now_ms: int) -> Any:
            return keys[office]

    rows = []
    sealer = Sealer(centre)
    b = _bulletin()
    for n in (1, MEMBERS):
        owner = FeedOwner(centre)
        issue = owner.create("mekong-border", [m.office_id for m in members[:n]], Keys(), now_ms=NOW)
        sealed = sealer.seal(b, [FeedRecipient("mekong-border", issue.epoch, issue.epoch_key)], now_ms=NOW)
        grants = sum(len(g) for _, g in issue.grants)
        rows.append((f"feed, {n} member(s)", len(sealed), len(issue.record), grants))
    per_office = sealer.seal(b, [OfficeRecipient(m.public()) for m in members], now_ms=NOW)
    rows.append((f"sealed to {MEMBERS} offices one by one", len(per_office), "-", "-"))
    return rows


# -- fan-out -----------------------------------------------------------------------------


def _member_process(url: str, count: int, feed_key: bytes, centre_public: Any, crypto: bool, ready: Any, out: Any) -> None:
    async def main() -> None:
        import nats

        from bus.envelope_fast import FastOpener as Opener
        from bus.keys import BoxKeyPair, PeerBook
        from tests.helpers import NOW

        book = PeerBook([centre_public])
        done: list[int] = []
        finished = asyncio.Event()
        openers = []
        for i in range(count):
            # Each simulated member has its own (unused) box key: it opens through the feed.
            own = BoxKeyPair.generate(nacl.utils.random)
            openers.append(Opener(f"TH-S{i:04d}", [own], book, feed_keys={("mekong-border", 1): feed_key}))
        nc = await nats.connect(url, pending_size=64 * 1024 * 1024)

        def handler(opener: Any) -> Any:
            async def on(msg: Any) -> None:
                if crypto:
                    opener.open(msg.data, witnessed_at=NOW)
                done.append(time.time_ns())
                if len(done) == count:
                    finished.set()

            return on

        for opener in openers:
            await nc.subscribe(SUBJECT, cb=handler(opener))
        await nc.flush()
        ready.set()
        await asyncio.wait_for(finished.wait(), 60)
        out.put(max(done))
        await nc.close()

    asyncio.run(main())


def fan_out(url: str, *, crypto: bool) -> float:
    """Seconds from the centre's publish (JetStream ack awaited) to the last member done."""
    from bus.envelope import FeedRecipient
    from bus.envelope_fast import FastSealer as Sealer
    from tests.helpers import NOW, identity

    centre = identity("TH-TCCC")
    feed_key = nacl.utils.random(32)
    sealed = Sealer(centre).seal(_bulletin(), [FeedRecipient("mekong-border", 1, feed_key)], now_ms=NOW)
    payload = sealed if crypto else b"x" * len(sealed)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    readies = [ctx.Event() for _ in range(PROCS)]
    procs = [
        ctx.Process(target=_member_process, args=(url, MEMBERS // PROCS, feed_key, centre.public(), crypto, r, out))
        for r in readies
    ]
    for p in procs:
        p.start()
    for r in readies:
        r.wait(60)

    async def publish() -> int:
        import nats

        nc = await nats.connect(url)
        js = nc.jetstream()
        started = time.time_ns()
        await js.publish(SUBJECT, payload, headers={"Nats-Msg-Id": f"fan-{started}"})
        await nc.close()
        return started

    started = asyncio.run(publish())
    ends = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    return (max(ends) - started) / 1e9


def main() -> None:
    from bus.transport.server import NatsServer

    print(f"a 1 KB strategic bulletin on a feed: bytes on the wire per bulletin (target: 1 vs {MEMBERS} members < 200 B apart)")
    rows = sizes()
    print_table(("sealed", "bulletin bytes", "epoch record bytes", "grants bytes (once per epoch)"), rows)
    diff = abs(int(rows[1][1]) - int(rows[0][1]))
    print(f"difference 1 vs {MEMBERS} members: {diff} B ({'meets' if diff < 200 else 'MISSES'} the < 200 B target)")

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats").start()
        try:
            import nats

            async def stream() -> None:
                nc = await nats.connect(server.url)
                await nc.jetstream().add_stream(name="BLO_FEEDS", subjects=["blo.feed.>"])
                await nc.close()

            asyncio.run(stream())
            raw = [fan_out(server.url, crypto=False) for _ in range(RUNS)]
            bus = [fan_out(server.url, crypto=True) for _ in range(RUNS)]
        finally:
            server.stop()
    print(f"\nfan-out of one feed bulletin to {MEMBERS} members ({PROCS} processes x {MEMBERS // PROCS} subscribers), median of {RUNS}")
    print_table(
        ("path", "publish -> last member, ms", "per member, us"),
        [
            ("raw nats-py: receive the payload", statistics.median(raw) * 1000, statistics.median(raw) * 1e6 / MEMBERS),
            ("feed: receive, verify, decrypt", statistics.median(bus) * 1000, statistics.median(bus) * 1e6 / MEMBERS),
        ],
    )
    print(f"ratio feed / raw = {statistics.median(bus) / statistics.median(raw):.2f}")


if __name__ == "__main__":
    main()
