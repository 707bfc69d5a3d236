"""Identifiers: bulletin ids (ULIDs) and key ids.

Bulletin ids are ULIDs: 48 bits of milliseconds then 80 random bits, so they sort by
creation time (outbox order, search results) and need no coordination between
offices. On the wire they travel as their 16 raw bytes; everywhere a person sees
them they are the 26-character Crockford base32 string.

Key ids name a public key without carrying it: the first 8 bytes of a BLAKE2b hash
of the key, personalised by the key's purpose so a signing key and an encryption key
can never share an id.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from bus.errors import ValidationError

Rng = Callable[[int], bytes]

BULLETIN_ID_BYTES = 16
KEY_ID_BYTES = 8

_KEY_ID_PERSON = {
    "sign": b"blo-kid-ed25519",
    "box": b"blo-kid-x25519",
}


# ULID text is the 128 bits in Crockford base32, front-padded to 130 bits: 13 groups of
# 10 bits, each two digits. A 1024-entry table of digit pairs makes encoding 13 lookups;
# ids are encoded on every bulletin opened, so this is on the hot path.
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_DIGIT = {c: i for i, c in enumerate(_CROCKFORD)}
ULID_PATTERN = r"^[0-7][0-9A-HJKMNP-TV-Z]{25}\Z"
_ULID_TEXT = re.compile(ULID_PATTERN)
# Crockford digits as the digits int(..., 32) reads: decoding is then one C call.
_TO_INT_DIGITS = str.maketrans(_CROCKFORD, "0123456789abcdefghijklmnopqrstuv")


def bulletin_id_from_bytes(raw: bytes) -> str:
    """The 26-character ULID string of 16 id bytes."""
    if len(raw) != BULLETIN_ID_BYTES:
        raise ValidationError("id", f"must be {BULLETIN_ID_BYTES} bytes, got {len(raw)}")
    n, p = int.from_bytes(raw, "big"), _PAIRS
    return "".join((
        p[n >> 120], p[n >> 110 & 1023], p[n >> 100 & 1023], p[n >> 90 & 1023], p[n >> 80 & 1023],
        p[n >> 70 & 1023], p[n >> 60 & 1023], p[n >> 50 & 1023], p[n >> 40 & 1023], p[n >> 30 & 1023],
        p[n >> 20 & 1023], p[n >> 10 & 1023], p[n & 1023],
    ))  # fmt: skip


def bulletin_id_to_bytes(bulletin_id: str) -> bytes:
    """The 16 wire bytes of a ULID string; raises ValidationError for anything else."""
    if not isinstance(bulletin_id, str) or _ULID_TEXT.match(bulletin_id) is None:
        raise ValidationError(
            "id", "must be a ULID: 26 characters of Crockford base32 (0-9, A-Z without I, L, O, U), first digit 0-7"
        )
    return int(bulletin_id.translate(_TO_INT_DIGITS), 32).to_bytes(BULLETIN_ID_BYTES, "big")


def new_bulletin_id(now_ms: int, rng: Rng) -> str:
    """A fresh ULID string for a bulletin created at ``now_ms``."""
    if not 0 <= now_ms < 1 << 48:
        raise ValidationError("id", f"time {now_ms} ms is outside the ULID range")
    return bulletin_id_from_bytes(now_ms.to_bytes(6, "big") + rng(10))


def bulletin_id_time_ms(bulletin_id: str) -> int:
    return int.from_bytes(bulletin_id_to_bytes(bulletin_id)[:6], "big")


def key_id(purpose: str, public_key: bytes) -> bytes:
    """The 8-byte id of a public key; ``purpose`` is ``"sign"`` or ``"box"``."""
    return hashlib.blake2b(public_key, digest_size=KEY_ID_BYTES, person=_KEY_ID_PERSON[purpose]).digest()
