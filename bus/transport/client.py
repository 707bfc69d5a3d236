"""The NATS connection: connect, publish with an ack, pull from consumers.

The face of the NATS boundary: with its two helpers, ``nats_errors`` (the one
translation of nats-py's exceptions into ``bus.errors``) and ``nats_private`` (every use
of nats-py's private attributes, each beside its public-API way, switchable), the only
modules that import nats-py (tests/test_nats_fence.py pins it). The modules that speak
nats-py's public KV, Object Store and stream API (``kv``, ``object_store``,
``provision``) take its types from here (``KeyValue``, ``StreamConfig``, ...) and its
errors through ``nats_errors``. Three sibling modules rather than a package of them:
``bus.transport.client`` is imported under that name across the tree, and a boundary
that is one file plus two named helpers is as easy to fence as a folder.

It speaks in this project's terms (``StreamSpec``, ``ConsumerSpec``, ``bus.errors``):

* connecting never blocks the caller: ``start`` returns at once and the connection is
  made (and remade, forever) in the background, because an office must be able to post
  while its link is down (the outbox keeps the bulletins);
* a publish without an ack in time is ``PublishUnconfirmed``: the server may have
  stored it, so the caller re-sends with the same ``Nats-Msg-Id``;
* a permission violation is reported by nats-py only to ``error_cb``, while the denied
  publish or consumer request just times out; the client remembers recent violations
  and turns the timeout into ``PermissionDenied`` naming the subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import re
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    ExternalStream,
    StorageType,
    StreamConfig,
    StreamSource,
)
from nats.js.kv import KeyValue

from bus.errors import BusError, ConfigError, NoStream, NotConnected, PermissionDenied, PublishUnconfirmed
from bus.transport.cursor import INACTIVE_S
from bus.transport.fast_batch import NO_STREAM, FastBatch, parse_reply_subject
from bus.transport.nats_errors import LINK_DOWN, BadRequest, NatsError, NotFound, bus_error, nats_errors
from bus.transport.nats_private import subscribe_direct, write_acks, write_publishes
from bus.transport.subjects import ConsumerSpec, StreamSpec

log = logging.getLogger("blo.bus.client")

#: nats-py's types that other modules name (a KV bucket and its entries, a received
#: message, the JetStream context, stream settings), re-exported so that nothing outside
#: this boundary imports nats-py. Their methods are nats-py's public API.
KeyValueEntry = KeyValue.Entry
__all__ = [
    "DiscardPolicy", "ExternalStream", "JetStreamContext", "KeyValue", "KeyValueEntry", "Msg", "StorageType",
    "StreamConfig", "StreamSource",
]  # fmt: skip
_VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "?([^"\s]+)"?', re.IGNORECASE)
#: How long a liveness probe's PING may wait for its PONG before nats-py gives up on it
#: (the watch judges much sooner, without cancelling it: see ``_watch_liveness``).
_PROBE_PATIENCE_S = 3600


def _retrieve(future: asyncio.Future[None]) -> None:
    """A probe's outcome, read so that a failed one (the link dropped) is not reported as
    an exception never retrieved."""
    if not future.cancelled():
        future.exception()


#: What a server says when it does not accept this node's credentials (nkey, creds, user
#: removed or expired).
_REFUSED = re.compile(r"authorization violation|authentication (expired|revoked|timeout)|user authentication", re.IGNORECASE)
# How long a reported violation explains a later timeout on the same subject.
_VIOLATION_MEMORY_S = 60.0


@dataclass(frozen=True)
class ClientConfig:
    """How to reach NATS. Mirrors ``[nats]`` in node.toml (see ``from_settings``)."""

    urls: tuple[str, ...]
    creds: Path | None = None  # a .creds file (user JWT + nkey seed)
    nkey_seed: Path | None = None  # a file holding an nkey user seed (SU...)
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_hostname: str | None = None
    name: str = "blo-bus"
    connect_timeout_s: float = 2.0
    reconnect_wait_s: float = 0.5
    publish_timeout_s: float = 5.0
    #: How often a connected client asks the server for a PONG (``BusClient.stalled``), and
    #: how long it waits: a server frozen (SIGSTOP, a hung VM) keeps the TCP link open and
    #: answers nothing, which only this notices before nats-py's own pings (minutes).
    liveness_every_s: float = 5.0
    liveness_timeout_s: float = 3.0
    # Deployment on restricted users (deploy/, DEPLOY.md): each office's NATS user may
    # subscribe only below its own inbox prefix (``_INBOX.<OFFICE>``), and a node behind
    # its office leaf node reaches the hub's streams in the hub's JetStream domain.
    inbox_prefix: str | None = None
    jetstream_domain: str | None = None

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> ClientConfig:
        """From any object with the fields of ``office_node.config.NatsSettings``."""
        fields = {k: getattr(settings, k) for k in ("urls", "creds", "nkey_seed", "tls_ca", "tls_cert", "tls_key")}
        fields["urls"] = tuple(fields["urls"])
        for key in ("inbox_prefix", "jetstream_domain"):  # optional in the settings
            if getattr(settings, key, None):
                fields[key] = getattr(settings, key)
        return cls(**{**fields, **overrides})

    def check(self) -> None:
        """ConfigError for anything that would only fail later inside the reconnect loop."""
        if not self.urls:
            raise ConfigError("nats.urls: give at least one server URL, or none at all for the embedded server")
        for url in self.urls:
            if "://" not in url:
                raise ConfigError(f"nats.urls: {url!r} is not a URL such as nats://10.0.0.5:4222")
        if self.creds and self.nkey_seed:
            raise ConfigError("nats: set creds or nkey_seed, not both")
        for key in ("creds", "nkey_seed", "tls_ca", "tls_cert", "tls_key"):
            path = getattr(self, key)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"nats.{key}: {path} is not a readable file")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("nats: tls_cert and tls_key go together (a client certificate and its key)")

    def signin_options(self) -> dict[str, Any]:
        """The ``nats.connect`` keyword arguments that say who this is and how the link is
        protected (credentials, TLS, inbox prefix). One place, so the daemon and one-shot
        commands (``blo directory publish``) sign in alike."""
        kwargs: dict[str, Any] = {}
        if self.creds:
            kwargs["user_credentials"] = str(self.creds)
        if self.nkey_seed:
            kwargs["nkeys_seed"] = str(self.nkey_seed)
        if self.inbox_prefix:
            kwargs["inbox_prefix"] = self.inbox_prefix
        tls = self.tls_context()
        if tls is not None:
            kwargs["tls"] = tls
            if self.tls_hostname:
                kwargs["tls_hostname"] = self.tls_hostname
        return kwargs

    def tls_context(self) -> ssl.SSLContext | None:
        if not (self.tls_ca or self.tls_cert):
            return None
        try:
            ctx = ssl.create_default_context(cafile=str(self.tls_ca) if self.tls_ca else None)
            if self.tls_cert:
                ctx.load_cert_chain(str(self.tls_cert), str(self.tls_key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"nats: cannot load the TLS files: {exc}") from exc
        return ctx


def stream_config(spec: StreamSpec, *, sources: list[Any] | None = None) -> StreamConfig:
    """The JetStream configuration of a stream of the layout: file storage, limits
    retention, discard old (schemas/SUBJECTS.md), fast batches allowed (see
    ``fast_batch``), and ``sources`` when it sources others (a hub's streams sourcing
    office leaf outboxes, bus/transport/provision.py)."""
    # A server older than 2.14 ignores the setting; a nats-py without it cannot send it,
    # and then the stream refuses batches and the client publishes one by one.
    extra = {"allow_batched": True} if "allow_batched" in StreamConfig.__dataclass_fields__ else {}
    return StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        storage=StorageType.FILE,
        max_age=spec.max_age_s,
        max_bytes=spec.max_bytes,
        max_msg_size=spec.max_msg_size,
        duplicate_window=spec.duplicate_window_s,
        discard=DiscardPolicy.OLD,
        num_replicas=spec.replicas,
        max_msgs_per_subject=spec.max_msgs_per_subject,
        max_consumers=spec.max_consumers,
        sources=sources or None,
        **extra,
    )


@dataclass(frozen=True, slots=True)
class Ack:
    """JetStream stored a message (or had it already, ``duplicate``). ``seq`` is its
    stream sequence; 0 for a message stored as part of a fast batch, whose ack reports
    the batch (see ``fast_batch``)."""

    stream: str
    seq: int
    duplicate: bool


class _Window:
    """The replies one ``publish_batch`` waits for: reply subjects ``<prefix><base + i>``,
    answers filled in by index, one future completed by the last of them."""

    __slots__ = ("base", "done", "left", "replies")

    def __init__(self, base: int, n: int, done: asyncio.Future[None]) -> None:
        self.base = base
        self.replies: list[Msg | None] = [None] * n
        self.left = n
        self.done = done

    def answered(self, index: int, msg: Msg) -> None:
        if self.replies[index] is None:
            self.replies[index] = msg
            self.left -= 1
            if self.left <= 0 and not self.done.done():
                self.done.set_result(None)

    def given_up(self, index: int) -> None:
        """This item will get no reply (it was never sent): stop waiting for it."""
        self.left -= 1
        if self.left <= 0 and not self.done.done():
            self.done.set_result(None)


class _Acks:
    """Replies to this client's JetStream publishes: one wildcard subscription on a private
    inbox; each publish names a fresh reply subject under it, mapped to its window and
    place there (one future per window, not one per message), or to its fast batch
    (``<prefix><batch id>....$FI``, see ``fast_batch``)."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self._prefix = nc.new_inbox() + "."
        self._waiting: dict[str, tuple[_Window, int]] = {}
        self._count = 0
        #: batch id -> the batch and the future its end completes
        self._batches: dict[str, tuple[FastBatch, asyncio.Future[None]]] = {}
        self._batch_ids = 0
        # Batch ids must not meet another client's on the same stream: the inbox's own
        # unique token, and a count.
        self._batch_token = self._prefix.rstrip(".").rpartition(".")[2][-40:]

    async def start(self) -> None:
        await subscribe_direct(self.nc, self._prefix + ">", self._arrived)

    def _arrived(self, msg: Msg) -> None:
        entry = self._waiting.pop(msg.subject, None)
        if entry is not None:
            entry[0].answered(entry[1], msg)
            return
        found = parse_reply_subject(msg.subject, self._prefix)
        if found is None:
            return
        waiting = self._batches.get(found[0])
        if waiting is None:
            return
        batch, done = waiting
        no_responders = bool(msg.headers) and msg.headers.get("Status") == "503"
        batch.on_reply(found[1], msg.data, no_responders=no_responders)
        if batch.done and not done.done():
            done.set_result(None)

    def batch(self, size: int) -> tuple[FastBatch, asyncio.Future[None], list[str]]:
        """A fast batch of ``size`` messages, the future its end completes, and the reply
        subject of each message in order. The batch asks the server to ack once per
        batch: the pump's windows bound what is in flight, as they do for single acks."""
        self._batch_ids += 1
        batch = FastBatch(f"{self._batch_token}{self._batch_ids}", size, size)
        done = asyncio.get_running_loop().create_future()
        self._batches[batch.batch_id] = (batch, done)
        return batch, done, [batch.reply(self._prefix, seq) for seq in range(1, size + 1)]

    def forget_batch(self, batch: FastBatch) -> None:
        self._batches.pop(batch.batch_id, None)

    def window(self, n: int) -> tuple[_Window, list[str]]:
        """A window of ``n`` publishes and their reply subjects, in order."""
        base = self._count + 1
        self._count += n
        window = _Window(base, n, asyncio.get_running_loop().create_future())
        prefix, waiting = self._prefix, self._waiting
        replies = []
        for i in range(n):
            reply = f"{prefix}{base + i}"
            waiting[reply] = (window, i)
            replies.append(reply)
        return window, replies

    def forget(self, window: _Window) -> None:
        """Stop waiting for the window's unanswered replies (late ones are then ignored)."""
        for i, msg in enumerate(window.replies):
            if msg is None:
                self._waiting.pop(f"{self._prefix}{window.base + i}", None)


# JetStream's usual ack, read without the JSON parser (a third of the client's cost of
# an ack); anything else (errors, other fields, other spacing) takes json.loads.
_PLAIN_ACK = re.compile(rb'\{"stream":"([A-Za-z0-9_-]+)",(?:"domain":"[A-Za-z0-9_-]*",)?"seq":(\d+)(,"duplicate":true)?\}')


def _ack_of(msg: Msg, subject: str, msg_id: str) -> Ack | BusError:
    """JetStream's reply to a publish, as an Ack or the BusError it states."""
    if msg.headers and msg.headers.get("Status") == "503":  # no responders: no stream has the subject
        return NoStream(subject)
    plain = _PLAIN_ACK.fullmatch(msg.data)
    if plain is not None:
        return Ack(plain.group(1).decode(), int(plain.group(2)), plain.group(3) is not None)
    try:
        reply = json.loads(msg.data)
        if "error" in reply:
            error = reply["error"]
            text = error.get("description") or error if isinstance(error, dict) else error
            return BusError(f"JetStream refused {msg_id} on {subject}: {text}")
        return Ack(reply["stream"], int(reply["seq"]), bool(reply.get("duplicate")))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return BusError(f"publishing {msg_id} failed: JetStream's ack was unreadable ({exc!r})")


def _batch_result(batch: FastBatch, seq: int, subject: str, msg_id: str) -> Ack | BusError | None:
    """What ``batch`` says of its message ``seq``, or None where it says nothing."""
    if batch.unsupported:  # answered as a single publish, or not at all
        answer = batch.plain.get(seq)
        if answer == NO_STREAM:
            return NoStream(subject)
        if isinstance(answer, str):
            return BusError(f"JetStream refused {msg_id} on {subject}: {answer}")
        return None if answer is None else Ack(*answer)
    if seq <= batch.stored:
        return Ack(batch.stream, batch.last_seq if seq == batch.size else 0, False)
    return None


class _Round:
    """The reply subjects of one round of ``publish_batch``: a fast batch per group of
    items (``groups``: a stream's key and its items' places), a window of single
    publishes for the others."""

    __slots__ = ("batches", "replies", "single", "where", "window")

    def __init__(self, acks: _Acks, items: Sequence[Any], groups: list[tuple[str, list[int]]]) -> None:
        replies = [""] * len(items)
        self.batches: list[tuple[str, list[int], FastBatch, asyncio.Future[None]]] = []
        for key, idx in groups:
            batch, ended, batch_replies = acks.batch(len(idx))
            self.batches.append((key, idx, batch, ended))
            for i, reply in zip(idx, batch_replies, strict=True):
                replies[i] = reply
        self.single = [i for i, reply in enumerate(replies) if not reply]
        self.window, single_replies = acks.window(len(self.single))
        self.where = {}  # item -> its place in the window of single publishes
        for place, (i, reply) in enumerate(zip(self.single, single_replies, strict=True)):
            replies[i] = reply
            self.where[i] = place
        self.replies = replies

    def given_up(self, i: int) -> None:
        """Item ``i`` was never sent: wait for no reply to it."""
        if i in self.where:
            self.window.given_up(self.where[i])

    def waits(self) -> list[asyncio.Future[None]]:
        waits = [ended for _, _, batch, ended in self.batches if not batch.done]
        if self.window.left > 0:
            waits.append(self.window.done)
        return waits

    def forget(self, acks: _Acks) -> None:
        acks.forget(self.window)
        for _, _, batch, _ in self.batches:
            acks.forget_batch(batch)


#: A window's items to one stream go as a fast batch from this many on (fewer: single
#: publishes, which cost no more for a few and need no second round when refused).
FAST_BATCH_MIN = 8

#: Event names passed to the listener: connected, disconnected, reconnected, closed,
#: error, permission_denied. The second argument is a human-readable detail.
Listener = Callable[[str, str], None]


class BusClient:
    def __init__(self, config: ClientConfig, *, listener: Listener | None = None) -> None:
        config.check()
        self.config = config
        self._listener = listener
        self._nc: NatsClient | None = None
        self._js: Any = None
        self._up = asyncio.Event()
        self._connect_task: asyncio.Task[None] | None = None
        self._violations: deque[tuple[float, str, str]] = deque(maxlen=64)
        self._acks: _Acks | None = None
        self._acks_lock = asyncio.Lock()
        #: fast batches (fast_batch): off once the server showed it has none (until a
        #: reconnect), and never for the streams (by subject prefix) that refused them
        #: (until the streams are ensured again)
        self._batching = True
        self._unbatched: set[str] = set()
        self.last_error: str | None = None
        #: The server did not answer the last liveness probe in time (see ``stalled``).
        self._stalled = False
        self._liveness_task: asyncio.Task[None] | None = None
        #: The server refused this node's credentials (the last time it said anything).
        self.credentials_refused = False

    # -- connection ------------------------------------------------------------------

    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        if self._connect_task is None:
            self._connect_task = asyncio.create_task(self._connect(), name="blo-bus-connect")

    async def _connect(self) -> None:
        c = self.config
        kwargs = c.signin_options()
        try:
            nc = await nats.connect(
                servers=list(c.urls),
                name=c.name,
                allow_reconnect=True,
                max_reconnect_attempts=-1,  # never give up: the outbox waits for the link
                reconnect_time_wait=c.reconnect_wait_s,
                connect_timeout=c.connect_timeout_s,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                closed_cb=self._on_closed,
                **kwargs,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # nats-py gives up only on errors retrying cannot fix
            self.last_error = f"cannot connect to {', '.join(c.urls)}: {exc}"
            if _REFUSED.search(str(exc)):
                self.credentials_refused = True
                self.last_error = (
                    f"this node's NATS credentials were refused by {', '.join(c.urls)} ({exc}): the operator removed "
                    "or changed its NATS user, or its seed or creds file is not the one the server knows"
                )
            log.error("%s", self.last_error)
            self._emit("error", self.last_error)
            return
        self._nc = nc
        self._js = nc.jetstream(timeout=c.publish_timeout_s, domain=c.jetstream_domain)
        self.credentials_refused = False
        self._up.set()
        self._emit("connected", nc.connected_url.netloc if nc.connected_url else "")
        self._liveness_task = asyncio.create_task(self._watch_liveness(), name="blo-bus-liveness")

    async def _watch_liveness(self) -> None:
        """Probe the server while connected: a PING whose PONG has not come back within
        ``liveness_timeout_s``, with nothing else heard from the server meanwhile, makes
        the link ``stalled`` (said once, and once when it answers again), however long
        the TCP connection stays open.

        The probe is never cancelled: nats-py's own ``flush(timeout)`` cancels its PONG
        future on a timeout and then fails on the late PONG (an InvalidStateError in its
        reader, which drops the connection), so the probe waits as long as it takes and
        the watch only looks at how long that is. On a slow link with a backlog the PONG
        queues behind the data, but the acks keep coming (``stats["in_msgs"]``): not stalled.
        """
        c = self.config
        probe: asyncio.Future[None] | None = None
        sent_at, heard = 0.0, 0
        try:
            while True:
                await asyncio.sleep(c.liveness_every_s)
                nc = self._nc
                if nc is None or not nc.is_connected:
                    continue
                if probe is None or probe.done():
                    if probe is not None and self._stalled and probe.exception() is None:
                        self._stalled = False
                        log.warning("the NATS server answers again")
                        self._emit("resumed", "")
                    probe = asyncio.ensure_future(nc.flush(timeout=_PROBE_PATIENCE_S))
                    probe.add_done_callback(_retrieve)
                    sent_at, heard = time.monotonic(), nc.stats["in_msgs"]
                    continue
                if nc.stats["in_msgs"] != heard:  # the server is talking: busy, not frozen
                    sent_at, heard = time.monotonic(), nc.stats["in_msgs"]
                elif not self._stalled and time.monotonic() - sent_at > c.liveness_timeout_s:
                    self._stalled = True
                    log.warning("the NATS server does not answer (stalled); the outbox keeps what is posted")
                    self._emit("stalled", f"no answer from the server in {c.liveness_timeout_s:.0f} s")
        finally:
            if probe is not None and not probe.done():
                probe.cancel()

    @property
    def stalled(self) -> bool:
        """Connected, but the server did not answer the last liveness probe in time."""
        return self.connected and self._stalled

    def _emit(self, event: str, detail: str) -> None:
        if self._listener is not None:
            try:
                self._listener(event, detail)
            except Exception:  # a listener's bug must not break the connection callbacks
                log.exception("bus event listener failed on %s", event)

    async def _on_error(self, exc: Exception) -> None:
        text = str(exc)
        m = _VIOLATION.search(text)
        if m:
            self._violations.append((time.monotonic(), m.group(2), text))
            log.error("NATS refused: %s", text)
            self._emit("permission_denied", text)
            return
        self.last_error = text or type(exc).__name__
        if _REFUSED.search(text):
            self.credentials_refused = True
            self.last_error = (
                f"this node's NATS credentials were refused by the server ({text}): the operator removed or changed "
                "its NATS user, or its seed or creds file is not the one the server knows (blo deploy nats-auth)"
            )
            log.error("%s", self.last_error)
            self._emit("credentials_refused", self.last_error)
            return
        log.debug("NATS error: %r", exc)
        self._emit("error", self.last_error)

    async def _on_disconnected(self) -> None:
        self._up.clear()
        self._emit("disconnected", "")

    async def _on_reconnected(self) -> None:
        self._batching = True  # perhaps another (or an upgraded) server: try batches again
        self._unbatched.clear()
        self._up.set()
        self._emit("reconnected", "")

    async def _on_closed(self) -> None:
        self._up.clear()
        self._emit("closed", "")

    @property
    def connected(self) -> bool:
        return self._up.is_set() and self._nc is not None and self._nc.is_connected

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """True once connected; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Flush what is buffered and close. Safe to call twice."""
        if self._liveness_task is not None:
            self._liveness_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._liveness_task
            self._liveness_task = None
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connect_task
        nc, self._nc = self._nc, None
        self._up.clear()
        if nc is not None and not nc.is_closed:
            with contextlib.suppress(Exception):
                if nc.is_connected:
                    await asyncio.wait_for(nc.flush(), 2.0)
            with contextlib.suppress(Exception):
                await nc.close()

    def _require(self) -> Any:
        if not self.connected:
            raise NotConnected("not connected to NATS right now; the outbox keeps what was posted")
        return self._js

    def jetstream(self) -> Any:
        """nats-py's JetStream context, for the KV watchers (directory, feed keys) that
        speak nats-py's KV API directly. NotConnected while the link is down."""
        return self._require()

    @property
    def api_prefix(self) -> str:
        """The JetStream API subjects' prefix this client's requests go to: ``$JS.API``, or
        ``$JS.<domain>.API`` across a leaf node (the subjects a permission names)."""
        domain = self.config.jetstream_domain
        return "$JS.API" if domain is None else f"$JS.{domain}.API"

    def violation_for(self, subject: str, since: float) -> str | None:
        """The server's refusal text if it reported one for ``subject`` since ``since`` (monotonic)."""
        for at, denied, text in reversed(self._violations):
            if at < since - _VIOLATION_MEMORY_S:
                break
            # nats-py lowercases the server's error text, so compare without case.
            if _subject_matches(denied.lower(), subject.lower()):
                return text
        return None

    def _timeout_error(self, subject: str, msg_id: str, since: float, timeout: float) -> BusError:
        refused = self.violation_for(subject, since)
        if refused is not None:
            return PermissionDenied(
                f"the NATS server refused to let this node publish to {subject} ({refused}); "
                "its NATS user lacks that permission: fix the account's permissions or the recipient"
            )
        return PublishUnconfirmed(
            f"no ack from JetStream for {msg_id} on {subject} within {timeout:g} s: it may or may not be "
            "stored; it will be re-sent with the same id"
        )

    # -- streams ---------------------------------------------------------------------

    async def ensure_streams(self, specs: Sequence[StreamSpec]) -> None:
        """Create the streams, or bring their limits up to ``specs``."""
        js = self._require()
        self._unbatched.clear()  # they take fast batches now, if the server has them
        for spec in specs:
            config = stream_config(spec)
            with nats_errors(
                f"create stream {spec.name}", denied=self.violation_for, asked=(f"{self.api_prefix}.STREAM.CREATE.{spec.name}",)
            ):
                try:
                    await js.add_stream(config)
                except BadRequest:  # exists with other limits
                    await js.update_stream(config)

    # -- publishing ------------------------------------------------------------------

    async def publish(self, subject: str, payload: bytes, msg_id: str, *, timeout: float | None = None) -> Ack:
        """Publish and wait for JetStream's ack."""
        js = self._require()
        timeout = timeout or self.config.publish_timeout_s
        started = time.monotonic()
        with nats_errors(
            f"publish {msg_id} on {subject}",
            timeout=lambda _: self._timeout_error(subject, msg_id, started, timeout),
            no_stream=subject,
        ):
            ack = await js.publish(subject, payload, timeout=timeout, headers={"Nats-Msg-Id": msg_id})
        return Ack(ack.stream, ack.seq, bool(ack.duplicate))

    async def publish_batch(
        self, items: Sequence[tuple[str, bytes, str]], *, timeout: float | None = None
    ) -> list[Ack | BusError]:
        """Publish ``(subject, payload, msg_id)`` items pipelined, in order on the wire; one
        result per item: its ack or the BusError it met.

        The items bound for one stream go as one fast batch (``fast_batch``) when there
        are ``FAST_BATCH_MIN`` or more and the stream takes batches: the server acks the
        batch, not each message. The others are single publishes, each acked by
        JetStream on its reply subject. Rather than nats-py's ``publish_async`` (a
        semaphore, a fresh random token and a reply parsed into a dataclass per message:
        most of the client's cost of a publish), each names a reply subject under one
        inbox subscription of this client, and the window waits on one future that its
        last reply completes. The whole window is written as one block of protocol (see
        ``nats_private.write_publishes``), so it goes out in a few writes, in order, without yielding."""
        return await self._publish_window(items, timeout or self.config.publish_timeout_s, batching=self._batching)

    async def _publish_window(
        self, items: Sequence[tuple[str, bytes, str]], timeout: float, *, batching: bool
    ) -> list[Ack | BusError]:
        """One result per item. What a fast batch left unanswered (it ended before them:
        the stream refused one of its messages, or takes no batches) goes again one by
        one, in a second round, so each meets its own answer and one refused message holds
        back no other."""
        results: list[Ack | BusError | None] = [None] * len(items)
        todo = list(range(len(items)))
        while todo:
            answered = await self._publish_round([items[i] for i in todo], timeout, batching=batching)
            for i, result in zip(todo, answered, strict=True):
                results[i] = result
            todo = [i for i, result in zip(todo, answered, strict=True) if result is None]
            batching = False
        return results  # type: ignore[return-value]

    async def _publish_round(
        self, items: Sequence[tuple[str, bytes, str]], timeout: float, *, batching: bool
    ) -> list[Ack | BusError | None]:
        """Send ``items`` as one window (fast batches and single publishes) and wait up to
        ``timeout`` for the answers: one result per item, None for a batch item to send again."""
        self._require()
        nc = self._nc
        assert nc is not None
        acks = await self._acks_for(nc)
        started = time.monotonic()
        plan = _Round(acks, items, self._batch_groups(items) if batching else [])
        unsent = await self._send_round(nc, items, plan)
        try:
            if waits := plan.waits():
                await asyncio.wait(waits, timeout=max(0.0, started + timeout - time.monotonic()))
        finally:
            plan.forget(acks)

        def timed_out(i: int) -> BusError:
            return unsent.get(i) or self._timeout_error(items[i][0], items[i][2], started, timeout)

        results: list[Ack | BusError | None] = [None] * len(items)
        for i, msg in zip(plan.single, plan.window.replies, strict=True):
            results[i] = timed_out(i) if msg is None else _ack_of(msg, items[i][0], items[i][2])
        for key, idx, batch, _ in plan.batches:
            self._learn_from(key, batch)
            for seq, i in enumerate(idx, 1):
                result = _batch_result(batch, seq, items[i][0], items[i][2])
                if result is None and (i in unsent or not batch.done):  # else: the batch ended before it
                    result = timed_out(i)
                results[i] = result
        return results

    def _batch_groups(self, items: Sequence[tuple[str, bytes, str]]) -> list[tuple[str, list[int]]]:
        """The items to send as fast batches: per stream, in order, where a stream has
        ``FAST_BATCH_MIN`` or more and takes batches. (The first two subject tokens name
        the stream in every layout of subjects.py and topology.py.)"""
        by_stream: dict[str, list[int]] = {}
        for i, (subject, _, _) in enumerate(items):
            by_stream.setdefault(".".join(subject.split(".", 2)[:2]), []).append(i)
        return [(k, idx) for k, idx in by_stream.items() if len(idx) >= FAST_BATCH_MIN and k not in self._unbatched]

    def _learn_from(self, key: str, batch: FastBatch) -> None:
        if batch.refused:  # the stream takes no batches (until its streams are ensured again)
            self._unbatched.add(key)
        if batch.unsupported:  # the server takes no batches (until a reconnect)
            self._batching = False

    async def _send_round(self, nc: NatsClient, items: Sequence[tuple[str, bytes, str]], plan: _Round) -> dict[int, BusError]:
        """Write the round's window whole (``nats_private.write_publishes``) or, where that
        declines, publish one by one; the items that were never sent, with why."""
        try:
            if await write_publishes(nc, items, plan.replies):
                return {}
        except LINK_DOWN:  # what was buffered goes out on reconnect, or times out unacked
            return {}
        unsent: dict[int, BusError] = {}
        for i, ((subject, payload, msg_id), reply) in enumerate(zip(items, plan.replies, strict=True)):
            try:
                await nc.publish(subject, payload, reply=reply, headers={"Nats-Msg-Id": msg_id})
            except NatsError as exc:  # the link dropped; too large for the server; a bad subject
                unsent[i] = bus_error(exc, f"send {msg_id} on {subject}") or BusError(str(exc))
                plan.given_up(i)
        return unsent

    async def _acks_for(self, nc: NatsClient) -> _Acks:
        """This connection's ack inbox (subscribed once; nats-py keeps it across reconnects)."""
        async with self._acks_lock:  # windows in flight share it: subscribe once
            acks = self._acks
            if acks is None or acks.nc is not nc:
                acks = _Acks(nc)
                await acks.start()
                self._acks = acks
        return acks

    async def publish_raw(self, subject: str, payload: bytes) -> None:
        """Core NATS publish with no ack and no dedup id: tests use it to put arbitrary bytes
        on a subject as a hostile peer would."""
        self._require()
        assert self._nc is not None
        await self._nc.publish(subject, payload)
        await self._nc.flush()

    # -- consuming -------------------------------------------------------------------

    async def delete_consumer(self, spec: ConsumerSpec) -> None:
        """Remove the consumer ``spec`` from the server (gone already: fine)."""
        js = self._require()
        with nats_errors(f"delete consumer {spec.durable}"), contextlib.suppress(NotFound):
            await js.delete_consumer(spec.stream, spec.durable)

    async def pull(
        self,
        spec: ConsumerSpec,
        *,
        restart_ns: int | None = None,
        ack_wait_s: float = 30.0,
        max_ack_pending: int = 2000,
    ) -> PullConsumer:
        """Bind to (creating if needed) the pull consumer ``spec``. One created now starts
        at the stored time ``restart_ns`` if given (an ephemeral consumer's cursor), else
        at ``spec.start_ms``, else at the stream's first message."""
        js = self._require()
        assert self._nc is not None
        if restart_ns is not None:  # floored to the microsecond: never after the message it names
            start = _EPOCH + datetime.timedelta(microseconds=restart_ns // 1000)
        elif spec.start_ms is not None:
            start = datetime.datetime.fromtimestamp(spec.start_ms / 1000, datetime.UTC)
        else:
            start = None
        config = ConsumerConfig(
            name=spec.durable,
            durable_name=None if spec.ephemeral else spec.durable,
            deliver_policy=DeliverPolicy.ALL if start is None else DeliverPolicy.BY_START_TIME,
            opt_start_time=start,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_deliver=-1,  # never give up on a message: quarantine, not the server, decides
            max_ack_pending=max_ack_pending,
            filter_subject=spec.filter_subject,
        )
        if spec.ephemeral:  # held only while read: one replica, in memory (cursor.py)
            config.inactive_threshold = INACTIVE_S
            config.num_replicas = 1
            config.mem_storage = True
        api = self.api_prefix
        asked = (
            f"{api}.CONSUMER.CREATE.{spec.stream}.{spec.durable}.{spec.filter_subject}",
            f"{api}.CONSUMER.INFO.{spec.stream}.{spec.durable}",
        )
        created = False
        with nats_errors(f"use consumer {spec.durable}", denied=self.violation_for, asked=asked):
            try:
                await js.consumer_info(spec.stream, spec.durable)
            except NotFound:
                await js.add_consumer(spec.stream, config=config)
                created = True
            inbox = self._nc.new_inbox()
            replies = _Replies()
            sub = await subscribe_direct(self._nc, inbox, replies.put)
        return PullConsumer(
            self._nc, spec, sub, inbox, f"{api}.CONSUMER.MSG.NEXT.{spec.stream}.{spec.durable}", replies, created=created
        )


class _Replies:
    """Where a pull consumer's inbox delivers: a local queue that nats-py fills as it
    parses each message (``nats_private.subscribe_direct``). (nats-py's ``next_msg`` starts a task and a
    ``wait_for`` for every message, more than half the client-side cost of receiving
    one.) Only messages that answer our own pull requests arrive here, so the requests
    bound it."""

    def __init__(self) -> None:
        self._queue: deque[Msg] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, msg: Msg) -> None:
        self._queue.append(msg)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self, timeout: float) -> Msg | None:
        """The next message, or None once ``timeout`` passed with none."""
        if not self._queue:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(max(0.0, timeout), lambda: waiter.done() or waiter.set_result(None))
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
            if not self._queue:
                return None
        return self._queue.popleft()


class PullConsumer:
    """One bound durable pull consumer.

    nats-py's own batched ``fetch`` holds its request open until the whole batch is
    filled or the timeout passes, which would delay a lone FLASH by the timeout. So the
    pull protocol is spoken directly: park with a one-message request (returns the
    moment a message is stored), then drain what else is there with one ``no_wait``
    request. A backlog moves in batches; a single message moves in one round trip.
    Replies arrive through the subscription's callback into a local queue (``_Replies``).
    """

    def __init__(
        self,
        nc: NatsClient,
        spec: ConsumerSpec,
        sub: Any,
        inbox: str,
        next_subject: str,
        replies: _Replies,
        *,
        created: bool = False,
    ) -> None:
        self.spec = spec
        self._nc = nc
        self._sub = sub
        self._inbox = inbox
        self._next = next_subject
        self._replies = replies
        self._fetching: list[Msg] = []  # what the fetch in progress collected so far
        self.created = created  # made by this bind (not found on the server)

    def arrived(self) -> int:
        """Messages (and status replies) that reached this consumer but are not yet in the
        hands of its caller: the precedence gate asks, so that a FLASH already on the wire
        holds lower precedences back before it is even fetched."""
        # (On the direct path nothing waits in the subscription itself: nats-py hands each
        # message over as it parses it, nats_private.subscribe_direct.)
        return len(self._replies) + len(self._fetching) + self._sub.pending_msgs

    async def _request(self, batch: int, *, wait_s: float | None) -> None:
        req: dict[str, Any] = {"batch": batch}
        if wait_s is None:
            req["no_wait"] = True
        else:
            req["expires"] = int(wait_s * 1e9)
        await self._nc.publish(self._next, json.dumps(req).encode(), reply=self._inbox)

    async def _collect(self, limit: int, timeout: float, into: list[Msg]) -> None:
        """Read replies to one request: messages until ``limit``, a status, or ``timeout``."""
        deadline = time.monotonic() + timeout
        replies = self._replies
        while len(into) < limit:
            msg = await replies.get(max(0.001, deadline - time.monotonic()))
            if msg is None:
                if self._nc.is_closed:
                    raise NotConnected(f"the connection closed while fetching from {self.spec.durable}")
                return
            status = msg.headers.get("Status") if msg.headers else None
            if status is None:
                into.append(msg)
            elif status in ("404", "408"):  # no messages / request expired: this request is done
                return
            elif status == "100":  # idle heartbeat
                continue
            elif status == "409" and "Consumer Deleted" in (msg.headers.get("Description") or ""):
                raise BusError(f"consumer {self.spec.durable} was deleted on the server; it will be recreated")
            elif status == "503":  # no responders: the consumer is not on any server now
                raise BusError(f"consumer {self.spec.durable} is not on the server (a hub restart?); it will be recreated")
            else:  # other 409s (e.g. max waiting): end this round, the next one asks again
                return

    async def fetch(self, batch: int, wait_s: float) -> list[Msg]:
        """Up to ``batch`` messages; waits up to ``wait_s`` for the first one, never for more."""
        msgs: list[Msg] = []
        self._fetching = msgs
        try:
            await self._request(1, wait_s=wait_s)
            await self._collect(1, wait_s + 1.0, msgs)
            if msgs and batch > 1:
                await self._request(batch - 1, wait_s=None)
                await self._collect(batch, 2.0, msgs)
        except (NatsError, NotConnected) as exc:
            if not msgs:  # else hand over what came: the rest is fetched again
                raise (exc if isinstance(exc, BusError) else bus_error(exc, f"fetch from {self.spec.durable}")) from exc
        finally:
            self._fetching = []
        return msgs

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()


@contextlib.asynccontextmanager
async def one_shot_jetstream(
    url: str, *, timeout: float = 5.0, signin: dict[str, Any] | None = None, domain: str | None = None
) -> AsyncIterator[JetStreamContext]:
    """A JetStream context on a connection of its own, for one-shot commands (``blo
    directory publish``, the demo's setup): connect once, with no reconnecting (a command
    reports the failure rather than waiting), closed on leaving. ``signin``: the
    ``ClientConfig.signin_options`` of the node's settings. ``NotConnected`` when the
    server cannot be reached within ``timeout``."""

    async def quiet(exc: Exception) -> None:  # the failure is reported once, below, not as a traceback
        return None

    try:
        # max_reconnect_attempts=0 would mean "retry forever" in nats-py's server selection.
        connecting = nats.connect(
            url,
            connect_timeout=min(timeout, 5.0),
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            error_cb=quiet,
            **(signin or {}),
        )
        nc = await asyncio.wait_for(connecting, timeout)
    except (OSError, NatsError, TimeoutError) as exc:
        raise NotConnected(f"cannot reach NATS at {url}: {exc or type(exc).__name__}") from None
    try:
        yield nc.jetstream(domain=domain)
    finally:
        with contextlib.suppress(NatsError):
            await nc.close()


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _ack_fields(reply: str | None) -> tuple[str, str] | None:
    """The ``(stream sequence, stored ns)`` tokens of an acknowledgement subject (the layouts
    ``stored_at_ms`` gives), unchecked; None when ``reply`` is not one."""
    if not reply or not reply.startswith("$JS.ACK."):
        return None
    tokens = reply.split(".")
    if len(tokens) == 9:
        return tokens[5], tokens[7]
    if len(tokens) in (11, 12):
        return tokens[7], tokens[9]
    return None


def stream_position(reply: str | None) -> tuple[int, int] | None:
    """``(stream sequence, stored ns)`` of a delivered message, from its acknowledgement
    subject (the layouts ``stored_at_ms`` reads); None when ``reply`` is not one."""
    fields = _ack_fields(reply)
    if fields is None or not (fields[0].isdigit() and fields[1].isdigit()):
        return None
    return int(fields[0]), int(fields[1])


def stored_at_ms(reply: str | None) -> int | None:
    """When JetStream stored a message, from its acknowledgement subject, in whole ms; None
    when ``reply`` is not one. The subject is the JetStream protocol's, not a nats-py detail:
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>`` (9 tokens), or
    ``$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>[.<token>]``
    (11 or 12 tokens). The stored time is the witness time of schemas/TRUST.md 2.1."""
    fields = _ack_fields(reply)
    return int(fields[1]) // 1_000_000 if fields is not None and fields[1].isdigit() else None


async def ack(msg: Msg) -> bool:
    """Ack one message; False if the link is down (JetStream will redeliver it; dedupe drops it)."""
    try:
        await msg.ack()
    except NatsError:
        return False
    return True


async def ack_all(msgs: Sequence[Msg]) -> bool:
    """Ack each of ``msgs`` (explicit acks: only these, never a range). The acks go out as
    one block of protocol (``nats_private.write_acks``), or each joins the connection's write buffer,
    so a batch goes out in one write, not one flush per ack. False if the link dropped
    (the unacked ones are redelivered; dedupe drops them)."""
    try:
        if await write_acks(msgs):
            return True
        for msg in msgs:
            await msg.ack()
    except NatsError:
        return False
    return True


async def nak(msg: Msg, delay_s: float) -> None:
    with contextlib.suppress(NatsError):
        await msg.nak(delay=delay_s)


def _subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard match: ``*`` one token, ``>`` the rest."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)
