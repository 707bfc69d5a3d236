"""Creating the streams of a deployment (``blo deploy streams``): the operator's side.

Nodes run with restricted NATS users that may not create streams
(``NodeOptions(ensure_streams=False)``), so the operator creates them once with the admin
user: the hub's four streams (at replicas 3 on a national cluster), each with a source
per office leaf node, and on each office leaf node its outbox streams. The plans come
from ``bus.transport.topology``; this module only sends them. Creating is idempotent:
an existing stream is updated to the plan (limits, replicas where allowed, sources).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import ExternalStream, StreamConfig, StreamSource

from bus.errors import BusError, NotConnected, PermissionDenied
from bus.transport.client import BusClient
from bus.transport.client import stream_config as client_stream_config
from bus.transport.topology import StreamPlan


def stream_config(plan: StreamPlan) -> StreamConfig:
    return client_stream_config(
        plan.spec,
        sources=[
            StreamSource(name=s.stream, filter_subject=s.filter_subject, external=ExternalStream(api=s.api))
            for s in plan.sources
        ],
    )


async def apply_plans(client: BusClient, plans: Sequence[StreamPlan]) -> list[str]:
    """Create or update every planned stream; returns one line per stream saying what was done."""
    js: Any = client.jetstream()
    done = []
    for plan in plans:
        config = stream_config(plan)
        name = plan.spec.name
        started = time.monotonic()
        try:
            try:
                await js.stream_info(name)
                exists = True
            except nats.js.errors.NotFoundError:
                exists = False
            if exists:
                await js.update_stream(config)
            else:
                await js.add_stream(config)
        except nats.errors.TimeoutError as exc:
            refused = client.violation_for(f"{js._prefix}.STREAM.CREATE.{name}", started) or client.violation_for(
                f"{js._prefix}.STREAM.UPDATE.{name}", started
            ) or client.violation_for(f"{js._prefix}.STREAM.INFO.{name}", started)
            if refused:
                raise PermissionDenied(f"this NATS user may not create or update stream {name} ({refused})") from exc
            raise NotConnected(f"no answer from JetStream about stream {name}") from exc
        except nats.js.errors.APIError as exc:
            raise BusError(f"JetStream refused stream {name}: {exc.description or exc}") from exc
        except nats.errors.Error as exc:
            raise BusError(f"creating stream {name} failed: {exc}") from exc
        sources = f", sourcing {len(plan.sources)} leaf node(s)" if plan.sources else ""
        done.append(f"{'updated' if exists else 'created'} {name} (replicas {plan.spec.replicas}{sources})")
    return done
