"""Writes the heartbeat vectors in this folder (HEARTBEAT.md; TRUST.md for the times).

Run ``.venv/bin/python schemas/vectors/heartbeat/generate.py`` (or ``schemas/vectors/generate.py``
for every family). Each file: the signer's keys, the status it reported, the exact
``bytes`` (base64), the signer's ``directory`` record, and ``open``: a list of
``{"witnessed_at", "subject_office", "expect"}`` (``subject_office``: the office the
subject ``blo.hb.<OFFICE>`` names, or null) where ``expect`` is ``{"outcome": "ok",
"heartbeat": {...}}`` or ``{"outcome": "error", "error", "reason"}``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import msgpack

from bus import errors
from bus.heartbeat import HEARTBEAT_LABEL, NodeStatus, open_heartbeat, sign_heartbeat
from bus.keys import Identity, PeerBook, PeerKeys, SigningKeyPair
from bus.testing import DeterministicRng, render_vector, write_vectors
from bus.timing import MAX_FUTURE_SKEW_MS, REVOCATION_GRACE_MS

HERE = Path(__file__).resolve().parent
NOW = 1_795_000_000_000
STORED = NOW + 1_000
_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
STATUS = NodeStatus(
    online_since=NOW - 3_600_000, software="0.2.0", outbox_depth=3, outbox_oldest_at=NOW - 60_000, unacked_flash=1,
    last_sent_at=NOW - 5_000, last_received_at=NOW - 9_000, key_expires_at=NOW + 90 * 86_400_000, utc_offset_min=420,
    daily=((1, 2), (0, 0), (5, 3), (2, 2), (0, 1), (7, 4), (3, 1)),
)


def office(office_id: str) -> Identity:
    return Identity.generate(office_id, DeterministicRng(f"blo-bus vector identity {office_id}"))


def peer_json(p: PeerKeys) -> dict[str, Any]:
    return {"office_id": p.office_id, "sign_public": p.sign_public.hex(), "sign_kid": p.sign_kid.hex(),
            "valid_from": p.valid_from, "valid_until": p.valid_until, "revoked_at": p.revoked_at}


def _expect(data: bytes, record: PeerKeys, witnessed_at: int, subject_office: str | None) -> dict[str, Any]:
    try:
        hb = open_heartbeat(data, PeerBook([record]), witnessed_at=witnessed_at, office=subject_office)
    except errors.EnvelopeError as exc:
        return {"outcome": "error", "error": type(exc).__name__, "reason": exc.reason}
    return {"outcome": "ok", "heartbeat": {"office": hb.office, "sign_kid": hb.sign_kid.hex(), "sent_at": hb.sent_at,
                                           "status": asdict(hb.status)}}


def vector(name: str, description: str, signer: Identity, data: bytes, *, record: PeerKeys,
           opens: list[tuple[int, str | None]], mutation: str | None = None, sent_at: int = NOW) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "signer": {"office_id": signer.office_id, "sign_seed": signer.signing.seed.hex(),
                   "sign_public": signer.signing.public.hex(), "sign_kid": signer.signing.kid.hex()},
        "inputs": {"sent_at": sent_at, "status": asdict(STATUS)},
        "mutation": mutation,
        "bytes": base64.b64encode(data).decode(),
        "directory": [peer_json(record)],
        "open": [{"witnessed_at": w, "subject_office": o, "expect": _expect(data, record, w, o)} for w, o in opens],
    }


def build_vectors() -> dict[str, dict[str, Any]]:
    muk = office("TH-MUK")
    record = muk.public()
    beat = sign_heartbeat(muk, STATUS, now_ms=NOW)
    body, signature = msgpack.unpackb(beat)
    fields = msgpack.unpackb(body)
    out = [
        vector("ok", "TH-MUK's heartbeat, opened on its own subject and without one.", muk, beat, record=record,
               opens=[(STORED, "TH-MUK"), (STORED, None)]),
        vector("fail-misrouted", "TH-MUK's heartbeat on the subject of TH-NKP.", muk, beat, record=record,
               opens=[(STORED, "TH-NKP")]),
        vector("fail-from-the-future", "Stored more than the skew before its sent-at (a dead office made to look "
               "alive); the second open, exactly at the limit, succeeds.", muk, beat, record=record,
               opens=[(NOW - MAX_FUTURE_SKEW_MS - 1, "TH-MUK"), (NOW - MAX_FUTURE_SKEW_MS, "TH-MUK")]),
        vector("fail-revoked-before-stored", "TH-MUK's key revoked 1 s after sent-at; stored at the revocation plus "
               "the grace (refused) and just inside it (opened).", muk, beat,
               record=replace(record, revoked_at=NOW + 1_000),
               opens=[(NOW + 1_000 + REVOCATION_GRACE_MS, "TH-MUK"), (NOW + 1_000 + REVOCATION_GRACE_MS - 1, "TH-MUK")]),
    ]
    fields[5] = 0  # an empty outbox, claimed after signing
    fields[6] = None
    out.append(vector("fail-altered", "The outbox depth set to 0 after signing.", muk,
                      _packb([_packb(fields), signature]), record=record, opens=[(STORED, "TH-MUK")],
                      mutation="body fields 5 and 6 set to 0 and nil"))
    other = SigningKeyPair.from_seed(DeterministicRng("blo-bus vector identity mallory")(32))
    out.append(vector("fail-bad-signature", "The body signed by another key.", muk,
                      _packb([body, other.sign(HEARTBEAT_LABEL + body)]), record=record, opens=[(STORED, "TH-MUK")],
                      mutation="signed by the key of seed " + other.seed.hex()))
    return {v["name"]: json.loads(json.dumps(v)) for v in out}


def main() -> None:
    write_vectors(HERE, build_vectors())


render = render_vector  # what the tests compare the files with


if __name__ == "__main__":
    main()
