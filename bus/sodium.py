"""The libsodium calls BLO Bus makes, in one place: AEAD, Ed25519, X25519.

Every function here has one meaning whatever path it takes:

* the **plain path** calls PyNaCl's public bindings (``nacl.bindings``);
* the **direct path** calls the same libsodium functions through PyNaCl's cffi module,
  without PyNaCl's wrappers. Those wrappers check every argument and format their error
  messages in advance, which costs more than encrypting a 32-byte content key, and a
  bulletin makes several such calls. The direct path checks here what libsodium needs
  (exact ``bytes``, key and nonce lengths, so nothing is over-read) and hands anything
  else to the plain path, which raises as PyNaCl always does.

``nacl._sodium`` is PyNaCl's private module, so the direct path is used only when it is
there with the expected functions (PyNaCl 1.5 and 1.6, the range pyproject.toml pins) and
can be switched off: ``BLO_SODIUM_PLAIN=1`` in the environment, or ``use_direct(False)``.
The test suite runs the envelope vectors and property tests on both paths.
"""

from __future__ import annotations

import os
from typing import Any

import nacl.bindings as nb
import nacl.exceptions

KEY_BYTES = 32
NONCE_BYTES = 24
TAG_BYTES = 16
SIGNATURE_BYTES = 64

#: Raised by ``aead_decrypt`` when the ciphertext does not authenticate (PyNaCl's own).
CryptoError = nacl.exceptions.CryptoError

try:
    from nacl._sodium import ffi as _ffi
    from nacl._sodium import lib as _lib

    _DIRECT: Any = (
        _lib.crypto_aead_xchacha20poly1305_ietf_encrypt,
        _lib.crypto_aead_xchacha20poly1305_ietf_decrypt,
        _lib.crypto_sign,
        _lib.crypto_sign_open,
    )
except (ImportError, AttributeError):  # another PyNaCl layout: the plain path only
    _ffi = _DIRECT = None

_direct = _DIRECT is not None and os.environ.get("BLO_SODIUM_PLAIN", "") in ("", "0")


def use_direct(on: bool) -> bool:
    """Switch the direct path on or off (it stays off where PyNaCl lacks it); returns
    whether it is now on. For tests and benchmarks."""
    global _direct
    _direct = bool(on) and _DIRECT is not None
    return _direct


def direct_available() -> bool:
    return _DIRECT is not None


def _aead_args(data: bytes, aad: bytes, nonce: bytes, key: bytes) -> bool:
    return (
        type(data) is bytes
        and type(aad) is bytes
        and type(nonce) is bytes
        and type(key) is bytes
        and len(nonce) == NONCE_BYTES
        and len(key) == KEY_BYTES
    )


def aead_encrypt(message: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes:
    """XChaCha20-Poly1305 (IETF): ciphertext || 16-byte tag."""
    if not _direct or not _aead_args(message, aad, nonce, key):
        return nb.crypto_aead_xchacha20poly1305_ietf_encrypt(message, aad, nonce, key)
    clen = len(message) + TAG_BYTES
    out = _ffi.new("unsigned char[]", clen)
    if _DIRECT[0](out, _ffi.NULL, message, len(message), aad, len(aad), _ffi.NULL, nonce, key) != 0:
        return nb.crypto_aead_xchacha20poly1305_ietf_encrypt(message, aad, nonce, key)
    return _ffi.buffer(out, clen)[:]


def aead_decrypt(ciphertext: bytes, aad: bytes, nonce: bytes, key: bytes) -> bytes:
    """The plaintext, or ``CryptoError`` when the ciphertext does not authenticate."""
    if not _direct or not _aead_args(ciphertext, aad, nonce, key) or len(ciphertext) < TAG_BYTES:
        return nb.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, aad, nonce, key)
    mlen = len(ciphertext) - TAG_BYTES
    out = _ffi.new("unsigned char[]", mlen)
    if _DIRECT[1](out, _ffi.NULL, _ffi.NULL, ciphertext, len(ciphertext), aad, len(aad), nonce, key) != 0:
        raise CryptoError("Decryption failed. Ciphertext failed verification")
    return _ffi.buffer(out, mlen)[:]


def sign(message: bytes, secret: bytes) -> bytes:
    """The 64-byte detached Ed25519 signature of ``message`` by the 64-byte libsodium secret key."""
    if not _direct or type(message) is not bytes or type(secret) is not bytes or len(secret) != 64:
        return nb.crypto_sign(message, secret)[:SIGNATURE_BYTES]
    out = _ffi.new("unsigned char[]", len(message) + SIGNATURE_BYTES)
    if _DIRECT[2](out, _ffi.NULL, message, len(message), secret) != 0:
        return nb.crypto_sign(message, secret)[:SIGNATURE_BYTES]
    return _ffi.buffer(out, SIGNATURE_BYTES)[:]


def verify(signature: bytes, message: bytes, public: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message`` by ``public``.
    False also for a key or signature of the wrong length (never an over-read)."""
    if type(signature) is not bytes or len(signature) != SIGNATURE_BYTES:
        return False
    return verify_signed(signature + message, public)


def verify_signed(signed: bytes, public: bytes) -> bool:
    """``verify`` for ``signed`` = signature || message, already joined (a caller that builds
    the message from parts joins them once, with the signature in front)."""
    if type(public) is not bytes or len(public) != KEY_BYTES or type(signed) is not bytes or len(signed) < SIGNATURE_BYTES:
        return False
    if not _direct:
        try:
            nb.crypto_sign_open(signed, public)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
            return False
        return True
    # crypto_sign_open without an output buffer: the message is neither allocated nor copied.
    return _DIRECT[3](_ffi.NULL, _ffi.NULL, signed, len(signed), public) == 0


def x25519(secret: bytes, public: bytes) -> bytes | None:
    """The raw X25519 shared secret, or None when ``public`` is not a usable key (wrong
    length, or a low-order point giving the all-zero output libsodium refuses)."""
    if type(secret) is not bytes or len(secret) != KEY_BYTES or type(public) is not bytes or len(public) != KEY_BYTES:
        return None
    try:
        return nb.crypto_scalarmult(secret, public)
    except nacl.exceptions.RuntimeError:
        return None


def x25519_public(secret: bytes) -> bytes:
    return nb.crypto_scalarmult_base(secret)
