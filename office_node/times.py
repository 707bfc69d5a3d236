"""Times as people read them: every time the CLI, logs and notices print is ISO 8601 in
UTC with its zone (``2026-12-05T10:15:25Z``), never milliseconds since 1970."""

from __future__ import annotations

import re
from datetime import UTC, datetime


def iso_utc(ms: int | None, missing: str = "-") -> str:
    """``ms`` (milliseconds since 1970) as ``YYYY-MM-DDTHH:MM:SSZ``; ``missing`` for None."""
    if ms is None:
        return missing
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Library messages (bus.keys) state times as "<ms since 1970> ms", exact for logs and
# tests; what a person reads gets the date instead.
_MS_TIME = re.compile(r"\b(\d{12,14}) ms\b")


def readable_times(text: str) -> str:
    """``text`` with every ``<milliseconds since 1970> ms`` written as an ISO date."""
    return _MS_TIME.sub(lambda m: iso_utc(int(m.group(1))), text)
