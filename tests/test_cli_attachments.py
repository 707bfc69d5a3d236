"""`blo post --attach` and `blo subscribe --save-attachments` as an officer uses them: real
`blo node run` processes on a real nats-server, the real `blo` command, HTTP on loopback."""

from __future__ import annotations

import hashlib
import io
import json
import select
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from bus.testing import DeterministicRng
from bus.transport.server import NatsServer, free_port
from office_node.attachment_saver import safe_name
from office_node.network import NodeSpec
from tests.node_helpers import BLO, build, node_process
from tests.node_helpers import blo_env as _env

pytestmark = pytest.mark.timeout(120)


def _network(tmp_path: Path, nats_server: NatsServer, *, svk_max_file_mib: float | None = None) -> tuple[object, int, int]:
    p1, p2 = free_port(), free_port()
    specs = [
        NodeSpec("TH-TCCC", "Thailand TCCC", "centre"),
        NodeSpec("TH-MUK", "Mukdahan BLO", http_port=p1),
        NodeSpec("LA-TCCC", "Lao TCCC", "centre"),
        NodeSpec("LA-SVK", "Savannakhet BLO", http_port=p2),
    ]
    network = build(tmp_path / "net", nats_server.url, specs)
    if svk_max_file_mib is not None:
        config = network["LA-SVK"].home.root / "node.toml"
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace("max_file_mib = 25 ", f"max_file_mib = {svk_max_file_mib} "), encoding="utf-8")
    return network, p1, p2


def _photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (180, 40, 40)).save(out, "PNG")
    return out.getvalue()


def _post(home: Path, token: str, *files: Path) -> subprocess.CompletedProcess[str]:
    attach = [a for f in files for a in ("--attach", str(f))]
    return subprocess.run(
        [BLO, "--home", str(home), "post", "--to", "LA-SVK", "--kind", "incident", "--precedence", "IMMEDIATE",
         "--releasable-to", "TH,LA", "--title", "Forged passport page, manifest", "--body", "see the files",
         *attach, "--json"],
        capture_output=True, text=True, env=_env(BLO_TOKEN=token), timeout=60,
    )  # fmt: skip


def test_files_attached_with_blo_post_are_saved_by_blo_subscribe_on_the_counterpart_byte_for_byte(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    # LA-SVK fetches files of at most 1 MiB: the 2 MiB scan is refused there (R2) and said so.
    network, p1, p2 = _network(tmp_path, nats_server, svk_max_file_mib=1)
    muk, svk = network["TH-MUK"], network["LA-SVK"]
    photo = tmp_path / "หนังสือเดินทาง หน้า 2.png"
    photo.write_bytes(_photo())
    manifest = tmp_path / "manifest.pdf"
    manifest.write_bytes((b"%PDF-1.4\n" + DeterministicRng("manifest")(700_000))[:700_000])  # three chunks
    scan = tmp_path / "scan.pdf"
    scan.write_bytes((b"%PDF-1.4\n" + DeterministicRng("scan")(2 * 1024 * 1024))[: 2 * 1024 * 1024])
    saved = tmp_path / "saved"
    with node_process(muk.home.root, p1), node_process(svk.home.root, p2):
        subscriber = subprocess.Popen(
            [BLO, "--home", str(svk.home.root), "subscribe", "--json", "--count", "1", "--save-attachments", str(saved)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(BLO_TOKEN=svk.token or ""),
        )  # fmt: skip
        try:
            _wait_for_stream(subscriber)
            posted = _post(muk.home.root, muk.token or "", photo, manifest, scan)
            assert posted.returncode == 0, posted.stderr
            answer = json.loads(posted.stdout)
            kinds = [(a["name"], a["media_type"], a["size"]) for a in answer["attachments"]]
            assert kinds == [
                (photo.name, "image/png", photo.stat().st_size),
                ("manifest.pdf", "application/pdf", 700_000),
                ("scan.pdf", "application/pdf", 2 * 1024 * 1024),
            ]
            assert all("key" not in a and "nonce" not in a for a in answer["attachments"])
            out, err = subscriber.communicate(timeout=60)
        finally:
            if subscriber.poll() is None:
                subscriber.kill()
                subscriber.wait()
    assert subscriber.returncode == 0, err
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert lines[0]["id"] == answer["id"] and lines[0]["from"] == "TH-MUK"
    outcomes = {o["n"]: o for o in (line["attachment"] for line in lines[1:])}
    assert sorted(outcomes) == [0, 1, 2]
    folder = saved / answer["id"]
    for n, source in ((0, photo), (1, manifest)):
        got = outcomes[n]
        assert got["state"] == "saved", got
        assert Path(got["path"]) == folder / source.name
        assert (folder / source.name).read_bytes() == source.read_bytes()
        assert got["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        assert stat.S_IMODE((folder / source.name).stat().st_mode) == 0o600
    assert outcomes[2]["state"] == "refused" and "limit per file is 1.0 MiB" in outcomes[2]["message"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([photo.name, "manifest.pdf"])  # no partial file left


def _wait_for_stream(subscriber: subprocess.Popen[str]) -> None:
    """Until `blo subscribe` says its stream is open (from then on it misses no bulletin)."""
    assert subscriber.stderr is not None
    ready, _, _ = select.select([subscriber.stderr], [], [], 30)
    line = subscriber.stderr.readline() if ready else ""
    assert line.startswith("blo: following"), line + (subscriber.stderr.read() if subscriber.poll() is not None else "")


def test_blo_post_refuses_a_file_of_no_accepted_type_and_one_over_the_limit_in_one_clear_line(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    network, p1, _ = _network(tmp_path, nats_server)
    muk = network["TH-MUK"]
    program = tmp_path / "tool.exe"
    program.write_bytes(b"MZ\x90\x00" + DeterministicRng("exe")(50_000))
    big = tmp_path / "big.pdf"
    with open(big, "wb") as f:
        f.write(b"%PDF-1.4\n")
        f.truncate(26 * 1024 * 1024)
    with node_process(muk.home.root, p1):
        refused = _post(muk.home.root, muk.token or "", program)
        too_large = _post(muk.home.root, muk.token or "", big)
        missing = _post(muk.home.root, muk.token or "", tmp_path / "nowhere.jpg")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("blo: the node refused") and "tool.exe" in refused.stderr, refused.stderr
    assert too_large.returncode == 2 and "limit per file is 25.0 MiB" in too_large.stderr, too_large.stderr
    assert missing.returncode == 2 and "nowhere.jpg" in missing.stderr and "does not exist" in missing.stderr


@given(st.text(max_size=300), st.integers(min_value=0, max_value=49))
def test_a_saved_file_name_never_leaves_its_folder_hides_or_carries_invisible_characters(name: str, n: int) -> None:
    safe = safe_name(name, n)
    assert safe and safe not in (".", "..") and not safe.startswith(".")
    assert not set(safe) & set('/\\<>:"|?*\x00')
    assert all(c.isprintable() or c == " " for c in safe)
    assert safe == safe.strip() and len(safe) <= 200


def test_a_sender_given_name_keeps_its_words_and_loses_its_path_and_tricks() -> None:
    assert safe_name("หนังสือเดินทาง หน้า 2.png", 0) == "หนังสือเดินทาง หน้า 2.png"
    assert safe_name("../../etc/passwd", 1) == "passwd"
    assert safe_name("C:\\Users\\x\\scan.pdf", 2) == "scan.pdf"
    assert safe_name("photo\u202egnp.exe", 3) == "photognp.exe"  # a right-to-left override dropped
    assert safe_name(".bashrc", 4) == "bashrc"
    assert safe_name("..", 5) == "attachment-5"
    assert safe_name("a" * 300 + ".jpeg", 6) == "a" * 195 + ".jpeg"
