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

A value stored under a key that does not match its content is refused as ``misplaced``.

Every node keeps a verified local copy on disk (``DirectoryCache``, JSON of the signed
bytes), loads it before touching the network and re-verifies it while loading, so a node
starts and opens bulletins with the bus down, and a tampered cache file is caught the
same way a tampered bucket is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from bus import errors
from bus.directory import Directory, DirectoryRecord, SignedItem, decode_item
from bus.transport.kv import SignedItemsFile, SignedItemsWatcher, open_kv, put_item

BUCKET = "blo_directory"
CACHE_FORMAT = "blo-directory-cache/v1"
log = logging.getLogger("bus.directory")


def kv_key(item: SignedItem) -> str:
    """The bucket key a signed item lives under."""
    i = item.item
    if isinstance(i, DirectoryRecord):
        return f"record.{i.country}.{i.office_id}.{i.sign_kid.hex()}"
    return f"revocation.{i.office_id}.{i.kid.hex()}"


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

    @classmethod
    def default(cls) -> DirectoryMetrics:
        found = cls._shared.get(id(REGISTRY))
        if found is None:
            found = cls._shared[id(REGISTRY)] = cls(REGISTRY)
        return found


# -- the local copy --------------------------------------------------------------------


class DirectoryCache(SignedItemsFile):
    """The node's verified copy of the directory on disk: the signed bytes, as JSON."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, format=CACHE_FORMAT, what="directory", damaged=errors.DirectoryError)

    def save(self, directory: Directory) -> None:
        self.write(s.raw for s in directory.signed_items())

    def load_into(self, directory: Directory, metrics: DirectoryMetrics | None = None) -> int:
        """Apply every stored item to ``directory`` (re-verifying it); returns how many were
        accepted. Items that no longer verify are skipped, logged and counted."""
        accepted = 0
        for raw in self.read():
            if _apply(directory, raw, f"{self.path.name}", metrics) is not None:
                accepted += 1
        return accepted


def _apply(directory: Directory, raw: bytes, where: str, metrics: DirectoryMetrics | None) -> Any:
    try:
        change = directory.apply(raw)
    except errors.DirectoryError as exc:
        log.warning("directory item from %s ignored (%s): %s", where, exc.reason, exc.message)
        if metrics is not None:
            metrics.rejected.labels(reason=exc.reason).inc()
        return None
    except Exception:  # a change listener failed; the directory itself took the item
        log.exception("a directory change listener failed on an item from %s", where)
        return True
    if change is not None and metrics is not None:
        metrics.applied.labels(status=change.status).inc()
    return change


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

    The item is decoded first so a centre can never publish something malformed; trust is
    for the receivers to judge. Putting the same bytes again is harmless.
    """
    return await put_item(kv, kv_key(decode_item(data)), data, what="directory")


async def publish_all(kv: KeyValue, directory: Directory) -> list[str]:
    """Republish every item ``directory`` holds (a centre's repair of a damaged bucket)."""
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
    ) -> None:
        super().__init__(
            js, directory, bucket=bucket, cache=cache, metrics=metrics or DirectoryMetrics.default(),
            create_bucket=create_bucket, open_bucket=open_bucket, log=log,
        )  # fmt: skip
        self.directory = directory

    def _key_of(self, raw: bytes) -> str | None:
        try:
            return kv_key(decode_item(raw))
        except errors.DirectoryError:
            return None

    def _apply(self, raw: bytes, where: str, witnessed_at: int) -> object | None:
        # The witness time is not used here yet: the directory's v2 rules take it (TRUST.md 3).
        return _apply(self.directory, raw, where, self.metrics)
