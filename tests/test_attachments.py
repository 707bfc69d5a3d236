"""Sealed attachments, the pure core (bus/attachments.py) and its vectors (schemas/ATTACHMENTS.md):

* the vectors on disk are what their generator writes today, and each holds: sealing the
  recorded inputs gives the recorded chunks, and the receiver's checks give the recorded
  outcome;
* the chunk nonces and sealed bytes follow the spec's words, re-derived here with
  libsodium's bindings only;
* streaming in any pieces gives the bytes of sealing at once; every file round-trips;
* property tests: whatever bytes arrive as chunks, the checks answer ``AttachmentCorrupt``
  with a reason, never anything else.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import nacl.bindings as nb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import attachments as att
from bus.bulletin import Bulletin
from bus.errors import AttachmentCorrupt, AttachmentTooLarge
from bus.testing import DeterministicRng
from tests.helpers import bulletin

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
VECTOR_DIR = SCHEMAS / "vectors" / "attachments"
VECTORS = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(VECTOR_DIR.glob("*.json"))}
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("blo_vectors_attachments", VECTOR_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _plaintext(v: dict[str, Any]) -> bytes:
    s = v["seal"]
    if "plaintext" in s:
        return base64.b64decode(s["plaintext"])
    return DeterministicRng(s["plaintext_rng"])(s["size"])


def _matches(recorded: dict[str, Any], sealed: bytes) -> bool:
    if "sealed" in recorded:
        return base64.b64decode(recorded["sealed"]) == sealed
    return recorded["sealed_length"] == len(sealed) and recorded["sealed_sha256"] == hashlib.sha256(sealed).hexdigest()


def test_vector_files_on_disk_are_what_the_generator_writes_today() -> None:
    gen = _generator()
    fresh = gen.build_vectors()
    assert set(fresh) == set(VECTORS), "run .venv/bin/python schemas/vectors/generate.py"
    for name, v in fresh.items():
        assert gen.render(v) == (VECTOR_DIR / f"{name}.json").read_text(encoding="utf-8"), f"{name}.json is stale"


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_sealing_the_recorded_inputs_gives_the_recorded_chunks_and_entry(name: str) -> None:
    v = VECTORS[name]
    s = v["seal"]
    chunks, entry = att.seal_file(s["name"], s["media_type"], _plaintext(v), DeterministicRng(s["rng_seed"]))
    assert entry.as_dict() == v["entry"]
    assert len(chunks) == len(v["steps"]["chunks"])
    for recorded, sealed in zip(v["steps"]["chunks"], chunks, strict=True):
        assert _matches(recorded, sealed)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_the_receivers_checks_give_the_recorded_outcome(name: str) -> None:
    v = VECTORS[name]
    s = v["seal"]
    chunks, _ = att.seal_file(s["name"], s["media_type"], _plaintext(v), DeterministicRng(s["rng_seed"]))
    entry = att.Entry.of(v["received_entry"] or v["entry"])
    if v["chunks"] is not None:  # rebuild the mutated chunks from the generator's own recipe
        chunks = _mutated(name, chunks)
        for recorded, sealed in zip(v["chunks"], chunks, strict=True):
            assert _matches(recorded, sealed)
    expect = v["open"]
    if expect["outcome"] == "ok":
        assert att.open_file(entry, chunks) == _plaintext(v)
    else:
        with pytest.raises(AttachmentCorrupt) as caught:
            att.open_file(entry, chunks)
        assert (type(caught.value).__name__, caught.value.reason) == (expect["error"], expect["reason"])


def _mutated(name: str, chunks: list[bytes]) -> list[bytes]:
    gen = _generator()
    recipes = {"fail-flipped-byte": gen._flip, "fail-chunks-swapped": gen._swap, "fail-truncated": gen._drop_last,
               "fail-final-flag-early": gen._final_flag_early, "fail-short-chunk": gen._short}  # fmt: skip
    entry = att.Entry.of(VECTORS[name]["entry"])
    return recipes[name](entry, list(chunks))[1]


def test_the_vectors_cover_every_check_that_can_refuse() -> None:
    reasons = {v["open"].get("reason") for v in VECTORS.values()} - {None}
    assert reasons == {"chunk_decryption_failed", "chunk_missing", "chunk_length_mismatch",
                       "object_hash_mismatch", "hash_mismatch"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_chunk_nonces_and_bytes_follow_the_written_spec(name: str) -> None:
    """ATTACHMENTS.md 3-4 re-read with libsodium's bindings only: the draws in order, the
    nonce as prefix || u56be(index) || flag, the label as associated data."""
    v = VECTORS[name]
    spec = (SCHEMAS / "ATTACHMENTS.md").read_text(encoding="utf-8")
    label = re.search(r"`CHUNK_AD` is the ASCII text `([^`]+)` followed by one zero byte", spec)
    assert label is not None, "ATTACHMENTS.md no longer states the label"
    ad = label.group(1).encode() + b"\x00"
    rng = DeterministicRng(v["seal"]["rng_seed"])
    key, prefix, object_id = rng(32), rng(16), rng(16)
    assert (key.hex(), prefix.hex(), object_id.hex()) == (
        v["steps"]["key"], v["steps"]["nonce_prefix"], v["steps"]["object_id"])  # fmt: skip
    plain = _plaintext(v)
    n = max(1, -(-len(plain) // v["chunk_size"]))
    for i, recorded in enumerate(v["steps"]["chunks"]):
        nonce = prefix + i.to_bytes(7, "big") + bytes([i == n - 1])
        assert recorded["nonce"] == nonce.hex()
        assert recorded["object_name"] == f"{object_id.hex()}/{i}"
        piece = plain[i * v["chunk_size"] : (i + 1) * v["chunk_size"]]
        assert _matches(recorded, nb.crypto_aead_xchacha20poly1305_ietf_encrypt(piece, ad, nonce, key))


def test_the_every_field_envelope_vector_carries_the_photo_vectors_entry() -> None:
    office3 = json.loads((SCHEMAS / "vectors" / "envelope" / "ok-office-3.json").read_text(encoding="utf-8"))
    assert office3["seal"]["bulletin"]["attachments"] == [VECTORS["ok-photo"]["entry"]]


# -- streaming and round trips -------------------------------------------------------------


@SETTINGS
@given(st.integers(0, 3 * att.CHUNK_SIZE + 7), st.lists(st.integers(1, att.CHUNK_SIZE + 3), min_size=1, max_size=8))
def test_sealing_in_any_pieces_gives_the_bytes_of_sealing_at_once(size: int, cuts: list[int]) -> None:
    data = DeterministicRng(f"pieces {size}")(size)
    whole, entry = att.seal_file("f.bin", "application/pdf", data, DeterministicRng("keys"))
    sealer = att.FileSealer("f.bin", "application/pdf", DeterministicRng("keys"))
    out, at, i = [], 0, 0
    while at < size:
        step = cuts[i % len(cuts)]
        out += sealer.update(data[at : at + step])
        at, i = at + step, i + 1
    last, streamed = sealer.finish()
    assert [*out, last] == whole and streamed == entry
    assert len(whole) == att.chunk_count(size) and sum(map(len, whole)) == att.sealed_size(size)
    assert att.open_file(entry, whole) == data


def test_an_entry_is_a_valid_attachment_of_a_bulletin_and_round_trips() -> None:
    _, entry = att.seal_file("ภาพถ่าย.jpg", "image/jpeg", b"\xff\xd8\xff" + bytes(100), DeterministicRng("e"))
    b = bulletin(attachments=[entry.as_dict()])
    assert Bulletin.from_dict(b.to_dict()) == b
    assert att.Entry.of(b.attachments[0]) == entry
    assert "key" not in att.public_view(b.attachments[0]) and "nonce" not in att.public_view(b.attachments[0])


def test_limits_name_the_file_and_the_limit() -> None:
    limits = att.Limits(max_file_bytes=1000, max_bulletin_bytes=1500)
    limits.check_file("a.jpg", 1000)
    with pytest.raises(AttachmentTooLarge, match=r"scan\.pdf .*limit per file"):
        limits.check_file("scan.pdf", 1001)
    with pytest.raises(AttachmentTooLarge, match="limit per bulletin") as caught:
        limits.check_bulletin([800, 800])
    assert caught.value.reason == "attachment_too_large"


# -- the decoders under hostile input ------------------------------------------------------

_ENTRY_SMALL = att.seal_file("a.txt", "text/plain", b"x" * 1000, DeterministicRng("hostile"))
_ENTRY_MULTI = att.seal_file("b.bin", "application/pdf", bytes(att.CHUNK_SIZE + 50), DeterministicRng("hostile2"))


@SETTINGS
@given(st.integers(-3, 5), st.binary(max_size=2000))
def test_any_bytes_as_a_chunk_are_refused_with_a_reason_or_open(index: int, data: bytes) -> None:
    chunks, entry = _ENTRY_SMALL
    try:
        plain = att.open_chunk(entry, index, data)
    except AttachmentCorrupt as exc:
        assert exc.reason in ("chunk_unexpected", "chunk_length_mismatch", "chunk_decryption_failed")
    else:
        assert index == 0 and data == chunks[0] and plain == b"x" * 1000


@SETTINGS
@given(st.lists(st.one_of(st.binary(max_size=300), st.sampled_from(_ENTRY_MULTI[0])), max_size=4), st.data())
def test_any_list_of_chunks_is_refused_with_a_reason_unless_it_is_the_file(chunks: list[bytes], draw: st.DataObject) -> None:
    real, entry = _ENTRY_MULTI
    if draw.draw(st.booleans()) and chunks:  # a real chunk with one bit flipped, somewhere
        i = draw.draw(st.integers(0, len(chunks) - 1))
        c = bytearray(chunks[i] or b"\x00")
        c[draw.draw(st.integers(0, len(c) - 1))] ^= 1 << draw.draw(st.integers(0, 7))
        chunks[i] = bytes(c)
    try:
        att.open_file(entry, chunks)
    except AttachmentCorrupt as exc:
        assert exc.reason in ("chunk_unexpected", "chunk_length_mismatch", "chunk_decryption_failed",
                              "chunk_missing", "object_hash_mismatch", "hash_mismatch")  # fmt: skip
    else:
        assert chunks == real
