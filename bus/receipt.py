"""Signed receipts: a recipient's statement that it received bulletins, that an officer
read them, or that an officer acknowledged them (a FLASH must be acknowledged by a person).

Pure: bytes in, values out. A receipt travels **signed but not encrypted**: it says
only that office R received bulletins B1..Bn from sender S at time T, which the NATS
servers already know from routing (subjects, consumer acks). Signing stops a forged
"delivered" from silencing a FLASH escalation.

One receipt covers up to ``MAX_RECEIPT_IDS`` bulletins of one sender: a node receiving
a batch of bulletins signs one receipt per sender and precedence for the whole batch,
so the Ed25519 signature, the publish and the sender's verification are paid once per
batch rather than once per bulletin (schemas/SUBJECTS.md, "Receipts").

Wire form (msgpack)::

    receipt = [body: bin, signature: bin(64)]
    body    = msgpack [version=3, kind, bulletin_ids: array(1..128) of bin(16),
                       bulletin_sender, office, sign_kid: bin(8), at_ms]

The signature is Ed25519 over ``RECEIPT_LABEL || body``: the label keeps a receipt
signature from ever verifying as a bulletin or directory signature (and vice versa).
The bulletins' sender is bound too, so a receipt cannot be replayed to another sender.
Version 3 belongs to wire format v2 (its label says v2); earlier versions are refused.
Its time ``at_ms`` is judged against the witness time (when the server stored the
receipt) by the rules of schemas/TRUST.md, so a revoked key cannot silence a FLASH
escalation with a backdated receipt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bus import errors, signed, timing
from bus.bulletin import is_office_id
from bus.envelope import KeyResolver
from bus.ids import BULLETIN_ID_BYTES, KEY_ID_BYTES, bulletin_id_from_bytes, bulletin_id_to_bytes
from bus.keys import Identity

RECEIPT_VERSION = 3
RECEIPT_LABEL = b"blo-bus/v2 receipt\x00"
DELIVERED = "delivered"
READ = "read"
#: A person at the recipient office acknowledged the bulletin (``blo ack``, the page's
#: Acknowledge button): what stops a FLASH escalating. ``delivered`` is only the machine.
ACKNOWLEDGED = "acknowledged"
KINDS = (DELIVERED, READ, ACKNOWLEDGED)
#: Bulletins one receipt may cover: keeps the largest receipt (about 2.4 KB) well under
#: the receipt stream's 4 KiB message limit, headers included.
MAX_RECEIPT_IDS = 128
#: Receipts are small; anything larger is not one.
MAX_RECEIPT_BYTES = 3072
SIGNATURE_BYTES = signed.SIGNATURE_BYTES


@dataclass(frozen=True, slots=True)
class Receipt:
    kind: str  # DELIVERED, READ or ACKNOWLEDGED
    bulletin_ids: tuple[str, ...]  # 1 to MAX_RECEIPT_IDS distinct ids, all sent by bulletin_sender
    bulletin_sender: str  # the office that sent the bulletins (the receipt's addressee)
    office: str  # the recipient office that signs the receipt
    sign_kid: bytes
    at_ms: int


def sign_receipt(
    identity: Identity, kind: str, bulletin_ids: str | Sequence[str], bulletin_sender: str, *, now_ms: int
) -> bytes:
    """The wire bytes of one receipt by ``identity`` for ``bulletin_ids`` (or one id), all
    sent by ``bulletin_sender``."""
    ids = (bulletin_ids,) if isinstance(bulletin_ids, str) else tuple(bulletin_ids)
    if kind not in KINDS:
        raise errors.ValidationError("kind", f"must be one of {', '.join(KINDS)}; got {kind!r}")
    if not 1 <= len(ids) <= MAX_RECEIPT_IDS:
        raise errors.ValidationError("bulletin_ids", f"{len(ids)} ids; a receipt covers 1 to {MAX_RECEIPT_IDS}")
    if len(set(ids)) != len(ids):
        raise errors.ValidationError("bulletin_ids", "names a bulletin twice")
    if not is_office_id(bulletin_sender):
        raise errors.ValidationError("bulletin_sender", f"must be an office id; got {bulletin_sender!r}"[:200])
    if type(now_ms) is not int or not 0 <= now_ms < 1 << 48:
        raise errors.ValidationError("at", f"time {now_ms} ms is out of range")
    raw_ids = [bulletin_id_to_bytes(bid) for bid in ids]
    fields = [RECEIPT_VERSION, kind, raw_ids, bulletin_sender, identity.office_id, identity.signing.kid, now_ms]
    return signed.seal_pair(RECEIPT_LABEL, fields, identity.signing)


def _is_id(value: Any) -> bool:
    return type(value) is bytes and len(value) == BULLETIN_ID_BYTES


def decode_receipt(data: bytes) -> tuple[Receipt, bytes, bytes]:
    """Parse without verifying: ``(receipt, body, signature)``. MalformedEnvelope on bad shape."""
    pair = signed.decode_pair(
        data, what="receipt", limit=MAX_RECEIPT_BYTES, version=RECEIPT_VERSION, arity=7, fail=signed.envelope_fail
    )
    fields, body, signature = pair.fields, pair.body, pair.signature
    _, kind, bids, sender, office, kid, at = fields
    if kind not in KINDS:
        raise errors.MalformedEnvelope(f"the receipt kind must be one of {', '.join(KINDS)}")
    if (
        type(bids) is not list
        or not 1 <= len(bids) <= MAX_RECEIPT_IDS
        or not all(map(_is_id, bids))
        or len(set(bids)) != len(bids)
    ):
        raise errors.MalformedEnvelope(
            f"the receipt's bulletin ids must be 1 to {MAX_RECEIPT_IDS} distinct 16-byte ids"
        )
    if not is_office_id(sender) or not is_office_id(office):
        raise errors.MalformedEnvelope("the receipt's offices must be office ids such as TH-MUK")
    if type(kid) is not bytes or len(kid) != KEY_ID_BYTES:
        raise errors.MalformedEnvelope("the receipt's key id must be 8 bytes")
    if type(at) is not int or not 0 <= at < 1 << 48:
        raise errors.MalformedEnvelope("the receipt time must be whole milliseconds since 1970")
    ids = tuple(bulletin_id_from_bytes(b) for b in bids)
    return Receipt(kind, ids, sender, office, kid, at), body, signature


def open_receipt(data: bytes, resolver: KeyResolver, *, witnessed_at: int) -> Receipt:
    """Verify a receipt stored at ``witnessed_at`` against the signer's directory keys; one
    EnvelopeError if it fails (the checks of SUBJECTS.md, Receipts, in that order)."""
    receipt, body, signature = decode_receipt(data)
    problem = timing.signed_time_problem(receipt.at_ms, witnessed_at, max_age_ms=timing.MAX_AGE_MS)
    if problem is not None:
        cls = errors.FromFuture if problem.kind == "from_future" else errors.TooOld
        raise cls(f"receipt from {receipt.office} refused: {problem.message}")
    keys = resolver.sender_keys(receipt.office, receipt.sign_kid)
    if keys is None:
        raise errors.UnknownSender(
            f"no directory record for {receipt.office} with signing key {receipt.sign_kid.hex()}; "
            "kept for retry when the directory updates"
        )
    key_problem = timing.key_problem(keys, receipt.at_ms, witnessed_at, who=receipt.office)
    if key_problem is not None:
        raise errors.SenderKeyInvalid(f"receipt rejected: {key_problem.message}")
    if not signed.verifies(signature, RECEIPT_LABEL, body, keys.sign_public):
        raise errors.BadSignature(f"the receipt signature does not verify for {receipt.office}: forged or altered")
    return receipt
