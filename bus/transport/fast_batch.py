"""JetStream fast-ingest batches (ADR-50, nats-server 2.14+): the protocol, without I/O.

A window of the pump's publishes to one stream goes out as one *fast batch*. The server
stores each message as it comes, as for any publish, but acknowledges only every
``flow`` messages (a *flow ack*: "messages 1..seq are stored") and once at the end (a
publish ack carrying the batch's ``count``), instead of once per message. Acks are most
of what a publish costs the sender's client, and on a weak border link they are most of
its return traffic; a window of 512 copies now brings back a handful.

The control channel is the reply subject of each message:
``<inbox>.<batch id>.<flow>.fail.<seq>.<op>.$FI``, op 0 starting the batch, 1 adding
to it, 2 adding its last message and committing. The gap mode is ``fail``: if any
message does not reach the stream (refused, too large, lost), the server ends the
batch there, so "stored up to seq" always means every message up to it, in order. What
follows a failure is published again one by one by the caller, so each message meets
its own answer (and one bad message cannot hold back those behind it).

The sender writes a whole window at once, as it does single publishes: ADR-50's flow
control (the server's ack interval, at most two intervals unacknowledged) guards the
server against unbounded batches from many publishers, and the pump's windows are
bounded already (512 messages, 4 windows in flight: what single publishes have in
flight too). Writing the window in one block also keeps outbox order on the wire. The
server's acks then still say what is stored; a batch the server cut short ends with
its count, and the rest is published one by one.

Deduplication by ``Nats-Msg-Id`` works inside a batch: a duplicate counts as stored and
is not stored twice. A server without fast batches treats the reply subjects as
ordinary ones and acks each message as a single publish (``unsupported``: those acks
are kept, per message); a stream without ``allow_batched`` refuses the messages
(``refused``), and the caller publishes them one by one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

#: The last token of every fast-batch reply subject.
SUFFIX = "$FI"
GAP_MODE = "fail"
#: Server error code: batch publishing is not enabled on the stream.
ERR_DISABLED = 10205
NO_STREAM = "no stream stores this subject"
#: Longest batch id the server accepts.
MAX_ID_LENGTH = 64

START, APPEND, COMMIT = 0, 1, 2


@dataclass
class FastBatch:
    """One batch of ``size`` messages to one stream, as the sender sees it.

    Feed it every reply (``on_reply``), then read ``stored`` (messages 1..stored are in
    the stream), ``done`` (no more replies will tell more), ``refused``, ``unsupported``
    with ``plain`` (single acks by seq), and ``error_at`` (where and why it stopped)."""

    batch_id: str
    size: int
    flow: int  # the ack interval asked for; the server may choose a shorter one
    started: bool = False  # the server took message 1 as the start of a batch
    stored: int = 0  # messages 1..stored are stored (or were duplicates)
    done: bool = False
    refused: bool = False  # the stream does not take batches: nothing was stored
    unsupported: bool = False  # the server does not know fast batches: see ``plain``
    #: a server without fast batches answers each message as a single publish: seq ->
    #: (stream, stream seq, duplicate), or the text of its refusal
    plain: dict[int, tuple[str, int, bool] | str] = field(default_factory=dict)
    #: where the batch stopped and the server's reason: (seq, text)
    error_at: tuple[int, str] | None = None
    stream: str = ""
    last_seq: int = 0  # the stream sequence of the batch's last message (0: not said)

    def __post_init__(self) -> None:
        if not 0 < len(self.batch_id) <= MAX_ID_LENGTH or "." in self.batch_id or not self.batch_id.isascii():
            raise ValueError(f"a batch id is 1-{MAX_ID_LENGTH} ASCII characters without dots: {self.batch_id!r}")
        if self.size < 2 or self.flow < 1:
            raise ValueError("a fast batch has at least 2 messages and an ack interval of at least 1")

    def reply(self, prefix: str, seq: int) -> str:
        """The reply subject of message ``seq`` (1-based), under ``prefix`` (ending in '.')."""
        op = START if seq == 1 else COMMIT if seq == self.size else APPEND
        return f"{prefix}{self.batch_id}.{self.flow}.{GAP_MODE}.{seq}.{op}.{SUFFIX}"

    def on_reply(self, seq: int, data: bytes, *, no_responders: bool = False) -> None:
        """One reply, to message ``seq`` (read from its reply subject)."""
        if self.done or not 0 < seq <= self.size:
            return
        if no_responders:  # no stream took message seq
            if self.unsupported:
                self.plain[seq] = NO_STREAM
                self.done = len(self.plain) >= self.size
            else:  # the batch ends before it
                self._stop(seq, NO_STREAM, final=seq == self.size or not self.started)
            return
        try:
            reply = json.loads(data)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            self._stop(seq, f"unreadable reply {bytes(data[:80])!r}", final=False)
            return
        error = reply.get("error")
        kind = reply.get("type")
        if self.unsupported:  # single publish answers, one per message
            self.plain[seq] = _text(error) if error is not None else _single(reply)
            self.done = len(self.plain) >= self.size
        elif kind == "ack":  # a flow ack: messages up to its seq are stored
            self.started = True
            self.stored = max(self.stored, min(self.size, _int(reply.get("seq"))))
        elif kind == "gap":  # the server found a hole; its final ack follows
            pass
        elif "batch" in reply:  # the final publish ack: the batch ended with ``count`` stored
            count = min(self.size, _int(reply.get("count")))
            self.stored = max(self.stored, count)
            self.stream = _str(reply.get("stream"))
            self.last_seq = _int(reply.get("seq"))
            if error is not None:
                self._stop(count + 1, _text(error), final=True)
            elif count < self.size:
                self._stop(count + 1, "the server ended the batch early", final=True)
            self.done = True
        elif error is not None:
            if seq == 1 and not self.started:  # the batch never began
                self.refused = isinstance(error, dict) and error.get("err_code") == ERR_DISABLED
                self._stop(1, _text(error), final=True)
            else:  # one message refused: the server ends the batch at it (after the commit, nothing follows)
                self._stop(seq, _text(error), final=seq == self.size)
        elif not self.started:  # a single publish ack: this server has no fast batches
            self.unsupported = True
            self.plain[seq] = _single(reply)

    def _stop(self, seq: int, text: str, *, final: bool) -> None:
        """Message ``seq`` was not stored, for ``text``; ``final``: no reply will follow."""
        if self.error_at is None or seq < self.error_at[0]:
            self.error_at = (seq, text)
        if final:
            self.done = True


def _int(value: object) -> int:
    return value if type(value) is int and value >= 0 else 0


def _single(reply: dict[str, object]) -> tuple[str, int, bool]:
    return _str(reply.get("stream")), _int(reply.get("seq")), reply.get("duplicate") is True


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _text(error: object) -> str:
    if isinstance(error, dict):
        return str(error.get("description") or error)
    return str(error)


def parse_reply_subject(subject: str, prefix: str) -> tuple[str, int] | None:
    """``(batch id, seq)`` of a fast-batch reply subject under ``prefix``, or None."""
    if not subject.startswith(prefix) or not subject.endswith("." + SUFFIX):
        return None
    parts = subject[len(prefix) :].split(".")
    if len(parts) != 6 or not parts[3].isdigit():
        return None
    return parts[0], int(parts[3])
