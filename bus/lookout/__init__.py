"""Lookouts and instant checks: is this passport, person, plate or phone flagged?

- ``bus.lookout.normalise``: match keys for entities (pure).
- ``bus.lookout.index``: the in-memory index of bulletin entities; ``check`` answers a
  border check offline, ``hits_for`` finds the lookouts a new bulletin names.
- ``bus.lookout.watchlist``: a centre's CSV watch list -> lookout bulletins.

Typical use by the node::

    index = LookoutIndex.from_bulletins(store.all_bulletins())   # at startup
    index.add_bulletin(b)                                        # every sent/received bulletin
    hits = index.hits_for(b, now_ms)                             # -> hit notices
    matches = index.check({"type": "document", "number": "P1234567", "country": "LA"}, now_ms)
"""

from bus.lookout.index import (
    ACTIVE_KINDS,
    SUBJECT_TAG_PREFIX,
    WITHDRAW_TAG,
    Hit,
    IndexStats,
    LookoutIndex,
    Match,
    query_keys,
)
from bus.lookout.normalise import (
    IndexKey,
    ascii_digits,
    entity_keys,
    normalise_document_number,
    normalise_name,
    normalise_phone,
    normalise_plate,
    phonetic_name,
)
from bus.lookout.watchlist import (
    COLUMNS,
    RowError,
    WatchlistEntry,
    WatchlistParse,
    entry_bulletin,
    iter_watchlist,
    parse_watchlist,
    subject_tag,
    watchlist_bulletins,
)

__all__ = [
    "ACTIVE_KINDS",
    "COLUMNS",
    "SUBJECT_TAG_PREFIX",
    "WITHDRAW_TAG",
    "Hit",
    "IndexKey",
    "IndexStats",
    "LookoutIndex",
    "Match",
    "RowError",
    "WatchlistEntry",
    "WatchlistParse",
    "ascii_digits",
    "entity_keys",
    "entry_bulletin",
    "iter_watchlist",
    "normalise_document_number",
    "normalise_name",
    "normalise_phone",
    "normalise_plate",
    "parse_watchlist",
    "phonetic_name",
    "query_keys",
    "subject_tag",
    "watchlist_bulletins",
]
