"""The pump's pacer (bus/transport/pacing.py): what it lets on the wire, from what the acks say."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bus.transport.pacing import MIN_BYTES, QUEUE_S, Pacer, take


def drive(pacer: Pacer, rate_bps: float, rtt_s: float, windows: int, size: int) -> None:
    """Windows of ``size`` bytes over a link of ``rate_bps`` bytes/s and ``rtt_s``, each
    sent when the previous one's acks came back (a busy link, ack-clocked)."""
    now = 0.0
    for _ in range(windows):
        pacer.sent(size)
        done = now + rtt_s + size / rate_bps
        pacer.done(size, size, now, done)
        now = done


def test_before_any_ack_the_budget_is_a_few_bulletins() -> None:
    assert Pacer().budget() == MIN_BYTES


def test_on_a_64_kbit_link_a_flash_waits_behind_about_a_quarter_second_of_queue_not_minutes() -> None:
    pacer = Pacer()
    drive(pacer, 8_000, 0.6, 20, 8_000)  # 64 kbit/s, 600 ms round trip
    budget = pacer.budget()
    in_flight_on_the_line = 8_000 * 0.6  # what the link holds while busy
    assert budget >= in_flight_on_the_line  # keeps the link busy
    # what is queued ahead of a FLASH posted now: the budget beyond what is on the line
    assert (budget - in_flight_on_the_line) / 8_000 < 2 * QUEUE_S + 1.0


def test_on_loopback_the_budget_grows_to_megabytes_within_a_fraction_of_a_second() -> None:
    pacer = Pacer()
    drive(pacer, 200e6, 0.0005, 100, 512 * 1600)  # 100 windows: about 0.45 s
    assert pacer.budget() > 8 * 1024 * 1024


def test_acks_of_several_windows_coming_back_together_do_not_inflate_the_rate() -> None:
    """Four windows of 1.4 KB acked a millisecond apart on an 8 KB/s link: measured over a
    span, the rate stays the link's, not 1.4 KB per millisecond."""
    pacer = Pacer()
    now = 0.0
    for _ in range(30):
        for k in range(4):
            pacer.sent(1_400)
            pacer.done(1_400, 1_400, now, now + 0.7 + k * 0.001)
        now += 4 * 1_400 / 8_000
    assert pacer.budget() < 20_000


def test_failed_windows_teach_nothing_and_free_their_bytes() -> None:
    pacer = Pacer()
    pacer.sent(50_000)
    pacer.done(50_000, 0, 0.0, 5.0)  # the link dropped: nothing acked
    assert pacer.in_flight == 0 and pacer.budget() == MIN_BYTES


def test_old_measurements_are_forgotten_when_the_link_slows() -> None:
    pacer = Pacer(window_s=30.0)
    drive(pacer, 1_000_000, 0.05, 5, 100_000)
    fast = pacer.budget()
    pacer.sent(8_000)
    pacer.done(8_000, 8_000, 100.0, 101.6)  # a minute later: 8 KB over 1.6 s
    assert pacer.budget() < fast / 10


def test_take_sends_at_least_one_message_when_nothing_is_in_flight() -> None:
    assert take([30_000, 100], 8_000, nothing_in_flight=True) == 1
    assert take([30_000, 100], 8_000, nothing_in_flight=False) == 0
    assert take([1_000] * 10, 8_500, nothing_in_flight=False) == 8
    assert take([], 8_000, nothing_in_flight=True) == 0


@given(st.lists(st.integers(1, 1 << 20), max_size=50), st.integers(-(1 << 20), 1 << 24), st.booleans())
def test_take_never_exceeds_the_room_but_for_one_lone_message(sizes: list[int], room: int, idle: bool) -> None:
    n = take(sizes, room, nothing_in_flight=idle)
    assert 0 <= n <= len(sizes)
    assert n == 0 or sum(sizes[:n]) <= room or (n == 1 and idle)
    if idle and sizes:
        assert n >= 1


@given(st.lists(st.tuples(st.integers(1, 1 << 20), st.integers(0, 1 << 20), st.floats(0, 100), st.floats(0, 10)), max_size=40))
def test_the_budget_is_never_below_the_floor_and_in_flight_never_negative(windows) -> None:
    pacer = Pacer()
    for size, acked, sent_at, took in windows:
        pacer.sent(size)
        pacer.done(size, min(acked, size), sent_at, sent_at + took)
        assert pacer.budget() >= MIN_BYTES and pacer.in_flight >= 0
