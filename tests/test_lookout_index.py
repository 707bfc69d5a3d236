"""The lookout index: active lookouts match, expired, withdrawn and superseded ones do
not; new bulletins that name a lookout's entity raise hits."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.bulletin import Bulletin
from bus.errors import ValidationError
from bus.lookout.index import LookoutIndex
from bus.lookout.watchlist import entry_bulletin, parse_watchlist
from tests.helpers import NOW, bulletin

DAY = 86_400_000
PASSPORT = {"type": "document", "doc_type": "passport", "number": "P0847211", "country": "LA"}
PERSON = {"type": "person", "name": "Souksavanh Phommachanh", "dob": "1985-03-02"}


def lookout(seed: str, *entities: dict, sender: str = "TH-MUK", expires: int | None = NOW + DAY, **fields) -> Bulletin:
    extra = {"expires": expires} if expires is not None else {}
    return bulletin(sender, rng_seed=seed, kind="lookout", entities=list(entities), **extra, **fields)


def test_a_document_check_matches_however_the_number_is_typed() -> None:
    index = LookoutIndex()
    b = lookout("a", PASSPORT)
    index.add_bulletin(b)
    for typed in ("P0847211", "p 084 7211", "P-0847-211"):
        [m] = index.check({"type": "document", "number": typed}, NOW)
        assert (m.bulletin_id, m.kind, m.grading, m.strength, m.entity_index) == (b.id, "lookout", "B2", "exact", 0)


def test_the_issuing_country_narrows_but_an_unknown_country_still_matches() -> None:
    index = LookoutIndex()
    index.add_bulletin(lookout("a", PASSPORT))
    assert index.check({"type": "document", "number": "P0847211", "country": "LA"}, NOW)
    assert not index.check({"type": "document", "number": "P0847211", "country": "TH"}, NOW)
    index.add_bulletin(lookout("b", {"type": "document", "doc_type": "passport", "number": "X1"}))
    assert index.check({"type": "document", "number": "x1", "country": "KH"}, NOW)


def test_an_expired_lookout_stops_matching_at_its_expiry_time() -> None:
    index = LookoutIndex()
    index.add_bulletin(lookout("a", PASSPORT, expires=NOW + 1000))
    query = {"type": "document", "number": "P0847211"}
    assert index.check(query, NOW + 999)
    assert index.check(query, NOW + 1000) == []


def test_a_withdrawn_lookout_stops_matching_and_only_its_sender_may_withdraw_it_over_the_bus() -> None:
    index = LookoutIndex()
    b = lookout("a", PASSPORT)
    index.add_bulletin(b)
    query = {"type": "document", "number": "P0847211"}
    assert not index.withdraw(b.id, by="LA-SVK")
    assert index.check(query, NOW)
    forged = bulletin("LA-SVK", rng_seed="w1", kind="reply", in_reply_to=b.id, tags=["withdraws"], entities=[])
    index.add_bulletin(forged)
    assert index.check(query, NOW)
    real = bulletin("TH-MUK", rng_seed="w2", kind="reply", in_reply_to=b.id, tags=["withdraws"], entities=[])
    index.add_bulletin(real)
    assert index.check(query, NOW) == []
    assert not index.is_active(b.id, NOW)


def test_a_withdrawal_that_arrives_before_its_lookout_still_applies() -> None:
    index = LookoutIndex()
    b = lookout("a", PASSPORT)
    assert not index.withdraw(b.id)
    index.add_bulletin(b)
    assert index.check({"type": "document", "number": "P0847211"}, NOW) == []


def test_only_lookouts_and_alerts_match_other_kinds_are_mentions() -> None:
    index = LookoutIndex()
    incident = bulletin(rng_seed="i", kind="incident", entities=[PASSPORT])
    alert = bulletin(rng_seed="al", kind="alert", entities=[PASSPORT], precedence="FLASH")
    index.add_bulletin(incident)
    query = {"type": "document", "number": "P0847211"}
    assert index.check(query, NOW) == []
    assert [m.bulletin_id for m in index.mentions(query, NOW)] == [incident.id]
    index.add_bulletin(alert)
    assert [m.bulletin_id for m in index.check(query, NOW)] == [alert.id]


def test_thai_lao_spelling_variants_match_as_similar_and_dob_discriminates() -> None:
    index = LookoutIndex()
    index.add_bulletin(lookout("a", PERSON))
    [m] = index.check({"type": "person", "name": "PHOMMACHAN Suksavan"}, NOW)
    assert (m.strength, m.key_kind) == ("similar", "name~")
    [m] = index.check({"type": "person", "name": "souksavanh  phommachanh", "dob": "1985"}, NOW)
    assert m.strength == "exact"
    assert index.check({"type": "person", "name": "Souksavanh Phommachanh", "dob": "1990-01-01"}, NOW) == []
    assert index.check({"type": "person", "name": "Souvanna Phommachanh"}, NOW) == []


def test_plates_and_phones_match_in_normal_form() -> None:
    index = LookoutIndex()
    index.add_bulletin(lookout("a", {"type": "vehicle", "plate": "70-1234", "country": "TH"}, {"type": "phone", "number": "081 234 5678"}))
    assert index.check({"type": "vehicle", "plate": "70 1234"}, NOW)
    # The lookout's national number took its sender's country (TH); the checker's office is in LA.
    [m] = index.check({"type": "phone", "number": "+66 81 234 5678"}, NOW, country="LA")
    assert m.entity_index == 1
    assert index.check({"type": "phone", "number": "081 234 5678"}, NOW, country="LA") == []


def test_results_put_exact_before_similar_then_flash_first() -> None:
    index = LookoutIndex()
    routine = lookout("r", PERSON, precedence="ROUTINE")
    flash = lookout("f", PERSON, precedence="FLASH")
    similar = lookout("s", {"type": "person", "name": "Suksavan Phommachan"}, precedence="FLASH")
    for b in (routine, similar, flash):
        index.add_bulletin(b)
    got = index.check({"type": "person", "name": "Souksavanh Phommachanh"}, NOW)
    assert [m.bulletin_id for m in got] == [flash.id, routine.id, similar.id]


@pytest.mark.parametrize(
    "query",
    [
        {"type": "location", "name": "Mukdahan"},
        {"type": "document"},
        {"type": "document", "number": " - "},
        {"type": "phone", "number": "081 234 5678"},
        {"type": "person", "name": "x", "dob": "yesterday"},
        "P1234567",
    ],
)
def test_a_bad_query_is_a_validation_error(query) -> None:
    with pytest.raises(ValidationError):
        LookoutIndex().check(query, NOW)


def test_hits_for_names_the_active_lookouts_a_new_bulletin_mentions() -> None:
    index = LookoutIndex()
    look = lookout("a", PASSPORT, sender="LA-SVK")
    expired = lookout("old", PERSON, expires=NOW - 1, created=NOW - DAY)
    index.add_bulletin(look)
    index.add_bulletin(expired)
    report = bulletin("TH-MUK", rng_seed="r", kind="incident", entities=[PERSON, {**PASSPORT, "number": "p 0847-211"}])
    hits = index.hits_for(report, NOW)
    assert [(h.entity_index, h.lookout.bulletin_id, h.lookout.sender) for h in hits] == [(1, look.id, "LA-SVK")]
    index.add_bulletin(report)
    assert index.hits_for(look, NOW) == []  # a lookout is not a hit on itself


def test_watchlist_updates_and_withdrawals_supersede_whatever_order_they_arrive_in() -> None:
    csv_add = "list_id,entry_id,type,number,country\nSLTD,e1,document,P0847211,LA\n"
    csv_upd = "list_id,entry_id,action,type,number,country\nSLTD,e1,update,document,P9999999,LA\n"
    csv_wd = "list_id,entry_id,action\nSLTD,e1,withdraw\n"
    versions = [
        Bulletin.from_dict(entry_bulletin(parse_watchlist(text, now_ms=t).entries[0], sender="TH-TCCC", now_ms=t, releasable_to=["TH"]))
        for text, t in ((csv_add, NOW), (csv_upd, NOW + 10), (csv_wd, NOW + 20))
    ]
    old, new = {"type": "document", "number": "P0847211"}, {"type": "document", "number": "P9999999"}
    for order in ([0, 1], [1, 0]):
        index = LookoutIndex()
        for i in order:
            index.add_bulletin(versions[i])
        assert index.check(old, NOW + 30) == []
        assert [m.bulletin_id for m in index.check(new, NOW + 30)] == [versions[1].id]
        assert index.hits_for(versions[0], NOW + 30) == []  # another version of the same entry is no hit
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        index = LookoutIndex()
        for i in order:
            index.add_bulletin(versions[i])
        assert index.check(old, NOW + 30) == [] and index.check(new, NOW + 30) == []
    # Another sender cannot supersede the centre's entry by reusing its tag.
    index = LookoutIndex()
    index.add_bulletin(versions[1])
    spoof = Bulletin.from_dict({**versions[2].to_dict(), "from": "LA-SVK"})
    index.add_bulletin(spoof)
    assert index.check(new, NOW + 30)


def test_adding_the_same_bulletin_twice_indexes_it_once() -> None:
    index = LookoutIndex()
    b = lookout("a", PASSPORT)
    assert index.add_bulletin(b)
    assert not index.add_bulletin(b)
    assert len(index.check({"type": "document", "number": "P0847211"}, NOW)) == 1
    rebuilt = LookoutIndex.from_bulletins([b, b])
    assert len(rebuilt.check({"type": "document", "number": "P0847211"}, NOW)) == 1


def _random_bulletins(rng: random.Random, n: int) -> list[Bulletin]:
    out = []
    numbers = [f"P{i:07d}" for i in range(12)]
    for i in range(n):
        kind = rng.choice(["lookout", "lookout", "alert", "incident"])
        tags = [f"wl:L:e{rng.randrange(4)}"] if rng.random() < 0.4 else []
        fields: dict = {"kind": kind, "tags": tags, "created": NOW + rng.randrange(100)}
        if rng.random() < 0.6:
            fields["expires"] = fields["created"] + rng.randrange(1, 200)
        if out and rng.random() < 0.15:
            target = rng.choice(out)
            fields.update(kind="reply", in_reply_to=target.id, tags=["withdraws"])
        ents = [{"type": "document", "doc_type": "passport", "number": rng.choice(numbers)} for _ in range(rng.randrange(3))]
        sender = rng.choice(["TH-MUK", "LA-SVK"])
        out.append(bulletin(sender, rng_seed=f"rb{i}", entities=ents, **fields))
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 40))
def test_rebuild_and_one_by_one_adding_in_any_order_give_the_same_answers(seed: int, n: int) -> None:
    rng = random.Random(seed)
    bs = _random_bulletins(rng, n)
    shuffled = bs[:]
    rng.shuffle(shuffled)
    live = LookoutIndex(delta_max=4)  # tiny delta: exercises freezing and merging runs
    for b in shuffled:
        live.add_bulletin(b)
    bulk = LookoutIndex.from_bulletins(bs)
    for i in range(12):
        q = {"type": "document", "number": f"P{i:07d}"}
        for now in (NOW + 50, NOW + 150):
            assert sorted(live.check(q, now)) == sorted(bulk.check(q, now))
            assert sorted(live.mentions(q, now)) == sorted(bulk.mentions(q, now))


def test_stats_report_size() -> None:
    index = LookoutIndex.from_bulletins([lookout(f"s{i}", PASSPORT) for i in range(10)])
    stats = index.stats()
    assert (stats.bulletins, stats.keys) == (10, 10)
    assert stats.nbytes > 0
