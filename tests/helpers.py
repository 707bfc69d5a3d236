"""Builders shared by tests: deterministic identities and bulletins."""

from __future__ import annotations

from typing import Any

from bus.bulletin import Bulletin
from bus.ids import new_bulletin_id
from bus.keys import Identity
from bus.testing import DeterministicRng

NOW = 1_795_000_000_000  # 2026-11-18, a fixed "now" for deterministic tests
#: When a bulletin sealed at NOW was stored by the server (its witness time, schemas/TRUST.md).
STORED = NOW + 1_000


def attachment(name: str = "a.jpg", size: int = 3, media_type: str = "image/jpeg", **fields: Any) -> dict[str, Any]:
    """A well-formed attachment entry (schemas/ATTACHMENTS.md) whose hashes and key are
    placeholders: enough for validation, forwarding and handling tests, not to open."""
    return {
        "name": name, "media_type": media_type, "size": size, "sha256": "a" * 64,
        "key": "b" * 64, "nonce": "c" * 32, "object": "d" * 32, "object_sha256": "e" * 64, **fields,
    }  # fmt: skip


def identity(office_id: str, seed: str | None = None) -> Identity:
    return Identity.generate(office_id, DeterministicRng(seed or f"identity:{office_id}"))


def bulletin(sender: str = "TH-MUK", *, rng_seed: str = "bulletin", now: int = NOW, **fields: Any) -> Bulletin:
    data: dict[str, Any] = {
        "id": new_bulletin_id(now, DeterministicRng(rng_seed)),
        "from": sender,
        "precedence": "IMMEDIATE",
        "kind": "incident",
        "tlp": "AMBER",
        "releasable_to": ["TH", "LA"],
        "grading": "B2",
        "title": "ยึดยาบ้า 200,000 เม็ด ที่ด่านสะพานมิตรภาพ 2",
        "body": "เจ้าหน้าที่ตรวจพบยาบ้าซุกซ่อนในรถบรรทุกสินค้า ผู้ขับขี่ถือหนังสือเดินทางลาว",
        "created": now,
        "entities": [
            {"type": "vehicle", "plate": "70-1234", "country": "TH"},
            {"type": "document", "doc_type": "passport", "number": "P0847211", "country": "LA"},
        ],
    }
    data.update(fields)
    return Bulletin.from_dict(data)
