"""NATS user nkeys: make a seed from passed-in randomness, read one back, derive its public key.

An nkey is an Ed25519 key in NATS's own encoding (a seed ``SU...``, a public key
``U...``). The server holds only public keys (in the config ``blo deploy nats-auth``
writes); each office holds its seed in a 0600 file and signs the server's nonce with it
when connecting. These keys are NATS's, not BLO Bus's: they authenticate a connection
and never sign or open a bulletin.
"""

from __future__ import annotations

from pathlib import Path

import nkeys

from bus.errors import KeyStoreError
from bus.ids import Rng
from bus.keystore import read_secret

SEED_BYTES = 32


def new_user_seed(rng: Rng) -> bytes:
    """A fresh user seed (``SU...``, ASCII) from ``rng``."""
    return bytes(nkeys.encode_seed(rng(SEED_BYTES), nkeys.PREFIX_BYTE_USER))


def public_key(seed: bytes) -> str:
    """The public user nkey (``U...``) of a user seed; KeyStoreError if it is not one."""
    try:
        pair = nkeys.from_seed(bytearray(seed.strip()))
        public = pair.public_key.decode()
    except Exception as exc:  # nkeys raises its own errors, binascii's and ValueError
        raise KeyStoreError(f"not a NATS user nkey seed ({type(exc).__name__})") from None
    if not public.startswith("U"):
        raise KeyStoreError("the nkey seed is not a user seed (it must start with SU)")
    return public


def read_seed(path: Path) -> bytes:
    """A seed file's seed; KeyStoreError naming the file if it is missing or not a user seed."""
    try:
        seed = read_secret(path, "nkey seed").strip()
    except OSError as exc:
        raise KeyStoreError(f"{path}: cannot read the nkey seed ({exc.strerror})") from None
    try:
        public_key(seed)
    except KeyStoreError as exc:
        raise KeyStoreError(f"{path}: {exc.message}") from None
    return seed
