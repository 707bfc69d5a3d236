"""Which clock decides: the witness-time rules of schemas/TRUST.md, pure.

Every signed item carries a *signed time* its signer chose (``sent_at``, ``issued_at``,
``created_at``, ``at_ms``), and a thief with a stolen key chooses it too. Every item a
node takes in also has a *witness time*: when the NATS server stored it (or, for an item
that came another way, when this node took it in). The rules here judge the signed time
and the signer's key by both, so that a revocation refuses whatever is stored after it,
however its signer dated it:

* T1 ``signed_at <= witnessed_at + MAX_FUTURE_SKEW_MS`` (nothing from the future);
* T2 ``witnessed_at - signed_at <= MAX_AGE_MS`` (bulletins and receipts: no old replay);
* T3 not ``signed_at >= revoked_at`` and not ``witnessed_at >= revoked_at + REVOCATION_GRACE_MS``;
* T4 ``valid_from <= signed_at < valid_until``.

Each format raises its own typed error from the ``TimeProblem`` these return (the
envelope ``FromFuture``/``TooOld``/``SenderKeyInvalid``, the directory and feeds their
``reason`` codes), so the rules are written once and every format applies them alike.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import Protocol

MINUTE_MS = 60_000
DAY_MS = 86_400_000

MAX_FUTURE_SKEW_MS = 5 * MINUTE_MS
MAX_AGE_MS = 30 * DAY_MS
REVOCATION_GRACE_MS = 2 * MINUTE_MS
EPOCH_GRACE_MS = 2 * MINUTE_MS
INBOX_KEY_ROTATE_MS = 7 * DAY_MS
INBOX_KEY_LIFETIME_MS = 30 * DAY_MS
MAX_INBOX_KEY_LIFETIME_MS = 31 * DAY_MS
INBOX_KEY_KEPT_MS = 61 * DAY_MS
EPOCH_KEY_KEPT_MS = 31 * DAY_MS
EPHEMERAL_KEY_LIFETIME_MS = 5 * MINUTE_MS


class KeyWindow(Protocol):
    """What the rules need of a signer's key (``bus.keys.PeerKeys`` has it)."""

    @property
    def valid_from(self) -> int: ...

    @property
    def valid_until(self) -> int | None: ...

    @property
    def revoked_at(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class TimeProblem:
    """Why an item's times refuse it. ``rule`` is T1-T4; ``kind`` is ``from_future``,
    ``too_old``, ``revoked``, ``not_yet_valid`` or ``expired``."""

    rule: str
    kind: str
    message: str


def wall_ms() -> int:
    """This machine's clock, in ms since the epoch: what a node reads as "now" (a witness
    time comes from the server instead when the server stored the message)."""
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    """``ms`` as an ISO 8601 UTC time, for messages a person reads."""
    try:
        return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"


def witness_time(stored_ms: int | None, now_ms: int) -> int:
    """The witness time of an item the server stored at ``stored_ms`` and this node took in
    at ``now_ms`` (TRUST.md 2.1, 2.3): the stored time, but never more than the allowed
    skew after this node's own clock; this node's clock when there is no stored time."""
    if stored_ms is None:
        return now_ms
    return min(stored_ms, now_ms + MAX_FUTURE_SKEW_MS)


def signed_time_problem(signed_at: int, witnessed_at: int, *, max_age_ms: int | None = None) -> TimeProblem | None:
    """T1, and T2 when ``max_age_ms`` is given (bulletins and receipts)."""
    if signed_at > witnessed_at + MAX_FUTURE_SKEW_MS:
        return TimeProblem(
            "T1", "from_future",
            f"it says it was signed at {iso(signed_at)}, after it was stored ({iso(witnessed_at)}) by more than "
            f"the allowed {MAX_FUTURE_SKEW_MS // MINUTE_MS} minutes: the signer's clock is wrong, or it is forged",
        )  # fmt: skip
    if max_age_ms is not None and witnessed_at - signed_at > max_age_ms:
        return TimeProblem(
            "T2", "too_old",
            f"it was signed at {iso(signed_at)} but stored only at {iso(witnessed_at)}, more than "
            f"{max_age_ms // DAY_MS} days later: a replay, or it waited too long; the sender must post it again",
        )  # fmt: skip
    return None


def revoked_for(revoked_at: int | None, signed_at: int | None, witnessed_at: int) -> bool:
    """T3: whether a key revoked at ``revoked_at`` is void for an item signed at
    ``signed_at`` (None: the item has no signed time, as a revocation) and witnessed at
    ``witnessed_at``."""
    if revoked_at is None:
        return False
    return (signed_at is not None and signed_at >= revoked_at) or witnessed_at >= revoked_at + REVOCATION_GRACE_MS


def key_problem(keys: KeyWindow, signed_at: int, witnessed_at: int, *, who: str) -> TimeProblem | None:
    """T3 then T4 for an item signed by ``keys`` (``who`` names the signer in the message)."""
    if revoked_for(keys.revoked_at, signed_at, witnessed_at):
        assert keys.revoked_at is not None
        return TimeProblem(
            "T3", "revoked",
            f"the key of {who} was revoked as of {iso(keys.revoked_at)}, and this was signed at {iso(signed_at)} "
            f"and stored at {iso(witnessed_at)}",
        )  # fmt: skip
    if signed_at < keys.valid_from:
        return TimeProblem("T4", "not_yet_valid", f"the key of {who} is not valid before {iso(keys.valid_from)}")
    if keys.valid_until is not None and signed_at >= keys.valid_until:
        return TimeProblem("T4", "expired", f"the key of {who} was valid only until {iso(keys.valid_until)}")
    return None
