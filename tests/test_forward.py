"""Forwarding with provenance (bus.forward): a centre's forward carries the office's exact
signed bytes, members check them, and a redacted forward says so. Real crypto throughout:
offices seal with Sealer, the centre opens with Opener, forwards, seals to a feed, and a
member opens and verifies."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import msgpack
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import errors
from bus.bulletin import BODY_FIELDS, Bulletin, Forwarded, body_from_dict
from bus.envelope import FeedRecipient, OfficeRecipient, Opened, Opener, Sealer, encode_body
from bus.forward import (
    ORIGINAL_CHECKED,
    ORIGINAL_NOT_CHECKED,
    ORIGINAL_REFUSED,
    REDACTED,
    REDACTED_TEXT,
    Provenance,
    attribution,
    forward,
    verify_forward,
)
from bus.ids import new_bulletin_id
from bus.keys import Identity, PeerBook, SigningKeyPair
from bus.testing import DeterministicRng
from tests.helpers import NOW, STORED, attachment, bulletin, identity

MUK, TCCC, SVK = identity("TH-MUK"), identity("TH-TCCC"), identity("LA-SVK")
BOOK = PeerBook([MUK.public(), TCCC.public(), SVK.public()])
FEED, EPOCH, FEED_KEY = "mekong-border", 3, bytes(range(32))
LATER = NOW + 60_000

ORIGINAL = bulletin(
    precedence="FLASH",
    expires=NOW + 86_400_000,
    tags=["ยาเสพติด", "internal"],
    entities=[
        {"type": "person", "name": "Somchai K.", "nationality": "TH", "dob": "1985", "note": "driver"},
        {"type": "document", "doc_type": "passport", "number": "P0847211", "country": "LA"},
        {"type": "phone", "number": "+856 20 5555 1234"},
    ],
)


def sealed_by(sender: Identity, b: Bulletin, recipients: list[Any], *, at: int = NOW, seed: str = "seal") -> bytes:
    return Sealer(sender).seal(b, recipients, now_ms=at, rng=DeterministicRng(seed))


def received_by_centre(b: Bulletin = ORIGINAL, sender: Identity = MUK) -> Opened:
    """The original as the centre holds it: sealed by the office, opened by the centre."""
    return Opener.for_identity(TCCC, BOOK).open(sealed_by(sender, b, [OfficeRecipient(TCCC.public())]), witnessed_at=STORED)


OPENED = received_by_centre()


def new_id(seed: str = "forward") -> str:
    return new_bulletin_id(LATER, DeterministicRng(seed))


def make(original: Opened = OPENED, **kw: Any) -> Bulletin:
    return forward(original, centre="TH-TCCC", new_id=kw.pop("new_id", new_id()), created=LATER, **kw)


def on_the_feed(fw: Bulletin, sender: Identity = TCCC) -> Bulletin:
    """Seal ``fw`` to the feed as the centre, open it as a member: what the member holds."""
    sealed = sealed_by(sender, fw, [FeedRecipient(FEED, EPOCH, FEED_KEY)], at=LATER, seed="feed")
    return Opener("LA-SVK", SVK.box_keys, BOOK, feed_keys={(FEED, EPOCH): FEED_KEY}).open(sealed, witnessed_at=STORED).bulletin


def tampered(fw: Bulletin, **changes: Any) -> Bulletin:
    """What a lying centre would seal: the forward with visible fields changed."""
    return Bulletin.from_dict({**fw.to_dict(), **changes})


# -- whole forwards ----------------------------------------------------------------------


def test_a_forwarded_bulletin_verifies_back_to_the_original_office() -> None:
    got = on_the_feed(make(tags=["regional"]))
    p = verify_forward(got, BOOK)
    assert p == Provenance(
        forwarded_by="TH-TCCC",
        original_id=ORIGINAL.id,
        original_sender="TH-MUK",
        original_sign_kid=MUK.signing.kid,
        original_sent_at=NOW,
        original_precedence="FLASH",
        verified=True,
        redacted=False,
        redacted_fields=(),
        reason=None,
        problem=None,
        original=ORIGINAL,
    )
    assert p.describe() == f"TH-MUK's bulletin {ORIGINAL.id}, forwarded by TH-TCCC; TH-MUK's signature checked"
    shown = p.attribution()
    assert (shown.state, shown.words_of, shown.forwarded_by) == (ORIGINAL_CHECKED, "TH-MUK", "TH-TCCC")


def test_a_forward_is_a_new_centre_bulletin_showing_the_original_text_and_carrying_its_exact_bytes() -> None:
    fw = make()
    assert (fw.sender, fw.created) == ("TH-TCCC", LATER)
    assert fw.id != ORIGINAL.id
    for name in (
        "kind",
        "grading",
        "title",
        "body",
        "expires",
        "entities",
        "precedence",
        "tlp",
        "releasable_to",
        "tags",
    ):
        assert getattr(fw, name) == getattr(ORIGINAL, name), name
    assert fw.forwarded == Forwarded("TH-MUK", OPENED.header, OPENED.body, OPENED.signature)


def test_a_forward_round_trips_through_its_dict_json_and_wire_forms() -> None:
    fw = make()
    as_dict = fw.to_dict()
    assert all(isinstance(as_dict["forwarded"][k], str) for k in ("header", "body", "signature"))
    assert Bulletin.from_dict(as_dict) == fw
    assert Bulletin.from_dict(json.loads(json.dumps(as_dict))) == fw
    wire = msgpack.unpackb(encode_body(fw), raw=False)
    assert list(wire)[-1] == "forwarded"
    assert wire["forwarded"] == {
        "sender": "TH-MUK",
        "header": OPENED.header,
        "body": OPENED.body,
        "signature": OPENED.signature,
    }
    assert on_the_feed(fw) == fw


def test_a_bulletin_that_is_not_a_forward_has_no_forwarded_field_on_the_wire() -> None:
    assert "forwarded" not in ORIGINAL.body_dict() and "forwarded" not in ORIGINAL.to_dict()
    with pytest.raises(errors.ValidationError, match="not a forward"):
        verify_forward(ORIGINAL, BOOK)


def test_a_forward_may_change_tags_narrow_releasability_tighten_tlp_and_keep_flash() -> None:
    fw = make(tags=["mekong"], releasable_to=["LA"], tlp="AMBER+STRICT", precedence="FLASH")
    assert (fw.tags, fw.releasable_to, fw.tlp) == (("mekong",), ("LA",), "AMBER+STRICT")
    assert verify_forward(on_the_feed(fw), BOOK).verified


def test_a_forward_may_raise_precedence() -> None:
    routine = received_by_centre(bulletin(precedence="ROUTINE"))
    assert verify_forward(make(routine, precedence="IMMEDIATE"), BOOK).verified


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", "ยึดยาบ้า 300,000 เม็ด"),
        ("body", "another story"),
        ("kind", "alert"),
        ("grading", "A1"),
        ("expires", NOW + 2 * 86_400_000),
        ("entities", [{"type": "person", "name": "Someone Else"}]),
        ("attachments", [attachment("a.jpg", 1)]),
        ("in_reply_to", new_bulletin_id(NOW - 5, DeterministicRng("earlier"))),
    ],
)
def test_a_forward_whose_text_differs_from_the_original_is_refused(field: str, value: Any) -> None:
    lying = on_the_feed(tampered(make(), **{field: value}))
    with pytest.raises(errors.ForwardRefused, match=f"different {field}") as caught:
        verify_forward(lying, BOOK)
    assert caught.value.reason == "forward_mismatch"


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"precedence": "ROUTINE"}, None),  # found in the header, before the body is read
        ({"tlp": "GREEN"}, "tlp_loosened"),
        ({"releasable_to": ["TH", "LA", "KH"]}, "releasability_widened"),
    ],
)
def test_a_forward_that_loosens_handling_is_refused_by_members(changes: dict[str, Any], rule: str | None) -> None:
    with pytest.raises(errors.ForwardRefused) as caught:
        verify_forward(on_the_feed(tampered(make(), **changes)), BOOK)
    assert caught.value.reason == "forward_mismatch"
    assert rule is None or rule in caught.value.message


def test_a_flash_forwarded_as_routine_is_refused_by_the_centre_and_by_members() -> None:
    with pytest.raises(errors.HandlingRefused) as caught:
        make(precedence="ROUTINE")
    assert caught.value.reason == "precedence_downgrade"
    assert "FLASH forwards keep FLASH" in caught.value.message
    with pytest.raises(errors.ForwardRefused, match="never lowers precedence"):
        verify_forward(tampered(make(), precedence="ROUTINE"), BOOK)


@pytest.mark.parametrize(
    ("kw", "reason"), [({"tlp": "GREEN"}, "tlp_loosened"), ({"releasable_to": ["KH"]}, "releasability_widened")]
)
def test_the_centre_cannot_build_a_forward_that_loosens_handling(kw: dict[str, Any], reason: str) -> None:
    with pytest.raises(errors.HandlingRefused) as caught:
        make(**kw)
    assert caught.value.reason == reason


def _with_original(fw: Bulletin, **parts: Any) -> Bulletin:
    assert fw.forwarded is not None
    return msgspec.structs.replace(fw, forwarded=dataclasses.replace(fw.forwarded, **parts))


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


@pytest.mark.parametrize("part", ["body", "signature"])
def test_a_forward_whose_original_bytes_were_altered_fails_the_original_signature(part: str) -> None:
    fw = make()
    original = getattr(fw.forwarded, part)
    with pytest.raises(errors.ForwardRefused, match="does not verify for TH-MUK") as caught:
        verify_forward(_with_original(fw, **{part: _flip(original, len(original) // 2)}), BOOK)
    assert caught.value.reason == "forward_bad_signature"


def test_an_original_signed_with_another_key_under_the_office_s_key_id_is_refused() -> None:
    forger = SigningKeyPair.generate(DeterministicRng("forger"))
    fake_muk = Identity("TH-MUK", dataclasses.replace(forger, kid=MUK.signing.kid), MUK.box)
    fake = Opener.for_identity(TCCC, PeerBook([fake_muk.public(), TCCC.public()])).open(
        sealed_by(fake_muk, ORIGINAL, [OfficeRecipient(TCCC.public())])
    , witnessed_at=STORED)
    with pytest.raises(errors.ForwardRefused) as caught:
        verify_forward(make(fake), BOOK)
    assert caught.value.reason == "forward_bad_signature"


def test_a_forward_naming_another_original_sender_than_its_header_is_refused() -> None:
    with pytest.raises(errors.ForwardRefused, match="its header says TH-MUK"):
        verify_forward(_with_original(make(), sender="TH-NKP"), BOOK)


def test_a_forward_carrying_an_unparseable_header_is_refused() -> None:
    with pytest.raises(errors.ForwardRefused, match="does not parse"):
        verify_forward(_with_original(make(), header=b"\x93\x01"), BOOK)


def test_an_original_key_unknown_here_is_reported_not_verified_and_the_text_still_compared() -> None:
    book = PeerBook([TCCC.public(), SVK.public()])
    p = verify_forward(make(), book)
    assert (p.verified, p.redacted, p.reason) == (False, False, "unknown_sender")
    assert p.problem is not None and MUK.signing.kid.hex() in p.problem
    assert "not checked yet" in p.describe()
    with pytest.raises(errors.ForwardRefused):
        verify_forward(tampered(make(), title="changed"), book)


def test_a_whole_forward_under_an_original_key_unknown_here_is_the_centres_word_until_its_signature_is_checked() -> None:
    # What a centre could send under a key id nobody here knows: the text matches the bytes
    # it carries, but nothing says the office signed them.
    p = verify_forward(make(), PeerBook([TCCC.public(), SVK.public()]))
    shown = p.attribution()
    assert (shown.state, shown.words_of, shown.original_sender) == (ORIGINAL_NOT_CHECKED, "TH-TCCC", "TH-MUK")
    assert shown.line == (
        f"TH-TCCC's forward of bulletin {ORIGINAL.id}, which TH-TCCC attributes to TH-MUK: TH-MUK's signature is not "
        "checked yet (its key is not in this node's directory), so these are TH-TCCC's words until it is"
    )


def _revoked(at: int) -> PeerBook:
    return PeerBook([dataclasses.replace(MUK.public(), revoked_at=at), TCCC.public()])


def test_an_original_signed_after_its_key_was_revoked_is_refused() -> None:
    with pytest.raises(errors.ForwardRefused, match=f"signed at {NOW}") as caught:
        verify_forward(make(), _revoked(NOW))
    assert caught.value.reason == "forward_key_invalid"


def test_an_original_signed_before_its_key_was_revoked_still_verifies() -> None:
    assert verify_forward(make(), _revoked(NOW + 1)).verified


# -- redacted forwards -------------------------------------------------------------------


def test_a_redacted_forward_says_so_and_cannot_claim_a_checked_signature() -> None:
    fw = make(redact=["entities[0].name", "entities[1].number"])
    assert fw.entities[0]["name"] == fw.entities[1]["number"] == REDACTED_TEXT
    assert fw.forwarded is not None
    assert (fw.forwarded.body, fw.forwarded.signature) == (None, None)
    p = verify_forward(on_the_feed(fw), BOOK)
    assert (p.redacted, p.verified, p.reason) == (True, False, "redacted")
    assert p.redacted_fields == ("entities[0].name", "entities[1].number")
    assert (p.original_id, p.original_sender, p.original_sent_at, p.original) == (ORIGINAL.id, "TH-MUK", NOW, None)
    assert p.describe() == (
        f"TH-TCCC's own words: a redacted forward citing bulletin {ORIGINAL.id}, which TH-TCCC attributes to TH-MUK. "
        "Not TH-MUK's words: a redacted forward carries no signature of TH-MUK's to check them against"
    )


def test_a_redacted_forward_with_invented_text_is_shown_as_the_centres_words_citing_the_original() -> None:
    # A centre (or a thief holding its key) redacts one field and writes its own title and
    # body: F4 stops at "redacted", so nothing compares the text with the original.
    invented = tampered(
        make(redact=["entities[2]"]), title="TH-MUK: สะพานปิด ห้ามข้าม", body="Mukdahan says: close the bridge now."
    )
    p = verify_forward(on_the_feed(invented), BOOK)
    shown = p.attribution()
    assert (shown.state, shown.words_of, shown.forwarded_by) == (REDACTED, "TH-TCCC", "TH-TCCC")
    assert shown.line.startswith("TH-TCCC's own words") and ORIGINAL.id in shown.line
    assert "Not TH-MUK's words" in shown.line and "from TH-MUK" not in shown.line
    assert shown.to_json()["words_of"] == "TH-TCCC"


def test_an_original_that_no_longer_stands_leaves_the_forward_the_centres_words() -> None:
    shown = attribution(
        ORIGINAL_REFUSED, forwarded_by="TH-TCCC", original_sender="TH-MUK", original_id=None, problem="bad signature"
    )
    assert shown.words_of == "TH-TCCC" and "bad signature" in shown.line and "from TH-MUK" not in shown.line


def test_what_was_redacted_travels_nowhere_in_the_forward() -> None:
    fw = make(redact=["entities[0]", "entities[1].number", "tags"])
    wire = encode_body(fw)
    for secret in ("Somchai K.", "P0847211", "internal"):
        assert secret.encode() not in wire
        assert secret not in json.dumps(fw.to_dict(), ensure_ascii=False)
    assert [e["type"] for e in fw.entities] == ["document", "phone"]
    assert fw.tags == ()


def test_a_redacted_forward_cannot_be_built_to_carry_the_original_body() -> None:
    d = make(redact=["body"]).to_dict()
    d["forwarded"]["body"] = make().to_dict()["forwarded"]["body"]
    with pytest.raises(errors.ValidationError) as caught:
        Bulletin.from_dict(d)
    assert caught.value.field == "forwarded.body"


def test_a_redacted_forward_cannot_lower_precedence_either() -> None:
    with pytest.raises(errors.ForwardRefused, match="never lowers precedence"):
        verify_forward(tampered(make(redact=["body"]), precedence="PRIORITY"), BOOK)


@pytest.mark.parametrize(
    ("paths", "check"),
    [
        (["title"], lambda b: b.title == REDACTED_TEXT),
        (["body"], lambda b: b.body == REDACTED_TEXT),
        (["expires"], lambda b: b.expires is None),
        (["entities"], lambda b: b.entities == ()),
        (["entities[2]"], lambda b: [e["type"] for e in b.entities] == ["person", "document"]),
        (["entities[0].note", "entities[0].dob"], lambda b: set(b.entities[0]) == {"type", "name", "nationality"}),
        (["tags[1]"], lambda b: b.tags == ("ยาเสพติด",)),
    ],
)
def test_redaction_removes_or_blanks_exactly_the_named_fields(paths: list[str], check: Any) -> None:
    fw = make(redact=paths)
    assert check(fw)
    assert fw.forwarded is not None and fw.forwarded.redacted == tuple(paths)


@pytest.mark.parametrize(
    ("paths", "words"),
    [
        (["kind"], "cannot be redacted"),
        (["releasable_to"], "cannot be redacted"),
        (["in_reply_to"], "has no in_reply_to"),
        (["entities[3]"], "has only 3 entities"),
        (["entities[0].type"], "type cannot be redacted"),
        (["entities[2].number"], "cannot be blanked; redact the whole entity entities[2]"),
        (["entities[1].holder"], "has no holder"),
        (["entities[0]", "entities[0].name"], "inside entities[0]"),
        (["body", "body"], "names a field twice"),
        (["Entities[0]"], "not a field path"),
        (["title.x"], "cannot be redacted"),
        (["title[0]"], "not a list"),
        (["tags[0].x"], "redact the whole item tags[0]"),
        ("body", "must be a list"),
    ],
)
def test_redaction_of_what_cannot_or_does_not_exist_is_refused(paths: Any, words: str) -> None:
    with pytest.raises(errors.ValidationError, match=words.replace("[", r"\[").replace("]", r"\]")) as caught:
        make(redact=paths)
    assert caught.value.field == "redact"


# -- what is not forwarded ---------------------------------------------------------------


def test_a_forward_of_a_forward_is_refused() -> None:
    once = make()
    again = Opener.for_identity(SVK, BOOK).open(sealed_by(TCCC, once, [OfficeRecipient(SVK.public())], at=LATER), witnessed_at=STORED)
    with pytest.raises(errors.ValidationError, match="forward that original"):
        forward(again, centre="TH-TCCC", new_id=new_id("twice"), created=LATER + 1)


def test_a_member_refuses_a_forward_carrying_a_forward() -> None:
    once = make()
    inner = Opener.for_identity(TCCC, BOOK).open(sealed_by(TCCC, once, [OfficeRecipient(TCCC.public())], at=LATER), witnessed_at=STORED)
    shown = {k: v for k, v in once.to_dict().items() if k not in ("id", "from", "created")}
    outer = tampered(make(new_id=new_id("outer")), **shown)
    outer = _with_original(outer, sender="TH-TCCC", header=inner.header, body=inner.body, signature=inner.signature)
    with pytest.raises(errors.ForwardRefused, match="one level deep"):
        verify_forward(outer, BOOK)


def test_forwarding_an_expired_bulletin_is_refused() -> None:
    with pytest.raises(errors.ValidationError, match="expired"):
        forward(OPENED, centre="TH-TCCC", new_id=new_id(), created=ORIGINAL.expires or 0)


def test_a_forward_needs_its_own_id() -> None:
    with pytest.raises(errors.ValidationError, match="new id"):
        make(new_id=ORIGINAL.id)
    with pytest.raises(errors.ForwardRefused, match="id of the original"):
        verify_forward(tampered(make(), id=ORIGINAL.id), BOOK)


def test_forward_refuses_bytes_that_are_not_the_bulletin_given() -> None:
    other = msgspec.structs.replace(OPENED, bulletin=bulletin(title="something else"))
    with pytest.raises(errors.ValidationError, match="not those of bulletin"):
        make(other)


def test_a_forward_over_the_envelope_limit_fails_to_seal_as_too_large() -> None:
    """The original travels twice (shown and as bytes): a near-limit original cannot be forwarded whole."""
    big = received_by_centre(
        bulletin(body="ก" * 30_000, entities=[{"type": "phone", "number": "123", "note": "ข" * 1000}] * 20)
    )
    assert 128 * 1024 < len(big.body) < 192 * 1024
    with pytest.raises(errors.TooLarge):
        on_the_feed(make(big))
    assert verify_forward(on_the_feed(make(big, redact=["body"])), BOOK).redacted


# -- decoders under random input ---------------------------------------------------------

_validate_forwarded = BODY_FIELDS["forwarded"][0]
_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 300), st.text(max_size=12), st.binary(max_size=80))
_values = st.recursive(
    _leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=12,
)
_keys = st.sampled_from(["sender", "header", "body", "signature", "redacted", "other"])
_near = st.dictionaries(_keys, st.one_of(_values, st.sampled_from(["TH-MUK", b"s" * 64, b"\x98", ["body"], "QQ=="])))
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.one_of(_values, _near))
def test_the_forwarded_validator_gives_only_validation_errors(value: Any) -> None:
    try:
        got = _validate_forwarded(value)
    except errors.ValidationError:
        return
    assert isinstance(got, Forwarded) and bool(got.redacted) == (got.body is None) == (got.signature is None)


@FUZZ
@given(st.one_of(_values, _near))
def test_a_forwarded_field_in_dict_form_gives_only_validation_errors(value: Any) -> None:
    data = {**make().to_dict(), "forwarded": value}
    try:
        b = Bulletin.from_dict(data)
    except errors.ValidationError:
        return
    assert Bulletin.from_dict(b.to_dict()) == b


@FUZZ
@given(st.one_of(_values, _near))
def test_a_forwarded_field_in_a_decrypted_body_gives_only_validation_errors(value: Any) -> None:
    raw = msgpack.unpackb(msgpack.packb({**ORIGINAL.body_dict(), "forwarded": value}, use_bin_type=True), raw=False)
    try:
        body_from_dict(raw)
    except errors.ValidationError:
        pass


WHOLE = make()
assert WHOLE.forwarded is not None
_PARTS = {"header": WHOLE.forwarded.header, "body": WHOLE.forwarded.body, "signature": WHOLE.forwarded.signature}


@FUZZ
@given(st.sampled_from(sorted(_PARTS)), st.data())
def test_mutated_original_bytes_never_verify_and_give_only_forward_refused(part: str, data: st.DataObject) -> None:
    original = _PARTS[part]
    assert original is not None
    at = data.draw(st.integers(0, len(original) - 1))
    mutated = data.draw(
        st.one_of(
            st.just(original[:at] + bytes([original[at] ^ data.draw(st.integers(1, 255))]) + original[at + 1 :]),
            st.just(original[:at]),
            st.binary(max_size=120),
        )
    )
    if mutated == original:
        return
    try:
        p = verify_forward(_with_original(WHOLE, **{part: mutated}), BOOK)
    except errors.ForwardRefused:
        return
    # Only a header change that names an unknown key can avoid an error; it is never "verified".
    assert not p.verified
