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
the acks (TCP's BBR estimates the same two): the round trip as the shortest time from a
window's sending to its last ack over the last ``WINDOW_S``; the delivery rate as the
largest, over the same time, of the bytes acknowledged in a span of at least two round
trips (``RATE_SPAN_S`` at the least) divided by that span. A span, not one
window: acks of several windows can come back together, and a window's bytes over the
few milliseconds between two of them would overstate the link a hundredfold. While the
budget limits the pump, the budget exceeds what is in flight by ``QUEUE_S`` of the rate,
so the rate it measures can grow until the link is full. On loopback the budget grows to
megabytes within a fraction of a second and limits nothing.
"""

from __future__ import annotations

from collections import deque

#: What a FLASH may wait behind, in the link's time.
QUEUE_S = 0.25
#: The budget before anything was measured, and its floor: a window of a few bulletins.
MIN_BYTES = 8 * 1024
#: The ceiling: more in flight than this helps no link (the window counts cap it anyway).
MAX_BYTES = 64 * 1024 * 1024
#: The shortest span a delivery rate is measured over (on loopback, where two round trips
#: are a millisecond: the budget is then megabytes within a few windows).
RATE_SPAN_S = 0.002
#: How long a measurement counts (a link's speed changes: a modem re-trains, a VSAT fades).
WINDOW_S = 30.0


class Pacer:
    def __init__(self, *, queue_s: float = QUEUE_S, min_bytes: int = MIN_BYTES, window_s: float = WINDOW_S) -> None:
        self.queue_s = queue_s
        self.min_bytes = min_bytes
        self.window_s = window_s
        self.in_flight = 0  # bytes sent, not yet acknowledged (or given up on)
        self._rtts: deque[tuple[float, float]] = deque()  # (when measured, round trip s)
        self._rates: deque[tuple[float, float]] = deque()  # (when measured, bytes per s)
        self._delivered: deque[tuple[float, int]] = deque()  # (when, bytes acknowledged so far)
        self._total = 0

    def budget(self) -> int:
        if not self._rtts or not self._rates:
            return self.min_bytes
        rtt = min(r for _, r in self._rtts)
        rate = max(r for _, r in self._rates)
        return max(self.min_bytes, int(min(MAX_BYTES, rate * (rtt + self.queue_s))))

    def sent(self, nbytes: int) -> None:
        """A window of ``nbytes`` went on the wire."""
        self.in_flight += nbytes

    def done(self, nbytes: int, acked: int, sent_at: float, now: float) -> None:
        """The window of ``nbytes`` sent at ``sent_at`` is settled at ``now``: ``acked`` of
        its bytes were acknowledged (the others failed and stay queued)."""
        self.in_flight = max(0, self.in_flight - nbytes)
        if acked <= 0 or now <= sent_at:
            return
        self._add(self._rtts, now, now - sent_at)
        if not self._delivered:  # the first ack: deliveries are counted from the first sending
            self._delivered.append((sent_at, 0))
        self._total += acked
        self._delivered.append((now, self._total))
        span = max(RATE_SPAN_S, 2 * min(r for _, r in self._rtts))
        # the latest record at least ``span`` before now: the rate over that span
        while len(self._delivered) > 2 and now - self._delivered[1][0] >= span:
            self._delivered.popleft()
        then, before = self._delivered[0]
        if now - then >= span:
            self._add(self._rates, now, (self._total - before) / (now - then))

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
