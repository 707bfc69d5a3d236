"""A centre's live bridge to a MISP server, through PyMISP's REST client.

**Push**: bulletins of the feeds ``[misp] push_feeds`` names go to the server as MISP
events (``misp.event_of``), once each: an event id is derived from the bulletin id, so
the bridge asks the server whether it has it (``HEAD /events/view/<uuid>``) and adds it
(``POST /events/add``) only if not. The exchange rule X3 applies first: the server is
treated as a feed whose members are in ``[misp] countries``, so AMBER+STRICT and RED,
and anything not releasable to all those countries, are never pushed.

**Pull**: events carrying the tag ``[misp] pull_tag`` (``POST /events/restSearch``,
newer than the last pull) come back as import sources, which the centre queues as
drafts for review (``office_node/centre.py``); nothing pulled is sent unreviewed.

PyMISP is synchronous (requests); every call runs in a worker thread
(``asyncio.to_thread``) so the node's event loop never waits on the network. The API key
is read from its 0600 file or environment variable when the bridge starts and is never
logged. Failures are ``ExchangeError``: ``misp_unreachable`` (no answer: URL, TLS,
network) or ``misp_refused`` (the server said no: key, permissions, a rejected event).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bus.errors import ConfigError, HandlingRefused
from office_node.config import MispSettings
from office_node.errors import ExchangeError
from office_node.exchange import require
from office_node.exchange.export import Exportable
from office_node.exchange.handling import check_push
from office_node.exchange.source import Source

log = logging.getLogger("blo.misp")


def read_key(settings: MispSettings) -> str:
    """The MISP API key from ``key_file`` (which must not be readable by others) or ``key_env``."""
    if settings.key_env:
        key = os.environ.get(settings.key_env, "").strip()
        if not key:
            raise ConfigError(f"[misp] key_env: the environment variable {settings.key_env} is not set (it holds the MISP API key)")
        return key
    path = settings.key_file
    assert path is not None  # the config requires one of the two
    try:
        mode = path.stat().st_mode
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"[misp] key_file: cannot read {path} ({exc.strerror}): put the MISP API key there, mode 0600") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"[misp] key_file: {path} is readable by others; it holds the MISP API key: chmod 600 {path}")
    if not key:
        raise ConfigError(f"[misp] key_file: {path} is empty; put the MISP API key there")
    return key


@dataclass
class PushReport:
    pushed: list[str] = field(default_factory=list)  # bulletin ids added to MISP now
    present: list[str] = field(default_factory=list)  # already there (pushed before)
    refused: list[tuple[str, HandlingRefused]] = field(default_factory=list)  # rule X3


class MispBridge:
    """One MISP server, as ``[misp]`` describes it. ``client_factory`` makes the PyMISP
    client (tests pass one with other settings; the default connects as configured)."""

    def __init__(self, settings: MispSettings, *, client_factory: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self._factory = client_factory or self._connect
        self._client: Any = None

    def _connect(self) -> Any:
        pymisp = require("pymisp")
        s = self.settings
        verify: bool | str = str(s.ca_file) if (s.verify_tls and s.ca_file) else s.verify_tls
        try:
            return pymisp.PyMISP(s.url, read_key(s), ssl=verify, timeout=s.timeout_s, tool="blo-bus")
        except pymisp.PyMISPError as exc:
            text = _first_line(exc)
            if "(401," in text or "(403," in text:  # PyMISP quotes the server's status and answer
                raise ExchangeError(
                    f"the MISP server at {s.url} refused the API key: {text} (check [misp] key_file or key_env)",
                    "misp_refused",
                ) from None
            raise ExchangeError(f"the MISP server at {s.url} did not answer as MISP: {text}", "misp_unreachable") from None

    async def _call(self, what: str, fn: Callable[[Any], Any]) -> Any:
        """``fn(client)`` in a worker thread; network and server failures as ExchangeError."""
        requests = require("requests")

        def run() -> Any:
            if self._client is None:
                self._client = self._factory()
            return fn(self._client)

        try:
            answer = await asyncio.to_thread(run)
        except ExchangeError:
            raise
        except requests.RequestException as exc:
            self._client = None  # a new session next time
            raise ExchangeError(
                f"cannot reach the MISP server at {self.settings.url} to {what} ({type(exc).__name__}): check [misp] url, "
                "verify_tls and ca_file, and the network", "misp_unreachable",
            ) from None  # fmt: skip
        except Exception as exc:  # PyMISP raises its own error types for a bad answer
            self._client = None
            raise ExchangeError(f"the MISP server at {self.settings.url} failed to {what}: {_first_line(exc)}", "misp_unreachable") from None
        if isinstance(answer, dict) and "errors" in answer:
            raise ExchangeError(
                f"the MISP server at {self.settings.url} refused to {what}: {str(answer['errors'])[:300]} (check the API "
                "key and its user's permissions)", "misp_refused",
            )  # fmt: skip
        return answer

    async def push(self, items: Sequence[Exportable]) -> PushReport:
        """Each bulletin the rules allow, added to the server unless it has it already."""
        from office_node.exchange import misp

        report = PushReport()
        host = self.settings.url.split("://", 1)[-1]
        for item in items:
            b = item.bulletin
            try:
                check_push(b, server=host, countries=self.settings.countries)
            except HandlingRefused as exc:
                report.refused.append((b.id, exc))
                continue
            event = misp.event_of(b, provenance=item.provenance)
            if await self._call("look up an event", lambda c, uuid=event.uuid: c.event_exists(uuid)):
                report.present.append(b.id)
                continue
            await self._call("add an event", lambda c, e=event: c.add_event(e))
            report.pushed.append(b.id)
        return report

    async def pull(self, *, since_s: int | None = None) -> tuple[list[Source], int | None]:
        """The tagged events changed since ``since_s`` (seconds), as sources, and the newest
        event timestamp seen (the next pull's ``since_s``)."""
        from office_node.exchange import misp

        tag = self.settings.pull_tag
        if not tag:
            return [], since_s
        found = await self._call(
            "search for tagged events",
            lambda c: c.search(controller="events", tags=[tag], timestamp=since_s, pythonify=False),
        )
        if not isinstance(found, list):
            raise ExchangeError(f"the MISP server at {self.settings.url} answered the search with no list of events", "misp_refused")
        if not found:
            return [], since_s
        sources = misp.sources_of(found)
        newest = max((t for t in map(_timestamp, found) if t is not None), default=since_s)
        return sources, newest


def _timestamp(item: Any) -> int | None:
    stamp = item.get("Event", {}).get("timestamp") if isinstance(item, dict) else None
    return int(stamp) if isinstance(stamp, str | int) and str(stamp).isdigit() else None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
