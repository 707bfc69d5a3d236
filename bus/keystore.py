"""Key files at rest: an ``Identity`` as a JSON file, its private keys sealed under a passphrase.

The file holds the public half in clear (so tools can show key ids without asking for
the passphrase) and the private half as one XChaCha20-Poly1305 ciphertext under a key
derived from the passphrase with argon2id. The clear half is the associated data, so
editing it breaks decryption; after decrypting, the public keys are recomputed from the
secrets and must match. ``"protection": "none"`` stores the secrets in clear and exists
only for demos and tests (``blo init --insecure-no-passphrase``): it must be chosen,
never fallen into.

argon2id cost. The default is libsodium's MODERATE (3 passes, 256 MiB, about 0.4-0.85 s
on the 2-core test machine): a node unlocks its key once at start and an operator runs a
centre command now and then, so a second of work is cheap for us and expensive for
someone guessing passphrases of a stolen laptop's key file; INTERACTIVE (64 MiB) is 10x
cheaper to attack for little gain in comfort. A file names its own cost, so a reader
bounds it on both sides before deriving anything:

* a FLOOR (``FLOOR_KDF``: 3 passes and 64 MiB, RFC 9106's second recommended setting and
  well above OWASP's argon2id minimum of 19 MiB x 2 passes): a file written cheaper is
  cheap to guess once stolen, so it is refused with the command that re-encrypts it
  (``blo keys passwd``), not opened silently. Tests write ``FAST_KDF`` (libsodium's
  minimum) for speed and read it back by saying so (``min_kdf=FAST_KDF``); only
  ``blo keys passwd`` does the same in production, to re-encrypt such a file.
* a CAP (``MAX_OPSLIMIT``, ``MAX_MEMLIMIT``): a hostile file must not make ``blo``
  allocate 64 GiB or spin for an hour.

A new passphrase has at least ``MIN_PASSPHRASE_CHARS`` (12) Unicode code points, and a key
file is opened only when no other user can read or change it (``read_private_file``).

Nothing here logs, and no error message contains key material or the passphrase.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
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


MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class KdfParams:
    opslimit: int
    memlimit: int

    def describe(self) -> str:
        return f"opslimit={self.opslimit}, memlimit={self.memlimit} bytes ({self.memlimit / MIB:g} MiB)"


DEFAULT_KDF = KdfParams(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)
#: The least a key file may cost to guess: both at least this (schemas/DIRECTORY.md 8).
FLOOR_KDF = KdfParams(3, 64 * MIB)
#: libsodium's minimum: what tests write for speed (and read back with ``min_kdf=FAST_KDF``),
#: and what ``blo keys passwd`` still opens in order to re-encrypt it. Never a default.
FAST_KDF = KdfParams(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)
#: A new passphrase's minimum length, in Unicode code points.
MIN_PASSPHRASE_CHARS = 12
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


def check_new_passphrase(passphrase: bytes) -> None:
    """``KeyStoreError`` unless ``passphrase`` may protect a new key file: UTF-8 text of at
    least ``MIN_PASSPHRASE_CHARS`` code points. (Reading never asks this: an old file with a
    shorter passphrase still opens, and ``blo keys passwd`` gives it a longer one.)"""
    if not passphrase:
        raise KeyStoreError("an empty passphrase protects nothing: choose one, or use --insecure-no-passphrase")
    try:
        length = len(passphrase.decode("utf-8"))
    except UnicodeDecodeError:
        raise KeyStoreError("the passphrase is not UTF-8 text; choose one typed in a UTF-8 terminal") from None
    if length < MIN_PASSPHRASE_CHARS:
        raise KeyStoreError(
            f"the passphrase has {length} characters; a key file needs at least {MIN_PASSPHRASE_CHARS} "
            "(a few unrelated words make a good one; `blo keys passwd` gives an existing key file a new one), "
            "or --insecure-no-passphrase for a demo"
        )


def _check_cost(kdf: KdfParams, min_kdf: KdfParams) -> None:
    """The cap and the floor, before any work (``min_kdf`` is ``FLOOR_KDF`` but in tests
    and ``blo keys passwd``; it is never below libsodium's own minimum)."""
    low = max(min_kdf.opslimit, argon2id.OPSLIMIT_MIN), max(min_kdf.memlimit, argon2id.MEMLIMIT_MIN)
    if kdf.opslimit > MAX_OPSLIMIT or kdf.memlimit > MAX_MEMLIMIT:
        raise KeyStoreError(
            f"the key file asks for argon2id {kdf.describe()}; this build accepts at most "
            f"opslimit={MAX_OPSLIMIT}, memlimit={MAX_MEMLIMIT} (a file demanding more is refused as hostile)"
        )
    if kdf.opslimit < low[0] or kdf.memlimit < low[1]:
        raise KeyStoreError(
            f"the key file's passphrase is protected by argon2id {kdf.describe()}, below this build's floor "
            f"({KdfParams(*low).describe()}): a stolen copy would be cheap to guess. Re-encrypt it at the "
            "default cost with `blo keys passwd` (it asks for the current passphrase and a new one)"
        )


def encode_identity(
    identity: Identity,
    passphrase: bytes | None,
    *,
    kdf: KdfParams = DEFAULT_KDF,
    min_kdf: KdfParams = FLOOR_KDF,
    rng: Rng = nacl.utils.random,
) -> bytes:
    """The key file's bytes. ``passphrase=None`` writes the secrets unprotected; a passphrase
    must pass ``check_new_passphrase`` and ``kdf`` must be within the floor (``min_kdf``,
    lowered only by tests) and the cap."""
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
        check_new_passphrase(passphrase)
        _check_cost(kdf, min_kdf)
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


def decode_identity(data: bytes, passphrase: bytes | None, *, min_kdf: KdfParams = FLOOR_KDF) -> Identity:
    """The ``Identity`` in a key file; ``KeyStoreError`` for anything wrong, with what to do.

    ``min_kdf`` is the cost floor: production readers leave it at ``FLOOR_KDF``; tests and
    ``blo keys passwd`` (which re-encrypts a weak file) pass ``FAST_KDF``."""
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
        secrets = _decrypt(doc, passphrase, min_kdf)
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


def _kdf_of(doc: dict[str, Any], min_kdf: KdfParams) -> KdfParams:
    kdf_doc = doc.get("kdf")
    if type(kdf_doc) is not dict:
        raise _bad("the kdf parameters are missing")
    ops, mem = kdf_doc.get("opslimit"), kdf_doc.get("memlimit")
    if type(ops) is not int or type(mem) is not int:
        raise _bad("the kdf parameters must be whole numbers")
    kdf = KdfParams(ops, mem)
    _check_cost(kdf, min_kdf)
    return kdf


def check_cost(data: bytes, *, min_kdf: KdfParams = FLOOR_KDF) -> None:
    """``KeyStoreError`` when ``data`` is a passphrase-protected key file whose argon2id cost
    is below the floor or above the cap; nothing otherwise (``decode_identity`` reports any
    other problem). Lets a caller refuse a weak file before asking for its passphrase."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return
    kdf = doc.get("kdf") if type(doc) is dict and doc.get("protection") == PROTECTION_ARGON2ID else None
    if type(kdf) is dict and type(kdf.get("opslimit")) is int and type(kdf.get("memlimit")) is int:
        _check_cost(KdfParams(kdf["opslimit"], kdf["memlimit"]), min_kdf)


def _decrypt(doc: dict[str, Any], passphrase: bytes | None, min_kdf: KdfParams) -> Any:
    kdf = _kdf_of(doc, min_kdf)  # refused before the passphrase is even asked for
    if passphrase is None:
        raise KeyStoreError(
            "the key file is passphrase-protected: set BLO_PASSPHRASE or run interactively to be asked for it"
        )
    salt = _hex(doc["kdf"], "salt", argon2id.SALTBYTES)
    nonce = _hex(doc, "nonce", nacl.secret.Aead.NONCE_SIZE)
    ciphertext = _hex(doc, "ciphertext")
    header = {k: v for k, v in doc.items() if k != "ciphertext"}
    try:
        plain = nacl.secret.Aead(_derive(passphrase, salt, kdf)).decrypt(ciphertext, _canonical(header), nonce)
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
    min_kdf: KdfParams = FLOOR_KDF,
    overwrite: bool = False,
    rng: Rng = nacl.utils.random,
) -> None:
    """Write a key file (0600, atomically; directory 0700). Refuses to overwrite unless told."""
    data = encode_identity(identity, passphrase, kdf=kdf, min_kdf=min_kdf, rng=rng)
    write_private_file(path, data, overwrite=overwrite)


def _chmod_hint(path: Path, mode: int) -> str:
    return f"`chmod {mode:o} {shlex.quote(str(path))}`"


def read_secret(path: Path, what: str, *, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a file that holds a secret (``what``: "key file", "nkey seed", "API
    token"...), refused (``KeyStoreError``, with the chmod to run) when other users could
    read or change it: the file has no group or other permission bits
    (``mode & 0o077 == 0``) and its folder is writable by its owner only
    (``mode & 0o022 == 0``), else someone could swap the file. The mode is read from the
    open file, so it is the mode of the bytes read. ``OSError`` (a missing file) is the
    caller's to word."""
    folder = path.parent
    folder_mode = stat.S_IMODE(os.stat(folder).st_mode)
    with open(path, "rb") as f:
        file_mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if file_mode & 0o077:
            raise KeyStoreError(
                f"{path} is open to other users (mode {file_mode:04o}): anyone who can read the {what} can use it "
                f"(or, for a protected key file, try passphrases offline). Run {_chmod_hint(path, 0o600)}, "
                "and consider it exposed if others could have copied the file"
            )
        if folder_mode & 0o022:
            raise KeyStoreError(
                f"{folder} can be written by other users (mode {folder_mode:04o}), who could replace the {what} "
                f"in it. Run {_chmod_hint(folder, 0o700)}"
            )
        return f.read(limit + 1)


def read_private_file(path: Path) -> bytes:
    """A key file's bytes (``read_secret``), with a missing or unreadable file said so."""
    try:
        data = read_secret(path, "key file")
    except FileNotFoundError:
        raise KeyStoreError(f"{path}: no key file here (create one with `blo init`)") from None
    except OSError as exc:
        raise KeyStoreError(f"{path}: cannot read the key file ({exc.strerror})") from None
    return data


def load_identity(path: Path, passphrase: bytes | None, *, min_kdf: KdfParams = FLOOR_KDF) -> Identity:
    """Read a key file; ``KeyStoreError`` when it is missing, open to other users, damaged,
    below the cost floor (``min_kdf``: see ``decode_identity``) or the passphrase is wrong."""
    data = read_private_file(path)
    try:
        return decode_identity(data, passphrase, min_kdf=min_kdf)
    except KeyStoreError as exc:
        raise KeyStoreError(f"{path}: {exc.message}") from None
