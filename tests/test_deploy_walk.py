"""DEPLOY.md steps 2 to 4 in the order they are written, with the `blo` commands they
name: two centres and two offices from `blo init` to a directory every node loaded from
the bus, on one loopback nats-server that runs the generated users (TLS clusters and
leaf nodes are tests/test_deploy_cluster.py's). The order itself is pinned: the `blo`
subcommands this test runs are those DEPLOY.md shows, in the same order."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bus.transport.server import NatsServer, free_port
from office_node.cli import cli
from office_node.config import load_config

pytestmark = pytest.mark.timeout(90)
DEPLOY_MD = Path(__file__).resolve().parent.parent / "DEPLOY.md"
FEED = "mekong-border"


class Walk:
    """Runs `blo` as DEPLOY.md does, remembering which subcommands ran, in order."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def blo(self, home: Path, *args: str) -> str:
        words = [a for a in args if not a.startswith("-")]
        name = " ".join(words[:2]) if words[0] in _GROUPS else words[0]
        if name not in self.ran:
            self.ran.append(name)
        result = CliRunner().invoke(cli, ["--home", str(home), *args], env={"BLO_PASSPHRASE": None})
        assert result.exit_code == 0, f"blo {' '.join(args)}:\n{result.output}"
        return result.output


_GROUPS = ("directory", "deploy", "keys", "user", "token", "node", "feed")


def documented_order() -> list[str]:
    """The `blo` subcommands of DEPLOY.md's steps 2 to 4, first use of each, in order."""
    text = DEPLOY_MD.read_text(encoding="utf-8")
    steps = text[text.index("## 2. Identities") : text.index("## 5. ")]
    out: list[str] = []
    for line in steps.splitlines():
        m = re.match(r"^blo (?:--home \S+ )?(\S+)(?: (\S+))?", line)
        if m:
            name = f"{m.group(1)} {m.group(2)}" if m.group(1) in _GROUPS else m.group(1)
            if name not in out:
                out.append(name)
    return out


def _pin(output: str) -> str:
    m = re.search(r'"([0-9a-f]{64})"', output)
    assert m is not None, output
    return m.group(1)


def _add_anchor(home: Path, centre: str, key: str) -> None:
    """What an operator does by hand after the key ceremony: pin the other centre."""
    toml = home / "node.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(text.replace("[trust.anchors]\n", f'[trust.anchors]\n"{centre}" = "{key}"\n', 1), encoding="utf-8")


def test_deploy_md_steps_2_to_4_work_in_the_order_written(tmp_path: Path) -> None:
    walk = Walk()
    homes = {o: tmp_path / o for o in ("TH-TCCC", "LA-TCCC", "TH-MUK", "LA-SVK")}
    port = free_port()
    url = f"nats://127.0.0.1:{port}"

    # Step 2: the centres' keys, the pins exchanged out of band, the offices' keys.
    pins = {}
    for centre, country, name in (("TH-TCCC", "TH", "Thailand TCCC"), ("LA-TCCC", "LA", "Lao TCCC")):
        pins[centre] = _pin(walk.blo(homes[centre], "init", "--office", centre, "--country", country, "--name", name,
                                     "--role", "centre", "--nats", url, "--insecure-no-passphrase"))  # fmt: skip
    _add_anchor(homes["TH-TCCC"], "LA-TCCC", pins["LA-TCCC"])
    _add_anchor(homes["LA-TCCC"], "TH-TCCC", pins["TH-TCCC"])
    for office, country in (("TH-MUK", "TH"), ("LA-SVK", "LA")):
        walk.blo(homes[office], "init", "--office", office, "--country", country, "--name", office,
                 "--trust", f"TH-TCCC={pins['TH-TCCC']}", "--trust", f"LA-TCCC={pins['LA-TCCC']}",
                 "--insecure-no-passphrase")  # fmt: skip
    request = {o: str(homes[o] / "keys" / "enrolment-request.json") for o in ("TH-MUK", "LA-SVK")}
    walk.blo(homes["TH-TCCC"], "directory", "enroll", request["TH-MUK"], "--region", FEED, "--counterpart", "LA-SVK")
    walk.blo(homes["LA-TCCC"], "directory", "enroll", request["LA-SVK"], "--region", FEED, "--counterpart", "TH-MUK")
    assert "LA-SVK" not in walk.blo(homes["TH-TCCC"], "directory", "list")  # not yet: it is LA-TCCC's
    # ... the first exchange by file: each centre's bundle to the other.
    bundles = {c: tmp_path / f"{c[:2]}-directory.json" for c in ("TH-TCCC", "LA-TCCC")}
    for centre in bundles:
        walk.blo(homes[centre], "directory", "export", str(bundles[centre]))
    walk.blo(homes["TH-TCCC"], "directory", "import", str(bundles["LA-TCCC"]))
    walk.blo(homes["LA-TCCC"], "directory", "import", str(bundles["TH-TCCC"]))
    listed = walk.blo(homes["TH-TCCC"], "directory", "list")
    assert all(o in listed for o in homes), listed

    # Step 3: the users, from TH-TCCC's whole directory; then the hub starts with them.
    auth = tmp_path / "blo-auth"
    walk.blo(homes["TH-TCCC"], "deploy", "nats-auth", "--out", str(auth), "--hub-url", url,
             "--feed", f"{FEED}=TH-TCCC:post,LA-TCCC:post,TH-MUK,LA-SVK")  # fmt: skip
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(auth / "blo-auth.conf", etc / "blo-auth.conf")
    (etc / "server.conf").write_text('jetstream {}\ninclude "blo-auth.conf"\n')
    server = NatsServer(tmp_path / "nats", port=port, config_file=etc / "server.conf").start()
    try:
        # Step 4: the operator's streams, then every node's node.toml and seed, the
        # centres publish and every node loads the directory from the bus.
        made = walk.blo(tmp_path, "deploy", "streams", "--nats", url, "--nkey-seed", str(auth / "seeds" / "admin.nk"),
                        "--replicas", "1", "--buckets", str(auth / "buckets.json"), "--bucket-mib", "64")  # fmt: skip
        buckets = [f"blo-att-office-{o}" for o in sorted(homes)] + [f"blo-att-feed-{FEED}"]
        assert all(f"created OBJ_{b} (bucket {b}, replicas 1)" in made for b in buckets), made
        for office, home in homes.items():
            shutil.copy(auth / "nodes" / f"{office}.toml", home / "node.toml")
            shutil.copy(auth / "seeds" / f"{office}.nk", home / "keys" / "nats.nk")
            assert load_config(home / "node.toml").office == office
        for centre in ("TH-TCCC", "LA-TCCC"):
            assert "published" in walk.blo(homes[centre], "directory", "publish", "--nats", url)
        for office in ("TH-MUK", "LA-SVK"):
            out = walk.blo(homes[office], "directory", "sync", "--nats", url)
            assert "directory: 4 offices" in out, out
    finally:
        server.stop()
    assert walk.ran == documented_order()
