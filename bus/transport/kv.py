"""What the two signed-item buckets (the directory, the feed keys) share: opening a JetStream
KV bucket, putting an item under its key, the node's local file of verified items, and
the watcher that keeps a node's verified state in step with the bucket.

Every item is handed on with its **witness time** (schemas/TRUST.md 2.1): the time the
server stored the entry, never later than the node's clock plus the allowed skew, so the
owner judges it by a time its signer could not choose. For the same reason an item is
never put again under a key that already holds the same bytes: the re-put would be
stored, and judged, later.

Only the carrying is shared. What an item is, which key it belongs under and whether it
is trusted stay with each bucket's own module (``kv_directory``, ``kv_feeds``); every
nats-py failure here becomes the same ``bus.errors`` answer for both.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from bus import errors
from bus.keystore import write_private_file
from bus.timing import wall_ms, witness_time
from bus.transport.client import JetStreamContext, KeyValue, KeyValueEntry
from bus.transport.nats_errors import NatsError, NotFound, nats_errors


async def open_kv(
    js: JetStreamContext, bucket: str, *, create: bool, what: str, who_creates: str, description: str
) -> KeyValue:
    """The bucket; ``create=True`` makes it when missing (history 1: every item has its
    own key and is never updated in place). ``what`` names it in messages ("directory")."""
    with nats_errors(f"open the {what} bucket {bucket!r}"):
        try:
            return await js.key_value(bucket)
        except NotFound:
            if not create:
                raise errors.NotConnected(
                    f"the {what} bucket {bucket!r} does not exist yet on this NATS server: {who_creates}"
                ) from None
            return await js.create_key_value(bucket=bucket, history=1, description=description)


async def put_item(kv: KeyValue, key: str, data: bytes, *, what: str) -> str:
    """Put one signed item under ``key``, unless the bucket holds these very bytes there
    already (a re-put would be stored, and judged by receivers, at a later time: TRUST.md
    2.1); returns the key."""
    with nats_errors(f"publish {what} item {key} (publish it again)", timeout=errors.PublishUnconfirmed):
        try:
            current = await kv.get(key)
        except NotFound:
            current = None
        if current is None or current.value != data:
            await kv.put(key, data)
    return key


def stored_ms(entry: KeyValueEntry) -> int | None:
    """When the server stored a KV entry (its JetStream timestamp), in whole ms; None when
    nats-py did not give one."""
    created = entry.created
    if not isinstance(created, datetime.datetime):
        return None
    # Integer arithmetic on the timedelta (microseconds), not float seconds: no rounding up.
    return (created - _UNIX_EPOCH) // datetime.timedelta(milliseconds=1)


_UNIX_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class SignedItemsFile:
    """A node's local copy of verified signed items: the exact bytes, as JSON, mode 0600.

    Read back unverified: the owner re-verifies every item while loading, so a tampered
    file is caught the way a tampered bucket is. ``damaged`` builds the error for a file
    that cannot be read (the bucket's own error class, reason ``cache_damaged``).
    """

    def __init__(self, path: Path, *, format: str, what: str, damaged: Callable[[str, str], errors.BloError]) -> None:
        self.path = path
        self.format = format
        self.what = what
        self._damaged = damaged

    def write(self, items: Iterable[bytes]) -> None:
        encoded = [base64.b64encode(raw).decode() for raw in items]
        write_private_file(self.path, json.dumps({"format": self.format, "items": encoded}, indent=0).encode())

    def read(self) -> list[bytes]:
        """The stored items (unverified); empty when there is no file yet."""
        return [self._decoded(x) for x in self._items(str)]

    def write_witnessed(self, items: Iterable[tuple[bytes, int]]) -> None:
        """Write each item with its witness time (TRUST.md 2.1, item 3):
        ``{"format", "items": [{"item": base64, "witnessed_at": ms}, ...]}``."""
        encoded = [{"item": base64.b64encode(raw).decode(), "witnessed_at": w} for raw, w in items]
        write_private_file(self.path, json.dumps({"format": self.format, "items": encoded}, indent=0).encode())

    def read_witnessed(self) -> list[tuple[bytes, int]]:
        """The stored items with their witness times (unverified); empty when there is no file."""
        out = []
        for entry in self._items(dict):
            w = entry.get("witnessed_at")
            if set(entry) != {"item", "witnessed_at"} or type(w) is not int or not 0 <= w < 1 << 48:
                raise self._unreadable("an item is not {item, witnessed_at}")
            out.append((self._decoded(entry["item"]), w))
        return out

    def _items(self, kind: type) -> list[Any]:
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return []
        except (ValueError, OSError, RecursionError) as exc:
            raise self._unreadable(str(exc)) from None
        if type(doc) is not dict or doc.get("format") != self.format or type(doc.get("items")) is not list:
            raise self._unreadable(f"not a {self.format} file")
        if not all(type(x) is kind for x in doc["items"]):
            raise self._unreadable(f"not a {self.format} file")
        return doc["items"]

    def _decoded(self, text: Any) -> bytes:
        try:
            return base64.b64decode(text, validate=True)
        except (ValueError, TypeError) as exc:
            raise self._unreadable(str(exc)) from None

    def _unreadable(self, problem: str) -> errors.BloError:
        return self._damaged(
            f"{self.path}: the local {self.what} copy is unreadable ({problem}); move it aside and the node "
            "will rebuild it from the bus",
            "cache_damaged",
        )


class _Cache(Protocol):
    path: Path

    def save(self, target: Any) -> None: ...

    def load_into(self, target: Any, metrics: Any = None) -> int: ...


T = TypeVar("T")


class SignedItemsWatcher(Generic[T]):
    """Keeps ``target`` (a ``Directory``, a ``FeedKeyring``) in step with a bucket, and its
    local copy in step with it.

    ``start`` loads the local copy, then every entry of the bucket under ``filters``, then
    keeps watching in background tasks until ``stop``. Refused entries are logged and
    counted; they never stop the watch. A bucket's module says, by overriding the three
    methods at the end, which filters it watches, which key an item belongs under, and
    how an item is applied (and its outcome logged and counted).
    """

    #: Names the bucket in messages and logs: "directory", "feed".
    what = "signed"
    #: Why a deletion in the bucket is ignored, for the log line.
    deleted_note = "nothing held is removed"

    def __init__(
        self,
        js: JetStreamContext,
        target: T,
        *,
        bucket: str,
        cache: _Cache | None,
        metrics: Any,
        create_bucket: bool,
        open_bucket: Callable[..., Any],
        log: logging.Logger,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.js = js
        #: this node's clock (ms): bounds the witness time of every entry (TRUST.md 2.3)
        self.clock = clock
        self.target = target
        self.bucket = bucket
        self.cache = cache
        self.metrics = metrics
        self.create_bucket = create_bucket
        self.ready = asyncio.Event()
        self._open_bucket = open_bucket
        self._log = log
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._watchers: list[Any] = []
        self._loaded: set[str] = set()
        self._dirty = False

    async def start(self, *, timeout: float = 10.0) -> None:
        """Load the local copy and the bucket; return once the bucket's current content is applied."""
        if self.cache is not None:
            self.cache.load_into(self.target, self.metrics)
        kv = await self._open_bucket(self.js, self.bucket, create=self.create_bucket)
        self._started()
        try:
            with nats_errors(f"watch the {self.what} bucket {self.bucket!r}"):
                for pattern in self.filters:
                    self._watchers.append(await kv.watch(pattern))
        except errors.BusError:
            await self.stop()
            raise
        self._tasks = [
            asyncio.create_task(self._run(pattern, w), name=f"{self.what}-watcher-{pattern}")
            for pattern, w in zip(self.filters, self._watchers, strict=True)
        ]
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except TimeoutError:
            await self.stop()
            raise errors.NotConnected(f"the {self.what} bucket did not finish loading within {timeout} s") from None

    async def watch_while(
        self,
        going: Callable[[], bool],
        *,
        check_s: float = 1.0,
        started: Callable[[], Awaitable[None]] | None = None,
        tick: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``start``, then watch while ``going()`` (checked every ``check_s``, after which
        ``tick`` runs), then ``stop``. A bucket that is not there yet is logged and waited
        for a little; the caller's loop (reconnects) calls this again."""
        try:
            await self.start(timeout=10.0)
        except errors.BloError as exc:
            self._log.info("%s bucket not available yet (%s); the local copy is used", self.what, exc.message)
            await asyncio.sleep(5 * check_s)
            return
        try:
            if started is not None:
                await started()
            while going():
                await asyncio.sleep(check_s)
                if tick is not None:
                    await tick()
        finally:
            await self.stop()

    async def stop(self) -> None:
        self._stopped()
        for watcher in self._watchers:
            with contextlib.suppress(NatsError):
                await watcher.stop()
        self._watchers = []
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._loaded.clear()
        self.ready.clear()
        self._save()

    async def wait_until(self, condition: Callable[[T], bool], timeout: float) -> None:
        """Wait until ``condition(target)`` holds (checked after every change)."""

        async def waiting() -> None:
            while not condition(self.target):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(waiting(), timeout)

    def _note_change(self) -> None:
        """The target changed: save it when caught up, wake those waiting."""
        self._dirty = True
        self._changed.set()

    async def _run(self, pattern: str, watcher: Any) -> None:
        async for entry in watcher:
            if entry is None:  # nats-py's marker: the current content under this filter is delivered
                self._loaded.add(pattern)
                if self._loaded >= set(self.filters):
                    self._save()
                    self.ready.set()
                continue
            self._handle(entry)
            if self.ready.is_set() and entry.delta == 0:  # caught up: persist now, not per entry of a burst
                self._save()

    def _handle(self, entry: KeyValueEntry) -> None:
        where = f"{self.bucket}/{entry.key}"
        if entry.operation in ("DEL", "PURGE"):
            self._log.warning("%s entry %s was deleted in the bucket; ignored (%s)", self.what, where, self.deleted_note)
            self.metrics.rejected.labels(reason="deleted").inc()
            return
        raw = entry.value or b""
        expected = self._key_of(raw) or entry.key  # undecodable: let _apply refuse it with its own reason
        if expected != entry.key:
            self._log.warning("%s entry %s ignored (misplaced): its content belongs under %s", self.what, where, expected)
            self.metrics.rejected.labels(reason="misplaced").inc()
            return
        if self._apply(raw, where, witness_time(stored_ms(entry), self.clock())) is not None:
            self._note_change()

    def _save(self) -> None:
        if self.cache is not None and self._dirty:
            try:
                self.cache.save(self.target)
            except OSError as exc:
                self._log.warning("cannot write the local %s copy %s: %s", self.what, self.cache.path, exc.strerror)
                return
            self._dirty = False

    # -- what each bucket says -----------------------------------------------------------

    @property
    def filters(self) -> tuple[str, ...]:
        """The key filters watched (default: every key)."""
        return (">",)

    def _key_of(self, raw: bytes) -> str | None:
        """The key ``raw`` belongs under, or None when it does not even decode."""
        raise NotImplementedError

    def _apply(self, raw: bytes, where: str, witnessed_at: int) -> object | None:
        """Apply one item, which the server stored at ``witnessed_at`` (its witness time,
        TRUST.md 2.1), to the target, logging and counting; None when refused."""
        raise NotImplementedError

    def _started(self) -> None:
        """Called as the watch starts (before the bucket's content is read)."""

    def _stopped(self) -> None:
        """Called as the watch stops."""
