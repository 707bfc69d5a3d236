"""Writes the attachment vectors in this folder (schemas/ATTACHMENTS.md).

Run ``.venv/bin/python schemas/vectors/attachments/generate.py`` (or
``schemas/vectors/generate.py`` for every family). Each file:

* ``seal``: the inputs: ``name``, ``media_type``, the ``plaintext`` (base64, or for large
  files ``plaintext_rng``: the seed of a ``DeterministicRng`` whose one draw of ``size``
  bytes is the file) and ``rng_seed`` (the draws of ATTACHMENTS.md 4: key, prefix, object);
* ``steps``: the key, nonce prefix and object id drawn, and for each chunk its nonce, its
  object name and its sealed bytes (base64, or their SHA-256 and length when large);
* ``entry``: the attachment map as it travels in the bulletin body;
* ``mutation``: null when ``chunks`` are exactly what sealing gives, else how they (or the
  entry the receiver holds) were changed;
* ``open``: ``{"outcome": "ok"}`` or ``{"outcome": "error", "error", "reason"}``: what the
  receiver's checks R4-R7 give for ``chunks`` under ``entry``.

Sealing is deterministic given the draws, so an implementation reproduces every byte.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from bus import errors
from bus.attachments import CHUNK_SIZE, Entry, chunk_nonce, object_name, open_file, seal_chunk, seal_file
from bus.testing import DeterministicRng, render_vector, write_vectors

HERE = Path(__file__).resolve().parent
#: Sealed chunks up to this size are written out whole; larger ones by hash and length.
INLINE_MAX = 4096
#: The photo the every-field envelope vector (envelope/ok-office-3) carries.
PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 2 + b"\xff\xd9"
PHOTO_SEED = "blo-bus vector attachment photo"


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _chunk_json(entry: Entry, index: int, sealed: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": index,
        "nonce": chunk_nonce(entry.nonce, index, index == entry.chunks - 1).hex(),
        "object_name": object_name(entry.object_id, index),
    }
    if len(sealed) <= INLINE_MAX:
        out["sealed"] = _b64(sealed)
    else:
        out["sealed_sha256"] = hashlib.sha256(sealed).hexdigest()
        out["sealed_length"] = len(sealed)
    return out


def _outcome(entry: Entry, chunks: list[bytes]) -> dict[str, Any]:
    try:
        open_file(entry, chunks)
    except errors.AttachmentError as exc:
        return {"outcome": "error", "error": type(exc).__name__, "reason": exc.reason}
    return {"outcome": "ok"}


def photo_entry() -> Entry:
    """The entry of the photo that envelope/ok-office-3 attaches."""
    return seal_file("photo.jpg", "image/jpeg", PHOTO, DeterministicRng(PHOTO_SEED))[1]


def vector(
    name: str,
    description: str,
    file_name: str,
    media_type: str,
    plaintext: bytes,
    rng_seed: str,
    *,
    plaintext_rng: str | None = None,
    mutate: Any = None,
    mutation: str | None = None,
) -> dict[str, Any]:
    chunks, entry = seal_file(file_name, media_type, plaintext, DeterministicRng(rng_seed))
    steps = {
        "key": entry.key.hex(),
        "nonce_prefix": entry.nonce.hex(),
        "object_id": entry.object_id.hex(),
        "chunks": [_chunk_json(entry, i, c) for i, c in enumerate(chunks)],
    }
    seal: dict[str, Any] = {"name": file_name, "media_type": media_type, "size": len(plaintext), "rng_seed": rng_seed}
    if plaintext_rng is None:
        seal["plaintext"] = _b64(plaintext)
    else:
        seal["plaintext_rng"] = plaintext_rng
    held, sent = entry, chunks
    if mutate is not None:
        held, sent = mutate(entry, list(chunks))
    return {
        "name": name,
        "description": description,
        "chunk_size": CHUNK_SIZE,
        "seal": seal,
        "steps": steps,
        "entry": entry.as_dict(),
        "mutation": mutation,
        "received_entry": None if held is entry else held.as_dict(),
        "chunks": None if sent == chunks else [_chunk_json(held, i, c) for i, c in enumerate(sent)],
        "open": _outcome(held, sent),
    }


def _flip(entry: Entry, chunks: list[bytes]) -> tuple[Entry, list[bytes]]:
    c = bytearray(chunks[1])
    c[100] ^= 0x01
    chunks[1] = bytes(c)
    return entry, chunks


def _swap(entry: Entry, chunks: list[bytes]) -> tuple[Entry, list[bytes]]:
    chunks[0], chunks[1] = chunks[1], chunks[0]
    return entry, chunks


def _drop_last(entry: Entry, chunks: list[bytes]) -> tuple[Entry, list[bytes]]:
    return entry, chunks[:-1]


def _final_flag_early(entry: Entry, chunks: list[bytes]) -> tuple[Entry, list[bytes]]:
    # Chunk 1 of 3 sealed with the final flag: what someone holding the key would need to
    # cut the file short after chunk 1 without the receiver noticing. It does not open.
    plain = DeterministicRng("blo-bus vector attachment three")(2 * CHUNK_SIZE + 10)
    chunks[1] = seal_chunk(entry.key, entry.nonce, 1, True, plain[CHUNK_SIZE : 2 * CHUNK_SIZE])
    return entry, chunks


def _short(entry: Entry, chunks: list[bytes]) -> tuple[Entry, list[bytes]]:
    chunks[0] = chunks[0][:-1]
    return entry, chunks


def _with(**fields: Any) -> Any:
    def mutate(entry: Entry, chunks: list[bytes]) -> tuple[Entry, list[bytes]]:
        return Entry(**{**{f: getattr(entry, f) for f in Entry.__slots__}, **fields}), chunks

    return mutate


def build_vectors() -> dict[str, dict[str, Any]]:
    three = DeterministicRng("blo-bus vector attachment three")(2 * CHUNK_SIZE + 10)
    exact = DeterministicRng("blo-bus vector attachment exact")(CHUNK_SIZE)
    small = "บันทึกการตรวจยึด: รถบรรทุก 70-1234 ที่ด่านสะพานมิตรภาพ 2\n".encode()
    vs = [
        vector("ok-photo", "The photo the every-field envelope vector (envelope/ok-office-3) attaches: one chunk.",
               "photo.jpg", "image/jpeg", PHOTO, PHOTO_SEED),
        vector("ok-text", "A short Thai text file: one chunk, shorter than the chunk size.",
               "บันทึก.txt", "text/plain", small, "blo-bus vector attachment text"),
        vector("ok-empty", "An empty file: one empty final chunk (16 bytes, the tag).",
               "empty.txt", "text/plain", b"", "blo-bus vector attachment empty"),
        vector("ok-exact-chunk", "Exactly one chunk's worth: one full chunk, final (no empty chunk after it).",
               "exact.bin", "application/pdf", exact, "blo-bus vector attachment exact-seal",
               plaintext_rng="blo-bus vector attachment exact"),
        vector("ok-three-chunks", "Two full chunks and 10 bytes: three chunks, the last one final.",
               "scan.pdf", "application/pdf", three, "blo-bus vector attachment three-seal",
               plaintext_rng="blo-bus vector attachment three"),
        vector("fail-flipped-byte", "One bit of chunk 1's ciphertext flipped: R5.",
               "scan.pdf", "application/pdf", three, "blo-bus vector attachment three-seal",
               plaintext_rng="blo-bus vector attachment three", mutate=_flip,
               mutation="bit 0 of byte 100 of chunk 1 flipped"),
        vector("fail-chunks-swapped", "Chunks 0 and 1 exchanged (same lengths): the index is in the nonce, R5.",
               "scan.pdf", "application/pdf", three, "blo-bus vector attachment three-seal",
               plaintext_rng="blo-bus vector attachment three", mutate=_swap, mutation="chunks 0 and 1 exchanged"),
        vector("fail-truncated", "The last chunk missing: R6.",
               "scan.pdf", "application/pdf", three, "blo-bus vector attachment three-seal",
               plaintext_rng="blo-bus vector attachment three", mutate=_drop_last, mutation="chunk 2 removed"),
        vector("fail-final-flag-early", "Chunk 1 of 3 sealed with the final flag set: it does not open as chunk 1, R5.",
               "scan.pdf", "application/pdf", three, "blo-bus vector attachment three-seal",
               plaintext_rng="blo-bus vector attachment three", mutate=_final_flag_early,
               mutation="chunk 1 sealed again with the final flag"),
        vector("fail-short-chunk", "Chunk 0 one byte short: R4.",
               "บันทึก.txt", "text/plain", small, "blo-bus vector attachment text", mutate=_short,
               mutation="last byte of chunk 0 removed"),
        vector("fail-object-hash", "Every chunk opens, but the entry's object_sha256 is another: R6.",
               "บันทึก.txt", "text/plain", small, "blo-bus vector attachment text",
               mutate=_with(object_sha256=bytes(32)), mutation="received_entry.object_sha256 set to zeros"),
        vector("fail-plaintext-hash", "Every chunk opens, but the entry's sha256 is another: R7.",
               "บันทึก.txt", "text/plain", small, "blo-bus vector attachment text",
               mutate=_with(sha256=bytes(32)), mutation="received_entry.sha256 set to zeros"),
    ]
    return {v["name"]: v for v in vs}






def main() -> None:
    write_vectors(HERE, build_vectors())


render = render_vector  # what the tests compare the files with


if __name__ == "__main__":
    main()
