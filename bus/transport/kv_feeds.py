"""Carrying feed epoch records and key grants over NATS: a JetStream KV bucket, a watcher,
a local copy. The shape of ``bus.transport.kv_directory``, for ``bus.feeds``.

The bucket is only a carrier. Every value is verified by ``bus.feeds.FeedKeyring`` on
arrival; what does not verify is ignored, logged (``logging.warning`` on logger
``bus.feeds``) and counted in ``blo_feed_rejected_total{reason=...}``, and the node keeps
what it already holds. A deletion in the bucket takes nothing away from a node: a member
loses access to later bulletins only through a new epoch that does not name it.

Keys (one per signed item; nothing a member needs is ever overwritten)::

    epoch.<feed>.<epoch>                 e.g. epoch.mekong-border.7
    grant.<member>.<feed>.<epoch>        e.g. grant.LA-SVK.mekong-border.7

The member comes first in a grant's key so that a member watches ``grant.<itself>.>``
only (and a NATS permission can allow exactly that). A re-issued grant (the member's
encryption key rotated) replaces the earlier one under the same key. A value stored under
a key that does not match its content is refused as ``misplaced``.

Every value is judged with its witness time: the time the server stored the KV entry
(the entry's ``created``, clamped by this node's clock, ``bus.timing.witness_time``), never
only by the time its signer wrote into it (schemas/TRUST.md).

Every node keeps a verified local copy (``FeedKeyCache``: the signed records and its own
grants, each with its witness time, JSON, file mode 0600 since grants are wrapped keys),
loads it before touching the network and re-verifies it while loading (with the stored
witness times), so a node opens feed bulletins with the bus down.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from bus import errors
from bus.feeds import EpochRecord, FeedChange, FeedKeyring, Issue, SignedFeedItem, decode_item
from bus.transport.client import JetStreamContext, KeyValue
from bus.transport.kv import SignedItemsFile, SignedItemsWatcher, open_kv, put_item, wall_ms

BUCKET = "blo_feeds"
CACHE_FORMAT = "blo-feed-cache/v2"
log = logging.getLogger("bus.feeds")


def kv_key(item: SignedFeedItem) -> str:
    """The bucket key a signed item lives under."""
    i = item.item
    if isinstance(i, EpochRecord):
        return f"epoch.{i.feed}.{i.epoch}"
    return f"grant.{i.member}.{i.feed}.{i.epoch}"


class FeedMetrics:
    """The feed keyring's Prometheus metrics on one registry (default: the process's)."""

    _shared: ClassVar[dict[int, FeedMetrics]] = {}

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rejected = Counter(
            "blo_feed_rejected",
            "Feed epoch records and grants refused (did not verify, chain or unwrap)",
            ["reason"],
            registry=registry,
        )
        self.applied = Counter("blo_feed_applied", "Feed items accepted, by outcome", ["status"], registry=registry)
        self.waiting = Gauge(
            "blo_feed_waiting",
            "Verified feed items held until their record, predecessor or signer arrives",
            registry=registry,
        )

    @classmethod
    def default(cls) -> FeedMetrics:
        found = cls._shared.get(id(REGISTRY))
        if found is None:
            found = cls._shared[id(REGISTRY)] = cls(REGISTRY)
        return found


def _apply(
    keyring: FeedKeyring, raw: bytes, where: str, witnessed_at: int, metrics: FeedMetrics | None
) -> list[FeedChange] | None:
    """Apply one item stored at ``witnessed_at``, log and count the outcome; None when it was refused."""
    try:
        changes = keyring.apply(raw, witnessed_at=witnessed_at)
    except errors.FeedError as exc:
        log.warning("feed item from %s ignored (%s): %s", where, exc.reason, exc.message)
        if metrics is not None:
            metrics.rejected.labels(reason=exc.reason).inc()
        return None
    except Exception:  # a change listener failed; the keyring itself took the item
        log.exception("a feed key listener failed on an item from %s", where)
        return []
    _count(changes, where, metrics)
    if metrics is not None:
        metrics.waiting.set(keyring.waiting)
    return changes


def _count(changes: list[FeedChange], where: str, metrics: FeedMetrics | None) -> None:
    for change in changes:
        refused = change.status == "refused"
        if change.error is not None:  # refused once released, or dropped after a revocation
            log.warning(
                "feed item (%s epoch %d) %s %s (%s): %s",
                change.feed, change.epoch, "released by" if refused else "dropped after", where,
                change.error.reason, change.error.message,
            )  # fmt: skip
        if metrics is None:
            continue
        if refused and change.error is not None:
            metrics.rejected.labels(reason=change.error.reason).inc()
        else:
            metrics.applied.labels(status=change.status).inc()


# -- the local copy --------------------------------------------------------------------


class FeedKeyCache(SignedItemsFile):
    """The node's verified feed items on disk: the signed bytes, as JSON, mode 0600."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, format=CACHE_FORMAT, what="feed key", damaged=errors.FeedError)

    def save(self, keyring: FeedKeyring) -> None:
        self.write_witnessed(keyring.signed_items())

    def load_into(self, keyring: FeedKeyring, metrics: FeedMetrics | None = None) -> int:
        """Apply every stored item to ``keyring`` (re-verifying it with its stored witness
        time); returns how many were accepted. Items that no longer verify are skipped,
        logged and counted."""
        return sum(
            1 for raw, w in self.read_witnessed() if _apply(keyring, raw, self.path.name, w, metrics) is not None
        )


# -- the bucket ------------------------------------------------------------------------


async def open_bucket(js: JetStreamContext, bucket: str = BUCKET, *, create: bool = False) -> KeyValue:
    """The feed bucket; ``create=True`` (a centre) makes it when missing."""
    return await open_kv(
        js, bucket, create=create, what="feed",
        who_creates="the centre that owns a feed creates it when it publishes the feed's first epoch",
        description="BLO Bus feed epochs and grants",
    )  # fmt: skip


async def publish_item(kv: KeyValue, data: bytes) -> str:
    """Put one signed item in the bucket under its key; returns the key. Putting the same
    bytes again is harmless."""
    return await put_item(kv, kv_key(decode_item(data)), data, what="feed")


async def publish_issue(kv: KeyValue, issue: Issue) -> list[str]:
    """Publish an issue of ``bus.feeds.FeedOwner``: the record, then every grant. Returns the
    keys. Persist the owner's state first; on failure, publish ``owner.regrant(...)`` later."""
    return [await publish_item(kv, item) for item in issue.items()]


class FeedKeyWatcher(SignedItemsWatcher[FeedKeyring]):
    """Keeps a ``FeedKeyring`` in step with the bucket, and the local copy with the keyring
    (see ``SignedItemsWatcher``): every epoch record and every grant for this office. When
    the keyring's resolver has ``add_listener`` (``bus.directory.Directory`` does), items
    held because the directory did not know their signer yet are retried on every
    directory change.
    """

    what = "feed"
    deleted_note = "nothing held is removed"

    def __init__(
        self,
        js: JetStreamContext,
        keyring: FeedKeyring,
        *,
        bucket: str = BUCKET,
        cache: FeedKeyCache | None = None,
        metrics: FeedMetrics | None = None,
        create_bucket: bool = False,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        super().__init__(
            js, keyring, bucket=bucket, cache=cache, metrics=metrics or FeedMetrics.default(),
            create_bucket=create_bucket, open_bucket=open_bucket, log=log, clock=clock,
        )  # fmt: skip
        self.keyring = keyring
        self._listening = False

    @property
    def filters(self) -> tuple[str, ...]:
        """The two key filters watched: every epoch record, and this office's grants."""
        return ("epoch.>", f"grant.{self.keyring.office_id}.>")

    def _key_of(self, raw: bytes) -> str | None:
        try:
            return kv_key(decode_item(raw))
        except errors.FeedError:
            return None

    def _apply(self, raw: bytes, where: str, witnessed_at: int) -> object | None:
        return _apply(self.keyring, raw, where, witnessed_at, self.metrics)

    def _directory_changed(self, change: Any = None) -> None:
        """Directory listener (runs inside ``Directory.apply``): after a revocation, drop what
        the revoked key signed and the server stored after it (FEEDS.md 7.1); then retry
        items held for their signer."""
        revoked = getattr(change, "status", None) == "revoked"
        if not revoked and not self.keyring.waiting:
            return
        try:
            changes = self.keyring.recheck() if revoked else []
            changes += self.keyring.retry_held() if self.keyring.waiting else []
        except Exception:  # a feed key listener failed; never break the directory's apply
            log.exception("a feed key listener failed while judging held feed items again")
            return
        _count(changes, "the directory update", self.metrics)
        self.metrics.waiting.set(self.keyring.waiting)
        if changes:
            self._note_change()

    def _started(self) -> None:
        add = getattr(self.keyring.resolver, "add_listener", None)
        if callable(add) and not self._listening:
            add(self._directory_changed)
            self._listening = True

    def _stopped(self) -> None:
        remove = getattr(self.keyring.resolver, "remove_listener", None)
        if self._listening and callable(remove):
            with contextlib.suppress(ValueError):
                remove(self._directory_changed)
        self._listening = False
