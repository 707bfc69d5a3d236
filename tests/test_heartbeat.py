"""Signed heartbeats and the centre's network view (bus.heartbeat). Pure."""

from __future__ import annotations

import dataclasses
import itertools
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus import errors
from bus.heartbeat import (
    DAY_MS,
    HEARTBEAT_LABEL,
    MAX_HEARTBEAT_BYTES,
    NEVER_SEEN,
    ONLINE,
    SILENT,
    Heartbeat,
    NodeStatus,
    day_index,
    day_starts,
    decode_heartbeat,
    network_view,
    open_heartbeat,
    sign_heartbeat,
)
from bus.keys import PeerBook
from bus.receipt import RECEIPT_LABEL
from tests.helpers import NOW, STORED, identity

MUK, NKP, SVK = identity("TH-MUK"), identity("TH-NKP"), identity("LA-SVK")
BOOK = PeerBook([MUK.public(), NKP.public(), SVK.public()])
MINUTE = 60_000
BANGKOK = 7 * 60  # UTC+7, as TH, LA, KH and VN

STATUS = NodeStatus(
    online_since=NOW - 3 * 3_600_000,
    software="0.1.0",
    outbox_depth=3,
    outbox_oldest_at=NOW - 2 * MINUTE,
    unacked_flash=1,
    last_sent_at=NOW - MINUTE,
    last_received_at=NOW - 30_000,
    key_expires_at=NOW + 10 * DAY_MS,
    utc_offset_min=BANGKOK,
    daily=((4, 9), (0, 0), (12, 30), (7, 7), (1, 2), (0, 5), (3, 1)),
)


def beat(who: Any = MUK, status: NodeStatus = STATUS, at: int = NOW) -> bytes:
    return sign_heartbeat(who, status, now_ms=at)


def opened(who: Any = MUK, status: NodeStatus = STATUS, at: int = NOW) -> Heartbeat:
    return open_heartbeat(beat(who, status, at), BOOK, witnessed_at=at + 1_000)


def resign(fields: list[Any], who: Any = MUK, label: bytes = HEARTBEAT_LABEL) -> bytes:
    body = msgpack.packb(fields, use_bin_type=True)
    return msgpack.packb([body, who.signing.sign(label + body)], use_bin_type=True)


def fields_of(data: bytes) -> list[Any]:
    body, _ = msgpack.unpackb(data)
    return msgpack.unpackb(body)


# -- signing and opening -------------------------------------------------------------------


def test_a_heartbeat_verifies_and_carries_everything_the_office_reported() -> None:
    hb = opened()
    assert (hb.office, hb.sign_kid, hb.sent_at) == ("TH-MUK", MUK.signing.kid, NOW)
    assert hb.status == STATUS
    assert hb.outbox_lag_ms == 2 * MINUTE


def test_a_heartbeat_is_small_and_only_the_latest_matters() -> None:
    assert len(beat()) < 256 < MAX_HEARTBEAT_BYTES


def test_an_idle_node_s_heartbeat_has_nils_for_what_never_happened() -> None:
    idle = NodeStatus(online_since=NOW, software="0.1.0")
    hb = opened(status=idle)
    assert (hb.status.last_sent_at, hb.status.key_expires_at, hb.outbox_lag_ms) == (None, None, None)
    assert [d.sent for d in hb.days()] == [0] * 7


def test_the_seven_days_are_local_days_ending_with_the_one_holding_sent_at() -> None:
    days = opened().days()
    assert [(d.sent, d.received) for d in days] == list(STATUS.daily)
    local = timezone(timedelta(minutes=BANGKOK))
    starts = [datetime.fromtimestamp(d.start_ms / 1000, local) for d in days]
    assert all((s.hour, s.minute, s.second) == (0, 0, 0) for s in starts)
    assert starts[-1].date() == datetime.fromtimestamp(NOW / 1000, local).date()
    assert [b - a for a, b in itertools.pairwise(starts)] == [timedelta(days=1)] * 6


def test_day_index_says_which_bucket_an_event_falls_in() -> None:
    starts = day_starts(NOW, BANGKOK)
    assert day_index(NOW, NOW, BANGKOK) == 6
    assert day_index(starts[0], NOW, BANGKOK) == 0
    assert day_index(starts[0] - 1, NOW, BANGKOK) is None
    assert day_index(starts[3] + DAY_MS - 1, NOW, BANGKOK) == 3
    assert (
        day_starts(NOW, 0)[-1]
        == datetime.fromtimestamp(NOW / 1000, UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000
    )


def test_a_heartbeat_from_an_office_not_in_the_directory_is_unknown_sender_and_retryable() -> None:
    with pytest.raises(errors.UnknownSender) as caught:
        open_heartbeat(beat(identity("KH-POI")), BOOK, witnessed_at=STORED)
    assert caught.value.retryable


def test_changing_any_signed_field_breaks_the_signature() -> None:
    data = beat()
    # An empty outbox, no FLASH waiting, a later time, another version, a quiet week.
    for changes in ({5: 0, 6: None}, {7: 0}, {3: NOW + DAY_MS}, {11: "9.9.9"}, {13: [[0, 0]] * 7}):
        fields = fields_of(data)
        for index, value in changes.items():
            fields[index] = value
        _, sig = msgpack.unpackb(data)
        forged = msgpack.packb([msgpack.packb(fields, use_bin_type=True), sig], use_bin_type=True)
        assert decode_heartbeat(forged)[0].office == "TH-MUK"  # well-formed: only the signature can tell
        with pytest.raises(errors.BadSignature):
            open_heartbeat(forged, BOOK, witnessed_at=NOW + 2 * DAY_MS)  # stored late enough for the later time


def test_one_office_cannot_publish_a_heartbeat_as_another() -> None:
    fields = fields_of(beat(NKP))
    fields[1], fields[2] = "TH-MUK", MUK.signing.kid
    with pytest.raises(errors.BadSignature):
        open_heartbeat(resign(fields, who=NKP), BOOK, witnessed_at=STORED)


def test_a_signature_made_for_another_purpose_does_not_verify_as_a_heartbeat() -> None:
    fields = fields_of(beat())
    with pytest.raises(errors.BadSignature):
        open_heartbeat(resign(fields, label=RECEIPT_LABEL), BOOK, witnessed_at=STORED)
    assert open_heartbeat(resign(fields), BOOK, witnessed_at=STORED).office == "TH-MUK"


def test_a_heartbeat_signed_after_the_key_was_revoked_is_refused() -> None:
    book = PeerBook([dataclasses.replace(MUK.public(), revoked_at=NOW)])
    with pytest.raises(errors.SenderKeyInvalid):
        open_heartbeat(beat(), book, witnessed_at=STORED)
    assert open_heartbeat(beat(at=NOW - 1), book, witnessed_at=STORED).sent_at == NOW - 1


def test_a_heartbeat_on_another_office_s_subject_is_misrouted() -> None:
    with pytest.raises(errors.Misrouted):
        open_heartbeat(beat(), BOOK, office="TH-NKP", witnessed_at=STORED)
    assert open_heartbeat(beat(), BOOK, office="TH-MUK", witnessed_at=STORED).office == "TH-MUK"


def test_a_newer_heartbeat_version_asks_for_an_upgrade_even_with_more_fields() -> None:
    fields = fields_of(beat())
    with pytest.raises(errors.UnsupportedVersion, match="upgrade"):
        open_heartbeat(resign([2, *fields[1:], "extra"]), BOOK, witnessed_at=STORED)


def test_an_oversized_heartbeat_is_refused_before_decoding() -> None:
    with pytest.raises(errors.TooLarge):
        decode_heartbeat(b"\x00" * (MAX_HEARTBEAT_BYTES + 1))


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"outbox_oldest_at": None}, "oldest outbox time"),
        ({"outbox_depth": 0}, "oldest outbox time"),
        ({"outbox_depth": -1}, "outbox depth"),
        ({"unacked_flash": 1 << 32}, r"below 2\^32"),
        ({"software": "0.1 beta"}, "software version"),
        ({"software": ""}, "software version"),
        ({"utc_offset_min": 400}, "multiple of 15"),
        ({"utc_offset_min": 900}, "-720 to 840"),
        ({"daily": ((0, 0),) * 6}, "7 pairs"),
        ({"daily": ((0, -1),) * 7}, "7 pairs"),
        ({"last_sent_at": 1.5}, "or nil"),
        ({"online_since": True}, "online-since"),
    ],
)
def test_signing_refuses_values_no_receiver_would_accept(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(errors.ValidationError, match=words):
        beat(status=dataclasses.replace(STATUS, **changes))


def test_decoding_refuses_a_signed_body_that_breaks_the_rules() -> None:
    fields = fields_of(beat())
    fields[13] = fields[13][:6]
    with pytest.raises(errors.MalformedEnvelope, match="7 pairs"):
        open_heartbeat(resign(fields), BOOK, witnessed_at=STORED)


# -- decoders under random input -----------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GOOD = beat()


@FUZZ
@given(st.binary(max_size=400))
def test_decoding_arbitrary_bytes_raises_only_envelope_errors(data: bytes) -> None:
    try:
        decode_heartbeat(data)
    except errors.EnvelopeError:
        pass


@FUZZ
@given(st.integers(0, len(GOOD) - 1), st.integers(1, 255))
def test_any_flipped_byte_is_refused_with_an_envelope_error(pos: int, flip: int) -> None:
    data = bytearray(GOOD)
    data[pos] ^= flip
    with pytest.raises(errors.EnvelopeError):
        open_heartbeat(bytes(data), BOOK, witnessed_at=STORED)


@FUZZ
@given(st.integers(0, len(GOOD)))
def test_a_truncated_heartbeat_is_refused_with_an_envelope_error(cut: int) -> None:
    with pytest.raises(errors.EnvelopeError):
        open_heartbeat(GOOD[:cut] + (b"\x00" if cut == len(GOOD) else b""), BOOK, witnessed_at=STORED)


_value = st.one_of(
    st.integers(-3, 1 << 50),
    st.text(max_size=12),
    st.binary(max_size=12),
    st.none(),
    st.booleans(),
    st.floats(),
    st.lists(st.lists(st.integers(-1, 3), max_size=3), max_size=8),
)


@FUZZ
@given(st.lists(_value, max_size=16), st.booleans())
def test_wrong_shaped_bodies_raise_only_envelope_errors(fields: list[Any], versioned: bool) -> None:
    try:
        decode_heartbeat(resign([1, *fields] if versioned else fields))
    except errors.EnvelopeError:
        pass


@FUZZ
@given(st.integers(0, 13), _value)
def test_one_field_replaced_is_decoded_or_refused_with_an_envelope_error_only(index: int, value: Any) -> None:
    fields = fields_of(GOOD)
    fields[index] = value
    try:
        hb = open_heartbeat(resign(fields), BOOK, witnessed_at=STORED)
    except errors.EnvelopeError:
        return
    assert hb.office == "TH-MUK"


# -- the network view ----------------------------------------------------------------------

OFFICES = ["TH-MUK", "TH-NKP", "TH-CSN"]
SILENT_AFTER = 3 * MINUTE


def test_each_office_is_online_silent_or_never_seen() -> None:
    view = network_view([opened(MUK), opened(NKP, at=NOW - 10 * MINUTE)], OFFICES, NOW + MINUTE, SILENT_AFTER)
    states = {o.office: o.state for o in view.offices}
    assert states == {"TH-MUK": ONLINE, "TH-NKP": SILENT, "TH-CSN": NEVER_SEEN}
    assert [view.count(s) for s in (ONLINE, SILENT, NEVER_SEEN)] == [1, 1, 1]
    by = {o.office: o for o in view.offices}
    assert by["TH-NKP"].age_ms == 11 * MINUTE and "silent" in by["TH-NKP"].flags
    assert by["TH-CSN"].flags == ("never_seen",) and by["TH-CSN"].heartbeat is None


def test_only_the_latest_heartbeat_of_an_office_counts_whatever_the_order() -> None:
    old, new = opened(at=NOW - 10 * MINUTE), opened(at=NOW)
    for order in ([old, new], [new, old]):
        muk = network_view(order, ["TH-MUK"], NOW + MINUTE, SILENT_AFTER).offices[0]
        assert (muk.state, muk.last_seen) == (ONLINE, NOW)


def test_outbox_lag_unacknowledged_flash_and_expiring_keys_are_flagged() -> None:
    muk = network_view([opened()], ["TH-MUK"], NOW, SILENT_AFTER, outbox_lag_after_ms=MINUTE, key_warning_days=14)
    office = muk.offices[0]
    assert set(office.flags) == {"outbox_lag", "unacked_flash", "key_expiring"}
    assert (office.outbox_depth, office.outbox_lag_ms, office.unacked_flash) == (3, 2 * MINUTE, 1)
    assert muk.flagged == (office,)
    calm = network_view([opened()], ["TH-MUK"], NOW, SILENT_AFTER, outbox_lag_after_ms=5 * MINUTE, key_warning_days=7)
    assert calm.offices[0].flags == ("unacked_flash",)


def test_the_centre_s_directory_decides_key_expiry_also_for_offices_never_seen() -> None:
    view = network_view(
        [opened()], ["TH-MUK", "TH-CSN"], NOW, SILENT_AFTER, key_expiry={"TH-MUK": None, "TH-CSN": NOW - 1}
    )
    by = {o.office: o for o in view.offices}
    assert "key_expiring" not in by["TH-MUK"].flags
    assert by["TH-CSN"].flags == ("never_seen", "key_expired")


def test_heartbeats_of_offices_outside_the_list_are_ignored() -> None:
    view = network_view([opened(SVK)], ["TH-MUK"], NOW, SILENT_AFTER)
    assert [(o.office, o.state) for o in view.offices] == [("TH-MUK", NEVER_SEEN)]


def test_a_heartbeat_from_the_future_is_flagged_as_a_clock_problem() -> None:
    office = network_view([opened(at=NOW + 10 * MINUTE)], ["TH-MUK"], NOW, SILENT_AFTER).offices[0]
    assert office.state == ONLINE and "clock_ahead" in office.flags


def test_the_seven_day_chart_comes_from_the_latest_heartbeat_alone() -> None:
    office = network_view([opened()], ["TH-MUK"], NOW, SILENT_AFTER).offices[0]
    assert office.heartbeat is not None
    assert sum(d.sent for d in office.heartbeat.days()) == sum(s for s, _ in STATUS.daily)


# -- the spec and the code agree -----------------------------------------------------------


def test_the_spec_states_the_label_the_limit_and_real_errors_for_each_check() -> None:
    spec = (Path(__file__).resolve().parent.parent / "schemas" / "HEARTBEAT.md").read_text(encoding="utf-8")
    assert (
        HEARTBEAT_LABEL == b"blo-bus/v1 heartbeat\x00" and f"The input is at most {MAX_HEARTBEAT_BYTES} bytes" in spec
    )
    assert f"is the {len(HEARTBEAT_LABEL)} bytes `{HEARTBEAT_LABEL[:-1].decode()}`" in spec
    rows = re.findall(r"^\| H(\d+) \| .+ \| `(\w+)` \| `(\w+)` \|$", spec, flags=re.MULTILINE)
    assert [int(n) for n, _, _ in rows] == list(range(1, 11))
    for _, name, reason in rows:
        assert getattr(errors, name).reason == reason
