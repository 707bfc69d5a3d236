"""The pump's pacer (bus/transport/pacing.py): what it lets on the wire, from what the acks say."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bus.transport.pacing import INITIAL_BYTES, MIN_BYTES, QUEUE_S, Pacer, take


def drive(pacer: Pacer, rate_bps: float, rtt_s: float, windows: int, size: int) -> None:
    """Windows of ``size`` bytes over a link of ``rate_bps`` bytes/s and ``rtt_s``, each
    sent when the previous one's acks came back (a busy link, ack-clocked)."""
    now = 0.0
    for _ in range(windows):
        sending = pacer.sent(size, now)
        done = now + rtt_s + size / rate_bps
        pacer.done(sending, size, size, done)
        now = done


def rounds_of_four(pacer: Pacer, rate_bps: float, rtt_s: float, rounds: int) -> None:
    """The pump's four lanes: four windows of a quarter of the budget sent together, acked
    one after the other as the link delivers them, then four more."""
    now = 0.0
    for _ in range(rounds):
        size = pacer.budget() // 4
        sendings = [pacer.sent(size, now) for _ in range(4)]
        for k, sending in enumerate(sendings, 1):
            pacer.done(sending, size, size, now + rtt_s + k * size / rate_bps)
        now += rtt_s + 4 * size / rate_bps


def test_before_any_ack_the_budget_is_a_few_seconds_of_a_64_kbit_line() -> None:
    assert Pacer().budget() == INITIAL_BYTES <= 4 * 8_000 * 1.05


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


def test_on_a_busy_event_loop_one_round_trip_of_acks_lets_several_times_as_much_on_the_wire() -> None:
    """A fast link seen through an event loop busy sealing: every round trip reads 40 ms.
    Each round's samples measure what that round delivered, so the budget grows about
    (40 ms + QUEUE_S) / 40 ms = 7 times a round: megabytes in four rounds, not ten."""
    pacer = Pacer()
    rounds_of_four(pacer, 200e6, 0.040, 1)
    assert pacer.budget() > 5 * INITIAL_BYTES
    rounds_of_four(pacer, 200e6, 0.040, 3)
    assert pacer.budget() > 4 * 1024 * 1024


def test_acks_of_several_windows_coming_back_together_do_not_inflate_the_rate() -> None:
    """Four windows of 1.4 KB sent together on an 8 KB/s link, their acks read a
    millisecond apart (the event loop was busy while they came in): each sample spans
    from the acks before its sending, so the rate stays the link's, not 1.4 KB per
    millisecond."""
    pacer = Pacer()
    now = 0.0
    for _ in range(30):
        sendings = [pacer.sent(1_400, now) for _ in range(4)]
        for k, sending in enumerate(sendings):
            pacer.done(sending, 1_400, 1_400, now + 0.7 + k * 0.001)
        now += 0.71
    assert pacer.budget() < 20_000


def test_acks_read_in_a_burst_just_after_an_earlier_ack_do_not_inflate_the_rate() -> None:
    """On a slow line windows went out over two seconds; a window sent just after an ack
    had its ack read in the same burst as four others (the event loop was busy). Its
    sample spans from the sending of the window acked before it was sent (two seconds),
    not the 54 ms since that ack: 20 KB/s, not 740 KB/s."""
    pacer = Pacer()
    early = [pacer.sent(8_000, t) for t in (-1.0, 0.0, 0.3, 0.6, 0.9)]
    pacer.done(early[0], 8_000, 8_000, 0.95)
    last = pacer.sent(8_000, 0.96)
    for k, sending in enumerate([*early[1:], last]):
        pacer.done(sending, 8_000, 8_000, 1.0 + k * 0.001)
    assert pacer.budget() < 50_000


def test_failed_windows_teach_nothing_and_free_their_bytes() -> None:
    pacer = Pacer()
    sending = pacer.sent(50_000, 0.0)
    pacer.done(sending, 50_000, 0, 5.0)  # the link dropped: nothing acked
    assert pacer.in_flight == 0 and pacer.budget() == INITIAL_BYTES


def test_old_measurements_are_forgotten_when_the_link_slows() -> None:
    pacer = Pacer(window_s=30.0)
    drive(pacer, 1_000_000, 0.05, 5, 100_000)
    fast = pacer.budget()
    sending = pacer.sent(8_000, 100.0)
    pacer.done(sending, 8_000, 8_000, 101.6)  # a minute later: 8 KB over 1.6 s
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
        sending = pacer.sent(size, sent_at)
        pacer.done(sending, size, min(acked, size), sent_at + took)
        assert pacer.budget() >= MIN_BYTES and pacer.in_flight >= 0
