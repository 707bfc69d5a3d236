"""Sealed attachments: a file encrypted chunk by chunk under its own key. Pure; no I/O.

The one rule (``schemas/ATTACHMENTS.md``): **everything needed to find, check and open a
file travels only inside the signed, encrypted bulletin body** (its attachment entry: the
file key, the nonce prefix, the object id, the name, media type, size, and the SHA-256 of
the plaintext and of the stored ciphertext). The server stores ciphertext chunks it
cannot open; the sender's signature over the body covers the file through its hashes; a
centre forwarding the bulletin carries the same entry, so the same stored ciphertext
serves the forward's readers without being encrypted again.

The construction is age's STREAM (C2SP age spec, "payload"), with XChaCha20-Poly1305:
the file is cut into ``CHUNK_SIZE`` pieces (the last one shorter, possibly empty, never
absent); chunk ``i`` is sealed with the nonce ``prefix || u56be(i) || flag``, where the
flag byte is 1 for the last chunk and 0 otherwise. A chunk moved, dropped, duplicated, or
a file cut short after a whole chunk, fails: the index and the final flag are in the
nonce, and only the last chunk opens with flag 1.

Everything here takes bytes and returns bytes (or values), randomness passed in
(``rng``), so vectors and tests are exact: ``FileSealer`` encrypts a stream one chunk
at a time, ``open_chunk`` checks one chunk, ``FileChecker`` runs the whole-file checks
over the chunks in order. The I/O (spool files, the Object Store, the queues) lives in
``bus/transport/object_store.py`` and ``bus/transport/transfers.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bus import sodium
from bus.errors import AttachmentCorrupt, AttachmentTooLarge, ValidationError

#: Plaintext bytes per chunk; every chunk but the last holds exactly this many.
CHUNK_SIZE = 256 * 1024
TAG_BYTES = sodium.TAG_BYTES
#: A sealed chunk of a full chunk: what one Object Store object holds at most.
MAX_SEALED_CHUNK = CHUNK_SIZE + TAG_BYTES
KEY_BYTES = 32
PREFIX_BYTES = 16
OBJECT_ID_BYTES = 16
#: The chunk index is 7 bytes of the nonce.
MAX_CHUNKS = 1 << 56
#: Associated data of every chunk: the purpose and the wire version (ENVELOPE.md 3).
CHUNK_AD = b"blo-bus/v2 attachment chunk\x00"

#: Defaults of the configurable limits (node.toml ``[attachments]``).
DEFAULT_MAX_FILE_BYTES = 25 * 1024 * 1024
DEFAULT_MAX_BULLETIN_BYTES = 100 * 1024 * 1024

Rng = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-file and per-bulletin size limits, in plaintext bytes (ATTACHMENTS.md 6)."""

    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_bulletin_bytes: int = DEFAULT_MAX_BULLETIN_BYTES

    def check_file(self, name: str, size: int) -> None:
        if size > self.max_file_bytes:
            raise AttachmentTooLarge(
                f"{name} is {_mib(size)}; the limit per file is {_mib(self.max_file_bytes)}: "
                "send a smaller file (a photo at a lower resolution, a PDF of fewer pages)"
            )

    def check_bulletin(self, sizes: list[int]) -> None:
        total = sum(sizes)
        if total > self.max_bulletin_bytes:
            raise AttachmentTooLarge(
                f"the attachments add up to {_mib(total)}; the limit per bulletin is "
                f"{_mib(self.max_bulletin_bytes)}: split them over several bulletins"
            )


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB" if n >= 1024 * 1024 else f"{n} bytes"


# -- the entry ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One attachment entry of a bulletin body, its byte fields decoded.

    On the wire and in the dict form it is a map of text and integers (ENVELOPE.md 8;
    ``bus.bulletin.validate_attachment`` checks its shape): ``as_dict`` / ``of``."""

    name: str
    media_type: str
    size: int
    sha256: bytes  # of the plaintext
    key: bytes = field(repr=False)  # secrets: never in a repr, so never in a log
    nonce: bytes = field(repr=False)  # the 16-byte nonce prefix
    object_id: bytes
    object_sha256: bytes  # of the stored ciphertext: every sealed chunk, in order

    @classmethod
    def of(cls, value: Mapping[str, Any]) -> Entry:
        """From a validated attachment map (``Bulletin.attachments`` items)."""
        return cls(
            value["name"],
            value["media_type"],
            value["size"],
            bytes.fromhex(value["sha256"]),
            bytes.fromhex(value["key"]),
            bytes.fromhex(value["nonce"]),
            bytes.fromhex(value["object"]),
            bytes.fromhex(value["object_sha256"]),
        )

    def as_dict(self) -> dict[str, Any]:
        """The attachment map, keys in wire order (ENVELOPE.md 8)."""
        return {
            "name": self.name,
            "media_type": self.media_type,
            "size": self.size,
            "sha256": self.sha256.hex(),
            "key": self.key.hex(),
            "nonce": self.nonce.hex(),
            "object": self.object_id.hex(),
            "object_sha256": self.object_sha256.hex(),
        }

    @property
    def chunks(self) -> int:
        return chunk_count(self.size)

    @property
    def sealed_size(self) -> int:
        return sealed_size(self.size)

    @property
    def object_hex(self) -> str:
        return self.object_id.hex()


#: The fields of an entry a reader outside the node never needs (the API leaves them out).
SECRET_FIELDS = ("key", "nonce")


def public_view(attachment: Mapping[str, Any]) -> dict[str, Any]:
    """An attachment map without its key and nonce prefix: what a page or a log may show."""
    return {k: v for k, v in attachment.items() if k not in SECRET_FIELDS}


# -- sizes, nonces, names -----------------------------------------------------------------


def chunk_count(size: int) -> int:
    """Chunks of a file of ``size`` bytes: at least one (an empty file is one empty chunk)."""
    if size < 0:
        raise ValidationError("size", "must not be negative")
    return max(1, -(-size // CHUNK_SIZE))


def chunk_plain_size(size: int, index: int) -> int:
    """Plaintext bytes of chunk ``index`` of a file of ``size`` bytes."""
    n = chunk_count(size)
    if not 0 <= index < n:
        raise ValidationError("index", f"chunk {index} of a {n}-chunk file")
    return CHUNK_SIZE if index < n - 1 else size - CHUNK_SIZE * (n - 1)


def sealed_size(size: int) -> int:
    """Bytes of the stored ciphertext of a file of ``size`` bytes: its chunks plus a tag each."""
    return size + TAG_BYTES * chunk_count(size)


def chunk_nonce(prefix: bytes, index: int, final: bool) -> bytes:
    """``prefix (16) || u56be(index) || flag`` (1 for the last chunk): 24 bytes."""
    if len(prefix) != PREFIX_BYTES:
        raise ValidationError("nonce", f"the nonce prefix is {PREFIX_BYTES} bytes")
    if not 0 <= index < MAX_CHUNKS:
        raise ValidationError("index", "a chunk index is below 2^56")
    return prefix + index.to_bytes(7, "big") + (b"\x01" if final else b"\x00")


def object_name(object_id: bytes, index: int) -> str:
    """The Object Store object holding chunk ``index``: ``<object id hex>/<index>``."""
    return f"{object_id.hex()}/{index}"


def seal_chunk(key: bytes, prefix: bytes, index: int, final: bool, plaintext: bytes) -> bytes:
    return sodium.aead_encrypt(bytes(plaintext), CHUNK_AD, chunk_nonce(prefix, index, final), key)


def open_chunk(entry: Entry, index: int, sealed: bytes) -> bytes:
    """The plaintext of chunk ``index`` of ``entry``'s file, checked (ATTACHMENTS.md 7,
    checks R4 and R5); ``AttachmentCorrupt`` if its length is wrong or it does not open."""
    n = entry.chunks
    if not 0 <= index < n:
        raise AttachmentCorrupt(f"{entry.name}: there is no chunk {index} in a {n}-chunk file", "chunk_unexpected")
    want = chunk_plain_size(entry.size, index) + TAG_BYTES
    if len(sealed) != want:
        raise AttachmentCorrupt(
            f"{entry.name}: chunk {index} is {len(sealed)} bytes, its entry says {want}", "chunk_length_mismatch"
        )
    try:
        return sodium.aead_decrypt(bytes(sealed), CHUNK_AD, chunk_nonce(entry.nonce, index, index == n - 1), entry.key)
    except sodium.CryptoError:
        raise AttachmentCorrupt(
            f"{entry.name}: chunk {index} does not authenticate under the key the signed bulletin gives "
            "(altered, truncated or out of place)",
            "chunk_decryption_failed",
        ) from None


# -- sealing a file ------------------------------------------------------------------------


class FileSealer:
    """Encrypts one file as a stream: ``update`` plaintext in any pieces, get back the sealed
    chunks completed so far; ``finish`` seals the last chunk and returns the entry.

    Holds at most one chunk of plaintext: a 100 MiB file is sealed in 256 KiB of memory.
    ``rng`` draws, in this order, the file key (32 bytes), the nonce prefix (16) and the
    object id (16) (ATTACHMENTS.md 4); the vectors depend on it."""

    def __init__(self, name: str, media_type: str, rng: Rng) -> None:
        self.name = name
        self.media_type = media_type
        self.key = rng(KEY_BYTES)
        self.prefix = rng(PREFIX_BYTES)
        self.object_id = rng(OBJECT_ID_BYTES)
        self._pending = bytearray()
        self._index = 0
        self._size = 0
        self._plain = hashlib.sha256()
        self._sealed = hashlib.sha256()
        self._done = False

    def _seal(self, plaintext: bytes, final: bool) -> bytes:
        out = seal_chunk(self.key, self.prefix, self._index, final, plaintext)
        self._index += 1
        self._sealed.update(out)
        return out

    def update(self, data: bytes) -> list[bytes]:
        """Feed plaintext; returns the chunks it completed (never the last one: a full chunk
        is held back until more data or ``finish`` says whether it is the last)."""
        if self._done:
            raise ValidationError("file", "the file was already finished")
        self._plain.update(data)
        self._size += len(data)
        self._pending += data
        out = []
        while len(self._pending) > CHUNK_SIZE:  # strictly more: a full chunk may be the last
            out.append(self._seal(bytes(self._pending[:CHUNK_SIZE]), False))
            del self._pending[:CHUNK_SIZE]
        return out

    def finish(self) -> tuple[bytes, Entry]:
        """The last sealed chunk (possibly of an empty remainder) and the file's entry."""
        if self._done:
            raise ValidationError("file", "the file was already finished")
        self._done = True
        last = self._seal(bytes(self._pending), True)
        self._pending = bytearray()
        entry = Entry(
            self.name,
            self.media_type,
            self._size,
            self._plain.digest(),
            self.key,
            self.prefix,
            self.object_id,
            self._sealed.digest(),
        )
        return last, entry


def seal_file(name: str, media_type: str, data: bytes, rng: Rng) -> tuple[list[bytes], Entry]:
    """A whole file in memory sealed at once: its chunks and its entry (vectors, tests)."""
    sealer = FileSealer(name, media_type, rng)
    chunks = sealer.update(data)
    last, entry = sealer.finish()
    return [*chunks, last], entry


# -- checking a file -----------------------------------------------------------------------


class FileChecker:
    """The receiver's checks R4-R7 (ATTACHMENTS.md 7) over the sealed chunks of one file,
    fed in order with ``add`` (which returns each chunk's plaintext, checked: R4, R5);
    ``finish`` raises ``AttachmentCorrupt`` at the first of R6, R7 that fails. (The size
    needs no check of its own: every chunk's length is checked against it.)"""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self._index = 0
        self._plain = hashlib.sha256()
        self._sealed = hashlib.sha256()

    def add(self, sealed: bytes) -> bytes:
        plaintext = open_chunk(self.entry, self._index, sealed)
        self._index += 1
        self._sealed.update(sealed)
        self._plain.update(plaintext)
        return plaintext

    def finish(self) -> None:
        e = self.entry
        if self._index != e.chunks:
            raise AttachmentCorrupt(f"{e.name}: {self._index} of {e.chunks} chunks arrived", "chunk_missing")
        if self._sealed.digest() != e.object_sha256:
            raise AttachmentCorrupt(
                f"{e.name}: the stored ciphertext's SHA-256 is not the one the signed bulletin gives", "object_hash_mismatch"
            )
        if self._plain.digest() != e.sha256:
            raise AttachmentCorrupt(
                f"{e.name}: the file's SHA-256 is not the one the signed bulletin gives", "hash_mismatch"
            )


def open_file(entry: Entry, chunks: list[bytes]) -> bytes:
    """A whole file's plaintext from its sealed chunks, every check passed (vectors, tests)."""
    checker = FileChecker(entry)
    parts = [checker.add(c) for c in chunks]
    checker.finish()
    return b"".join(parts)
