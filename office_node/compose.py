"""From what an officer sends (the API's JSON, the CLI's options) to a bulletin and its
recipients. Pure: the node passes its office id, the time and the randomness.

The request is the bulletin's own JSON form (``schemas/bulletin.schema.json``) minus the
three fields the node fills in itself (``id``, ``from``, ``created``), plus where it goes::

    {"to": ["LA-SVK", "TH-TCCC"], "feed": "mekong-border" | null, "precedence": ..., ...}

Anything unknown is refused by name, so a typo in a script never silently drops a field.
A reply names no recipients: it goes back to the original's sender (or, for a bulletin
this node sent, to its office recipients) and its ``in_reply_to`` is the original.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bus import BODY_FIELDS, Bulletin, Rng, is_feed_name, is_office_id, new_bulletin_id
from bus.errors import ValidationError

#: Set by the node, never by the caller.
NODE_FIELDS = ("id", "from", "created")
ROUTING_FIELDS = ("to", "feed")
#: Everything a post may carry: the bulletin's fields (minus the node's) and the routing.
#: A forward's provenance (``forwarded``) is made only by the centre's forward operation.
POST_FIELDS = frozenset(("precedence", *BODY_FIELDS, *ROUTING_FIELDS)) - {"created", "forwarded"}
MAX_RECIPIENTS = 64


@dataclass(frozen=True, slots=True)
class Draft:
    """A validated bulletin and where it goes."""

    bulletin: Bulletin
    offices: tuple[str, ...]
    feeds: tuple[str, ...]

    @property
    def recipients(self) -> tuple[str, ...]:
        """Office ids and feed names, as the store records them."""
        return (*self.offices, *self.feeds)


#: How a draft leaves the node (``office_node.sending.Sending.send_draft``): the actor
#: audited, the draft, the audit action; answers ``{"id", "state", "recipients"}``.
SendDraft = Callable[[str, Draft, str], Awaitable[dict[str, Any]]]


def _offices(value: Any, own: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValidationError("to", 'must be a list of office ids, e.g. ["LA-SVK"]')
    if len(value) > MAX_RECIPIENTS:
        raise ValidationError("to", f"lists {len(value)} offices; the limit is {MAX_RECIPIENTS} (use a feed)")
    out: list[str] = []
    for i, office in enumerate(value):
        if isinstance(office, str):
            office = office.strip().upper()  # "la-svk" is LA-SVK: ids are capitals by definition
        if not is_office_id(office):
            raise ValidationError(f"to[{i}]", f"must be an office id such as LA-SVK; got {office!r}"[:200])
        if office == own:
            raise ValidationError(f"to[{i}]", f"is this node ({own}); a bulletin goes to other offices")
        if office in out:
            raise ValidationError(f"to[{i}]", f"{office} is listed twice")
        out.append(office)
    return tuple(out)


def _feeds(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if not is_feed_name(value):
        raise ValidationError("feed", f"must be a feed name such as mekong-border, or null; got {value!r}"[:200])
    return (value,)


def recipients_of(to: Any, feed: Any, *, office: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The office ids and feed names a request names (``to``, ``feed``), checked."""
    offices = _offices(to, office)
    feeds = _feeds(feed)
    if not offices and not feeds:
        raise ValidationError("to", "name at least one office, or a feed")
    return offices, feeds


def draft_from_request(data: Any, *, office: str, now_ms: int, rng: Rng) -> Draft:
    """Validate a post request; ValidationError names the first wrong field."""
    if not isinstance(data, Mapping):
        raise ValidationError("", "send a JSON object with the bulletin's fields and its recipients (to, feed)")
    for key in data:
        if key in NODE_FIELDS:
            raise ValidationError(str(key), "is set by the node; leave it out")
        if key not in POST_FIELDS:
            raise ValidationError(str(key)[:64], f"is not a field of a post; use {', '.join(sorted(POST_FIELDS))}")
    offices, feeds = recipients_of(data.get("to"), data.get("feed"), office=office)
    fields = {k: v for k, v in data.items() if k not in ROUTING_FIELDS}
    # Vocabularies written in capitals are taken in any case from a person ("flash", "la").
    for key in ("precedence", "tlp"):
        if isinstance(fields.get(key), str):
            fields[key] = fields[key].strip().upper()
    if isinstance(fields.get("releasable_to"), list):
        fields["releasable_to"] = [c.strip().upper() if isinstance(c, str) else c for c in fields["releasable_to"]]
    bulletin = Bulletin.from_dict(
        {**fields, "id": new_bulletin_id(now_ms, rng), "from": office, "created": now_ms}
    )
    return Draft(bulletin, offices, feeds)


def reply_request(data: Any, *, original_sender: str, original_id: str, own: str, offices_of_sent: Sequence[str]) -> dict[str, Any]:
    """The post request of a reply: the caller's fields, addressed back to the original."""
    if not isinstance(data, Mapping):
        raise ValidationError("", "send a JSON object with the reply's fields")
    for key in (*ROUTING_FIELDS, "in_reply_to"):
        if key in data:
            raise ValidationError(key, "is filled in from the original bulletin; leave it out of a reply")
    to = [original_sender] if original_sender != own else [o for o in offices_of_sent if is_office_id(o)]
    if not to:
        raise ValidationError("id", "the original went to a feed only; post a new bulletin to the feed instead")
    return {**data, "to": to, "in_reply_to": original_id}
