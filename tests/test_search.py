"""Search as an officer uses it: phrases and OR, names across scripts (a Thai or Lao name
typed in Latin letters and back), document numbers however they are spaced, a snippet of
the match, and an original with its forwards as one row.

The held-out set below was written as an officer would search a store of realistic Thai
and Lao bulletins (whole words, parts of words, names in Latin script), before the
consonant keys were tuned; each query lists exactly the bulletins it must find.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus.envelope import FeedRecipient, OfficeRecipient, Opener, Sealer
from bus.forward import forward
from bus.ids import new_bulletin_id
from bus.keys import PeerBook
from bus.testing import DeterministicRng
from office_node import search, views
from office_node.db import open_database
from office_node.samples import sample_bulletins, sample_to_bulletin
from office_node.store import Store
from tests.helpers import NOW, bulletin, identity

MUK, SVK, TCCC, TAK = identity("TH-MUK"), identity("LA-SVK"), identity("TH-TCCC"), identity("LA-TAK")
BOOK = PeerBook([p.public() for p in (MUK, SVK, TCCC, TAK)])
FEED, FEED_KEY = "mekong-border", bytes(range(32))


@pytest.fixture
def store(tmp_path):
    db = open_database(tmp_path / "node.db")
    yield Store(db)
    db.close()


def receive(store: Store, b, *, to=SVK, via_feed: bool = False, book: PeerBook = BOOK) -> None:
    recipients = [FeedRecipient(FEED, 1, FEED_KEY)] if via_feed else [OfficeRecipient(to.public())]
    sealed = Sealer(identity(b.sender)).seal(b, recipients, now_ms=b.created, rng=DeterministicRng(b.id))
    opener = Opener.for_identity(to, book, feed_keys={(FEED, 1): FEED_KEY} if via_feed else None)
    opened = opener.open(sealed, witnessed_at=b.created + 1_000)
    assert store.save_received(opened, sealed=sealed, received_at=b.created + 500, feed=None)
    return opened


def found(store: Store, text: str) -> set[str]:
    return {b.title for b in store.search(text)}


# -- the query ----------------------------------------------------------------------------


def test_words_are_all_required_and_or_joins_the_words_beside_it():
    q = search.parse("ສົມໃຈ OR Somchai ด่าน")
    assert q.clauses == ((search.Term("ສົມໃຈ"), search.Term("Somchai")), (search.Term("ด่าน"),))


def test_a_quoted_phrase_is_one_term_and_an_unclosed_quote_runs_to_the_end():
    assert search.parse('"Somchai  Jaidee" ยาบ้า').clauses == (
        (search.Term("Somchai Jaidee", phrase=True),),
        (search.Term("ยาบ้า"),),
    )
    assert search.parse('"สะพาน มิตรภาพ').clauses == ((search.Term("สะพาน มิตรภาพ", phrase=True),),)
    assert search.parse('""').clauses == ()


def test_an_or_with_nothing_on_one_side_is_ignored_and_a_lower_case_or_is_a_word():
    assert search.parse("OR pangolin").clauses == ((search.Term("pangolin"),),)
    assert search.parse("pangolin OR").clauses == ((search.Term("pangolin"),),)
    assert search.parse("pangolin OR OR gecko").clauses == ((search.Term("pangolin"), search.Term("gecko")),)
    assert search.parse("pangolin or gecko").clauses == tuple((search.Term(w),) for w in ("pangolin", "or", "gecko"))


@given(st.text(max_size=80))
def test_any_text_parses_into_terms_taken_from_it(text):
    q = search.parse(text)
    for term in q.terms:
        assert term.text and '"' not in term.text
        assert set(term.text) - {" "} <= set(search.nfc(text))


@pytest.mark.parametrize(
    ("latin", "native"),
    [
        ("Somchai Jaidee", "สมชาย ใจดี"),
        ("Somchay", "สมชาย"),
        ("Phongsak", "พงษ์ศักดิ์"),  # the silent ษ์ and ดิ์ are not pronounced
        ("Boonmee", "บุญมี"),  # final ญ is n
        ("Souksavanh Phommachanh", "ສຸກສະຫວັນ ພົມມະຈັນ"),
        ("Bounmy", "ບຸນມີ"),
        ("Sisavath", "ສີສະຫວາດ"),
        ("Somxay", "ສົມຊາຍ"),  # final ຍ is y
    ],
)
def test_a_name_and_its_romanisation_have_one_key(latin, native):
    assert search.key(latin) == search.key(native)


def test_different_names_have_different_keys():
    keys = {search.key(n) for n in ("Somchai", "Somphone", "Souksavanh", "Bounmy", "Sisavath", "Phommachanh")}
    assert len(keys) == 6


# -- a store of realistic bulletins ---------------------------------------------------------------

CORPUS = [
    # (sender, title, body, entities)
    ("TH-MUK", "จับกุมผู้ต้องหาค้ายาเสพติดที่ด่านมุกดาหาร",
     "เจ้าหน้าที่จับกุมนายสมชาย ใจดี พร้อมยาบ้า 12,000 เม็ด ซุกซ่อนในถังน้ำมันรถกระบะ",
     [{"type": "person", "name": "สมชาย ใจดี", "nationality": "TH"}]),
    ("TH-MUK", "รถยนต์ต้องสงสัยลักลอบขนไม้พะยูง",
     "พบรถกระบะทะเบียน 70-1234 บรรทุกไม้พะยูงผิดกฎหมาย ผู้ขับขี่หลบหนีข้ามแดน",
     [{"type": "vehicle", "plate": "70-1234", "country": "TH"}]),
    ("LA-SVK", "ແຈ້ງເຕືອນ: ຜູ້ຕ້ອງສົງໄສ ລັກລອບຄ້າມະນຸດ",
     "ທ້າວ ສຸກສະຫວັນ ພົມມະຈັນ ອາດຈະຂ້າມດ່ານຂົວມິດຕະພາບ 2 ພ້ອມແມ່ຍິງ 3 ຄົນ",
     [{"type": "person", "name": "ສຸກສະຫວັນ ພົມມະຈັນ", "dob": "1985-03-14"}]),
    ("LA-SVK", "ຍຶດໄມ້ຜິດກົດໝາຍ ຢູ່ດ່ານສາກົນ",
     "ເຈົ້າໜ້າທີ່ກວດພົບລົດບັນທຸກ ບັນຈຸໄມ້ພະຍຸງ ເອກະສານປອມ ໜັງສືຜ່ານແດນ ເລກທີ P-0847 211",
     [{"type": "document", "doc_type": "passport", "number": "P-0847 211", "country": "LA"}]),
    ("LA-SVK", "Meeting with Mr Bounmy on river patrols",
     "Mr Bounmy Sisavath proposed joint patrols near Thakhek.",
     [{"type": "person", "name": "Bounmy Sisavath", "nationality": "LA"}]),
    ("TH-MUK", "Wanted: Somchai Jaidee, drug courier",
     "Thai national, last seen at Friendship Bridge 2.",
     [{"type": "person", "name": "Somchai Jaidee", "nationality": "TH"}]),
    ("TH-MUK", "Pangolin scales seized",
     "Scales hidden in a tour bus; driver detained.",
     []),
]
TITLES = [c[1] for c in CORPUS]
DRUGS_TH, TIMBER_TH, TRAFFICKING_LA, TIMBER_LA, MEETING_EN, WANTED_EN, PANGOLIN_EN = TITLES


@pytest.fixture
def corpus(store):
    for i, (sender, title, body, entities) in enumerate(CORPUS):
        receive(store, bulletin(sender, rng_seed=f"c{i}", now=NOW + i * 1000, title=title, body=body, entities=entities),
                to=SVK if sender != "LA-SVK" else MUK)
    return store


HELD_OUT = [
    # Thai, a whole word
    ("ยาบ้า", {DRUGS_TH}),
    ("ไม้พะยูง", {TIMBER_TH}),
    # Thai, part of a word (inside a run written without spaces)
    ("ซุกซ่อน", {DRUGS_TH}),
    ("มุกดา", {DRUGS_TH}),
    ("พะยู", {TIMBER_TH}),
    # Lao, a whole word and part of one
    ("ລັກລອບ", {TRAFFICKING_LA}),
    ("ໄມ້ພະຍຸງ", {TIMBER_LA}),
    ("ມະນຸດ", {TRAFFICKING_LA}),
    ("ຂົວມິດ", {TRAFFICKING_LA}),
    # a Thai or Lao name typed in Latin letters finds the native script ...
    ("Souksavanh", {TRAFFICKING_LA}),
    ("Phommachanh", {TRAFFICKING_LA}),
    ("Somchai", {DRUGS_TH, WANTED_EN}),
    ("Somchay Jaidee", {DRUGS_TH, WANTED_EN}),
    # ... and back: typed in Thai or Lao script, it finds the Latin spelling
    ("สมชาย", {DRUGS_TH, WANTED_EN}),
    ("ບຸນມີ", {MEETING_EN}),
    ("ສີສະຫວາດ", {MEETING_EN}),
    # a document number however it is spaced, in an entity or in the text
    ("P0847211", {TIMBER_LA}),
    ("P-0847-211", {TIMBER_LA}),
    ("p 0847 211", {TIMBER_LA}),
    ("701234", {TIMBER_TH}),
    ("70 1234", {TIMBER_TH}),
    # phrases and OR
    ('"Somchai Jaidee"', {WANTED_EN, DRUGS_TH}),
    ('"Jaidee Somchai"', set()),
    ('"scales seized"', {PANGOLIN_EN}),
    ('"seized scales"', set()),
    ("pangolin OR ລັກລອບ", {PANGOLIN_EN, TRAFFICKING_LA}),
    ("ไม้พะยูง OR ໄມ້ພະຍຸງ", {TIMBER_TH, TIMBER_LA}),
    ("ไม้พะยูง OR ໄມ້ພະຍຸງ 70-1234", {TIMBER_TH}),
    ("pangolin OR", {PANGOLIN_EN}),  # a stray OR (the second word not typed yet) is ignored
    # nothing else
    ("ไม่มีคำนี้", set()),
]


@pytest.mark.parametrize(("text", "expected"), HELD_OUT, ids=[q for q, _ in HELD_OUT])
def test_held_out_queries_find_exactly_their_bulletins(corpus, text, expected):
    assert found(corpus, text) == expected


# -- the shipped sample bulletins (office_node/data), one per country and a centre's ---------

SAMPLES = sample_bulletins()
SAMPLE_BOOK = PeerBook([identity(s["from"]).public() for s in SAMPLES] + [TAK.public()])
TH, LA, KH, MM, VN, CENTRE = (s["from"] for s in SAMPLES)


@pytest.fixture
def samples(store):
    for i, sample in enumerate(SAMPLES):
        b = sample_to_bulletin(sample, now_ms=NOW + i * 1000, rng=DeterministicRng(f"sample{i}"))
        receive(store, b, to=TAK, book=SAMPLE_BOOK)
    return store


SAMPLES_HELD_OUT = [
    # Thai, whole words and parts of the unspaced runs they are written in
    ("ยาบ้า", {TH}),
    ("หนังสือเดินทาง", {TH}),
    ("มิตรภาพ", {TH}),  # in ด่านสะพานมิตรภาพ
    ("รถบรรทุก", {TH}),  # in รถบรรทุกสินค้า
    ("ซุกซ่อน", {TH}),
    # Lao, whole words and parts of words
    ("ລັກລອບ", {LA}),
    ("ຜູ້ຕ້ອງສົງໄສ", {LA}),
    ("ມະນຸດ", {LA}),  # in ຄ້າມະນຸດ; its key (mnt) is inside "concealment", which is not a match
    ("ສົງໄສ", {LA}),  # its key (sns) is inside "crossings", which is not a match
    ("ມິດຕະພາບ", {LA}),
    # the suspect's name, written in Latin letters in the Lao bulletin: typed in Lao script,
    # whole or its first syllables, and in other romanisations
    ("ສຸກສະຫວັນ", {LA}),
    ("ສຸກສະຫວັນ ພົມມະຈັນ", {LA}),
    ("ສຸກສະ", {LA}),
    ("Souksavan", {LA}),
    ("Phommachan", {LA}),
    # document numbers, plates and phones, however they are spaced or dashed
    ("P0847211", {TH}),
    ("P 0847 211", {TH}),
    ("p-0847211", {TH}),
    ("70 1234", {TH}),
    ("701234", {TH}),
    ("2A 5678", {KH}),
    ("2a-5678", {KH}),
    ("C-123-4567", {VN}),
    ("C 1234567", {VN}),
    ("959123456789", {MM}),
    ("+95-9-123-456-789", {MM}),
    # Vietnamese with or without its accents
    ("hộ chiếu", {VN}),
    ("Lao Bao", {VN}),
    # Khmer and Burmese as written
    ("ច្រកព្រំដែន", {KH}),
    ("မူးယစ်ဆေးဝါး", {MM}),
    ("ไม่มีคำนี้", set()),
]


@pytest.mark.parametrize(("text", "expected"), SAMPLES_HELD_OUT, ids=[q for q, _ in SAMPLES_HELD_OUT])
def test_held_out_queries_find_exactly_their_sample_bulletins(samples, text, expected):
    assert {b.sender for b in samples.search(text)} == expected


def test_a_short_latin_word_does_not_match_thai_text_by_its_key(corpus):
    # "bus" has two consonant sounds: too few for a key match, so only the word itself counts
    assert found(corpus, "bus") == {PANGOLIN_EN}


def test_bulletins_stored_before_the_cross_script_index_are_indexed_on_open(tmp_path):
    db = open_database(tmp_path / "node.db")
    store = Store(db)
    receive(store, bulletin("LA-SVK", rng_seed="old", title="ທ້າວ ສຸກສະຫວັນ", body="", entities=[]), to=MUK)
    with db.write() as c:  # as a release before schema 9 left it
        c.execute("DELETE FROM store_fts_alt")
    assert found(store, "Souksavanh") == set()
    assert found(Store(db), "Souksavanh") == {"ທ້າວ ສຸກສະຫວັນ"}
    db.close()


# -- snippets --------------------------------------------------------------------------------


def rows(store: Store, text: str) -> list[dict]:
    return views.search_results(store.search(text), text)


def test_a_result_shows_the_words_around_the_match(corpus):
    (row,) = rows(corpus, "ซุกซ่อน")
    s = row["snippet"]
    assert s["field"] == "body" and s["match"] == "ซุกซ่อน"
    assert (s["before"] + s["match"] + s["after"]).replace("…", "") in CORPUS[0][2]
    assert "12,000" in s["before"]


def test_a_long_body_is_cut_around_the_match_on_word_boundaries(store):
    body = " ".join(f"word{i}" for i in range(200)) + " the P-0847 211 passport " + " ".join(f"w{i}" for i in range(200))
    receive(store, bulletin(title="Forged passport", body=body, entities=[]))
    (row,) = rows(store, "passport")
    assert row["snippet"]["field"] == "title"  # the title comes first
    (row,) = rows(store, "word150")
    s = row["snippet"]
    assert s["before"].startswith("…") and s["after"].endswith("…")
    assert s["before"][1:2] == "w" and s["after"][-2:-1].isdigit()  # whole words at both ends
    assert len(s["before"]) + len(s["after"]) < 140


def test_a_name_found_across_scripts_is_marked_in_its_own_script(corpus):
    (row,) = rows(corpus, "Souksavanh")
    assert row["snippet"]["match"] == "ສຸກສະຫວັນ"
    assert row["snippet"]["field"] == "body"


def test_a_phrase_is_marked_whole(corpus):
    (row,) = rows(corpus, '"scales seized"')
    assert row["snippet"] == {"field": "title", "before": "Pangolin ", "match": "scales seized", "after": ""}


# -- an original and its forwards --------------------------------------------------------------


def forwarded(store: Store, original, n: int, **kw):
    """``original`` (as TH-TCCC opened it) forwarded by TH-TCCC to the feed, received by LA-SVK."""
    later = NOW + 60_000 * n
    fw = forward(original, centre="TH-TCCC", new_id=new_bulletin_id(later, DeterministicRng(f"fw{n}")), created=later, **kw)
    receive(store, fw, via_feed=True)
    return fw


def test_an_original_and_its_forward_are_one_row_with_the_provenance(store):
    b = bulletin(title="ยึดยาบ้าที่ด่านมุกดาหาร", body="ผู้ต้องหา Somchai Jaidee", entities=[])
    receive(store, b)  # LA-SVK has the original, addressed to it ...
    sealed = Sealer(MUK).seal(b, [OfficeRecipient(TCCC.public())], now_ms=b.created, rng=DeterministicRng("c"))
    at_centre = Opener.for_identity(TCCC, BOOK).open(sealed, witnessed_at=b.created + 1_000)
    fw = forwarded(store, at_centre, 1)  # ... and the centre's forward of it on the feed
    assert len(store.search("ยาบ้า")) == 2

    (row,) = rows(store, "ยาบ้า")
    assert row["id"] == b.id and row["from"] == "TH-MUK"
    assert row["copies"] == 2
    assert row["forwards"] == [{"id": fw.id, "by": "TH-TCCC", "feed": FEED, "at": fw.created + 500}]
    assert row["snippet"]["match"] == "ยาบ้า"


def test_forwards_of_an_original_not_stored_here_are_one_row_and_a_redacted_one_stays_apart(store):
    b = bulletin(title="ยึดยาบ้าที่ด่านมุกดาหาร", body="ผู้ต้องหา Somchai Jaidee", entities=[])
    sealed = Sealer(MUK).seal(b, [OfficeRecipient(TCCC.public())], now_ms=b.created, rng=DeterministicRng("c"))
    at_centre = Opener.for_identity(TCCC, BOOK).open(sealed, witnessed_at=b.created + 1_000)
    first = forwarded(store, at_centre, 1)
    second = forwarded(store, at_centre, 2, precedence="FLASH")
    redacted = forwarded(store, at_centre, 3, redact=["body"])

    got = rows(store, "ยาบ้า")
    assert [r["id"] for r in got] == [redacted.id, second.id]
    assert got[0]["copies"] == 1 and got[0]["forwards"] == []
    assert got[1]["copies"] == 2 and [f["id"] for f in got[1]["forwards"]] == [first.id]
