"""What a file is, and the only form in which an image reaches the browser.

* ``sniff``: the media type from the content (libmagic, the ``file`` command's maintained
  database, through python-magic), never from the name or the browser's claim; only the
  types of schemas/ATTACHMENTS.md section 8 are accepted (``UnknownMediaType`` otherwise).
* ``render``: an image decoded and **re-encoded** by Pillow (JPEG, metadata dropped, at
  most ``size`` pixels on its longest side), so the page never receives the sender's image
  bytes: a malformed or hostile image is decoded here, where it can only fail, and the
  browser decodes a file this node wrote.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable

import magic
from PIL import Image, ImageOps

from bus.errors import AttachmentError, UnknownMediaType

IMAGES = ("image/jpeg", "image/png", "image/gif", "image/webp", "image/tiff", "image/bmp")
ACCEPTED = frozenset(
    (
        *IMAGES,
        "application/pdf",
        "text/plain",
        "text/csv",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "video/mp4",
        "video/quicktime",
        "audio/mpeg",
        "audio/x-wav",
        "application/zip",
        "application/x-7z-compressed",
    )
)
#: Bytes of a file's start the sniffer looks at (libmagic reads no further for these types).
SNIFF_BYTES = 64 * 1024
THUMBNAIL_PX = 320
VIEW_PX = 1600
#: Pillow refuses to decode images of more pixels than this (a decompression bomb).
MAX_PIXELS = 80_000_000
_PILLOW_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")


def sniff(head: bytes) -> str:
    """The media type of a file that starts with ``head``, in lower case without parameters."""
    found = magic.from_buffer(bytes(head[:SNIFF_BYTES]), mime=True)
    return found.split(";")[0].strip().lower() if isinstance(found, str) else "application/octet-stream"


def accepted_type(name: str, head: bytes) -> str:
    """The sniffed type of a file to attach, or ``UnknownMediaType`` naming the file."""
    found = sniff(head)
    if found not in ACCEPTED:
        raise UnknownMediaType(
            f"{name}: its content is {found}, not a type a bulletin may carry (photos, scans, PDF, office "
            "documents, text, video, audio, zip): convert it, or put it in a zip archive"
        )
    return found


def is_image(media_type: str | None) -> bool:
    return media_type in IMAGES


def render(chunks: Iterable[bytes], size: int) -> bytes:
    """The image in ``chunks`` as a new JPEG of at most ``size`` pixels on its longest side.
    ``AttachmentError`` (reason ``not_an_image``) if Pillow cannot decode it."""
    data = b"".join(chunks)
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS) as img:
                img = ImageOps.exif_transpose(img)
                img.thumbnail((size, size))
                out = io.BytesIO()
                img.convert("RGB").save(out, "JPEG", quality=82)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise AttachmentError(f"the image cannot be decoded for display: {exc}", "not_an_image") from exc
    return out.getvalue()
