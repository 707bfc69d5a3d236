"""The handling rules of exchange with MISP and STIX. Pure; no I/O.

The one rule: **nothing leaves BLO Bus in another format that could not leave it as a
bulletin, and nothing comes in looser than its source labelled it.** In detail
(``schemas/MAPPING.md``, "Handling rules on export and import", numbers X1-X7):

Export
  X1  TLP:RED is exported only for its addressees: the export must name who it is for,
      and each must be the bulletin's sender or an office it was sealed to
      (``tlp_red_export``). An export for nobody in particular (a file, a MISP server)
      never carries RED.
  X2  An export for named offices obeys releasability like a send (``not_releasable``,
      ``bus.handling.check_send``).
  X3  The MISP bridge treats its MISP server as a feed whose members are in the
      countries ``[misp] countries`` names: AMBER+STRICT and RED are never pushed
      (``tlp_no_feed``), nor anything not releasable to every one of those countries.

Import (a draft's handling, ``derive``)
  X4  TLP: the strictest label anywhere in the source (event, attribute, object,
      marking); TLP 1.0 WHITE is CLEAR; no label at all is taken as AMBER. A MISP event
      of distribution 0 ("your organisation only") is at least AMBER+STRICT.
  X5  Releasability: the countries a BLO Bus releasability marking names, if the source
      has one; else, for TLP:CLEAR or GREEN shared beyond one community (MISP
      distribution 2 or 3, or any STIX bundle), every country of this network's
      directory; else this centre's own country only.
  X6  A draft from a TLP:RED source is kept for this centre and never sent
      (``tlp_red_import``): the centre was its named recipient; passing it on is
      further disclosure.
  X7  When sending a draft the analyst may tighten its TLP and narrow its
      releasability, never loosen or widen them past what X4-X5 derived
      (``tlp_loosened``, ``releasability_widened``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bus import RELEASABILITY_WIDENED, TLP_LABELS, TLP_LOOSENED, Bulletin, FeedScope, check_send, is_office_id, tlp_rank
from bus.errors import HandlingRefused
from office_node.exchange.mapping import MISP_DISTRIBUTIONS, strictest_tlp
from office_node.exchange.source import Source

TLP_RED_EXPORT = "tlp_red_export"
TLP_RED_IMPORT = "tlp_red_import"
#: The TLP a source without any label is taken to have (X4).
UNLABELLED_TLP = "AMBER"


def addressees(bulletin: Bulletin, recipients: Iterable[str]) -> tuple[str, ...]:
    """Who a bulletin was for: its sender and the offices among its recipients (feeds,
    which RED never goes to, are not addressees)."""
    return tuple(dict.fromkeys([bulletin.sender, *(r for r in recipients if is_office_id(r))]))


def check_export(bulletin: Bulletin, *, recipients: Sequence[str], audience: Sequence[str] = ()) -> None:
    """X1 and X2: may ``bulletin`` be exported for ``audience`` (office ids; empty: for
    nobody in particular)? ``HandlingRefused`` if not."""
    if bulletin.tlp == "RED":
        allowed = addressees(bulletin, recipients)
        outside = [a for a in audience if a not in allowed]
        if not audience or outside:
            if outside:
                why = f"{', '.join(outside)} {'is' if len(outside) == 1 else 'are'} not among them"
            else:
                why = "an export that names nobody (a file, a MISP server) may reach anyone"
            raise HandlingRefused(
                f"bulletin {bulletin.id} is TLP:RED, for its addressees only ({', '.join(allowed)}); {why}, so it is "
                f"refused: export it for one of them (for={allowed[0]}), or ask {bulletin.sender} to relabel it",
                TLP_RED_EXPORT,
            )
    if audience:
        check_send(bulletin, offices=list(audience))


def check_push(bulletin: Bulletin, *, server: str, countries: Sequence[str]) -> None:
    """X3: may the bridge push ``bulletin`` to the MISP server ``server``?"""
    check_send(bulletin, feeds=[FeedScope(f"misp:{server}", frozenset(countries))])


@dataclass(frozen=True, slots=True)
class Derived:
    """A draft's handling as its source allows it (X4-X6), and why, for the analyst."""

    tlp: str
    releasable_to: tuple[str, ...]
    local_only: bool
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "tlp": self.tlp,
            "releasable_to": list(self.releasable_to),
            "local_only": self.local_only,
            "reasons": list(self.reasons),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Derived:
        return cls(data["tlp"], tuple(data["releasable_to"]), bool(data["local_only"]), tuple(data["reasons"]))


def derive(source: Source, *, own_country: str, network_countries: Iterable[str]) -> Derived:
    """X4-X6: the TLP and releasability a draft from ``source`` starts with (and may not
    go beyond)."""
    reasons = []
    tlp = strictest_tlp(source.tlp_labels)
    if tlp is None:
        tlp = UNLABELLED_TLP
        reasons.append(f"the source has no TLP label: taken as TLP:{UNLABELLED_TLP} (X4)")
    else:
        reasons.append(f"TLP:{tlp} is the strictest label in the source (X4)")
    if source.distribution == 0 and tlp_rank(tlp) < tlp_rank("AMBER+STRICT"):
        tlp = "AMBER+STRICT"
        reasons.append("MISP distribution 0 (your organisation only): at least TLP:AMBER+STRICT (X4)")
    if source.releasable_to:
        releasable = tuple(dict.fromkeys(source.releasable_to))
        reasons.append(f"releasable to {', '.join(releasable)}, as the source's releasability marking says (X5)")
    elif tlp in ("CLEAR", "GREEN") and (source.format == "stix" or source.distribution in (2, 3)):
        releasable = tuple(sorted({own_country, *network_countries}))
        shared = "a STIX bundle" if source.format == "stix" else f"MISP distribution {source.distribution} ({MISP_DISTRIBUTIONS[source.distribution]})"
        reasons.append(f"TLP:{tlp} and {shared}: releasable to every country of this network (X5)")
    else:
        releasable = (own_country,)
        if source.distribution is not None and source.distribution in MISP_DISTRIBUTIONS:
            why = f"MISP distribution {source.distribution} ({MISP_DISTRIBUTIONS[source.distribution]})"
        else:
            why = "no releasability marking"
        reasons.append(f"TLP:{tlp} and {why}: releasable to {own_country} only (X5)")
    local_only = tlp == "RED"
    if local_only:
        reasons.append("TLP:RED: kept for this centre, never sent (X6)")
    return Derived(tlp, releasable, local_only, tuple(reasons))


def check_draft_send(derived: Derived, bulletin: Bulletin, *, source: str) -> None:
    """X6 and X7: may a draft from ``source`` go out as ``bulletin``?"""
    if derived.local_only:
        raise HandlingRefused(
            f"this draft comes from {source}, labelled TLP:RED: it is for this centre only and is never sent; "
            "ask the source to relabel it if it must reach the offices",
            TLP_RED_IMPORT,
        )
    if tlp_rank(bulletin.tlp) < tlp_rank(derived.tlp):
        stricter = " or ".join(TLP_LABELS[tlp_rank(derived.tlp) :])
        raise HandlingRefused(
            f"{source} is TLP:{derived.tlp}; a draft of it may not be TLP:{bulletin.tlp}: use {stricter}",
            TLP_LOOSENED,
        )
    wider = sorted(set(bulletin.releasable_to) - set(derived.releasable_to))
    if wider:
        raise HandlingRefused(
            f"{source} is releasable to {', '.join(derived.releasable_to)}; a draft of it may narrow that, never add "
            f"{', '.join(wider)}: remove them from releasable_to, or ask the source",
            RELEASABILITY_WIDENED,
        )


