"""Builders shared by the feed tests: identities, and a directory that pins both centres."""

from __future__ import annotations

import time

from bus.directory import Directory, centre_self_record, enrol_office, make_request, read_request
from bus.keys import Identity
from bus.testing import inbox_key
from tests.helpers import NOW, identity

DAY = 86_400_000
YEAR = 365 * DAY
HOUR = 3_600_000
FEED = "mekong-border"
#: When every node below made the inbox keys the directory holds (each valid 30 days): an
#: hour before NOW for the tests that run on NOW, and the start of today for those whose
#: items a real server stores (at today's time).
INBOX_AT = (NOW - HOUR, time.time_ns() // 1_000_000 // DAY * DAY)


def _with_inbox(ident: Identity) -> Identity:
    """The identity as its node holds it: with its inbox key pairs (senders and grants seal to them)."""
    for at in INBOX_AT:
        ident = inbox_key(ident, now_ms=at)[1]
    return ident


TH_C, LA_C = _with_inbox(identity("TH-TCCC")), _with_inbox(identity("LA-TCCC"))
MUK, NKP, SVK, THK = (_with_inbox(identity(o)) for o in ("TH-MUK", "TH-NKP", "LA-SVK", "LA-THK"))
ANCHORS = {"TH-TCCC": TH_C.signing.public, "LA-TCCC": LA_C.signing.public}


def enrol(ident: Identity, centre: Identity, *, seq: int = 1, at: int = NOW - HOUR) -> bytes:
    req = read_request(make_request(ident, name="BLO", country=ident.office_id[:2], role="office", now_ms=at))
    return enrol_office(req, centre, sequence=seq, now_ms=at, valid_until=at + YEAR)


def apply_inbox_keys(d: Directory, *who: Identity) -> None:
    """Apply the inbox keys ``who`` (default: every identity here) hold to ``d``, each
    witnessed when its node made it."""
    for ident in who or (TH_C, LA_C, MUK, NKP, SVK, THK):
        for at in INBOX_AT:
            d.apply(inbox_key(ident, now_ms=at)[0], witnessed_at=at)


def new_directory(*, with_centres: bool = True) -> Directory:
    """What every node knows: both centres pinned, their records (unless told) and four
    offices, each with its inbox key."""
    d = Directory(ANCHORS)
    if with_centres:
        for c in (TH_C, LA_C):
            d.apply(centre_self_record(c, name="centre", now_ms=NOW - HOUR, valid_until=NOW + YEAR), witnessed_at=NOW)
    for office, centre in ((MUK, TH_C), (NKP, TH_C), (SVK, LA_C), (THK, LA_C)):
        d.apply(enrol(office, centre), witnessed_at=NOW)
    apply_inbox_keys(d, *((TH_C, LA_C) if with_centres else ()), MUK, NKP, SVK, THK)
    return d
