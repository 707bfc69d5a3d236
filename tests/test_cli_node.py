"""`blo node run`, `blo post` and `blo subscribe` as an operator and an officer use them:
real processes, a real nats-server, HTTP on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from bus.transport.server import NatsServer, free_port
from office_node.network import NodeSpec
from tests.node_helpers import BLO, build, node_process
from tests.node_helpers import blo_env as _env


def _pair(tmp_path: Path, nats_server: NatsServer) -> tuple[object, int, int]:
    p1, p2 = free_port(), free_port()
    specs = [
        NodeSpec("TH-TCCC", "Thailand TCCC", "centre"),
        NodeSpec("TH-MUK", "Mukdahan BLO", http_port=p1),
        NodeSpec("LA-TCCC", "Lao TCCC", "centre"),
        NodeSpec("LA-SVK", "Savannakhet BLO", http_port=p2),
    ]
    return build(tmp_path / "net", nats_server.url, specs), p1, p2


def test_post_from_the_cli_reaches_subscribe_on_the_other_office_and_sigterm_stops_cleanly(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    network, p1, p2 = _pair(tmp_path, nats_server)
    muk, svk = network["TH-MUK"], network["LA-SVK"]
    with node_process(muk.home.root, p1) as muk_proc, node_process(svk.home.root, p2):
        subscriber = subprocess.Popen(
            [BLO, "--home", str(svk.home.root), "subscribe", "--json", "--count", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(BLO_TOKEN=svk.token or ""),
        )
        try:
            time.sleep(1.0)  # let the subscriber's stream open before the post
            body = tmp_path / "body.txt"
            body.write_text("ຜູ້ຕ້ອງສົງໄສອາດຈະຂ້າມດ່ານຂົວມິດຕະພາບ 2\n", encoding="utf-8")
            posted = subprocess.run(
                [
                    BLO, "--home", str(muk.home.root), "post", "--to", "LA-SVK", "--kind", "lookout",
                    "--precedence", "FLASH", "--tlp", "AMBER", "--releasable-to", "TH,LA", "--grading", "A1",
                    "--title", "Lookout: forged passport P0847211", "--body-file", str(body),
                    "--entity", "document:doc_type=passport,number=P0847211,country=LA", "--expires-hours", "48",
                    "--json",
                ],
                capture_output=True, text=True, env=_env(BLO_TOKEN=muk.token or ""), timeout=30,
            )  # fmt: skip
            assert posted.returncode == 0, posted.stderr
            answer = json.loads(posted.stdout)
            assert answer["state"] == "queued" and answer["recipients"] == ["LA-SVK"]
            out, err = subscriber.communicate(timeout=20)
            assert subscriber.returncode == 0, err
            got = json.loads(out.strip().splitlines()[-1])
            assert got["id"] == answer["id"]
            assert got["from"] == "TH-MUK" and got["precedence"] == "FLASH" and got["verified"] is True
            checked = subprocess.run(
                [BLO, "--home", str(svk.home.root), "check", "--document", "P-0847 211", "--country", "LA"],
                capture_output=True, text=True, env=_env(BLO_TOKEN=svk.token or ""), timeout=30,
            )  # fmt: skip
            assert checked.returncode == 3, checked.stderr  # FLAGGED: a checkpoint script tells it from CLEAR
            assert checked.stdout.startswith("FLAGGED") and answer["id"] in checked.stdout
            clear = subprocess.run(
                [BLO, "--home", str(svk.home.root), "check", "--vehicle", "70-9999"],
                capture_output=True, text=True, env=_env(BLO_TOKEN=svk.token or ""), timeout=30,
            )  # fmt: skip
            assert clear.stdout.startswith("CLEAR") and clear.returncode == 0
        finally:
            if subscriber.poll() is None:
                subscriber.kill()
                subscriber.wait()
        muk_proc.send_signal(signal.SIGTERM)
        assert muk_proc.wait(15) == 0


def test_cli_errors_are_one_clear_line(tmp_path: Path, nats_server: NatsServer) -> None:
    network, p1, _ = _pair(tmp_path, nats_server)
    home = network["TH-MUK"].home.root
    refused = subprocess.run(
        [BLO, "--home", str(home), "post", "--to", "LA-SVK", "--kind", "incident", "--releasable-to", "TH",
         "--title", "x", "--url", f"http://127.0.0.1:{p1}"],
        capture_output=True, text=True, env=_env(BLO_TOKEN="blo_nope"), timeout=30,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "cannot reach the node" in refused.stderr and "Traceback" not in refused.stderr
    no_token = subprocess.run(
        [BLO, "--home", str(tmp_path / "nohome"), "subscribe", "--url", "http://127.0.0.1:1"],
        capture_output=True, text=True, env=_env(), timeout=30,
    )  # fmt: skip
    assert no_token.returncode == 2 and "BLO_TOKEN" in no_token.stderr
    config = home / "node.toml"
    config.write_text(config.read_text().replace('bind = "127.0.0.1', 'bind = "nowhere'), encoding="utf-8")
    bad = subprocess.run([BLO, "node", "run", "--config", str(config)], capture_output=True, text=True, env=_env(), timeout=30)
    assert bad.returncode == 2
    assert "node.toml: http.bind" in bad.stderr and "Traceback" not in bad.stderr


def test_a_centre_analyst_runs_feeds_triage_and_forwarding_from_the_cli(tmp_path: Path, nats_server: NatsServer) -> None:
    from office_node.accounts import CHEAP, Accounts
    from office_node.db import open_database
    from office_node.home import node_paths

    pc, pm = free_port(), free_port()
    specs = [
        NodeSpec("TH-TCCC", "Thailand TCCC", "centre", feeds=("th-border",), http_port=pc),
        NodeSpec("TH-MUK", "Mukdahan BLO", feeds=("th-border",), http_port=pm),
    ]
    network = build(tmp_path / "net", nats_server.url, specs)
    centre, muk = network["TH-TCCC"], network["TH-MUK"]
    db = open_database(node_paths(centre.home.root).db)
    try:
        accounts = Accounts(db, limits=CHEAP)
        accounts.add_user("analyst", "a long analyst password", role="supervisor", now_ms=int(time.time() * 1000))
        _, token = accounts.create_token("analyst", "cli", now_ms=int(time.time() * 1000))
    finally:
        db.close()

    def blo(home: Path, tok: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([BLO, "--home", str(home), *args], capture_output=True, text=True,
                              env=_env(BLO_TOKEN=tok), timeout=30)  # fmt: skip

    with node_process(centre.home.root, pc), node_process(muk.home.root, pm):
        created = blo(centre.home.root, token, "feed", "create", "th-border", "--member", "TH-MUK")
        assert created.returncode == 0, created.stderr
        assert "epoch 1" in created.stdout and "TH-MUK" in created.stdout and "+post" not in created.stdout
        writers = blo(centre.home.root, token, "feed", "writers", "th-border", "--add", "TH-MUK")
        assert writers.returncode == 0, writers.stderr
        assert "epoch 2" in writers.stdout and "TH-MUK+post" in writers.stdout  # a new epoch: TH-MUK may post
        nothing = blo(centre.home.root, token, "feed", "writers", "th-border")
        assert nothing.returncode == 2 and "--add or --remove" in nothing.stderr
        posted = blo(muk.home.root, muk.token or "", "post", "--to", "TH-TCCC", "--kind", "incident",
                     "--releasable-to", "TH", "--title", "รายงาน ด่านมุกดาหาร", "--body", "x", "--json")  # fmt: skip
        report = json.loads(posted.stdout)["id"]
        deadline = time.monotonic() + 20
        while report not in (listing := blo(centre.home.root, token, "triage", "list", "--all")).stdout:
            assert time.monotonic() < deadline, listing.stdout + listing.stderr
            time.sleep(0.3)
        assert "new" in listing.stdout
        moved = blo(centre.home.root, token, "triage", "move", report, "in_review", "--note", "ตรวจสอบ")
        assert moved.returncode == 0 and "in_review (1 notes)" in moved.stdout
        deadline = time.monotonic() + 20
        while "key held" not in (feeds := blo(muk.home.root, muk.token or "", "feed", "list")).stdout:
            assert time.monotonic() < deadline, feeds.stdout + feeds.stderr
            time.sleep(0.3)
        fwd = blo(centre.home.root, token, "forward", report, "--feed", "th-border", "--redact", "body")
        assert fwd.returncode == 0, fwd.stderr
        assert "redacted body" in fwd.stdout
        refused = blo(centre.home.root, token, "forward", report, "--feed", "th-border", "--tlp", "GREEN")
        assert refused.returncode == 2 and "tlp" in refused.stderr.lower() and "Traceback" not in refused.stderr
        view = blo(centre.home.root, token, "network", "--json")
        assert view.returncode == 0 and json.loads(view.stdout)["country"] == "TH"
        officer = blo(muk.home.root, muk.token or "", "network")
        assert officer.returncode == 2 and "centre" in officer.stderr
