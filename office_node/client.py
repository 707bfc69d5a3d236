"""A small client of the node's HTTP API, for ``blo post``, ``blo subscribe`` and scripts.

It authenticates with an API token (``blo token create USER --name cli --save`` stores
one in ``keys/api.token``; ``BLO_TOKEN`` or ``--token`` override it) and speaks the same
JSON as the web page. A refusal comes back as ``NodeUnavailable`` carrying the node's
own message, which already says what to fix.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bus import read_secret
from office_node.errors import NodeUnavailable
from office_node.home import NodeHome

TOKEN_ENV = "BLO_TOKEN"
URL_ENV = "BLO_URL"
TOKEN_FILE = "api.token"
#: Files go up and down as long as the bytes keep moving: no limit on the whole request.
TRANSFER_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)


def token_path(home: NodeHome) -> Path:
    return home.keys_dir / TOKEN_FILE


def find_token(home: NodeHome, given: str | None = None) -> str:
    """The API token: ``given``, else ``BLO_TOKEN``, else ``keys/api.token`` of the home."""
    if given:
        return given
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    path = token_path(home)
    try:
        return read_secret(path, "API token").decode("utf-8", errors="replace").strip()
    except FileNotFoundError:
        raise NodeUnavailable(
            f"no API token: set {TOKEN_ENV}, pass --token, or run `blo token create USER --name cli --save` "
            f"(it writes {path})"
        ) from None


def find_url(home: NodeHome, given: str | None = None) -> str:
    """The node's base URL: ``given``, else ``BLO_URL``, else node.toml's http.bind."""
    if given:
        return given.rstrip("/")
    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV].rstrip("/")
    config = home.config()
    host = "127.0.0.1" if config.http.host in ("0.0.0.0", "::", "") else config.http.host
    return f"http://{host}:{config.http.port}"


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    data: Any


class NodeClient:
    def __init__(self, base_url: str, token: str, *, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> NodeClient:
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def _s(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use `async with NodeClient(...)`")
        return self._session

    async def request(self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None) -> Any:
        return await self._send(method, path, json=body, params=params)

    async def _send(self, method: str, path: str, **kw: Any) -> Any:
        url = self.base_url + path
        try:
            async with self._s().request(method, url, **kw) as response:
                text = await response.text()
                return _answer(response.status, text, url)
        except aiohttp.ClientConnectorError as exc:
            raise self._unreachable(exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NodeUnavailable(f"the node at {self.base_url} did not answer: {exc or type(exc).__name__}") from None

    def _unreachable(self, exc: aiohttp.ClientConnectorError) -> NodeUnavailable:
        return NodeUnavailable(
            f"cannot reach the node at {self.base_url} ({exc.os_error.strerror if exc.os_error else exc}); "
            "is `blo node run` running, and is the URL right (--url, BLO_URL, node.toml http.bind)?"
        )

    async def post_bulletin(self, body: Mapping[str, Any], files: Sequence[Path] = ()) -> dict[str, Any]:
        """Post a bulletin; with ``files``, as multipart (the post's JSON, then each file,
        streamed from disk: the node seals it into its spool as it arrives)."""
        if not files:
            return await self.request("POST", "/api/bulletins", body=dict(body))
        with ExitStack() as opened:
            form = aiohttp.FormData(quote_fields=False)  # names as UTF-8, as browsers send them, not %-escaped
            form.add_field("bulletin", json.dumps(dict(body), ensure_ascii=False), content_type="application/json")
            for path in files:
                source = opened.enter_context(open(path, "rb"))
                form.add_field("file", source, filename=path.name, content_type="application/octet-stream")
            return await self._send("POST", "/api/bulletins", data=form, timeout=TRANSFER_TIMEOUT)

    async def download(self, path: str, write: Callable[[bytes], object]) -> int:
        """Stream a file the node serves (an attachment) to ``write``, piece by piece; its size."""
        url = self.base_url + path
        written = 0
        try:
            async with self._s().get(url, timeout=TRANSFER_TIMEOUT, headers={"Accept": "*/*"}) as response:
                if response.status != 200:
                    _answer(response.status, await response.text(), url)
                async for piece in response.content.iter_chunked(256 * 1024):
                    write(piece)
                    written += len(piece)
        except aiohttp.ClientConnectorError as exc:
            raise self._unreachable(exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NodeUnavailable(f"the download of {path} from {self.base_url} broke: {exc or type(exc).__name__}") from None
        return written

    async def get(self, path: str, **params: str) -> Any:
        return await self.request("GET", path, params=params or None)

    async def events(self, on_open: Callable[[], object] | None = None) -> AsyncIterator[Event]:
        """The node's live stream, event by event, until the node ends it; ``on_open`` is
        called once the node accepted it (from then on no event is missed)."""
        url = self.base_url + "/api/events"
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        try:
            async with self._s().get(url, timeout=timeout, headers={"Accept": "text/event-stream"}) as response:
                if response.status != 200:
                    _answer(response.status, await response.text(), url)
                if on_open is not None:
                    on_open()
                kind, data = "message", []
                async for raw in response.content:
                    line = raw.decode("utf-8").rstrip("\r\n")
                    if not line:
                        if data:
                            yield Event(kind, json.loads("\n".join(data)))
                        kind, data = "message", []
                    elif line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].lstrip())
        except aiohttp.ClientConnectorError as exc:
            raise NodeUnavailable(f"cannot reach the node at {self.base_url} ({exc})") from None
        except aiohttp.ClientError as exc:
            raise NodeUnavailable(f"the live stream from {self.base_url} broke: {exc}") from None


def _answer(status: int, text: str, url: str) -> Any:
    try:
        data = json.loads(text) if text else None
    except json.JSONDecodeError:
        data = None
    if status < 400:
        return data
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        field = f" ({error['field']})" if error.get("field") else ""
        raise NodeUnavailable(
            f"the node refused{field}: {error.get('message', text)[:500]}", status=status, code=error.get("code")
        )
    raise NodeUnavailable(f"the node answered {status} for {url}", status=status)
