"""Attachments between real office nodes (daemons on a real nats-server, over the HTTP API):

* a 20 MiB file posted with multipart by one office arrives whole on the other: shown as
  not complete until it is, then complete, downloadable byte for byte, its key never shown;
* too large and unknown files are refused with 413 and 415 naming the file;
* a centre's forward carries the attachment to a feed's members (no new encryption: the
  same entry), and an image reaches a page only as a JPEG the node re-encoded.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from bus.testing import DeterministicRng
from bus.transport.server import NatsServer
from office_node.network import NodeSpec
from tests.node_helpers import api, build, bulletin_request, eventually, running
from tests.test_centre import analyst_token

pytestmark = pytest.mark.timeout(120)
FEED = "th-border"
SPECS = [
    NodeSpec("TH-TCCC", "Thailand TCCC", "centre", feeds=(FEED,)),
    NodeSpec("TH-MUK", "Mukdahan BLO", counterparts=("LA-SVK",), feeds=(FEED,)),
    NodeSpec("TH-NKP", "Nakhon Phanom BLO", feeds=(FEED,)),
    NodeSpec("LA-TCCC", "Lao TCCC", "centre"),
    NodeSpec("LA-SVK", "Savannakhet BLO", counterparts=("TH-MUK",)),
]


@pytest.fixture
def network(tmp_path: Path, nats_server: NatsServer):
    net = build(tmp_path / "net", nats_server.url, SPECS)
    config = net["TH-MUK"].home.config_path
    text = re.sub(r"max_file_mib = \d+", "max_file_mib = 21", config.read_text(encoding="utf-8"))
    config.write_text(text, encoding="utf-8")
    return net


def photo_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (180, 30, 40)).save(out, "PNG")
    return out.getvalue()


async def post_files(client, request: dict, files: list[tuple[str, bytes]]) -> tuple[int, dict]:
    form = aiohttp.FormData()
    form.add_field("bulletin", __import__("json").dumps(request), content_type="application/json")
    for name, data in files:
        form.add_field("file", data, filename=name, content_type="application/octet-stream")
    async with client.session.post(client.base + "/api/bulletins", data=form) as response:
        return response.status, await response.json()


async def _detail(client, bid: str) -> dict:
    _, d = await client.get(f"/api/bulletins/{bid}")
    return d


async def _complete(client, bid: str) -> dict | None:
    status, d = await client.get(f"/api/bulletins/{bid}")
    return d if status == 200 and d.get("complete") else None


async def test_a_20_mib_file_posted_on_one_office_arrives_whole_on_the_other(network) -> None:
    big = (b"%PDF-1.4\n" + DeterministicRng("twenty")(20 * 1024 * 1024))[: 20 * 1024 * 1024]
    async with running(network, "TH-MUK", "LA-SVK") as nodes:
        async with api(nodes["TH-MUK"], network["TH-MUK"].token) as muk, api(nodes["LA-SVK"], network["LA-SVK"].token) as svk:
            status, refused = await post_files(muk, bulletin_request(), [("tool.bin", b"\x7fELF\x02\x01\x01" + bytes(300))])
            assert status == 415 and refused["error"]["code"] == "unknown_media_type" and "tool.bin" in refused["error"]["message"]
            status, refused = await post_files(muk, bulletin_request(), [("huge.pdf", big + bytes(1024 * 1024 + 1))])
            assert status == 413 and refused["error"]["code"] == "attachment_too_large"

            status, posted = await post_files(muk, bulletin_request(title="สแกนเอกสาร 20 MiB"), [("สแกน.pdf", big)])
            assert status == 201, posted
            bid = posted["id"]
            mine = await _detail(muk, bid)
            [a] = mine["attachments"]
            assert a["media_type"] == "application/pdf" and a["size"] == len(big) and a["sha256"] == hashlib.sha256(big).hexdigest()
            assert "key" not in a and "nonce" not in a and "key" not in mine["bulletin"]["attachments"][0]
            first = await eventually(lambda: _detail_if_there(svk, bid), 30, "the bulletin on LA-SVK")
            if not first["complete"]:  # shown, but not as complete, while its file arrives
                assert first["attachments"][0]["state"] == "queued"
            done = await eventually(lambda: _complete(svk, bid), 60, "the file on LA-SVK")
            [got] = done["attachments"]
            assert got["state"] == "complete" and got["sniffed"] == "application/pdf" and got["held"] == got["chunks"] == 80
            assert "key" not in got and "nonce" not in got
            async with svk.session.get(f"{svk.base}/api/bulletins/{bid}/attachments/0") as response:
                assert response.status == 200
                assert response.headers["Content-Type"] == "application/octet-stream"
                assert response.headers["Content-Disposition"].startswith("attachment;")
                body = await response.read()
            assert hashlib.sha256(body).digest() == hashlib.sha256(big).digest()


async def _detail_if_there(client, bid: str) -> dict | None:
    status, d = await client.get(f"/api/bulletins/{bid}")
    return d if status == 200 else None


async def test_a_forward_carries_the_attachment_to_the_feeds_members_as_a_reencoded_image(network) -> None:
    png = photo_png()
    async with running(network, "TH-TCCC", "TH-MUK", "TH-NKP") as nodes:
        async with (
            api(nodes["TH-TCCC"], analyst_token(nodes["TH-TCCC"])) as tccc,
            api(nodes["TH-MUK"], network["TH-MUK"].token) as muk,
            api(nodes["TH-NKP"], network["TH-NKP"].token) as nkp,
        ):
            await tccc.post("/api/feeds", {"name": FEED, "members": ["TH-MUK", "TH-NKP"]})
            report = bulletin_request(to=["TH-TCCC"], releasable_to=["TH"], title="ภาพหนังสือเดินทางปลอม")
            status, posted = await post_files(muk, report, [("passport.png", png)])
            assert status == 201, posted
            original = await eventually(lambda: _complete(tccc, posted["id"]), 30, "the photo at the centre")
            status, fwd = await tccc.post(f"/api/bulletins/{posted['id']}/forward", {"feed": FEED})
            assert status == 201, fwd
            forwarded = await eventually(lambda: _complete(nkp, fwd["id"]), 30, "the forward's photo on TH-NKP")
            [a] = forwarded["attachments"]
            same = ("name", "media_type", "size", "sha256", "object", "object_sha256")
            assert {k: a[k] for k in same} == {k: original["attachments"][0][k] for k in same}
            assert a["image"] is True and a["sniffed"] == "image/png"
            for path in ("thumbnail", "view"):
                async with nkp.session.get(f"{nkp.base}/api/bulletins/{fwd['id']}/attachments/0/{path}") as response:
                    assert response.status == 200 and response.headers["Content-Type"] == "image/jpeg"
                    shown = await response.read()
                assert shown != png and shown[:3] == b"\xff\xd8\xff"  # a JPEG the node wrote, not the PNG sent
                with Image.open(io.BytesIO(shown)) as img:
                    assert max(img.size) <= (320 if path == "thumbnail" else 1600)
            async with nkp.session.get(f"{nkp.base}/api/bulletins/{fwd['id']}/attachments/0") as response:
                assert await response.read() == png
