"""Watch-list CSV import: good rows become lookout bulletins, bad rows are reported by
line number with the reason, and never cost the good rows."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.bulletin import Bulletin
from bus.errors import ValidationError
from bus.lookout.index import LookoutIndex
from bus.lookout.watchlist import RowError, WatchlistParse, entry_bulletin, parse_watchlist, watchlist_bulletins
from tests.helpers import NOW

HEADER = "list_id,entry_id,action,type,number,country,doc_type,status,name,dob,plate,expires,note\n"
GOOD_AND_BAD = (
    HEADER
    + "SLTD,e1,add,document,P 123-4567,la,passport,stolen,,,,2027-06-01,\n"  # 2 good
    + "SLTD,e2,add,person,,,,,Souksavanh Phommachanh,1985-03-02,,,wanted\n"  # 3 good
    + "SLTD,e3,add,document,,LA,passport,,,,,,\n"  # 4 no number
    + "SLTD,e4,frob,document,X1,,,,,,,,\n"  # 5 bad action
    + 'SLTD,e5,add,note,"multi\nline",,,,,,,,\n'  # 6-7 bad type, spans two lines
    + "SLTD,e6,add,phone,020 5555 1234,LA,,,,,,,\n"  # 8 good, E.164 with LA's code
    + "SLTD,e7,add,phone,12345,,,,,,,,\n"  # 9 national number, no country
    + "SLTD,e1,withdraw,,,,,,,,,,\n"  # 10 duplicate entry
    + "SLTD,e8,add,person,,,,,Somchai,1985-13-45,,,\n"  # 11 impossible date
    + "SLTD,e9,add,document,P1,,,,,,,2020-01-01,\n"  # 12 expired
    + "SLTD,e10,add,vehicle\n"  # 13 short row
    + "\n"  # 14 blank: ignored
    + "SLTD,e11,add,vehicle,,TH,,,,,70-1234,,\n"  # 15 good
    + "SLTD,e 12,add,vehicle,,TH,,,,,70-1234,,\n"  # 16 bad entry id
)


def test_bad_rows_are_reported_by_line_and_good_rows_are_kept() -> None:
    parsed = parse_watchlist(GOOD_AND_BAD.encode(), now_ms=NOW)
    assert [(e.line, e.entry_id) for e in parsed.entries] == [(2, "e1"), (3, "e2"), (8, "e6"), (15, "e11")]
    assert [(e.line, e.column, e.reason) for e in parsed.errors] == [
        (4, "number", "invalid"),
        (5, "action", "bad_action"),
        (6, "type", "bad_type"),
        (9, "number", "bad_phone"),
        (10, "entry_id", "duplicate"),
        (11, "dob", "bad_date"),
        (12, "expires", "expired"),
        (13, "", "bad_width"),
        (16, "entry_id", "bad_id"),
    ]
    assert str(parsed.errors[0]) == "line 4, column number: is required"
    assert parsed.entries[2].entity == {"type": "phone", "number": "+8562055551234"}


def test_a_stray_quote_and_undecodable_bytes_cost_only_their_row() -> None:
    data = (HEADER + 'SLTD,e1,add,document,"P9"x,,,,,,,,\n').encode() + b"SLTD,e2,add,person,,,,,Nam \xff\xfe,,,,\n"
    data += b"SLTD,e3,add,document,P77,,,,,,,,\n"
    parsed = parse_watchlist(b"\xef\xbb\xbf" + data, now_ms=NOW)
    assert [(e.line, e.reason) for e in parsed.errors] == [(2, "bad_csv"), (3, "not_utf8")]
    assert [e.entry_id for e in parsed.entries] == ["e3"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [("", "empty"), ("name,number\nx,1\n", "lacks the column"), ("list_id,entry_id,name,name\n", "more than once")],
)
def test_a_file_that_cannot_be_a_watch_list_is_one_validation_error(text: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        parse_watchlist(text, now_ms=NOW)


def test_unknown_columns_are_reported_but_do_not_stop_the_import() -> None:
    parsed = parse_watchlist("list_id,entry_id,type,number,nmae\nL,e1,document,P1,Noy\n", now_ms=NOW)
    assert [(e.line, e.column, e.reason) for e in parsed.errors] == [(1, "nmae", "unknown_column")]
    assert len(parsed.entries) == 1


def test_entries_become_valid_lookout_bulletins_that_the_index_matches() -> None:
    parsed = parse_watchlist(GOOD_AND_BAD, now_ms=NOW)
    dicts = list(watchlist_bulletins(parsed.entries, sender="TH-TCCC", now_ms=NOW, releasable_to=["TH", "LA"], tlp="GREEN"))
    bulletins = [Bulletin.from_dict(d) for d in dicts]
    assert {b.kind for b in bulletins} == {"lookout"} and {b.tlp for b in bulletins} == {"GREEN"}
    assert bulletins[0].tags[0] == "wl:SLTD:e1"
    assert bulletins[0].expires == 1_811_894_400_000  # end of 2027-06-01 UTC
    index = LookoutIndex.from_bulletins(bulletins)
    assert index.check({"type": "document", "number": "p1234567", "country": "LA"}, NOW)
    assert index.check({"type": "person", "name": "Suksavan Phommachan"}, NOW)
    assert index.check({"type": "phone", "number": "+856 20 5555 1234"}, NOW)


def test_bulletin_ids_are_stable_for_the_same_import_and_differ_between_imports() -> None:
    entry = parse_watchlist(GOOD_AND_BAD, now_ms=NOW).entries[0]
    first = entry_bulletin(entry, sender="TH-TCCC", now_ms=NOW, releasable_to=["TH"])
    again = entry_bulletin(entry, sender="TH-TCCC", now_ms=NOW, releasable_to=["TH"])
    later = entry_bulletin(entry, sender="TH-TCCC", now_ms=NOW + 1, releasable_to=["TH"])
    assert first["id"] == again["id"] != later["id"]


def test_a_withdrawal_row_becomes_an_empty_lookout_under_the_same_subject() -> None:
    parsed = parse_watchlist("list_id,entry_id,action\nSLTD,e1,withdraw\n", now_ms=NOW)
    b = Bulletin.from_dict(entry_bulletin(parsed.entries[0], sender="TH-TCCC", now_ms=NOW, releasable_to=["TH"]))
    assert b.entities == () and b.tags[0] == "wl:SLTD:e1" and "withdrawal" in b.tags


_cell = st.one_of(
    st.sampled_from(["", "SLTD", "e1", "add", "update", "withdraw", "document", "person", "vehicle", "phone", "P123", "LA",
                     "passport", "stolen", "Somchai", "1985-03-02", "70-1234", "2027-01-01", "020 555", "+66 81", '"', "\n"]),
    st.text(max_size=12),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_cell, min_size=0, max_size=15), max_size=8), st.booleans())
def test_the_parser_returns_entries_and_row_errors_or_raises_only_validation_error(rows, as_bytes) -> None:
    text = HEADER + "\n".join(",".join(r) for r in rows)
    data: str | bytes = text.encode("utf-8", "surrogatepass") if as_bytes else text
    try:
        parsed = parse_watchlist(data, now_ms=NOW, default_country="TH")
    except ValidationError:
        return
    assert isinstance(parsed, WatchlistParse)
    assert all(isinstance(e, RowError) and e.line >= 1 for e in parsed.errors)
    for entry in parsed.entries:
        Bulletin.from_dict(entry_bulletin(entry, sender="TH-TCCC", now_ms=NOW, releasable_to=["TH"]))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_validation_error(data: bytes) -> None:
    try:
        parse_watchlist(data, now_ms=NOW)
    except ValidationError:
        pass
