"""The centre's live MISP bridge against a stand-in MISP server replaying recorded MISP
replies (tests/misp_server.py, tests/data/misp-server/README.md): PyMISP's REST client
and the HTTP exchange are real; what is pushed obeys rule X3; pulled events become
drafts; a wrong key, an unreachable server and a bad key file are clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bus.bulletin import Bulletin
from bus.errors import ConfigError
from office_node.config import MispSettings
from office_node.errors import ExchangeError
from office_node.exchange import mapping
from office_node.exchange.bridge import MispBridge, read_key
from office_node.exchange.export import Exportable
from tests.misp_server import KEY, misp_replay
from tests.test_exchange_export import every_entity_kind


def settings(url: str, tmp_path: Path, *, key: str = KEY, **kw) -> MispSettings:
    key_file = tmp_path / "misp.key"
    key_file.write_text(key + "\n", encoding="utf-8")
    os.chmod(key_file, 0o600)
    return MispSettings(url=url, key_file=key_file, countries=("TH", "LA"), pull_tag="blo-bus:pull", timeout_s=10, **kw)


def item(**changes) -> Exportable:
    b = Bulletin.from_dict({**every_entity_kind().to_dict(), **changes})
    return Exportable(b, ("LA-SVK",))


async def test_push_adds_each_allowed_bulletin_once_as_a_misp_event(tmp_path: Path) -> None:
    async with misp_replay() as server:
        bridge = MispBridge(settings(server.url, tmp_path))
        amber = item()
        strict = item(id="01HX0000000000000000000002", tlp="AMBER+STRICT")
        th_only = item(id="01HX0000000000000000000003", releasable_to=["TH"])
        report = await bridge.push([amber, strict, th_only])
        assert report.pushed == [amber.bulletin.id]
        assert {bid: exc.reason for bid, exc in report.refused} == {strict.bulletin.id: "tlp_no_feed", th_only.bulletin.id: "not_releasable"}
        [posted] = server.posted("/events/add")
        assert posted["uuid"] == mapping.stable_uuid("bulletin", amber.bulletin.id)
        assert {t["name"] for t in posted["Tag"]} >= {"tlp:amber", 'admiralty-scale:source-reliability="a"'}
        assert all(r.authorization == KEY for r in server.requests)
        # the second round finds it there and adds nothing
        again = await bridge.push([amber])
        assert (again.pushed, again.present) == ([], [amber.bulletin.id])
        assert len(server.posted("/events/add")) == 1


async def test_pull_asks_for_the_tag_and_reads_the_events_as_sources(tmp_path: Path) -> None:
    async with misp_replay() as server:
        bridge = MispBridge(settings(server.url, tmp_path))
        sources, newest = await bridge.pull(since_s=1_500_000_000)
        [search] = server.posted("/events/restSearch")
        assert search["tags"] == ["blo-bus:pull"] and search["timestamp"] == 1_500_000_000
        [src] = sources
        assert src.title == "OSINT - Sednit update: How Fancy Bear Spent the Year"
        assert [e["name"] for e in src.entities] == ["Sofacy"]
        assert newest == 1513948642  # the event's timestamp: the next pull starts there


async def test_a_wrong_key_is_refused_with_the_servers_message(tmp_path: Path) -> None:
    async with misp_replay() as server:
        bridge = MispBridge(settings(server.url, tmp_path, key="not-the-key"))
        with pytest.raises(ExchangeError) as failed:
            await bridge.push([item()])
        assert failed.value.reason == "misp_refused"
        assert "Authentication failed" in failed.value.message
        assert "not-the-key" not in failed.value.message


async def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    async with misp_replay() as server:
        url = server.url
    bridge = MispBridge(settings(url, tmp_path))  # the server has stopped
    with pytest.raises(ExchangeError) as failed:
        await bridge.pull()
    assert failed.value.reason == "misp_unreachable" and url in failed.value.message


def test_the_key_file_must_be_private_and_the_key_env_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings("https://misp.example", tmp_path)
    assert read_key(s) == KEY
    os.chmod(s.key_file, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_key(s)
    env = MispSettings(url="https://misp.example", key_env="BLO_TEST_MISP_KEY")
    monkeypatch.delenv("BLO_TEST_MISP_KEY", raising=False)
    with pytest.raises(ConfigError, match="BLO_TEST_MISP_KEY"):
        read_key(env)
    monkeypatch.setenv("BLO_TEST_MISP_KEY", "k")
    assert read_key(env) == "k"
