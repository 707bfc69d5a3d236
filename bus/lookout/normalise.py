"""Match keys for entities: the same passport, person, plate or phone written two ways
gets the same key.

Pure functions, text in and keys out. Every entity type of ``bus.bulletin.ENTITY_FIELDS``
maps to a list of ``IndexKey(kind, key, scope)``:

- ``kind`` says what was normalised (``document``, ``name``, ``name~``, ``plate``, ...);
  two keys can only match when their kinds are equal, so a document number never
  matches a plate that happens to share its characters.
- ``key`` is the normalised text.
- ``scope`` narrows a match but never widens it: the issuing country of a document or
  plate, the date of birth of a person. Two keys match when kind and key are equal and
  their scopes are *compatible*: either side unknown, or equal (dates: one a prefix of
  the other, so ``1985`` agrees with ``1985-03-02``). That is how "keep the issuing
  country as part of the key, but also match without it" works without indexing
  every number twice. See ``scopes_compatible``.

Normalisation rules
-------------------
Document numbers
    NFKC (full-width digits become ASCII), drop whitespace and the separators ``- . /``,
    uppercase. ``P 123-456.7`` -> ``P1234567``. Letters are never "corrected" (O vs 0):
    a fuzzy document match would flag innocent travellers.
Vehicle plates
    NFKC, drop whitespace and ``- . ·``, uppercase: ``70-1234`` -> ``701234``, and Thai
    ``กข 1234 กรุงเทพมหานคร`` -> ``กข1234กรุงเทพมหานคร`` (Lao likewise; their letters have
    no case). Officers type a plate as they read it off the car or a document, with a
    space more or less; no two plates differ only in their spaces (the store's search
    already treats them alike), so a check for ``กข1234`` must find ``กข 1234``. The
    province line is kept: with and without it are still different keys.
Phones
    E.164 (``+`` and digits), by the numbering plan of each country (the
    ``phonenumbers`` library, Google's libphonenumber data). ``00`` before the
    country code becomes ``+``; a number without ``+`` is national and is read in
    the plan of a default country (the sender's country for a bulletin, the checking
    office's country or the one the officer names for a check, the row's or the
    importing centre's country for a watch list), which drops its trunk prefix:
    ``020 5555 1234`` in LA, ``+856 20 5555 1234`` and ``00856 20 5555 1234`` are
    all ``+8562055551234``; ``+66 (0)81...`` drops the ``(0)``.
Digits
    Every decimal digit (Thai ``๑๒๓``, Lao ``໑໒໓``, Burmese, Khmer, full-width) is
    read as its ASCII digit in document numbers, plates, phones, vessel numbers and
    names: an officer may type a number on a Thai or Lao keyboard.
Names (persons, vessels, organisations)
    NFKC, case-fold, strip diacritics from Latin letters only (Vietnamese ``Nguyễn
    Văn Đức`` -> ``nguyen van duc``; ``đ``/``ð``/``ø``/``ł`` mapped by hand because they
    do not decompose); combining marks on Thai, Lao, Khmer or Burmese letters are
    vowels and tones, never decoration, and are kept. Apostrophes and hyphens join
    (``Chan-o-cha`` = ``Chanocha``), other punctuation separates; tokens are sorted so
    ``PHOMMACHANH, Souksavanh`` = ``Souksavanh Phommachanh``.

The romanisation-tolerant name key (``name~``)
----------------------------------------------
Thai and Lao names reach Latin script through several systems at once: the Royal Thai
General System (RTGS: ``ph th kh ch``, ``ae``, ``ue``, final ``o`` for the w-glide),
older English-style spellings (``ee``, ``oo``, ``or``, ``bp``/``dt`` for unaspirated
stops), and the French-influenced Lao spellings used on Lao passports (``ou`` for /u/,
``v`` for /w/, ``x`` for /s/, a silent final ``h`` after ``n`` as in ``Souksavanh``,
a silent final ``e`` as in ``Khamphone``). ``phonetic_token`` maps each Latin token to
a code string in the spirit of Soundex/Metaphone, but keeps vowel classes, because
Thai and Lao given names are short and vowels carry much of their identity (Somsak
and Somsuk are different names). Rules, applied left to right, longest spelling first:

==========================  ======  ===================================================
spellings                   code    why
==========================  ======  ===================================================
ph, p, bp                   P       aspiration is written inconsistently (พ ป)
th, t, dt                   T       ท ต ถ: RTGS ``th``, English-style ``t``/``dt``
kh, k, gh, ck, q, g         K       ข ค ก; ``g`` for ก in non-RTGS spellings (Gitti)
ch, tch, j, c               C       จ ช ฉ; ``j`` in English-style spellings (Jaturon)
s, x, z, sh                 S       Lao ຊ and Vietnamese ``x`` are /s/ (Xaysana = Saisana)
v, w                        W       Lao French ``v`` is ວ /w/ (Souvanna = Suwanna)
ng                          G       a distinct final (Sing is not Sin)
a, aa                       A       vowel length is rarely written consistently
e, ae, ea                   E       แ and เ are conflated in informal spellings
i, ii, ee, y (as vowel)     I       Somchai = Somchay, Bounmy = Boonmee
u, uu, ou, oo               U       French ``ou`` (Souk = Suk)
o                           O
==========================  ======  ===================================================

then, in context: ``y``/``w`` before a vowel are consonants, otherwise vowels
(``ay`` = ``ai``, ``aw`` = ``ao``); ``o`` after ``a e i`` is the w-glide, code U
(RTGS ``ao eo io``: Kaeo = Kaew = Keo); ``r`` after ``o`` and before a consonant or
the end marks the vowel, not a sound (Porntip = Phonthip); a final ``e`` after
vowel-consonant is French and silent (Khamphone = Khamphon); ``h`` not followed by a
vowel is silent (Souksavanh = Suksavan); final ``d b l`` sound as ``t p n`` (Thai
finals: Kamol = Kamon); repeated codes collapse (Phommachanh = Phomachan).
Tokens with letters outside a-z (Thai or Lao script) keep their folded form: no
transliteration is attempted. The key is the sorted codes of all tokens.
Such a key is deliberately loose: a match on it is reported as ``similar``, never
``exact``, and should be read by a person.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import phonenumbers

from bus.errors import ValidationError


class IndexKey(NamedTuple):
    """One thing an entity can be looked up by. ``scope`` narrows a match (see module doc)."""

    kind: str
    key: str
    scope: str = ""


def ascii_digits(text: str) -> str:
    """``text`` with every decimal digit of any script as its ASCII digit
    (``๐๒๐`` and ``໐໒໐`` become ``020``); other characters unchanged."""
    if text.isascii():
        return text
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)


# -- text folding ------------------------------------------------------------------------

_WS = re.compile(r"\s+")
_DOC_SEPARATORS = re.compile(r"[\s\-./]+")
_ASCII_DOC_SEPARATORS = str.maketrans("", "", " \t\n\r\f\v\x1c\x1d\x1e\x1f-./")
_PLATE_SEPARATORS = re.compile(r"[\s\-.·]+")
# Letters that do not decompose under NFD but have an obvious base letter.
_LATIN_EXTRA = str.maketrans(
    {"đ": "d", "ð": "d", "ø": "o", "ł": "l", "ħ": "h", "ı": "i", "ŧ": "t", "æ": "ae", "œ": "oe"}
)
# Apostrophes and hyphens join the parts of a name; every other non-letter separates.
_JOINERS = re.compile(r"['’ʼ`\-‐‑]")
_NON_WORD = re.compile(r"[\W_]+")


def _is_latin(ch: str) -> bool:
    o = ord(ch)
    return o < 0x250 or 0x1E00 <= o <= 0x1EFF


def _strip_latin_marks(text: str) -> str:
    out: list[str] = []
    base_is_latin = False
    for ch in unicodedata.normalize("NFD", text):
        if unicodedata.combining(ch):
            if base_is_latin:
                continue  # a diacritic on a Latin letter: decoration for matching purposes
        else:
            base_is_latin = ch.isalpha() and _is_latin(ch)
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def fold_text(text: str) -> str:
    """NFKC, case-folded, Latin diacritics removed, whitespace collapsed."""
    if text.isascii():
        return " ".join(text.lower().split())  # the common case, and what the slow path gives for ASCII
    # Repeat to a fixed point: case-folding can produce text that NFKC changes again
    # (and the other way round) for a few exotic characters; two rounds settle it.
    for _ in range(4):
        folded = ascii_digits(unicodedata.normalize("NFKC", text)).casefold().translate(_LATIN_EXTRA)
        folded = _strip_latin_marks(folded)
        folded = _WS.sub(" ", folded).strip()
        if folded == text:
            break
        text = folded
    return text


def name_tokens(name: str) -> list[str]:
    """The folded word tokens of a name, in written order."""
    folded = _JOINERS.sub("", fold_text(name))
    if folded.isascii():
        return [t for t in _NON_WORD.split(folded) if t]
    # Thai, Lao, Khmer and Burmese vowel signs and tone marks are combining marks, which
    # the regex \w does not count as word characters: keep them inside the word.
    chars = [ch if ch.isalnum() or unicodedata.category(ch).startswith("M") else " " for ch in folded]
    return "".join(chars).split()


def normalise_name(name: str) -> str:
    """Order-insensitive exact name key: folded tokens, sorted, single spaces."""
    return " ".join(sorted(name_tokens(name)))


# -- the romanisation-tolerant key ---------------------------------------------------------

_UNITS: dict[str, str] = {
    "tch": "C",
    "ph": "P", "bp": "P", "th": "T", "dt": "T", "kh": "K", "gh": "K", "ck": "K", "ch": "C",
    "sh": "S", "ng": "G", "aa": "A", "ae": "E", "ea": "E", "ii": "I", "ee": "I", "uu": "U",
    "ou": "U", "oo": "U",
    "a": "A", "e": "E", "i": "I", "o": "O", "u": "U", "y": "y", "w": "w",
    "p": "P", "b": "B", "t": "T", "d": "D", "k": "K", "g": "K", "q": "K", "c": "C", "j": "C",
    "s": "S", "x": "S", "z": "S", "v": "w", "f": "F", "l": "L", "r": "R", "m": "M", "n": "N",
    "h": "H",
}  # fmt: skip
_UNIT_RE = re.compile("|".join(sorted(_UNITS, key=len, reverse=True)))
_VOWELS = frozenset("AEIOU")
_LATIN_TOKEN = re.compile(r"^[a-z]+\Z")
_FINAL = {"D": "T", "B": "P", "L": "N"}


def phonetic_token(token: str) -> str:
    """The romanisation-tolerant code of one folded token (see the module docstring)."""
    if not _LATIN_TOKEN.match(token):
        return token  # Thai/Lao/other script or digits: no transliteration attempted
    codes = [_UNITS[m] for m in _UNIT_RE.findall(token)]
    n = len(codes)
    # Semivowels: consonants before a vowel, vowels elsewhere.
    for i, c in enumerate(codes):
        if c in ("y", "w"):
            before_vowel = i + 1 < n and codes[i + 1] in _VOWELS
            codes[i] = ("Y" if c == "y" else "W") if before_vowel else ("I" if c == "y" else "U")
    # French silent final e: vowel, consonant, e at the end.
    if n >= 3 and codes[-1] == "E" and codes[-2] not in _VOWELS and codes[-3] in _VOWELS:
        codes.pop()
        n -= 1
    out: list[str] = []
    for i, c in enumerate(codes):
        nxt = codes[i + 1] if i + 1 < n else ""
        prev = out[-1] if out else ""
        if c == "H" and nxt not in _VOWELS:
            continue  # silent h: Souksavanh, Sirah
        if c == "O" and prev in ("A", "E", "I"):
            c = "U"  # RTGS w-glide: Kaeo = Kaew
        if c == "R" and prev == "O" and nxt not in _VOWELS:
            continue  # Porn = Phon
        if c == prev:
            continue  # doubled letters and long vowels
        out.append(c)
    if out and out[-1] in _FINAL:
        out[-1] = _FINAL[out[-1]]
        if len(out) >= 2 and out[-1] == out[-2]:
            out.pop()
    return "".join(out) or token


def phonetic_name(name: str) -> str:
    """Order-insensitive, romanisation-tolerant name key (``Suksavan Phommachan`` for
    ``PHOMMACHANH Souksavanh`` gives the same key)."""
    return " ".join(sorted(phonetic_token(t) for t in name_tokens(name)))


# -- documents, plates, phones ----------------------------------------------------------


def normalise_document_number(number: str) -> str:
    if number.isascii():
        return number.translate(_ASCII_DOC_SEPARATORS).upper()  # same result, 3x faster than the regex
    # Removing a separator can bring a combining mark next to a letter it now composes
    # with (NFKC turns an acute accent into space + combining acute), so repeat to a
    # fixed point: the result must normalise to itself.
    for _ in range(4):
        out = _DOC_SEPARATORS.sub("", ascii_digits(unicodedata.normalize("NFKC", number))).upper()
        if out == number:
            break
        number = out
    return out


def normalise_plate(plate: str) -> str:
    for _ in range(4):  # to a fixed point, as for document numbers
        text = _PLATE_SEPARATORS.sub("", ascii_digits(unicodedata.normalize("NFKC", plate))).upper()
        if text == plate:
            break
        plate = text
    return text


_PARSE_ERRORS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "has no known country calling code after the +",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "is too short after its international prefix",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "is too short to be a phone number",
    phonenumbers.NumberParseException.TOO_LONG: "is too long to be a phone number",
}


def normalise_phone(number: str, default_country: str | None = None) -> str:
    """E.164 form (``+959123456789``). National numbers are read in the numbering plan
    of ``default_country`` (ISO 3166 alpha-2).

    Raises ``ValidationError`` when the number has no digits, cannot be a phone number
    (too short, too long, an unknown country code), or is national and no known
    ``default_country`` is given.
    """
    text = ascii_digits(unicodedata.normalize("NFKC", number)).strip()
    if not any(ch.isdigit() for ch in text):
        raise ValidationError("number", f"has no digits: {number!r}"[:200])
    if text.startswith("00"):
        # The international prefix of most of the region (and ITU's recommendation);
        # Thailand's 001/007/008/009 carriers are written 00 + country code in practice.
        text = "+" + text[2:]
    region = None
    if not text.startswith("+"):
        if default_country is None:
            raise ValidationError(
                "number", "is a national number: write it with + and the country code, or give a country"
            )
        region = default_country.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValidationError("country", f"{default_country!r} is not a country with a phone numbering plan"[:200])
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        why = _PARSE_ERRORS.get(exc.error_type, "cannot be read as a phone number")
        raise ValidationError("number", f"{number!r} {why}"[:200]) from None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalise_dob(dob: str) -> str:
    """A date of birth as ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` (ASCII digits, trimmed)."""
    text = unicodedata.normalize("NFKC", dob).strip()
    if not re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", text, flags=re.ASCII):
        raise ValidationError("dob", f"must be a date as YYYY, YYYY-MM or YYYY-MM-DD, got {dob!r}"[:200])
    return text


def scopes_compatible(a: str, b: str) -> bool:
    """True when two scopes do not contradict each other (either empty, or one is a
    prefix of the other: a year agrees with any date in it)."""
    return not a or not b or a.startswith(b) or b.startswith(a)


# -- entities --------------------------------------------------------------------------------


def _country(value: Any) -> str:
    if isinstance(value, str) and len(value) == 2 and value.isascii() and value.isalpha():
        return value.upper()
    return ""


def _name_keys(names: Iterable[str], dob: str = "") -> list[IndexKey]:
    out: list[IndexKey] = []
    for name in names:
        exact = normalise_name(name)
        if exact:
            out.append(IndexKey("name", exact, dob))
            out.append(IndexKey("name~", phonetic_name(name), dob))
    return out


def entity_keys(entity: Mapping[str, Any], default_country: str | None = None) -> list[IndexKey]:
    """The keys an entity (one item of ``Bulletin.entities``) is indexed and looked up by.

    ``default_country`` is the country of national phone numbers (the sender's country
    for a bulletin, the checking office's for a check). Fields that cannot be
    normalised (a national phone number with no country) give no key rather than a
    wrong one; the result has no duplicates. Locations give no keys: they are places,
    not subjects of a lookout.
    """
    keys_of = _ENTITY_KEYS.get(str(entity.get("type")))
    keys = [] if keys_of is None else keys_of(entity, default_country)
    return list(dict.fromkeys(keys)) if len(keys) > 1 else keys


def _document_keys(entity: Mapping[str, Any], _: str | None) -> list[IndexKey]:
    keys: list[IndexKey] = []
    number = normalise_document_number(str(entity.get("number", "")))
    if number:
        keys.append(IndexKey("document", number, _country(entity.get("country"))))
    if entity.get("holder"):
        keys += _name_keys([str(entity["holder"])])
    return keys


def _person_keys(entity: Mapping[str, Any], _: str | None) -> list[IndexKey]:
    dob = str(entity.get("dob") or "")
    try:
        dob = normalise_dob(dob) if dob else ""
    except ValidationError:
        dob = ""  # a malformed date narrows nothing; the name still matches
    aliases = entity.get("aliases")
    aliases = [str(a) for a in aliases] if isinstance(aliases, list | tuple) else []
    return _name_keys([str(entity.get("name", "")), *aliases], dob)


def _vehicle_keys(entity: Mapping[str, Any], _: str | None) -> list[IndexKey]:
    keys: list[IndexKey] = []
    plate = normalise_plate(str(entity.get("plate", "")))
    if plate:
        keys.append(IndexKey("plate", plate, _country(entity.get("country"))))
    vin = normalise_document_number(str(entity["vin"])) if entity.get("vin") else ""
    if vin:
        keys.append(IndexKey("vin", vin))
    return keys


def _phone_keys(entity: Mapping[str, Any], default_country: str | None) -> list[IndexKey]:
    try:
        return [IndexKey("phone", normalise_phone(str(entity.get("number", "")), default_country))]
    except ValidationError:
        return []  # a national number with no country: no key rather than a wrong one


def _vessel_keys(entity: Mapping[str, Any], _: str | None) -> list[IndexKey]:
    keys: list[IndexKey] = []
    for field in ("imo", "mmsi"):
        digits = "".join(ch for ch in ascii_digits(str(entity.get(field) or "")) if ch.isdigit() and ch.isascii())
        if digits:
            keys.append(IndexKey(field, digits))
    name = normalise_name(str(entity.get("name", "")))
    if name:
        keys.append(IndexKey("vessel", name))
    return keys


def _organisation_keys(entity: Mapping[str, Any], _: str | None) -> list[IndexKey]:
    name = normalise_name(str(entity.get("name", "")))
    return [IndexKey("organisation", name, _country(entity.get("country")))] if name else []


#: Each entity type's keys (``entity_keys``); a location gives none.
_ENTITY_KEYS: dict[str, Callable[[Mapping[str, Any], str | None], list[IndexKey]]] = {
    "document": _document_keys,
    "person": _person_keys,
    "vehicle": _vehicle_keys,
    "phone": _phone_keys,
    "vessel": _vessel_keys,
    "organisation": _organisation_keys,
}
