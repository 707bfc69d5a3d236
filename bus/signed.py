"""Signed items: the one codec for everything a node signs besides a bulletin. Pure; no I/O.

Two outer shapes travel, each written in its own spec and decoded here once:

* a **pair** ``[body, signature]``, the body a msgpack array that starts with its
  version: receipts (schemas/SUBJECTS.md, Receipts) and heartbeats (HEARTBEAT.md).
  The signature is over ``label || body``.
* an **item** ``[version, kind, payload, signature]``: directory records, revocations and
  inbox keys (DIRECTORY.md 3) and feed epoch records and grants (FEEDS.md 3). The
  signature is over ``label || payload``, the label chosen by the kind.

Forwards carry a bulletin's own signature, checked as a bulletin's is
(``bus.envelope.verify_detached``); they are not a shape of this module.

Every decoder here checks, in the order its spec states: type, size limit, msgpack, the
outer shape, the version *before* the arity (a later version may have more elements and
must be told "upgrade", not "malformed"), the signature's length. What a field means is
the caller's: each module turns the fields into its values and says what is wrong with
them in its own words. Each caller names its errors once, as a ``Fail``: a problem
(``MALFORMED``, ``TOO_LARGE``, ``UNSUPPORTED``) and a message become one error of its
tree (``DirectoryError("...", "malformed")``, ``MalformedEnvelope("...")``, ...).

Packing uses ``msgpack.packb`` per call rather than one shared ``Packer``: a ``Packer``
keeps state between calls, and signed items are made in worker threads too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from bus import errors, sodium

SIGNATURE_BYTES = 64

#: What a ``Fail`` is told went wrong.
MALFORMED, TOO_LARGE, UNSUPPORTED = "malformed", "too_large", "unsupported_version"

#: ``fail(problem, message)`` -> the caller's error for it.
Fail = Callable[[str, str], errors.BloError]


class Signer(Protocol):
    """What signs: ``bus.keys.SigningKeyPair`` (an Ed25519 key pair) is one."""

    def sign(self, message: bytes) -> bytes: ...


def packb(value: Any) -> bytes:
    """``value`` as msgpack with bin for bytes and str for text, as every spec writes it."""
    return msgpack.packb(value, use_bin_type=True)


def unpack(data: bytes, what: str, fail: Fail) -> Any:
    """``data`` decoded as msgpack (text as str, map keys of one type), or ``fail``'s
    MALFORMED error naming ``what``."""
    # msgpack raises a wide, partly undocumented set (ValueError kin, TypeError,
    # UnicodeDecodeError, StackError for deep nesting); the call is the whole try-body, so
    # the broad catch cannot hide a bug elsewhere. Trailing bytes raise ExtraData.
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:
        raise fail(MALFORMED, f"the {what} is not valid msgpack ({type(exc).__name__})") from exc


def verifies(signature: bytes, label: bytes, signed: bytes, public: bytes) -> bool:
    """Whether ``signature`` is ``public``'s Ed25519 signature of ``label || signed``."""
    return sodium.verify(signature, label + signed, public)


# -- pairs: [body, signature] ------------------------------------------------------------


def seal_pair(label: bytes, fields: list[Any], signing: Signer) -> bytes:
    """The wire bytes of ``fields`` (version first) as a signed pair."""
    body = packb(fields)
    return packb([body, signing.sign(label + body)])


@dataclass(frozen=True, slots=True)
class OpenedPair:
    """A pair's body fields (the version first), with the exact body and signature bytes."""

    fields: list[Any]
    body: bytes
    signature: bytes


def decode_pair(data: bytes, *, what: str, limit: int, version: int, arity: int, fail: Fail) -> OpenedPair:
    """Parse a signed pair without verifying it: the shape, the version, then the arity."""
    if not isinstance(data, bytes | bytearray):
        raise fail(MALFORMED, f"a {what} must be bytes")
    if len(data) > limit:
        raise fail(TOO_LARGE, f"the {what} is {len(data)} bytes; the limit is {limit}")
    outer = unpack(bytes(data), what, fail)
    if type(outer) is not list or len(outer) != 2 or type(outer[0]) is not bytes or type(outer[1]) is not bytes:
        raise fail(MALFORMED, f"a {what} must be a msgpack array [body, signature] of two bin values")
    body, signature = outer
    if len(signature) != SIGNATURE_BYTES:
        raise fail(MALFORMED, f"the {what} signature must be {SIGNATURE_BYTES} bytes")
    fields = unpack(body, f"{what} body", fail)
    if type(fields) is not list or not fields or type(fields[0]) is not int:
        raise fail(MALFORMED, f"the {what} body must be a msgpack array starting with its version")
    if fields[0] != version:
        advice = "upgrade it" if fields[0] > version else "the signer must upgrade"
        raise fail(UNSUPPORTED, f"{what} version {fields[0]} is not supported (this node speaks {version}); {advice}")
    if len(fields) != arity:
        raise fail(MALFORMED, f"a version {version} {what} body is a msgpack array of {arity} fields")
    return OpenedPair(fields, body, signature)


# -- items: [version, kind, payload, signature] ------------------------------------------


def seal_item(version: int, kind: int, label: bytes, payload: bytes, signing: Signer) -> bytes:
    """The wire bytes of ``payload`` (already packed) as a signed item of ``kind``."""
    return packb([version, kind, payload, signing.sign(label + payload)])


@dataclass(frozen=True, slots=True)
class OpenedItem:
    """An item's kind, its payload's fields, and the exact payload and signature bytes."""

    kind: int
    fields: Any
    payload: bytes
    signature: bytes


def decode_item(
    data: bytes, *, what: str, limit: int, version: int, kinds: Mapping[int, str], fail: Fail
) -> OpenedItem:
    """Parse a signed item without verifying it. ``kinds`` names each known kind (its
    payload is unpacked as that name); the fields' meaning is the caller's to check."""
    if type(data) is not bytes:
        raise fail(MALFORMED, f"a {what} must be bytes")
    if len(data) > limit:
        raise fail(TOO_LARGE, f"the {what} is {len(data)} bytes; the limit is {limit}")
    outer = unpack(data, what, fail)
    if type(outer) is not list or not outer or type(outer[0]) is not int:
        raise fail(MALFORMED, f"a {what} must be a msgpack array [version, kind, payload, signature]")
    if outer[0] != version:
        raise fail(
            UNSUPPORTED,
            f"{what} format {outer[0]} is not supported (this node speaks {version}): upgrade the node that "
            "wrote it, or this one",
        )
    if len(outer) != 4:
        raise fail(MALFORMED, f"a v{version} {what} must be a msgpack array of 4: [version, kind, payload, signature]")
    _, kind, payload, signature = outer
    if type(payload) is not bytes or type(signature) is not bytes or len(signature) != SIGNATURE_BYTES:
        raise fail(MALFORMED, f"the {what}'s payload must be bytes and its signature {SIGNATURE_BYTES} bytes")
    name = kinds.get(kind) if type(kind) is int else None
    if name is None:
        known = ", ".join(f"{k} = {v}" for k, v in kinds.items())
        raise fail(MALFORMED, f"unknown {what} kind {kind!r} ({known})")
    return OpenedItem(kind, unpack(payload, name, fail), payload, signature)


def envelope_fail(problem: str, message: str) -> errors.EnvelopeError:
    """The ``Fail`` of what travels beside bulletins (receipts, heartbeats): the envelope's
    own errors, so a receiver quarantines them as it does a bulletin."""
    cls = {TOO_LARGE: errors.TooLarge, UNSUPPORTED: errors.UnsupportedVersion}.get(problem, errors.MalformedEnvelope)
    return cls(message)
