"""`blo init`, `blo keys`, `blo directory` through click's test runner, each in its own home."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bus.directory import read_request
from bus.keystore import DEFAULT_KDF, FAST_KDF, load_identity, save_identity
from bus.transport.server import NatsServer
from office_node.cli import cli
from office_node.home import NodeHome


def blo(home: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--home", str(home), *args], env={"BLO_PASSPHRASE": None, **(env or {})})


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def init_centre(tmp_path: Path, country: str = "TH") -> tuple[Path, str]:
    home = tmp_path / f"{country}-TCCC"
    out = ok(
        blo(
            home,
            "init",
            "--office",
            f"{country}-TCCC",
            "--country",
            country,
            "--name",
            f"{country} centre",
            "--role",
            "centre",
            "--insecure-no-passphrase",
        )
    )
    pin = re.search(r'"([0-9a-f]{64})"', out)
    assert pin is not None
    return home, pin.group(1)


def init_office(tmp_path: Path, office: str, pins: list[str]) -> Path:
    home = tmp_path / office
    trust = [x for pin in pins for x in ("--trust", pin)]
    ok(
        blo(
            home,
            "init",
            "--office",
            office,
            "--country",
            office[:2],
            "--name",
            f"{office} BLO",
            "--insecure-no-passphrase",
            *trust,
        )
    )
    return home


def test_init_creates_a_private_home_and_refuses_to_overwrite_it(tmp_path: Path) -> None:
    home = init_office(tmp_path, "TH-MUK", [])
    h = NodeHome(home)
    for folder in (home / "keys", home / "data"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(h.identity_path.stat().st_mode) == 0o600
    assert json.loads(h.identity_path.read_text())["protection"] == "none"
    assert read_request(h.request_path.read_bytes()).office_id == "TH-MUK"
    assert h.config().office == "TH-MUK"
    before = h.identity_path.read_bytes()
    again = blo(home, "init", "--office", "TH-MUK", "--country", "TH", "--name", "x", "--insecure-no-passphrase")
    assert again.exit_code == 2 and "Refusing to overwrite" in again.output
    assert h.identity_path.read_bytes() == before


def test_init_rejects_a_country_that_does_not_match_the_office(tmp_path: Path) -> None:
    result = blo(
        tmp_path / "x", "init", "--office", "TH-MUK", "--country", "LA", "--name", "x", "--insecure-no-passphrase"
    )
    assert result.exit_code == 2 and "--country" in result.output
    assert not (tmp_path / "x" / "keys").exists()


def test_passphrase_protected_key_file_with_a_wrong_passphrase_gives_a_clear_error(tmp_path: Path) -> None:
    home = tmp_path / "muk"
    ok(
        blo(
            home,
            "init",
            "--office",
            "TH-MUK",
            "--country",
            "TH",
            "--name",
            "Mukdahan BLO",
            env={"BLO_PASSPHRASE": "correct horse battery staple"},
        )
    )
    doc = json.loads(NodeHome(home).identity_path.read_text())
    assert doc["protection"] == "argon2id-xchacha20poly1305" and "secrets" not in doc
    wrong = blo(home, "keys", "show", env={"BLO_PASSPHRASE": "wrong"})
    assert wrong.exit_code == 2
    assert "wrong passphrase" in wrong.output and "Traceback" not in wrong.output
    assert "TH-MUK" in ok(blo(home, "keys", "show", env={"BLO_PASSPHRASE": "correct horse battery staple"}))


def test_init_refuses_a_short_passphrase_and_writes_no_key(tmp_path: Path) -> None:
    home = tmp_path / "muk"
    result = blo(home, "init", "--office", "TH-MUK", "--country", "TH", "--name", "x", env={"BLO_PASSPHRASE": "mukdahan1"})
    assert result.exit_code == 2 and "at least 12" in result.output and "mukdahan1" not in result.output
    assert not NodeHome(home).identity_path.exists()


def test_keys_passwd_re_encrypts_a_key_file_below_the_cost_floor_that_the_node_refused(tmp_path: Path) -> None:
    home = init_office(tmp_path, "TH-MUK", [])
    h = NodeHome(home)
    me = load_identity(h.identity_path, None)
    old, new = "an old cheap passphrase", "ตู้ไปรษณีย์ริมโขง 2025"
    save_identity(h.identity_path, me, old.encode(), kdf=FAST_KDF, min_kdf=FAST_KDF, overwrite=True)
    refused = blo(home, "keys", "show", env={"BLO_PASSPHRASE": old})
    assert refused.exit_code == 2 and "below this build's floor" in refused.output
    assert "blo keys passwd" in refused.output and "Traceback" not in refused.output

    short = blo(home, "keys", "passwd", env={"BLO_PASSPHRASE": old, "BLO_NEW_PASSPHRASE": "too short"})
    assert short.exit_code == 2 and "at least 12" in short.output
    ok(blo(home, "keys", "passwd", env={"BLO_PASSPHRASE": old, "BLO_NEW_PASSPHRASE": new}))
    kdf = json.loads(h.identity_path.read_text())["kdf"]
    assert (kdf["opslimit"], kdf["memlimit"]) == (DEFAULT_KDF.opslimit, DEFAULT_KDF.memlimit)
    assert stat.S_IMODE(h.identity_path.stat().st_mode) == 0o600
    assert me.signing.kid.hex() in ok(blo(home, "keys", "show", env={"BLO_PASSPHRASE": new}))
    assert "wrong passphrase" in blo(home, "keys", "show", env={"BLO_PASSPHRASE": old}).output


def test_a_world_readable_key_file_is_refused_with_the_chmod_to_run(tmp_path: Path) -> None:
    home = init_office(tmp_path, "TH-MUK", [])
    path = NodeHome(home).identity_path
    path.chmod(0o644)
    refused = blo(home, "keys", "show")
    assert refused.exit_code == 2 and f"chmod 600 {path}" in refused.output


def test_centre_enrols_its_office_and_lists_it(tmp_path: Path) -> None:
    centre, pin = init_centre(tmp_path)
    office = init_office(tmp_path, "TH-MUK", [f"TH-TCCC={pin}"])
    out = ok(
        blo(
            centre,
            "directory",
            "enroll",
            str(NodeHome(office).request_path),
            "--region",
            "mekong",
            "--counterpart",
            "LA-SVK",
        )
    )
    assert "enrolled TH-MUK" in out and "sequence 1" in out
    listing = ok(blo(centre, "directory", "list"))
    assert "TH-MUK" in listing and "TH-TCCC" in listing and "valid" in listing


def test_th_centre_cannot_enrol_a_la_office(tmp_path: Path) -> None:
    centre, _ = init_centre(tmp_path)
    la_office = init_office(tmp_path, "LA-SVK", [])
    result = blo(centre, "directory", "enroll", str(NodeHome(la_office).request_path))
    assert result.exit_code == 2
    assert "cannot enrol LA-SVK" in result.output
    assert "LA-SVK" not in ok(blo(centre, "directory", "list"))


def test_an_office_cannot_enrol(tmp_path: Path) -> None:
    office = init_office(tmp_path, "TH-MUK", [])
    other = init_office(tmp_path, "TH-NKP", [])
    result = blo(office, "directory", "enroll", str(NodeHome(other).request_path))
    assert result.exit_code == 2 and "only a centre" in result.output


def test_rotate_keeps_the_old_encryption_key_and_the_centre_enrols_the_new_one(tmp_path: Path) -> None:
    centre, pin = init_centre(tmp_path)
    office = init_office(tmp_path, "TH-MUK", [f"TH-TCCC={pin}"])
    h = NodeHome(office)
    ok(blo(centre, "directory", "enroll", str(h.request_path), "--region", "mekong"))
    old = load_identity(h.identity_path, None)
    rotated = ok(blo(office, "keys", "rotate"))
    assert "still signs with the old key: restart it" in rotated  # not applied live: said so
    new = load_identity(h.identity_path, None)
    assert new.signing.kid != old.signing.kid and new.old_box == (old.box,)
    assert read_request(h.request_path.read_bytes()).previous_sign_kid == old.signing.kid
    out = ok(blo(centre, "directory", "enroll", str(h.request_path)))
    assert "sequence 2" in out and f"replaces key {old.signing.kid.hex()}" in out
    listing = ok(blo(centre, "directory", "list", "--all"))
    assert old.signing.kid.hex() in listing and new.signing.kid.hex() in listing
    directory, _ = NodeHome(centre).open_directory()
    assert directory.record("TH-MUK").regions == ("mekong",)  # type: ignore[union-attr]


def test_revoke_by_key_id_shows_in_the_listing(tmp_path: Path) -> None:
    centre, pin = init_centre(tmp_path)
    office = init_office(tmp_path, "TH-MUK", [f"TH-TCCC={pin}"])
    ok(blo(centre, "directory", "enroll", str(NodeHome(office).request_path)))
    kid = load_identity(NodeHome(office).identity_path, None).signing.kid.hex()
    assert "revoked key" in ok(blo(centre, "directory", "revoke", kid, "--reason", "laptop stolen", "--at", "1000"))
    listing = ok(blo(centre, "directory", "list", "--all"))
    assert "revoked at 1000 ms" in listing and "laptop stolen" in listing
    bad = blo(centre, "directory", "revoke", "00" * 8, "--reason", "x")
    assert bad.exit_code == 2 and "no record" in bad.output


def test_enrol_publishes_and_an_office_syncs_it_from_nats(tmp_path: Path, nats_server: NatsServer) -> None:
    centre, pin = init_centre(tmp_path)
    office = init_office(tmp_path, "TH-MUK", [f"TH-TCCC={pin}"])
    ok(blo(centre, "directory", "publish", "--nats", nats_server.url))
    ok(blo(centre, "directory", "enroll", str(NodeHome(office).request_path), "--nats", nats_server.url))
    out = ok(blo(office, "directory", "sync", "--nats", nats_server.url))
    assert "2 offices" in out
    listing = ok(blo(office, "directory", "list"))
    assert "TH-MUK" in listing and "TH-TCCC" in listing


def test_unreachable_nats_is_a_clear_error(tmp_path: Path) -> None:
    centre, _ = init_centre(tmp_path)
    result = blo(centre, "directory", "publish", "--nats", "nats://127.0.0.1:1")
    assert result.exit_code == 2 and "cannot reach NATS" in result.output


@pytest.mark.parametrize("pin", ["TH-TCCC", "TH-TCCC=abc", "nonsense=" + "0" * 64])
def test_bad_trust_pins_are_refused(tmp_path: Path, pin: str) -> None:
    result = blo(
        tmp_path / "h",
        "init",
        "--office",
        "TH-MUK",
        "--country",
        "TH",
        "--name",
        "x",
        "--insecure-no-passphrase",
        "--trust",
        pin,
    )
    assert result.exit_code == 2 and "--trust" in result.output
