"""The bus's Prometheus metrics, in one object so each node (and each test) can have its own
registry; the daemon passes the default registry and serves it on /metrics."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

_SIZE_BUCKETS = (512, 1024, 2048, 4096, 16384, 65536, 262144)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)

_shared: dict[int, BusMetrics] = {}


class BusMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.sent = Counter("blo_bulletins_sent", "Bulletin copies stored by JetStream", ["precedence"], registry=r)
        self.received = Counter(
            "blo_bulletins_received", "Bulletins handed to the application", ["precedence"], registry=r
        )
        self.duplicates = Counter("blo_bulletins_duplicate", "Bulletins dropped as already delivered", registry=r)
        self.rejected = Counter(
            "blo_bulletins_rejected", "Messages from the wire that failed to open", ["reason"], registry=r
        )
        self.quarantined = Counter("blo_quarantined", "Messages put in quarantine", ["reason"], registry=r)
        self.outbox_depth = Gauge("blo_outbox_depth", "Messages waiting in the outbox", registry=r)
        self.bulletin_bytes = Histogram(
            "blo_bulletin_size_bytes",
            "Size of sealed bulletins sent and received",
            ["direction"],
            buckets=_SIZE_BUCKETS,
            registry=r,
        )
        self.delivery_latency = Histogram(
            "blo_delivery_latency_seconds",
            "From a bulletin's sent-at to its hand-over to the application here",
            ["precedence"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.receipts = Counter(
            "blo_receipts_received", "Verified receipts for bulletins sent here", ["kind"], registry=r
        )
        self.flash_escalations = Counter(
            "blo_flash_escalations", "FLASH bulletins not acknowledged in time", registry=r
        )
        self.flash_unacknowledged = Gauge(
            "blo_flash_unacknowledged", "FLASH bulletins past their deadline still missing a receipt", registry=r
        )
        self.connected = Gauge("blo_bus_connected", "1 while connected to a NATS server", registry=r)

    @classmethod
    def default(cls) -> BusMetrics:
        """The process-wide metrics on prometheus_client's default registry (created once)."""
        found = _shared.get(id(REGISTRY))
        if found is None:
            found = _shared[id(REGISTRY)] = cls(REGISTRY)
        return found

    @classmethod
    def fresh(cls) -> BusMetrics:
        """Metrics on a private registry (tests, several nodes in one process)."""
        return cls(CollectorRegistry())


def sample(registry_metric: Counter | Gauge, **labels: str) -> float:
    """The current value of a counter or gauge (with labels), for tests and status pages."""
    target = registry_metric.labels(**labels) if labels else registry_metric
    for metric in target.collect():
        for s in metric.samples:
            if s.name.endswith("_total") or s.name == metric.name:
                return s.value
    return 0.0
