"""Page cursors: opaque to clients, a (time, sequence) position to the node.

Lists that grow while a person pages through them (stored bulletins, a centre's triage
queue) are read newest first from a cursor rather than an offset, so a page never
repeats or skips an item because new ones arrived meanwhile.
"""

from __future__ import annotations

import base64

from bus import errors


def encode_cursor(at: int, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{at}.{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    """``(at, seq)`` of a cursor ``encode_cursor`` gave; ValidationError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        at_text, seq_text = raw.split(".")
        at, seq = int(at_text), int(seq_text)
        if not (0 <= at < 1 << 63 and 0 <= seq < 1 << 63):  # beyond SQLite's INTEGER
            raise ValueError("out of range")
        return at, seq
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.ValidationError("cursor", "is not a cursor this node gave out; start again without it") from exc
