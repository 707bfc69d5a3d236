"""``blo export``, ``blo import`` and ``blo draft`` against running nodes (the CLI runs in a
worker thread, as from a shell, and talks to the node's HTTP API with a token)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from stix2validator import ValidationOptions, validate_string

from bus.errors import ValidationError
from office_node.cli import cli
from office_node.commands.exchange import parse_when
from tests.node_helpers import api, bulletin_request, running
from tests.test_centre import analyst_token
from tests.test_exchange_node import DATA, network  # noqa: F401  (the fixture)

NOW = 1_714_550_400_000  # 2024-05-01T08:00:00Z
HOUR = 3_600_000


def test_times_for_since_are_dates_times_relative_spans_or_milliseconds() -> None:
    assert parse_when("2024-05-01") == NOW - 8 * HOUR  # a date is its midnight, UTC
    assert parse_when("2024-05-01T08:00:00Z") == NOW
    assert parse_when("2024-05-01T08:00:00+07:00") == NOW - 7 * HOUR
    assert parse_when("7d", now_ms=NOW) == NOW - 7 * 86_400_000
    assert parse_when("24h", now_ms=NOW) == NOW - 86_400_000
    assert parse_when(str(NOW)) == NOW
    with pytest.raises(ValidationError, match="7d, 24h"):
        parse_when("last week")


async def _blo(tmp_path: Path, url: str, token: str, *args: str) -> object:
    env = {"BLO_URL": url, "BLO_TOKEN": token, "BLO_HOME": str(tmp_path / "cli-home")}
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env, catch_exceptions=False)


async def test_an_analyst_exports_imports_and_sends_a_draft_from_the_cli(network, tmp_path: Path) -> None:  # noqa: F811
    async with running(network, "TH-TCCC", "TH-MUK") as nodes:
        muk_url, tccc_url = nodes["TH-MUK"].url, nodes["TH-TCCC"].url
        muk_token, tccc_token = network["TH-MUK"].token, analyst_token(nodes["TH-TCCC"])
        async with api(nodes["TH-MUK"], muk_token) as muk:
            _, amber = await muk.post("/api/bulletins", bulletin_request())
            _, red = await muk.post("/api/bulletins", bulletin_request(tlp="RED", title="RED only"))
        out = tmp_path / "export.json"
        done = await _blo(tmp_path, muk_url, muk_token, "export", "--format", "stix", "--since", "1d", "-o", str(out))
        assert done.exit_code == 0, done.output
        bundle = json.loads(out.read_text(encoding="utf-8"))
        assert validate_string(json.dumps(bundle), ValidationOptions(version="2.1")).is_valid
        assert [o["name"] for o in bundle["objects"] if o["type"] == "report"] == [bulletin_request()["title"]]
        assert f"withheld {red['id']} (tlp_red_export)" in done.output
        done = await _blo(tmp_path, muk_url, muk_token, "export", "--format", "misp", "--id", red["id"])
        assert done.exit_code == 2 and "TLP:RED" in done.output and "Traceback" not in done.output
        done = await _blo(tmp_path, muk_url, muk_token, "export", "--format", "misp", "--id", red["id"], "--for", "LA-SVK")
        assert done.exit_code == 0 and '"tlp:red"' in done.output
        done = await _blo(tmp_path, muk_url, muk_token, "export", "--format", "misp", "--id", amber["id"])
        assert json.loads(done.output.split("\nexported")[0])["Event"]["info"] == bulletin_request()["title"]

        done = await _blo(tmp_path, tccc_url, tccc_token, "import", str(DATA / "pymisp" / "existing_event.json"))
        assert done.exit_code == 0, done.output
        draft_id = done.output.split()[1]
        assert "CLEAR" in done.output and "1 entities" in done.output
        done = await _blo(tmp_path, tccc_url, tccc_token, "draft", "list", "--state", "new")
        assert draft_id in done.output
        done = await _blo(tmp_path, tccc_url, tccc_token, "draft", "move", draft_id, "in_review", "--note", "ok")
        assert f"{draft_id} is in_review (1 notes)" in done.output
        done = await _blo(tmp_path, tccc_url, tccc_token, "draft", "send", draft_id, "--to", "TH-MUK", "--releasable-to", "TH")
        assert done.exit_code == 0 and f"draft {draft_id} sent as " in done.output, done.output
        done = await _blo(tmp_path, tccc_url, tccc_token, "import", str(DATA / "misp-server" / "README.md"))
        assert done.exit_code == 2 and "is not JSON" in done.output
