"""A post request from a person: office ids, precedence, TLP and countries typed in lower
case are taken in capitals, not refused."""

from __future__ import annotations

from click.testing import CliRunner

from bus.testing import DeterministicRng
from office_node.cli import cli
from office_node.compose import draft_from_request
from tests.helpers import NOW
from tests.node_helpers import bulletin_request


def test_lower_case_office_ids_precedence_tlp_and_countries_are_upper_cased() -> None:
    request = bulletin_request(to=["la-svk", " th-tccc "], precedence="flash", tlp="amber", releasable_to=["th", "la"])
    draft = draft_from_request(request, office="TH-MUK", now_ms=NOW, rng=DeterministicRng("c"))
    assert draft.offices == ("LA-SVK", "TH-TCCC")
    b = draft.bulletin
    assert (b.precedence, b.tlp, b.releasable_to) == ("FLASH", "AMBER", ("TH", "LA"))


def test_blo_post_takes_precedence_and_tlp_in_any_case() -> None:
    # Parsing only: no node answers at this URL, so the command stops at the connection.
    result = CliRunner().invoke(cli, ["post", "--to", "la-svk", "--kind", "alert", "--precedence", "flash", "--tlp", "amber",
                                      "--releasable-to", "th,la", "--title", "t", "--url", "http://127.0.0.1:9",
                                      "--token", "x"])  # fmt: skip
    assert "invalid choice" not in result.output and "cannot reach the node" in result.output, result.output
