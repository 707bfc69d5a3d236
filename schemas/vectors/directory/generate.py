"""Writes the directory vectors in this folder (DIRECTORY.md section 10; TRUST.md for the times).

Run ``.venv/bin/python schemas/vectors/directory/generate.py`` (or ``schemas/vectors/generate.py``
for every family). Every key comes from a fixed seed through ``bus.testing.DeterministicRng``
and Ed25519 is deterministic, so signing the recorded fields reproduces the bytes. A
receiver that applies ``held`` (in order, each at its witness time) and then ``item`` at
``witnessed_at`` must reach ``expect``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack

from bus import errors
from bus.directory import (
    Directory,
    DirectoryRecord,
    InboxKey,
    Revocation,
    centre_self_record,
    decode_item,
    enrol_office,
    make_inbox_key,
    make_request,
    read_request,
    revoke_key,
    sign_inbox_key,
    sign_record,
)
from bus.keys import BoxKeyPair, Identity
from bus.testing import DeterministicRng, render_vector, write_vectors
from bus.timing import DAY_MS, MAX_FUTURE_SKEW_MS, MAX_INBOX_KEY_LIFETIME_MS, REVOCATION_GRACE_MS

HERE = Path(__file__).resolve().parent
NOW = 1_795_000_000_000
HOUR = 3_600_000
YEAR = 365 * DAY_MS
_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def ident(office_id: str, seed: str | None = None) -> Identity:
    return Identity.generate(office_id, DeterministicRng(seed or f"blo-bus vector identity {office_id}"))


def inbox_pair(office_id: str, n: int = 1) -> BoxKeyPair:
    return BoxKeyPair.from_secret(DeterministicRng(f"blo-bus vector directory inbox {office_id} {n}")(32))


def _json_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list | tuple):
        return [_json_value(x) for x in v]
    return v


def _label(item: Any) -> str:
    return {DirectoryRecord: "blo-bus/v2 directory record", Revocation: "blo-bus/v2 directory revocation",
            InboxKey: "blo-bus/v2 directory inbox key"}[type(item)]


def _keys_json(people: list[Identity], inboxes: dict[str, BoxKeyPair]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in people:
        label = p.office_id if p.office_id not in out else f"{p.office_id} (rotated)"
        out[label] = {"office": p.office_id, "sign_seed": p.signing.seed.hex(), "sign_public": p.signing.public.hex(),
                      "sign_kid": p.signing.kid.hex(), "box_secret": p.box.secret.hex(), "box_public": p.box.public.hex(),
                      "box_kid": p.box.kid.hex()}
    for name, pair in inboxes.items():
        out[name] = {"box_secret": pair.secret.hex(), "box_public": pair.public.hex(), "box_kid": pair.kid.hex()}
    return out


class Builder:
    def __init__(self) -> None:
        self.th_c, self.la_c = ident("TH-TCCC"), ident("LA-TCCC")
        self.muk, self.svk = ident("TH-MUK"), ident("LA-SVK")
        self.anchors = {"TH-TCCC": self.th_c.signing.public, "LA-TCCC": self.la_c.signing.public}
        self.inboxes = {"TH-MUK inbox": inbox_pair("TH-MUK")}

    def centre(self, c: Identity) -> bytes:
        return centre_self_record(c, name=f"{c.office_id[:2]} coordination centre", now_ms=NOW - DAY_MS,
                                  valid_until=NOW + YEAR)

    def enrol(self, office: Identity, centre: Identity, *, at: int = NOW - HOUR, seq: int = 1) -> bytes:
        request = make_request(office, name=f"BLO {office.office_id}", country=office.office_id[:2], role="office",
                               now_ms=at)
        return enrol_office(read_request(request), centre, sequence=seq, now_ms=at, valid_until=at + YEAR)

    def base(self) -> list[tuple[bytes, int]]:
        return [(self.centre(self.th_c), NOW - DAY_MS), (self.centre(self.la_c), NOW - DAY_MS),
                (self.enrol(self.muk, self.th_c), NOW - HOUR)]

    def vector(self, name: str, description: str, held: list[tuple[bytes, int]], item: bytes, witnessed_at: int, *,
               then: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        d = Directory(self.anchors)
        for raw, at in held:
            d.apply(raw, witnessed_at=at)
        try:
            change = d.apply(item, witnessed_at=witnessed_at)
            expect: dict[str, Any] = {"outcome": "accepted", "status": None if change is None else change.status}
            if then:
                expect["then"] = [self._answer(d, q) for q in then]
        except errors.DirectoryError as exc:
            expect = {"outcome": "refused", "reason": exc.reason}
        try:
            signed = decode_item(item)
            fields, label = _json_value(signed.item.fields()), _label(signed.item)
        except errors.DirectoryError:
            fields = label = None
        return {
            "name": name, "description": description,
            "anchors": {k: v.hex() for k, v in self.anchors.items()},
            "keys": _keys_json([self.th_c, self.la_c, self.muk, self.svk], self.inboxes),
            "held": [{"item": base64.b64encode(raw).decode(), "witnessed_at": at} for raw, at in held],
            "item": base64.b64encode(item).decode(), "fields": fields, "label": label,
            "witnessed_at": witnessed_at, "expect": expect,
        }

    @staticmethod
    def _answer(d: Directory, q: dict[str, Any]) -> dict[str, Any]:
        if q["ask"] == "sender_keys":
            keys = d.sender_keys(q["office"], bytes.fromhex(q["sign_kid"]))
            a = None if keys is None else {"valid_from": keys.valid_from, "valid_until": keys.valid_until,
                                            "revoked_at": keys.revoked_at}
        else:
            try:
                keys = d.recipient_keys(q["office"], q["at"])
                a = {"box_kid": keys.box_kid.hex(), "valid_until": keys.valid_until}
            except errors.BloError as exc:
                a = {"refused": exc.reason}
        return {**q, "answer": a}

    def build(self) -> list[dict[str, Any]]:
        th_c, la_c, muk = self.th_c, self.la_c, self.muk
        base = self.base()
        inbox = self.inboxes["TH-MUK inbox"]
        inbox_item = make_inbox_key("TH-MUK", muk.signing, inbox, now_ms=NOW)
        out = [
            self.vector("ok-centre-record", "TH-TCCC's self-signed record; TH-TCCC is pinned.", [], self.centre(th_c),
                        NOW - DAY_MS),
            self.vector("ok-office-record", "TH-MUK's record, signed by TH-TCCC.", base[:2], base[2][0], NOW - HOUR,
                        then=[{"ask": "sender_keys", "office": "TH-MUK", "sign_kid": muk.signing.kid.hex()}]),
            self.vector("ok-inbox-key", "TH-MUK's node publishes an inbox key signed with its own signing key; "
                        "senders seal to it.", base, inbox_item, NOW + 1_000,
                        then=[{"ask": "recipient_keys", "office": "TH-MUK", "at": NOW + 2_000}]),
            self.vector("ok-revocation", "TH-TCCC revokes TH-MUK's signing key as of NOW (compromised since).",
                        base, revoke_key(th_c, "TH-MUK", muk.signing.kid, revoked_at=NOW, reason="laptop stolen"),
                        NOW + 1_000,
                        then=[{"ask": "sender_keys", "office": "TH-MUK", "sign_kid": muk.signing.kid.hex()},
                              {"ask": "recipient_keys", "office": "TH-MUK", "at": NOW + 2_000}]),
        ]
        out.append(self.vector("fail-unpinned-centre", "A centre record whose key is not pinned.", [],
                               self.centre(ident("TH-TCCC", "someone else")), NOW))
        rec = decode_item(base[2][0])
        assert isinstance(rec.item, DirectoryRecord)
        foreign_signer = replace(rec.item, signer="LA-TCCC", signer_kid=la_c.signing.kid)
        out.append(self.vector("fail-cross-country", "LA-TCCC signs a record for a TH office.", base[:2],
                               sign_record(foreign_signer, la_c.signing), NOW))
        flipped = bytearray(rec.raw)
        flipped[-1] ^= 0x01
        out.append(self.vector("fail-bad-signature", "TH-MUK's record with one bit of its signature flipped.",
                               base[:2], bytes(flipped), NOW))
        revoked_at = NOW
        revocation = (revoke_key(th_c, "TH-TCCC", th_c.signing.kid, revoked_at=revoked_at, reason="centre key stolen"),
                      revoked_at + 1_000)
        thief = ident("TH-MUK", "thief")
        backdated = decode_item(self.enrol(thief, th_c, at=revoked_at - HOUR, seq=2)).raw
        out.append(self.vector(
            "fail-signer-revoked-backdated-record",
            "A thief holding TH-TCCC's revoked key signs a new record for TH-MUK dated an hour before the "
            "revocation; it is stored after the revocation plus the grace: refused (TRUST.md T3).",
            [*base, revocation], backdated, revoked_at + REVOCATION_GRACE_MS,
        ))
        out.append(self.vector(
            "fail-signer-revoked-revocation",
            "The same thief signs a revocation of TH-MUK's key, stored after TH-TCCC's key was revoked.",
            [*base, revocation], revoke_key(th_c, "TH-MUK", muk.signing.kid, revoked_at=NOW - DAY_MS, reason="bogus"),
            revoked_at + REVOCATION_GRACE_MS,
        ))
        out.append(self.vector("fail-record-from-the-future", "A record issued more than the skew after it was stored.",
                               base[:2], self.enrol(muk, th_c, at=NOW), NOW - MAX_FUTURE_SKEW_MS - 1))
        long_lived = InboxKey("TH-MUK", muk.signing.kid, inbox.public, inbox.kid, NOW, NOW + MAX_INBOX_KEY_LIFETIME_MS + 1,
                              NOW)
        payload = _packb(long_lived.fields())
        out.append(self.vector(
            "fail-inbox-key-over-lifetime", "An inbox key asking to live one ms longer than 31 days (signed by the office).",
            base, _packb([2, 3, payload, muk.signing.sign(b"blo-bus/v2 directory inbox key\x00" + payload)]), NOW + 1_000,
        ))
        self.inboxes["LA-SVK inbox"] = inbox_pair("LA-SVK")
        svk_pair = self.inboxes["LA-SVK inbox"]
        foreign = InboxKey("TH-MUK", self.svk.signing.kid, svk_pair.public, svk_pair.kid, NOW, NOW + DAY_MS, NOW)
        out.append(self.vector(
            "held-inbox-key-by-another-office", "An inbox key for TH-MUK signed by LA-SVK's key: it names a signing key "
            "TH-MUK has no record of, and waits (no change) rather than being believed.",
            [*base, (self.centre(la_c), NOW - DAY_MS), (self.enrol(self.svk, la_c), NOW - HOUR)],
            sign_inbox_key(foreign, self.svk.signing), NOW + 1_000,
            then=[{"ask": "recipient_keys", "office": "TH-MUK", "at": NOW + 2_000}],
        ))
        out.append(self.vector(
            "fail-inbox-key-of-a-revoked-key", "TH-MUK's inbox key, stored after its signing key was revoked.",
            [*base, (revoke_key(th_c, "TH-MUK", muk.signing.kid, revoked_at=NOW - HOUR // 2, reason="stolen"), NOW)],
            inbox_item, NOW + 1_000,
        ))
        out.append(self.vector("fail-old-version", "A version 1 item: unsupported.", base[:2],
                               _packb([1, 1, rec.payload, rec.signature]), NOW))
        return out


def build_vectors() -> dict[str, dict[str, Any]]:
    return {v["name"]: json.loads(json.dumps(v)) for v in Builder().build()}


def main() -> None:
    write_vectors(HERE, build_vectors())


render = render_vector  # what the tests compare the files with


if __name__ == "__main__":
    main()
