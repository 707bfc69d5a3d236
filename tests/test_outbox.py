"""The durable outbox: order, restart survival, states per recipient, FLASH deadlines."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bus.errors import StoreError, ValidationError
from bus.transport.outbox import DELIVERED, QUEUED, READ, SENT, Delivery, Outbox

RANK = {"FLASH": 0, "IMMEDIATE": 1, "PRIORITY": 2, "ROUTINE": 3}


def _bid(n: int) -> str:
    return f"01J9Z3K8W4N2V7Q5R6T1X{n:05d}"


def _post(
    box: Outbox, n: int, precedence: str = "ROUTINE", to: tuple[str, ...] = ("LA-SVK",), deadline: int | None = None
) -> str:
    bid = _bid(n)
    deliveries = [Delivery(r, f"blo.office.{r}.{precedence.lower()}", f"{bid}:{r}") for r in to]
    box.enqueue_bulletin(
        bid, precedence, RANK[precedence], b"sealed-%d" % n, deliveries, now_ms=1000 + n, ack_deadline=deadline
    )
    return bid


def test_flash_leaves_first_then_each_precedence_in_posting_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    order = ["ROUTINE", "PRIORITY", "ROUTINE", "FLASH", "IMMEDIATE", "ROUTINE", "FLASH"]
    for n, p in enumerate(order):
        _post(box, n, p)
    got = [(RANK_NAME[p.rank], p.bulletin_id) for p in box.next_batch(100)]
    assert got == [
        ("FLASH", _bid(3)),
        ("FLASH", _bid(6)),
        ("IMMEDIATE", _bid(4)),
        ("PRIORITY", _bid(1)),
        ("ROUTINE", _bid(0)),
        ("ROUTINE", _bid(2)),
        ("ROUTINE", _bid(5)),
    ]
    assert box.next_batch(2)[1].payload == b"sealed-6"


RANK_NAME = {v: k for k, v in RANK.items()}


def test_a_queued_bulletin_survives_closing_and_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    bid = _post(box, 1, to=("LA-SVK", "TH-TCCC"))
    box.close()
    again = Outbox(tmp_path / "o.db")
    assert again.depth() == 2
    assert {p.msg_id for p in again.next_batch(10)} == {f"{bid}:LA-SVK", f"{bid}:TH-TCCC"}
    assert (tmp_path / "o.db").stat().st_mode & 0o777 == 0o600


def test_only_acked_copies_leave_the_queue(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    bid = _post(box, 1, to=("LA-SVK", "TH-TCCC"))
    first, second = box.next_batch(10)
    box.mark_sent([first.key], now_ms=5000)
    box.note_failures([(second.key, "PublishUnconfirmed: no ack")])
    assert [p.key for p in box.next_batch(10)] == [second.key]
    states = {r: s.state for r, s in box.status(bid).recipients.items()}
    assert states == {"LA-SVK": SENT, "TH-TCCC": QUEUED}


def test_receipts_move_a_recipient_to_delivered_then_read(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    bid = _post(box, 1, to=("LA-SVK", "TH-TCCC"))
    box.mark_sent([p.key for p in box.next_batch(10)], now_ms=5000)
    assert box.record_receipts([(bid, "LA-SVK", "delivered", 6000)], now_ms=6001) == 1
    assert box.record_receipts([(bid, "LA-SVK", "delivered", 6000)], now_ms=6002) == 0  # a repeat is not news
    box.record_receipts([(bid, "TH-TCCC", "read", 7000)], now_ms=7001)
    status = box.status(bid)
    assert status.recipients["LA-SVK"].state == DELIVERED
    assert status.recipients["LA-SVK"].delivered_at == 6000
    assert status.recipients["TH-TCCC"].state == READ  # a read receipt implies delivery
    assert status.recipients["TH-TCCC"].delivered_at == 7000


def test_a_feed_members_receipt_adds_that_member(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    bid = _post(box, 1, to=("feed:mekong-drugs",))
    box.mark_sent([p.key for p in box.next_batch(10)], now_ms=5000)
    box.record_receipts([(bid, "KH-POI", "delivered", 6000)], now_ms=6001)
    assert set(box.status(bid).recipients) == {"feed:mekong-drugs", "KH-POI"}


def test_receipts_for_bulletins_never_sent_here_are_ignored(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    assert box.record_receipts([(_bid(9), "LA-SVK", "delivered", 1)], now_ms=2) == 0
    assert box.status(_bid(9)) is None


def test_posting_the_same_bulletin_twice_is_refused(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    _post(box, 1)
    with pytest.raises(ValidationError, match="already posted"):
        _post(box, 1)
    assert box.depth() == 1


def test_flash_overdue_until_every_office_recipient_acknowledged(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    bid = _post(box, 1, "FLASH", to=("LA-SVK", "TH-TCCC", "feed:mekong-drugs"), deadline=10_000)
    box.mark_sent([p.key for p in box.next_batch(10)], now_ms=2000)
    assert box.check_flash(9_999) == []  # not due yet
    box.record_receipts([(bid, "LA-SVK", "acknowledged", 3000), (bid, "TH-TCCC", "delivered", 3000)], now_ms=3001)
    (overdue,) = box.check_flash(10_000)
    # Delivered is only the machine: TH-TCCC's people have not acknowledged it. The
    # stored feed copy counts as acknowledged.
    assert overdue.missing == ("TH-TCCC",)
    assert box.status(bid).recipients["TH-TCCC"].state == "delivered"
    assert box.status(bid).recipients["LA-SVK"].state == "acknowledged"
    box.mark_escalated(bid, now_ms=10_000)
    assert box.check_flash(10_001)[0].escalated_at == 10_000
    box.record_receipts([(bid, "TH-TCCC", "read", 10_500)], now_ms=10_501)
    assert box.check_flash(10_502)[0].missing == ("TH-TCCC",)  # read is not acknowledged either
    box.record_receipts([(bid, "TH-TCCC", "acknowledged", 11_000)], now_ms=11_001)
    assert box.check_flash(11_002) == []
    assert box.flash_watch_ids() == []  # settled: no longer watched


def test_queued_receipts_are_sent_once_per_kind(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    row = (_bid(1), "TH-MUK", 0, "blo.receipt.TH-MUK", "receipt:delivered:x:LA-SVK", b"r")
    box.enqueue_receipts([row, row], now_ms=1)
    assert box.depth() == 1
    assert box.next_batch(5)[0].payload == b"r"


def test_copies_in_flight_are_not_handed_out_again_and_the_order_holds(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    for n in range(6):
        _post(box, n)
    first = box.next_batch(2)
    rest = box.next_batch(10, exclude={p.key for p in first})
    assert [p.bulletin_id for p in first] == [_bid(0), _bid(1)]
    assert [p.bulletin_id for p in rest] == [_bid(n) for n in range(2, 6)]
    flash = _post(box, 9, "FLASH")
    assert box.next_batch(1, exclude={p.key for p in first + rest})[0].bulletin_id == flash


def test_marking_more_sent_than_one_statement_takes(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.enqueue_many(
        [(_bid(n), "ROUTINE", 3, b"s", [Delivery("LA-SVK", "blo.office.LA-SVK.routine.TH-MUK", _bid(n))], None) for n in range(1200)],
        now_ms=1,
    )
    box.mark_sent([p.key for p in box.next_batch(1100)], now_ms=2)
    assert box.depth() == 100
    assert box.status(_bid(1099)).recipients["LA-SVK"].state == SENT
    assert box.status(_bid(1100)).recipients["LA-SVK"].state == QUEUED


def test_a_batch_naming_one_bulletin_twice_is_refused_whole_and_names_it(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    item = (_bid(7), "ROUTINE", 3, b"s", [Delivery("LA-SVK", "blo.office.LA-SVK.routine.TH-MUK", _bid(7))], None)
    other = (_bid(8), "ROUTINE", 3, b"s", [Delivery("LA-SVK", "blo.office.LA-SVK.routine.TH-MUK", _bid(8))], None)
    with pytest.raises(ValidationError, match=_bid(7)):
        box.enqueue_many([other, item, item], now_ms=1)
    assert box.depth() == 0 and box.status(_bid(8)) is None


def _copies(box: Outbox, limit: int = 100, exclude: set[int] | None = None) -> dict[str, bytes]:
    return {p.msg_id: p.payload for p in box.next_batch(limit, exclude=exclude or set())}


def test_every_copy_carries_its_bulletins_sealed_bytes_from_memory_disk_or_after_a_retry(tmp_path: Path) -> None:
    to = ("LA-SVK", "TH-TCCC", "LA-TCCC")
    box = Outbox(tmp_path / "o.db")
    bids = [_post(box, n, to=to) for n in range(3)]
    want = {f"{bid}:{r}": b"sealed-%d" % n for n, bid in enumerate(bids) for r in to}
    first = box.next_batch(4)  # bulletin 0 whole, one copy of bulletin 1: taken from memory
    rest = box.next_batch(100, exclude={p.key for p in first})
    assert {p.msg_id: p.payload for p in first + rest} == want
    box.note_failures([(p.key, "PublishUnconfirmed") for p in first + rest])  # every copy comes round again
    assert _copies(box) == want  # now from disk: each was handed out once already
    box.close()
    assert _copies(Outbox(tmp_path / "o.db")) == want  # and after a restart


def test_bulletins_past_the_memory_bound_are_read_from_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bus.transport.outbox as outbox_module

    monkeypatch.setattr(outbox_module, "FRESH_MAX_BYTES", len(b"sealed-1") * 2)
    box = Outbox(tmp_path / "o.db")
    bids = [_post(box, n, to=("LA-SVK", "TH-TCCC")) for n in range(1, 6)]  # 2 kept in memory, 3 not
    assert _copies(box) == {f"{bid}:{r}": b"sealed-%d" % n for n, bid in enumerate(bids, 1) for r in ("LA-SVK", "TH-TCCC")}
    assert box._fresh == {} and box._fresh_bytes == 0  # all handed out: nothing held


def test_a_refused_batch_leaves_nothing_in_memory(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    item = (_bid(7), "ROUTINE", 3, b"s", [Delivery("LA-SVK", "blo.office.LA-SVK.routine.TH-MUK", _bid(7))], None)
    with pytest.raises(ValidationError):
        box.enqueue_many([item, item], now_ms=1)
    assert box._fresh == {} and box.next_batch(10) == []


def test_receipts_leave_before_bulletins_of_their_precedence_and_after_higher_ones(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    routine = _post(box, 1)
    flash = _post(box, 2, "FLASH")
    box.enqueue_receipts(
        [
            (_bid(5), "TH-MUK", 3, "blo.receipt.TH-MUK.LA-SVK", "receipt:delivered:r:LA-SVK", b"routine receipt"),
            (_bid(6), "TH-MUK", 0, "blo.receipt.TH-MUK.LA-SVK", "receipt:delivered:f:LA-SVK", b"flash receipt"),
        ],
        now_ms=5,
    )
    got = [(p.kind, p.bulletin_id) for p in box.next_batch(10)]
    assert got == [("receipt", _bid(6)), ("bulletin", flash), ("receipt", _bid(5)), ("bulletin", routine)]
    assert box.depth() == 4


def test_copies_acked_in_different_rounds_keep_their_own_times(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    bid = _post(box, 1, to=("LA-SVK", "TH-TCCC", "LA-TCCC"))
    a, b, c = box.next_batch(10)
    box.mark_sent([b.key], now_ms=2000)
    assert box.depth() == 2
    box.mark_sent([b.key], now_ms=2500)  # a repeated mark changes nothing
    box.mark_sent([a.key, c.key], now_ms=3000)
    assert box.depth() == 0 and box.next_batch(10) == []
    sent_at = {r: s.sent_at for r, s in box.status(bid).recipients.items()}
    assert sent_at == {"LA-SVK": 3000, "TH-TCCC": 2000, "LA-TCCC": 3000}


def test_a_bulletin_sent_whole_in_one_round_has_one_time_for_every_copy(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    bid = _post(box, 1, to=("LA-SVK", "TH-TCCC"))
    box.mark_sent([p.key for p in box.next_batch(10)], now_ms=4000)
    status = box.status(bid)
    assert {(s.state, s.sent_at) for s in status.recipients.values()} == {(SENT, 4000)}


def test_an_outbox_written_by_a_newer_version_is_refused_with_a_reason(tmp_path: Path) -> None:
    Outbox(tmp_path / "o.db").close()
    db = sqlite3.connect(tmp_path / "o.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="newer version"):
        Outbox(tmp_path / "o.db")


# The version 1 layout (a messages row per bulletin copy), as blo-bus 0.1 wrote it.
_V1_SCHEMA = """
CREATE TABLE bulletins (id TEXT PRIMARY KEY, precedence TEXT NOT NULL, rank INTEGER NOT NULL, sealed BLOB NOT NULL,
    posted_at INTEGER NOT NULL, ack_deadline INTEGER, escalated_at INTEGER);
CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, rank INTEGER NOT NULL, kind TEXT NOT NULL,
    bulletin_id TEXT NOT NULL, recipient TEXT NOT NULL, subject TEXT NOT NULL, msg_id TEXT NOT NULL UNIQUE, payload BLOB,
    state TEXT NOT NULL DEFAULT 'queued', queued_at INTEGER NOT NULL, sent_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT);
CREATE INDEX messages_queue ON messages(rank, seq) WHERE state = 'queued';
CREATE INDEX messages_bulletin ON messages(bulletin_id);
CREATE TABLE receipts (bulletin_id TEXT NOT NULL, office TEXT NOT NULL, kind TEXT NOT NULL, at INTEGER NOT NULL,
    received_at INTEGER NOT NULL, PRIMARY KEY (bulletin_id, office, kind));
"""


def _v1_outbox(path: Path) -> tuple[str, str, str]:
    """A version 1 file: a ROUTINE bulletin half sent and acknowledged by one office, a
    FLASH one posted after it and still queued (past its deadline), a queued receipt."""
    db = sqlite3.connect(path)
    db.executescript(_V1_SCHEMA)
    half, flash, receipt_for = _bid(1), _bid(2), _bid(3)
    db.execute("INSERT INTO bulletins VALUES (?, 'ROUTINE', 3, ?, 1000, NULL, NULL)", (half, b"sealed-1"))
    db.execute("INSERT INTO bulletins VALUES (?, 'FLASH', 0, ?, 1001, 5000, NULL)", (flash, b"sealed-2"))
    rows = [
        (3, "bulletin", half, "LA-SVK", "blo.office.LA-SVK.routine.TH-MUK", f"{half}:LA-SVK", None, "sent", 1000, 1500, 1, None),
        (3, "bulletin", half, "TH-TCCC", "blo.office.TH-TCCC.routine.TH-MUK", f"{half}:TH-TCCC", None, "queued", 1000, None, 2, "no ack"),
        (0, "receipt", receipt_for, "LA-SVK", "blo.receipt.LA-SVK.TH-MUK", "receipt:delivered:x:TH-MUK", b"r", "queued", 1002, None, 0, None),
        (0, "bulletin", flash, "LA-SVK", "blo.office.LA-SVK.flash.TH-MUK", flash, None, "queued", 1001, None, 0, None),
    ]
    db.executemany(
        "INSERT INTO messages (rank, kind, bulletin_id, recipient, subject, msg_id, payload, state, queued_at, sent_at, "
        "attempts, last_error) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    db.execute("INSERT INTO receipts VALUES (?, 'LA-SVK', 'delivered', 1600, 1601)", (half,))
    db.commit()
    db.close()
    return half, flash, receipt_for


def test_a_version_1_outbox_is_converted_without_losing_a_queued_copy(tmp_path: Path) -> None:
    half, flash, receipt_for = _v1_outbox(tmp_path / "o.db")
    box = Outbox(tmp_path / "o.db")
    assert box.depth() == 3
    got = [(p.kind, p.bulletin_id, p.recipient, p.payload) for p in box.next_batch(10)]
    assert got == [
        ("receipt", receipt_for, "LA-SVK", b"r"),
        ("bulletin", flash, "LA-SVK", b"sealed-2"),
        ("bulletin", half, "TH-TCCC", b"sealed-1"),
    ]
    status = box.status(half)
    assert {r: (s.state, s.sent_at) for r, s in status.recipients.items()} == {
        "LA-SVK": (DELIVERED, 1500),
        "TH-TCCC": (QUEUED, None),
    }
    assert [o.missing for o in box.check_flash(6000)] == [("LA-SVK",)]
    with pytest.raises(ValidationError, match="already posted"):
        _post(box, 1)
    newer = _post(box, 4)  # posted after the converted ones, so it leaves after them
    assert [p.bulletin_id for p in box.next_batch(10) if p.kind == "bulletin"] == [flash, half, newer]
    box.close()
    reopened = Outbox(tmp_path / "o.db")  # converted once: opening again changes nothing
    assert reopened.depth() == 4
    assert reopened.db.execute("SELECT COUNT(*) FROM messages WHERE kind = 'bulletin'").fetchone()[0] == 0
