"""Handling rules (bus.handling): releasability, TLP and precedence, as schemas/HANDLING.md
states them. Refusals are HandlingRefused with a stable reason and a message saying what
to change."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus import errors
from bus.bulletin import PRECEDENCES, TLP_LABELS, Bulletin
from bus.handling import (
    NO_FEED_TLP,
    REASONS,
    FeedScope,
    check_forward,
    check_forward_changes,
    check_receive,
    check_send,
    precedence_rank,
    tlp_rank,
)
from tests.helpers import bulletin

SPEC = Path(__file__).resolve().parent.parent / "schemas" / "HANDLING.md"
TH_ONLY = bulletin(releasable_to=["TH"])
MEKONG = FeedScope.of_members("mekong-border", ["TH-MUK", "LA-SVK", "KH-POI"])
TH_FEED = FeedScope.of_members("th-border", ["TH-MUK", "TH-NKP"])


def refused(call: Any, *args: Any, **kw: Any) -> errors.HandlingRefused:
    with pytest.raises(errors.HandlingRefused) as caught:
        call(*args, **kw)
    return caught.value


def forward_of(original: Bulletin, **changes: Any) -> Bulletin:
    """A forward's visible handling (the provenance field is bus.forward's business)."""
    return Bulletin.from_dict({**original.to_dict(), "id": "01M7Q5CQG010WT8Y57QY5RK5WV", "from": "TH-TCCC", **changes})


# -- posting ------------------------------------------------------------------------------


def test_a_bulletin_releasable_to_th_only_is_refused_for_a_la_office() -> None:
    exc = refused(check_send, TH_ONLY, offices=["TH-TCCC", "LA-SVK"])
    assert exc.reason == "not_releasable"
    assert exc.message == (
        "TH-MUK's bulletin is releasable to TH only; LA-SVK is in LA: add LA to releasable_to or choose other recipients"
    )


def test_every_office_outside_the_releasability_is_named_by_country() -> None:
    exc = refused(check_send, TH_ONLY, offices=["LA-SVK", "LA-THK", "KH-POI"])
    assert "LA-SVK and LA-THK are in LA, KH-POI is in KH: add LA and KH to releasable_to" in exc.message


def test_offices_in_countries_the_bulletin_is_releasable_to_pass() -> None:
    check_send(bulletin(releasable_to=["TH", "LA"]), offices=["TH-TCCC", "LA-SVK"])


def test_a_feed_with_members_outside_the_releasability_is_refused() -> None:
    exc = refused(check_send, bulletin(releasable_to=["TH", "LA"]), feeds=[MEKONG])
    assert exc.reason == "not_releasable"
    assert "feed mekong-border has members in KH" in exc.message


def test_a_feed_whose_members_are_all_in_releasable_countries_passes() -> None:
    check_send(TH_ONLY, feeds=[TH_FEED])
    check_send(bulletin(releasable_to=["TH", "LA", "KH"]), feeds=[MEKONG, TH_FEED])


@pytest.mark.parametrize("tlp", ["AMBER+STRICT", "RED"])
def test_amber_strict_and_red_posts_to_a_feed_are_refused_even_inside_one_country(tlp: str) -> None:
    exc = refused(check_send, bulletin(tlp=tlp, releasable_to=["TH"]), feeds=[TH_FEED])
    assert exc.reason == "tlp_no_feed"
    assert f"TLP:{tlp}" in exc.message and "never to a feed (th-border)" in exc.message


@pytest.mark.parametrize("tlp", ["AMBER+STRICT", "RED"])
def test_amber_strict_and_red_may_go_to_named_offices(tlp: str) -> None:
    check_send(bulletin(tlp=tlp), offices=["TH-TCCC", "LA-SVK"])


def test_the_tlp_rule_is_checked_before_releasability() -> None:
    assert (
        refused(check_send, bulletin(tlp="RED", releasable_to=["TH"]), offices=["LA-SVK"], feeds=[MEKONG]).reason
        == "tlp_no_feed"
    )


# -- forwarding ---------------------------------------------------------------------------


@pytest.mark.parametrize("tlp", ["AMBER+STRICT", "RED"])
def test_amber_strict_and_red_are_never_forwarded_to_a_feed(tlp: str) -> None:
    original = bulletin(tlp=tlp, releasable_to=["TH"])
    assert refused(check_forward, original, forward_of(original), TH_FEED).reason == "tlp_no_feed"


def test_a_forward_tightened_to_amber_strict_cannot_go_to_a_feed_either() -> None:
    original = bulletin(tlp="AMBER", releasable_to=["TH"])
    assert refused(check_forward, original, forward_of(original, tlp="AMBER+STRICT"), TH_FEED).reason == "tlp_no_feed"


def test_a_bulletin_releasable_only_to_its_own_country_is_not_forwarded_across_the_border() -> None:
    exc = refused(check_forward, TH_ONLY, forward_of(TH_ONLY), MEKONG)
    assert exc.reason == "not_releasable"
    assert "feed mekong-border has members in KH and LA" in exc.message
    assert "a forward may not widen releasability" in exc.message
    check_forward(TH_ONLY, forward_of(TH_ONLY), TH_FEED)


def test_a_narrowed_forward_is_told_the_original_allows_the_missing_countries() -> None:
    original = bulletin(releasable_to=["TH", "LA", "KH"])
    exc = refused(check_forward, original, forward_of(original, releasable_to=["TH"]), MEKONG)
    assert "add them to the forward's releasable_to (the original allows KH and LA)" in exc.message


def test_a_flash_forwarded_as_routine_is_refused() -> None:
    flash = bulletin(precedence="FLASH", releasable_to=["TH"])
    exc = refused(check_forward, flash, forward_of(flash, precedence="ROUTINE"), TH_FEED)
    assert exc.reason == "precedence_downgrade"
    assert "FLASH forwards keep FLASH): keep FLASH, not ROUTINE" in exc.message
    check_forward(flash, forward_of(flash), TH_FEED)


def test_a_forward_may_raise_precedence() -> None:
    routine = bulletin(precedence="ROUTINE")
    check_forward_changes(routine, forward_of(routine, precedence="FLASH"))


def test_a_forward_may_not_loosen_tlp_but_may_tighten_it() -> None:
    amber = bulletin(tlp="AMBER")
    exc = refused(check_forward_changes, amber, forward_of(amber, tlp="GREEN"))
    assert exc.reason == "tlp_loosened"
    assert "keep TLP:AMBER or tighten it to AMBER+STRICT or RED" in exc.message
    check_forward_changes(amber, forward_of(amber, tlp="RED"))


def test_a_forward_may_narrow_releasability_but_not_widen_it() -> None:
    exc = refused(check_forward_changes, TH_ONLY, forward_of(TH_ONLY, releasable_to=["TH", "LA"]))
    assert exc.reason == "releasability_widened"
    assert "remove LA from releasable_to, or ask TH-MUK to re-issue it releasable to LA" in exc.message
    wide = bulletin(releasable_to=["TH", "LA"])
    check_forward_changes(wide, forward_of(wide, releasable_to=["LA"]))


# -- receiving ----------------------------------------------------------------------------


def test_a_node_outside_the_releasability_refuses_the_bulletin() -> None:
    exc = refused(check_receive, TH_ONLY, "LA")
    assert exc.reason == "not_releasable"
    assert "this node is in LA" in exc.message and "report it to TH-MUK's centre" in exc.message
    check_receive(TH_ONLY, "TH")


def test_an_amber_strict_bulletin_arriving_on_a_feed_is_refused() -> None:
    strict = bulletin(tlp="AMBER+STRICT")
    assert refused(check_receive, strict, "LA", via_feed="mekong-border").reason == "tlp_no_feed"
    check_receive(strict, "LA")  # to the office by name: allowed


# -- the spec and the code agree -----------------------------------------------------------


def test_the_rule_table_in_handling_md_lists_exactly_the_reason_codes() -> None:
    rows = re.findall(r"^\| \d+ \| .+ \| `(\w+)` \|", SPEC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert set(rows) == set(REASONS)
    assert len(rows) == 7


def test_ranks_follow_the_bulletin_tables() -> None:
    assert [tlp_rank(t) for t in TLP_LABELS] == [0, 1, 2, 3, 4]
    assert [precedence_rank(p) for p in PRECEDENCES] == [0, 1, 2, 3]
    assert NO_FEED_TLP == {"AMBER+STRICT", "RED"}


def test_a_feed_scope_holds_the_countries_of_its_members() -> None:
    assert MEKONG.countries == {"TH", "LA", "KH"}
    assert FeedScope.of_members("empty", []).countries == frozenset()


# -- properties ---------------------------------------------------------------------------

_countries = st.sampled_from(["TH", "LA", "KH", "MM", "VN"])
_office = st.builds(lambda c, n: f"{c}-{n}", _countries, st.sampled_from(["MUK", "SVK", "POI", "TCCC"]))
_feed = st.builds(FeedScope.of_members, st.sampled_from(["a", "b"]), st.lists(_office, max_size=4))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_countries, min_size=1, max_size=5, unique=True),
    st.sampled_from(TLP_LABELS),
    st.lists(_office, max_size=4),
    st.lists(_feed, max_size=2),
)
def test_check_send_refuses_exactly_what_the_table_says(
    releasable: list[str], tlp: str, offices: list[str], feeds: list[FeedScope]
) -> None:
    b = bulletin(releasable_to=releasable, tlp=tlp)
    allowed = (
        all(o[:2] in releasable for o in offices)
        and all(f.countries <= set(releasable) for f in feeds)
        and not (feeds and tlp in NO_FEED_TLP)
    )
    try:
        check_send(b, offices=offices, feeds=feeds)
    except errors.HandlingRefused as exc:
        assert not allowed and exc.reason in REASONS
    else:
        assert allowed


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(PRECEDENCES), st.sampled_from(PRECEDENCES),
    st.sampled_from(TLP_LABELS), st.sampled_from(TLP_LABELS),
    st.lists(_countries, min_size=1, max_size=4, unique=True), st.lists(_countries, min_size=1, max_size=4, unique=True),
)  # fmt: skip
def test_a_forward_passes_exactly_when_it_loosens_nothing(
    p1: str, p2: str, t1: str, t2: str, r1: list[str], r2: list[str]
) -> None:
    original = bulletin(precedence=p1, tlp=t1, releasable_to=r1)
    fwd = forward_of(original, precedence=p2, tlp=t2, releasable_to=r2)
    allowed = precedence_rank(p2) <= precedence_rank(p1) and tlp_rank(t2) >= tlp_rank(t1) and set(r2) <= set(r1)
    try:
        check_forward_changes(original, fwd)
    except errors.HandlingRefused as exc:
        assert not allowed and exc.reason in REASONS
    else:
        assert allowed
