"""The embedded default: a node with no NATS URL configured runs its own nats-server.

The server listens on 127.0.0.1 only and keeps its JetStream store in the node's data
dir. It is a single copy with no cluster behind it, so it syncs every write to disk
(``sync_interval: always``): nats-server's default is to fsync every 2 minutes, and a
power cut at a border post must not lose bulletins JetStream already acknowledged (the
outbox dropped them on that ack). This costs throughput (about 2k stored messages/s
here instead of 15k), which an office's traffic never approaches.
"""

from __future__ import annotations

from pathlib import Path

from bus.transport.server import NatsServer


def write_config(path: Path, *, sync_always: bool = True) -> Path:
    """A nats-server config with the JetStream settings of an edge server; returns ``path``."""
    lines = ["# Written by BLO Bus for its embedded server; regenerated on each start.", "jetstream {"]
    if sync_always:
        lines.append("  sync_interval: always")
    lines += ["}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def embedded_server(data_dir: Path, *, port: int = 0, sync_always: bool = True) -> NatsServer:
    """A (not yet started) NatsServer keeping its store in ``data_dir/nats``."""
    config = write_config(data_dir / "nats-embedded.conf", sync_always=sync_always)
    return NatsServer(data_dir / "nats", port=port or None, config_file=config)
