"""The async I/O shell around the pure core: talking to NATS. Its public names are
re-exported here (the office node's only way in; pinned by ``tests/test_public_api.py``);
names that would clash are re-exported under longer ones (``open_directory_bucket``,
``open_feed_bucket``, ``publish_directory_item``, ``publish_feed_item``)."""

from bus.transport.client import BusClient, ClientConfig, ack_all, one_shot_jetstream, stored_at_ms
from bus.transport.embedded import embedded_server
from bus.transport.inbox_keys import RING_FILE, InboxKeyKeeper
from bus.transport.kv_directory import DirectoryCache, DirectoryMetrics, DirectoryWatcher
from bus.transport.kv_directory import open_bucket as open_directory_bucket
from bus.transport.kv_directory import publish_item as publish_directory_item
from bus.transport.kv_feeds import FeedKeyCache, FeedKeyWatcher, FeedMetrics, publish_issue
from bus.transport.kv_feeds import open_bucket as open_feed_bucket
from bus.transport.kv_feeds import publish_item as publish_feed_item
from bus.transport.metrics import BusMetrics, sample
from bus.transport.nkey import new_user_seed, public_key, read_seed
from bus.transport.node import BusNode, Escalation, NodeHooks, NodeOptions, StateChange
from bus.transport.object_store import (
    DEFAULT_BUCKET_BYTES,
    BucketSpec,
    bucket_list_json,
    bucket_of,
    bucket_specs,
    feed_bucket,
    office_bucket,
    parse_bucket_list,
)
from bus.transport.outbox import ACKNOWLEDGED, BulletinStatus, RecipientStatus
from bus.transport.permissions import FeedMembers, NodeAccess, hub_users, inbox_prefix, node_access, parse_feed
from bus.transport.provision import apply_plans
from bus.transport.quarantine import Quarantine
from bus.transport.server import NatsServer
from bus.transport.subjects import (
    STREAM_FEEDS,
    STREAM_OFFICES,
    ConsumerSpec,
    check_office,
    heartbeat_subject,
    heartbeats_consumer_spec,
    precedence_rank,
    subject_sender,
)
from bus.transport.topology import StreamPlan, hub_plans, leaf_outbox_streams
from bus.transport.transfers import COMPLETE, Download, TransferMetrics, Transfers, entries_of

__all__ = [
    "ACKNOWLEDGED",
    "COMPLETE",
    "DEFAULT_BUCKET_BYTES",
    "RING_FILE",
    "STREAM_FEEDS",
    "STREAM_OFFICES",
    "BucketSpec",
    "BulletinStatus",
    "BusClient",
    "BusMetrics",
    "BusNode",
    "ClientConfig",
    "ConsumerSpec",
    "DirectoryCache",
    "DirectoryMetrics",
    "DirectoryWatcher",
    "Download",
    "Escalation",
    "FeedKeyCache",
    "FeedKeyWatcher",
    "FeedMembers",
    "FeedMetrics",
    "InboxKeyKeeper",
    "NatsServer",
    "NodeAccess",
    "NodeHooks",
    "NodeOptions",
    "Quarantine",
    "RecipientStatus",
    "StateChange",
    "StreamPlan",
    "TransferMetrics",
    "Transfers",
    "ack_all",
    "apply_plans",
    "bucket_list_json",
    "bucket_of",
    "bucket_specs",
    "check_office",
    "embedded_server",
    "entries_of",
    "feed_bucket",
    "heartbeat_subject",
    "heartbeats_consumer_spec",
    "hub_plans",
    "hub_users",
    "inbox_prefix",
    "leaf_outbox_streams",
    "new_user_seed",
    "node_access",
    "office_bucket",
    "one_shot_jetstream",
    "open_directory_bucket",
    "open_feed_bucket",
    "parse_bucket_list",
    "parse_feed",
    "precedence_rank",
    "public_key",
    "publish_directory_item",
    "publish_feed_item",
    "publish_issue",
    "read_seed",
    "sample",
    "stored_at_ms",
    "subject_sender",
]
