"""The one translation of nats-py's exceptions into ``bus.errors``.

Every call into nats-py that can fail runs inside ``nats_errors(what, ...)`` (or hands
what it caught to ``bus_error``), so a failure means the same thing wherever it happens:

* no answer in time: ``PermissionDenied`` when the server reported a permission
  violation on one of the subjects the call ``asked`` (nats-py reports it only to the
  connection's error callback; the request itself just times out), else ``NotConnected``
  (or the caller's ``timeout`` class, e.g. ``PublishUnconfirmed`` for a put);
* the link down, reconnecting or closed: ``NotConnected``;
* no stream listens on the subject: ``NoStream``;
* JetStream refused the request: ``BusError`` with its description, or the caller's own
  message for a JetStream error code it knows (``codes``);
* any other nats-py error: ``BusError``. What is not nats-py's passes through untouched.

Outside the NATS boundary (``client.py`` and its two ``nats_*`` helpers) nothing names a
nats-py exception: the few a caller must tell apart to take another branch (something
not found, a request JetStream calls bad, an unreadable object info) are re-exported here
under this project's names.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import nats.errors
import nats.js.errors

from bus.errors import BloError, BusError, NoStream, NotConnected, PermissionDenied

#: Any nats-py failure (a suppress or a last-resort except names this, never nats-py).
NatsError = nats.errors.Error
#: A stream, consumer, bucket, key or object is not there.
NotFound = nats.js.errors.NotFoundError
#: JetStream calls the request bad: e.g. adding a stream that exists with other limits.
BadRequest = nats.js.errors.BadRequestError
#: An Object Store object's info is not readable JSON.
BadObjectMeta = nats.js.errors.BadObjectMetaError

#: nats-py's exceptions that mean "the link is down right now".
LINK_DOWN: tuple[type[Exception], ...] = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.errors.NoServersError,
)
_NO_STREAM = (nats.js.errors.NoStreamResponseError, nats.errors.NoRespondersError)

#: ``violation_for(subject, since)`` of a ``BusClient``: the server's refusal text.
Violations = Callable[[str, float], "str | None"]


def bus_error(
    exc: BaseException,
    what: str,
    *,
    since: float = 0.0,
    denied: Violations | None = None,
    asked: Sequence[str] = (),
    timeout: Callable[[str], BusError] = NotConnected,
    codes: Mapping[int, str] | None = None,
    no_stream: str = "",
) -> BusError | None:
    """``exc`` as this project's error, or None when it is not nats-py's. ``what`` says what
    was being done, as "create stream BLO_OFFICE"; ``no_stream`` is the subject published
    to, for ``NoStream``."""
    if not isinstance(exc, nats.errors.Error):
        return None
    if isinstance(exc, nats.errors.TimeoutError):
        if denied is not None:
            refused = next((r for r in (denied(subject, since) for subject in asked) if r), None)
            if refused:
                return PermissionDenied(f"this NATS user may not {what} ({refused})")
        return timeout(f"no answer from JetStream to {what}")
    if isinstance(exc, LINK_DOWN):
        return NotConnected(f"the link dropped while trying to {what}")
    if isinstance(exc, _NO_STREAM):
        return NoStream(no_stream or what)
    if isinstance(exc, nats.js.errors.APIError):
        if codes and exc.err_code in codes:
            return BusError(codes[exc.err_code])
        return BusError(f"JetStream refused to {what}: {exc.description or exc}")
    return BusError(f"cannot {what}: {exc or type(exc).__name__}")


@contextlib.contextmanager
def nats_errors(
    what: str,
    *,
    denied: Violations | None = None,
    asked: Sequence[str] = (),
    timeout: Callable[[str], BusError] = NotConnected,
    codes: Mapping[int, str] | None = None,
    no_stream: str = "",
) -> Iterator[None]:
    """Run the block; a nats-py exception leaving it is raised as ``bus_error`` says (this
    project's own errors and everything else pass through)."""
    since = time.monotonic()
    try:
        yield
    except BloError:
        raise
    except nats.errors.Error as exc:
        error = bus_error(
            exc, what, since=since, denied=denied, asked=asked, timeout=timeout, codes=codes, no_stream=no_stream
        )
        assert error is not None
        raise error from exc
