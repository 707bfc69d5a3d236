"""Creating the streams of a deployment (``blo deploy streams``): the operator's side.

Nodes run with restricted NATS users that may not create streams
(``NodeOptions(ensure_streams=False)``), so the operator creates them once with the admin
user: the hub's four streams (at replicas 3 on a national cluster), each with a source
per office leaf node, the attachment buckets (one per office and per feed,
schemas/ATTACHMENTS.md 5.1), and on each office leaf node its outbox streams. The plans
come from ``bus.transport.topology`` and ``bus.transport.object_store``; this module only
sends them. Creating is idempotent: an existing stream is updated to the plan (limits,
replicas where allowed, sources).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bus.transport.client import BusClient, ExternalStream, StreamConfig, StreamSource
from bus.transport.client import stream_config as client_stream_config
from bus.transport.nats_errors import NotFound, nats_errors
from bus.transport.object_store import BucketSpec, bucket_stream
from bus.transport.topology import StreamPlan


def stream_config(plan: StreamPlan) -> StreamConfig:
    return client_stream_config(
        plan.spec,
        sources=[
            StreamSource(name=s.stream, filter_subject=s.filter_subject, external=ExternalStream(api=s.api))
            for s in plan.sources
        ],
    )


#: JetStream's error code for "insufficient storage resources available": the server's
#: (or account's) max_file_store cannot reserve the stream's max_bytes.
_INSUFFICIENT_STORAGE = 10047


def _size(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.0f} MiB"


def _storage_advice(name: str, wanted: Sequence[tuple[str, int]]) -> str:
    """Say how much storage the streams reserve: a file stream reserves its max_bytes."""
    need = sum(size for _, size in wanted)
    own = next(size for n, size in wanted if n == name)
    return (
        f"JetStream has too little storage for stream {name}: it reserves {_size(own)}, and these "
        f"{len(wanted)} streams {_size(need)} in all; set jetstream {{ max_file_store: {need} }} "
        f"(at least {_size(need)}, plus the server's other streams) in the server's config and restart it"
        + (" (or give the buckets less: --bucket-mib)" if any(n.startswith("OBJ_") for n, _ in wanted) else "")
    )


async def apply_plans(client: BusClient, plans: Sequence[StreamPlan], buckets: Sequence[BucketSpec] = ()) -> list[str]:
    """Create or update every planned stream, then every attachment bucket; returns one
    line per stream saying what was done."""
    js: Any = client.jetstream()
    items = [(p.spec.name, stream_config(p), p.spec.max_bytes, _plan_note(p)) for p in plans]
    items += [(bucket_stream(b.bucket), b.stream_config(), b.max_bytes, f"bucket {b.bucket}, replicas {b.replicas}") for b in buckets]
    wanted = [(name, size) for name, _, size, _ in items]
    done = []
    api = client.api_prefix
    for name, config, _, note in items:
        asked = [f"{api}.STREAM.{verb}.{name}" for verb in ("CREATE", "UPDATE", "INFO")]
        codes = {_INSUFFICIENT_STORAGE: _storage_advice(name, wanted)}
        with nats_errors(f"create or update stream {name}", denied=client.violation_for, asked=asked, codes=codes):
            try:
                await js.stream_info(name)
                exists = True
            except NotFound:
                exists = False
            if exists:
                await js.update_stream(config)
            else:
                await js.add_stream(config)
        done.append(f"{'updated' if exists else 'created'} {name} ({note})")
    return done


def _plan_note(plan: StreamPlan) -> str:
    sources = f", sourcing {len(plan.sources)} leaf node(s)" if plan.sources else ""
    return f"replicas {plan.spec.replicas}{sources}"
