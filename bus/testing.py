"""Helpers for tests, test vectors and benchmarks, shipped so users can test their
own integrations the same way (as trio ships ``trio.testing``)."""

from __future__ import annotations

import hashlib


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
