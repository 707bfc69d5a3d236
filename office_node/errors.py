"""The office node's own refusals: its HTTP API's, its CLI's and its exchange's, as one
branch of the one error tree (``bus/errors.py``: every class here is a ``BloError``)::

    BloError
    ├── ... (bus/errors.py)
    ├── NodeUnavailable            the CLI cannot reach the local node's HTTP API, or it refused the request
    ├── ExchangeError              MISP/STIX exchange: the `exchange` extra is missing, or the MISP server failed or refused
    └── AuthError                  an officer or API client was refused (HTTP 401/403/429)
        ├── NotAuthenticated       no credentials, or an unknown, expired or revoked token/session (401)
        ├── BadCredentials         a login failed; never says whether the username exists (401)
        ├── Forbidden              authenticated, but the role or CSRF token does not allow it (403)
        └── RateLimited            too many failed logins for this username from this address (429)

They live here, not in ``bus``, because the bus has no HTTP API, no CLI and no MISP: a
program built on ``bus`` alone never meets them. The HTTP status of every refusal is
chosen in one place, ``http_status`` below.
"""

from __future__ import annotations

from bus import errors
from bus.errors import BloError


class NodeUnavailable(BloError):
    """``blo post`` / ``blo subscribe`` could not get an answer from the node's HTTP API,
    or the node refused (``status`` and ``code`` say how)."""

    reason = "node_unavailable"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ExchangeError(BloError):
    """MISP or STIX exchange could not be done (``office_node/exchange/``). ``reason``:
    ``exchange_missing`` (the optional ``exchange`` extra is not installed: the message
    names the pip command), ``misp_unreachable`` (no answer from the MISP server: URL,
    TLS or network), ``misp_refused`` (the MISP server answered with an error: key,
    permissions). A malformed MISP or STIX document is a ``ValidationError`` instead."""

    reason = "exchange"


class AuthError(BloError):
    """A request or login was refused. Messages never reveal whether a username exists."""

    reason = "auth"


class NotAuthenticated(AuthError):
    reason = "unauthenticated"


class BadCredentials(AuthError):
    reason = "bad_credentials"


class Forbidden(AuthError):
    reason = "forbidden"


class RateLimited(AuthError):
    reason = "rate_limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def http_status(exc: BloError) -> int:
    """The HTTP status the API answers a refusal with: who must act, the caller (4xx) or
    the operator (5xx)."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


#: First match wins, so a subclass comes before its base.
_STATUS: tuple[tuple[type[BloError], int], ...] = (
    (Forbidden, 403),
    (RateLimited, 429),
    (AuthError, 401),
    (errors.ValidationError, 400),
    (errors.NotFound, 404),
    # understood, but the directory, the keys or the bulletin's own handling rules say no
    # (e.g. a revoked recipient)
    (errors.EnvelopeError, 422),
    (errors.DirectoryError, 422),
    (errors.FeedError, 422),
    (errors.HandlingRefused, 422),
    (errors.ForwardRefused, 422),
    (errors.AttachmentTooLarge, 413),
    (errors.UnknownMediaType, 415),
    (errors.AttachmentError, 422),  # understood, but the file cannot be used
    (ExchangeError, 503),  # the operator must act (install the extra, fix the MISP server)
    (errors.BusError, 503),
)
