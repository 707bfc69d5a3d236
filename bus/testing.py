"""Helpers for tests, test vectors and benchmarks, shipped so users can test their
own integrations the same way (as trio ships ``trio.testing``)."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path

from bus.directory import Directory, make_inbox_key
from bus.keys import BoxKeyPair, Identity
from bus.timing import INBOX_KEY_LIFETIME_MS


class DeterministicRng:
    """A reproducible stand-in for ``nacl.utils.random``: BLAKE2b in counter mode over a
    seed. Never use it for real keys; it exists so vectors and tests are exact bytes."""

    def __init__(self, seed: bytes | str) -> None:
        self._seed = seed.encode() if isinstance(seed, str) else seed
        self._counter = 0

    def __call__(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            out += hashlib.blake2b(
                self._counter.to_bytes(8, "big"), key=self._seed[:64], digest_size=64, person=b"blo-test-rng"
            ).digest()
            self._counter += 1
        return bytes(out[:n])


def inbox_key(identity: Identity, *, now_ms: int, lifetime_ms: int = INBOX_KEY_LIFETIME_MS) -> tuple[bytes, Identity]:
    """A reproducible inbox key of ``identity`` made at ``now_ms`` (schemas/INBOX.md): its
    signed directory item, and ``identity`` with the key pair added to ``old_box``, so an
    ``Opener`` or ``FeedKeyring`` built from it opens what is sealed to the key. The same
    arguments give the same bytes."""
    seed = f"blo-bus test inbox key {identity.office_id} {identity.signing.kid.hex()} {now_ms}"
    pair = BoxKeyPair.generate(DeterministicRng(seed))
    item = make_inbox_key(identity.office_id, identity.signing, pair, now_ms=now_ms, lifetime_ms=lifetime_ms)
    return item, replace(identity, old_box=(*identity.old_box, pair))


def add_inbox_key(
    directory: Directory, identity: Identity, *, now_ms: int, lifetime_ms: int = INBOX_KEY_LIFETIME_MS
) -> Identity:
    """Make ``identity``'s inbox key at ``now_ms`` (``inbox_key``), apply it to ``directory``
    witnessed at ``now_ms``, and return the identity that opens what is sealed to it."""
    item, opener = inbox_key(identity, now_ms=now_ms, lifetime_ms=lifetime_ms)
    directory.apply(item, witnessed_at=now_ms)
    return opener


def render_vector(vector: dict) -> str:
    """One test vector as its file holds it: indented JSON, text as UTF-8, a final newline."""
    return json.dumps(vector, ensure_ascii=False, indent=2) + "\n"


def write_vectors(folder: Path, vectors: dict[str, dict]) -> None:
    """Write ``vectors`` (by name) as ``folder/<name>.json`` and remove the stale files there:
    what every ``schemas/vectors/<family>/generate.py`` does."""
    for stale in folder.glob("*.json"):
        if stale.stem not in vectors:
            stale.unlink()
    for name, v in vectors.items():
        (folder / f"{name}.json").write_text(render_vector(v), encoding="utf-8")
    print(f"wrote {len(vectors)} vectors to {folder}", file=sys.stderr)
