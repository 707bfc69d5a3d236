"""Every use of nats-py's private attributes or undocumented behaviour, each beside the
plain public-API way of doing the same thing.

Three shortcuts, all on the path of every bulletin (``bench bus``: the client's cost of a
publish, an ack and a fetched message roughly halves with them):

* **writing a block of protocol** (``write_publishes``, ``write_acks``): a window of
  ``HPUB`` commands, or a batch of empty ``PUB`` acks, built in one pass and handed to the
  connection's write buffer at once (``Client._send_command``, ``_flush_pending``,
  ``_flush_queue``, ``Msg._client``, ``Msg._ackd``). Plain: ``Client.publish`` and
  ``Msg.ack`` one by one (the callers do this when these return False);
* **direct delivery** (``subscribe_direct``): a subscription whose messages nats-py
  hands, as it parses them, to an object standing in for the future of its
  ``subscribe(future=...)`` (nats-py's own request/reply path), skipping the queue and
  task every callback subscription costs. Plain: ``subscribe(cb=...)``.

nats-py 2.16 (the range pyproject.toml pins) is read for each. A check at import sees
that the private things are there and look as expected; if one is not, the plain path is
taken everywhere and that is logged once. ``BLO_NATS_PLAIN=1`` in the environment, or
``use_private(False)``, forces the plain path; the test suite runs the key bus tests
both ways (tests/test_bus_plain_nats.py).
"""

from __future__ import annotations

import inspect
import logging
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

log = logging.getLogger("blo.bus.client")

# What must not appear in a subject or header value written straight to the protocol.
_UNSAFE = re.compile(r"[\s\x00]")


def _private_problem() -> str | None:
    """Why nats-py's private things are not as this module expects, or None when they are."""
    for name in ("_send_command", "_flush_pending"):
        if not inspect.iscoroutinefunction(getattr(NatsClient, name, None)):
            return f"Client.{name} is not a coroutine function"
    try:
        subscribe = inspect.signature(NatsClient.subscribe).parameters
    except (TypeError, ValueError):
        return "Client.subscribe has no readable signature"
    if "future" not in subscribe or "cb" not in subscribe:
        return "Client.subscribe takes no future="
    fields = getattr(Msg, "__dataclass_fields__", {})
    if "_client" not in fields or "_ackd" not in fields:
        return "Msg has no _client/_ackd fields"
    return None


_PROBLEM = _private_problem()
if _PROBLEM is not None:
    log.warning("nats-py is not the version this node was tested with (%s): using its public API only", _PROBLEM)
_private = _PROBLEM is None and os.environ.get("BLO_NATS_PLAIN", "") in ("", "0")


def use_private(on: bool) -> bool:
    """Switch the private shortcuts on or off (they stay off where nats-py lacks them);
    returns whether they are now on. For tests and benchmarks."""
    global _private
    _private = bool(on) and _PROBLEM is None
    return _private


def private_in_use() -> bool:
    return _private


def _writer(nc: Any) -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    """The connection's write-buffer calls, or None where they are not to be used."""
    if not _private:
        return None
    send = getattr(nc, "_send_command", None)
    flush = getattr(nc, "_flush_pending", None)
    if send is None or flush is None or not nc.is_connected:
        return None
    return send, flush


async def _write(nc: Any, send: Callable[..., Any], flush: Callable[..., Any], block: bytes) -> None:
    await send(block)
    # nats-py flushes once per burst: only when no flush is already queued.
    flush_queue = getattr(nc, "_flush_queue", None)
    if flush_queue is None or flush_queue.empty():
        await flush()


def _count_out(nc: Any, msgs: int, nbytes: int) -> None:
    """Keep the connection's public ``stats`` as its own ``publish`` would."""
    stats = getattr(nc, "stats", None)
    if isinstance(stats, dict):
        stats["out_msgs"] = stats.get("out_msgs", 0) + msgs
        stats["out_bytes"] = stats.get("out_bytes", 0) + nbytes


async def write_publishes(nc: NatsClient, items: Sequence[tuple[str, bytes, str]], replies: Sequence[str]) -> bool:
    """Put ``(subject, payload, msg id)`` items on the connection as one block of ``HPUB``
    commands, each with its reply subject: what ``Client.publish`` writes for each, built
    in one pass instead of one coroutine, header dict and subject check per message. False,
    with nothing written, on the plain path, or for an item the one-by-one path must
    judge (odd characters, too large for the server); the caller then publishes them one
    by one. Raises nats-py's link-down errors as ``Client.publish`` does.

    The subjects and ids come from ``subjects.py`` (checked tokens, no spaces); what is
    checked here is only what would corrupt the protocol if it were wrong."""
    writer = _writer(nc)
    if writer is None:
        return False
    max_payload = nc.max_payload
    for subject, payload, msg_id in items:
        if len(payload) + len(msg_id) + 32 > max_payload or _UNSAFE.search(subject) or _UNSAFE.search(msg_id):
            return False
    parts: list[bytes] = []
    for (subject, payload, msg_id), reply in zip(items, replies, strict=True):
        hdr = b"NATS/1.0\r\nNats-Msg-Id: %b\r\n\r\n" % msg_id.encode()
        parts.append(
            b"HPUB %b %b %d %d\r\n%b%b\r\n" % (subject.encode(), reply.encode(), len(hdr), len(hdr) + len(payload), hdr, payload)
        )
    _count_out(nc, len(items), sum(len(p) for _, p, _ in items))
    await _write(nc, *writer, b"".join(parts))
    return True


async def write_acks(msgs: Sequence[Msg]) -> bool:
    """What ``Msg.ack`` writes for each message (an empty publish to its reply subject),
    built in one pass and written at once; False, with nothing written, on the plain path
    or for anything the one-by-one path must judge (already acked, no reply subject, odd
    characters, another connection)."""
    if not msgs:
        return True
    nc = getattr(msgs[0], "_client", None)
    writer = _writer(nc)
    if writer is None:
        return False
    parts = []
    for msg in msgs:
        reply = msg.reply
        if msg._client is not nc or msg._ackd or not reply or _UNSAFE.search(reply):
            return False
        parts.append(b"PUB %b 0\r\n\r\n" % reply.encode())
    await _write(nc, *writer, b"".join(parts))
    for msg in msgs:
        msg._ackd = True
    _count_out(nc, len(msgs), 0)
    return True


class _Direct:
    """Stands in for the future of ``subscribe(future=...)``: nats-py calls its
    ``set_result`` with each message as it parses it, as long as ``cancelled()`` is False,
    so ``deliver`` runs right away, without a queue or a task. ``deliver`` must be quick
    and never raise into nats-py's read loop (what it raises is logged)."""

    __slots__ = ("_deliver",)

    def __init__(self, deliver: Callable[[Msg], None]) -> None:
        self._deliver = deliver

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return False

    def set_result(self, msg: Msg) -> None:
        try:
            self._deliver(msg)
        except Exception:  # a bug here must not stop the connection reading
            log.exception("handling a message on %s failed", msg.subject)


async def subscribe_direct(nc: NatsClient, subject: str, deliver: Callable[[Msg], None]) -> Any:
    """Subscribe ``subject``, handing each message to ``deliver`` (quick, not awaited);
    returns nats-py's subscription (``unsubscribe``, ``pending_msgs``). Plain path: a
    callback subscription, one queue and one task between the parser and ``deliver``."""
    if _private:
        return await nc.subscribe(subject, future=_Direct(deliver))  # type: ignore[arg-type]

    async def handler(msg: Msg) -> None:
        try:
            deliver(msg)
        except Exception:  # as on the direct path: logged, the subscription goes on
            log.exception("handling a message on %s failed", msg.subject)

    return await nc.subscribe(subject, cb=handler)


__all__ = ["private_in_use", "subscribe_direct", "use_private", "write_acks", "write_publishes"]
