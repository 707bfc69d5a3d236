"""Builders shared by the feed tests: identities, and a directory that pins both centres."""

from __future__ import annotations

from bus.directory import Directory, centre_self_record, enrol_office, make_request, read_request
from bus.keys import Identity
from tests.helpers import NOW, identity

YEAR = 365 * 86_400_000
HOUR = 3_600_000
FEED = "mekong-border"

TH_C, LA_C = identity("TH-TCCC"), identity("LA-TCCC")
MUK, NKP, SVK, THK = identity("TH-MUK"), identity("TH-NKP"), identity("LA-SVK"), identity("LA-THK")
ANCHORS = {"TH-TCCC": TH_C.signing.public, "LA-TCCC": LA_C.signing.public}


def enrol(ident: Identity, centre: Identity, *, seq: int = 1, at: int = NOW - HOUR) -> bytes:
    req = read_request(make_request(ident, name="BLO", country=ident.office_id[:2], role="office", now_ms=at))
    return enrol_office(req, centre, sequence=seq, now_ms=at, valid_until=at + YEAR)


def new_directory(*, with_centres: bool = True) -> Directory:
    """What every node knows: both centres pinned, their records (unless told) and four offices."""
    d = Directory(ANCHORS)
    if with_centres:
        for c in (TH_C, LA_C):
            d.apply(centre_self_record(c, name="centre", now_ms=NOW - HOUR, valid_until=NOW + YEAR))
    for office, centre in ((MUK, TH_C), (NKP, TH_C), (SVK, LA_C), (THK, LA_C)):
        d.apply(enrol(office, centre))
    return d
