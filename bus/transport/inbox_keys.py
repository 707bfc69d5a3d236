"""The node's inbox key keeper: runs the ring's schedule (``bus.inbox``) and publishes.

As the node starts and then every hour (``schemas/INBOX.md`` 3): make an inbox key when
one is due and **write the ring file before publishing it** (a key published but not kept
would be sealed to and never open), put every still-valid key of the ring in the
directory bucket under ``inbox.<office>.<kid>`` (skipping keys that already hold the
same bytes), apply them to the node's own directory with its clock as witness time, and
erase the secrets the schedule says. Publishing that fails (the bus is down) is retried
sooner; nothing is lost, the ring holds the items.

The ring file is ``keys/inbox.keys`` (0600), encrypted under the identity's encryption
secret. ``box_keys`` is the ring's live mapping of key pairs: what the node's opener and
feed keyring open with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import nacl.utils

from bus import errors
from bus.directory import Directory
from bus.ids import Rng
from bus.inbox import InboxRing, StillNeeded
from bus.keys import BoxKeyPair, Identity
from bus.keystore import read_secret, write_private_file
from bus.transport.client import JetStreamContext
from bus.transport.kv import wall_ms
from bus.transport.kv_directory import open_bucket, publish_item

log = logging.getLogger("bus.inbox")
RING_FILE = "inbox.keys"
#: How often the schedule runs (a key is due every 7 days; an hour is soon enough).
RUN_EVERY_S = 3600.0
#: How soon a failed publish is tried again.
RETRY_S = 30.0


def load_ring(path: Path, identity: Identity) -> InboxRing:
    """The ring in ``path``, or an empty one when there is no file yet; ``KeyStoreError``
    when the file is damaged or not this identity's."""
    try:
        data = read_secret(path, "inbox key ring")
    except FileNotFoundError:
        return InboxRing(identity)
    except OSError as exc:
        raise errors.KeyStoreError(f"cannot read the inbox key ring {path}: {exc.strerror}") from None
    return InboxRing.from_bytes(data, identity)


class InboxKeyKeeper:
    """One node's inbox keys: the ring (loaded at once), its schedule, its publishing.

    ``still_needed`` (settable: the feed keyring's answer) keeps a key's secret past its
    keeping time; ``on_change`` is called after keys were made or erased (the node hands
    the new ``box_keys`` on)."""

    def __init__(
        self,
        identity: Identity,
        directory: Directory,
        path: Path,
        *,
        clock: Callable[[], int] = wall_ms,
        rng: Rng = nacl.utils.random,
        still_needed: StillNeeded | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.identity = identity
        self.directory = directory
        self.path = path
        self.clock = clock
        self.rng = rng
        self.still_needed = still_needed
        self.on_change = on_change
        self.ring = load_ring(path, identity)

    @property
    def box_keys(self) -> Mapping[bytes, BoxKeyPair]:
        """Every inbox key pair held, by key id (live: follows rotation and erasure)."""
        return self.ring.box_keys

    def _save(self) -> None:
        write_private_file(self.path, self.ring.to_bytes(self.rng))

    def refresh(self) -> list[bytes]:
        """The local part of one run: make a key if due (saved at once), erase what is
        expired (saved), apply the still-valid keys to the directory. Returns the items to
        publish."""
        now = self.clock()
        changed = False
        if self.ring.due(now):
            key = self.ring.make(now, self.rng)
            self._save()
            changed = True
            log.info("made inbox key %s, valid until %s", key.kid.hex(), key.item.valid_until)
        gone = self.ring.erase(now, self.still_needed)
        if gone:
            self._save()
            changed = True
            log.info("erased the secrets of inbox keys %s", ", ".join(k.kid.hex() for k in gone))
        items = self.ring.published(now)
        for raw in items:
            try:
                self.directory.apply(raw, witnessed_at=now)
            except errors.DirectoryError as exc:  # e.g. its signing key revoked: publish it anyway, say why
                log.warning("this node's own inbox key is refused by its directory (%s): %s", exc.reason, exc.message)
            except Exception:  # a change listener failed; the directory took the item
                log.exception("a directory change listener failed on this node's inbox key")
        if changed and self.on_change is not None:
            self.on_change()
        return items

    async def publish(self, js: JetStreamContext, items: list[bytes]) -> list[str]:
        """Put ``items`` in the directory bucket (keys already holding them are skipped)."""
        kv = await open_bucket(js)
        return [await publish_item(kv, raw) for raw in items]

    async def run(self, js: JetStreamContext, going: Callable[[], bool], *, check_s: float = 1.0) -> None:
        """Refresh and publish now, then every ``RUN_EVERY_S`` (``RETRY_S`` after a failed
        publish), while ``going()`` (checked every ``check_s``)."""
        while going():
            items = self.refresh()
            try:
                await self.publish(js, items)
                wait = RUN_EVERY_S
            except errors.BloError as exc:
                log.warning("cannot publish this node's inbox keys yet (%s); trying again in %d s", exc.message, RETRY_S)
                wait = RETRY_S
            waited = 0.0
            while waited < wait and going():
                await asyncio.sleep(check_s)
                waited += check_s
