"""Names on the bus: subjects, streams, consumers and message ids. Pure; no I/O.

Two rules govern the layout (``schemas/SUBJECTS.md`` explains them in full):

* **precedence is a token of every bulletin subject**, so each node holds one durable
  pull consumer per precedence class and fetches FLASH work without waiting behind a
  backlog of ROUTINE messages;
* **the sending office is the last token of everything an office publishes**
  (``blo.office.<to>.<prec>.<from>``), so a NATS permission can say "this user may
  publish only as TH-MUK", and a receiver can check the subject against the signed
  sender (a mismatch is quarantined).

Everything here is a function of office ids, feed names and precedences, so the node,
the deploy tooling (NATS permissions) and the tests derive the same names from one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from bus.bulletin import PRECEDENCES, is_feed_name, is_office_id
from bus.errors import ValidationError

ROOT = "blo"

STREAM_OFFICES = "BLO_OFFICES"
STREAM_FEEDS = "BLO_FEEDS"
STREAM_RECEIPTS = "BLO_RECEIPTS"
STREAM_HEARTBEATS = "BLO_HEARTBEATS"

#: Precedence -> its subject token; the order of PRECEDENCES is the order of service.
PRECEDENCE_TOKENS: dict[str, str] = {p: p.lower() for p in PRECEDENCES}
_RANK = {p: i for i, p in enumerate(PRECEDENCES)}
#: Rank -> precedence (rank 0 is FLASH).
PRECEDENCES_BY_RANK: tuple[str, ...] = PRECEDENCES

# Feed names become one subject token and part of a consumer name, so they may not
# hold '.', '*', '>' or whitespace (NATS token rules) and stay short and ASCII.


def precedence_rank(precedence: str) -> int:
    """0 for FLASH ... 3 for ROUTINE: lower is served first."""
    try:
        return _RANK[precedence]
    except KeyError:
        raise ValidationError("precedence", f"must be one of {', '.join(PRECEDENCES)}; got {precedence!r}") from None


def check_office(office_id: str) -> str:
    if not is_office_id(office_id):
        raise ValidationError("office", f"must be an office id such as TH-MUK; got {office_id!r}"[:200])
    return office_id


def check_feed(feed: str) -> str:
    """A feed name as schemas/FEEDS.md 2 defines it (the one grammar, ``bus.bulletin.is_feed_name``)."""
    if not is_feed_name(feed):
        raise ValidationError(
            "feed",
            f"must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit; got {feed!r}"[:200],
        )
    return feed


def _token(precedence: str) -> str:
    precedence_rank(precedence)
    return PRECEDENCE_TOKENS[precedence]


def office_subject(office_id: str, precedence: str, sender: str) -> str:
    """Where a bulletin from ``sender`` to one office travels: ``blo.office.LA-SVK.flash.TH-MUK``."""
    return f"{ROOT}.office.{check_office(office_id)}.{_token(precedence)}.{check_office(sender)}"


def feed_subject(feed: str, precedence: str, sender: str) -> str:
    """Where a bulletin from ``sender`` to a feed travels: ``blo.feed.mekong-drugs.routine.TH-TCCC``."""
    return f"{ROOT}.feed.{check_feed(feed)}.{_token(precedence)}.{check_office(sender)}"


def office_filter(office_id: str, precedence: str) -> str:
    """What one office's inbox consumer for one precedence reads: ``blo.office.TH-MUK.flash.*``."""
    return f"{ROOT}.office.{check_office(office_id)}.{_token(precedence)}.*"


def feed_filter(feed: str, precedence: str) -> str:
    """What a member's feed consumer for one precedence reads: ``blo.feed.mekong-drugs.flash.*``."""
    return f"{ROOT}.feed.{check_feed(feed)}.{_token(precedence)}.*"


def receipt_subject(bulletin_sender: str, signer: str) -> str:
    """Where ``signer``'s receipts for bulletins ``bulletin_sender`` sent travel:
    ``blo.receipt.TH-MUK.LA-SVK``."""
    return f"{ROOT}.receipt.{check_office(bulletin_sender)}.{check_office(signer)}"


def receipt_filter(office_id: str) -> str:
    """Every receipt for the bulletins ``office_id`` sent: ``blo.receipt.TH-MUK.*``."""
    return f"{ROOT}.receipt.{check_office(office_id)}.*"


def heartbeat_subject(office_id: str) -> str:
    """Where an office's signed heartbeats travel (the stream keeps the last one): ``blo.hb.TH-MUK``."""
    return f"{ROOT}.hb.{check_office(office_id)}"


def subject_sender(subject: str) -> str | None:
    """The sending office named by the last token of an office-published subject, or None."""
    if not isinstance(subject, str):
        return None
    last = subject.rpartition(".")[2]
    return last if is_office_id(last) else None


def inbox_consumer(office_id: str, precedence: str) -> str:
    """Durable consumer name of an office's inbox for one precedence: ``inbox-TH-MUK-flash``."""
    return f"inbox-{check_office(office_id)}-{_token(precedence)}"


def feed_consumer(feed: str, office_id: str, precedence: str) -> str:
    """Durable consumer name of one member's view of a feed: ``feed-mekong-drugs-TH-MUK-flash``.

    Each member has its own durable (not one shared queue group): every member must
    receive every feed bulletin.
    """
    return f"feed-{check_feed(feed)}-{check_office(office_id)}-{_token(precedence)}"


def receipt_consumer(office_id: str) -> str:
    return f"receipts-{check_office(office_id)}"


def bulletin_msg_id(bulletin_id: str, recipient: str, *, fanout: bool) -> str:
    """The ``Nats-Msg-Id`` of one stored copy of a bulletin.

    JetStream dedupes per stream on this id, so a bulletin stored on several subjects
    needs one id per copy: ``<bulletin id>:<recipient>``. A bulletin with one subject uses
    its bulletin id as is.
    """
    return f"{bulletin_id}:{recipient}" if fanout else bulletin_id


def receipt_msg_id(kind: str, bulletin_id: str, office_id: str) -> str:
    return f"receipt:{kind}:{bulletin_id}:{office_id}"


@dataclass(frozen=True, slots=True)
class SubjectInfo:
    """What a bulletin subject says: the kind of mailbox, its owner, the precedence, the sender."""

    kind: str  # "office" or "feed"
    name: str  # office id or feed name
    precedence: str
    sender: str


def parse_bulletin_subject(subject: str) -> SubjectInfo:
    """The inverse of ``office_subject`` / ``feed_subject``; ValidationError for anything else."""
    parts = subject.split(".") if isinstance(subject, str) else []
    if len(parts) != 5 or parts[0] != ROOT or parts[1] not in ("office", "feed"):
        raise ValidationError(
            "subject", f"is not a bulletin subject (blo.office|feed.<name>.<precedence>.<sender>): {subject!r}"[:200]
        )
    by_token = {t: p for p, t in PRECEDENCE_TOKENS.items()}
    if parts[3] not in by_token:
        raise ValidationError("subject", f"has {parts[3]!r} where the precedence token belongs"[:200])
    name = check_office(parts[2]) if parts[1] == "office" else check_feed(parts[2])
    return SubjectInfo(parts[1], name, by_token[parts[3]], check_office(parts[4]))


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """One pull consumer a node reads: stream, name, filter, and the rank (0 = FLASH) its
    messages are served at. ``start_ms``: where a consumer created now starts reading (the
    stream's first message if None); an existing one resumes where it left, whatever this
    says. ``ephemeral``: the server keeps it only while the node reads it (one replica, in
    memory) and the node keeps where it reached (``cursor.py``: every consumer of a
    node's own); otherwise it is durable, at the stream's replicas (a centre's heartbeat
    consumer)."""

    stream: str
    durable: str
    filter_subject: str
    rank: int
    start_ms: int | None = None
    feed: str | None = None  # the feed it reads (None: an inbox, receipts, heartbeats)
    ephemeral: bool = False


def node_consumers(office_id: str, feeds: tuple[str, ...] | list[str] = ()) -> list[ConsumerSpec]:
    """Every bulletin consumer a node runs, FLASH ones first."""
    specs: list[ConsumerSpec] = []
    for precedence in PRECEDENCES:
        rank = _RANK[precedence]
        specs.append(
            ConsumerSpec(
                STREAM_OFFICES, inbox_consumer(office_id, precedence), office_filter(office_id, precedence), rank,
                ephemeral=True,
            )
        )
        for feed in feeds:
            specs.append(
                ConsumerSpec(
                    STREAM_FEEDS, feed_consumer(feed, office_id, precedence), feed_filter(feed, precedence), rank,
                    feed=feed, ephemeral=True,
                )
            )
    return specs


def feed_consumers(office_id: str, feed: str, *, start_ms: int | None = None) -> list[ConsumerSpec]:
    """One member's consumers of one feed, FLASH first: those ``node_consumers`` lists for
    it, created to start at ``start_ms`` (a member that joins reads from its joining)."""
    return [
        ConsumerSpec(
            STREAM_FEEDS, feed_consumer(feed, office_id, p), feed_filter(feed, p), _RANK[p], start_ms, feed, ephemeral=True
        )
        for p in PRECEDENCES
    ]


def receipts_consumer_spec(office_id: str) -> ConsumerSpec:
    return ConsumerSpec(STREAM_RECEIPTS, receipt_consumer(office_id), receipt_filter(office_id), 0, ephemeral=True)


def heartbeats_consumer_spec(centre_id: str) -> ConsumerSpec:
    """A centre's durable consumer of every office's latest heartbeat."""
    return ConsumerSpec(STREAM_HEARTBEATS, f"heartbeats-{check_office(centre_id)}", f"{ROOT}.hb.*", 0)


# Durable consumers one stream may hold. Every office holds its own (4 inbox, 4 per feed,
# 1 receipts), so a stream's count grows with the network: 10,000 offices in four feeds
# each are 160,000 on BLO_FEEDS. Set explicitly because nats-server 2.15 otherwise caps
# every stream at 1,000 consumers (its ``default_max_consumers``; -1 is not "unlimited"
# there): 250 offices on BLO_OFFICES, 125 offices in two feeds on BLO_FEEDS (measured in
# bench/bench_scale.py, docs/SCALE.md).
MAX_CONSUMERS = 250_000


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """Limits of one stream (sizes in bytes, times in seconds)."""

    name: str
    subjects: tuple[str, ...]
    max_age_s: float
    max_bytes: int
    max_msg_size: int
    duplicate_window_s: float
    replicas: int = 1  # 3 on a national cluster (deploy/): survives a lost server
    max_msgs_per_subject: int = -1  # -1: no per-subject limit
    max_consumers: int = MAX_CONSUMERS


# Sealed bulletins are at most 256 KiB (bus.envelope.MAX_ENVELOPE_BYTES); the stream
# limit leaves room for headers so a legal bulletin is never refused by the server.
MAX_MSG_SIZE = 256 * 1024 + 4096
DAY_S = 86_400.0


def default_streams(
    *,
    max_age_days: float = 30.0,
    max_bytes: int = 2 * 1024**3,
    duplicate_window_s: float = 600.0,
    replicas: int = 1,
) -> list[StreamSpec]:
    """The four streams of the layout with their default limits (see SUBJECTS.md)."""
    age, window = max_age_days * DAY_S, duplicate_window_s
    return [
        StreamSpec(STREAM_OFFICES, (f"{ROOT}.office.>",), age, max_bytes, MAX_MSG_SIZE, window, replicas),
        StreamSpec(STREAM_FEEDS, (f"{ROOT}.feed.>",), age, max_bytes, MAX_MSG_SIZE, window, replicas),
        # Receipts are small and only matter until their sender read them.
        StreamSpec(STREAM_RECEIPTS, (f"{ROOT}.receipt.>",), 7 * DAY_S, max_bytes // 8, 4096, window, replicas),
        # Only each office's latest heartbeat matters (the centre's network view).
        StreamSpec(
            STREAM_HEARTBEATS, (f"{ROOT}.hb.>",), 8 * DAY_S, 64 * 1024**2, 4096, window, replicas, max_msgs_per_subject=1
        ),
    ]
