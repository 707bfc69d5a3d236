"""Key material: an office's private keys, and what others know of them.

Every office and centre holds two key pairs with separate jobs (never reuse a key
across purposes):

* an **Ed25519 signing key** that signs bulletins, receipts and directory records;
* an **X25519 encryption key** ("box" key) with which content keys are wrapped for it.

``Identity`` is the private side; ``PeerKeys`` is the public side as the directory
knows it, with the validity window the envelope enforces. Both are plain values:
reading and writing key files (passphrase-encrypted) lives in ``bus.keystore``.
"""

from __future__ import annotations

from dataclasses import dataclass

import nacl.bindings as nb

from bus.ids import Rng, key_id


@dataclass(frozen=True, slots=True)
class SigningKeyPair:
    seed: bytes  # 32 bytes; the 64-byte libsodium secret key is derived from it
    secret: bytes  # 64 bytes (seed || public), the form crypto_sign takes
    public: bytes  # 32 bytes
    kid: bytes  # 8 bytes, see bus.ids.key_id

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKeyPair:
        public, secret = nb.crypto_sign_seed_keypair(seed)
        return cls(seed=seed, secret=secret, public=public, kid=key_id("sign", public))

    @classmethod
    def generate(cls, rng: Rng) -> SigningKeyPair:
        return cls.from_seed(rng(32))

    def sign(self, message: bytes) -> bytes:
        """A detached 64-byte Ed25519 signature."""
        return nb.crypto_sign(message, self.secret)[:64]


@dataclass(frozen=True, slots=True)
class BoxKeyPair:
    secret: bytes  # 32 bytes
    public: bytes  # 32 bytes
    kid: bytes

    @classmethod
    def from_secret(cls, secret: bytes) -> BoxKeyPair:
        public = nb.crypto_scalarmult_base(secret)
        return cls(secret=secret, public=public, kid=key_id("box", public))

    @classmethod
    def generate(cls, rng: Rng) -> BoxKeyPair:
        return cls.from_secret(rng(32))


@dataclass(frozen=True, slots=True)
class Identity:
    """An office's or centre's private keys. ``old_box`` keeps retired encryption keys
    after a rotation so bulletins sealed to them still open."""

    office_id: str
    signing: SigningKeyPair
    box: BoxKeyPair
    old_box: tuple[BoxKeyPair, ...] = ()

    @classmethod
    def generate(cls, office_id: str, rng: Rng) -> Identity:
        return cls(office_id, SigningKeyPair.generate(rng), BoxKeyPair.generate(rng))

    @property
    def box_keys(self) -> tuple[BoxKeyPair, ...]:
        return (self.box, *self.old_box)

    def public(self, *, valid_from: int = 0, valid_until: int | None = None) -> PeerKeys:
        return PeerKeys(
            office_id=self.office_id,
            sign_public=self.signing.public,
            sign_kid=self.signing.kid,
            box_public=self.box.public,
            box_kid=self.box.kid,
            valid_from=valid_from,
            valid_until=valid_until,
        )


@dataclass(frozen=True, slots=True)
class PeerKeys:
    """The public keys of one office as a verified directory record states them."""

    office_id: str
    sign_public: bytes
    sign_kid: bytes
    box_public: bytes
    box_kid: bytes
    valid_from: int = 0  # ms since epoch
    valid_until: int | None = None
    revoked_at: int | None = None

    def problem_at(self, at_ms: int) -> str | None:
        """Why these keys may not be used at ``at_ms``, or None when they may."""
        if self.revoked_at is not None and at_ms >= self.revoked_at:
            return f"the keys of {self.office_id} were revoked at {self.revoked_at} ms"
        if at_ms < self.valid_from:
            return f"the keys of {self.office_id} are not valid before {self.valid_from} ms"
        if self.valid_until is not None and at_ms >= self.valid_until:
            return f"the keys of {self.office_id} expired at {self.valid_until} ms"
        return None


class PeerBook:
    """An in-memory map of office -> known public keys, implementing ``KeyResolver``.

    The signed directory (``bus.directory``) is the real source of ``PeerKeys`` and
    implements the same protocol; this is for tests, vectors and the offline demo.
    """

    def __init__(self, peers: list[PeerKeys] | tuple[PeerKeys, ...] = ()) -> None:
        self._by_sign_kid: dict[tuple[str, bytes], PeerKeys] = {}
        for peer in peers:
            self.add(peer)

    def add(self, peer: PeerKeys) -> None:
        self._by_sign_kid[(peer.office_id, peer.sign_kid)] = peer

    def sender_keys(self, office_id: str, sign_kid: bytes) -> PeerKeys | None:
        return self._by_sign_kid.get((office_id, sign_kid))
