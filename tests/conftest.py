"""Shared fixtures. Bus tests run a real nats-server on 127.0.0.1 (never a mock)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus.transport.server import NatsServer

DATA = Path(__file__).resolve().parent.parent / "office_node" / "data"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh ``nats-server -js`` on a free loopback port with a temp store, stopped after."""
    server = NatsServer(tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sample_bulletins() -> list[dict]:
    return json.loads((DATA / "sample-bulletins.json").read_text(encoding="utf-8"))["bulletins"]


@pytest.fixture(scope="session")
def crossings() -> dict:
    return json.loads((DATA / "crossings.json").read_text(encoding="utf-8"))
