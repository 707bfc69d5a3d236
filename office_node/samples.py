"""The shipped demo data: real border crossings and fictional sample bulletins."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from bus import Bulletin, Rng, country_of, new_bulletin_id

DATA_DIR = Path(__file__).resolve().parent / "data"


@cache
def crossings() -> dict[str, Any]:
    return json.loads((DATA_DIR / "crossings.json").read_text(encoding="utf-8"))


@cache
def sample_bulletins() -> list[dict[str, Any]]:
    return json.loads((DATA_DIR / "sample-bulletins.json").read_text(encoding="utf-8"))["bulletins"]


def sample_to_bulletin(sample: dict[str, Any], *, now_ms: int, rng: Rng, releasable_to: list[str] | None = None) -> Bulletin:
    """A sample record as a valid bulletin: the samples grade as separate source and
    information fields; the schema's Admiralty grading is the two together (e.g. ``B2``)."""
    return Bulletin.from_dict(
        {
            "id": new_bulletin_id(now_ms, rng),
            "from": sample["from"],
            "precedence": sample["precedence"],
            "kind": sample["kind"],
            "tlp": sample["tlp"],
            "releasable_to": releasable_to or [country_of(sample["from"])],
            "grading": f"{sample['source']}{sample['information']}",
            "title": sample["title"],
            "body": sample["body"],
            "created": now_ms,
            "entities": sample.get("entities", []),
        }
    )
