"""Verifying a 1,000-office directory from scratch, beside the bare Ed25519 verifications.

A node that starts with an empty or distrusted local copy applies every signed item
once: in wire format v2 each office has its record (signed by its centre) and its
current inbox key (signed by the office). The baseline is the one libsodium call each record needs (``crypto_sign_open``
over the same signed bytes), with no decoding or bookkeeping around it; the ratio is
how much of the directory's time is that unavoidable signature check.
Target (issue 3): the whole directory "well under a second".
"""

from __future__ import annotations

import time

import nacl.bindings as nb
import nacl.utils

from bench.table import print_table
from bus.directory import (
    Directory,
    DirectoryRecord,
    InboxKey,
    centre_self_record,
    decode_item,
    enrol_office,
    make_inbox_key,
    make_request,
    read_request,
)
from bus.keys import BoxKeyPair, Identity

OFFICES = 1000
REPEATS = 5
NOW = 1_795_000_000_000


def build(offices: int = OFFICES) -> tuple[dict[str, bytes], list[bytes]]:
    """Trust anchors and the signed items (a record and an inbox key per office) of a
    directory of ``offices`` offices under one centre."""
    rng = nacl.utils.random
    centre = Identity.generate("TH-TCCC", rng)
    items = [centre_self_record(centre, name="TH centre", now_ms=NOW, valid_until=None)]
    for i in range(offices):
        office = Identity.generate(f"TH-B{i:05d}", rng)
        request = read_request(make_request(office, name=f"Border post {i}", country="TH", role="office", now_ms=NOW))
        items.append(
            enrol_office(
                request,
                centre,
                sequence=1,
                now_ms=NOW,
                valid_until=NOW + 10**10,
                regions=("mekong",),
                counterparts=("LA-SVK",),
            )
        )
        items.append(make_inbox_key(office.office_id, office.signing, BoxKeyPair.generate(rng), now_ms=NOW))
    return {"TH-TCCC": centre.signing.public}, items


def verify_all(anchors: dict[str, bytes], items: list[bytes], offices: int) -> Directory:
    """A directory applied from scratch: every item verified and applied once."""
    d = Directory(anchors)
    for raw in items:
        d.apply(raw, witnessed_at=NOW + 1_000)
    assert len(d) == offices + 1
    return d


def _best(fn: object) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    anchors, items = build()
    decoded = [decode_item(raw) for raw in items]
    # Records are checked with the centre's key; inbox keys with their office's own.
    by_kid = {d.item.sign_kid: d.item.sign_public for d in decoded if isinstance(d.item, DirectoryRecord)}
    publics = [by_kid[d.item.sign_kid] if isinstance(d.item, InboxKey) else anchors["TH-TCCC"] for d in decoded]
    signed = [d.signature + d.label + d.payload for d in decoded]

    def directory() -> None:
        verify_all(anchors, items, OFFICES)

    def bare() -> None:
        for message, public in zip(signed, publics, strict=True):
            nb.crypto_sign_open(message, public)

    t_dir = _best(directory)
    t_bare = _best(bare)
    n = len(items)
    print_table(
        ["what", "items", "total ms", "us per item", "items/s"],
        [
            ["bare Ed25519 verify (crypto_sign_open)", n, t_bare * 1000, t_bare / n * 1e6, n / t_bare],
            ["Directory.apply from scratch", n, t_dir * 1000, t_dir / n * 1e6, n / t_dir],
        ],
    )
    print(f"ratio (bare / directory): {t_bare / t_dir:.2f}  -- share of the time that is the signature check")
    print(f"1,000-office directory verified in {t_dir * 1000:.0f} ms (target: well under 1,000 ms)")


if __name__ == "__main__":
    main()
