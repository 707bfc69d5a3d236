"""Sealed chunks in the JetStream Object Store: buckets, writing and reading chunk objects.

The layout is schemas/ATTACHMENTS.md section 5: one bucket per reader (an office's inbox,
a feed), one object per sealed chunk (``<object id hex>/<index>``), written as the Object
Store writes a one-chunk object (NATS ADR-20: a data message on ``$O.<bucket>.C.<nuid>``,
then its JSON info on ``$O.<bucket>.M.<base64url(name)>`` with a rollup header), so any
NATS tool lists and reads them.

Why not nats-py's ``ObjectStore.put`` and ``get`` for each chunk (they were read, in
nats-py 2.16):

* ``put`` first reads the bucket (``get_info``: a ``STREAM.MSG.GET`` on the bucket's
  stream, whose request body, not its subject, names the message), and ``purge_stream``
  on failure. A sender would need read and purge rights on every recipient's bucket, so
  any office could read every other's objects: the permissions could no longer say "an
  office reads only what is addressed to it". Writing the same two messages with
  ``publish_async`` needs only publish rights on ``$O.<bucket>.>``.
* ``put`` cannot resume: a failure purges what it sent, and a new attempt takes a new
  random nuid. A chunk per object makes every object small enough to send again whole;
  the upload queue (``transfers.py``) records which are acknowledged.
* ``get`` reads an object through an ordered push consumer, from its first message: one
  consumer per chunk, and it cannot take up a download where it stopped. Here the
  object's info is read with nats-py's public ``ObjectStore.get_info`` and its data with
  one direct get of the last message of its chunk subject (``js.get_last_msg``).

Everything nats-py raises is translated into ``bus.errors``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bus.attachments import MAX_SEALED_CHUNK
from bus.errors import AttachmentCorrupt, BusError, NoStream, NotConnected, PermissionDenied, ValidationError
from bus.transport import subjects as sj
from bus.transport.client import BusClient, DiscardPolicy, StorageType, StreamConfig
from bus.transport.nats_errors import BadObjectMeta, BadRequest, NotFound, bus_error, nats_errors

OFFICE_BUCKET_PREFIX = "blo-att-office-"
FEED_BUCKET_PREFIX = "blo-att-feed-"
#: Room for the meta JSON and headers beside the largest sealed chunk.
BUCKET_MAX_MSG_SIZE = MAX_SEALED_CHUNK + 4096
#: A bucket's size limit, which JetStream reserves on every server holding a replica: ten
#: bulletins with the most attachments allowed by default (ATTACHMENTS.md 6). A network
#: reserves this once per office and per feed (``blo deploy streams --bucket-mib``).
DEFAULT_BUCKET_BYTES = 1024**3


def office_bucket(office_id: str) -> str:
    """The bucket an office reads its attachments from: ``blo-att-office-TH-MUK``."""
    return OFFICE_BUCKET_PREFIX + sj.check_office(office_id)


def feed_bucket(feed: str) -> str:
    """The bucket a feed's members read its attachments from: ``blo-att-feed-mekong-border``."""
    return FEED_BUCKET_PREFIX + sj.check_feed(feed)


def bucket_of(recipient: str) -> str:
    """The bucket of an outbox recipient name: an office id, or ``feed:<name>``."""
    return feed_bucket(recipient[5:]) if recipient.startswith("feed:") else office_bucket(recipient)


def bucket_stream(bucket: str) -> str:
    return f"OBJ_{bucket}"


def chunk_nuid(object_hex: str, index: int) -> str:
    return f"{object_hex}-{index}"


def chunk_subject(bucket: str, object_hex: str, index: int) -> str:
    return f"$O.{bucket}.C.{chunk_nuid(object_hex, index)}"


def meta_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


def digest_of(data: bytes) -> str:
    """The Object Store's ``digest`` of an object's data."""
    return "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """One reader's bucket: its retention follows the bulletin streams' (ATTACHMENTS.md 5.1)."""

    bucket: str
    max_age_s: float
    max_bytes: int = DEFAULT_BUCKET_BYTES
    replicas: int = 1
    duplicate_window_s: float = 600.0

    def stream_config(self) -> StreamConfig:
        """What nats-py's ``create_object_store`` makes, with the project's retention and
        duplicate window, fast batches allowed where the library knows them."""
        extra = {"allow_batched": True} if "allow_batched" in StreamConfig.__dataclass_fields__ else {}
        return StreamConfig(
            name=bucket_stream(self.bucket),
            description="BLO Bus sealed attachment chunks (schemas/ATTACHMENTS.md)",
            subjects=[f"$O.{self.bucket}.C.>", f"$O.{self.bucket}.M.>"],
            storage=StorageType.FILE,
            max_age=self.max_age_s,
            max_bytes=self.max_bytes,
            max_msg_size=BUCKET_MAX_MSG_SIZE,
            duplicate_window=self.duplicate_window_s,
            discard=DiscardPolicy.NEW,
            num_replicas=self.replicas,
            allow_rollup_hdrs=True,
            allow_direct=True,
            **extra,
        )


def bucket_specs(
    offices: Sequence[str], feeds: Sequence[str], *, max_age_s: float, replicas: int = 1,
    max_bytes: int = DEFAULT_BUCKET_BYTES,
) -> list[BucketSpec]:  # fmt: skip
    """The buckets of a network: one per office and per feed (``blo deploy streams``)."""
    names = [office_bucket(o) for o in offices] + [feed_bucket(f) for f in feeds]
    return [BucketSpec(b, max_age_s, max_bytes, replicas) for b in names]


def bucket_list_json(offices: Sequence[str], feeds: Sequence[str]) -> str:
    """The buckets a network's NATS users are granted, as ``blo deploy nats-auth`` writes
    them for ``blo deploy streams --buckets``: ``{"offices": [...], "feeds": [...]}``."""
    listed = {"offices": sorted({sj.check_office(o) for o in offices}), "feeds": sorted({sj.check_feed(f) for f in feeds})}
    return json.dumps(listed, indent=2) + "\n"


def parse_bucket_list(text: str) -> tuple[list[str], list[str]]:
    """The offices and feeds of a ``bucket_list_json`` file; ``ValidationError`` naming
    what is wrong."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError("buckets", f"is not JSON ({exc}); use the buckets.json blo deploy nats-auth wrote") from None
    if not isinstance(data, dict) or set(data) != {"offices", "feeds"}:
        raise ValidationError("buckets", 'expected {"offices": [...], "feeds": [...]}, as blo deploy nats-auth writes it')
    offices, feeds = data["offices"], data["feeds"]
    if not isinstance(offices, list) or not isinstance(feeds, list):
        raise ValidationError("buckets", "offices and feeds must be lists of names")
    return [sj.check_office(o) for o in offices], [sj.check_feed(f) for f in feeds]


async def ensure_bucket(client: BusClient, spec: BucketSpec) -> None:
    """Create the bucket's stream, or bring its limits up to ``spec``."""
    js = client.jetstream()
    config = spec.stream_config()
    asked = (f"{client.api_prefix}.STREAM.CREATE.{config.name}",)
    with nats_errors(f"create bucket {spec.bucket}", denied=client.violation_for, asked=asked):
        try:
            await js.add_stream(config)
        except BadRequest:  # exists with other limits
            await js.update_stream(config)


def _info_json(bucket: str, name: str, nuid: str, data: bytes, digest: str) -> bytes:
    info = {
        "name": name,
        "bucket": bucket,
        "nuid": nuid,
        "size": len(data),
        "chunks": 1,
        "mtime": datetime.datetime.now(datetime.UTC).isoformat(),
        "digest": digest,
        "options": {"max_chunk_size": MAX_SEALED_CHUNK},
    }
    return json.dumps(info, separators=(",", ":")).encode()


class NoBucket(BusError):
    """The bucket does not exist on the server (yet)."""

    reason = "no_bucket"


async def send_chunk(
    client: BusClient, bucket: str, object_hex: str, index: int, data: bytes, *, digest: str | None = None
) -> asyncio.Future[list[Any]]:
    """Publish one sealed chunk as its object (data, then info) without waiting for
    JetStream: the returned future ends when both acks (or their failures) are in; read it
    with ``chunk_outcome``, and cancel it to give up waiting. ``digest``: the chunk's
    ``digest_of``, when the caller computed it off the event loop. Raises ``BusError`` when
    the connection would not even take the chunk (send it again later: the ids and bytes
    are the same)."""
    js = client.jetstream()
    name = f"{object_hex}/{index}"
    nuid = chunk_nuid(object_hex, index)
    with nats_errors(f"send chunk {name} to {bucket}"):
        data_ack = await js.publish_async(
            chunk_subject(bucket, object_hex, index), data, headers={"Nats-Msg-Id": f"{name}/d"}
        )
        try:
            meta_ack = await js.publish_async(
                meta_subject(bucket, name),
                _info_json(bucket, name, nuid, data, digest or digest_of(data)),
                headers={"Nats-Msg-Id": f"{name}/m", "Nats-Rollup": "sub"},
            )
        except BaseException:
            data_ack.cancel()  # nats-py frees its slot for the ack only when the future ends
            raise
    return asyncio.gather(data_ack, meta_ack, return_exceptions=True)


def chunk_outcome(
    client: BusClient, bucket: str, object_hex: str, index: int, acks: asyncio.Future[list[Any]], since: float
) -> BusError | None:
    """None if JetStream stored the chunk ``send_chunk`` sent at ``since`` (monotonic), else
    why not: refused, or not acknowledged (``acks`` not done, or cancelled)."""
    if not acks.done() or acks.cancelled():
        return _unconfirmed(client, bucket, object_hex, index, since)
    for result in acks.result():
        if isinstance(result, asyncio.CancelledError):
            return _unconfirmed(client, bucket, object_hex, index, since)
        if isinstance(result, BaseException):
            return _refused(result, bucket, object_hex, index)
    return None


async def put_chunks(
    client: BusClient, bucket: str, object_hex: str, chunks: Sequence[tuple[int, bytes]], *, timeout: float
) -> list[BusError | None]:
    """Publish each ``(index, sealed chunk)`` as its object, pipelined, and wait for them
    all; one result per chunk: None once JetStream acknowledged it (the chunk is stored),
    else the BusError it met (send it again: the ids and bytes are the same)."""
    started = time.monotonic()
    results: list[BusError | None] = [None] * len(chunks)
    sent: dict[int, asyncio.Future[list[Any]]] = {}
    for place, (index, data) in enumerate(chunks):
        try:
            sent[place] = await send_chunk(client, bucket, object_hex, index, data)
        except BusError as exc:
            results[place] = exc
    if sent:
        await asyncio.wait(sent.values(), timeout=max(0.0, timeout - (time.monotonic() - started)))
    for place, acks in sent.items():
        results[place] = chunk_outcome(client, bucket, object_hex, chunks[place][0], acks, started)
        acks.cancel()
    return results


def _unconfirmed(client: BusClient, bucket: str, object_hex: str, index: int, since: float) -> BusError:
    subject = chunk_subject(bucket, object_hex, index)
    refused = client.violation_for(subject, since)
    if refused is not None:
        return PermissionDenied(f"this node may not write attachments to bucket {bucket} ({refused})")
    return NotConnected(f"no ack from JetStream for chunk {object_hex}/{index} in {bucket}: it will be sent again")


def _refused(exc: BaseException, bucket: str, object_hex: str, index: int) -> BusError:
    error = bus_error(exc, f"store chunk {object_hex}/{index} in {bucket}")
    if isinstance(error, NoStream):
        return NoBucket(
            f"no bucket {bucket} on the server: the operator creates it (blo deploy streams --buckets, "
            "with the buckets.json of blo deploy nats-auth)"
        )
    return error or BusError(f"storing chunk {object_hex}/{index} in {bucket} failed: {exc!r}")


class Reader:
    """Reads chunk objects of one bucket (its ``ObjectStore`` handle is looked up once)."""

    def __init__(self, client: BusClient, bucket: str) -> None:
        self.client = client
        self.bucket = bucket
        self._store: Any = None

    async def _object_store(self) -> Any:
        if self._store is None:
            js = self.client.jetstream()
            try:
                self._store = await js.object_store(self.bucket)
            except NotFound as exc:
                raise NoBucket(f"no bucket {self.bucket} on the server yet") from exc
        return self._store

    async def get_chunk(self, object_hex: str, index: int) -> bytes | None:
        """Chunk ``index`` of the object, its Object Store digest checked (ATTACHMENTS.md
        R3), or None when it is not there yet. ``AttachmentCorrupt`` if its data is not what
        its info says."""
        name = f"{object_hex}/{index}"
        stream = bucket_stream(self.bucket)
        api = self.client.api_prefix
        asked = (f"{api}.STREAM.INFO.{stream}", f"{api}.STREAM.MSG.GET.{stream}",
                 f"{api}.DIRECT.GET.{stream}.$O.{self.bucket}.C.{chunk_nuid(object_hex, index)}")  # fmt: skip
        with nats_errors(f"read {name} in bucket {self.bucket}", denied=self.client.violation_for, asked=asked):
            store = await self._object_store()
            try:
                info = await store.get_info(name)
                raw = await self.client.jetstream().get_last_msg(stream, f"$O.{self.bucket}.C.{info.nuid}", direct=True)
            except NotFound:  # the object, or its data, is not there (yet)
                return None
            except BadObjectMeta as exc:
                raise AttachmentCorrupt(
                    f"the object info of {name} in {self.bucket} is unreadable", "object_digest_mismatch"
                ) from exc
        data = raw.data or b""
        if info.digest != digest_of(data):
            raise AttachmentCorrupt(
                f"{name} in {self.bucket}: its data's SHA-256 is not the digest its object info gives",
                "object_digest_mismatch",
            )
        return data


def check_object_hex(value: str) -> str:
    if not isinstance(value, str) or len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
        raise ValidationError("object", "must be 32 lower-case hex digits")
    return value
