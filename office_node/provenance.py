"""A forward's provenance on this node: who may forward, and what its carried original
is, checked once against the directory and kept in the store beside the centre's own
(verified) signature.

A received forward is checked on its way in (``admit``, from the bus's admission hook:
a refusal quarantines it); a forward this node sends itself is checked by the same rule
when it is stored (``record``), so a centre's own forward is shown as its members see
it. What a reader is then shown, and as whose words, is ``views.attribution``'s
(ENVELOPE.md 8.1).
"""

from __future__ import annotations

from typing import Any

from bus import ORIGINAL_REFUSED, Bulletin, Directory, Provenance, verify_forward
from bus.errors import BloError, ForwardRefused
from office_node.store import Store

#: Forward checks kept between admission and hand-over; a forward admitted but never
#: handed over (a duplicate) is dropped with the rest when this many wait.
MAX_PENDING = 1024


def finding(p: Provenance) -> dict[str, Any]:
    """What the store keeps of a forward check (``verification["provenance"]``)."""
    return {
        "state": p.state,
        "forwarded_by": p.forwarded_by,
        "original_id": p.original_id,
        "original_sender": p.original_sender,
        "original_sign_kid": p.original_sign_kid.hex() if p.original_sign_kid else None,
        "original_sent_at": p.original_sent_at,
        "verified": p.verified,
        "redacted": p.redacted,
        "redacted_fields": list(p.redacted_fields),
        "reason": p.reason,
        "text": p.describe(),
    }


class ForwardChecks:
    def __init__(self, directory: Directory, store: Store) -> None:
        self.directory = directory
        self.store = store
        self._checked: dict[str, Provenance] = {}  # bulletin id -> its check at admission

    def admit(self, b: Bulletin) -> None:
        """A received forward: ``ForwardRefused`` when its sender is not a centre or its
        carried original does not stand. What the check found is kept for ``record``,
        so a forward is checked once on its way in."""
        record = self.directory.record(b.sender)
        if record is None or record.role != "centre":
            raise ForwardRefused(f"{b.sender} forwarded {b.id} but is not a centre; only centres forward", "not_centre")
        if len(self._checked) >= MAX_PENDING:
            self._checked.clear()
        self._checked[b.id] = verify_forward(b, self.directory)

    def record(self, b: Bulletin) -> None:
        """Keep what the check of stored forward ``b`` found beside its verification
        (the check made at admission, or one made now)."""
        try:
            provenance = finding(self._checked.pop(b.id, None) or verify_forward(b, self.directory))
        except BloError as exc:
            provenance = {"state": ORIGINAL_REFUSED, "verified": False, "reason": exc.reason, "text": exc.message}
        stored = self.store.get(b.id)
        if stored is not None:
            self.store.set_verification(
                b.id, verified=stored.verified, details={**stored.verification, "provenance": provenance}
            )
