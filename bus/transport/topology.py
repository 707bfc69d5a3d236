"""The streams of a deployment: the hub's streams, each office leaf node's outbox streams,
and which leaf streams each hub stream sources. Pure; ``provision`` applies them.

An office behind its own leaf node publishes into ``BLO_OUTBOX`` (and ``BLO_OUTBOX_HB``
for heartbeats, keeping only the latest) in the leaf's own JetStream domain, named after
the office. Each hub stream lists one *source* per leaf office: the hub's JetStream pulls
the office's messages across the leaf connection whenever it is up, filtered to the
office's own subjects, so an outage only delays them. Offices connected directly to the
hub publish into the hub streams themselves and need no source.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bus.transport import subjects as sj
from bus.transport.permissions import LEAF_OUTBOX, LEAF_OUTBOX_HB, api_prefix


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """One hub stream's source: ``stream`` in JetStream ``domain`` (an office leaf node),
    only the messages matching ``filter_subject``."""

    stream: str
    domain: str
    filter_subject: str

    @property
    def api(self) -> str:
        return api_prefix(self.domain)


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """A stream to create or update, with the sources it pulls from."""

    spec: sj.StreamSpec
    sources: tuple[SourceSpec, ...] = ()


def leaf_outbox_streams(office_id: str, *, max_age_days: float = 30.0, max_bytes: int = 2 * 1024**3) -> list[sj.StreamSpec]:
    """The outbox streams of an office's leaf node: everything the office publishes."""
    o = sj.check_office(office_id)
    age = max_age_days * sj.DAY_S
    return [
        sj.StreamSpec(
            LEAF_OUTBOX,
            (f"{sj.ROOT}.office.*.*.{o}", f"{sj.ROOT}.feed.*.*.{o}", f"{sj.ROOT}.receipt.*.{o}"),
            age,
            max_bytes,
            sj.MAX_MSG_SIZE,
            600.0,
        ),
        sj.StreamSpec(LEAF_OUTBOX_HB, (sj.heartbeat_subject(o),), 8 * sj.DAY_S, 1024**2, 4096, 600.0, max_msgs_per_subject=1),
    ]


def hub_plans(
    *, replicas: int = 1, leaf_offices: Iterable[str] = (), streams: list[sj.StreamSpec] | None = None
) -> list[StreamPlan]:
    """The hub's four streams at ``replicas``, each sourcing the leaf outboxes of ``leaf_offices``.

    The filters name the office as sender, so a hub stream only takes from a leaf what
    that office may publish (the leaf's server applies the filter; receivers still check
    every subject's sender token against the signature)."""
    specs = streams if streams is not None else sj.default_streams(replicas=replicas)
    offices = sorted({sj.check_office(o) for o in leaf_offices})
    filters = {
        sj.STREAM_OFFICES: (LEAF_OUTBOX, "{root}.office.*.*.{o}"),
        sj.STREAM_FEEDS: (LEAF_OUTBOX, "{root}.feed.*.*.{o}"),
        sj.STREAM_RECEIPTS: (LEAF_OUTBOX, "{root}.receipt.*.{o}"),
        sj.STREAM_HEARTBEATS: (LEAF_OUTBOX_HB, "{root}.hb.{o}"),
    }
    plans = []
    for spec in specs:
        leaf_stream, pattern = filters[spec.name]
        sources = tuple(SourceSpec(leaf_stream, o, pattern.format(root=sj.ROOT, o=o)) for o in offices)
        plans.append(StreamPlan(spec, sources))
    return plans
