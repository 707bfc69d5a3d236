"""Times as people read them: every time the CLI, logs and notices print is ISO 8601 in
UTC with its zone (``2026-12-05T10:15:25Z``), never milliseconds since 1970."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(ms: int | None, missing: str = "-") -> str:
    """``ms`` (milliseconds since 1970) as ``YYYY-MM-DDTHH:MM:SSZ``; ``missing`` for None."""
    if ms is None:
        return missing
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
