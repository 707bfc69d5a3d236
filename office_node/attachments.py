"""The office's attachments: what officers attach, what arrives, and what the page is shown.

A thin layer over ``bus.transport.transfers.Transfers`` (the spool and the queues) for
the office node, which calls it at four points:

* a post or a forward (``office_node/sending.py``: ``check_sendable`` before sealing,
  ``queue_sent`` after): the files are queued for upload to the bucket of every
  recipient (schemas/ATTACHMENTS.md 5);
* an HTTP upload (``seal_upload``): each file is sealed into the spool as it streams in,
  its media type sniffed from its content (``office_node/media.py``);
* a received bulletin (``office_node/inbound.py``: ``queue_received``): its files are
  queued for download from the bucket of the recipient it came through;
* the page (``office_node/reads.py`` and the API: ``describe``, ``plaintext``,
  ``image``): each attachment's state without its key, the file as a download, an image
  only as a re-encoded JPEG.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from bus import RECIPIENT_FEED, Bulletin, Entry, Limits, Opened, Rng, public_view
from bus.errors import AttachmentError, NotFound, ValidationError
from bus.transport import (
    COMPLETE,
    Download,
    Quarantine,
    TransferMetrics,
    Transfers,
    bucket_of,
    entries_of,
    feed_bucket,
    office_bucket,
    precedence_rank,
)
from office_node import media
from office_node.times import iso_utc

#: Bytes read from an HTTP upload at a time.
READ_BYTES = 256 * 1024
#: A sent file whose spool copy was deleted (bus/transport/spool_sweep.py).
REMOVED = "removed"


def _removed_message(at_ms: int) -> str:
    return (
        f"sent, and removed from this node on {iso_utc(at_ms)} once the bus no longer kept it either "
        "(the original is where it was attached from)"
    )


class NodeAttachments:
    def __init__(
        self,
        office: str,
        data_dir: Path,
        *,
        limits: Limits,
        bucket_max_age_s: float,
        ensure_buckets: bool,
        quarantine: Quarantine | None,
        metrics: TransferMetrics,
        publish: Callable[[str, dict[str, Any]], None],
        rng: Rng,
    ) -> None:
        self.office = office
        self.limits = limits
        self.rng = rng
        self._publish = publish
        self.transfers = Transfers(
            data_dir,
            bucket_max_age_s=bucket_max_age_s,
            ensure_buckets=ensure_buckets,
            limits=limits,
            quarantine=quarantine,
            metrics=metrics,
            on_event=publish,
            on_complete=self._completed,
        )

    def close(self) -> None:
        self.transfers.close()

    # -- sending -------------------------------------------------------------------------

    async def seal_upload(self, name: str, read: Callable[[int], Any]) -> dict[str, Any]:
        """Seal one uploaded file (``read(n)``: an awaitable giving the next bytes, ``b""`` at
        the end) into the spool; its attachment entry. Refuses a file over the per-file
        limit as it grows, and one of no accepted type (sniffed from its first bytes)."""
        if not isinstance(name, str) or not name.strip() or len(name) > 255 or "\x00" in name:
            raise ValidationError("file", "each file needs a name of 1 to 255 characters")
        writer = self.transfers.spool_writer(name, self.rng)
        try:
            while piece := await read(READ_BYTES):
                writer.write(piece)
            media_type = media.accepted_type(name, bytes(writer.head))
            entry = await asyncio.to_thread(writer.finish, media_type)
        except BaseException:
            writer.abort()
            raise
        if media.is_image(entry.media_type):  # the sender's page shows its own thumbnail at once
            await asyncio.to_thread(self._thumbnail, entry)
        return entry.as_dict()

    def check_sendable(self, bulletin: Bulletin) -> None:
        """Before sealing: every file is within the limits and whole on this node (sealed
        here, or received and checked: a forward re-sends the stored ciphertext)."""
        entries = entries_of(bulletin.attachments)
        for e in entries:
            self.limits.check_file(e.name, e.size)
            if not self.transfers.is_complete(e.object_hex):
                raise AttachmentError(
                    f"{e.name} is not whole on this node (still arriving, or never attached here): "
                    "send the bulletin on once its attachments are complete",
                    "attachment_incomplete",
                )
        self.limits.check_bulletin([e.size for e in entries])

    def queue_sent(self, bulletin: Bulletin, recipients: tuple[str, ...]) -> None:
        """Queue the bulletin's files for upload to each recipient's bucket (office ids and
        ``feed:<name>``)."""
        if bulletin.attachments:
            self.transfers.queue_uploads(
                bulletin.id,
                precedence_rank(bulletin.precedence),
                entries_of(bulletin.attachments),
                [bucket_of(r) for r in recipients],
            )

    # -- receiving -----------------------------------------------------------------------

    def queue_received(self, opened: Opened) -> None:
        """Queue a received bulletin's files for download from the bucket it came through."""
        b = opened.bulletin
        if not b.attachments:
            return
        via = opened.opened_via
        bucket = feed_bucket(via.id) if via.kind == RECIPIENT_FEED else office_bucket(self.office)
        self.transfers.queue_downloads(b.id, precedence_rank(b.precedence), entries_of(b.attachments), bucket)

    async def _completed(self, download: Download) -> None:
        """R8: the media type sniffed from the content; an image's thumbnail made once."""
        entry = download.entry
        head = await asyncio.to_thread(self._head, entry)
        sniffed = media.sniff(head)
        self.transfers.set_sniffed(download.bulletin_id, download.n, sniffed)
        if media.is_image(sniffed):
            try:
                await asyncio.to_thread(self._thumbnail, entry)
            except AttachmentError:
                pass  # shown without a thumbnail; the file is still there to download

    def _head(self, entry: Entry) -> bytes:
        out = bytearray()
        for chunk in self.transfers.read_plaintext(entry):
            out += chunk
            if len(out) >= media.SNIFF_BYTES:
                break
        return bytes(out)

    # -- the page ------------------------------------------------------------------------

    def describe(self, bulletin: Mapping[str, Any], *, sent: bool) -> tuple[list[dict[str, Any]], bool]:
        """Each attachment without its key, with its state; and whether all are complete."""
        items = list(bulletin.get("attachments") or ())
        if not items:
            return [], True
        downloads = {} if sent else {d.n: d for d in self.transfers.downloads(bulletin["id"])}
        uploads = self.transfers.uploads(bulletin["id"]) if sent else []
        out = []
        for n, a in enumerate(items):
            entry = Entry.of(a)
            d = downloads.get(n)
            removed = self.transfers.removed_at(entry.object_hex) if sent else None
            if sent:
                state = "complete" if self.transfers.is_complete(entry.object_hex) else REMOVED if removed else "queued"
            else:
                state = d.state if d else "queued"
            sniffed = entry.media_type if sent else (d.sniffed if d else None)
            out.append(
                {
                    **public_view(a),
                    "n": n,
                    "state": state,
                    "chunks": entry.chunks,
                    "held": (0 if removed else entry.chunks) if sent else (d.held if d else 0),
                    "reason": d.reason if d else "attachment_removed" if removed else None,
                    "message": d.message if d else _removed_message(removed) if removed else None,
                    "sniffed": sniffed,
                    "image": media.is_image(sniffed) and state == COMPLETE,
                    "uploads": [u for u in uploads if u["n"] == n],
                }
            )
        return out, all(x["state"] == COMPLETE for x in out)

    def entry(self, bulletin: Mapping[str, Any], n: Any) -> Entry:
        items = list(bulletin.get("attachments") or ())
        if not isinstance(n, str) or not n.isdigit() or int(n) >= len(items):
            raise NotFound(f"bulletin {bulletin.get('id')} has no attachment {n}")
        return Entry.of(items[int(n)])

    def plaintext(self, entry: Entry) -> Iterator[bytes]:
        return self.transfers.read_plaintext(entry)

    async def stream(self, entry: Entry) -> AsyncIterator[bytes]:
        """The file's plaintext, chunk by chunk, decrypted off the event loop."""
        chunks = self.transfers.read_plaintext(entry)
        while True:
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                return
            yield chunk

    async def image(self, entry: Entry, *, thumbnail: bool) -> bytes:
        """The image re-encoded (media.render): a thumbnail (cached) or a larger view."""
        if thumbnail:
            return await asyncio.to_thread(self._thumbnail, entry)
        return await asyncio.to_thread(media.render, self.transfers.read_plaintext(entry), media.VIEW_PX)

    def _thumbnail(self, entry: Entry) -> bytes:
        path = self.transfers.spool / f"{entry.object_hex}.thumb.jpg"
        if path.exists():
            return path.read_bytes()
        data = media.render(self.transfers.read_plaintext(entry), media.THUMBNAIL_PX)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        return data
