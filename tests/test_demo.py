"""`blo demo` (make run): the pilot network comes up, bulletins travel, Ctrl-C stops it,
and a second run finds the same network and its bulletins."""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

from office_node.accounts import CHEAP
from office_node.daemon import Daemon
from office_node.demo import DemoPorts, run_demo
from office_node.network import Network
from tests.node_helpers import api, eventually


def _free_ports() -> DemoPorts:
    for _ in range(50):
        base = random.randint(20000, 40000)
        ports = DemoPorts(nats=base + 10, http_base=base)
        free = True
        for port in ports.all():
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    free = False
                    break
        if free:
            return ports
    raise AssertionError("no free block of ports")


async def _run(root: Path, ports: DemoPorts, check) -> list[str]:
    lines: list[str] = []
    stop = asyncio.Event()
    ready: asyncio.Future[tuple[Network, list[Daemon]]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_demo(root, ports, echo=lines.append, stop=stop, hash_limits=CHEAP, on_ready=lambda n, d: ready.set_result((n, d)))
    )
    try:
        network, daemons = await asyncio.wait_for(ready, 60)
        await check(network, {d.node.office: d for d in daemons})
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    return lines


async def test_the_demo_runs_six_nodes_whose_sample_bulletins_travel_and_survive_a_second_run(tmp_path: Path) -> None:
    ports = _free_ports()
    root = tmp_path / "demo"
    seen: dict[str, list[str]] = {}

    async def first(network: Network, daemons: dict[str, Daemon]) -> None:
        assert set(daemons) == {"TH-TCCC", "LA-TCCC", "TH-MUK", "LA-SVK", "TH-NKP", "LA-THK"}
        async with api(daemons["LA-SVK"], network["LA-SVK"].token) as svk:

            async def from_muk() -> list[str]:
                _, page = await svk.get("/api/bulletins", params={"direction": "received", "sender": "TH-MUK"})
                return [i["id"] for i in page["items"]]

            seen["LA-SVK"] = await eventually(from_muk, 20, "TH-MUK's sample on LA-SVK")
            _, directory = await svk.get("/api/directory")
            assert len(directory["offices"]) == 6

            async def intel_on_the_feed() -> list[dict]:
                _, page = await svk.get("/api/bulletins", params={"feed": "mekong-border"})
                return page["items"]

            (intel,) = await eventually(intel_on_the_feed, 20, "TH-TCCC's assessment on the regional feed at LA-SVK")
            assert intel["from"] == "TH-TCCC" and intel["kind"] == "strategic_intelligence"

    lines = await _run(root, ports, first)
    assert sum(1 for line in lines if "http://127.0.0.1:" in line) == 6
    assert any("officer / " in line for line in lines)
    # How to use the CLI against it: the home, and saving a token.
    home = root / "TH-MUK"
    assert any(f"--home {home} token create" in line and "--save" in line for line in lines), lines
    assert any(f"--home {home} check" in line for line in lines)

    async def second(network: Network, daemons: dict[str, Daemon]) -> None:
        async with api(daemons["LA-SVK"], network["LA-SVK"].token) as svk:
            _, page = await svk.get("/api/bulletins", params={"direction": "received", "sender": "TH-MUK"})
            assert [i["id"] for i in page["items"]] == seen["LA-SVK"]  # kept, and not posted again

    await _run(root, ports, second)


async def test_the_demos_joint_feed_is_read_and_written_by_both_centres(tmp_path: Path) -> None:
    """In `make run` the regional feed is joint: LA-TCCC holds its key, sees its members,
    and what it writes to it reaches the offices of both countries."""

    async def check(network: Network, daemons: dict[str, Daemon]) -> None:
        async with api(daemons["LA-TCCC"], network["LA-TCCC"].token) as la:

            async def la_feed() -> dict | None:
                _, feeds = await la.get("/api/feeds")
                found = [f for f in feeds["feeds"] if f["name"] == "mekong-border"]
                return found[0] if found and found[0]["have_key"] else None

            feed = await eventually(la_feed, 20, "LA-TCCC holding the regional feed's key")
            assert {"TH-MUK", "TH-NKP", "LA-SVK", "LA-THK", "LA-TCCC"} <= set(feed["members"])
            assert "LA-TCCC" in feed["writers"] and feed["member_here"] and feed["subscribed"]
            body = {
                "to": [], "feed": "mekong-border", "precedence": "ROUTINE", "kind": "strategic_intelligence",
                "tlp": "GREEN", "releasable_to": ["TH", "LA"], "grading": "B2",
                "title": "Lao assessment: ferry crossings at Thakhek", "body": "Seen from the Lao bank.",
            }  # fmt: skip
            status, sent = await la.post("/api/bulletins", body)
            assert status == 201, sent

            async def intel_from_la() -> bool:
                _, page = await la.get("/api/bulletins", params={"feed": "mekong-border"})
                return any(i["from"] == "TH-TCCC" for i in page["items"])

            await eventually(intel_from_la, 20, "TH-TCCC's assessment read by LA-TCCC")
        for office in ("TH-MUK", "LA-THK"):
            async with api(daemons[office], network[office].token) as reader:

                async def arrived() -> bool:
                    _, page = await reader.get("/api/bulletins", params={"feed": "mekong-border", "sender": "LA-TCCC"})
                    return bool(page["items"])

                await eventually(arrived, 20, f"LA-TCCC's assessment at {office}")

    await _run(tmp_path / "demo", _free_ports(), check)
