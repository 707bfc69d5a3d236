"""Key files at rest: an ``Identity`` as a JSON file, its private keys sealed under a passphrase.

The file holds the public half in clear (so tools can show key ids without asking for
the passphrase) and the private half as one XChaCha20-Poly1305 ciphertext under a key
derived from the passphrase with argon2id. The clear half is the associated data, so
editing it breaks decryption; after decrypting, the public keys are recomputed from the
secrets and must match. ``"protection": "none"`` stores the secrets in clear and exists
only for demos and tests (``blo init --insecure-no-passphrase``): it must be chosen,
never fallen into.

argon2id cost. The default is libsodium's MODERATE (3 passes, 256 MiB, about 0.85 s on
the 2-core test machine): a node unlocks its key once at start and an operator runs a
centre command now and then, so a second of work is cheap for us and expensive for
someone guessing passphrases of a stolen laptop's key file; INTERACTIVE (64 MiB) is 10x
cheaper to attack for little gain in comfort. Tests pass ``FAST_KDF`` (the minimum).
A file names its own cost, so a reader CAPS it (``MAX_OPSLIMIT``, ``MAX_MEMLIMIT``):
a hostile file must not make ``blo`` allocate 64 GiB or spin for an hour.

Nothing here logs, and no error message contains key material or the passphrase.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.secret
import nacl.utils

from bus.bulletin import is_office_id
from bus.errors import KeyStoreError
from bus.ids import Rng
from bus.keys import BoxKeyPair, Identity, SigningKeyPair

FORMAT = "blo-identity/v1"
PROTECTION_ARGON2ID = "argon2id-xchacha20poly1305"
PROTECTION_NONE = "none"
MAX_FILE_BYTES = 64 * 1024
MAX_OLD_BOX_KEYS = 64


@dataclass(frozen=True, slots=True)
class KdfParams:
    opslimit: int
    memlimit: int


DEFAULT_KDF = KdfParams(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)
#: For tests only: the cheapest parameters libsodium accepts.
FAST_KDF = KdfParams(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)
#: The most a key file may ask of us when read (libsodium's SENSITIVE: 4 passes, 1 GiB).
MAX_OPSLIMIT = argon2id.OPSLIMIT_SENSITIVE
MAX_MEMLIMIT = argon2id.MEMLIMIT_SENSITIVE


def _public_part(identity: Identity) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "office": identity.office_id,
        "sign_public": identity.signing.public.hex(),
        "sign_kid": identity.signing.kid.hex(),
        "box_public": identity.box.public.hex(),
        "box_kid": identity.box.kid.hex(),
        "old_box": [{"public": k.public.hex(), "kid": k.kid.hex()} for k in identity.old_box],
    }


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _derive(passphrase: bytes, salt: bytes, kdf: KdfParams) -> bytes:
    return argon2id.kdf(nacl.secret.Aead.KEY_SIZE, passphrase, salt, opslimit=kdf.opslimit, memlimit=kdf.memlimit)


def encode_identity(
    identity: Identity,
    passphrase: bytes | None,
    *,
    kdf: KdfParams = DEFAULT_KDF,
    rng: Rng = nacl.utils.random,
) -> bytes:
    """The key file's bytes. ``passphrase=None`` writes the secrets unprotected."""
    public = _public_part(identity)
    secrets = {
        "sign_seed": identity.signing.seed.hex(),
        "box_secret": identity.box.secret.hex(),
        "old_box_secrets": [k.secret.hex() for k in identity.old_box],
    }
    if passphrase is None:
        # The office id is repeated inside the secrets so that a damaged clear half is
        # noticed. This guards against corruption only: an unprotected file has no
        # integrity against someone who edits both places, as it has no secrecy.
        doc = {**public, "protection": PROTECTION_NONE, "secrets": {**secrets, "office": identity.office_id}}
    else:
        if not passphrase:
            raise KeyStoreError("an empty passphrase protects nothing: choose one, or use --insecure-no-passphrase")
        salt = rng(argon2id.SALTBYTES)
        nonce = rng(nacl.secret.Aead.NONCE_SIZE)
        header = {
            **public,
            "protection": PROTECTION_ARGON2ID,
            "kdf": {"salt": salt.hex(), "opslimit": kdf.opslimit, "memlimit": kdf.memlimit},
            "nonce": nonce.hex(),
        }
        box = nacl.secret.Aead(_derive(passphrase, salt, kdf))
        sealed = box.encrypt(_canonical(secrets), _canonical(header), nonce).ciphertext
        doc = {**header, "ciphertext": sealed.hex()}
    return (json.dumps(doc, indent=2) + "\n").encode()


def _bad(problem: str) -> KeyStoreError:
    return KeyStoreError(f"the key file is damaged or not a BLO key file: {problem}")


def _hex(doc: dict[str, Any], key: str, size: int | None = None) -> bytes:
    value = doc.get(key)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or (size is not None and len(raw) != size):
        raise _bad(f"{key} is missing or not {size or 'some'} bytes of hex")
    return raw


def decode_identity(data: bytes, passphrase: bytes | None) -> Identity:
    """The ``Identity`` in a key file; ``KeyStoreError`` for anything wrong, with what to do."""
    if len(data) > MAX_FILE_BYTES:
        raise _bad(f"it is {len(data)} bytes, far more than a key file")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _bad("not JSON") from None
    if type(doc) is not dict or doc.get("format") != FORMAT:
        raise _bad(f"it is not a {FORMAT} file")
    office = doc.get("office")
    if not is_office_id(office):
        raise _bad("the office id is missing")
    protection = doc.get("protection")
    if protection == PROTECTION_NONE:
        secrets = doc.get("secrets")
        if type(secrets) is dict and secrets.get("office") != office:
            raise _bad("the office id in the clear half does not match the one kept with the secrets")
    elif protection == PROTECTION_ARGON2ID:
        secrets = _decrypt(doc, passphrase)
    else:
        raise _bad(f"unknown protection {protection!r}")
    if type(secrets) is not dict:
        raise _bad("the secret keys are missing")
    old = secrets.get("old_box_secrets")
    if type(old) is not list or len(old) > MAX_OLD_BOX_KEYS or not all(isinstance(x, str) for x in old):
        raise _bad("old_box_secrets must be a list of hex keys")
    identity = Identity(
        office_id=office,
        signing=SigningKeyPair.from_seed(_hex(secrets, "sign_seed", 32)),
        box=BoxKeyPair.from_secret(_hex(secrets, "box_secret", 32)),
        old_box=tuple(BoxKeyPair.from_secret(_hex({"k": x}, "k", 32)) for x in old),
    )
    # The clear half is what tools show; it must say what the secrets really are.
    if _public_part(identity) != {k: doc.get(k) for k in _public_part(identity)}:
        raise _bad("the public keys in the file do not match its private keys")
    return identity


def _decrypt(doc: dict[str, Any], passphrase: bytes | None) -> Any:
    if passphrase is None:
        raise KeyStoreError(
            "the key file is passphrase-protected: set BLO_PASSPHRASE or run interactively to be asked for it"
        )
    kdf_doc = doc.get("kdf")
    if type(kdf_doc) is not dict:
        raise _bad("the kdf parameters are missing")
    ops, mem = kdf_doc.get("opslimit"), kdf_doc.get("memlimit")
    if type(ops) is not int or type(mem) is not int:
        raise _bad("the kdf parameters must be whole numbers")
    if not argon2id.OPSLIMIT_MIN <= ops <= MAX_OPSLIMIT or not argon2id.MEMLIMIT_MIN <= mem <= MAX_MEMLIMIT:
        raise KeyStoreError(
            f"the key file asks for argon2id opslimit={ops}, memlimit={mem} bytes; this build accepts at most "
            f"opslimit={MAX_OPSLIMIT}, memlimit={MAX_MEMLIMIT} (a file demanding more is refused as hostile)"
        )
    salt = _hex(kdf_doc, "salt", argon2id.SALTBYTES)
    nonce = _hex(doc, "nonce", nacl.secret.Aead.NONCE_SIZE)
    ciphertext = _hex(doc, "ciphertext")
    header = {k: v for k, v in doc.items() if k != "ciphertext"}
    try:
        plain = nacl.secret.Aead(_derive(passphrase, salt, KdfParams(ops, mem))).decrypt(
            ciphertext, _canonical(header), nonce
        )
    except nacl.exceptions.CryptoError:
        raise KeyStoreError(
            "wrong passphrase for this key file (or the file was altered): check BLO_PASSPHRASE and try again"
        ) from None
    try:
        return json.loads(plain)
    except (ValueError, UnicodeDecodeError):
        raise _bad("the decrypted secrets are not JSON") from None


def is_protected(data: bytes) -> bool:
    """True when the key file needs a passphrase (False for an unprotected or unreadable one)."""
    try:
        return json.loads(data).get("protection") == PROTECTION_ARGON2ID
    except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
        return False


# -- files -------------------------------------------------------------------------------


def write_private_file(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` as mode 0600, atomically (temp file + rename), in a
    directory made 0700 if it has to be created. ``overwrite=False`` refuses an existing file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not overwrite and path.exists():
        raise KeyStoreError(f"{path} already exists; refusing to overwrite it")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp creates 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:  # link, unlike rename, fails when the target exists: no window for a race
                os.link(tmp, path)
            except FileExistsError:
                raise KeyStoreError(f"{path} already exists; refusing to overwrite it") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def save_identity(
    path: Path,
    identity: Identity,
    passphrase: bytes | None,
    *,
    kdf: KdfParams = DEFAULT_KDF,
    overwrite: bool = False,
    rng: Rng = nacl.utils.random,
) -> None:
    """Write a key file (0600, atomically; directory 0700). Refuses to overwrite unless told."""
    write_private_file(path, encode_identity(identity, passphrase, kdf=kdf, rng=rng), overwrite=overwrite)


def load_identity(path: Path, passphrase: bytes | None) -> Identity:
    """Read a key file; ``KeyStoreError`` when it is missing, damaged or the passphrase is wrong."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyStoreError(f"{path}: no key file here (create one with `blo init`)") from None
    except OSError as exc:
        raise KeyStoreError(f"{path}: cannot read the key file ({exc.strerror})") from None
    try:
        return decode_identity(data, passphrase)
    except KeyStoreError as exc:
        raise KeyStoreError(f"{path}: {exc.message}") from None
