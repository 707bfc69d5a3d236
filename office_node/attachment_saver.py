"""Saving received attachments to a folder, for ``blo subscribe --save-attachments DIR``.

The node fetches and checks every attachment itself (schemas/ATTACHMENTS.md 5.4, R1-R8);
this follows a received bulletin's files through the node's HTTP API and saves each one
once the node holds it whole and checked, as ``DIR/<bulletin id>/<name>``:

* the name is the sender's, so it is made safe first (``safe_name``): its last path
  component only, without control or format characters and the characters file systems
  refuse, never hidden, never ``.`` or ``..``;
* a file is written under a temporary name and renamed once whole and its SHA-256 is the
  one the signed bulletin gives, so a half-written or altered file never appears under
  its name; nothing already in the folder is overwritten (evidence is not replaced);
* files are private to the officer (0600, folders 0700).

An attachment the node refused (too large for its limits) or found corrupt is reported,
not saved; so is one that could not be saved here (its name taken twice, the download
broken), with the reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bus import ULID_PATTERN
from office_node.client import NodeClient
from office_node.errors import NodeUnavailable

#: What file systems refuse or shells trip on, beside control and format characters.
_REFUSED = set('/\\<>:"|?*')
MAX_NAME = 200
SAVED, CORRUPT, REFUSED, FAILED = "saved", "corrupt", "refused", "failed"
_ID = re.compile(ULID_PATTERN)


def safe_name(name: str, n: int) -> str:
    """A file name for the sender's ``name`` of attachment ``n`` that cannot leave its
    folder, hide, or carry invisible characters; ``attachment-<n>`` if nothing is left."""
    last = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(c for c in last if (c.isprintable() or c == " ") and c not in _REFUSED).strip()
    kept = kept.lstrip(".").strip()
    if len(kept) > MAX_NAME:
        stem, dot, ext = kept.rpartition(".")
        kept = kept[:MAX_NAME] if not dot or len(ext) > 16 else stem[: MAX_NAME - len(ext) - 1] + "." + ext
    return kept or f"attachment-{n}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one attachment of a followed bulletin."""

    bulletin_id: str
    n: int
    name: str
    state: str  # saved; corrupt, refused (by the node: R2-R7); failed (here: not saved, why in message)
    path: Path | None = None
    size: int | None = None
    sha256: str | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.bulletin_id,
            "n": self.n,
            "name": self.name,
            "state": self.state,
            "path": str(self.path) if self.path is not None else None,
            "size": self.size,
            "sha256": self.sha256,
            "message": self.message,
        }


class AttachmentSaver:
    """Follows received bulletins' attachments and saves each once complete on the node;
    ``report`` is called with each ``Outcome``."""

    def __init__(self, client: NodeClient, folder: Path, report: Callable[[Outcome], None]) -> None:
        self.client = client
        self.folder = folder
        self.report = report
        self._waiting: dict[str, dict[int, dict[str, Any]]] = {}  # bulletin id -> n -> attachment view
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    @property
    def idle(self) -> bool:
        """No followed bulletin still has files arriving."""
        return not self._waiting

    async def follow(self, bulletin_id: str) -> None:
        """Start following a received bulletin: save what is complete already, wait for the rest."""
        if not _ID.match(bulletin_id):
            raise NodeUnavailable(f"the node named a bulletin {bulletin_id!r}, which is not a bulletin id")
        view = await self.client.get(f"/api/bulletins/{bulletin_id}")
        files = {int(a["n"]): a for a in view.get("attachments") or ()}
        if files:
            self._waiting[bulletin_id] = files
            for n, a in sorted(files.items()):
                await self._settle(bulletin_id, n, a["state"], a.get("message"))

    async def on_event(self, data: dict[str, Any]) -> None:
        """An ``attachment`` event of the node's live stream: one file reached its end state."""
        bulletin_id, n = data.get("id"), data.get("n")
        if isinstance(bulletin_id, str) and isinstance(n, int) and n in self._waiting.get(bulletin_id, {}):
            await self._settle(bulletin_id, n, str(data.get("state")), None)

    async def _settle(self, bulletin_id: str, n: int, state: str, message: str | None) -> None:
        files = self._waiting.get(bulletin_id, {})
        attachment = files.get(n)
        if attachment is None or state not in ("complete", CORRUPT, REFUSED):
            return  # still arriving, or settled already
        del files[n]
        if not files:
            del self._waiting[bulletin_id]
        name = str(attachment["name"])
        if state != "complete":
            if message is None:  # an event gives only the reason code: ask the node for its words
                fresh = await self.client.get(f"/api/bulletins/{bulletin_id}")
                message = next((a.get("message") for a in fresh.get("attachments") or () if a.get("n") == n), None)
            self.report(Outcome(bulletin_id, n, name, state, message=message))
            return
        self.report(await self._save(bulletin_id, n, attachment))

    async def _save(self, bulletin_id: str, n: int, attachment: dict[str, Any]) -> Outcome:
        name = str(attachment["name"])
        folder = self.folder / bulletin_id
        folder.mkdir(mode=0o700, exist_ok=True)
        safe = safe_name(name, n)
        part = folder / f".{n}.part"
        digest = hashlib.sha256()

        def write(piece: bytes) -> None:
            digest.update(piece)
            out.write(piece)

        try:
            with open(part, "wb", opener=_private) as out:
                size = await self.client.download(f"/api/bulletins/{bulletin_id}/attachments/{n}", write)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != attachment["sha256"] or size != attachment["size"]:
                return Outcome(
                    bulletin_id, n, name, FAILED, size=size, sha256=digest.hexdigest(),
                    message="the file the node served is not the one the signed bulletin describes; not saved",
                )  # fmt: skip
            target = _place(part, [folder / safe, folder / f"{n}-{safe}"])
        except NodeUnavailable as exc:
            return Outcome(bulletin_id, n, name, FAILED, message=exc.message)
        except FileExistsError:
            return Outcome(bulletin_id, n, name, FAILED, message=f"{folder / safe} exists already; not overwritten")
        finally:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        return Outcome(bulletin_id, n, name, SAVED, target, size, digest.hexdigest())


def _place(part: Path, names: list[Path]) -> Path:
    """Give the finished ``part`` the first of ``names`` not taken (a hard link: never
    replaces a file, even one created meanwhile); FileExistsError if all are."""
    for name in names:
        try:
            os.link(part, name)
        except FileExistsError:
            continue
        return name
    raise FileExistsError(names[0])


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)
