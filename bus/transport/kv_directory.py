"""Carrying the signed directory over NATS: a JetStream KV bucket, a watcher, a local copy.

The bucket is only a carrier. Every value is re-verified by ``bus.directory.Directory``
on arrival; what does not verify is ignored, logged (``logging.warning``) and counted in
``blo_directory_rejected_total{reason=...}``, and the node keeps what it already trusts.
A deletion in the bucket removes nothing from a node either: only a signed revocation
takes trust away, so someone who can write to the bucket can at worst hold back news.
A centre repairs a damaged bucket by republishing its verified copy
(``blo directory publish``): the values are the same signed bytes, so it is idempotent.

Keys (one per signed item, so rotations and revocations never overwrite each other)::

    record.<country>.<office>.<signing kid hex>     e.g. record.TH.TH-MUK.0f3a...
    revocation.<office>.<revoked kid hex>
    inbox.<office>.<inbox key kid hex>               written by the office's own node

A value stored under a key that does not match its content is refused as ``misplaced``.
Every value is judged with its witness time, the entry's stored time (schemas/TRUST.md);
so publishing never puts a key again when it already holds the same bytes.

Every node keeps a verified local copy on disk (``DirectoryCache``, JSON of the signed
bytes, each with its witness time), loads it before touching the network and re-verifies
it while loading, so a node starts and opens bulletins with the bus down, and a tampered
cache file is caught the same way a tampered bucket is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from bus import errors
from bus.directory import Change, Directory, DirectoryRecord, Revocation, SignedItem, decode_item
from bus.transport.client import JetStreamContext, KeyValue
from bus.transport.kv import SignedItemsFile, SignedItemsWatcher, open_kv, put_item, wall_ms

BUCKET = "blo_directory"
CACHE_FORMAT = "blo-directory-cache/v2"
log = logging.getLogger("bus.directory")


def kv_key(item: SignedItem) -> str:
    """The bucket key a signed item lives under."""
    i = item.item
    if isinstance(i, DirectoryRecord):
        return f"record.{i.country}.{i.office_id}.{i.sign_kid.hex()}"
    if isinstance(i, Revocation):
        return f"revocation.{i.office_id}.{i.kid.hex()}"
    return f"inbox.{i.office_id}.{i.box_kid.hex()}"


def inbox_key_filter(office_id: str) -> str:
    """The bucket keys an office's own node may put (and its NATS user is allowed):
    ``inbox.<office>.*``."""
    return f"inbox.{office_id}.*"


class DirectoryMetrics:
    """The directory's Prometheus metrics on one registry (default: the process's)."""

    _shared: ClassVar[dict[int, DirectoryMetrics]] = {}

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rejected = Counter(
            "blo_directory_rejected",
            "Directory items refused (did not verify or chain to a pinned centre)",
            ["reason"],
            registry=registry,
        )
        self.applied = Counter("blo_directory_applied", "Directory changes accepted", ["status"], registry=registry)
        self.waiting = Gauge(
            "blo_directory_waiting", "Inbox keys held until their office's record arrives", registry=registry
        )

    @classmethod
    def default(cls) -> DirectoryMetrics:
        found = cls._shared.get(id(REGISTRY))
        if found is None:
            found = cls._shared[id(REGISTRY)] = cls(REGISTRY)
        return found


# -- the local copy --------------------------------------------------------------------


class DirectoryCache(SignedItemsFile):
    """The node's verified copy of the directory on disk: the signed bytes with their
    witness times, as JSON (DIRECTORY.md 7)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, format=CACHE_FORMAT, what="directory", damaged=errors.DirectoryError)

    def save(self, directory: Directory) -> None:
        self.write_witnessed((h.raw, h.witnessed_at) for h in directory.held_items())

    def load_into(self, directory: Directory, metrics: DirectoryMetrics | None = None) -> int:
        """Apply every stored item to ``directory``, re-verifying it with its stored witness
        time; returns how many were accepted. Items that no longer verify are skipped,
        logged and counted."""
        accepted = 0
        for raw, witnessed_at in self.read_witnessed():
            if _apply(directory, raw, f"{self.path.name}", metrics, witnessed_at) is not None:
                accepted += 1
        return accepted


def _apply(directory: Directory, raw: bytes, where: str, metrics: DirectoryMetrics | None, witnessed_at: int) -> Any:
    try:
        change = directory.apply(raw, witnessed_at=witnessed_at)
    except errors.DirectoryError as exc:
        _refused(exc, where, metrics)
        return None
    except Exception:  # a change listener failed; the directory itself took the item
        log.exception("a directory change listener failed on an item from %s", where)
        return True
    if change is not None:
        _count(change, where, metrics)
    if metrics is not None:
        metrics.waiting.set(directory.waiting)
    return change


def _refused(exc: errors.DirectoryError, where: str, metrics: DirectoryMetrics | None) -> None:
    log.warning("directory item from %s ignored (%s): %s", where, exc.reason, exc.message)
    if metrics is not None:
        metrics.rejected.labels(reason=exc.reason).inc()


def _count(change: Change, where: str, metrics: DirectoryMetrics | None) -> None:
    if metrics is not None:
        metrics.applied.labels(status=change.status).inc()
    for released in change.released:  # inbox keys that waited for this record
        if released.error is not None:
            _refused(released.error, f"{where} (released by the record of {change.office_id})", metrics)
        elif metrics is not None:
            metrics.applied.labels(status=released.status).inc()


# -- the bucket ------------------------------------------------------------------------


async def open_bucket(js: JetStreamContext, bucket: str = BUCKET, *, create: bool = False) -> KeyValue:
    """The directory bucket; ``create=True`` (a centre) makes it when missing."""
    return await open_kv(
        js, bucket, create=create, what="directory",
        who_creates="a centre creates it when it first publishes (blo directory publish)",
        description="BLO Bus signed directory",
    )  # fmt: skip


async def publish_item(kv: KeyValue, data: bytes) -> str:
    """Put one signed item in the bucket under its key; returns the key.

    The item is decoded first so a node can never publish something malformed; trust is
    for the receivers to judge. A key that already holds these bytes is not put again
    (the re-put would be stored, and judged, later)."""
    return await put_item(kv, kv_key(decode_item(data)), data, what="directory")


async def publish_all(kv: KeyValue, directory: Directory) -> list[str]:
    """Republish every item ``directory`` holds (a centre's repair of a damaged bucket):
    only the keys that are missing or differ are put."""
    return [await publish_item(kv, s.raw) for s in directory.signed_items()]


class DirectoryWatcher(SignedItemsWatcher[Directory]):
    """Keeps a ``Directory`` in step with the bucket and the local copy in step with it
    (see ``SignedItemsWatcher``): every key is watched."""

    what = "directory"
    deleted_note = "only a signed revocation removes trust"

    def __init__(
        self,
        js: JetStreamContext,
        directory: Directory,
        *,
        bucket: str = BUCKET,
        cache: DirectoryCache | None = None,
        metrics: DirectoryMetrics | None = None,
        create_bucket: bool = False,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        super().__init__(
            js, directory, bucket=bucket, cache=cache, metrics=metrics or DirectoryMetrics.default(),
            create_bucket=create_bucket, open_bucket=open_bucket, log=log, clock=clock,
        )  # fmt: skip
        self.directory = directory

    def _key_of(self, raw: bytes) -> str | None:
        try:
            return kv_key(decode_item(raw))
        except errors.DirectoryError:
            return None

    def _apply(self, raw: bytes, where: str, witnessed_at: int) -> object | None:
        return _apply(self.directory, raw, where, self.metrics, witnessed_at)
