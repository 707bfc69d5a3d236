"""The vocabulary both exchange formats share: how BLO Bus handling labels are written in
MISP and STIX 2.1, and back. Pure tables and small functions, no third-party import.

``schemas/MAPPING.md`` is the same mapping in prose; the tests hold the two together.
Every table here is a published vocabulary (MISP's ``tlp`` and ``admiralty-scale``
taxonomies, the TLP 2.0 STIX marking definitions of OASIS's cti-stix-common-objects,
STIX 2.1's TLP 1.0 markings) or, where none exists, BLO Bus's own machine-tag namespace
``blo-bus:``, named so that no reader mistakes it for a published taxonomy.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from bus import PRECEDENCES, TLP_LABELS

#: Every id BLO Bus writes into MISP or STIX is a UUIDv5 under this namespace, derived
#: from the bulletin id (and the entity's place in it): exporting a bulletin twice gives
#: the same ids, so a MISP instance or STIX store updates it instead of duplicating it.
NAMESPACE = uuid.UUID("7404d065-c8a6-4a47-b95b-af96956c0efd")

#: BLO Bus's own MISP machine-tag namespace (not a published MISP taxonomy).
BLO_NAMESPACE = "blo-bus"

# -- TLP ---------------------------------------------------------------------------------

#: TLP 2.0 label -> MISP ``tlp`` taxonomy tag, as MISP writes it.
MISP_TLP_TAG = {
    "CLEAR": "tlp:clear",
    "GREEN": "tlp:green",
    "AMBER": "tlp:amber",
    "AMBER+STRICT": "tlp:amber+strict",
    "RED": "tlp:red",
}
#: MISP tag -> TLP 2.0 label. ``tlp:white`` is TLP 1.0's name for CLEAR.
TLP_OF_MISP_TAG = {**{tag: label for label, tag in MISP_TLP_TAG.items()}, "tlp:white": "CLEAR"}

#: TLP 2.0 label -> the marking-definition id FIRST and OASIS fixed for STIX 2.1
#: (cti-stix-common-objects, extension-definition-specifications/tlp-2.0).
STIX_TLP2_MARKING = {
    "CLEAR": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "GREEN": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "AMBER": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    "AMBER+STRICT": "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    "RED": "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
#: The extension every TLP 2.0 marking definition carries, and its ``tlp_2_0`` values.
STIX_TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
STIX_TLP2_CREATED = "2022-10-01T00:00:00.000Z"
#: STIX 2.1's own TLP 1.0 marking ids (STIX 2.1 section 7.2.1.4), read on import.
STIX_TLP1_MARKING = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "CLEAR",  # TLP:WHITE
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "GREEN",
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "AMBER",
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "RED",
}
TLP_OF_STIX_MARKING = {**{mid: label for label, mid in STIX_TLP2_MARKING.items()}, **STIX_TLP1_MARKING}

#: On export, a MISP event's distribution from its TLP label: the farthest MISP may
#: synchronise it. TLP:CLEAR -> all communities (3), GREEN -> this community (1), the
#: rest -> your organisation only (0). The tag carries the label itself.
MISP_DISTRIBUTION_OF_TLP = {"CLEAR": 3, "GREEN": 1, "AMBER": 0, "AMBER+STRICT": 0, "RED": 0}
MISP_DISTRIBUTIONS = {
    0: "your organisation only",
    1: "this community only",
    2: "connected communities",
    3: "all communities",
    4: "a sharing group",
    5: "inherit from the event",
}


def strictest_tlp(labels: Iterable[str]) -> str | None:
    """The most restricted of ``labels`` (TLP 2.0 names), or None if there are none."""
    ranked = [TLP_LABELS.index(label) for label in labels if label in TLP_LABELS]
    return TLP_LABELS[max(ranked)] if ranked else None


# -- Admiralty grading ---------------------------------------------------------------------


def admiralty_tags(grading: str) -> tuple[str, str]:
    """``B2`` -> MISP's two ``admiralty-scale`` tags, as MISP writes them."""
    return (
        f'admiralty-scale:source-reliability="{grading[0].lower()}"',
        f'admiralty-scale:information-credibility="{grading[1]}"',
    )


#: STIX 2.1 Appendix A's Admiralty Credibility scale, as the stix2 library names its
#: values (``stix2.confidence.scales``); 6 ("cannot be judged") has no confidence value.
ADMIRALTY_CREDIBILITY_NAMES = {
    "1": "1 - Confirmed by other sources",
    "2": "2 - Probably True",
    "3": "3 - Possibly True",
    "4": "4 - Doubtful",
    "5": "5 - Improbable",
    "6": "6 - Truth cannot be judged",
}

# -- precedence ---------------------------------------------------------------------------

#: Precedence -> MISP threat level (1 high, 2 medium, 3 low). FLASH and IMMEDIATE are
#: both "high": the ``blo-bus:precedence`` tag keeps which.
MISP_THREAT_LEVEL = {"FLASH": 1, "IMMEDIATE": 1, "PRIORITY": 2, "ROUTINE": 3}
#: MISP threat level -> precedence, when no ``blo-bus:precedence`` tag says better.
#: Never FLASH: FLASH must be acknowledged, and only its originator may ask for that.
PRECEDENCE_OF_THREAT_LEVEL = {1: "IMMEDIATE", 2: "PRIORITY", 3: "ROUTINE", 4: "ROUTINE"}
assert set(MISP_THREAT_LEVEL) == set(PRECEDENCES)

# -- machine tags -----------------------------------------------------------------------

_MACHINE_TAG = re.compile(r'^([^:="\s]+):([^="]+?)(?:="(.*)")?$', re.DOTALL)


def machine_tag(namespace: str, predicate: str, value: str | None = None) -> str:
    """``namespace:predicate="value"``, MISP's triple-tag form."""
    return f"{namespace}:{predicate}" if value is None else f'{namespace}:{predicate}="{value}"'


def parse_machine_tag(name: str) -> tuple[str, str, str | None] | None:
    """``('admiralty-scale', 'source-reliability', 'b')``, or None for a plain tag."""
    m = _MACHINE_TAG.match(name)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def blo_tag(predicate: str, value: str) -> str:
    return machine_tag(BLO_NAMESPACE, predicate, value)


# -- ids and times -------------------------------------------------------------------------


def stable_uuid(*parts: object) -> str:
    """The UUIDv5 of ``parts`` under ``NAMESPACE``, e.g. ``stable_uuid("bulletin", id)``."""
    return str(uuid.uuid5(NAMESPACE, ":".join(str(p) for p in parts)))


def iso_of_ms(ms: int) -> str:
    """``2024-05-01T08:00:00.000Z``: RFC 3339 in UTC with milliseconds, as STIX writes times."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def date_of_ms(ms: int) -> str:
    """``2024-05-01``: the UTC date, as a MISP event's ``date``."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def ms_of_time(value: Any) -> int | None:
    """Milliseconds since the epoch from a MISP timestamp (seconds, as text or a number),
    an ISO 8601 / RFC 3339 time, a ``YYYY-MM-DD`` date or a datetime; None if it is none."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 16):
        seconds = int(value)
        return seconds * 1000 if 0 <= seconds < 1 << 40 else None
    if isinstance(value, str) and 10 <= len(value) <= 40:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return ms_of_time(moment)
    return None


# -- the fields a format has no place for ------------------------------------------------

#: A MISP object's ``comment`` carries the entity fields its template has no relation for,
#: as this prefix and then a JSON object (``blo-bus {"country": "TH"}``).
EXTRA_PREFIX = "blo-bus "


def extra_comment(fields: Mapping[str, Any]) -> str | None:
    return EXTRA_PREFIX + json.dumps(dict(fields), ensure_ascii=False, sort_keys=True) if fields else None


def parse_extra_comment(comment: Any) -> dict[str, Any]:
    """The fields of an ``extra_comment``; {} for any other comment (or a broken one)."""
    if not isinstance(comment, str) or not comment.startswith(EXTRA_PREFIX) or len(comment) > 4000:
        return {}
    try:
        data = json.loads(comment[len(EXTRA_PREFIX) :])
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}
