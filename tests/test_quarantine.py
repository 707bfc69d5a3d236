"""Quarantine: kept with reason, counted, deduped, retried when the directory changes."""

from __future__ import annotations

from pathlib import Path

from bus.envelope import OfficeRecipient, Opener, Sealer
from bus.errors import DecryptionFailed, MalformedEnvelope, UnknownSender
from bus.keys import PeerBook
from bus.transport.metrics import BusMetrics, sample
from bus.transport.quarantine import Quarantine
from tests.helpers import NOW, bulletin, identity

SUBJECT = "blo.office.LA-SVK.routine"


def test_entries_keep_bytes_subject_and_reason_and_are_counted(tmp_path: Path) -> None:
    metrics = BusMetrics.fresh()
    q = Quarantine(tmp_path / "q.db", metrics)
    q.add(b"garbage", SUBJECT, MalformedEnvelope("not msgpack"), now_ms=1)
    q.add(b"tampered", SUBJECT, DecryptionFailed("altered"), now_ms=2)
    (entry,) = q.entries(reason="malformed")
    assert (entry.raw, entry.subject, entry.message, entry.retryable) == (b"garbage", SUBJECT, "not msgpack", False)
    assert q.counts() == {"decryption_failed": 1, "malformed": 1}
    assert sample(metrics.quarantined, reason="malformed") == 1


def test_the_same_message_again_bumps_its_entry(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q.db")
    q.add(b"garbage", SUBJECT, MalformedEnvelope("x"), now_ms=1)
    q.add(b"garbage", SUBJECT, MalformedEnvelope("x"), now_ms=5)
    (entry,) = q.entries()
    assert (entry.attempts, entry.first_seen, entry.last_seen) == (2, 1, 5)


def test_non_bus_exceptions_are_kept_as_internal(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q.db")
    q.add(b"x", SUBJECT, KeyError("boom"), now_ms=1)
    assert q.entries()[0].reason == "internal"


def test_unknown_sender_opens_on_retry_once_the_directory_knows_it(tmp_path: Path) -> None:
    muk, svk = identity("TH-MUK"), identity("LA-SVK")
    sealed = Sealer(muk).seal(bulletin(), [OfficeRecipient(svk.public())], now_ms=NOW)
    book = PeerBook([svk.public()])
    opener = Opener.for_identity(svk, book)
    q = Quarantine(tmp_path / "q.db")
    try:
        opener.open(sealed, witnessed_at=NOW)
    except UnknownSender as exc:
        q.add(sealed, SUBJECT, exc, now_ms=1, witnessed_at=NOW)
    q.add(b"garbage", SUBJECT, MalformedEnvelope("x"), now_ms=1)
    assert q.retry_all(lambda _subject, raw, w: opener.open(raw, witnessed_at=w), now_ms=2) == []  # still unknown
    assert q.entries(reason="unknown_sender")[0].attempts == 2
    book.add(muk.public())
    (reopened,) = q.retry_all(lambda _subject, raw, w: opener.open(raw, witnessed_at=w), now_ms=3)
    assert reopened.opened.bulletin.sender == "TH-MUK"
    assert q.counts() == {"malformed": 1, "unknown_sender": 1}  # held until the node resolves it
    q.resolve(reopened.qid)
    assert q.counts() == {"malformed": 1}


def test_a_retry_judges_the_sender_by_when_the_bulletin_was_stored_not_by_the_retry(tmp_path: Path) -> None:
    """TRUST.md 2.1: the quarantine keeps the witness time. A bulletin stored before its
    sender's key was revoked still opens when the directory catches up a day later; the
    same bytes stored after the revocation do not."""
    from dataclasses import replace

    muk, svk = identity("TH-MUK"), identity("LA-SVK")
    sealed = Sealer(muk).seal(bulletin(), [OfficeRecipient(svk.public())], now_ms=NOW)
    book = PeerBook([svk.public()])
    opener = Opener.for_identity(svk, book)
    q = Quarantine(tmp_path / "q.db")
    try:
        for subject, stored in ((SUBJECT, NOW + 1_000), (SUBJECT + "X", NOW + 20 * 60_000)):
            try:
                opener.open(sealed, witnessed_at=stored)
            except UnknownSender as exc:
                q.add(sealed, subject, exc, now_ms=stored, witnessed_at=stored)
        book.add(replace(muk.public(), revoked_at=NOW + 10 * 60_000))  # revoked ten minutes after sealing
        reopened = q.retry_all(lambda _subject, raw, w: opener.open(raw, witnessed_at=w), now_ms=NOW + 86_400_000)
        assert [r.subject for r in reopened] == [SUBJECT]
        assert q.counts() == {"sender_key_invalid": 1, "unknown_sender": 1}
    finally:
        q.close()
