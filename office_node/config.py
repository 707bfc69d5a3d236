"""The node's configuration file (``node.toml``): parsed once, checked strictly.

A mistake names the file and the key (``node.toml: http.bind: expected host:port``)
because an operator at a border post must be able to fix it without reading code.
Unknown keys are errors too: a typo must not silently fall back to a default.

Relative paths in the file are relative to the node home (the folder holding it).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bus import Limits, is_feed_name, is_office_id
from bus.errors import ConfigError

DEFAULT_BIND = "127.0.0.1:8080"


@dataclass(frozen=True)
class NatsSettings:
    urls: tuple[str, ...] = ()  # empty: run an embedded nats-server in the data dir
    creds: Path | None = None
    nkey_seed: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    embedded_port: int = 0  # 0: a free port
    # Restricted per-office NATS users (DEPLOY.md): the inbox prefix its user may read,
    # and the hub's JetStream domain when the node sits behind its office leaf node.
    inbox_prefix: str | None = None
    jetstream_domain: str | None = None
    # False where the operator creates the streams (`blo deploy streams`) and the node's
    # user may not: NodeOptions(ensure_streams=...).
    create_streams: bool = True

    @property
    def embedded(self) -> bool:
        return not self.urls


@dataclass(frozen=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    secure_cookies: bool = False  # set true behind TLS


@dataclass(frozen=True)
class MispSettings:
    """``[misp]``: a centre's live bridge to a MISP server (office_node/exchange/bridge.py)."""

    url: str
    key_file: Path | None = None  # the API key, alone in a 0600 file...
    key_env: str | None = None  # ...or in this environment variable
    verify_tls: bool = True
    ca_file: Path | None = None  # the CA that signed the server's certificate, if not a public one
    push_feeds: tuple[str, ...] = ()  # bulletins of these feeds go to MISP
    countries: tuple[str, ...] = ()  # where the MISP server's users are: what is pushed must be releasable to all
    pull_tag: str | None = None  # events carrying this tag come back as drafts
    every_s: float = 300.0
    timeout_s: float = 30.0


@dataclass(frozen=True)
class NodeConfig:
    home: Path
    office: str
    role: str = "office"  # or "centre"
    data_dir: Path = Path("data")
    nats: NatsSettings = field(default_factory=NatsSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    feeds: tuple[str, ...] = ()
    #: a centre starts a new epoch of every feed it owns at least this often
    feed_rotate_hours: float = 168.0
    #: a centre flags an office silent after this long without a heartbeat
    silent_after_s: float = 600.0
    heartbeat_every_s: float = 60.0
    #: pinned centres: office id -> Ed25519 signing public key (hex). The federation.
    trust_anchors: dict[str, str] = field(default_factory=dict)
    flash_ack_timeout_s: float = 120.0
    #: a FLASH no person acknowledged in this time is reported to the sender's own centre
    flash_own_centre_after_s: float = 600.0
    misp: MispSettings | None = None
    #: per-file and per-bulletin attachment sizes (schemas/ATTACHMENTS.md 6)
    attachment_limits: Limits = field(default_factory=Limits)
    source: Path | None = None


class _Reader:
    """Pops typed values from one TOML table, remembering the dotted path for errors."""

    def __init__(self, path: Path, table: dict[str, Any], prefix: str = "") -> None:
        self.path, self.table, self.prefix = path, dict(table), prefix

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.prefix}{key}: {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        if key not in self.table:
            return default
        value = self.table.pop(key)
        if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.error(key, f"expected {_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self.error(key, f"expected {_name(kind)}, got {type(value).__name__} {value!r}"[:200])
        return value

    def table_(self, key: str) -> _Reader:
        value = self.get(key, dict, {})
        return _Reader(self.path, value, f"{self.prefix}{key}.")

    def path_(self, key: str, home: Path) -> Path | None:
        value = self.get(key, str)
        return None if not value else (home / value).expanduser()

    def finish(self) -> None:
        if self.table:
            key = sorted(self.table)[0]
            raise self.error(key, "unknown key (check the spelling; see deploy/node.example.toml)")


def _name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "text", int: "a whole number", float: "a number", bool: "true or false", list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def parse_bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected host:port such as 127.0.0.1:8080")
    return host.strip("[]"), int(port)


def load_config(path: Path) -> NodeConfig:
    """Read and check ``node.toml``; raises ConfigError naming file and key."""
    home = path.parent
    top = _Reader(path, _read_toml(path))
    office, role, data_dir = _node(top, home)
    nats = _nats(top, home)
    http = _http(top)
    feeds, rotate_hours = _feeds(top)
    silent_after, heartbeat_every = _network(top)
    anchors = _trust(top)
    timeout, own_centre_after = _flash(top)
    misp = _misp(top, home, role)
    attachment_limits = _attachments(top)
    top.finish()
    return NodeConfig(
        home=home,
        office=office,
        role=role,
        data_dir=data_dir,
        nats=nats,
        http=http,
        feeds=feeds,
        feed_rotate_hours=rotate_hours,
        silent_after_s=silent_after,
        heartbeat_every_s=heartbeat_every,
        trust_anchors=anchors,
        flash_ack_timeout_s=timeout,
        flash_own_centre_after_s=own_centre_after,
        misp=misp,
        attachment_limits=attachment_limits,
        source=path,
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file. Create a node with `blo init`, or point --home (BLO_HOME) at one: "
            "the demo's nodes (`make run`, `blo demo`) are in .blo-demo/<OFFICE>, e.g. --home .blo-demo/TH-MUK"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _node(top: _Reader, home: Path) -> tuple[str, str, Path]:
    """``[node]``: the office id, its role, its data directory."""
    node = top.table_("node")
    office = node.get("office", str)
    if office is None or not is_office_id(office):
        raise node.error("office", "required: an office id such as TH-MUK")
    role = node.get("role", str, "office")
    if role not in ("office", "centre"):
        raise node.error("role", "must be office or centre")
    data_dir = home / node.get("data_dir", str, "data")
    node.finish()
    return office, role, data_dir


def _nats(top: _Reader, home: Path) -> NatsSettings:
    n = top.table_("nats")
    urls = n.get("urls", list, [])
    for i, url in enumerate(urls):
        if not isinstance(url, str) or "://" not in url:
            raise n.error(f"urls[{i}]", "expected a URL such as nats://10.0.0.5:4222 or tls://hub.example:4222")
    port = n.get("embedded_port", int, 0)
    if not 0 <= port < 65536:
        raise n.error("embedded_port", "must be a TCP port number, or 0 for any free port")
    nats = NatsSettings(
        urls=tuple(urls),
        creds=n.path_("creds", home),
        nkey_seed=n.path_("nkey_seed", home),
        tls_ca=n.path_("tls_ca", home),
        tls_cert=n.path_("tls_cert", home),
        tls_key=n.path_("tls_key", home),
        embedded_port=port,
        inbox_prefix=n.get("inbox_prefix", str) or None,
        jetstream_domain=n.get("jetstream_domain", str) or None,
        create_streams=n.get("create_streams", bool, True),
    )
    n.finish()
    return nats


def _http(top: _Reader) -> HttpSettings:
    h = top.table_("http")
    try:
        host, hport = parse_bind(h.get("bind", str, DEFAULT_BIND))
    except ValueError as exc:
        raise h.error("bind", str(exc)) from None
    http = HttpSettings(host=host, port=hport, secure_cookies=h.get("secure_cookies", bool, False))
    h.finish()
    return http


def _feeds(top: _Reader) -> tuple[tuple[str, ...], float]:
    """``[feeds]``: the feeds read, and a centre's rotation period in hours."""
    f = top.table_("feeds")
    feeds = f.get("subscribe", list, [])
    if not all(is_feed_name(x) for x in feeds):
        raise f.error("subscribe", "expected a list of feed names (1-63 of a-z, 0-9 and '-', such as mekong-border)")
    rotate_hours = f.get("rotate_hours", (int, float), 168)
    if not 0 < rotate_hours <= 24 * 365:
        raise f.error("rotate_hours", "must be a number of hours from 0 to 8760")
    f.finish()
    return tuple(feeds), float(rotate_hours)


def _network(top: _Reader) -> tuple[float, float]:
    """``[network]``: silent after (seconds), a heartbeat every (seconds)."""
    nw = top.table_("network")
    silent_after = nw.get("silent_after_s", (int, float), 600)
    heartbeat_every = nw.get("heartbeat_every_s", (int, float), 60)
    if not 0 < heartbeat_every < silent_after:
        raise nw.error("heartbeat_every_s", "must be positive and shorter than silent_after_s")
    nw.finish()
    return float(silent_after), float(heartbeat_every)


def _trust(top: _Reader) -> dict[str, str]:
    """``[trust] anchors``: pinned centre id -> its signing public key (hex)."""
    t = top.table_("trust")
    anchors = t.get("anchors", dict, {})
    for centre, key in anchors.items():
        if not is_office_id(centre):
            raise t.error(f"anchors.{centre}", "the key must be a centre id such as TH-TCCC")
        if not isinstance(key, str) or len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise t.error(f"anchors.{centre}", "expected the centre's signing public key as 64 lowercase hex digits")
    t.finish()
    return dict(anchors)


def _flash(top: _Reader) -> tuple[float, float]:
    """``[flash]``: the acknowledgement timeout and the own centre's delay (seconds)."""
    fl = top.table_("flash")
    timeout = fl.get("ack_timeout_s", (int, float), 120)
    if timeout <= 0:
        raise fl.error("ack_timeout_s", "must be a positive number of seconds")
    own_centre_after = fl.get("own_centre_after_s", (int, float), max(600, timeout))
    if own_centre_after < timeout:
        raise fl.error("own_centre_after_s", f"must be at least ack_timeout_s ({timeout} s): the recipient's centre is told first")
    fl.finish()
    return float(timeout), float(own_centre_after)


def _attachments(top: _Reader) -> Limits:
    at = top.table_("attachments")
    max_file = at.get("max_file_mib", (int, float), 25)
    max_bulletin = at.get("max_bulletin_mib", (int, float), 100)
    if not 0 < max_file <= max_bulletin <= 4096:
        raise at.error("max_file_mib", "must be positive and at most max_bulletin_mib (at most 4096)")
    at.finish()
    return Limits(int(max_file * 1024 * 1024), int(max_bulletin * 1024 * 1024))


def _misp(top: _Reader, home: Path, role: str) -> MispSettings | None:
    if "misp" not in top.table:
        return None
    m = top.table_("misp")
    if role != "centre":
        raise m.error("url", "the MISP bridge runs on a centre node only (node.role = \"centre\")")
    url = m.get("url", str)
    if not url or not url.startswith(("https://", "http://")):
        raise m.error("url", "required: the MISP server's base URL, e.g. https://misp.example.org")
    key_file, key_env = m.path_("key_file", home), m.get("key_env", str)
    if (key_file is None) == (not key_env):
        raise m.error("key_file", "give the API key in key_file (a 0600 file) or key_env (an environment variable), one of them")
    feeds = m.get("push_feeds", list, [])
    if not all(is_feed_name(f) for f in feeds):
        raise m.error("push_feeds", "expected a list of feed names such as mekong-border")
    countries = m.get("countries", list, [])
    if not all(isinstance(c, str) and len(c) == 2 and c.isascii() and c.isupper() for c in countries):
        raise m.error("countries", 'expected ISO country codes such as ["TH", "LA"]')
    if feeds and not countries:
        raise m.error("countries", "required with push_feeds: the countries of the MISP server's users (what is pushed must be releasable to them)")
    every = m.get("every_s", (int, float), 300)
    if not 10 <= every <= 86400:
        raise m.error("every_s", "must be from 10 to 86400 seconds")
    timeout = m.get("timeout_s", (int, float), 30)
    if not 0 < timeout <= 600:
        raise m.error("timeout_s", "must be from 0 to 600 seconds")
    settings = MispSettings(
        url=url.rstrip("/"),
        key_file=key_file,
        key_env=key_env or None,
        verify_tls=m.get("verify_tls", bool, True),
        ca_file=m.path_("ca_file", home),
        push_feeds=tuple(feeds),
        countries=tuple(countries),
        pull_tag=m.get("pull_tag", str) or None,
        every_s=float(every),
        timeout_s=float(timeout),
    )
    m.finish()
    return settings


def render_config(
    office: str,
    role: str,
    *,
    anchors: dict[str, str] | None = None,
    urls: list[str] | None = None,
    bind: str = DEFAULT_BIND,
    feeds: list[str] | None = None,
    nats_lines: list[str] | None = None,
) -> str:
    """A commented ``node.toml`` that ``load_config`` accepts. ``nats_lines`` go into its
    ``[nats]`` table after ``urls`` (sign-in, TLS, inbox prefix: ``blo deploy nats-auth``)."""
    anchor_lines = "\n".join(f'"{c}" = "{k}"' for c, k in sorted((anchors or {}).items()))
    url_list = ", ".join(f'"{u}"' for u in urls or [])
    feed_list = ", ".join(f'"{f}"' for f in feeds or [])
    nats_block = "".join(f"{line}\n" for line in nats_lines) if nats_lines else (
        '# creds = "keys/office.creds"   # per-office NATS credentials (blo deploy nats-auth)\n'
    )
    return f"""# BLO Bus node configuration. Paths are relative to this file's folder.
[node]
office = "{office}"
role = "{role}"          # office or centre
data_dir = "data"

[nats]
# Empty: the node runs its own nats-server with JetStream in data_dir, on 127.0.0.1.
urls = [{url_list}]
{nats_block}
[http]
bind = "{bind}"   # keep it on loopback unless a TLS proxy fronts it

[feeds]
# Feeds this office is a member of are read without being listed (from the joining);
# list one here to read it whoever the members are, once this node holds its key.
subscribe = [{feed_list}]
rotate_hours = 168   # a centre gives each feed it owns a fresh key at least this often

[network]
heartbeat_every_s = 60   # this node's signed heartbeat to its centre
silent_after_s = 600     # a centre flags an office silent after this long

[trust.anchors]
# The centres this node trusts (the federation): centre id = signing public key (hex).
{anchor_lines}

[flash]
# A FLASH must be acknowledged by a person at each recipient office (blo ack, the page).
ack_timeout_s = 120        # not acknowledged by then: this page alarms, the recipient's centre is told
own_centre_after_s = 600   # not acknowledged by then: this node's own centre is told

# A centre's live bridge to a MISP server (schemas/MAPPING.md section 7):
# [misp]
# url = "https://misp.example.org"
# key_file = "keys/misp.key"        # the API key alone in a 0600 file (or key_env = "MISP_KEY")
# verify_tls = true
# push_feeds = ["mekong-border"]    # these feeds' bulletins go to MISP...
# countries = ["TH", "LA"]          # ...if releasable to every country of the MISP server's users
# pull_tag = "blo-bus:pull"         # events with this tag come back as drafts for review
# every_s = 300

[attachments]
max_file_mib = 25       # a larger file is refused when attached, and not fetched when received
max_bulletin_mib = 100  # all the files of one bulletin together
"""
