"""Every error BLO Bus raises on purpose, in one tree.

Callers catch ``BloError`` to handle anything the bus says no to; the subclasses
say *why*, and each carries a short, stable ``reason`` code used as a metrics
label and as the quarantine reason, plus a message a person can act on::

    BloError
    ├── ValidationError            a bulletin, record or request is malformed (names the field)
    ├── EnvelopeError              a sealed bulletin cannot be sealed or opened
    │   ├── TooLarge               over the size limit (seal and open)
    │   ├── MalformedEnvelope      not the v1 wire shape: truncated, wrong types, trailing bytes
    │   ├── UnsupportedVersion     a wire version this build does not speak
    │   ├── NotAddressedToUs       no recipient entry for our key or feed epoch
    │   ├── UnknownSender          the directory has no key for the claimed sender (retryable)
    │   ├── SenderKeyInvalid       the sender's key was revoked or not valid at sent-at
    │   ├── RecipientKeyInvalid    seal refused: a recipient key is revoked or expired
    │   ├── DecryptionFailed       a wrap or the content failed authentication (tampering)
    │   ├── BadSignature           the inner signature does not verify for the claimed sender
    │   └── InvalidContent         decrypted and verified, but the bulletin inside is malformed
    ├── DirectoryError             a directory record is untrusted, forged or inconsistent
    ├── KeyStoreError              a key file is unreadable, or the passphrase is wrong
    ├── ConfigError                a configuration file or value is wrong (names key and file)
    └── BusError                   talking to NATS failed
        ├── NotConnected           no server reachable right now; the outbox keeps the bulletin
        ├── PublishUnconfirmed     no ack in time: the outcome is unknown, retry with the same id
        └── PermissionDenied       the NATS server refused a publish or subscribe

Nothing from msgpack, PyNaCl or nats-py escapes the public API raw: the layer that
calls them translates their exceptions into this tree (``raise ... from exc``).
"""

from __future__ import annotations


class BloError(Exception):
    """Base of every error BLO Bus raises on purpose."""

    reason = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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


class UnknownSender(EnvelopeError):
    reason = "unknown_sender"
    retryable = True


class SenderKeyInvalid(EnvelopeError):
    reason = "sender_key_invalid"


class RecipientKeyInvalid(EnvelopeError):
    reason = "recipient_key_invalid"


class DecryptionFailed(EnvelopeError):
    reason = "decryption_failed"


class BadSignature(EnvelopeError):
    reason = "bad_signature"


class InvalidContent(EnvelopeError):
    """Decrypted and signed by the sender, but the bulletin inside breaks the schema."""

    reason = "invalid_content"


class DirectoryError(BloError):
    reason = "directory"


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


class PermissionDenied(BusError):
    reason = "permission_denied"
