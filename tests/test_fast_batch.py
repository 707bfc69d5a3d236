"""Fast-ingest batches (ADR-50): the sender's reading of the server's replies, without I/O."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus.transport.fast_batch import ERR_DISABLED, NO_STREAM, FastBatch, parse_reply_subject

PREFIX = "_INBOX.TH-MUK.abc."


def _batch(size: int = 5) -> FastBatch:
    return FastBatch("tok1", size, size)


def _feed(batch: FastBatch, seq: int, reply: dict[str, object]) -> None:
    batch.on_reply(seq, json.dumps(reply).encode())


def test_each_message_names_the_batch_its_place_and_whether_it_starts_adds_or_commits() -> None:
    batch = _batch(3)
    assert [batch.reply(PREFIX, seq) for seq in (1, 2, 3)] == [
        "_INBOX.TH-MUK.abc.tok1.3.fail.1.0.$FI",
        "_INBOX.TH-MUK.abc.tok1.3.fail.2.1.$FI",
        "_INBOX.TH-MUK.abc.tok1.3.fail.3.2.$FI",
    ]
    assert parse_reply_subject(batch.reply(PREFIX, 2), PREFIX) == ("tok1", 2)
    assert parse_reply_subject("_INBOX.TH-MUK.abc.17", PREFIX) is None  # a single publish's reply
    assert parse_reply_subject("_INBOX.OTHER.tok1.3.fail.2.1.$FI", PREFIX) is None


def test_a_committed_batch_stores_every_message() -> None:
    batch = _batch()
    _feed(batch, 1, {"type": "ack", "seq": 0, "msgs": 5})
    assert batch.started and not batch.done and batch.stored == 0
    _feed(batch, 5, {"stream": "BLO_OFFICES", "seq": 40, "batch": "tok1", "count": 5})
    assert (batch.done, batch.stored, batch.stream, batch.last_seq, batch.error_at) == (True, 5, "BLO_OFFICES", 40, None)


def test_flow_acks_say_how_far_it_is_stored_before_the_end() -> None:
    batch = _batch()
    _feed(batch, 1, {"type": "ack", "seq": 0, "msgs": 2})
    _feed(batch, 2, {"type": "ack", "seq": 2, "msgs": 2})
    _feed(batch, 4, {"type": "ack", "seq": 4, "msgs": 4})
    assert (batch.stored, batch.done) == (4, False)


def test_a_refused_message_ends_the_batch_there_with_the_servers_reason() -> None:
    batch = _batch()
    _feed(batch, 1, {"type": "ack", "seq": 0, "msgs": 5})
    _feed(batch, 3, {"error": {"code": 400, "err_code": 10054, "description": "message size exceeds maximum allowed"}})
    assert not batch.done  # the final ack, with the count, is still to come
    _feed(batch, 4, {"type": "gap", "last_seq": 3, "seq": 4})
    _feed(batch, 4, {"stream": "BLO_OFFICES", "seq": 2, "batch": "tok1", "count": 2})
    _feed(batch, 5, {"error": {"code": 400, "err_code": 10208, "description": "batch publish ID unknown"}})
    assert (batch.done, batch.stored) == (True, 2)
    assert batch.error_at == (3, "message size exceeds maximum allowed")


def test_a_message_no_stream_takes_ends_the_batch_before_it() -> None:
    batch = _batch()
    _feed(batch, 1, {"type": "ack", "seq": 0, "msgs": 5})
    batch.on_reply(2, b"", no_responders=True)
    _feed(batch, 3, {"stream": "BLO_OFFICES", "seq": 9, "batch": "tok1", "count": 1})
    assert (batch.done, batch.stored, batch.error_at) == (True, 1, (2, NO_STREAM))


def test_a_refused_commit_ends_the_batch_as_no_reply_follows_it() -> None:
    batch = _batch(3)
    _feed(batch, 1, {"type": "ack", "seq": 0, "msgs": 3})
    _feed(batch, 3, {"error": {"code": 400, "description": "maximum bytes exceeded"}})
    assert batch.done and batch.stored == 0 and batch.error_at == (3, "maximum bytes exceeded")


def test_a_stream_without_batches_refuses_the_first_message_and_stores_none() -> None:
    batch = _batch()
    _feed(batch, 1, {"error": {"code": 400, "err_code": ERR_DISABLED, "description": "batch publish is disabled"}})
    assert (batch.done, batch.refused, batch.stored) == (True, True, 0)


def test_a_server_without_batches_answers_each_message_as_a_single_publish() -> None:
    batch = _batch(3)
    _feed(batch, 1, {"stream": "BLO_OFFICES", "seq": 7})
    assert batch.unsupported and not batch.done
    _feed(batch, 2, {"error": {"code": 400, "description": "message size exceeds maximum allowed"}})
    _feed(batch, 3, {"stream": "BLO_OFFICES", "seq": 8, "duplicate": True})
    assert batch.done and batch.stored == 0
    assert batch.plain == {1: ("BLO_OFFICES", 7, False), 2: "message size exceeds maximum allowed", 3: ("BLO_OFFICES", 8, True)}


@pytest.mark.parametrize(("batch_id", "size"), [("", 3), ("a.b", 3), ("x" * 65, 3), ("ok", 1)])
def test_a_batch_the_server_would_refuse_is_not_made(batch_id: str, size: int) -> None:
    with pytest.raises(ValueError):
        FastBatch(batch_id, size, size)


_REPLIES = st.one_of(
    st.binary(max_size=80),
    st.dictionaries(
        st.sampled_from(["type", "seq", "msgs", "batch", "count", "stream", "error", "duplicate", "last_seq"]),
        st.one_of(st.integers(-5, 20), st.text(max_size=5), st.none(), st.booleans(), st.just({"err_code": ERR_DISABLED})),
        max_size=5,
    ).map(lambda d: json.dumps(d).encode()),
)


@settings(max_examples=300, deadline=None)
@given(replies=st.lists(st.tuples(st.integers(-2, 12), _REPLIES, st.booleans()), max_size=12))
def test_any_replies_leave_a_batch_that_never_claims_more_than_it_sent(replies: list[tuple[int, bytes, bool]]) -> None:
    batch = _batch(10)
    for seq, data, no_responders in replies:
        batch.on_reply(seq, data, no_responders=no_responders)  # never raises, whatever the server says
    assert 0 <= batch.stored <= 10
    assert all(0 < seq <= 10 for seq in batch.plain)
    assert batch.error_at is None or 0 < batch.error_at[0] <= 11


def test_each_message_gets_the_answer_its_batch_gives_it() -> None:
    from bus.errors import BusError
    from bus.transport.client import Ack, _batch_result

    done = _batch(3)
    _feed(done, 1, {"type": "ack", "seq": 0, "msgs": 3})
    _feed(done, 3, {"stream": "BLO_OFFICES", "seq": 12, "batch": "tok1", "count": 2})
    assert [_batch_result(done, seq, "blo.office.x", f"m{seq}") for seq in (1, 2, 3)] == [
        Ack("BLO_OFFICES", 0, False),  # stored in the batch: its own sequence not reported
        Ack("BLO_OFFICES", 0, False),
        None,  # past the count: the caller publishes it again, alone
    ]
    old_server = _batch(2)
    _feed(old_server, 1, {"stream": "BLO_OFFICES", "seq": 7, "duplicate": True})
    _feed(old_server, 2, {"error": {"code": 503, "description": "stream is full"}})
    first, second = (_batch_result(old_server, seq, "blo.office.x", f"m{seq}") for seq in (1, 2))
    assert first == Ack("BLO_OFFICES", 7, True)
    assert isinstance(second, BusError) and second.message == "JetStream refused m2 on blo.office.x: stream is full"
