"""Every nats-server config in deploy/ parses with `nats-server -t` (which also loads its TLS
files and includes), as an operator installs it, only moved to loopback and a temp folder;
the systemd units and the compose file name the configs and commands that exist."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

from bus.transport.permissions import NodeAccess
from tests.deploy_helpers import DEPLOY, HUB_SITES, NATS_DIR, Certs, Keys, Site, auth_include, check_config, render_tree

pytestmark = pytest.mark.timeout(60)

SERVERS = [*(f"{s}.conf" for s in HUB_SITES), "leaf-office.conf"]
INCLUDED = ["hub-th.conf", "hub-la.conf"]


def test_deploy_holds_exactly_the_configs_the_suite_checks() -> None:
    assert sorted(p.name for p in NATS_DIR.glob("*.conf")) == sorted(SERVERS + INCLUDED)
    for name in (f"{s}.conf" for s in HUB_SITES):
        assert f'include "hub-{name[:2]}.conf"' in (NATS_DIR / name).read_text()


@pytest.mark.parametrize("name", SERVERS)
def test_each_server_config_is_valid(tmp_path: Path, name: str) -> None:
    certs = Certs.make(tmp_path / "tls")
    sites = {s: Site.allocate(s) for s in (*HUB_SITES, "leaf")}
    auth = auth_include([NodeAccess("TH-MUK", "office", leaf=True)], Keys(tmp_path / "keys"))
    seed = "SUAARCVFUB7B332R7YIVXYEWMSTGO34YPVW64ODZU42ECEVCKM36TRHXSU"  # a throwaway test seed
    site = sites[name.removesuffix(".conf")] if name != "leaf-office.conf" else sites["leaf"]
    tree = render_tree(site, sites, tmp_path / "etc", certs, {"blo-auth.conf": auth, "uplink.conf": f'nkey: "{seed}"\n'})
    result = check_config(tree / name)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "is valid" in result.stderr + result.stdout


def test_a_config_error_is_caught_by_the_check(tmp_path: Path) -> None:
    """The check is not vacuous: a misspelt key fails it."""
    bad = tmp_path / "bad.conf"
    bad.write_text((NATS_DIR / "leaf-office.conf").read_text().replace("sync_interval", "sync_intervall"))
    (tmp_path / "uplink.conf").write_text('nkey: "SUAARCVFUB7B332R7YIVXYEWMSTGO34YPVW64ODZU42ECEVCKM36TRHXSU"\n')
    assert check_config(bad).returncode != 0


def test_every_listener_outside_loopback_has_tls() -> None:
    for name in INCLUDED:
        text = (NATS_DIR / name).read_text()
        blocks = {"listen: 0.0.0.0:4222": "client", "cluster {": "cluster", "gateway {": "gateway", "leafnodes {": "leaf"}
        for marker, what in blocks.items():
            start = text.index(marker)
            following = text[start : start + 400]
            assert "tls {" in following, f"{name}: the {what} port has no tls block"
    leaf = (NATS_DIR / "leaf-office.conf").read_text()
    assert "listen: 127.0.0.1:4222" in leaf and "tls {" in leaf.split("remotes")[1]


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_the_systemd_units_run_the_shipped_config_and_the_node_command() -> None:
    nats = _unit(DEPLOY / "systemd" / "nats-server@.service")
    start = nats["Service"]["ExecStart"]
    assert re.search(r"nats-server -c /etc/nats/%i\.conf", start), start
    node = _unit(DEPLOY / "systemd" / "blo-node.service")
    assert "blo node run --config" in node["Service"]["ExecStart"]
    for unit in (nats, node):
        assert unit["Service"]["User"] and unit["Install"]["WantedBy"] == "multi-user.target"
        assert unit["Service"].get("NoNewPrivileges") == "true"


def test_the_compose_file_mounts_configs_that_exist() -> None:
    text = (DEPLOY / "compose" / "compose.yaml").read_text()
    mounted = re.findall(r"\.\./nats/([a-z0-9-]+\.conf)", text)
    assert mounted and all((NATS_DIR / m).exists() for m in mounted)
    assert '"blo", "node", "run", "--config"' in text
