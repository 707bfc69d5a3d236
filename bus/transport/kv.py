"""What the two signed-item buckets (the directory, the feed keys) share: opening a JetStream
KV bucket, putting an item under its key, and the node's local file of verified items.

Only the carrying is shared. What an item is, which key it belongs under and whether it
is trusted stay with each bucket's own module (``kv_directory``, ``kv_feeds``); every
nats-py failure here becomes the same ``bus.errors`` answer for both.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from bus import errors
from bus.keystore import write_private_file


async def open_kv(
    js: JetStreamContext, bucket: str, *, create: bool, what: str, who_creates: str, description: str
) -> KeyValue:
    """The bucket; ``create=True`` makes it when missing (history 1: every item has its
    own key and is never updated in place). ``what`` names it in messages ("directory")."""
    try:
        try:
            return await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            if not create:
                raise errors.NotConnected(
                    f"the {what} bucket {bucket!r} does not exist yet on this NATS server: {who_creates}"
                ) from None
            return await js.create_key_value(bucket=bucket, history=1, description=description)
    except nats.errors.TimeoutError as exc:
        raise errors.NotConnected(f"no answer from JetStream about the {what} bucket {bucket!r}") from exc
    except nats.errors.Error as exc:
        raise errors.BusError(f"cannot open the {what} bucket {bucket!r}: {exc}") from exc


async def put_item(kv: KeyValue, key: str, data: bytes, *, what: str) -> str:
    """Put one signed item under ``key``; returns the key. The same bytes again are harmless."""
    try:
        await kv.put(key, data)
    except nats.errors.TimeoutError as exc:
        raise errors.PublishUnconfirmed(f"no ack for {what} item {key}: publish it again") from exc
    except nats.errors.Error as exc:
        raise errors.BusError(f"cannot publish {what} item {key}: {exc}") from exc
    return key


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
        try:
            doc = json.loads(self.path.read_bytes())
            if type(doc) is not dict or doc.get("format") != self.format or type(doc.get("items")) is not list:
                raise ValueError(f"not a {self.what} cache")
            return [base64.b64decode(x, validate=True) for x in doc["items"]]
        except FileNotFoundError:
            return []
        except (ValueError, TypeError, OSError, RecursionError) as exc:
            raise self._damaged(
                f"{self.path}: the local {self.what} copy is unreadable ({exc}); move it aside and the node "
                "will rebuild it from the bus",
                "cache_damaged",
            ) from None
