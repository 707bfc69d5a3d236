"""The directory vectors in schemas/vectors/directory/ (DIRECTORY.md section 10):

* the files on disk are what their generator writes today;
* applying ``held`` then ``item`` at the recorded witness times gives the recorded outcome,
  and the recorded answers afterwards;
* the bytes follow the spec's words, re-read here with msgpack and libsodium only: the item
  array, the payload fields as recorded, and an Ed25519 signature over the label of
  DIRECTORY.md's table and the payload.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import msgpack
import nacl.bindings as nb
import nacl.exceptions
import pytest

from bus import errors
from bus.directory import Directory

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
HERE = SCHEMAS / "vectors" / "directory"
VECTORS = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(HERE.glob("*.json"))}


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("blo_vectors_directory", HERE / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _directory(v: dict[str, Any]) -> Directory:
    d = Directory({c: bytes.fromhex(k) for c, k in v["anchors"].items()})
    for held in v["held"]:
        d.apply(base64.b64decode(held["item"]), witnessed_at=held["witnessed_at"])
    return d


def test_vector_files_on_disk_are_what_the_generator_writes_today() -> None:
    fresh = _generator().build_vectors()
    assert set(fresh) == set(VECTORS), "run .venv/bin/python schemas/vectors/generate.py"
    assert fresh == VECTORS, "the directory vectors are stale: run .venv/bin/python schemas/vectors/generate.py"


def test_the_vectors_cover_every_item_kind_and_the_attacks() -> None:
    assert {"ok-centre-record", "ok-office-record", "ok-inbox-key", "ok-revocation"} <= set(VECTORS)
    reasons = {v["expect"].get("reason") for v in VECTORS.values()}
    assert {"signer_revoked", "from_future", "cross_country", "unpinned_centre", "bad_signature", "malformed"} <= reasons


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_each_outcome_holds(name: str) -> None:
    v = VECTORS[name]
    d = _directory(v)
    item, expect = base64.b64decode(v["item"]), v["expect"]
    if expect["outcome"] == "refused":
        with pytest.raises(errors.DirectoryError) as info:
            d.apply(item, witnessed_at=v["witnessed_at"])
        assert info.value.reason == expect["reason"]
        return
    change = d.apply(item, witnessed_at=v["witnessed_at"])
    assert (None if change is None else change.status) == expect["status"]
    for q in expect.get("then", []):
        if q["ask"] == "sender_keys":
            keys = d.sender_keys(q["office"], bytes.fromhex(q["sign_kid"]))
            assert keys is not None
            assert {"valid_from": keys.valid_from, "valid_until": keys.valid_until, "revoked_at": keys.revoked_at} == q["answer"]
        elif "refused" in q["answer"]:
            with pytest.raises(errors.BloError) as info:
                d.recipient_keys(q["office"], q["at"])
            assert info.value.reason == q["answer"]["refused"]
        else:
            keys = d.recipient_keys(q["office"], q["at"])
            assert {"box_kid": keys.box_kid.hex(), "valid_until": keys.valid_until} == q["answer"]


def _spec_labels() -> dict[int, bytes]:
    text = (SCHEMAS / "DIRECTORY.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d)\s+\| `(blo-bus/v2 directory [a-z ]+)`\s+\| (\d+) \|", text, flags=re.MULTILINE)
    labels = {int(kind): ascii_text.encode() + b"\x00" for kind, ascii_text, _ in rows}
    assert all(len(labels[int(k)]) == int(n) for k, _, n in rows)
    return labels


def _hexed(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_hexed(x) for x in value]
    return value


@pytest.mark.parametrize("name", [n for n, v in VECTORS.items() if v["fields"] is not None])
def test_the_bytes_follow_the_written_spec(name: str) -> None:
    v = VECTORS[name]
    labels = _spec_labels()
    assert set(labels) == {1, 2, 3}
    version, kind, payload, signature = _item_array(base64.b64decode(v["item"]))
    assert version == 2 and labels[kind].decode().rstrip("\x00") == v["label"]
    assert _hexed(msgpack.unpackb(payload, raw=False)) == v["fields"]
    signers = {k["sign_kid"]: bytes.fromhex(k["sign_public"]) for k in v["keys"].values() if "sign_kid" in k}
    kid = v["fields"][{1: 15, 2: 5, 3: 1}[kind]]
    public = signers.get(kid)
    try:
        good = public is not None and nb.crypto_sign_open(signature + labels[kind] + payload, public) is not None
    except nacl.exceptions.BadSignatureError:
        good = False
    assert good == (v["expect"].get("reason") not in ("bad_signature", "unpinned_centre"))


def _item_array(item: bytes) -> list[Any]:
    return msgpack.unpackb(item, raw=False)
