"""The passphrase stays with the node: child processes get a scrubbed environment
(bus.transport.childenv) and the node drops BLO_PASSPHRASE once it has read it. Checked
where an attacker would look: the child's /proc/<pid>/environ."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bus.errors import KeyStoreError
from bus.transport.childenv import child_environment
from bus.transport.server import NatsServer, free_port
from office_node.cli import cli
from office_node.home import PASSPHRASE_ENV, PASSPHRASE_FILE_ENV, NodeHome, load_home_identity
from tests.node_helpers import node_process

SECRET = "a passphrase nobody else may see 7f3a"


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def children_of(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of each process whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            # comm is in parentheses and may hold spaces; the parent pid is the second field after it
            comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            if int(rest[1]) == pid:
                found.append((int(entry.name), comm))
    return found


def test_child_environment_keeps_what_a_program_needs_and_nothing_else() -> None:
    parent = {
        "PATH": "/usr/bin", "HOME": "/home/blo", "LANG": "th_TH.UTF-8", "LC_TIME": "C", "TZ": "Asia/Bangkok",
        "TMPDIR": "/tmp", "GOMAXPROCS": "2", "SSL_CERT_FILE": "/etc/ssl/certs/ca.pem",
        PASSPHRASE_ENV: SECRET, "BLO_TOKEN": "blo_secret", "BLO_NEW_PASSPHRASE": SECRET, "AWS_SECRET_ACCESS_KEY": "x",
        "LD_PRELOAD": "/tmp/evil.so", "PYTHONPATH": "/tmp",
    }  # fmt: skip
    assert child_environment(parent) == {
        "PATH": "/usr/bin", "HOME": "/home/blo", "LANG": "th_TH.UTF-8", "LC_TIME": "C", "TZ": "Asia/Bangkok",
        "TMPDIR": "/tmp", "GOMAXPROCS": "2", "SSL_CERT_FILE": "/etc/ssl/certs/ca.pem",
    }  # fmt: skip


def test_a_nats_server_started_while_the_passphrase_is_set_does_not_inherit_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, SECRET)
    monkeypatch.setenv("BLO_TOKEN", "blo_api_token_secret")
    with NatsServer(tmp_path / "nats") as server:
        assert server.proc is not None
        seen = environ_of(server.proc.pid)
    assert SECRET not in json.dumps(seen) and PASSPHRASE_ENV not in seen and "BLO_TOKEN" not in seen
    assert seen.get("PATH") == os.environ["PATH"]  # what it needs is still there


def _init_protected(home: Path, port: int) -> None:
    result = CliRunner().invoke(
        cli, ["--home", str(home), "init", "--office", "TH-MUK", "--country", "TH", "--name", "Mukdahan BLO"],
        env={PASSPHRASE_ENV: SECRET},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = NodeHome(home).config_path
    config.write_text(config.read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}"), encoding="utf-8")


def test_unlocking_the_key_takes_the_passphrase_out_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "muk"
    _init_protected(home, free_port())
    monkeypatch.setenv(PASSPHRASE_ENV, SECRET)
    identity, secret = load_home_identity(NodeHome(home))
    assert identity.office_id == "TH-MUK" and secret == SECRET.encode()
    assert PASSPHRASE_ENV not in os.environ  # nothing started from here on can inherit it


def test_a_node_run_with_the_passphrase_in_its_environment_starts_its_nats_server_without_it(tmp_path: Path) -> None:
    home, port = tmp_path / "muk", free_port()
    _init_protected(home, port)
    with node_process(home, port, **{PASSPHRASE_ENV: SECRET}) as node:  # its embedded nats-server is up
        servers = [pid for pid, comm in children_of(node.pid) if comm == "nats-server"]
        assert len(servers) == 1, children_of(node.pid)
        seen = environ_of(servers[0])
    assert SECRET not in json.dumps(seen) and PASSPHRASE_ENV not in seen
    assert "PATH" in seen


def test_a_node_given_its_passphrase_in_a_file_holds_it_nowhere_in_its_environment(tmp_path: Path) -> None:
    """/proc/<pid>/environ keeps the environment a process started with for its whole life
    (removing the variable from os.environ does not touch it): a daemon is given a file."""
    home, port = tmp_path / "muk", free_port()
    _init_protected(home, port)
    secret_file = tmp_path / "credentials" / "passphrase"
    secret_file.parent.mkdir(mode=0o700)
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    with node_process(home, port, **{PASSPHRASE_FILE_ENV: str(secret_file)}) as node:  # unlocked, up
        seen = environ_of(node.pid)
    assert SECRET not in json.dumps(seen) and PASSPHRASE_ENV not in seen


def test_a_passphrase_file_other_users_can_read_is_refused_with_the_chmod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "muk"
    _init_protected(home, free_port())
    secret_file = tmp_path / "passphrase"
    secret_file.write_text(SECRET)
    secret_file.chmod(0o644)
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.setenv(PASSPHRASE_FILE_ENV, str(secret_file))
    with pytest.raises(KeyStoreError, match=r"open to other users.*chmod 600"):
        load_home_identity(NodeHome(home))
    secret_file.chmod(0o600)
    monkeypatch.setenv(PASSPHRASE_FILE_ENV, str(secret_file))
    identity, secret = load_home_identity(NodeHome(home))
    assert identity.office_id == "TH-MUK" and secret == SECRET.encode()
    assert PASSPHRASE_FILE_ENV not in os.environ
