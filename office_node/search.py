"""What a search means: the query an officer types, the keys that find a name across
scripts, and the snippet shown under a result. Pure; the store turns it into SQL.

**The query.** Words are all required (``ยาบ้า ด่าน``: both). ``"..."`` is a phrase: its
words together, in that order. ``OR`` (capitals, as in most search boxes) between two
words or phrases makes either do, and binds tighter than the spaces around it:
``ສົມໃຈ OR Somchai ด่าน`` is (ສົມໃຈ or Somchai) and ด่าน. An ``OR`` with nothing on one
side is ignored (to search for the word, type it in lower case).

**Across scripts.** A name a Lao officer types in Latin letters (``Souksavanh``) should find
the bulletin a colleague wrote in Lao script (``ສຸກສະຫວັນ``), and back. Romanisations of
Thai and Lao differ (Somchai, Somchay; Phommachanh, Phommachan; Vixay, Wichai for one
name), and the scripts leave vowels unwritten that Latin spells out, so no single
transliteration matches another's spelling letter for letter. Both sides are turned into a
*consonant key* instead: the text transliterated to Latin letters (``anyascii``, which
covers every script of the region), lower case, the sounds romanisations disagree on
folded together (ph/p, th/t/d, kh/k/g, ch/j/x/c, ng/ny/gn/n, v/w, r/l), ``h`` and the vowels
dropped, repeated letters collapsed: ``Somchai``, ``Somchay``, ``สมชาย`` and ``ສົມຊາຍ`` all
give ``smc``. A word typed in Latin letters is matched by its key against every word
(another romanisation of the name, or its native script); a word typed in Thai or Lao
script only against the words written in Latin letters (within one native script the
words as written are what count). A key is matched from the start of a word written in
Latin letters, which are spaced (``ມະນຸດ``, key ``mnt``, is not found inside
"concealment"), and anywhere in a Thai or Lao run, which is written without spaces (a
name is often inside one: ``นายสมชาย``). And only when the whole query has at least three
consonant sounds, so short words do not match half the corpus. Sound-alike words still
meet (``บรรทุก``, to load, and "Bridges" are both ``bltk``...): the price of finding a
name whichever way it was spelt. The text is also
kept *folded* (transliterated, lower case, with its vowels), so ``Nguyen`` finds
``Nguyễn`` and ``Phnom`` finds the Khmer spelling's romanisation.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from anyascii import anyascii

OR = "OR"
#: A key match needs this many consonant sounds in the whole query.
MIN_KEY_LETTERS = 3
#: Characters of context each side of a match in a snippet.
SNIPPET_BEFORE, SNIPPET_AFTER = 40, 80

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\ufeff"))


def nfc(text: str) -> str:
    """One form for index and query: NFC (Vietnamese arrives precomposed or combining),
    without the zero-width spaces Thai and Lao writers use as invisible word breaks."""
    return unicodedata.normalize("NFC", text).translate(_INVISIBLE)


# -- the query ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """A word, or a phrase (``"..."``: its words together, in order)."""

    text: str
    phrase: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """Every clause must match; a clause matches when any of its terms does."""

    clauses: tuple[tuple[Term, ...], ...]

    @property
    def terms(self) -> tuple[Term, ...]:
        return tuple(t for clause in self.clauses for t in clause)


_TOKEN = re.compile(r'"([^"]*)"?|(\S+)')


def parse(text: str) -> Query:
    """The query in ``text``. Never fails: an unclosed quote runs to the end, an empty
    phrase and a stray ``OR`` are ignored."""
    tokens: list[Term | str] = []
    for m in _TOKEN.finditer(nfc(text)):
        if m.group(1) is not None:
            words = " ".join(m.group(1).split())
            if words:
                tokens.append(Term(words, phrase=" " in words))
        elif m.group(2) == OR:
            tokens.append(OR)
        else:
            # A quote inside a word ("Jaidee"s) is part of no phrase: drop it.
            word = m.group(2).replace('"', "")
            if word:
                tokens.append(Term(word))
    clauses: list[list[Term]] = []
    joining = False
    for tok in tokens:
        if tok == OR:
            # Between two terms it joins them; anywhere else (typed before the second
            # term, or twice) it is dropped.
            joining = bool(clauses)
            continue
        assert isinstance(tok, Term)
        if joining:
            clauses[-1].append(tok)
            joining = False
        else:
            clauses.append([tok])
    return Query(tuple(tuple(c) for c in clauses))


# -- keys across scripts -----------------------------------------------------------------

# Thai and Lao letters marked silent (Thai thanthakhat U+0E4C with the vowel before it,
# Lao cancellation mark U+0ECC) are not pronounced, so romanisations leave them out.
_SILENT = re.compile(r"[\u0E01-\u0E2E\u0E81-\u0EAE][\u0E34-\u0E39\u0EB4-\u0EB9]?[\u0E4C\u0ECC]")
# Thai yo ying and Lao nyo close a syllable as n and y (บุญ Boon, ໄຊຍ Xay) but open one
# as y and ny: a letter not followed by a vowel or tone mark is a final.
_FINALS = (
    (re.compile(r"\u0E0D(?![\u0E30-\u0E3A\u0E47-\u0E4E])"), "n"),
    (re.compile(r"\u0E8D(?![\u0EB0-\u0EBD\u0EC8-\u0ECD])"), "y"),
)
_DIGRAPHS = (("ng", "n"), ("gn", "n"), ("ny", "n"), ("ph", "p"), ("th", "t"), ("kh", "k"), ("ch", "c"), ("sh", "s"))
_LETTERS = str.maketrans({"j": "c", "x": "c", "q": "k", "g": "k", "d": "t", "r": "l", "v": "w", "z": "s"})
_NOT_KEY = re.compile(r"[aeiouyh]")
_REPEATS = re.compile(r"(.)\1+")
_WORDS = re.compile(r"[a-z]+")


def fold(text: str) -> str:
    """``text`` in lower-case Latin letters: ``Nguyễn`` -> ``nguyen``, ``สมชาย`` -> ``smchay``."""
    text = _SILENT.sub("", nfc(text))
    for final, sound in _FINALS:
        text = final.sub(sound, text)
    return anyascii(text).lower()


def _word_key(word: str) -> str:
    for pair, sound in _DIGRAPHS:
        word = word.replace(pair, sound)
    return _REPEATS.sub(r"\1", _NOT_KEY.sub("", word.translate(_LETTERS)))


def key(text: str) -> str:
    """The consonant key of ``text``, word by word (see the module docstring):
    ``Somchai Jaidee`` and ``สมชาย ใจดี`` -> ``smc ct``."""
    return " ".join(k for k in (_word_key(w) for w in _WORDS.findall(fold(text))) if k)


def is_latin(text: str) -> bool:
    """Whether every letter of ``text`` is a Latin one (English, Vietnamese, a romanised name)."""
    return all(unicodedata.name(c, "").startswith("LATIN") for c in text if c.isalpha())


def key_letters(query: Query) -> int:
    """How many consonant sounds the query has in all: whether its keys may be used."""
    return sum(len(key(t.text).replace(" ", "")) for t in query.terms)


# A document number, plate or phone as written in running text: letters and digits
# joined by single spaces, dashes, dots or slashes (``P-0847 211``, ``70-1234``).
_NUMBER_RUN = re.compile(r"[0-9A-Za-z]+(?:[ ./-][0-9A-Za-z]+)*")


def numbers(text: str) -> list[str]:
    """The runs of ``text`` holding a digit, without their separators (``passport P-0847
    211 seized`` -> ``passportP0847211seized``): a number typed either way is inside one."""
    return ["".join(re.findall(r"[0-9A-Za-z]", m.group())) for m in _NUMBER_RUN.finditer(text) if re.search(r"[0-9]", m.group())]


@dataclass(frozen=True, slots=True)
class IndexTexts:
    """What the store indexes beside the text as written (office_node/store.py)."""

    folded: str  # and the numbers of the text compacted (``numbers``)
    keys_latin: str  # keys of the words written in Latin letters: any query's keys find them
    keys_native: str  # keys of the words in other scripts: only a query in Latin letters finds them


def index_texts(texts: Iterable[str]) -> IndexTexts:
    """The folded text and the keys of a bulletin's ``texts`` (title, body, entity values, tags)."""
    parts = [nfc(t) for t in texts if t]
    latin: list[str] = []
    native: list[str] = []
    for part in parts:
        for line in part.splitlines():
            words = line.split()
            latin.append(" ".join(k for w in words if is_latin(w) and (k := key(w))))
            native.append(" ".join(k for w in words if not is_latin(w) and (k := key(w))))
    def joined(lines: list[str]) -> str:
        return "\n".join(x for x in lines if x.strip())
    folded = [fold(t) for t in parts] + [n for t in parts for n in numbers(t) if n not in t]
    return IndexTexts("\n".join(folded), joined(latin), joined(native))


# -- the snippet -------------------------------------------------------------------------


def _fields(bulletin: dict[str, Any]) -> list[tuple[str, str]]:
    out = [("title", str(bulletin.get("title") or "")), ("body", str(bulletin.get("body") or ""))]
    for entity in bulletin.get("entities") or ():
        for name, value in entity.items():
            if name == "type":
                continue
            for v in value if isinstance(value, list | tuple) else (value,):
                if isinstance(v, str) and v:
                    out.append(("entities", v))
    out.extend(("tags", t) for t in bulletin.get("tags") or () if isinstance(t, str))
    return [(name, nfc(text)) for name, text in out if text]


def _cut(field: str, text: str, start: int, end: int) -> dict[str, str]:
    lo, hi = max(0, start - SNIPPET_BEFORE), min(len(text), end + SNIPPET_AFTER)
    # Start and end on a space when there is one near, so words are not cut in half.
    if lo > 0 and (space := text.find(" ", lo, start)) != -1:
        lo = space + 1
    if hi < len(text) and (space := text.rfind(" ", end, hi)) != -1:
        hi = space
    return {
        "field": field,
        "before": ("…" if lo > 0 else "") + text[lo:start],
        "match": text[start:end],
        "after": text[end:hi] + ("…" if hi < len(text) else ""),
    }


def _key_span(text: str, wanted: str) -> tuple[int, int] | None:
    """Where in ``text`` a run of words (or of one unspaced script run) has ``wanted``
    in its key: the words a transliterated query found."""
    for m in re.finditer(r"\S+", text):
        if wanted in key(m.group()).replace(" ", ""):
            return m.start(), m.end()
    return None


def snippet(bulletin: dict[str, Any], query: Query) -> dict[str, str] | None:
    """Where the query matched, with some context: ``{field, before, match, after}``
    (the page marks ``match``). The first field (title, body, entities, tags) holding a
    term as written wins, then one holding it by its key. None if neither is found
    (a document number matched only in its compacted form)."""
    fields = _fields(bulletin)
    terms: Sequence[Term] = query.terms
    best: tuple[int, int, int, int] | None = None  # field order, start, end, field index
    for fi, (_, text) in enumerate(fields):
        lowered = text.casefold()
        for term in terms:
            at = lowered.find(term.text.casefold())
            if at != -1 and len(lowered) == len(text):  # casefold kept the offsets
                cand = (fi, at, at + len(term.text), fi)
                if best is None or cand < best:
                    best = cand
        if best is not None:
            break
    if best is None and key_letters(query) >= MIN_KEY_LETTERS:
        for fi, (_, text) in enumerate(fields):
            for term in terms:
                wanted = key(term.text).replace(" ", "")
                span = _key_span(text, wanted) if wanted else None
                if span is not None:
                    best = (fi, span[0], span[1], fi)
                    break
            if best is not None:
                break
    if best is None:
        return None
    field, text = fields[best[3]]
    return _cut(field, text, best[1], best[2])
