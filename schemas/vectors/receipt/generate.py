"""Writes the receipt vectors in this folder (SUBJECTS.md, Receipts; TRUST.md for the times).

Run ``.venv/bin/python schemas/vectors/receipt/generate.py`` (or ``schemas/vectors/generate.py``
for every family). Each file: the signer's keys, the inputs, the exact ``bytes`` (base64),
the ``directory`` record of the signer as the receiver holds it, and ``open``: a list of
``{"witnessed_at", "expect"}`` where ``expect`` is ``{"outcome": "ok", "receipt": {...}}``
or ``{"outcome": "error", "error", "reason"}``. Ed25519 is deterministic, so signing the
inputs reproduces the bytes exactly.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack

from bus import errors
from bus.ids import bulletin_id_to_bytes, new_bulletin_id
from bus.keys import Identity, PeerBook, PeerKeys, SigningKeyPair
from bus.receipt import DELIVERED, READ, RECEIPT_LABEL, open_receipt, sign_receipt
from bus.testing import DeterministicRng, render_vector, write_vectors
from bus.timing import MAX_AGE_MS, MAX_FUTURE_SKEW_MS, REVOCATION_GRACE_MS

HERE = Path(__file__).resolve().parent
NOW = 1_795_000_000_000
STORED = NOW + 1_000
_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def office(office_id: str) -> Identity:
    return Identity.generate(office_id, DeterministicRng(f"blo-bus vector identity {office_id}"))


def peer_json(p: PeerKeys) -> dict[str, Any]:
    return {"office_id": p.office_id, "sign_public": p.sign_public.hex(), "sign_kid": p.sign_kid.hex(),
            "valid_from": p.valid_from, "valid_until": p.valid_until, "revoked_at": p.revoked_at}


def _expect(data: bytes, record: PeerKeys, witnessed_at: int) -> dict[str, Any]:
    try:
        r = open_receipt(data, PeerBook([record]), witnessed_at=witnessed_at)
    except errors.EnvelopeError as exc:
        return {"outcome": "error", "error": type(exc).__name__, "reason": exc.reason}
    return {"outcome": "ok", "receipt": {"kind": r.kind, "bulletin_ids": list(r.bulletin_ids),
                                         "bulletin_sender": r.bulletin_sender, "office": r.office,
                                         "sign_kid": r.sign_kid.hex(), "at_ms": r.at_ms}}


def vector(name: str, description: str, signer: Identity, inputs: dict[str, Any], data: bytes, *,
           record: PeerKeys, opens: list[int], mutation: str | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "signer": {"office_id": signer.office_id, "sign_seed": signer.signing.seed.hex(),
                   "sign_public": signer.signing.public.hex(), "sign_kid": signer.signing.kid.hex()},
        "inputs": inputs,
        "mutation": mutation,
        "bytes": base64.b64encode(data).decode(),
        "directory": [peer_json(record)],
        "open": [{"witnessed_at": w, "expect": _expect(data, record, w)} for w in opens],
    }


def build_vectors() -> dict[str, dict[str, Any]]:
    svk = office("LA-SVK")
    ids = [new_bulletin_id(NOW - 1_000 * i, DeterministicRng(f"blo-bus vector receipt id {i}")) for i in range(2)]
    record = svk.public()
    out = []

    def signed(kind: str, at: int) -> tuple[dict[str, Any], bytes]:
        inputs = {"kind": kind, "bulletin_ids": ids, "bulletin_sender": "TH-MUK", "at_ms": at}
        return inputs, sign_receipt(svk, kind, ids, "TH-MUK", now_ms=at)

    inputs, delivered = signed(DELIVERED, NOW)
    out.append(vector("ok-delivered", "LA-SVK's signed 'delivered' receipt for two of TH-MUK's bulletins.",
                      svk, inputs, delivered, record=record, opens=[STORED]))
    inputs_r, read = signed(READ, NOW)
    out.append(vector("ok-read", "An officer at LA-SVK read the two bulletins.", svk, inputs_r, read,
                      record=record, opens=[STORED]))
    body, signature = msgpack.unpackb(delivered)
    fields = msgpack.unpackb(body)
    fields[1] = READ
    out.append(vector("fail-kind-changed", "'delivered' changed to 'read' after signing.", svk, inputs,
                      _packb([_packb(fields), signature]), record=record, opens=[STORED],
                      mutation="ok-delivered with body field 1 set to \"read\""))
    other = SigningKeyPair.from_seed(DeterministicRng("blo-bus vector identity mallory")(32))
    out.append(vector("fail-bad-signature", "Signed by another Ed25519 key than LA-SVK's.", svk, inputs,
                      _packb([body, other.sign(RECEIPT_LABEL + body)]), record=record, opens=[STORED],
                      mutation="ok-delivered's body signed by the key of seed " + other.seed.hex()))
    out.append(vector(
        "fail-times", "The same receipt stored too early (its at-ms more than the skew ahead) and too late "
        "(more than the maximum age after); the third and fourth opens are at the two limits and succeed.",
        svk, inputs, delivered, record=record,
        opens=[NOW - MAX_FUTURE_SKEW_MS - 1, NOW + MAX_AGE_MS + 1, NOW - MAX_FUTURE_SKEW_MS, NOW + MAX_AGE_MS],
    ))
    revoked = replace(record, revoked_at=NOW + 1_000)
    out.append(vector(
        "fail-revoked-before-stored", "LA-SVK's key was revoked 1 s after the receipt's at-ms (a thief backdating "
        "a receipt to silence a FLASH escalation): refused when stored at the revocation plus the grace, opened "
        "when stored just inside it.", svk, inputs, delivered, record=revoked,
        opens=[NOW + 1_000 + REVOCATION_GRACE_MS, NOW + 1_000 + REVOCATION_GRACE_MS - 1],
    ))
    old = _packb([2, DELIVERED, [bulletin_id_to_bytes(i) for i in ids], "TH-MUK", "LA-SVK", svk.signing.kid, NOW])
    out.append(vector("fail-old-version", "A version 2 body (wire format v1): unsupported.", svk, inputs,
                      _packb([old, svk.signing.sign(RECEIPT_LABEL + old)]), record=record, opens=[STORED],
                      mutation="the body's version set to 2, signed again"))
    dup = _packb([3, DELIVERED, [bulletin_id_to_bytes(ids[0])] * 2, "TH-MUK", "LA-SVK", svk.signing.kid, NOW])
    out.append(vector("fail-duplicate-id", "The same bulletin id twice in one receipt: malformed.", svk, inputs,
                      _packb([dup, svk.signing.sign(RECEIPT_LABEL + dup)]), record=record, opens=[STORED],
                      mutation="bulletin_ids = [ids[0], ids[0]], signed again"))
    return {v["name"]: json.loads(json.dumps(v)) for v in out}






def main() -> None:
    write_vectors(HERE, build_vectors())


render = render_vector  # what the tests compare the files with


if __name__ == "__main__":
    main()
