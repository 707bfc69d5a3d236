"""A slow, far and flaky link on loopback: a traffic-shaping TCP proxy for tests and benchmarks.

The kernel here has no netem, so the link is modelled in user space. A ``LinkProxy``
listens on 127.0.0.1 and forwards every connection to one target (a hub's client or
leaf-node port); the bytes of all connections through one ``Link`` cross the same
modelled line, each way:

* **bandwidth** (bits per second): bytes leave the line at that rate, a packet
  (``PACKET`` bytes) at a time, first come first served across connections, as on a
  modem's uplink;
* **one-way delay**: a packet arrives that long after it left the line;
* **a bottleneck queue** of ``queue_bytes``: a sender that outruns the line waits for
  room, and meanwhile the proxy stops reading its socket, so TCP's own flow control
  holds the sender back (nothing here grows without bound);
* **stalls**: the line carries nothing for a while and the connections stay up (a
  blackout that TCP rides out);
* **drops**: every connection is cut (reset) and new ones are refused for a while (the
  modem re-dials), on demand (``Link.drop``) or on a schedule (``Outages``).

The model is pure (``Line``, ``Outages``: the time is passed in, so tests run it on a
made-up clock); ``LinkProxy`` is the thin asyncio shell around it. It reads with
``sock_recv`` on raw sockets, never through a stream reader's own buffer, and keeps the
kernel's receive buffers small, so what waits for the line waits where a real link keeps
it: in the sender's socket. Bounded in every way: at most ``queue_bytes`` held per
direction, one packet per connection outside it, ``max_connections`` at once, and the
proxy closes itself after ``lifetime_s`` whatever its user does.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

#: Bytes per modelled packet (an Ethernet MTU's worth).
PACKET = 1500
#: Read size on an unshaped line (no bandwidth limit): nothing is modelled, so read much.
_FAST_READ = 64 * 1024
#: The kernel receive buffer asked for on the proxy's sockets (Linux doubles it): small, so
#: bytes that wait for the line wait in the sender's socket, not hidden in ours.
_RCVBUF = 4096
#: The MSS the proxy's sockets announce (see ``_small_buffers``).
_MSS = 1448


class Line:
    """One direction of a link: a FIFO of ``rate_bps`` with ``delay_s`` of propagation and
    room for ``queue_bytes`` waiting to be sent. Pure: every method takes ``now`` (seconds,
    any monotonic origin). ``rate_bps`` None: no bandwidth limit (delay only)."""

    def __init__(self, rate_bps: float | None, delay_s: float = 0.0, queue_bytes: int = 64 * 1024) -> None:
        if rate_bps is not None and rate_bps <= 0:
            raise ValueError(f"rate_bps must be positive or None; got {rate_bps!r}")
        if delay_s < 0 or queue_bytes < PACKET:
            raise ValueError(f"need delay_s >= 0 and queue_bytes >= {PACKET}; got {delay_s!r}, {queue_bytes!r}")
        self.rate = None if rate_bps is None else rate_bps / 8.0  # bytes per second
        self.delay = delay_s
        self.queue_bytes = queue_bytes
        self._free_at = -math.inf  # when the line has sent all it holds

    def backlog(self, now: float) -> float:
        """Bytes admitted but not yet sent (a stall counts as bytes the line still owes)."""
        if self.rate is None:
            return 0.0
        return max(0.0, self._free_at - now) * self.rate

    def admit_at(self, n: int, now: float) -> float:
        """The earliest time ``n`` more bytes fit in the queue (``now`` if they fit now)."""
        if self.rate is None:
            return now
        excess = self.backlog(now) + n - self.queue_bytes
        return now if excess <= 0 else now + excess / self.rate

    def send(self, n: int, now: float) -> float:
        """Put ``n`` bytes on the line now; returns when their last byte reaches the far end."""
        if self.rate is None:
            return now + self.delay
        start = max(now, self._free_at)
        self._free_at = start + n / self.rate
        return self._free_at + self.delay

    def stall(self, now: float, seconds: float) -> None:
        """Carry nothing for ``seconds`` from ``now``: what waits is sent that much later."""
        self._free_at = max(self._free_at, now) + seconds

    def clear(self) -> None:
        """Forget what is queued (the connections carrying it were cut)."""
        self._free_at = -math.inf


@dataclass(frozen=True)
class Outages:
    """A link that goes down for ``down_s`` every ``every_s`` seconds: up for the first
    ``every_s - down_s`` of each period, then down. Times are seconds since the link
    started. Pure."""

    every_s: float
    down_s: float

    def __post_init__(self) -> None:
        if not 0 < self.down_s < self.every_s:
            raise ValueError(f"need 0 < down_s < every_s; got {self.down_s!r}, {self.every_s!r}")

    def is_down(self, t: float) -> bool:
        return t % self.every_s >= self.every_s - self.down_s

    def next_change(self, t: float) -> float:
        """When the link next goes down (if up at ``t``) or comes back (if down)."""
        base = t - t % self.every_s
        up_for = self.every_s - self.down_s
        return base + (self.every_s if self.is_down(t) else up_for)


@dataclass
class LinkStats:
    """What crossed the link: bytes delivered each way, connections made and cut."""

    bytes_up: int = 0  # client -> target
    bytes_down: int = 0  # target -> client
    connections: int = 0
    refused: int = 0  # connections attempted while the link was down
    cut: int = 0  # connections reset by a drop


@dataclass
class Link:
    """Both directions of one office's link, shared by every proxy and connection through it.

    ``rate_bps``/``delay_s`` apply each way unless ``down_rate_bps`` is given (an
    asymmetric line); ``delay_s`` is one way (the round trip is twice it).
    """

    rate_bps: float | None = None
    delay_s: float = 0.0
    queue_bytes: int = 16 * 1024
    down_rate_bps: float | None = None
    outages: Outages | None = None
    stats: LinkStats = field(default_factory=LinkStats)

    def __post_init__(self) -> None:
        self.up = Line(self.rate_bps, self.delay_s, self.queue_bytes)
        down_rate = self.down_rate_bps if self.down_rate_bps is not None else self.rate_bps
        self.down = Line(down_rate, self.delay_s, self.queue_bytes)
        self._down_until = -math.inf
        self._cutters: set[Callable[[], None]] = set()
        self._started: float | None = None

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def is_down(self, now: float) -> bool:
        if now < self._down_until:
            return True
        if self.outages is not None and self._started is not None:
            return self.outages.is_down(now - self._started)
        return False

    def stall(self, seconds: float) -> None:
        """Carry nothing either way for ``seconds``; connections stay up."""
        now = self.now()
        self.up.stall(now, seconds)
        self.down.stall(now, seconds)

    def drop(self, seconds: float) -> None:
        """Cut every connection now and refuse new ones for ``seconds``."""
        self._down_until = max(self._down_until, self.now() + seconds)
        self._cut_all()

    def _cut_all(self) -> None:
        for cut in list(self._cutters):
            cut()
        self.up.clear()
        self.down.clear()

    async def _schedule(self) -> None:
        """Apply ``outages``: cut everything each time the link goes down."""
        assert self.outages is not None and self._started is not None
        while True:
            t = self.now() - self._started
            await asyncio.sleep(max(0.0, self.outages.next_change(t) - t) + 0.001)
            if self.outages.is_down(self.now() - self._started):
                self._cut_all()


class LinkProxy:
    """Listens on 127.0.0.1 (``port``, 0 for a free one) and forwards each connection to
    ``target`` across ``link``. Use as ``async with LinkProxy(...) as proxy``, or
    ``start``/``close``; it closes itself after ``lifetime_s`` regardless."""

    def __init__(
        self,
        target: tuple[str, int],
        link: Link,
        *,
        port: int = 0,
        lifetime_s: float = 900.0,
        max_connections: int = 64,
    ) -> None:
        if target[0] not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the proxy forwards to loopback only; got {target[0]!r}")
        self.target = target
        self.link = link
        self.lifetime_s = lifetime_s
        self.max_connections = max_connections
        self._port = port
        self._listener: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._conns: set[_Connection] = set()
        self._closed = asyncio.Event()

    @property
    def port(self) -> int:
        assert self._listener is not None, "start() first"
        return self._listener.getsockname()[1]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> LinkProxy:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _small_buffers(sock)  # inherited by the accepted sockets
        sock.bind(("127.0.0.1", self._port))
        sock.listen(64)
        sock.setblocking(False)
        self._listener = sock
        if self.link._started is None:
            self.link._started = self.link.now()
            if self.link.outages is not None:
                self._spawn(self.link._schedule())
        self._spawn(self._accept_loop())
        self._spawn(self._expire())
        return self

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire(self) -> None:
        await asyncio.sleep(self.lifetime_s)
        await self.close()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        while True:
            client, _ = await loop.sock_accept(self._listener)
            client.setblocking(False)
            if self.link.is_down(loop.time()) or len(self._conns) >= self.max_connections:
                self.link.stats.refused += 1
                _reset(client)
                continue
            self._spawn(self._serve(client))

    async def _serve(self, client: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        _small_buffers(upstream)
        upstream.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(upstream, self.target), 5.0)
        except (OSError, TimeoutError):
            _reset(client)
            upstream.close()
            return
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(self.link, client, upstream)
        self._conns.add(conn)
        self.link._cutters.add(conn.cut)
        self.link.stats.connections += 1
        try:
            await conn.run()
        finally:
            self.link._cutters.discard(conn.cut)
            self._conns.discard(conn)

    async def close(self) -> None:
        """Stop listening and cut every connection. Safe to call twice."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._listener is not None:
            self._listener.close()
        for conn in list(self._conns):
            conn.cut(counted=False)
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def __aenter__(self) -> LinkProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Connection:
    """One proxied connection: a pump each way, each reading a packet at a time once the
    line has room for it and writing it out when the model says it arrives."""

    def __init__(self, link: Link, client: socket.socket, upstream: socket.socket) -> None:
        self.link = link
        self.client = client
        self.upstream = upstream
        self._tasks: list[asyncio.Task[None]] = []
        self._cut = False

    async def run(self) -> None:
        """Until both directions ended (each side closed its end), or either failed or was
        cut; the sockets are closed here, once no pump uses them any more."""
        self._tasks = [
            asyncio.ensure_future(self._pump(self.client, self.upstream, self.link.up, "bytes_up")),
            asyncio.ensure_future(self._pump(self.upstream, self.client, self.link.down, "bytes_down")),
        ]
        try:
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for t in self._tasks:
                t.cancel()
            for t in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            clean = not self._cut and all(not t.cancelled() and t.exception() is None for t in self._tasks)
            for s in (self.client, self.upstream):
                if clean:
                    s.close()
                else:
                    _reset(s)

    def cut(self, counted: bool = True) -> None:
        """Cut the connection (both sides see a reset once ``run`` closes the sockets)."""
        if self._cut:
            return
        self._cut = True
        if counted:
            self.link.stats.cut += 1
        for t in self._tasks:
            t.cancel()

    async def _pump(self, src: socket.socket, dst: socket.socket, line: Line, counter: str) -> None:
        loop = asyncio.get_running_loop()
        stats = self.link.stats
        read_size = _FAST_READ if line.rate is None else PACKET
        arrivals: deque[tuple[float, bytes]] = deque()
        wake = asyncio.Event()
        ended = False

        async def deliver() -> None:
            while arrivals or not ended:
                if not arrivals:
                    wake.clear()
                    await wake.wait()
                    continue
                at, data = arrivals[0]
                wait = at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                arrivals.popleft()
                await loop.sock_sendall(dst, data)
                setattr(stats, counter, getattr(stats, counter) + len(data))

        writer = asyncio.ensure_future(deliver())
        try:
            while True:
                now = loop.time()
                at = line.admit_at(read_size, now)
                if at > now:  # no room on the line: the bytes wait in the sender's socket
                    await asyncio.sleep(at - now)
                    continue
                data = await loop.sock_recv(src, read_size)
                if not data:
                    break
                arrivals.append((line.send(len(data), loop.time()), data))
                wake.set()
            ended = True
            wake.set()
            await writer  # what is on the line still arrives; then the far end sees the end
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer


def _small_buffers(sock: socket.socket) -> None:
    """A small receive buffer and an Ethernet-sized MSS (loopback's is 64 KiB): the peer's
    kernel then sizes its send buffer as it would for a real link (tens of KiB, not the
    megabytes loopback grows it to), so what a sender queued waits there about as long as
    it would behind a real modem."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
    with contextlib.suppress(OSError):  # not every kernel lets the MSS be set
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, _MSS)


def _reset(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0): the peer sees the connection cut, not a clean end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()
