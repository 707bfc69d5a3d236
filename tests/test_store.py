"""The bulletin store: real sealed and opened bulletins in, filters, paging, search out."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import errors
from bus.envelope import FeedRecipient, OfficeRecipient, Opener, Sealer
from bus.keys import PeerBook
from bus.testing import DeterministicRng
from office_node.db import SCHEMA_VERSION, check_sqlite_version, open_database
from office_node.store import BulletinQuery, Store, compact
from tests.helpers import NOW, STORED, bulletin, identity

MUK, SVK, TCCC = identity("TH-MUK"), identity("LA-SVK"), identity("TH-TCCC")
BOOK = PeerBook([p.public() for p in (MUK, SVK, TCCC)])
FEED = "mekong-region"
FEED_KEY = bytes(range(32))

LAO_TITLE = "ແຈ້ງເຕືອນ: ຜູ້ຕ້ອງສົງໄສລັກລອບຂົນສົ່ງໄມ້ພະຍຸງ"
LAO_BODY = "ເຈົ້າໜ້າທີ່ກວດພົບລົດບັນທຸກທີ່ບັນຈຸໄມ້ຜິດກົດໝາຍຢູ່ດ່ານຂົວມິດຕະພາບ"


def seal_and_open(b, *, to=SVK, via_feed: bool = False, seed: str = "seal"):
    recipients = [FeedRecipient(FEED, 1, FEED_KEY)] if via_feed else [OfficeRecipient(to.public())]
    sealed = Sealer(identity(b.sender)).seal(b, recipients, now_ms=b.created, rng=DeterministicRng(seed))
    feed_keys = {(FEED, 1): FEED_KEY} if via_feed else None
    opened = Opener.for_identity(to, BOOK, feed_keys=feed_keys).open(sealed, witnessed_at=b.created + 1_000)
    return sealed, opened


def make(n: int, sender: str = "TH-MUK", **fields):
    return bulletin(sender, rng_seed=f"b{n}", now=NOW + n * 1000, **fields)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "data" / "node.db"


@pytest.fixture
def store(db_path):
    db = open_database(db_path)
    yield Store(db)
    db.close()


def receive(store, b, *, at=None, **kw):
    sealed, opened = seal_and_open(b, **kw)
    return store.save_received(opened, sealed=sealed, received_at=at or b.created + 500, feed=None)


def test_this_python_has_an_sqlite_with_the_trigram_tokenizer():
    check_sqlite_version()  # raises StoreError below 3.34
    with pytest.raises(errors.StoreError, match=r"3\.34"):
        check_sqlite_version("3.31.1")


def test_received_bulletin_survives_reopen_with_its_exact_bytes_and_verification(db_path):
    b = make(1)
    sealed, opened = seal_and_open(b)
    db = open_database(db_path)
    assert Store(db).save_received(opened, sealed=sealed, received_at=NOW + 5000, feed=None) is True
    db.close()

    db = open_database(db_path)
    store = Store(db)
    got = store.get(b.id)
    assert got is not None
    assert got.direction == "received" and got.sender == "TH-MUK"
    assert got.bulletin == b.to_dict()
    assert got.received_at == NOW + 5000 and got.sent_at == opened.sent_at
    assert got.verified and got.verification["sign_kid"] == MUK.signing.kid.hex()
    assert got.verification["opened_via"] == {"kind": "office", "id": "LA-SVK", "ref": SVK.box.kid.hex()}
    assert got.recipients == ("LA-SVK",)
    parts = store.sealed_parts(b.id)
    assert (parts.sealed, parts.header, parts.body, parts.signature) == (sealed, opened.header, opened.body, opened.signature)
    assert store.search("ยาบ้า")[0].id == b.id  # the search index survived too
    db.close()


def test_duplicate_delivery_of_the_same_bulletin_keeps_one_row(store):
    b = make(1)
    assert receive(store, b, at=NOW + 10) is True
    assert receive(store, b, at=NOW + 99_000, seed="other-nonces") is False
    page = store.list_bulletins()
    assert [x.id for x in page.items] == [b.id]
    assert page.items[0].received_at == NOW + 10  # the first delivery is kept
    assert len(store.search("ยาบ้า")) == 1  # and indexed once


def test_own_bulletin_coming_back_on_a_feed_stays_a_sent_row(store):
    b = make(1)
    sealed = Sealer(MUK).seal(b, [FeedRecipient(FEED, 1, FEED_KEY)], now_ms=NOW, rng=DeterministicRng("x"))
    assert store.save_sent(b, sealed=sealed, recipients=[FEED], feed=FEED, sent_at=NOW + 1000) is True
    opened = Opener.for_identity(MUK, BOOK, feed_keys={(FEED, 1): FEED_KEY}).open(sealed, witnessed_at=STORED)
    assert store.save_received(opened, sealed=sealed, received_at=NOW + 2000, feed=FEED) is False
    assert store.get(b.id).direction == "sent"


def test_sent_bulletin_records_recipients_key_ids_and_receipts(store):
    b = make(1)
    sealed = Sealer(MUK).seal(
        b, [OfficeRecipient(SVK.public()), OfficeRecipient(TCCC.public())], now_ms=NOW + 1, rng=DeterministicRng("s")
    )
    assert store.save_sent(b, sealed=sealed, recipients=["LA-SVK", "TH-TCCC"], feed=None, sent_at=NOW + 2)
    got = store.get(b.id)
    assert got.direction == "sent" and got.sent_at == NOW + 1 and got.at == NOW + 2
    assert got.recipients == ("LA-SVK", "TH-TCCC")
    assert got.sender_sign_kid == MUK.signing.kid.hex()
    assert store.sealed_parts(b.id).signature is None
    assert store.record_receipt(b.id, "LA-SVK", "delivered", at_ms=NOW + 3, received_at=NOW + 4, verified=True)
    assert not store.record_receipt(b.id, "LA-SVK", "delivered", at_ms=NOW + 9, received_at=NOW + 9, verified=True)
    assert store.record_receipt(b.id, "LA-SVK", "read", at_ms=NOW + 5, received_at=NOW + 6, verified=True)
    receipts = store.receipts(b.id)
    assert [(r.office, r.kind, r.at) for r in receipts] == [("LA-SVK", "delivered", NOW + 3), ("LA-SVK", "read", NOW + 5)]


def test_save_sent_refuses_an_envelope_of_another_bulletin(store):
    b1, b2 = make(1), make(2)
    sealed = Sealer(MUK).seal(b1, [OfficeRecipient(SVK.public())], now_ms=NOW, rng=DeterministicRng("s"))
    with pytest.raises(errors.ValidationError, match="sealed"):
        store.save_sent(b2, sealed=sealed, recipients=["LA-SVK"], feed=None, sent_at=NOW)
    with pytest.raises(errors.ValidationError, match=r"recipients\[0\]"):
        store.save_sent(b1, sealed=sealed, recipients=["nobody here"], feed=None, sent_at=NOW)


def test_save_received_refuses_sealed_bytes_that_do_not_match_the_opened_header(store):
    _, opened1 = seal_and_open(make(1))
    sealed2, _ = seal_and_open(make(2))
    with pytest.raises(errors.ValidationError, match="sealed"):
        store.save_received(opened1, sealed=sealed2, received_at=NOW, feed=None)


def test_feed_is_taken_from_the_recipient_entry_the_bulletin_was_opened_through(store):
    b = make(1, sender="TH-TCCC", kind="strategic_intelligence")
    receive(store, b, via_feed=True)
    got = store.get(b.id)
    assert got.feed == FEED and got.verification["opened_via"] == {"kind": "feed", "id": FEED, "ref": 1}
    assert [x.id for x in store.list_bulletins(BulletinQuery(feed=FEED)).items] == [b.id]


@pytest.fixture
def filled(store):
    """Six received and one sent bulletin with known fields; ids by name."""
    ids = {}
    specs = [
        ("flash", make(1, precedence="FLASH", kind="lookout")),
        ("lao", make(2, sender="LA-SVK", title=LAO_TITLE, body=LAO_BODY, kind="alert")),
        ("routine", make(3, precedence="ROUTINE", kind="incident")),
        ("reply", make(4, sender="LA-SVK", kind="reply", in_reply_to=make(1).id, title="ຮັບຊາບແລ້ວ", body="")),
        ("tagged", make(5, tags=["wildlife", "pangolin"], title="Pangolin scales in a rice truck", body="Seized 40 kg.")),
        ("person", make(6, entities=[{"type": "person", "name": "Somchai Phommachanh", "aliases": ["Ai Chai"]}],
                        title="Wanted person crossing", body="")),
    ]  # fmt: skip
    for name, b in specs:
        to = MUK if b.sender == "LA-SVK" else SVK
        receive(store, b, to=to, at=b.created + 10)
        ids[name] = b.id
    sent = make(7, kind="request_for_information", title="ขอข้อมูลรถทะเบียน 70-1234", body="โปรดตรวจสอบ")
    sealed = Sealer(MUK).seal(sent, [OfficeRecipient(SVK.public())], now_ms=sent.created, rng=DeterministicRng("s7"))
    store.save_sent(sent, sealed=sealed, recipients=["LA-SVK"], feed=None, sent_at=sent.created + 10)
    ids["sent"] = sent.id
    return store, ids


def ids_of(page):
    return [b.id for b in page.items]


def test_list_is_newest_first_across_directions(filled):
    store, ids = filled
    order = ["sent", "person", "tagged", "reply", "routine", "lao", "flash"]
    assert ids_of(store.list_bulletins()) == [ids[n] for n in order]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (BulletinQuery(kinds=("lookout",)), ["flash"]),
        (BulletinQuery(kinds=("lookout", "alert")), ["lao", "flash"]),
        (BulletinQuery(precedences=("FLASH",)), ["flash"]),
        (BulletinQuery(precedences=("ROUTINE",)), ["routine"]),
        (BulletinQuery(sender="LA-SVK"), ["reply", "lao"]),
        (BulletinQuery(direction="sent"), ["sent"]),
        (BulletinQuery(direction="received", sender="TH-MUK", precedences=("IMMEDIATE",)), ["person", "tagged"]),
        (BulletinQuery(since=NOW + 3000, until=NOW + 5000), ["reply", "routine"]),
        (BulletinQuery(in_reply_to=None, kinds=("reply",)), ["reply"]),
    ],
)
def test_filters_select_exactly_the_matching_bulletins(filled, query, expected):
    store, ids = filled
    assert ids_of(store.list_bulletins(query)) == [ids[n] for n in expected]


def test_in_reply_to_finds_the_thread(filled):
    store, ids = filled
    assert ids_of(store.list_bulletins(BulletinQuery(in_reply_to=ids["flash"]))) == [ids["reply"]]


def test_unread_lists_received_bulletins_until_someone_reads_them(filled):
    store, ids = filled
    assert len(store.list_bulletins(BulletinQuery(unread=True)).items) == 6  # the sent one is never "unread"
    assert store.unread_count() == 6
    assert store.mark_read(ids["lao"], by="somchai", at_ms=NOW + 60_000) is True
    assert store.mark_read(ids["lao"], by="noi", at_ms=NOW + 70_000) is False  # first reader kept
    got = store.get(ids["lao"])
    assert (got.read_by, got.read_at) == ("somchai", NOW + 60_000)
    assert ids["lao"] not in ids_of(store.list_bulletins(BulletinQuery(unread=True)))
    assert store.unread_count() == 5
    with pytest.raises(errors.NotFound):
        store.mark_read(make(99).id, by="x", at_ms=NOW)


def test_cursor_paging_walks_every_bulletin_once_even_as_new_ones_arrive(filled):
    store, ids = filled
    seen = []
    page = store.list_bulletins(BulletinQuery(limit=3))
    seen += ids_of(page)
    receive(store, make(50), at=NOW + 10**6)  # arrives mid-walk: newer, so not on later pages
    while page.next_cursor:
        page = store.list_bulletins(BulletinQuery(limit=3, cursor=page.next_cursor))
        seen += ids_of(page)
    assert seen == [ids[n] for n in ["sent", "person", "tagged", "reply", "routine", "lao", "flash"]]


def test_equal_times_are_paged_without_loss(store):
    bs = [make(i) for i in range(5)]
    for b in bs:
        receive(store, b, at=NOW)  # all arrive in the same millisecond
    first = store.list_bulletins(BulletinQuery(limit=2))
    rest = store.list_bulletins(BulletinQuery(limit=10, cursor=first.next_cursor))
    assert ids_of(first) + ids_of(rest) == [b.id for b in reversed(bs)]
    assert rest.next_cursor is None


# -- search -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ซุกซ่อน", {"flash", "routine"}),  # Thai word inside a run with no spaces ("hidden"), default body
        ("รถบรรทุก", {"flash", "routine"}),  # Thai "truck"
        ("ລັກລອບ", {"lao"}),  # Lao "smuggle", inside the title
        ("ໄມ້ຜິດກົດໝາຍ", {"lao"}),  # Lao "illegal timber", inside the body
        ("ຮັບຊາບ", {"reply"}),
        ("pangolin", {"tagged"}),  # in a tag and the title
        ("PANGOLIN", {"tagged"}),  # case-insensitive
        ("Phommachanh", {"person"}),  # a name
        ("ai chai", {"person"}),  # an alias, in words shorter than 3 letters
        ("somchaiphommachanh", {"person"}),  # a name typed without its space
    ],
)
def test_search_finds_words_in_thai_lao_and_english(filled, text, expected):
    store, ids = filled
    assert {b.id for b in store.search(text)} == {ids[n] for n in expected}


@pytest.mark.parametrize("typed", ["P0847211", "p0847211", "P-0847-211", "P 0847 211", "0847211", "P.0847/211"])
def test_search_finds_a_document_number_typed_with_dashes_or_spaces(store, typed):
    b = make(1, title="Forged passport", body="Holder detained.")
    other = make(2, title="Nothing", body="Unrelated.", entities=[{"type": "vehicle", "plate": "1กข 9999"}])
    receive(store, b)
    receive(store, other)
    assert [x.id for x in store.search(typed)] == [b.id]


def test_search_finds_a_plate_by_its_compacted_form_and_a_thai_plate(store):
    b = make(1, entities=[{"type": "vehicle", "plate": "1กข 9999", "country": "TH"}], title="t", body="")
    receive(store, b)
    assert [x.id for x in store.search("1กข9999")] == [b.id]
    assert [x.id for x in store.search("1กข 9999")] == [b.id]


def test_short_queries_fall_back_to_substring_matching(store):
    b = make(1, title="ด่าน กข", body="")  # a two-letter Thai word
    receive(store, b)
    receive(store, make(2, title="Other", body="Nothing here", entities=[]))
    assert [x.id for x in store.search("กข")] == [b.id]
    assert [x.id for x in store.search("70")] == [b.id]  # plate 70-1234 in its entities
    assert store.search("zz") == []


def test_search_combines_with_filters_and_requires_every_word(filled):
    store, ids = filled
    assert ids_of(store.list_bulletins(BulletinQuery(text="ยาบ้า", direction="sent"))) == []
    assert ids_of(store.list_bulletins(BulletinQuery(text="ทะเบียน 70-1234", direction="sent"))) == [ids["sent"]]
    assert store.search("pangolin ຂົວ") == []  # both words must match one bulletin


def test_search_matches_precomposed_and_combining_vietnamese_alike(store):
    b = make(1, title="Hộ chiếu bị đánh cắp", body="")
    receive(store, b)
    assert [x.id for x in store.search("Ho\u0302\u0323 chie\u0302\u0301u")] == [b.id]


def test_zero_width_spaces_in_thai_text_do_not_hide_it_from_search(store):
    b = make(1, title="ยาเสพติด\u200bข้ามแดน", body="")
    receive(store, b)
    assert [x.id for x in store.search("ติดข้าม")] == [b.id]


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(text=st.text(max_size=60))
def test_any_search_text_gives_results_or_a_validation_error_never_an_sql_error(store, text):
    try:
        store.search(text)
    except errors.ValidationError:
        pass


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"kind": "gossip"}, "kind"),
        ({"precedence": "URGENT"}, "precedence"),
        ({"direction": "both"}, "direction"),
        ({"sender": "mukdahan"}, "sender"),
        ({"feed": "Mekong Region"}, "feed"),
        ({"since": "yesterday"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "100000"}, "limit"),
        ({"unread": "maybe"}, "unread"),
        ({"cursor": "!!!"}, "cursor"),
        ({"cursor": "OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OS4x"}, "cursor"),  # "99...9.1": too large for SQLite
        ({"colour": "red"}, "colour"),
        ({"q": "x" * 201}, "q"),
    ],
)
def test_bad_query_parameters_name_the_filter(params, field):
    with pytest.raises(errors.ValidationError) as exc:
        BulletinQuery.from_params(params)
    assert exc.value.field == field


def test_query_parameters_parse_into_filters(filled):
    store, ids = filled
    q = BulletinQuery.from_params({"kind": "lookout,alert", "unread": "true", "limit": "1"})
    page = store.list_bulletins(q)
    assert ids_of(page) == [ids["lao"]]
    assert ids_of(store.list_bulletins(BulletinQuery.from_params({"kind": "lookout,alert", "cursor": page.next_cursor}))) == [
        ids["flash"]
    ]


def test_compact_keeps_thai_and_lao_marks_and_drops_separators():
    assert compact("P-0847 211") == "P0847211"
    assert compact("ผู้ต้องหา") == "ผู้ต้องหา"  # tone and vowel marks are not separators
    assert compact("+95 9 123-456") == "959123456"


def test_reverify_flags_a_stored_bulletin_whose_bytes_were_altered(store, db_path):
    b = make(1)
    receive(store, b)
    assert store.reverify(b.id, BOOK, now_ms=NOW + 10) is True
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE store_bulletins SET body = ? WHERE id = ?", (b"\x80", b.id))
    conn.commit()
    conn.close()
    assert store.reverify(b.id, BOOK, now_ms=NOW + 20) is False
    got = store.get(b.id)
    assert not got.verified and got.verification["reason"] == "bad_signature"


def test_reverify_reports_a_sender_key_the_directory_no_longer_knows(store):
    b = make(1)
    receive(store, b)
    assert store.reverify(b.id, PeerBook([SVK.public()]), now_ms=NOW) is False
    assert store.get(b.id).verification["reason"] == "unknown_sender"


def test_a_database_from_a_newer_release_is_refused(db_path):
    open_database(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(errors.StoreError, match="newer"):
        open_database(db_path)


def test_a_file_that_is_not_a_database_gives_a_store_error(tmp_path):
    path = tmp_path / "node.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(errors.StoreError, match=str(path)):
        open_database(path)


def test_the_database_file_is_private(db_path, store):
    assert db_path.stat().st_mode & 0o077 == 0


_PARAM_NAMES = ["kind", "precedence", "feed", "sender", "direction", "since", "until", "unread", "in_reply_to", "q", "limit", "cursor", "x"]


@settings(max_examples=300, deadline=None)
@given(params=st.dictionaries(st.sampled_from(_PARAM_NAMES), st.text(max_size=30), max_size=6))
def test_any_query_parameters_give_a_query_or_a_validation_error(params):
    try:
        q = BulletinQuery.from_params(params)
    except errors.ValidationError as exc:
        assert exc.field in _PARAM_NAMES or exc.field == "q"
        return
    assert 1 <= q.limit <= 500


@given(at=st.integers(0, (1 << 48) - 1), seq=st.integers(1, 1 << 62))
def test_cursors_round_trip(at, seq):
    from office_node.paging import decode_cursor, encode_cursor

    assert decode_cursor(encode_cursor(at, seq)) == (at, seq)


def test_an_older_database_is_migrated_forward_keeping_its_bulletins(db_path):
    from office_node.db import MIGRATIONS, _statements

    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    for statement in _statements(MIGRATIONS[0]):  # a file written by a release with only the store
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    b = make(1)
    sealed, opened = seal_and_open(b)
    # The row as that release wrote it: the v1 columns (a box key id where v2 has the
    # ephemeral key, no witness time), then its full-text entry.
    from office_node.store import _index_row, _json

    cur = conn.execute(
        "INSERT INTO store_bulletins (id, direction, sender, sender_sign_kid, sender_box_kid, sent_at, received_at, "
        "at, precedence, kind, tlp, feed, title, in_reply_to, expires, bulletin_json, recipients_json, sealed, header, "
        "body, signature, verified, verification_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (b.id, "received", b.sender, opened.sender_sign_kid, bytes(8), NOW, NOW, NOW, b.precedence, b.kind, b.tlp,
         None, b.title, None, None, _json(b.to_dict()), _json(["LA-SVK"]), sealed, opened.header, opened.body,
         opened.signature, 1, _json({"verified": True})),
    )
    conn.execute("INSERT INTO store_fts (rowid, title, body, entities, tags) VALUES (?, ?, ?, ?, ?)",
                 (cur.lastrowid, *_index_row(b)))
    conn.close()

    db = open_database(db_path)
    with db.read() as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert c.execute("SELECT count(*) FROM auth_users").fetchone()[0] == 0  # later tables now exist
    store = Store(db)
    assert store.get(b.id).bulletin == b.to_dict()
    assert store.get(b.id).sender_ephemeral == bytes(8).hex() and store.get(b.id).witnessed_at is None
    assert [x.id for x in store.search("ยาบ้า")] == [b.id]
    db.close()


def test_bulletins_that_arrived_after_a_compromise_are_flagged_when_the_revocation_comes(store):
    """TRUST.md section 5: TH-TCCC revokes TH-MUK's key as compromised since between two
    bulletins LA-SVK already stored. The one stored after that time is flagged unverified
    (kept, with the reason); the one stored before stands."""
    from dataclasses import replace

    before, after = make(1), make(400)
    receive(store, before)
    receive(store, after)
    assert store.reverify_sender("TH-MUK", BOOK, now_ms=NOW + 500_000) == []
    compromised_since = NOW + 100_000  # after the first was stored, minutes before the second
    revoked = PeerBook([replace(MUK.public(), revoked_at=compromised_since), SVK.public(), TCCC.public()])
    assert store.reverify_sender("TH-MUK", revoked, now_ms=NOW + 500_000) == [after.id]
    kept = store.get(after.id)
    assert kept is not None and not kept.verified and kept.verification["reason"] == "sender_key_invalid"
    assert kept.bulletin == after.to_dict()  # evidence is never deleted
    assert store.get(before.id).verified
