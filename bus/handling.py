"""Handling rules: where a bulletin may go, and what a forward may change. Pure; no I/O.

The one rule: **a bulletin reaches only the countries its releasability names, only in
the ways its TLP label allows, and a forward never loosens what the originator set.**
``schemas/HANDLING.md`` is the table of rules with the reason for each; this module is
that table as code. Every refusal is a ``HandlingRefused`` whose ``reason`` names the rule
and whose message tells an officer what to change.

Three moments, three functions, each called by the node before it acts:

* ``check_send`` before sealing a post: every office recipient and every member of every
  feed is in a country the bulletin is releasable to; AMBER+STRICT and RED go to named
  offices only, never to a feed;
* ``check_forward`` before sealing a centre's forward to a feed: the same, plus
  ``check_forward_changes`` (precedence kept or raised, TLP kept or tightened,
  releasability kept or narrowed);
* ``check_receive`` after opening, before storing: defence in depth, a node refuses a
  bulletin whose releasability excludes its own country (or a no-feed TLP on a feed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bus.bulletin import PRECEDENCES, TLP_LABELS, Bulletin, country_of
from bus.errors import HandlingRefused

NOT_RELEASABLE = "not_releasable"
TLP_NO_FEED = "tlp_no_feed"
PRECEDENCE_DOWNGRADE = "precedence_downgrade"
TLP_LOOSENED = "tlp_loosened"
RELEASABILITY_WIDENED = "releasability_widened"
#: Every ``reason`` a ``HandlingRefused`` can carry (metrics labels, quarantine reasons).
REASONS = (NOT_RELEASABLE, TLP_NO_FEED, PRECEDENCE_DOWNGRADE, TLP_LOOSENED, RELEASABILITY_WIDENED)

#: TLP 2.0 labels that go to named offices only, never to a feed. RED is "for the eyes and
#: ears of individual recipients only"; AMBER+STRICT is "restricted to the organization
#: only". A feed is a standing list whose members the sender does not choose one by one
#: (and the centre changes), so neither fits it, posted or forwarded.
NO_FEED_TLP = frozenset({"AMBER+STRICT", "RED"})

_TLP_RANK = {label: i for i, label in enumerate(TLP_LABELS)}  # 0 CLEAR ... 4 RED
_PRECEDENCE_RANK = {p: i for i, p in enumerate(PRECEDENCES)}  # 0 FLASH ... 3 ROUTINE


@dataclass(frozen=True, slots=True)
class FeedScope:
    """A feed as the handling rules see it: its name and the countries of its members."""

    name: str
    countries: frozenset[str]

    @classmethod
    def of_members(cls, name: str, members: Iterable[str]) -> FeedScope:
        """From member office ids (the feed-epoch records carry them): ``TH-MUK`` is in TH."""
        return cls(name, frozenset(country_of(m) for m in members))


def tlp_rank(label: str) -> int:
    """0 for CLEAR ... 4 for RED: higher is more restricted."""
    return _TLP_RANK[label]


def precedence_rank(precedence: str) -> int:
    """0 for FLASH ... 3 for ROUTINE: lower is more urgent."""
    return _PRECEDENCE_RANK[precedence]


# -- wording ---------------------------------------------------------------------------


def _and(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _releasable(b: Bulletin) -> str:
    countries = list(b.releasable_to)
    return f"{countries[0]} only" if len(countries) == 1 else _and(countries)


def _whose(b: Bulletin) -> str:
    if b.forwarded is not None:
        return f"{b.sender}'s forward of {b.forwarded.sender}'s bulletin"
    return f"{b.sender}'s bulletin"


def _missing(b: Bulletin, countries: Iterable[str]) -> list[str]:
    allowed = set(b.releasable_to)
    return sorted({c for c in countries if c not in allowed})


# -- the rules -------------------------------------------------------------------------


def check_send(bulletin: Bulletin, *, offices: Sequence[str] = (), feeds: Sequence[FeedScope] = ()) -> None:
    """May ``bulletin`` be sealed to these offices and feeds? ``HandlingRefused`` if not.

    Checked in this order: a no-feed TLP on a feed (``tlp_no_feed``), office recipients
    outside the releasability (``not_releasable``, naming every one), then feeds with
    members outside it (``not_releasable``).
    """
    for feed in feeds:
        _no_feed_tlp(bulletin, feed)
    outside = [o for o in offices if country_of(o) not in bulletin.releasable_to]
    if outside:
        by_country: dict[str, list[str]] = {}
        for office in outside:
            by_country.setdefault(country_of(office), []).append(office)
        where = ", ".join(
            f"{_and(names)} {'is' if len(names) == 1 else 'are'} in {country}" for country, names in by_country.items()
        )
        raise HandlingRefused(
            f"{_whose(bulletin)} is releasable to {_releasable(bulletin)}; {where}: add {_and(by_country)} to "
            "releasable_to or choose other recipients",
            NOT_RELEASABLE,
        )
    for feed in feeds:
        _feed_releasable(bulletin, feed, advice="add them to releasable_to or choose a feed whose members it may reach")


def check_forward_changes(original: Bulletin, forward: Bulletin) -> None:
    """What a forward may change of its original's handling, wherever it goes: precedence
    kept or raised (``precedence_downgrade``), TLP kept or tightened (``tlp_loosened``),
    releasability kept or narrowed (``releasability_widened``), in that order."""
    what = f"{original.sender}'s bulletin {original.id}"
    if precedence_rank(forward.precedence) > precedence_rank(original.precedence):
        keep = "keep FLASH" if original.precedence == "FLASH" else f"keep {original.precedence} or raise it"
        raise HandlingRefused(
            f"{what} is {original.precedence}, and a forward never lowers precedence (FLASH forwards keep FLASH): "
            f"{keep}, not {forward.precedence}",
            PRECEDENCE_DOWNGRADE,
        )
    if tlp_rank(forward.tlp) < tlp_rank(original.tlp):
        stricter = TLP_LABELS[tlp_rank(original.tlp) + 1 :]
        tighten = f" or tighten it to {' or '.join(stricter)}" if stricter else ""
        raise HandlingRefused(
            f"{what} is TLP:{original.tlp}; a forward never loosens that to TLP:{forward.tlp}: keep "
            f"TLP:{original.tlp}{tighten}, or ask {original.sender} to re-issue it",
            TLP_LOOSENED,
        )
    wider = _missing(original, forward.releasable_to)
    if wider:
        raise HandlingRefused(
            f"{what} is releasable to {_releasable(original)}; a forward may narrow that, never widen it: remove "
            f"{_and(wider)} from releasable_to, or ask {original.sender} to re-issue it releasable to {_and(wider)}",
            RELEASABILITY_WIDENED,
        )


def check_forward(original: Bulletin, forward: Bulletin, feed: FeedScope) -> None:
    """May the centre seal ``forward`` (of ``original``) to ``feed``? ``HandlingRefused`` if not.

    Checked in this order: a no-feed TLP on the original or the forward (``tlp_no_feed``),
    ``check_forward_changes``, then the feed's member countries against the forward's
    releasability (``not_releasable``). A bulletin releasable to its own country only
    therefore never goes onto a feed with members across the border.
    """
    _no_feed_tlp(original, feed)
    _no_feed_tlp(forward, feed)
    check_forward_changes(original, forward)
    missing = _missing(forward, feed.countries)
    if not missing:
        return
    beyond = _missing(original, missing)
    if not beyond:
        advice = f"add them to the forward's releasable_to (the original allows {_and(missing)})"
    else:
        advice = (
            f"choose a feed within {_releasable(original)}, or ask {original.sender} to re-issue it releasable to "
            f"{_and(beyond)} (a forward may not widen releasability)"
        )
    _feed_releasable(forward, feed, advice=advice)


def check_receive(bulletin: Bulletin, my_country: str, *, via_feed: str | None = None) -> None:
    """Defence in depth, after opening: refuse what should never have reached this node.

    ``not_releasable`` if this node's country is not in the releasability;
    ``tlp_no_feed`` if it came on feed ``via_feed`` labelled AMBER+STRICT or RED.
    """
    if via_feed is not None and bulletin.tlp in NO_FEED_TLP:
        raise HandlingRefused(
            f"bulletin {bulletin.id} from {bulletin.sender} is TLP:{bulletin.tlp} but came on feed {via_feed}; "
            f"TLP:{bulletin.tlp} never goes to a feed, so it was refused: report it to {bulletin.sender}'s centre",
            TLP_NO_FEED,
        )
    if my_country not in bulletin.releasable_to:
        raise HandlingRefused(
            f"bulletin {bulletin.id} from {bulletin.sender} is releasable to {_releasable(bulletin)}; this node "
            f"is in {my_country}, so it was refused: it should never have been sent here, report it to "
            f"{bulletin.sender}'s centre",
            NOT_RELEASABLE,
        )


def _no_feed_tlp(bulletin: Bulletin, feed: FeedScope) -> None:
    if bulletin.tlp in NO_FEED_TLP:
        meaning = "individual recipients only" if bulletin.tlp == "RED" else "the recipient's own organisation only"
        raise HandlingRefused(
            f"{_whose(bulletin)} is TLP:{bulletin.tlp} ({meaning}), which goes to named offices, never to a feed "
            f"({feed.name}): send it to the offices that need it, or ask its originator to relabel it",
            TLP_NO_FEED,
        )


def _feed_releasable(bulletin: Bulletin, feed: FeedScope, *, advice: str) -> None:
    missing = _missing(bulletin, feed.countries)
    if missing:
        raise HandlingRefused(
            f"{_whose(bulletin)} is releasable to {_releasable(bulletin)}; feed {feed.name} has members in "
            f"{_and(missing)}: {advice}",
            NOT_RELEASABLE,
        )
