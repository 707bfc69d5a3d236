"""Writes the forward vectors in this folder (ENVELOPE.md 8.1, its member's checks F1-F8).

Run ``.venv/bin/python schemas/vectors/forward/generate.py`` (or ``schemas/vectors/generate.py``
for every family). A forward is a v2 envelope sealed by the centre to a feed, whose body
carries the original; each file gives the original's and the centre's keys, the
``sealed`` forward (base64), the ``directory`` the member holds (signing key records),
the member's feed key, the witness time, and ``expect``: the provenance a member derives
(``{"outcome": "ok", "verified", "redacted", "reason", "original_id", "original_sender",
"original_sent_at"}``) or ``{"outcome": "error", "error": "ForwardRefused", "reason"}``.
Opening the envelope itself follows the envelope vectors; these pin what comes after.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from bus import errors
from bus.bulletin import Bulletin, Forwarded
from bus.envelope import FeedRecipient, OfficeRecipient, Opener, Sealer
from bus.forward import forward, verify_forward
from bus.ids import new_bulletin_id
from bus.keys import BoxKeyPair, Identity, PeerBook, PeerKeys
from bus.testing import DeterministicRng, render_vector, write_vectors
from bus.timing import MAX_FUTURE_SKEW_MS

HERE = Path(__file__).resolve().parent
NOW = 1_795_000_000_000
FORWARDED_AT = NOW + 60_000
STORED = FORWARDED_AT + 1_000
FEED, EPOCH = "mekong-border", 4


def office(office_id: str) -> Identity:
    return Identity.generate(office_id, DeterministicRng(f"blo-bus vector identity {office_id}"))


def peer_json(p: PeerKeys) -> dict[str, Any]:
    return {"office_id": p.office_id, "sign_public": p.sign_public.hex(), "sign_kid": p.sign_kid.hex(),
            "valid_from": p.valid_from, "valid_until": p.valid_until, "revoked_at": p.revoked_at}


def original_bulletin(sent_id_seed: str = "original") -> Bulletin:
    return Bulletin.from_dict({
        "id": new_bulletin_id(NOW, DeterministicRng(f"blo-bus vector forward {sent_id_seed}")),
        "from": "TH-MUK", "precedence": "IMMEDIATE", "kind": "lookout", "tlp": "GREEN",
        "releasable_to": ["TH", "LA"], "grading": "B2",
        "title": "เฝ้าระวัง: หนังสือเดินทางถูกขโมย", "body": "ผู้ต้องสงสัยอาจข้ามสะพานมิตรภาพ 2",
        "created": NOW,
        "entities": [{"type": "document", "doc_type": "passport", "number": "AA1234567", "country": "TH",
                      "status": "stolen"}],
    })  # fmt: skip


def build_vectors() -> dict[str, dict[str, Any]]:
    muk, tccc = office("TH-MUK"), office("TH-TCCC")
    feed_key = DeterministicRng(f"blo-bus vector feed {FEED} epoch {EPOCH}")(32)
    tccc_inbox = BoxKeyPair.from_secret(DeterministicRng("blo-bus vector inbox key TH-TCCC")(32))
    to_tccc = OfficeRecipient(replace(tccc.public(), box_public=tccc_inbox.public, box_kid=tccc_inbox.kid))
    book = [muk.public(), tccc.public()]

    def received(original: Bulletin, at: int = NOW) -> Any:
        sealed = Sealer(muk).seal(original, [to_tccc], now_ms=at, rng=DeterministicRng("blo-bus vector forward seal"))
        return Opener("TH-TCCC", [tccc_inbox], PeerBook(book)).open(sealed, witnessed_at=at + 1_000)

    def sealed_forward(b: Bulletin, seed: str) -> bytes:
        return Sealer(tccc).seal(b, [FeedRecipient(FEED, EPOCH, feed_key)], now_ms=FORWARDED_AT,
                                 rng=DeterministicRng(f"blo-bus vector forward {seed}"))

    def new_id(seed: str) -> str:
        return new_bulletin_id(FORWARDED_AT, DeterministicRng(f"blo-bus vector forward id {seed}"))

    def vector(name: str, description: str, sealed: bytes, *, directory: list[PeerKeys],
               mutation: str | None = None) -> dict[str, Any]:
        member = Opener("LA-SVK", [], PeerBook(directory), feed_keys={(FEED, EPOCH): feed_key})
        opened = member.open(sealed, witnessed_at=STORED, via=(2, FEED))  # as the centre's bulletin
        try:
            p = verify_forward(opened.bulletin, PeerBook(directory))
            expect: dict[str, Any] = {
                "outcome": "ok", "verified": p.verified, "redacted": p.redacted, "reason": p.reason,
                "original_id": p.original_id, "original_sender": p.original_sender,
                "original_sent_at": p.original_sent_at,
            }
        except errors.ForwardRefused as exc:
            expect = {"outcome": "error", "error": type(exc).__name__, "reason": exc.reason}
        return {
            "name": name, "description": description, "mutation": mutation,
            "original_sender": {"office_id": muk.office_id, "sign_seed": muk.signing.seed.hex()},
            "centre": {"office_id": tccc.office_id, "sign_seed": tccc.signing.seed.hex()},
            "sealed": base64.b64encode(sealed).decode(),
            "directory": [peer_json(p) for p in directory],
            "member": {"office_id": "LA-SVK", "feed_keys": [{"feed": FEED, "epoch": EPOCH, "key": feed_key.hex()}]},
            "witnessed_at": STORED, "via": {"kind": 2, "id": FEED},
            "expect": expect,
        }

    original = received(original_bulletin())
    whole = forward(original, centre="TH-TCCC", new_id=new_id("whole"), created=FORWARDED_AT)
    redacted = forward(original, centre="TH-TCCC", new_id=new_id("redacted"), created=FORWARDED_AT,
                       redact=["entities[0].number"])
    out = [
        vector("ok-whole", "TH-TCCC forwards TH-MUK's lookout whole to the feed: the member checks TH-MUK's "
               "signature on the carried original.", sealed_forward(whole, "whole"), directory=book),
        vector("ok-redacted", "The same, with the passport number redacted: shown as TH-TCCC's words citing the "
               "original id; TH-MUK's signature cannot be checked.", sealed_forward(redacted, "redacted"),
               directory=book),
        vector("ok-original-key-unknown", "The member's directory does not know TH-MUK's key yet: the forward "
               "stands as TH-TCCC's, the original's signature is not checked (retry later).",
               sealed_forward(whole, "whole"), directory=[tccc.public()]),
        vector("fail-original-key-revoked", "TH-MUK's key was revoked before the original's sent-at.",
               sealed_forward(whole, "whole"), directory=[replace(muk.public(), revoked_at=NOW - 1), tccc.public()]),
    ]
    assert whole.forwarded is not None and whole.forwarded.body is not None
    altered_body = bytearray(whole.forwarded.body)
    altered_body[-3] ^= 0x01
    data = whole.to_dict()
    data["forwarded"] = Forwarded("TH-MUK", whole.forwarded.header, bytes(altered_body), whole.forwarded.signature).json_form()
    out.append(vector("fail-original-altered", "TH-TCCC changed a byte of the original's body: TH-MUK's signature "
                      "no longer holds.", sealed_forward(Bulletin.from_dict(data), "altered"), directory=book,
                      mutation="the carried original body with bit 0 of its third-last byte flipped"))
    data = whole.to_dict()
    data["title"] = "เฝ้าระวัง: ผู้ต้องสงสัยติดอาวุธ"  # words TH-MUK never wrote
    out.append(vector("fail-shown-differs", "TH-TCCC shows a title other than the original's under TH-MUK's "
                      "signature.", sealed_forward(Bulletin.from_dict(data), "differs"), directory=book,
                      mutation="the forward's own title replaced"))
    late = received(original_bulletin("late"), at=FORWARDED_AT + MAX_FUTURE_SKEW_MS + 1)
    data = forward(late, centre="TH-TCCC", new_id=new_id("late"), created=FORWARDED_AT + MAX_FUTURE_SKEW_MS + 1).to_dict()
    data["created"] = FORWARDED_AT
    out.append(vector("fail-original-after-forward", "The original's sent-at is more than the skew after the "
                      "forward was made (F2).", sealed_forward(Bulletin.from_dict(data), "late"), directory=book,
                      mutation="the forward's created set back before its original's sent-at"))
    return {v["name"]: json.loads(json.dumps(v)) for v in out}


def main() -> None:
    write_vectors(HERE, build_vectors())


render = render_vector  # what the tests compare the files with


if __name__ == "__main__":
    main()
