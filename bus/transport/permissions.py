"""Least-privilege NATS permissions for every office and centre, from the signed directory. Pure.

NATS permissions are the second wall (signatures and encryption are the first): an
office's NATS user may publish only what that office may send, and read only its own
inbox, its feeds and its receipts. The one rule behind every line here:

**every subject an office may publish or a consumer it may read names that office (or a
feed it belongs to), and nothing else.** Subjects name the sender last
(``blo.office.<TO>.<prec>.<FROM>``), consumers name their owner
(``inbox-<OFFICE>-<prec>``), and the JetStream API subject that creates a consumer
carries its filter (``$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>``), so each
grant is one exact subject: an office cannot create a consumer named like its own but
filtering another office's inbox, and the server refuses the mismatch between subject
and body filter. Each office also has its own inbox prefix (``_INBOX.<OFFICE>``), so it
cannot subscribe to the replies another office's pull requests receive.

JetStream's internal subjects are granted exactly where they are needed and pinned by
tests (``tests/test_deploy_auth.py``), because a permission that is too tight does not
fail loudly: the request simply times out and the node stalls.

* ``$JS.API...`` requests (and ``$JS.<domain>.API...`` when a node reaches the hub
  through its office leaf node, which has a JetStream domain of its own);
* ``$JS.ACK.<stream>.<durable>.>``: acks and naks of each owned durable;
* ``$JS.FC.<KV stream>.>``: flow-control replies of the ordered consumer a KV watch uses;
* ``$KV.blo_directory.inbox.<OFFICE>.*``: the office's node publishes its own inbox keys
  (and only those) in the directory bucket; centres write the whole bucket;
* leaf nodes (``leaf=True``): the hub's streams *source* the office's outbox stream
  across JetStream domains. The hub sends ``$JS.<OFFICE>.API.CONSUMER.CREATE.<outbox>...``
  into the leaf (a subscribe grant on the hub side of the leaf connection), the leaf
  answers on ``$JSC.R.>`` and delivers on ``$JS.S.>``/flow control (publish grants), and
  the hub answers flow control on ``$JS.FC.<outbox>.>`` (subscribe).

Feed membership is an input (``FeedMembers``): built from each feed's current signed epoch
record (``FeedMembers.of_record``: the owner and the members read, the owner and the
writers post, exactly as members judge posts, schemas/FEEDS.md 7.2), or, for a feed whose
record the centre does not hold, parsed from ``NAME=OFFICE,OFFICE[:post]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bus.bulletin import is_office_id
from bus.errors import ValidationError
from bus.feeds import EpochRecord
from bus.transport import subjects as sj
from bus.transport.kv_directory import BUCKET as DIRECTORY_BUCKET
from bus.transport.kv_directory import inbox_key_filter
from bus.transport.kv_feeds import BUCKET as FEEDS_KV_BUCKET
from bus.transport.object_store import bucket_stream, feed_bucket, office_bucket

#: The feed-keys bucket (epoch keys wrapped per member), written by centres, read by members.
FEEDS_BUCKET = FEEDS_KV_BUCKET
#: The account every BLO user lives in: one account, so bulletins cross offices and countries.
ACCOUNT = "BLO"
SYSTEM_ACCOUNT = "SYS"
#: Durable consumer of a centre on the heartbeat stream.
HEARTBEAT_PREFIX = "heartbeats-"
#: Leaf outbox streams (in the office's own JetStream domain) that the hub streams source.
LEAF_OUTBOX = "BLO_OUTBOX"
LEAF_OUTBOX_HB = "BLO_OUTBOX_HB"
API = "$JS.API"


def inbox_prefix(office_id: str) -> str:
    """The reply-subject prefix an office's connection uses (``_INBOX.TH-MUK``); its user may
    subscribe only below it."""
    return f"_INBOX.{sj.check_office(office_id)}"


def api_prefix(domain: str | None) -> str:
    """``$JS.API``, or ``$JS.<domain>.API`` for a JetStream domain reached across a leaf node."""
    return API if domain is None else f"$JS.{check_domain(domain)}.API"


def check_domain(domain: str) -> str:
    """A JetStream domain is one subject token: letters, digits, '-' and '_'."""
    if not isinstance(domain, str) or not domain or not all(c.isalnum() or c in "-_" for c in domain) or not domain.isascii():
        raise ValidationError("domain", f"a JetStream domain is letters, digits, '-' or '_'; got {domain!r}"[:200])
    return domain


def heartbeat_consumer(centre_id: str) -> str:
    return f"{HEARTBEAT_PREFIX}{sj.check_office(centre_id)}"


def kv_stream(bucket: str) -> str:
    return f"KV_{bucket}"


# -- input ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedMembers:
    """Who reads a feed, and which of them may also post to it."""

    feed: str
    readers: tuple[str, ...]
    posters: tuple[str, ...] = ()

    @classmethod
    def of_record(cls, record: EpochRecord) -> FeedMembers:
        """Who reads and who posts, as the feed's signed epoch record says: the owner and the
        members read; the owner and the writers post."""
        return cls(record.feed, (record.owner, *record.members), (record.owner, *record.writers))


def parse_feed(text: str) -> FeedMembers:
    """``mekong-border=TH-TCCC:post,LA-TCCC:post,TH-MUK,LA-SVK`` -> FeedMembers.

    Every listed office reads the feed; ``:post`` also lets it post to it."""
    name, sep, rest = text.partition("=")
    if not sep or not rest.strip():
        raise ValidationError("--feed", f"{text!r}: expected NAME=OFFICE,OFFICE[:post],...")
    try:
        sj.check_feed(name.strip())
    except ValidationError as exc:
        raise ValidationError("--feed", f"{text!r}: the feed name {exc.problem}") from None
    readers: list[str] = []
    posters: list[str] = []
    for item in rest.split(","):
        office, _, flag = item.strip().partition(":")
        if not is_office_id(office) or flag not in ("", "post"):
            raise ValidationError("--feed", f"{item.strip()!r} in {text!r}: expected OFFICE or OFFICE:post")
        if office not in readers:
            readers.append(office)
        if flag == "post" and office not in posters:
            posters.append(office)
    return FeedMembers(name.strip(), tuple(readers), tuple(posters))


@dataclass(frozen=True, slots=True)
class NodeAccess:
    """What one node may do on the bus: the facts its permissions are derived from."""

    office: str
    role: str  # "office" or "centre"
    reads: tuple[str, ...] = ()  # feeds it consumes
    posts: tuple[str, ...] = ()  # feeds it may publish to
    leaf: bool = False  # reaches the hub through its own leaf node (outbox stream sourced by the hub)


def node_access(
    nodes: Iterable[tuple[str, str]], feeds: Sequence[FeedMembers], *, leaf_offices: Iterable[str] = ()
) -> list[NodeAccess]:
    """``(office id, role)`` pairs (from the verified directory) and feed memberships -> one
    NodeAccess per node, sorted by office id. A feed member that is not among ``nodes`` is a
    ValidationError: a typo must not silently grant nothing (or a revoked office something)."""
    roles = dict(nodes)
    leaves = set(leaf_offices)
    for office in leaves:
        if office not in roles:
            raise ValidationError("--leaf", f"{office} is not a current office in the verified directory")
    reads: dict[str, list[str]] = {o: [] for o in roles}
    posts: dict[str, list[str]] = {o: [] for o in roles}
    seen: set[str] = set()
    for f in feeds:
        if f.feed in seen:
            raise ValidationError("--feed", f"feed {f.feed} is given twice; list all its members in one --feed")
        seen.add(f.feed)
        for office in f.readers:
            if office not in roles:
                raise ValidationError(
                    "--feed", f"{office} (feed {f.feed}) is not a current office in the verified directory"
                )
            reads[office].append(f.feed)
        for office in f.posters:
            posts[office].append(f.feed)
    return [
        NodeAccess(o, roles[o], tuple(sorted(reads[o])), tuple(sorted(posts[o])), o in leaves) for o in sorted(roles)
    ]


# -- output --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Permissions:
    """Allow lists of one NATS user (everything else is denied)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]

    def as_config(self) -> dict[str, object]:
        return {"publish": {"allow": list(self.publish)}, "subscribe": {"allow": list(self.subscribe)}}


def _durable_grants(prefixes: Sequence[str], stream: str, durable: str, filter_subject: str) -> list[str]:
    grants = []
    for p in prefixes:
        grants += [
            f"{p}.CONSUMER.INFO.{stream}.{durable}",
            # The filter is part of the subject: the grant fixes what the durable may read.
            f"{p}.CONSUMER.CREATE.{stream}.{durable}.{filter_subject}",
            f"{p}.CONSUMER.MSG.NEXT.{stream}.{durable}",
            # A node leaving a feed deletes its own durable (and only its own).
            f"{p}.CONSUMER.DELETE.{stream}.{durable}",
        ]
    return [*grants, f"$JS.ACK.{stream}.{durable}.>"]


def _kv_read_grants(prefixes: Sequence[str], bucket: str) -> list[str]:
    stream = kv_stream(bucket)
    grants = []
    for p in prefixes:
        grants += [
            f"{p}.STREAM.INFO.{stream}",
            f"{p}.CONSUMER.CREATE.{stream}",  # the ordered (ephemeral) consumer of a watch
            f"{p}.CONSUMER.INFO.{stream}.*",  # ... whose pending count tells the watch it caught up
            f"{p}.CONSUMER.DELETE.{stream}.*",  # ... removed when the watch stops or resets
            f"{p}.DIRECT.GET.{stream}.>",
            f"{p}.STREAM.MSG.GET.{stream}",
        ]
    return [*grants, f"$JS.FC.{stream}.>"]


def _kv_write_grants(prefixes: Sequence[str], bucket: str) -> list[str]:
    stream = kv_stream(bucket)
    grants = [f"$KV.{bucket}.>"]
    for p in prefixes:
        grants += [f"{p}.STREAM.CREATE.{stream}", f"{p}.STREAM.UPDATE.{stream}"]
    return grants


def _attachment_read_grants(prefixes: Sequence[str], bucket: str) -> list[str]:
    """Reading one attachment bucket (schemas/ATTACHMENTS.md 5.4): its stream's info, an
    object's info (a message get) and a chunk (a direct get). Granted only for the buckets
    of the node's own inbox and feeds: a bucket is the unit of reading, since these
    requests name the stream, not the object."""
    stream = bucket_stream(bucket)
    grants = []
    for p in prefixes:
        grants += [f"{p}.STREAM.INFO.{stream}", f"{p}.STREAM.MSG.GET.{stream}", f"{p}.DIRECT.GET.{stream}.>"]
    return grants


def node_permissions(
    access: NodeAccess, *, hub_domain: str | None = None, offices: Sequence[str] = ()
) -> Permissions:
    """The permissions of one office's (or centre's) NATS user. ``offices``: every office
    of the network, whose attachment buckets it may write to (a bucket name is one subject
    token, so each is granted by name; ``hub_users`` passes them all).

    ``hub_domain``: the hub's JetStream domain; when given, each API grant is also given in
    its ``$JS.<domain>.API`` form, which a node behind a leaf node uses to reach the hub."""
    o = sj.check_office(access.office)
    prefixes = [API] if hub_domain is None else [API, api_prefix(hub_domain)]
    pub: list[str] = [
        f"{sj.ROOT}.office.*.*.{o}",
        *(f"{sj.ROOT}.feed.{sj.check_feed(f)}.*.{o}" for f in access.posts),
        f"{sj.ROOT}.receipt.*.{o}",
        sj.heartbeat_subject(o),
    ]
    if access.role == "centre":
        pub.append(f"{sj.ROOT}.feed.*.*.{o}")  # the centre owns feeds: it posts to any of them
    # Attachments: write (publish only, no read) to every office's bucket and the feeds it
    # posts to, as its bulletins go; read only its own inbox's and feeds' buckets.
    # A bucket name is one subject token (no wildcard inside it), so each is named. A centre
    # writes to the buckets of the feeds it owns, which the generated config lists as its posts.
    pub += [f"$O.{office_bucket(x)}.>" for x in sorted(set(offices) | {o})]
    pub += [f"$O.{feed_bucket(f)}.>" for f in access.posts]
    for bucket in [office_bucket(o), *(feed_bucket(f) for f in access.reads)]:
        pub += _attachment_read_grants(prefixes, bucket)
    for spec in sj.node_consumers(o, access.reads):
        pub += _durable_grants(prefixes, spec.stream, spec.durable, spec.filter_subject)
    receipts = sj.receipts_consumer_spec(o)
    pub += _durable_grants(prefixes, receipts.stream, receipts.durable, receipts.filter_subject)
    pub += _kv_read_grants(prefixes, DIRECTORY_BUCKET)
    pub += _kv_read_grants(prefixes, FEEDS_BUCKET)
    # Its own inbox keys, and no other key of the directory bucket (schemas/INBOX.md).
    pub.append(f"$KV.{DIRECTORY_BUCKET}.{inbox_key_filter(o)}")
    if access.role == "centre":
        hb = sj.heartbeats_consumer_spec(o)
        pub += _durable_grants(prefixes, hb.stream, hb.durable, hb.filter_subject)
        pub += _kv_write_grants(prefixes, DIRECTORY_BUCKET)
        pub += _kv_write_grants(prefixes, FEEDS_BUCKET)
    sub: list[str] = [f"{inbox_prefix(o)}.>"]
    if access.leaf:
        # The hub's streams source this office's outbox streams in the office's own domain.
        leaf_api = api_prefix(o)
        sub += [f"{leaf_api}.CONSUMER.CREATE.{s}.>" for s in (LEAF_OUTBOX, LEAF_OUTBOX_HB)]
        sub += [f"$JS.FC.{s}.>" for s in (LEAF_OUTBOX, LEAF_OUTBOX_HB)]
        pub += ["$JSC.R.>", "$JS.S.>"]
    return Permissions(tuple(_unique(pub)), tuple(_unique(sub)))


def admin_permissions() -> Permissions:
    """The operator's user: creates and updates streams and buckets (``blo deploy streams``)
    and nothing else; it never publishes bulletins."""
    return Permissions(publish=(f"{API}.>",), subscribe=("_INBOX.>",))


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# -- the hub's config include --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    """One NATS user of the generated config: who it is, its public nkey, its permissions."""

    name: str  # an office id, or "admin"
    nkey: str  # public user nkey (U...)
    permissions: Permissions
    note: str = ""


@dataclass(frozen=True)
class AuthConfig:
    users: tuple[User, ...]
    #: The operator's user in the system account (server monitoring, ``nats server report``).
    #: nats-server requires a system account where gateways and leaf nodes meet.
    system_nkey: str
    account: str = ACCOUNT

    def render(self, *, header: str = "") -> str:
        """The ``accounts { ... }`` block for nats-server, to ``include`` in every hub server."""
        lines = [f"# {line}" if line else "#" for line in header.splitlines()]
        lines += [
            "accounts {",
            f"  {self.account} {{",
            "    jetstream: enabled",
            "    users = [",
        ]
        for user in sorted(self.users, key=lambda u: u.name):
            lines.append(f"      # {user.name}{' - ' + user.note if user.note else ''}")
            perms = json.dumps(user.permissions.as_config(), indent=None)
            lines.append(f'      {{ nkey: "{user.nkey}", permissions: {perms} }}')
        lines += [
            "    ]",
            "  }",
            f"  {SYSTEM_ACCOUNT} {{",
            f'    users = [ {{ nkey: "{self.system_nkey}" }} ]  # the operator: server monitoring',
            "  }",
            "}",
            f"system_account: {SYSTEM_ACCOUNT}",
        ]
        return "\n".join(lines) + "\n"


def hub_users(
    accesses: Sequence[NodeAccess],
    nkeys: Mapping[str, str],
    *,
    admin_nkey: str,
    system_nkey: str,
    hub_domain: str | None = None,
) -> AuthConfig:
    """One user per node plus the operator's admin user (and system user)."""
    users = [
        User(
            a.office,
            nkeys[a.office],
            node_permissions(a, hub_domain=hub_domain, offices=[x.office for x in accesses]),
            f"{a.role}{', leaf node' if a.leaf else ''}"
            f"{', reads ' + ' '.join(a.reads) if a.reads else ''}{', posts ' + ' '.join(a.posts) if a.posts else ''}",
        )
        for a in accesses
    ]
    users.append(User("admin", admin_nkey, admin_permissions(), "operator: creates streams and buckets"))
    return AuthConfig(tuple(users), system_nkey)
