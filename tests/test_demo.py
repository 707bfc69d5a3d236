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
