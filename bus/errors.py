"""Every error BLO Bus raises on purpose, in one tree.

Callers catch ``BloError`` to handle anything the bus says no to; the subclasses
say *why*, and each carries a short, stable ``reason`` code used as a metrics
label and as the quarantine reason, plus a message a person can act on::

    BloError
    ├── ValidationError            a bulletin, record or request is malformed (names the field)
    ├── EnvelopeError              a sealed bulletin cannot be sealed or opened
    │   ├── TooLarge               over the size limit (seal and open)
    │   ├── MalformedEnvelope      not the wire shape: truncated, wrong types, trailing bytes
    │   ├── UnsupportedVersion     a wire version this build does not speak
    │   ├── NotAddressedToUs       no recipient entry for our key or feed epoch
    │   │   └── FeedKeyPending     a feed epoch whose key may still arrive (retryable)
    │   ├── UnknownSender          the directory has no key for the claimed sender (retryable)
    │   ├── SenderKeyInvalid       the sender's key was revoked (by witness time) or not valid at sent-at
    │   ├── Untimely               the signed time breaks the witness-time rules (schemas/TRUST.md)
    │   │   ├── FromFuture         signed more than the allowed skew after it was stored
    │   │   └── TooOld             stored more than the maximum age after it was signed (a replay)
    │   ├── RecipientKeyInvalid    seal refused: a recipient key is revoked or expired
    │   ├── DecryptionFailed       a wrap or the content failed authentication (tampering)
    │   ├── BadSignature           the inner signature does not verify for the claimed sender
    │   ├── Misrouted              opened fine, but the subject names another sender than the signature
    │   │   ├── PrecedenceMismatch the subject's precedence token is not the signed precedence
    │   │   └── RecipientMismatch  the subject's inbox or feed is not the entry the bulletin opened through
    │   ├── FeedPostRefused        a feed bulletin opened, but the feed's rules refuse it (schemas/FEEDS.md)
    │   │   ├── StaleEpoch         sealed under an epoch that was superseded before it was stored
    │   │   └── NotAWriter         its sender is neither the feed's owner nor a member with post rights
    │   └── InvalidContent         decrypted and verified, but the bulletin inside is malformed
    ├── DirectoryError             a directory record is untrusted, forged or inconsistent
    ├── FeedError                  a feed epoch record or key grant is untrusted, forged or forks the history
    ├── HandlingRefused            a handling rule (releasability, TLP, precedence) forbids this send or forward
    │   └── FeedPostForbidden      this office may not post to the feed: neither its owner nor a writer of its newest epoch
    ├── ForwardRefused             a centre's forward does not stand: its original is forged or differs from it
    ├── AttachmentError            a file cannot be attached, or a fetched one does not check (schemas/ATTACHMENTS.md)
    │   ├── AttachmentTooLarge     over the per-file or per-bulletin limit (attaching and receiving)
    │   ├── UnknownMediaType       its content is of no type this node accepts (attaching)
    │   └── AttachmentCorrupt      a fetched attachment fails a receiver's check: quarantined with the reason
    ├── KeyStoreError              a key file is unreadable, or the passphrase is wrong
    ├── ConfigError                a configuration file or value is wrong (names key and file)
    ├── StoreError                 the node's SQLite file is unusable (not a database, newer schema, I/O)
    ├── NotFound                   the named bulletin, user or token does not exist here (HTTP 404)
    └── BusError                   talking to NATS failed
        ├── NotConnected           no server reachable right now; the outbox keeps the bulletin
        ├── PublishUnconfirmed     no ack in time: the outcome is unknown, retry with the same id
        ├── NoStream               JetStream did not answer for a subject: the hub is unreachable or restarting, or no stream stores it
        └── PermissionDenied       the NATS server refused a publish or subscribe

The office node's own refusals (its HTTP API's and CLI's) extend this tree in
``office_node/errors.py``; the HTTP status of each is the API's choice (``office_node/api.py``).

Nothing from msgpack, PyNaCl or nats-py escapes the public API raw: the layer that
calls them translates their exceptions into this tree (``raise ... from exc``).
"""

from __future__ import annotations


class BloError(Exception):
    """Base of every error BLO Bus raises on purpose."""

    reason = "error"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:  # a rule's name for this one (stable, for metrics), else the class's
            self.reason = reason


class ValidationError(BloError):
    """Input does not match its schema. ``field`` is a dotted path such as ``entities[1].number``."""

    reason = "invalid"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem


class EnvelopeError(BloError):
    """A sealed bulletin could not be sealed or opened."""

    reason = "envelope"
    #: True when the same bytes may open later (e.g. once the directory catches up);
    #: quarantine keeps those for a retry rather than as final.
    retryable = False


class TooLarge(EnvelopeError):
    reason = "too_large"


class MalformedEnvelope(EnvelopeError):
    reason = "malformed"


class UnsupportedVersion(EnvelopeError):
    reason = "unsupported_version"


class NotAddressedToUs(EnvelopeError):
    reason = "not_addressed_to_us"


class FeedKeyPending(NotAddressedToUs):
    """Sealed under a feed epoch this node is a member of but holds no key for yet: the
    grant is on its way (KV order is not guaranteed). Kept and opened once it arrives."""

    reason = "feed_key_pending"
    retryable = True


class UnknownSender(EnvelopeError):
    reason = "unknown_sender"
    retryable = True


class SenderKeyInvalid(EnvelopeError):
    reason = "sender_key_invalid"


class Untimely(EnvelopeError):
    """The signed time of a bulletin or receipt breaks a witness-time rule (schemas/TRUST.md
    section 2.2): it is judged by when the server stored it, a time its signer cannot choose."""

    reason = "untimely"


class FromFuture(Untimely):
    """Signed more than ``MAX_FUTURE_SKEW_MS`` after it was stored (rule T1)."""

    reason = "from_future"


class TooOld(Untimely):
    """Stored more than ``MAX_AGE_MS`` after it was signed (rule T2): a replay of a captured
    message, or one that waited too long; the sender posts it again."""

    reason = "too_old"


class RecipientKeyInvalid(EnvelopeError):
    reason = "recipient_key_invalid"


class DecryptionFailed(EnvelopeError):
    reason = "decryption_failed"


class BadSignature(EnvelopeError):
    reason = "bad_signature"


class Misrouted(EnvelopeError):
    """The bulletin or receipt verifies, but the NATS subject it came on names a different
    sending office. NATS permissions tie each office to subjects ending in its own id, so
    this means a misconfigured server or a forged publish; the message is quarantined."""

    reason = "misrouted"


class PrecedenceMismatch(Misrouted):
    """The subject's precedence token is not the precedence the sender signed: a ROUTINE
    bulletin published on the FLASH subject would jump every queue."""

    reason = "precedence_mismatch"


class RecipientMismatch(Misrouted):
    """The subject names an inbox or feed that is not the recipient entry the bulletin
    opened through: an office-wrapped bulletin replayed on a feed subject, or the reverse."""

    reason = "recipient_mismatch"


class FeedPostRefused(EnvelopeError):
    """A bulletin opened through a feed entry, but the feed's rules refuse it (schemas/FEEDS.md
    section 7, what a member accepts)."""

    reason = "feed_post_refused"


class StaleEpoch(FeedPostRefused):
    """Sealed under an epoch whose successor was stored more than ``EPOCH_GRACE_MS`` before
    the bulletin: a removed member writing under its last key, or a lagging sender."""

    reason = "stale_epoch"


class NotAWriter(FeedPostRefused):
    """Its sender is neither the owner of the epoch nor one of its writers."""

    reason = "not_a_writer"


class InvalidContent(EnvelopeError):
    """Decrypted and signed by the sender, but the bulletin inside breaks the schema."""

    reason = "invalid_content"


class DirectoryError(BloError):
    """A directory record or request was refused. ``reason`` names the rule it broke
    (``bad_signature``, ``untrusted_signer``, ``cross_country``, ``stale_sequence``...),
    stable for metrics; see schemas/DIRECTORY.md for the full list."""

    reason = "directory"


class FeedError(BloError):
    """A feed epoch record or key grant was refused. ``reason`` names the rule it broke
    (``bad_signature``, ``untrusted_signer``, ``feed_fork``, ``not_owner``...), stable for
    metrics; see schemas/FEEDS.md for the full list."""

    reason = "feed"


class HandlingRefused(BloError):
    """A handling rule forbids this: the bulletin may not reach that office or feed, may
    not be forwarded like that, or may not be received here (see schemas/HANDLING.md).
    ``reason`` names the rule (``not_releasable``, ``tlp_no_feed``, ``precedence_downgrade``,
    ``tlp_loosened``, ``releasability_widened``); the message says what to change."""

    reason = "handling"


class FeedPostForbidden(HandlingRefused):
    """The sending side of schemas/FEEDS.md 6.2: this office may not post to the feed (it is
    neither the owner nor a writer of the newest epoch it holds: never was, lost its post
    rights, or was removed). Members would refuse the bulletin as ``not_a_writer``."""

    reason = "not_a_writer"

    def __init__(self, message: str) -> None:
        super().__init__(message, "not_a_writer")


class ForwardRefused(BloError):
    """A forward opened fine as the centre's bulletin, but the original it carries does not
    stand (``bus.forward.verify_forward``, schemas/ENVELOPE.md 8.1). ``reason``:
    ``forward_mismatch`` (its visible content or handling differs from the original's, or
    the original does not parse), ``forward_bad_signature`` (the original office's
    signature does not verify: forged or altered), ``forward_key_invalid`` (the original
    was signed with a key revoked or not valid at its sent-at)."""

    reason = "forward_mismatch"


class AttachmentError(BloError):
    """A file cannot be attached, or an attachment fetched from the bus does not check.
    ``reason`` names the rule (schemas/ATTACHMENTS.md, the receiver's checks)."""

    reason = "attachment"


class AttachmentTooLarge(AttachmentError):
    """Over the per-file or the per-bulletin size limit (``[attachments]`` in node.toml)."""

    reason = "attachment_too_large"


class UnknownMediaType(AttachmentError):
    """The file's content (never its name) is of no media type this node accepts."""

    reason = "unknown_media_type"


class AttachmentCorrupt(AttachmentError):
    """A fetched attachment fails one of the receiver's checks (a chunk that does not
    authenticate, a hash or size that differs from the signed entry): the bytes are kept
    in quarantine with the reason, and the bulletin is never shown as complete."""

    reason = "attachment_corrupt"


class KeyStoreError(BloError):
    reason = "keystore"


class ConfigError(BloError):
    reason = "config"


class BusError(BloError):
    reason = "bus"


class NotConnected(BusError):
    reason = "not_connected"


class PublishUnconfirmed(BusError):
    reason = "publish_unconfirmed"


class NoStream(BusError):
    """No JetStream stream answered a publish to the subject (NATS "no responders"). While a
    hub restarts, or its JetStream is not reachable from a leaf, this is what every publish
    gets; it means missing streams only if it lasts while the hub is up. The outbox keeps
    what was posted and retries."""

    reason = "no_stream"

    def __init__(self, subject: str) -> None:
        super().__init__(
            f"JetStream did not answer for {subject}: the hub is unreachable or restarting (the outbox keeps what "
            "was posted and retries); if this lasts while the hub is up, no stream stores the subject: create the "
            "streams (blo deploy streams)"
        )
        self.subject = subject


class PermissionDenied(BusError):
    reason = "permission_denied"


class StoreError(BloError):
    """The node database cannot be used: not a SQLite file, written by a newer version, or I/O failed."""

    reason = "store"


class NotFound(BloError):
    """The thing asked for (a bulletin id, a username, a token name) is not stored here."""

    reason = "not_found"
