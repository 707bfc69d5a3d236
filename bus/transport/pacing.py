"""How much the pump may have on the wire: enough to keep the link busy, little enough that
a FLASH posted now does not wait behind minutes of ROUTINE bytes. A pure state machine
(the times are passed in), like ``fast_batch``.

The outbox already hands out FLASH first; what it cannot reorder is what was handed out
before. On a fast link that is nothing to speak of. At a border post with a 64 kbit/s
line (8 KB/s), four windows of 512 bulletins are three megabytes: seven minutes of queue
in the client's and the kernel's buffers, in front of any FLASH. So the pump keeps at
most ``budget()`` bytes unacknowledged:

    budget = max(MIN_BYTES, delivery_rate * (shortest_round_trip + QUEUE_S))

``delivery_rate * shortest_round_trip`` is what the link holds in flight when it is busy
(the bandwidth-delay product); ``QUEUE_S`` of the link's time more keeps it busy while
acks come back, and is about what a FLASH waits behind. Both figures are measured from
the acks, as TCP's BBR measures them: the round trip as the shortest time from a window's
sending to its last ack over the last ``WINDOW_S``; the delivery rate as the largest,
over the same time, of the windows' delivery-rate samples. A window's sample is the bytes
acknowledged from its sending to its ack (its own and those of the windows acked
meanwhile) divided by the longer of two intervals: from the last ack before its sending
to its ack, and from the sending of the window that last ack belonged to, to its own
sending (the IETF draft "Delivery Rate Estimation", Cheng et al.). The longer of the two,
because acks of several windows can come back together: then the bytes over the few
milliseconds between two acks would overstate the link a hundredfold, while the windows
could not have been sent faster than they were. The first interval is at least the window's
own round trip.

While the budget limits the pump, it exceeds what is in flight by ``QUEUE_S`` of the
rate, so the rate measured in one round trip lets ``(round_trip + QUEUE_S) / round_trip``
times as much on the wire in the next: on loopback the budget grows to megabytes within a
fraction of a second and limits nothing; on a slow line the samples cannot exceed the
line's rate, and the budget settles at a quarter second of queue.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

#: What a FLASH may wait behind, in the link's time.
QUEUE_S = 0.25
#: The budget's floor: a window of a few bulletins.
MIN_BYTES = 8 * 1024
#: The budget before anything was measured: on a 64 kbit/s line, the first 4 s of a node's
#: life may queue (the first acks then size the budget to the line); on a fast link it is
#: two fewer round trips of growth before windows reach their full count. On a busy event
#: loop each round trip costs a turn of it: the bus benchmark's publisher (a cold start
#: sealing 5,000 bulletins) is 10% slower starting from 8 KiB. Four seconds once, at start,
#: and not after an outage: measurements are kept until newer ones replace them.
INITIAL_BYTES = 32 * 1024
#: The ceiling: more in flight than this helps no link (the window counts cap it anyway).
MAX_BYTES = 64 * 1024 * 1024
#: How long a measurement counts (a link's speed changes: a modem re-trains, a VSAT fades).
WINDOW_S = 30.0


class Sending(NamedTuple):
    """What the pacer noted when a window went on the wire; handed back with its acks."""

    at: float  # when it was sent
    delivered: int  # bytes acknowledged so far, then
    delivered_at: float  # when the last of those was acknowledged (or ``at`` after idle)
    first_sent_at: float  # when the window of that last ack was sent (or ``at`` after idle)


class Pacer:
    def __init__(self, *, queue_s: float = QUEUE_S, min_bytes: int = MIN_BYTES, window_s: float = WINDOW_S) -> None:
        self.queue_s = queue_s
        self.min_bytes = min_bytes
        self.window_s = window_s
        self.in_flight = 0  # bytes sent, not yet acknowledged (or given up on)
        self._rtts: deque[tuple[float, float]] = deque()  # (when measured, round trip s)
        self._rates: deque[tuple[float, float]] = deque()  # (when measured, bytes per s)
        self._delivered = 0  # bytes acknowledged so far
        self._delivered_at = 0.0  # when the last of them was acknowledged
        self._first_sent_at = 0.0  # when the window of that last ack was sent

    def budget(self) -> int:
        if not self._rtts or not self._rates:
            return max(self.min_bytes, INITIAL_BYTES)
        rtt = min(r for _, r in self._rtts)
        rate = max(r for _, r in self._rates)
        return max(self.min_bytes, int(min(MAX_BYTES, rate * (rtt + self.queue_s))))

    def sent(self, nbytes: int, now: float) -> Sending:
        """A window of ``nbytes`` goes on the wire at ``now``; give ``done`` what this returns."""
        if self.in_flight == 0:  # after idle, deliveries are counted from now
            self._delivered_at = self._first_sent_at = now
        self.in_flight += nbytes
        return Sending(now, self._delivered, self._delivered_at, self._first_sent_at)

    def done(self, sending: Sending, nbytes: int, acked: int, now: float) -> None:
        """The window of ``nbytes`` is settled at ``now``: ``acked`` of its bytes were
        acknowledged (the others failed and stay queued)."""
        self.in_flight = max(0, self.in_flight - nbytes)
        if acked <= 0 or now <= sending.at:
            return
        rtt = now - sending.at
        self._add(self._rtts, now, rtt)
        self._delivered += acked
        self._delivered_at, self._first_sent_at = now, sending.at
        interval = max(now - sending.delivered_at, sending.at - sending.first_sent_at)
        if interval > 0:  # always, when the times passed in run forward
            self._add(self._rates, now, (self._delivered - sending.delivered) / interval)

    def _add(self, samples: deque[tuple[float, float]], now: float, value: float) -> None:
        samples.append((now, value))
        while samples and samples[0][0] < now - self.window_s:
            samples.popleft()


def take(sizes: list[int], room: int, *, nothing_in_flight: bool) -> int:
    """How many of the next messages (their sizes, in the order they go) fit in ``room``:
    at least one when nothing is in flight (a message larger than the whole budget still
    goes, alone), else only what fits (possibly none: wait for acks)."""
    total = n = 0
    for size in sizes:
        if total + size > room and (n > 0 or not nothing_in_flight):
            break
        total += size
        n += 1
    return n
