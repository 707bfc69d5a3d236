"""The audit log's hash chain catches edited, deleted, reordered and cut-off entries.

Tampering is done the way an attacker would: open the SQLite file with sqlite3, drop
the append-only triggers, and change rows (recomputing hashes where that is possible
without the key).
"""

from __future__ import annotations

import hashlib
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import errors
from bus.testing import DeterministicRng
from office_node.audit import GENESIS, AuditLog, canonical, load_or_create_key
from office_node.db import open_database

NOW = 1_795_000_000_000


@pytest.fixture
def paths(tmp_path):
    return tmp_path / "data" / "node.db", tmp_path / "data" / "audit.key", tmp_path / "data" / "audit.head"


def open_log(paths):
    db_path, key_path, head_path = paths
    db = open_database(db_path)
    return AuditLog.open(db, key_path, head_path=head_path, rng=DeterministicRng("audit")), db


@pytest.fixture
def log_with_five(paths):
    log, db = open_log(paths)
    for i in range(1, 6):
        log.append(f"officer{i}", "bulletin.read", target=f"01M7Q5CRF8YZ6FBMCHKSN4HC{i:02d}", details={"n": i, "ຊື່": "ສົມໃຈ"}, now_ms=NOW + i)
    yield log
    db.close()


def tamper(paths, *statements):
    conn = sqlite3.connect(paths[0])
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    for sql, args in statements:
        conn.execute(sql, args)
    conn.commit()
    conn.close()


def test_an_untouched_log_verifies_and_survives_reopen(paths, log_with_five):
    report = log_with_five.verify()
    assert report.ok and report.entries == 5
    log, db = open_log(paths)
    again = log.verify()
    assert again.ok and again.entries == 5 and again.head_hash == report.head_hash
    entry = log.append("admin", "user.add", target="noi", now_ms=NOW + 10)
    assert entry.seq == 6 and log.verify().entries == 6
    db.close()


def test_an_empty_log_verifies(paths):
    log, db = open_log(paths)
    report = log.verify()
    assert report.ok and report.entries == 0 and report.head_hash == GENESIS.hex()
    db.close()


def test_entries_are_listed_newest_first_with_their_details(log_with_five):
    entries = log_with_five.entries(limit=2)
    assert [e.seq for e in entries] == [5, 4]
    assert entries[0].details == {"n": 5, "ຊື່": "ສົມໃຈ"}
    assert [e.seq for e in log_with_five.entries(actor="officer2")] == [2]
    assert [e.seq for e in log_with_five.entries(before_seq=3)] == [2, 1]


def test_the_application_cannot_update_or_delete_entries(paths, log_with_five):
    with pytest.raises(errors.StoreError, match="append-only"), log_with_five.db.write() as c:
        c.execute("UPDATE audit_log SET actor = 'x' WHERE seq = 2")
    with pytest.raises(errors.StoreError, match="append-only"), log_with_five.db.write() as c:
        c.execute("DELETE FROM audit_log WHERE seq = 2")
    assert log_with_five.verify().ok


def test_an_edited_entry_is_named(paths, log_with_five):
    tamper(paths, ("UPDATE audit_log SET actor = 'somebody-else' WHERE seq = 3", ()))
    report = log_with_five.verify()
    assert not report.ok
    assert report.problem.seq == 3 and "changed" in report.problem.what
    assert report.entries == 2  # entries 1-2 are still intact


def test_an_edited_entry_with_a_recomputed_plain_sha256_is_still_caught(paths, log_with_five):
    # Without the key, the best an attacker can do is the textbook unkeyed chain.
    conn = sqlite3.connect(paths[0])
    seq, at, actor, _action, target, details, prev = conn.execute(
        "SELECT seq, at, actor, action, target, details, prev_hash FROM audit_log WHERE seq = 4"
    ).fetchone()
    conn.close()
    forged = hashlib.sha256(prev + canonical(seq, at, actor, "bulletin.export", target, details)).digest()
    tamper(paths, ("UPDATE audit_log SET action = 'bulletin.export', hash = ? WHERE seq = 4", (forged,)))
    report = log_with_five.verify()
    assert report.problem.seq == 4 and "changed" in report.problem.what


def test_edited_details_are_caught(paths, log_with_five):
    tamper(paths, ("UPDATE audit_log SET details = '{\"n\":99}' WHERE seq = 5", ()))
    assert log_with_five.verify().problem.seq == 5


def test_a_deleted_entry_is_named(paths, log_with_five):
    tamper(paths, ("DELETE FROM audit_log WHERE seq = 2", ()))
    report = log_with_five.verify()
    assert report.problem.seq == 2 and "missing" in report.problem.what and "deleted" in report.problem.what


def test_a_deleted_entry_with_the_rest_renumbered_is_caught(paths, log_with_five):
    tamper(
        paths,
        ("DELETE FROM audit_log WHERE seq = 2", ()),
        ("UPDATE audit_log SET seq = seq - 1 WHERE seq > 2", ()),
    )
    report = log_with_five.verify()
    assert report.problem.seq == 2 and "does not follow entry 1" in report.problem.what


def test_reordered_entries_are_named(paths, log_with_five):
    conn = sqlite3.connect(paths[0])
    rows = {r[0]: r[1:] for r in conn.execute("SELECT seq, at, actor, action, target, details, prev_hash, hash FROM audit_log")}
    conn.close()
    update = "UPDATE audit_log SET at = ?, actor = ?, action = ?, target = ?, details = ?, prev_hash = ?, hash = ? WHERE seq = ?"
    tamper(paths, (update, (*rows[4], 3)), (update, (*rows[3], 4)))
    report = log_with_five.verify()
    assert report.problem.seq == 3 and "reordered" in report.problem.what


def test_cutting_off_the_last_entries_is_caught_by_the_head_file(paths, log_with_five):
    tamper(paths, ("DELETE FROM audit_log WHERE seq >= 4", ()))
    report = log_with_five.verify()
    assert report.problem.seq == 4 and "cut short" in report.problem.what
    assert "entries 4 to 5" in report.problem.what


def test_rewriting_the_whole_chain_with_the_key_is_caught_by_the_head_file(paths, log_with_five):
    # An attacker who also stole the key rebuilds a shorter, consistent history; the head
    # file (which they did not touch) still names the original last entry.
    from office_node.audit import entry_hash

    key = paths[1].read_bytes()
    tamper(paths, ("DELETE FROM audit_log WHERE seq = 5", ()))
    conn = sqlite3.connect(paths[0])
    prev = conn.execute("SELECT hash FROM audit_log WHERE seq = 4").fetchone()[0]
    h = entry_hash(key, prev, 5, NOW + 5, "officer5", "bulletin.read", "X", "{}")
    conn.execute("INSERT INTO audit_log VALUES (5, ?, 'officer5', 'bulletin.read', 'X', '{}', ?, ?)", (NOW + 5, prev, h))
    conn.commit()
    conn.close()
    report = log_with_five.verify()
    assert report.problem.seq == 5 and "rewritten" in report.problem.what


def test_a_log_with_entries_but_no_key_file_refuses_to_open(paths, log_with_five):
    paths[1].unlink()
    with pytest.raises(errors.StoreError, match="audit key file is missing"):
        AuditLog.open(log_with_five.db, paths[1])


def test_the_key_file_is_private_and_reused(paths):
    key = load_or_create_key(paths[1], rng=DeterministicRng("k"))
    assert paths[1].stat().st_mode & 0o077 == 0
    assert load_or_create_key(paths[1], rng=DeterministicRng("other")) == key


def test_bad_entries_are_refused_with_the_field_named(paths):
    log, db = open_log(paths)
    with pytest.raises(errors.ValidationError, match="actor"):
        log.append("", "login", now_ms=NOW)
    with pytest.raises(errors.ValidationError, match="details"):
        log.append("x", "login", details={"f": float("nan")}, now_ms=NOW)
    with pytest.raises(errors.ValidationError, match="details"):
        log.append("x", "login", details={"b": b"bytes"}, now_ms=NOW)
    assert log.verify().entries == 0
    db.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=100) | st.text(max_size=60).map(str.encode))
def test_a_damaged_head_file_gives_a_store_error_or_a_report(paths, log_with_five, content):
    paths[2].write_bytes(content)
    try:
        report = log_with_five.verify()
    except errors.StoreError as exc:
        assert "head file" in exc.message
        return
    assert report.entries <= 5


def test_cutting_off_entries_then_appending_new_ones_does_not_hide_the_cut(paths, log_with_five):
    tamper(paths, ("DELETE FROM audit_log WHERE seq >= 4", ()))
    log_with_five.append("admin", "user.add", target="x", now_ms=NOW + 100)
    log_with_five.append("admin", "user.add", target="y", now_ms=NOW + 101)
    report = log_with_five.verify()
    assert report.problem.seq == 5 and "rewritten" in report.problem.what
