"""Signed heartbeats: each office node says "I am here, and this is how I am" every
minute or so on ``blo.hb.<OFFICE>``, and the centre draws its country's network from the
latest heartbeat of each office. Pure: bytes in, values out; time is passed in.

A heartbeat travels **signed, not encrypted**, like a receipt: it holds counts and times
(no bulletin content, no ids), and the stream keeps only the latest per office. Signing
stops anyone with access to the stream from making a dead office look alive, or a
healthy one look stuck. ``schemas/HEARTBEAT.md`` specifies the bytes.

Wire form (msgpack)::

    heartbeat = [body: bin, signature: bin(64)]
    body      = [version=1, office, sign_kid: bin(8), sent_at, online_since,
                 outbox_depth, outbox_oldest_at|nil, unacked_flash, last_sent_at|nil,
                 last_received_at|nil, key_expires_at|nil, software, utc_offset_min,
                 daily: [[sent, received] x 7]]

The signature is Ed25519 over ``HEARTBEAT_LABEL || body``. ``daily`` counts bulletins
sent and received per local day (the office's ``utc_offset_min``), oldest first, the
last being the day that holds ``sent_at``: the centre's 7-day chart needs nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bus import errors, signed, timing
from bus.bulletin import is_office_id
from bus.envelope import KeyResolver
from bus.ids import KEY_ID_BYTES
from bus.keys import Identity

HEARTBEAT_VERSION = 1
HEARTBEAT_LABEL = b"blo-bus/v1 heartbeat\x00"
#: A real heartbeat is about 200 bytes; the stream's message limit is 4 KiB.
MAX_HEARTBEAT_BYTES = 1024
SIGNATURE_BYTES = signed.SIGNATURE_BYTES
DAYS = 7
DAY_MS = 86_400_000
MAX_COUNT = (1 << 32) - 1
MAX_TIME_MS = (1 << 48) - 1
#: Every real UTC offset is a multiple of 15 minutes from -12:00 to +14:00.
MIN_UTC_OFFSET_MIN, MAX_UTC_OFFSET_MIN = -720, 840
_SOFTWARE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}\Z")
_FIELDS = 14


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What an office node reports about itself (everything but who and when)."""

    online_since: int  # ms: when this node process started
    software: str  # e.g. "0.1.0"
    outbox_depth: int = 0  # bulletins not yet acknowledged by JetStream
    outbox_oldest_at: int | None = None  # ms the oldest of them was queued; None when the outbox is empty
    unacked_flash: int = 0  # FLASH bulletins sent and not yet acknowledged by a recipient
    last_sent_at: int | None = None
    last_received_at: int | None = None
    key_expires_at: int | None = None  # valid_until of its directory record
    utc_offset_min: int = 0  # the office's local time, for the day boundaries of ``daily``
    daily: tuple[tuple[int, int], ...] = field(default=((0, 0),) * DAYS)  # (sent, received), oldest first


@dataclass(frozen=True, slots=True)
class DayCount:
    start_ms: int  # local midnight, as ms since the epoch
    sent: int
    received: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    office: str
    sign_kid: bytes
    sent_at: int
    status: NodeStatus

    def days(self) -> tuple[DayCount, ...]:
        """The 7 days of ``daily`` with their start times, oldest first."""
        starts = day_starts(self.sent_at, self.status.utc_offset_min)
        return tuple(DayCount(s, sent, rcvd) for s, (sent, rcvd) in zip(starts, self.status.daily, strict=True))

    @property
    def outbox_lag_ms(self) -> int | None:
        """How long the oldest queued bulletin had waited when this was sent (None: empty outbox)."""
        oldest = self.status.outbox_oldest_at
        return None if oldest is None else max(0, self.sent_at - oldest)


def day_starts(now_ms: int, utc_offset_min: int) -> tuple[int, ...]:
    """Start (local midnight, in ms since the epoch) of each of the 7 days ending with
    the one holding ``now_ms``, oldest first: the buckets ``NodeStatus.daily`` counts in."""
    offset = utc_offset_min * 60_000
    today = (now_ms + offset) // DAY_MS * DAY_MS - offset
    return tuple(today - (DAYS - 1 - i) * DAY_MS for i in range(DAYS))


def day_index(at_ms: int, now_ms: int, utc_offset_min: int) -> int | None:
    """Which of the 7 buckets (0 oldest ... 6 today) ``at_ms`` falls in, or None."""
    first = day_starts(now_ms, utc_offset_min)[0]
    i = (at_ms - first) // DAY_MS
    return i if 0 <= i < DAYS else None


# -- encoding --------------------------------------------------------------------------


def _is_uint(value: Any, limit: int) -> bool:
    return type(value) is int and 0 <= value <= limit


def _is_time(value: Any, *, optional: bool = False) -> bool:
    return (optional and value is None) or _is_uint(value, MAX_TIME_MS)


def _problem(fields: list[Any]) -> str | None:
    """Why a heartbeat body (after the version) is malformed, or None. The one list of
    rules, shared by signing (ValidationError) and decoding (MalformedEnvelope)."""
    (office, kid, sent_at, online_since, depth, oldest, flash, last_sent, last_received, expires, software,
     offset, daily) = fields  # fmt: skip
    if not is_office_id(office):
        return "the office must be an office id such as TH-MUK"
    if type(kid) is not bytes or len(kid) != KEY_ID_BYTES:
        return f"the signing key id must be {KEY_ID_BYTES} bytes"
    if not _is_time(sent_at) or not _is_time(online_since):
        return "sent-at and online-since must be times in whole ms since 1970"
    if not _is_uint(depth, MAX_COUNT) or not _is_uint(flash, MAX_COUNT):
        return "the outbox depth and unacknowledged FLASH count must be whole numbers below 2^32"
    if not _is_time(oldest, optional=True) or (oldest is None) != (depth == 0):
        return "the oldest outbox time must be given exactly when the outbox is not empty"
    if not all(_is_time(t, optional=True) for t in (last_sent, last_received, expires)):
        return "the last sent, last received and key expiry times must be ms since 1970 or nil"
    if type(software) is not str or _SOFTWARE.match(software) is None:
        return "the software version must be 1-32 letters, digits, '.', '+', '_' or '-', such as 0.1.0"
    if type(offset) is not int or not MIN_UTC_OFFSET_MIN <= offset <= MAX_UTC_OFFSET_MIN or offset % 15:
        return "the UTC offset must be whole minutes from -720 to 840, a multiple of 15"
    if (
        type(daily) not in (list, tuple)
        or len(daily) != DAYS
        or not all(
            type(d) in (list, tuple) and len(d) == 2 and _is_uint(d[0], MAX_COUNT) and _is_uint(d[1], MAX_COUNT)
            for d in daily
        )
    ):
        return f"the daily counts must be {DAYS} pairs [sent, received] of whole numbers below 2^32"
    return None


def sign_heartbeat(identity: Identity, status: NodeStatus, *, now_ms: int) -> bytes:
    """The wire bytes of ``identity``'s heartbeat, sent at ``now_ms``."""
    s = status
    fields = [
        identity.office_id, identity.signing.kid, now_ms, s.online_since, s.outbox_depth, s.outbox_oldest_at,
        s.unacked_flash, s.last_sent_at, s.last_received_at, s.key_expires_at, s.software, s.utc_offset_min, s.daily,
    ]  # fmt: skip
    problem = _problem(fields)
    if problem is not None:
        raise errors.ValidationError("heartbeat", problem)
    return signed.seal_pair(HEARTBEAT_LABEL, [HEARTBEAT_VERSION, *fields], identity.signing)


# -- decoding --------------------------------------------------------------------------


def decode_heartbeat(data: bytes) -> tuple[Heartbeat, bytes, bytes]:
    """Parse without verifying: ``(heartbeat, body, signature)``. Only ``EnvelopeError``s."""
    pair = signed.decode_pair(
        data, what="heartbeat", limit=MAX_HEARTBEAT_BYTES, version=HEARTBEAT_VERSION, arity=_FIELDS,
        fail=signed.envelope_fail,
    )  # fmt: skip
    fields, body, signature = pair.fields, pair.body, pair.signature
    problem = _problem(fields[1:])
    if problem is not None:
        raise errors.MalformedEnvelope(f"heartbeat: {problem}")
    (office, kid, sent_at, online_since, depth, oldest, flash, last_sent, last_received, expires, software,
     offset, daily) = fields[1:]  # fmt: skip
    status = NodeStatus(
        online_since=online_since,
        software=software,
        outbox_depth=depth,
        outbox_oldest_at=oldest,
        unacked_flash=flash,
        last_sent_at=last_sent,
        last_received_at=last_received,
        key_expires_at=expires,
        utc_offset_min=offset,
        daily=tuple((d[0], d[1]) for d in daily),
    )
    return Heartbeat(office, kid, sent_at, status), body, signature


def open_heartbeat(data: bytes, resolver: KeyResolver, *, witnessed_at: int, office: str | None = None) -> Heartbeat:
    """Verify a heartbeat stored at ``witnessed_at``; one ``EnvelopeError`` if it fails.

    ``office``: the office its subject names (``blo.hb.<OFFICE>``); another signer is
    ``Misrouted``. Times as schemas/TRUST.md says: the signed sent-at may not run ahead of
    the witness time (``FromFuture``: a dead office made to look alive), and the key is
    judged at sent-at and, for a revocation, by the witness time too.
    """
    hb, body, signature = decode_heartbeat(data)
    problem = timing.signed_time_problem(hb.sent_at, witnessed_at)
    if problem is not None:
        raise errors.FromFuture(f"heartbeat from {hb.office} refused: {problem.message}")
    keys = resolver.sender_keys(hb.office, hb.sign_kid)
    if keys is None:
        raise errors.UnknownSender(
            f"no directory record for {hb.office} with signing key {hb.sign_kid.hex()}; "
            "kept for retry when the directory updates"
        )
    key_problem = timing.key_problem(keys, hb.sent_at, witnessed_at, who=hb.office)
    if key_problem is not None:
        raise errors.SenderKeyInvalid(f"heartbeat rejected: {key_problem.message}")
    if not signed.verifies(signature, HEARTBEAT_LABEL, body, keys.sign_public):
        raise errors.BadSignature(f"the heartbeat signature does not verify for {hb.office}: forged or altered")
    if office is not None and office != hb.office:
        raise errors.Misrouted(f"a heartbeat signed by {hb.office} came on the subject of {office}")
    return hb


# -- the centre's view -----------------------------------------------------------------

ONLINE = "online"
SILENT = "silent"
NEVER_SEEN = "never_seen"

#: Flags an office can carry in the network view, for the page and for alerts.
FLAGS = ("silent", "never_seen", "outbox_lag", "unacked_flash", "key_expiring", "key_expired", "clock_ahead")


@dataclass(frozen=True, slots=True)
class OfficeView:
    """One office in the network view; the figures are those of its latest heartbeat."""

    office: str
    state: str  # ONLINE, SILENT or NEVER_SEEN
    flags: tuple[str, ...]
    heartbeat: Heartbeat | None
    last_seen: int | None  # the latest heartbeat's sent-at
    age_ms: int | None  # now - last_seen (negative if the office's clock is ahead)
    outbox_depth: int
    outbox_lag_ms: int | None
    unacked_flash: int
    key_expires_at: int | None


@dataclass(frozen=True, slots=True)
class NetworkView:
    at_ms: int
    offices: tuple[OfficeView, ...]

    def count(self, state: str) -> int:
        return sum(1 for o in self.offices if o.state == state)

    @property
    def flagged(self) -> tuple[OfficeView, ...]:
        """Offices needing attention: silent, never seen, or carrying any flag."""
        return tuple(o for o in self.offices if o.flags)


def network_view(
    heartbeats: Iterable[Heartbeat],
    offices: Sequence[str],
    now_ms: int,
    silent_after_ms: int,
    *,
    key_warning_days: int = 30,
    outbox_lag_after_ms: int = 5 * 60_000,
    key_expiry: Mapping[str, int | None] | None = None,
) -> NetworkView:
    """Each of ``offices`` (a country's, from the directory) as online, silent (latest
    heartbeat older than ``silent_after_ms``) or never seen, with its flags.

    Only the latest heartbeat per office counts; heartbeats of other offices are ignored.
    ``key_expiry`` (office -> valid_until from the centre's own directory) overrides
    what the heartbeats report, and covers offices never seen.
    """
    latest: dict[str, Heartbeat] = {}
    for hb in heartbeats:
        held = latest.get(hb.office)
        if held is None or hb.sent_at > held.sent_at:
            latest[hb.office] = hb
    views = []
    for office in offices:
        hb = latest.get(office)
        flags: list[str] = []
        if hb is None:
            state, age = NEVER_SEEN, None
            flags.append("never_seen")
        else:
            age = now_ms - hb.sent_at
            state = ONLINE if age <= silent_after_ms else SILENT
            if state == SILENT:
                flags.append("silent")
        lag = None if hb is None else hb.outbox_lag_ms
        if lag is not None and lag >= outbox_lag_after_ms:
            flags.append("outbox_lag")
        flash = 0 if hb is None else hb.status.unacked_flash
        if flash:
            flags.append("unacked_flash")
        if key_expiry is not None and office in key_expiry:
            expires = key_expiry[office]
        else:
            expires = None if hb is None else hb.status.key_expires_at
        if expires is not None and expires <= now_ms:
            flags.append("key_expired")
        elif expires is not None and expires - now_ms <= key_warning_days * DAY_MS:
            flags.append("key_expiring")
        if age is not None and -age > silent_after_ms:
            flags.append("clock_ahead")
        views.append(
            OfficeView(
                office=office,
                state=state,
                flags=tuple(flags),
                heartbeat=hb,
                last_seen=None if hb is None else hb.sent_at,
                age_ms=age,
                outbox_depth=0 if hb is None else hb.status.outbox_depth,
                outbox_lag_ms=lag,
                unacked_flash=flash,
                key_expires_at=expires,
            )
        )
    return NetworkView(now_ms, tuple(views))
