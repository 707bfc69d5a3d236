"""Forwarding with provenance: a centre re-sends an office's bulletin to a feed, and every
member can check that the office really wrote it. Pure; no I/O.

The one rule: **a forward shows what the original office signed, and carries the
office's exact signed bytes so each member can check that for itself; a redacted
forward says so, and never claims a checked signature.**

A forward is an ordinary new bulletin from the centre (new id, ``from`` = the centre,
sealed and signed by the centre's ``Sealer`` as usual), whose body carries the field
``forwarded`` (``bus.bulletin.Forwarded``; bytes in ``schemas/ENVELOPE.md`` 8.1):

* **whole**: the original's sender and its exact header, body and signature bytes. A
  member checks the signature with ``verify_detached`` against the office's key from
  its own directory, judged at the original sent-at, and checks that the forward's
  visible content is the original's. What a forward may change: ``tags``, ``created``
  (the forward's own), precedence (kept or raised), TLP (kept or tightened) and
  releasability (kept or narrowed). Everything else (kind, grading, title, body,
  expires, in_reply_to, entities, attachments) is the original's exactly.
* **redacted**: the centre removed or blanked fields. The original body cannot travel
  (it holds what was redacted), nor can its signature: the body encoding is
  deterministic and the rest of it is visible, so the signature would let any member
  confirm a guess of the redacted value (is the blanked name the one on my list?).
  A redacted forward carries the sender, the header (original id, sent-at, key id,
  precedence) and the list of redacted field paths; ``verify_forward`` reports
  ``verified=False, redacted=True``.

The original's own tags, releasability and TLP travel inside a whole forward's original
bytes. To keep one of them from the feed, redact it.

**Whose words a reader is shown** (``attribution``; ``schemas/ENVELOPE.md`` 8.1): an
office is named as the author of a forward's text only when its signature over that text
was checked here. A redacted forward is compared with nothing (its original body does not
travel), so its title, body and entities are whatever the centre wrote: it is shown as the
centre's own words citing the original id, never as the office's. A whole forward whose
original key is unknown here is the centre's word too until the signature is checked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bus import errors
from bus.bulletin import ENTITY_FIELDS, Bulletin, Forwarded
from bus.envelope import Header, KeyResolver, decode_body, parse_header, verify_detached
from bus.handling import check_forward_changes, precedence_rank
from bus.ids import bulletin_id_from_bytes
from bus.keys import PeerKeys
from bus.timing import MAX_FUTURE_SKEW_MS, iso

#: What a blanked text field holds in a redacted forward.
REDACTED_TEXT = "[redacted]"

#: ``ForwardRefused`` reasons.
MISMATCH = "forward_mismatch"
BAD_SIGNATURE = "forward_bad_signature"
KEY_INVALID = "forward_key_invalid"

#: What a reader is shown of a forward (``attribution``): the original office's words,
#: signature checked; the centre's words attributed to the office, signature not checked
#: (yet); the centre's own words citing the original (redacted); the centre's words, the
#: original it carries refused when checked again.
ORIGINAL_CHECKED = "original_checked"
ORIGINAL_NOT_CHECKED = "original_not_checked"
REDACTED = "redacted"
ORIGINAL_REFUSED = "original_refused"
ATTRIBUTION_STATES = (ORIGINAL_CHECKED, ORIGINAL_NOT_CHECKED, REDACTED, ORIGINAL_REFUSED)

#: The fields a forward shows exactly as the original has them.
SAME_FIELDS = ("kind", "grading", "title", "body", "expires", "in_reply_to", "entities", "attachments")

_PATH = re.compile(r"^([a-z][a-z0-9_]{0,31})(?:\[(0|[1-9][0-9]{0,3})\])?(?:\.([a-z][a-z0-9_]{0,31}))?\Z")
_BLANKED = ("title", "body")  # required text: replaced by REDACTED_TEXT
_REMOVED = ("expires", "in_reply_to", "entities", "attachments", "tags")  # optional: left out
_LISTS = ("entities", "attachments", "tags")  # whose items may be removed one by one


class SignedOriginal(Protocol):
    """A bulletin with the exact bytes it arrived in: ``bus.envelope.Opened`` is one."""

    @property
    def bulletin(self) -> Bulletin: ...

    @property
    def header(self) -> bytes: ...

    @property
    def body(self) -> bytes: ...

    @property
    def signature(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a forward came from, and what a member could check of it.

    ``verified``: the original office's signature was checked and holds. ``reason`` says
    why not when it is False: ``redacted`` (cannot be checked) or ``unknown_sender``
    (this node's directory has no key for the original office yet: check again later).
    ``original`` is the original bulletin as its office wrote it (whole forwards only).
    """

    forwarded_by: str
    original_id: str
    original_sender: str
    original_sign_kid: bytes
    original_sent_at: int
    original_precedence: str
    verified: bool
    redacted: bool
    redacted_fields: tuple[str, ...]
    reason: str | None
    problem: str | None
    original: Bulletin | None

    @property
    def state(self) -> str:
        """``ORIGINAL_CHECKED``, ``REDACTED`` or ``ORIGINAL_NOT_CHECKED`` (a provenance is only
        made for a forward whose original stands; ``ORIGINAL_REFUSED`` has none)."""
        return ORIGINAL_CHECKED if self.verified else REDACTED if self.redacted else ORIGINAL_NOT_CHECKED

    def attribution(self) -> Attribution:
        return attribution(
            self.state,
            forwarded_by=self.forwarded_by,
            original_sender=self.original_sender,
            original_id=self.original_id,
        )

    def describe(self) -> str:
        """The one line a reader is shown with the forward (``Attribution.line``)."""
        return self.attribution().line


@dataclass(frozen=True, slots=True)
class Attribution:
    """Whose words a forward is shown as, and the line that says so.

    ``words_of`` is the office or centre a reader is told wrote the forward's title, body
    and entities: the original office only in ``ORIGINAL_CHECKED``, else the forwarding
    centre. ``original_sender`` is then only what the centre attributes or cites.
    """

    state: str
    words_of: str
    forwarded_by: str
    original_sender: str
    original_id: str | None
    line: str

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "words_of": self.words_of,
            "forwarded_by": self.forwarded_by,
            "original_sender": self.original_sender,
            "original_id": self.original_id,
            "text": self.line,
        }


def attribution(
    state: str, *, forwarded_by: str, original_sender: str, original_id: str | None, problem: str | None = None
) -> Attribution:
    """The display rule of ``schemas/ENVELOPE.md`` 8.1 for a forward in ``state`` (one of
    ``ATTRIBUTION_STATES``); ``problem`` says why the original was refused
    (``ORIGINAL_REFUSED``). Pure: the node applies it to what it stored."""
    centre, office = forwarded_by, original_sender
    cited = f"bulletin {original_id}" if original_id else "a bulletin"  # no id: nothing was parsed
    if state == ORIGINAL_CHECKED:
        return Attribution(
            state, office, centre, office, original_id,
            f"{office}'s bulletin {original_id}, forwarded by {centre}; {office}'s signature checked",
        )  # fmt: skip
    if state == ORIGINAL_NOT_CHECKED:
        line = (
            f"{centre}'s forward of {cited}, which {centre} attributes to {office}: {office}'s signature is not "
            f"checked yet (its key is not in this node's directory), so these are {centre}'s words until it is"
        )
    elif state == REDACTED:
        line = (
            f"{centre}'s own words: a redacted forward citing {cited}, which {centre} attributes to {office}. "
            f"Not {office}'s words: a redacted forward carries no signature of {office}'s to check them against"
        )
    elif state == ORIGINAL_REFUSED:
        cited = f", bulletin {original_id}," if original_id else ""
        line = (
            f"{centre}'s words: the original it attributes to {office}{cited} does not stand ({problem or 'refused'})"
        )
    else:
        raise ValueError(f"unknown attribution state {state!r}")
    return Attribution(state, centre, centre, office, original_id, line)


# -- the centre's side -----------------------------------------------------------------


def forward(
    original: SignedOriginal,
    *,
    centre: str,
    new_id: str,
    created: int,
    redact: Sequence[str] = (),
    tags: Sequence[str] | None = None,
    releasable_to: Sequence[str] | None = None,
    tlp: str | None = None,
    precedence: str | None = None,
) -> Bulletin:
    """The forward of ``original`` by ``centre``, ready for the centre's ``Sealer``.

    ``tags``, ``releasable_to``, ``tlp`` and ``precedence`` default to the original's;
    ``redact`` lists field paths of the original to remove or blank (indexes are the
    original's): ``title`` and ``body`` become ``[redacted]``; ``expires``,
    ``in_reply_to``, ``entities``, ``attachments``, ``tags`` are left out;
    ``entities[i]``, ``attachments[i]``, ``tags[i]`` remove one item; ``entities[i].f``
    leaves out an optional field or blanks a required text one (``name``, ``number``,
    ``plate``). ``ValidationError`` for anything else; ``HandlingRefused`` if the
    forward would lower precedence, loosen TLP or widen releasability. Which feed it may
    go to is ``bus.handling.check_forward``'s question.
    """
    o = original.bulletin
    if o.forwarded is not None:
        raise errors.ValidationError(
            "forwarded",
            f"bulletin {o.id} is itself {o.sender}'s forward of {o.forwarded.sender}'s: forward that original",
        )
    try:
        h = parse_header(original.header)
        same = decode_body(h, original.body) == o
    except errors.EnvelopeError as exc:
        raise errors.ValidationError("forwarded", f"the original's bytes do not parse: {exc.message}") from exc
    if not same:
        raise errors.ValidationError("forwarded", f"the header and body bytes given are not those of bulletin {o.id}")
    if new_id == o.id:
        raise errors.ValidationError("id", "a forward is a new bulletin: give it a new id, not the original's")
    if o.expires is not None and created >= o.expires:
        raise errors.ValidationError(
            "created", f"the original expired at {o.expires} ms; an expired bulletin is not forwarded"
        )
    data = o.to_dict()
    data.update({"id": new_id, "from": centre, "created": created})
    if precedence is not None:
        data["precedence"] = precedence
    if tlp is not None:
        data["tlp"] = tlp
    if releasable_to is not None:
        data["releasable_to"] = list(releasable_to)
    paths = _redact(data, redact)
    if tags is not None:
        data["tags"] = list(tags)
    if paths:
        carried = Forwarded(o.sender, original.header, redacted=paths)
    else:
        carried = Forwarded(o.sender, original.header, original.body, original.signature)
    data["forwarded"] = carried.json_form()
    result = Bulletin.from_dict(data)
    check_forward_changes(o, result)
    return result


def _redact(data: dict[str, Any], redact: Sequence[str]) -> tuple[str, ...]:
    """Apply ``redact`` to the dict form ``data`` in place; the paths, checked."""
    paths = _redact_paths(redact)
    drop: dict[str, set[int]] = {}  # list items removed after every path is read (indexes stay stable)
    for path in paths:
        _redact_one(data, path, drop)
    for name, indexes in drop.items():
        data[name] = [item for i, item in enumerate(data[name]) if i not in indexes]
    return paths


def _redact_paths(redact: Sequence[str]) -> tuple[str, ...]:
    """The field paths of ``redact``: a list, none twice, none inside another."""
    if isinstance(redact, str):
        raise errors.ValidationError("redact", "must be a list of field paths such as ['entities[0].name']")
    paths = tuple(redact)
    if len(set(paths)) != len(paths):
        raise errors.ValidationError("redact", "names a field twice")
    for p in paths:
        for q in paths:
            if isinstance(p, str) and isinstance(q, str) and (p.startswith(q + "[") or p.startswith(q + ".")):
                raise errors.ValidationError("redact", f"{p} is inside {q}, which is redacted already")
    for path in paths:
        if not isinstance(path, str) or _PATH.match(path) is None:
            raise errors.ValidationError("redact", f"{path!r} is not a field path such as entities[0].name"[:200])
    return paths


def _redact_one(data: dict[str, Any], path: str, drop: dict[str, set[int]]) -> None:
    """Blank or remove what ``path`` names; a list item is marked in ``drop`` instead."""
    m = _PATH.match(path)
    assert m is not None  # _redact_paths checked it
    name, index, sub = m.group(1), m.group(2), m.group(3)
    if name not in data or name in ("id", "from", "precedence", "forwarded"):
        raise errors.ValidationError("redact", f"{path}: the original has no {name} to redact")
    if index is None and sub is None and name in _BLANKED:
        data[name] = REDACTED_TEXT
    elif index is None and sub is None and name in _REMOVED:
        del data[name]
    elif index is None:
        raise errors.ValidationError(
            "redact",
            f"{path} cannot be redacted: kind, tlp, releasable_to, grading and created are needed by every reader "
            "(narrow tlp and releasable_to with the forward's own settings instead)",
        )
    elif name not in _LISTS:
        raise errors.ValidationError("redact", f"{path}: {name} is not a list")
    elif int(index) >= len(data[name]):
        raise errors.ValidationError("redact", f"{path}: the original has only {len(data[name])} {name}")
    elif sub is None:
        drop.setdefault(name, set()).add(int(index))
    elif name == "entities":
        _redact_entity_field(data[name][int(index)], sub, path, f"{name}[{index}]")
    else:
        raise errors.ValidationError("redact", f"{path}: redact the whole item {name}[{index}] instead")


def _redact_entity_field(entity: dict[str, Any], sub: str, path: str, item: str) -> None:
    kind = entity["type"]
    if sub == "type":
        raise errors.ValidationError("redact", f"{path}: an entity's type cannot be redacted; redact {item} instead")
    if sub not in entity:
        raise errors.ValidationError("redact", f"{path}: the original {item} has no {sub} to redact")
    spec = ENTITY_FIELDS[kind].get(sub)
    if spec is None or not spec[1]:  # optional (note is optional for every type)
        del entity[sub]
        return
    try:
        spec[0](REDACTED_TEXT)
    except errors.ValidationError:
        raise errors.ValidationError(
            "redact", f"{path}: the {sub} of a {kind} cannot be blanked; redact the whole entity {item} instead"
        ) from None
    entity[sub] = REDACTED_TEXT


# -- the member's side -----------------------------------------------------------------


def _mismatch(message: str) -> errors.ForwardRefused:
    return errors.ForwardRefused(message, MISMATCH)


def verify_forward(bulletin: Bulletin, resolver: KeyResolver) -> Provenance:
    """Check a forward (already opened and verified as the centre's) against its original.

    Every refusal is ``ForwardRefused``; checks in this order (``schemas/ENVELOPE.md``
    8.1): the header parses and names the same sender and another id, the forward's
    precedence is not lower (``forward_mismatch``); if redacted, stop: ``verified=False``.
    Else, when the directory knows the original key: valid at the original sent-at
    (``forward_key_invalid``) and the signature holds (``forward_bad_signature``); the
    body decodes, is not itself a forward, and the forward shows the same content and no
    looser handling (``forward_mismatch``). An unknown key is reported
    (``reason="unknown_sender"``), not raised: the forward is the centre's, and the
    original can be checked once the directory has the key.
    """
    f = bulletin.forwarded
    if f is None:
        raise errors.ValidationError("forwarded", f"bulletin {bulletin.id} is not a forward")
    what = f"{bulletin.sender}'s forward {bulletin.id}"
    h = _check_header(bulletin, f, what)
    if f.redacted:
        fields = ", ".join(f.redacted)
        return _provenance(
            bulletin, f, h, verified=False, reason="redacted", original=None,
            problem=f"{bulletin.sender} redacted {fields}: the original signature cannot be checked",
        )  # fmt: skip
    if f.body is None or f.signature is None:  # the bulletin validator never lets this through
        raise _mismatch(f"{what} is neither redacted nor carries the original body and signature")
    keys = resolver.sender_keys(h.sender, h.sign_kid)
    if keys is not None:
        _check_signature(keys, h, f.header, f.body, f.signature, what)
    original = _check_content(bulletin, h, f.body, what)
    if keys is None:
        return _provenance(
            bulletin, f, h, verified=False, reason="unknown_sender", original=original,
            problem=f"{h.sender}'s signing key {h.sign_kid.hex()} is not in this node's directory yet: the original "
            "signature is not checked; check again when the directory updates",
        )  # fmt: skip
    return _provenance(bulletin, f, h, verified=True, reason=None, problem=None, original=original)


def _check_header(bulletin: Bulletin, f: Forwarded, what: str) -> Header:
    """The original's header parses, names the same sender and another id, was signed no
    later than the forward was made, and has no higher precedence than the forward."""
    try:
        h = parse_header(f.header)
    except errors.MalformedEnvelope as exc:
        raise _mismatch(f"{what} carries an original header that does not parse: {exc.message}") from exc
    original_id = bulletin_id_from_bytes(h.bulletin_id)
    if h.sender != f.sender:
        raise _mismatch(f"{what} names {f.sender} as the original's sender, but its header says {h.sender}")
    if original_id == bulletin.id:
        raise _mismatch(f"{what} has the id of the original it carries; a forward is a new bulletin")
    if h.sent_at > bulletin.created + MAX_FUTURE_SKEW_MS:
        raise _mismatch(
            f"{what} was made at {iso(bulletin.created)}, before its original was signed ({iso(h.sent_at)}): "
            "a centre forwards what it received, so the original's time is backdated or the forward's forged"
        )
    if precedence_rank(bulletin.precedence) > precedence_rank(h.precedence):
        raise _mismatch(
            f"{what} is {bulletin.precedence}, but the original {original_id} was {h.precedence}: "
            "a forward never lowers precedence"
        )
    return h


def _check_signature(keys: PeerKeys, h: Header, header: bytes, body: bytes, signature: bytes, what: str) -> None:
    """The original office's key was valid at the original's sent-at, and its signature holds."""
    problem = keys.problem_at(h.sent_at)
    if problem is not None:
        raise errors.ForwardRefused(f"the original in {what} was signed at {h.sent_at} ms, but {problem}", KEY_INVALID)
    try:
        verify_detached(keys.sign_public, header, body, signature)
    except errors.BadSignature as exc:
        raise errors.ForwardRefused(
            f"the original signature in {what} does not verify for {h.sender}: the forward is forged or altered",
            BAD_SIGNATURE,
        ) from exc


def _check_content(bulletin: Bulletin, h: Header, body: bytes, what: str) -> Bulletin:
    """The original body decodes, is not itself a forward, and the forward shows the same
    content with no looser handling. The original, decoded."""
    try:
        original = decode_body(h, body)
    except errors.InvalidContent as exc:
        raise _mismatch(f"{what} carries an original that is not a valid bulletin: {exc.message}") from exc
    if original.forwarded is not None:
        raise _mismatch(f"{what} carries a forward, not an original; forwards are one level deep")
    for name in SAME_FIELDS:
        if getattr(original, name) != getattr(bulletin, name):
            raise _mismatch(
                f"{what} shows a different {name} from {h.sender}'s original {bulletin_id_from_bytes(h.bulletin_id)}: "
                "refused"
            )
    try:
        check_forward_changes(original, bulletin)
    except errors.HandlingRefused as exc:
        raise _mismatch(f"{what} breaks a handling rule ({exc.reason}): {exc.message}") from exc
    return original


def _provenance(
    bulletin: Bulletin,
    f: Forwarded,
    h: Header,
    *,
    verified: bool,
    reason: str | None,
    problem: str | None,
    original: Bulletin | None,
) -> Provenance:
    return Provenance(
        forwarded_by=bulletin.sender,
        original_id=bulletin_id_from_bytes(h.bulletin_id),
        original_sender=h.sender,
        original_sign_kid=h.sign_kid,
        original_sent_at=h.sent_at,
        original_precedence=h.precedence,
        verified=verified,
        redacted=bool(f.redacted),
        redacted_fields=f.redacted,
        reason=reason,
        problem=problem,
        original=original,
    )
