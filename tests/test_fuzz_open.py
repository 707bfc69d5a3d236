"""Property tests hammering the v2 decoders (the reference ``Opener.open``, the fast
``FastOpener.open``, ``read_routing``).

Three promises, whatever the bytes: only ``bus.errors.EnvelopeError`` subclasses come out
(never a raw msgpack, nacl, Key/Type/Value or Recursion error); a changed envelope never
opens to anything but the original bulletin, and a changed header never opens at all;
and the fast opener, fresh or warmed with the layouts it keeps, gives exactly the
reference's answer.
"""

from __future__ import annotations

from typing import Any

import msgpack
import nacl.bindings as nb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import errors
from bus.bulletin import Bulletin
from bus.envelope import (
    RECIPIENT_FEED,
    RECIPIENT_OFFICE,
    FeedRecipient,
    OfficeRecipient,
    Opener,
    Sealer,
    check_header,
    office_kek,
    read_routing,
    signed_message,
    unpack,
    wrap_ad,
)
from bus.envelope_fast import _CANONICAL_HEADER, FastOpener, FastSealer, checked_header
from bus.keys import BoxKeyPair, PeerBook
from bus.testing import DeterministicRng
from tests.helpers import NOW, bulletin, identity

_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack
MUK, SVK = identity("TH-MUK"), identity("LA-SVK")
#: Every bulletin here was stored a second after it was sealed.
STORED = NOW + 1_000
FEED, EPOCH, FEED_KEY = "mekong-border", 7, bytes(range(32))
BOOK = PeerBook([MUK.public(), SVK.public()])
ORIGINAL = bulletin(expires=NOW + 1000, tags=["ยาเสพติด"])
SEALED = Sealer(MUK).seal(
    ORIGINAL, [OfficeRecipient(SVK.public()), FeedRecipient(FEED, EPOCH, FEED_KEY)], now_ms=NOW, rng=DeterministicRng("fuzz")
)
_, HEADER, CIPHERTEXT = msgpack.unpackb(SEALED)
HEADER_FIELDS = msgpack.unpackb(HEADER)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: For the tests whose every example seals and opens (crypto each time) or draws nested values.
FUZZ_HEAVY = settings(FUZZ, max_examples=150)


#: (receiver, the subject's recipient it reads through) pairs every decoder is tried as.
RECEIVERS = [("office", (RECIPIENT_OFFICE, "LA-SVK")), ("office", None), ("member", (RECIPIENT_FEED, FEED))]


def openers(cls: type[Opener] = Opener) -> list[Opener]:
    """As the office itself (through its inbox, and with no subject), and as a feed member
    with no office entry of its own."""
    return [
        cls.for_identity(SVK, BOOK),
        cls.for_identity(SVK, BOOK),
        cls("LA-THK", [], BOOK, feed_keys={(FEED, EPOCH): FEED_KEY}),
    ]


def _open_all(kept: list[Opener], data: bytes) -> list[Any]:
    results: list[Any] = []
    for o, (_, via) in zip(kept, RECEIVERS, strict=True):
        try:
            results.append(o.open(data, witnessed_at=STORED, via=via))
        except errors.EnvelopeError as exc:
            results.append(exc)
    return results


def outcome(data: bytes) -> list[Any]:
    """Feed ``data`` to every decoder; return what the reference made of it (a value or the
    error), after checking the fast opener made exactly the same. Anything that is not an
    EnvelopeError propagates and fails the test."""
    results: list[Any] = []
    try:
        results.append(read_routing(data))
    except errors.EnvelopeError as exc:
        results.append(exc)
    reference = _open_all(openers(), data)
    assert _same(_open_all(openers(FastOpener), data), reference)
    return results + reference


def _same(a: list[Any], b: list[Any]) -> bool:
    """The same outcomes: equal values, or errors of the same class and message."""
    def key(x: Any) -> Any:
        return (type(x), x.message) if isinstance(x, errors.EnvelopeError) else x
    return [key(x) for x in a] == [key(x) for x in b]


def assert_never_opens_to_another_bulletin(data: bytes) -> None:
    for result in outcome(data)[1:]:
        if not isinstance(result, errors.EnvelopeError):
            assert result.bulletin == ORIGINAL
            assert (result.header, result.sent_at) == (HEADER, NOW)


def test_the_unmutated_envelope_opens_for_both_receivers():
    routing, *opened = outcome(SEALED)
    assert routing[0] == ORIGINAL.id
    assert [o.bulletin for o in opened] == [ORIGINAL, ORIGINAL, ORIGINAL]
    assert [o.opened_via.kind for o in opened] == [RECIPIENT_OFFICE, RECIPIENT_OFFICE, RECIPIENT_FEED]


# -- arbitrary input ---------------------------------------------------------------------

_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.text(max_size=20),
    st.binary(max_size=40),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=12)),
    st.builds(msgpack.Timestamp, st.integers(-(2**40), 2**40), st.integers(0, 999_999_999)),  # ext type -1
)
_values = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=8),
        st.dictionaries(st.one_of(st.text(max_size=8), st.binary(max_size=8), st.integers(-(2**63), 2**64 - 1)), inner, max_size=5),
    ),
    max_leaves=10,
)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_envelope_errors(data):
    for result in outcome(data):
        assert isinstance(result, errors.EnvelopeError | tuple)


@FUZZ
@given(_values)
def test_random_msgpack_values_raise_only_envelope_errors(value):
    outcome(msgpack.packb(value, use_bin_type=True))


@FUZZ
@given(
    st.one_of(st.just(2), _leaf),
    st.one_of(st.lists(_leaf, min_size=8, max_size=8).map(lambda h: _packb(h)), st.binary(max_size=200), _leaf),
    st.one_of(st.binary(min_size=80, max_size=200), _leaf),
)
def test_envelope_shaped_values_raise_only_envelope_errors(version, header, ciphertext):
    outcome(_packb([version, header, ciphertext]))


# -- mutations of a valid envelope -------------------------------------------------------


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(SEALED)
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "replace"]))
    i = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        data[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        del data[i:]
    elif kind == "insert":
        data[i:i] = draw(st.binary(min_size=1, max_size=8))
    elif kind == "delete":
        del data[i : i + draw(st.integers(1, 16))]
    else:
        data[i] = draw(st.integers(0, 255).filter(lambda b: b != data[i]))
    return bytes(data)


@FUZZ
@given(byte_mutations())
def test_byte_mutations_never_open_to_another_bulletin(data):
    assert_never_opens_to_another_bulletin(data)


def _other_type(value: Any) -> list[Any]:
    """Values of other msgpack types standing in for ``value``."""
    pool: list[Any] = [None, True, 0, 1, 2, -1, 1.0, "", [], {}, b""]
    if isinstance(value, bytes):
        pool += [value.hex(), value.decode("latin-1"), list(value), value[:-1], value + b"\x00", int.from_bytes(value[:8] or b"\0", "big")]
    elif isinstance(value, str):
        pool += [value.encode(), value.lower(), value + "\n", [value]]
    elif isinstance(value, int) and not isinstance(value, bool):
        pool += [str(value), value.to_bytes(8, "big"), float(value), value + 1, -value - 1, (1 << 64) - 1]
    elif isinstance(value, list):
        pool += [tuple(value), value[:-1], [*value, value[-1] if value else None], msgpack.packb(value)]
    return [p for p in pool if type(p) is not type(value) or p != value]


@st.composite
def header_mutations(draw: st.DrawFn) -> list[Any]:
    h = msgpack.unpackb(HEADER)
    op = draw(st.sampled_from(["swap", "retype", "retype-entry", "swap-entry", "entries", "shape"]))
    if op == "swap":
        i, j = draw(st.lists(st.integers(0, 7), min_size=2, max_size=2, unique=True))
        h[i], h[j] = h[j], h[i]
    elif op == "retype":
        i = draw(st.integers(0, 7))
        h[i] = draw(st.sampled_from(_other_type(h[i])))
    elif op == "retype-entry":
        e = h[7][draw(st.integers(0, len(h[7]) - 1))]
        k = draw(st.integers(0, 4))
        e[k] = draw(st.sampled_from(_other_type(e[k])))
    elif op == "swap-entry":
        e = h[7][draw(st.integers(0, len(h[7]) - 1))]
        i, j = draw(st.lists(st.integers(0, 4), min_size=2, max_size=2, unique=True))
        e[i], e[j] = e[j], e[i]
    elif op == "entries":
        choice = draw(st.sampled_from(["reverse", "duplicate", "drop", "kind"]))
        if choice == "reverse":
            h[7].reverse()
        elif choice == "duplicate":
            h[7].append(h[7][0])
        elif choice == "drop":
            h[7].pop(0)
        else:
            h[7][0][0] = 3 - h[7][0][0]
    else:
        h = draw(st.sampled_from([h[:7], [*h, None], [h], {"header": h[0]}]))
    return h


@FUZZ
@given(header_mutations())
def test_header_field_swaps_and_type_swaps_never_open(h):
    header = _packb(h)
    data = _packb([2, header, CIPHERTEXT])
    for result in outcome(data)[1:]:
        if header == HEADER:  # a swap of two equal values changes nothing
            assert not isinstance(result, errors.EnvelopeError) and result.bulletin == ORIGINAL
        else:
            assert isinstance(result, errors.EnvelopeError)


@pytest.mark.parametrize(("element", "pad"), [(0, b"\x00"), (1, b"\xc0"), (2, b"\x91\x01")])
def test_non_canonical_outer_encoding_still_opens_the_same_bulletin(element, pad):
    """The outer array is not signed: a wider msgpack encoding of it opens the same bytes
    (so deduplicate by bulletin id, not by a hash of the envelope)."""
    if element == 0:
        version = b"\xcf" + (2).to_bytes(8, "big")  # 2 as uint64
    else:
        version = b"\x02"
    header = b"\xc6" + len(HEADER).to_bytes(4, "big") + HEADER if element == 1 else _packb(HEADER)  # bin32
    ct = b"\xc6" + len(CIPHERTEXT).to_bytes(4, "big") + CIPHERTEXT if element == 2 else _packb(CIPHERTEXT)
    wide = b"\xdc\x00\x03" + version + header + ct  # array16
    assert wide != SEALED
    assert all(o.bulletin == ORIGINAL for o in outcome(wide)[1:])
    assert isinstance(outcome(wide + pad)[1], errors.MalformedEnvelope)


# -- bodies that are signed and encrypted correctly, but are not bulletins ---------------


def seal_body(body: bytes) -> bytes:
    """A v2 envelope from TH-MUK to LA-SVK around arbitrary body bytes, validly signed."""
    rng = DeterministicRng("fuzz body")
    ephemeral = BoxKeyPair.from_secret(rng(32))
    key, nonce, wrap_nonce = rng(32), rng(24), rng(24)
    bid = HEADER_FIELDS[0]
    kek = office_kek(nb.crypto_scalarmult(ephemeral.secret, SVK.box.public), ephemeral.public, SVK.box.public)
    wrapped = nb.crypto_aead_xchacha20poly1305_ietf_encrypt(key, wrap_ad(bid, 1, "LA-SVK", SVK.box.kid), wrap_nonce, kek)
    header = _packb([bid, "TH-MUK", MUK.signing.kid, ephemeral.public, NOW, "ROUTINE", nonce,
                     [[1, "LA-SVK", SVK.box.kid, wrap_nonce, wrapped]]])
    signature = MUK.signing.sign(signed_message(header, body))
    return _packb([2, header, nb.crypto_aead_xchacha20poly1305_ietf_encrypt(signature + body, header, nonce, key)])


def _open_body(body: bytes) -> Any:
    """The reference's outcome for a hand-sealed body, after checking the fast one agrees."""
    sealed = seal_body(body)
    results = []
    for cls in (Opener, FastOpener):
        try:
            results.append(cls.for_identity(SVK, BOOK).open(sealed, witnessed_at=STORED))
        except errors.EnvelopeError as exc:
            results.append(exc)
    assert _same(results[:1], results[1:])
    if isinstance(results[0], errors.EnvelopeError):
        raise results[0]
    return results[0]


def test_a_hand_sealed_valid_body_opens():
    assert _open_body(_packb(ORIGINAL.body_dict())).bulletin.title == ORIGINAL.title


@FUZZ_HEAVY
@given(st.one_of(st.binary(max_size=100), _values.map(lambda v: msgpack.packb(v, use_bin_type=True))))
def test_arbitrary_signed_bodies_are_invalid_content(body):
    with pytest.raises(errors.InvalidContent):
        _open_body(body)


@FUZZ_HEAVY
@given(st.sampled_from(sorted(ORIGINAL.body_dict())), _values)
def test_signed_bodies_with_one_field_replaced_open_only_if_valid(name, value):
    body = {**ORIGINAL.body_dict(), name: value}
    try:
        opened = _open_body(msgpack.packb(body, use_bin_type=True))
    except errors.InvalidContent:
        return
    # A replacement the schema accepts (null for an optional field, another valid value):
    # the wire decoder then agrees exactly with the dict-form validator.
    assert opened.bulletin == Bulletin.from_dict({"id": ORIGINAL.id, "from": "TH-MUK", "precedence": "ROUTINE", **body})


# -- the canonical-header shortcut ---------------------------------------------------------
# bus.envelope_fast.checked_header skips the field-by-field checks of step 6 when the header
# bytes match the canonical encoding of a well-formed header. It must give exactly the
# checks' answer.

_office_ids = st.from_regex(r"[A-Z]{2}-[A-Z0-9]{2,12}", fullmatch=True)
_feed_names = st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True)
_near = lambda limit: st.one_of(st.integers(0, limit), st.sampled_from([limit - 1, limit, limit + 1]))  # noqa: E731


@st.composite
def plausible_headers(draw: st.DrawFn) -> list[Any]:
    """Header values that are well formed or nearly so (one value at or past a limit)."""
    entries = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just(1), _office_ids, st.binary(min_size=8, max_size=8)),
                st.tuples(st.just(2), _feed_names, st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63 - 1, 2**63, -1]))),
            ).map(lambda e: [*e, b"n" * 24, b"w" * 48]),
            min_size=0,
            max_size=4,
        )
    )
    return [
        draw(st.binary(min_size=16, max_size=16)),
        draw(st.one_of(_office_ids, st.sampled_from(["th-muk", "TH-MUK\n", "TH-" + "A" * 13]))),
        draw(st.binary(min_size=8, max_size=8)),
        draw(st.binary(min_size=31, max_size=33)),
        draw(_near(2**48)),
        draw(st.sampled_from(["FLASH", "IMMEDIATE", "PRIORITY", "ROUTINE", "URGENT", "flash"])),
        draw(st.binary(min_size=24, max_size=24)),
        entries,
    ]


def _reference_header(header: bytes) -> Any:
    try:
        return check_header(unpack(header, "header"))
    except errors.MalformedEnvelope as exc:
        return type(exc)


def _shortcut_header(header: bytes) -> Any:
    try:
        return checked_header(header)[0]
    except errors.MalformedEnvelope as exc:
        return type(exc)


@FUZZ
@given(st.one_of(plausible_headers().map(_packb), header_mutations().map(_packb)))
def test_the_canonical_header_shortcut_gives_the_field_checks_answer(header: bytes) -> None:
    assert _shortcut_header(header) == _reference_header(header)


@FUZZ
@given(plausible_headers().map(_packb), st.data())
def test_the_shortcut_agrees_on_byte_mutations_of_plausible_headers(header: bytes, data: st.DataObject) -> None:
    mutated = bytearray(header)
    i = data.draw(st.integers(0, len(mutated) - 1))
    mutated[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del mutated[data.draw(st.integers(0, len(mutated) - 1)) :]
    assert _shortcut_header(bytes(mutated)) == _reference_header(bytes(mutated))


def test_the_shortcut_is_taken_for_what_sealing_produces() -> None:
    long_feed = "f" * 63  # a str8, not a fixstr
    sealed = Sealer(MUK).seal(
        ORIGINAL,
        [OfficeRecipient(SVK.public()), FeedRecipient(long_feed, 2**63 - 1, FEED_KEY), FeedRecipient("a", 1, FEED_KEY)],
        now_ms=(1 << 48) - 1,
    )
    header = msgpack.unpackb(sealed)[1]
    assert _CANONICAL_HEADER.fullmatch(header) is not None
    assert _CANONICAL_HEADER.fullmatch(HEADER) is not None
    assert checked_header(header) == (check_header(msgpack.unpackb(header)), True)


# -- a warmed FastOpener: headers of a layout it keeps (bus.envelope_fast _Layout) ---------

#: One sender whose ephemeral key lasts the whole test: its headers share a layout.
WARM_SEALER = FastSealer(MUK, ephemeral_lifetime_ms=1 << 40)
WARM_SEALED = WARM_SEALER.seal(
    ORIGINAL, [OfficeRecipient(SVK.public()), FeedRecipient(FEED, EPOCH, FEED_KEY)], now_ms=NOW, rng=DeterministicRng("warm")
)


def _warmed() -> list[FastOpener]:
    """Fast ``openers()`` after each has opened two bulletins in WARM_SEALED's layout
    (another id, time and nonces), so each keeps that layout and reads WARM_SEALED by it."""
    kept = openers(FastOpener)
    for i in range(2):
        other = WARM_SEALER.seal(
            bulletin(rng_seed=f"warm {i}"),
            [OfficeRecipient(SVK.public()), FeedRecipient(FEED, EPOCH, FEED_KEY)],
            now_ms=NOW + 1 + i,
            rng=DeterministicRng(f"warm {i}"),
        )
        _open_all(kept, other)
    return kept  # type: ignore[return-value]


def _outcomes(kept: list[Opener], data: bytes) -> list[Any]:
    return [(type(r), r.message) if isinstance(r, errors.EnvelopeError) else r for r in _open_all(kept, data)]


def test_warmed_openers_keep_the_layout_and_open_by_it():
    kept = _warmed()
    assert all(any(layout for layout in o._layouts.values()) for o in kept)
    assert _outcomes(kept, WARM_SEALED) == _outcomes(openers(), WARM_SEALED)
    assert [o.bulletin for o in _outcomes(kept, WARM_SEALED)] == [ORIGINAL, ORIGINAL, ORIGINAL]


def test_a_header_of_the_same_length_to_someone_else_is_not_read_by_the_layout():
    kept = _warmed()
    thk = identity("LA-THK")  # an office id as long as LA-SVK's: the same header length
    book = PeerBook([MUK.public(), SVK.public(), thk.public()])
    for o in kept:
        o.resolver = book
    sealed = WARM_SEALER.seal(ORIGINAL, [OfficeRecipient(thk.public()), FeedRecipient(FEED, EPOCH + 1, FEED_KEY)], now_ms=NOW)
    assert len(msgpack.unpackb(sealed)[1]) == len(msgpack.unpackb(WARM_SEALED)[1])
    for o, (_, via) in zip(kept, RECEIVERS, strict=True):
        with pytest.raises(errors.NotAddressedToUs):
            o.open(sealed, witnessed_at=STORED, via=via)


def test_a_feed_member_that_loses_the_epoch_key_is_told_it_is_not_addressed():
    member = _warmed()[2]
    del member.feed_keys[(FEED, EPOCH)]
    with pytest.raises(errors.NotAddressedToUs):
        member.open(WARM_SEALED, witnessed_at=STORED, via=(RECIPIENT_FEED, FEED))


def test_a_warmed_opener_whose_inbox_key_was_erased_opens_nothing_more_for_it():
    """The divergence a kept layout or wrap key could cause: once an inbox key is erased
    from the live mapping, a warmed opener refuses as a fresh one does."""
    boxes = {SVK.box.kid: SVK.box}
    warm = FastOpener("LA-SVK", boxes, BOOK)
    for i in range(3):
        warm.open(WARM_SEALER.seal(bulletin(rng_seed=f"erase {i}"), [OfficeRecipient(SVK.public())], now_ms=NOW + i),
                  witnessed_at=STORED)
    sealed = WARM_SEALER.seal(ORIGINAL, [OfficeRecipient(SVK.public())], now_ms=NOW + 5)
    del boxes[SVK.box.kid]
    for o in (warm, Opener("LA-SVK", boxes, BOOK)):
        with pytest.raises(errors.NotAddressedToUs):
            o.open(sealed, witnessed_at=STORED)
    warm.forget()
    assert warm._keks == {} and warm._layouts == {}


@FUZZ
@given(byte_mutations())
def test_byte_mutations_meet_a_warmed_opener_as_a_fresh_one(data):
    assert _outcomes(_warmed(), data) == _outcomes(openers(), data)


@FUZZ
@given(st.data())
def test_byte_mutations_of_a_recurring_header_meet_a_warmed_opener_as_a_fresh_one(data):
    mutated = bytearray(WARM_SEALED)
    i = data.draw(st.integers(0, len(mutated) - 1))
    mutated[i] ^= 1 << data.draw(st.integers(0, 7))
    assert _outcomes(_warmed(), bytes(mutated)) == _outcomes(openers(), bytes(mutated))


def test_one_fast_opener_shared_by_threads_gives_every_thread_the_reference_answers():
    """bus.envelope_fast's thread contract: a node opens batches on several threads with one
    FastOpener. Threads opening a mix of good, tampered and foreign bulletins at once, while
    another keeps dropping the caches (``forget``), each get exactly what the reference gives."""
    import threading

    tccc = identity("TH-TCCC")
    book = PeerBook([MUK.public(), SVK.public(), tccc.public()])
    sealer = FastSealer(MUK, ephemeral_lifetime_ms=1 << 40)
    mixed = []
    for i in range(60):
        sealed = sealer.seal(bulletin(rng_seed=f"threads {i}"), [OfficeRecipient(SVK.public())], now_ms=NOW + i)
        if i % 3 == 1:
            sealed = sealed[:-7] + bytes([sealed[-7] ^ 4]) + sealed[-6:]
        elif i % 3 == 2:
            sealed = sealer.seal(bulletin(rng_seed=f"other {i}"), [OfficeRecipient(tccc.public())], now_ms=NOW + i)
        mixed.append(sealed)

    def answer(o: Opener, data: bytes) -> Any:
        try:
            return o.open(data, witnessed_at=STORED).bulletin.id
        except errors.EnvelopeError as exc:
            return type(exc)

    expected = [answer(Opener.for_identity(SVK, book), d) for d in mixed]
    shared = FastOpener.for_identity(SVK, book)
    results: dict[int, list[Any]] = {}
    stop = threading.Event()

    def work(n: int) -> None:
        results[n] = [answer(shared, d) for _ in range(5) for d in mixed]

    def forgetting() -> None:
        while not stop.is_set():
            shared.forget()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    dropper = threading.Thread(target=forgetting)
    dropper.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    dropper.join()
    assert all(results[n] == expected * 5 for n in range(4))
