"""The node home: where one office's (or centre's) keys, configuration and data live.

Layout (created by ``blo init``; folders 0700, key files 0600)::

    <home>/
      node.toml                      configuration (office, role, NATS, pinned centres)
      keys/identity.json             private keys (bus.keystore format)
      keys/inbox.keys                the node's inbox key ring (schemas/INBOX.md), made when it runs
      keys/enrolment-request.json    the latest request to give the centre (public keys)
      data/                          local store (node.toml's data_dir)
      data/directory.json            the verified local copy of the signed directory

The passphrase for a protected key file comes from ``BLO_PASSPHRASE`` when set, else from
the file ``BLO_PASSPHRASE_FILE`` names, else from an interactive prompt; with none,
loading fails with a message saying so. The variable is taken out of this process's
environment as it is read, so nothing started afterwards inherits it (child processes
get a scrubbed environment anyway: bus.transport.childenv). But the environment a
process was started with stays readable in ``/proc/<pid>/environ`` to its own user (and
root) for as long as it runs: a daemon should be given the file instead (systemd's
``LoadCredential=``, or any 0600 file its user alone can read), whose name is no secret.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bus import (
    FLOOR_KDF,
    Directory,
    Identity,
    KdfParams,
    anchors_from_hex,
    check_cost,
    check_new_passphrase,
    decode_identity,
    is_protected,
    read_private_file,
)
from bus.errors import KeyStoreError
from bus.transport import RING_FILE, DirectoryCache
from office_node.config import NodeConfig, load_config

PASSPHRASE_ENV = "BLO_PASSPHRASE"
#: A file holding the passphrase (its first line), for daemons: see the module's docstring.
PASSPHRASE_FILE_ENV = "BLO_PASSPHRASE_FILE"
#: ``blo keys passwd``'s new passphrase, for scripts (else it is asked for twice).
NEW_PASSPHRASE_ENV = "BLO_NEW_PASSPHRASE"
Prompt = Callable[[str], str]


@dataclass(frozen=True)
class NodeHome:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "node.toml"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def identity_path(self) -> Path:
        return self.keys_dir / "identity.json"

    @property
    def inbox_ring_path(self) -> Path:
        return self.keys_dir / RING_FILE

    @property
    def request_path(self) -> Path:
        return self.keys_dir / "enrolment-request.json"

    def create_layout(self) -> None:
        for folder in (self.root, self.keys_dir, self.root / "data"):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def config(self) -> NodeConfig:
        return load_config(self.config_path)

    def directory_cache(self, config: NodeConfig | None = None) -> DirectoryCache:
        data_dir = (config or self.config()).data_dir
        return DirectoryCache(data_dir / "directory.json")

    def open_directory(self, config: NodeConfig | None = None) -> tuple[Directory, DirectoryCache]:
        """The directory as the local copy has it, re-verified against the pinned centres."""
        config = config or self.config()
        directory = Directory(anchors_from_hex(config.trust_anchors))
        cache = self.directory_cache(config)
        cache.load_into(directory)
        return directory, cache


@dataclass(frozen=True)
class NodePaths:
    db: Path
    audit_key: Path
    audit_head: Path


def node_paths(home: Path, data_dir: Path | None = None) -> NodePaths:
    """Where the node database and the audit key live under the node home.

    The one place these paths are spelled: the daemon and the admin commands both call
    it. ``data_dir`` is node.toml's (default: ``<home>/data``; read from node.toml when
    the home has one). The audit key and head sit in ``keys/`` (0700, with the
    identity), not beside the database, so a copy of ``data/`` does not carry what is
    needed to forge the log.
    """
    if data_dir is None:
        config_path = NodeHome(home).config_path
        data_dir = load_config(config_path).data_dir if config_path.exists() else home / "data"
    return NodePaths(db=data_dir / "node.db", audit_key=home / "keys" / "audit.key", audit_head=home / "keys" / "audit.head")


def passphrase(prompt: Prompt | None = None, *, confirm: bool = False, env: str = PASSPHRASE_ENV) -> bytes:
    """The passphrase from the environment variable ``env`` (removed from the environment
    as it is read), else asked for. ``confirm``: a new passphrase, asked twice and held to
    the minimum length (``bus.keystore.check_new_passphrase``)."""
    from_env = os.environ.pop(env, None)
    if from_env is None and env == PASSPHRASE_ENV and not confirm:
        from_env = _passphrase_file(os.environ.pop(PASSPHRASE_FILE_ENV, None))
    if from_env is not None:
        if not from_env:
            raise KeyStoreError(f"{env} is set but empty")
        if confirm:
            check_new_passphrase(from_env.encode())
        return from_env.encode()
    if prompt is None:
        if not sys.stdin.isatty():
            raise KeyStoreError(
                f"the key file needs a passphrase: set {env} (or {PASSPHRASE_FILE_ENV} to a 0600 file holding it), "
                "or run in a terminal to be asked for it"
            )
        prompt = getpass.getpass
    first = prompt("New key passphrase: " if confirm else "Key passphrase: ")
    if not first:
        raise KeyStoreError("an empty passphrase protects nothing (use --insecure-no-passphrase for a demo)")
    if confirm:
        check_new_passphrase(first.encode())
    if confirm and prompt("Repeat the passphrase: ") != first:
        raise KeyStoreError("the two passphrases differ; nothing was written")
    return first.encode()


def _passphrase_file(name: str | None) -> str | None:
    """The first line of the passphrase file ``name`` (None: no file given), refused like a
    key file when other users could read or replace it."""
    if name is None:
        return None
    path = Path(name)
    if not path.is_file():
        raise KeyStoreError(f"{PASSPHRASE_FILE_ENV} names {name!r}, which is not a file")
    try:
        text = read_private_file(path).decode("utf-8")
    except UnicodeDecodeError:
        raise KeyStoreError(f"{path}: the passphrase file is not UTF-8 text") from None
    return text.split("\n", 1)[0].removesuffix("\r")


def load_home_identity(
    home: NodeHome, prompt: Prompt | None = None, *, min_kdf: KdfParams = FLOOR_KDF
) -> tuple[Identity, bytes | None]:
    """The node's identity and the passphrase that opened it (None for an unprotected file),
    so a command that rewrites the file (``blo keys rotate``) keeps the same protection.

    Refused before any passphrase is asked for: a key file open to other users, or one
    whose argon2id cost is below ``min_kdf`` (``FLOOR_KDF``; only ``blo keys passwd``,
    which re-encrypts such a file, passes less)."""
    path = home.identity_path
    data = read_private_file(path)
    try:
        check_cost(data, min_kdf=min_kdf)
        secret = passphrase(prompt) if is_protected(data) else None
        return decode_identity(data, secret, min_kdf=min_kdf), secret
    except KeyStoreError as exc:
        raise KeyStoreError(f"{path}: {exc.message}") from None
