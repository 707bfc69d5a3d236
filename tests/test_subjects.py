"""Subject, stream and consumer naming (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus.bulletin import PRECEDENCES, is_feed_name
from bus.errors import ValidationError
from bus.transport import subjects as sj


def test_subjects_carry_precedence_then_the_sending_office_last() -> None:
    assert sj.office_subject("TH-MUK", "FLASH", "LA-SVK") == "blo.office.TH-MUK.flash.LA-SVK"
    assert sj.feed_subject("mekong-drugs", "ROUTINE", "TH-TCCC") == "blo.feed.mekong-drugs.routine.TH-TCCC"
    assert sj.receipt_subject("LA-SVK", "TH-MUK") == "blo.receipt.LA-SVK.TH-MUK"
    assert sj.heartbeat_subject("TH-MUK") == "blo.hb.TH-MUK"
    assert sj.office_filter("TH-MUK", "FLASH") == "blo.office.TH-MUK.flash.*"
    assert sj.receipt_filter("TH-MUK") == "blo.receipt.TH-MUK.*"


def test_subject_sender_reads_the_last_token_only_when_it_is_an_office() -> None:
    assert sj.subject_sender("blo.office.TH-MUK.flash.LA-SVK") == "LA-SVK"
    assert sj.subject_sender("blo.receipt.TH-MUK.LA-SVK") == "LA-SVK"
    assert sj.subject_sender("blo.office.TH-MUK.flash") is None
    assert sj.subject_sender("") is None


def test_ranks_serve_flash_first() -> None:
    assert [sj.precedence_rank(p) for p in ("FLASH", "IMMEDIATE", "PRIORITY", "ROUTINE")] == [0, 1, 2, 3]
    with pytest.raises(ValidationError, match="precedence"):
        sj.precedence_rank("URGENT")


@pytest.mark.parametrize("bad", ["th-muk", "TH.MUK", "TH-*", "TH->", "TH MUK", ""])
def test_office_ids_that_would_break_a_subject_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        sj.office_subject(bad, "FLASH", "LA-SVK")
    with pytest.raises(ValidationError):
        sj.office_subject("LA-SVK", "FLASH", bad)


@pytest.mark.parametrize("bad", ["Drugs", "a.b", "a*", ">", "a b", "", "x" * 65, "-lead"])
def test_feed_names_that_would_break_a_subject_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        sj.feed_subject(bad, "ROUTINE", "TH-TCCC")


@pytest.mark.parametrize("name", ["mekong_border", "x" * 64, "mekong-border\n"])
def test_the_subjects_take_the_one_feed_name_grammar_of_the_spec(name: str) -> None:
    """FEEDS.md 2: `^[a-z0-9][a-z0-9-]{0,62}$`, no underscore, 63 at most: what a feed
    record, an envelope and a subject all accept, or none of them."""
    assert not is_feed_name(name)
    with pytest.raises(ValidationError, match="1-63"):
        sj.check_feed(name)
    assert sj.check_feed("x" * 63) == "x" * 63 and is_feed_name("x" * 63)


def test_node_consumers_are_one_per_source_and_precedence_flash_first() -> None:
    specs = sj.node_consumers("TH-MUK", ("mekong-drugs",))
    assert len(specs) == 8
    assert [s.rank for s in specs] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert specs[0] == sj.ConsumerSpec("BLO_OFFICES", "inbox-TH-MUK-flash", "blo.office.TH-MUK.flash.*", 0, ephemeral=True)
    assert specs[1] == sj.ConsumerSpec(
        "BLO_FEEDS", "feed-mekong-drugs-TH-MUK-flash", "blo.feed.mekong-drugs.flash.*", 0, feed="mekong-drugs", ephemeral=True
    )
    assert len({s.durable for s in specs}) == 8
    # none is durable: the node makes each again from its cursor (cursor.py)
    assert all(s.ephemeral for s in specs) and sj.receipts_consumer_spec("TH-MUK").ephemeral


def test_message_ids_are_per_copy_only_when_a_bulletin_fans_out() -> None:
    bid = "01J9Z3K8W4N2V7Q5R6T1X0Y2ZA"
    assert sj.bulletin_msg_id(bid, "LA-SVK", fanout=False) == bid
    assert sj.bulletin_msg_id(bid, "LA-SVK", fanout=True) != sj.bulletin_msg_id(bid, "TH-TCCC", fanout=True)


def test_streams_cover_disjoint_subject_spaces_with_room_for_the_largest_envelope() -> None:
    from bus.envelope import MAX_ENVELOPE_BYTES

    streams = sj.default_streams()
    assert [s.name for s in streams] == ["BLO_OFFICES", "BLO_FEEDS", "BLO_RECEIPTS", "BLO_HEARTBEATS"]
    assert streams[0].max_msg_size > MAX_ENVELOPE_BYTES
    assert all(s.duplicate_window_s >= 120 for s in streams)
    assert [s.max_msgs_per_subject for s in streams] == [-1, -1, -1, 1]  # only the latest heartbeat counts
    assert {s.replicas for s in sj.default_streams(replicas=3)} == {3}


@given(
    kind=st.sampled_from(["office", "feed"]),
    precedence=st.sampled_from(PRECEDENCES),
    name=st.from_regex(r"\A[A-Z]{2}-[A-Z0-9]{2,12}\Z") | st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,20}\Z"),
    sender=st.from_regex(r"\A[A-Z]{2}-[A-Z0-9]{2,12}\Z"),
)
def test_parse_bulletin_subject_inverts_the_builders(kind: str, precedence: str, name: str, sender: str) -> None:
    build = sj.office_subject if kind == "office" else sj.feed_subject
    try:
        subject = build(name, precedence, sender)
    except ValidationError:
        return  # a name of the other kind
    assert sj.parse_bulletin_subject(subject) == sj.SubjectInfo(kind, name, precedence, sender)


@given(st.text(max_size=60))
def test_parse_bulletin_subject_raises_only_validation_errors(text: str) -> None:
    try:
        sj.parse_bulletin_subject(text)
    except ValidationError:
        pass


def test_a_feed_joined_later_has_the_same_consumers_starting_where_told() -> None:
    joined = sj.feed_consumers("TH-MUK", "mekong-drugs", start_ms=1_795_000_000_000)
    listed = [s for s in sj.node_consumers("TH-MUK", ("mekong-drugs",)) if s.stream == "BLO_FEEDS"]
    assert [(s.durable, s.filter_subject, s.rank, s.feed) for s in joined] == [
        (s.durable, s.filter_subject, s.rank, s.feed) for s in listed
    ]
    assert {s.start_ms for s in joined} == {1_795_000_000_000} and {s.start_ms for s in listed} == {None}
