"""The receipt, heartbeat and forward vectors in schemas/vectors/{receipt,heartbeat,forward}/:

* the files on disk are what their generators write today;
* each recorded outcome holds for the code;
* the bytes follow the spec's words, re-read here with msgpack and libsodium only: the
  signature labels of SUBJECTS.md, HEARTBEAT.md and ENVELOPE.md 9.1, the fields and their
  order, and signing the recorded inputs with the recorded seed reproduces the bytes.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import struct
from pathlib import Path
from typing import Any

import msgpack
import nacl.bindings as nb
import pytest

from bus import errors
from bus.bulletin import Bulletin
from bus.envelope import Opener
from bus.forward import verify_forward
from bus.heartbeat import open_heartbeat
from bus.keys import PeerBook, PeerKeys
from bus.receipt import open_receipt

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
FAMILIES = ("receipt", "heartbeat", "forward")
VECTORS = {
    (family, p.stem): json.loads(p.read_text(encoding="utf-8"))
    for family in FAMILIES
    for p in sorted((SCHEMAS / "vectors" / family).glob("*.json"))
}


def _generator(family: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"blo_vectors_{family}", SCHEMAS / "vectors" / family / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _peer(p: dict[str, Any]) -> PeerKeys:
    return PeerKeys(p["office_id"], bytes.fromhex(p["sign_public"]), bytes.fromhex(p["sign_kid"]), bytes(32), bytes(8),
                    p["valid_from"], p["valid_until"], p["revoked_at"])


def _label(spec: str, pattern: str) -> bytes:
    found = re.search(pattern, (SCHEMAS / spec).read_text(encoding="utf-8"))
    assert found is not None, f"{spec} no longer states the label"
    return found.group(1).encode() + b"\x00"


@pytest.mark.parametrize("family", FAMILIES)
def test_vector_files_on_disk_are_what_the_generators_write_today(family: str) -> None:
    render = _generator("receipt").render
    fresh = _generator(family).build_vectors()
    on_disk = {name: v for (f, name), v in VECTORS.items() if f == family}
    assert set(fresh) == set(on_disk), "run .venv/bin/python schemas/vectors/generate.py"
    for name, v in fresh.items():
        assert render(v) == render(on_disk[name]), f"{family}/{name}.json is stale: run schemas/vectors/generate.py"


def test_the_families_cover_what_the_issue_asks() -> None:
    names = {f"{f}/{n}" for f, n in VECTORS}
    assert {"receipt/ok-delivered", "receipt/fail-revoked-before-stored", "receipt/fail-times"} <= names
    assert {"heartbeat/ok", "heartbeat/fail-from-the-future", "heartbeat/fail-revoked-before-stored"} <= names
    assert {"forward/ok-whole", "forward/ok-redacted", "forward/fail-original-altered", "forward/fail-shown-differs"} <= names


@pytest.mark.parametrize("name", [n for f, n in VECTORS if f == "receipt"])
def test_receipt_outcomes(name: str) -> None:
    v = VECTORS[("receipt", name)]
    data = base64.b64decode(v["bytes"])
    book = PeerBook([_peer(p) for p in v["directory"]])
    for case in v["open"]:
        expect = case["expect"]
        if expect["outcome"] == "error":
            with pytest.raises(errors.EnvelopeError) as info:
                open_receipt(data, book, witnessed_at=case["witnessed_at"])
            assert (type(info.value).__name__, info.value.reason) == (expect["error"], expect["reason"])
        else:
            r = open_receipt(data, book, witnessed_at=case["witnessed_at"])
            assert (r.kind, list(r.bulletin_ids), r.at_ms) == (
                expect["receipt"]["kind"], expect["receipt"]["bulletin_ids"], expect["receipt"]["at_ms"]
            )


@pytest.mark.parametrize("name", [n for f, n in VECTORS if f == "heartbeat"])
def test_heartbeat_outcomes(name: str) -> None:
    v = VECTORS[("heartbeat", name)]
    data = base64.b64decode(v["bytes"])
    book = PeerBook([_peer(p) for p in v["directory"]])
    for case in v["open"]:
        expect = case["expect"]
        call = lambda: open_heartbeat(data, book, witnessed_at=case["witnessed_at"], office=case["subject_office"])  # noqa: B023, E731
        if expect["outcome"] == "error":
            with pytest.raises(errors.EnvelopeError) as info:
                call()
            assert (type(info.value).__name__, info.value.reason) == (expect["error"], expect["reason"])
        else:
            assert call().sent_at == expect["heartbeat"]["sent_at"]


@pytest.mark.parametrize("name", [n for f, n in VECTORS if f == "forward"])
def test_forward_outcomes(name: str) -> None:
    v = VECTORS[("forward", name)]
    feed_keys = {(k["feed"], k["epoch"]): bytes.fromhex(k["key"]) for k in v["member"]["feed_keys"]}
    book = PeerBook([_peer(p) for p in v["directory"]])
    opened = Opener(v["member"]["office_id"], [], book, feed_keys=feed_keys).open(
        base64.b64decode(v["sealed"]), witnessed_at=v["witnessed_at"], via=(v["via"]["kind"], v["via"]["id"])
    )
    expect = v["expect"]
    if expect["outcome"] == "error":
        with pytest.raises(errors.ForwardRefused) as info:
            verify_forward(opened.bulletin, book)
        assert info.value.reason == expect["reason"]
    else:
        p = verify_forward(opened.bulletin, book)
        assert (p.verified, p.redacted, p.reason, p.original_id, p.original_sent_at) == (
            expect["verified"], expect["redacted"], expect["reason"], expect["original_id"], expect["original_sent_at"]
        )


# -- the spec's words, re-read -------------------------------------------------------------


def test_receipt_bytes_follow_subjects_md() -> None:
    label = _label("SUBJECTS.md", r'RECEIPT_LABEL = b"([^"\\]+)\\x00"')
    for (family, _), v in VECTORS.items():
        if family != "receipt" or v["mutation"] is not None:
            continue
        body, signature = msgpack.unpackb(base64.b64decode(v["bytes"]))
        fields = msgpack.unpackb(body)
        i = v["inputs"]
        assert fields[0] == 3 and fields[1] == i["kind"] and fields[3:5] == [i["bulletin_sender"], v["signer"]["office_id"]]
        assert fields[5].hex() == v["signer"]["sign_kid"] and fields[6] == i["at_ms"] and len(fields[2]) == len(i["bulletin_ids"])
        secret = nb.crypto_sign_seed_keypair(bytes.fromhex(v["signer"]["sign_seed"]))[1]
        assert nb.crypto_sign(label + body, secret)[:64] == signature  # Ed25519 is deterministic


def test_heartbeat_bytes_follow_heartbeat_md() -> None:
    label = _label("HEARTBEAT.md", r"is the \d+ bytes `([^`]+)` then `0x00`")
    v = VECTORS[("heartbeat", "ok")]
    body, signature = msgpack.unpackb(base64.b64decode(v["bytes"]))
    fields = msgpack.unpackb(body)
    assert fields[:4] == [1, "TH-MUK", bytes.fromhex(v["signer"]["sign_kid"]), v["inputs"]["sent_at"]]
    assert nb.crypto_sign_open(signature + label + body, bytes.fromhex(v["signer"]["sign_public"])) == label + body


def test_a_whole_forward_carries_the_original_signature_over_label_header_and_body() -> None:
    label = _label("ENVELOPE.md", r"\| `SIGNATURE_LABEL` \| `([^`]+)` \|")
    v = VECTORS[("forward", "ok-whole")]
    feed_keys = {(k["feed"], k["epoch"]): bytes.fromhex(k["key"]) for k in v["member"]["feed_keys"]}
    opened = Opener("LA-SVK", [], PeerBook([_peer(p) for p in v["directory"]]), feed_keys=feed_keys).open(
        base64.b64decode(v["sealed"]), witnessed_at=v["witnessed_at"], via=(2, v["via"]["id"])
    )
    f = opened.bulletin.forwarded
    assert isinstance(opened.bulletin, Bulletin) and f is not None and f.body is not None and f.signature is not None
    message = label + struct.pack(">I", len(f.header)) + f.header + f.body
    public = bytes.fromhex(next(p for p in v["directory"] if p["office_id"] == "TH-MUK")["sign_public"])
    assert nb.crypto_sign_open(f.signature + message, public) == message
