"""The officer's language: which languages there are, the message catalogues, and the
choice of one for a request or a terminal.

Every text a person reads comes from gettext catalogues (PO files, read with Babel) in
``office_node/locale/<language>/LC_MESSAGES/``, one format for everything:

* ``page.po``: every label, button, status and message of the web page (``web/app.js``
  marks them ``_("...")``, ``web/index.html`` and ``web/login.html`` hold them as text).
  The page fetches its language's catalogue as JSON (``page_catalogue``).
* ``messages.po``: the node's refusals and errors as the API answers them and the CLI
  prints them. They are written in English where they arise (one ``BloError`` tree,
  ``bus/errors.py``) and translated at the edge: a catalogue entry is the English
  message, with ``{name}`` where the message holds a value (``no bulletin {id} is stored
  on this node``); ``localise`` finds the entry a message was made from and puts the
  values into the translation. A message without an entry is shown in English.

A translation a native speaker should check is flagged ``review`` in its catalogue
(``#, review``); the page and the node use it meanwhile.

Languages are BCP 47 tags. ``th`` shows dates in the Buddhist era (the Thai default);
``th-u-ca-gregory`` is Thai with Gregorian years, offered beside it.
"""

from __future__ import annotations

import functools
import gettext
import io
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from bus import errors

LOCALE_DIR = Path(__file__).parent / "locale"
#: The languages of the interface, English first (the language of the source texts).
CATALOGUES = ("en", "th", "lo", "km", "vi", "my")
#: What an officer may choose: a catalogue, or Thai with Gregorian years.
LANGUAGES = (*CATALOGUES, "th-u-ca-gregory")
DEFAULT = "en"
#: Each language in its own name, for the chooser.
NAMES = {
    "en": "English",
    "th": "ไทย (พ.ศ.)",
    "th-u-ca-gregory": "ไทย (ค.ศ.)",
    "lo": "ລາວ",
    "km": "ខ្មែរ",
    "vi": "Tiếng Việt",
    "my": "မြန်မာ",
}
PAGE, MESSAGES = "page", "messages"


def check_language(value: Any) -> str:
    """``value`` if it is one of ``LANGUAGES``; ValidationError naming them otherwise."""
    if value not in LANGUAGES:
        raise errors.ValidationError("language", f"must be one of {', '.join(LANGUAGES)}; got {value!r}"[:200])
    return value


def catalogue_of(language: str) -> str:
    """The catalogue a language's texts come from (``th-u-ca-gregory`` -> ``th``)."""
    base = language.split("-", 1)[0]
    return base if base in CATALOGUES else DEFAULT


# -- choosing ----------------------------------------------------------------------------

_RANGE = re.compile(r"^\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([01](?:\.\d{0,3})?))?\s*$")


def negotiate(accept_language: str | None) -> str:
    """The first of our languages in an HTTP ``Accept-Language`` header (RFC 9110
    12.5.4), by weight then order; English when none is offered."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "").split(",")[:32]):
        m = _RANGE.match(part)
        if m and m.group(1) != "*":
            q = float(m.group(2)) if m.group(2) else 1.0
            if q > 0:
                ranked.append((-q, i, m.group(1).lower()))
    for _, _, tag in sorted(ranked):
        if tag.split("-", 1)[0] in CATALOGUES:
            return tag.split("-", 1)[0]
    return DEFAULT


def terminal_language(environ: Mapping[str, str] = os.environ) -> str:
    """The language of the terminal, as gettext reads it (LANGUAGE, LC_ALL,
    LC_MESSAGES, LANG: ``th_TH.UTF-8`` -> ``th``); English when it is none of ours."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name)
        if value:
            for tag in value.split(":"):
                base = re.split(r"[_.@-]", tag, maxsplit=1)[0].lower()
                if base in CATALOGUES:
                    return base
            return DEFAULT
    return DEFAULT


# -- catalogues --------------------------------------------------------------------------


@functools.cache
def _catalog(language: str, domain: str) -> Any:
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{domain}.po"
    with path.open("rb") as f:
        return read_po(f, locale=language, domain=domain)


@functools.cache
def translations(language: str, domain: str = MESSAGES) -> gettext.NullTranslations:
    """The gettext translations of a catalogue (English: the texts as written)."""
    language = catalogue_of(language)
    if language == DEFAULT:
        return gettext.NullTranslations()
    buffer = io.BytesIO()
    write_mo(buffer, _catalog(language, domain), use_fuzzy=False)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def page_catalogue(language: str) -> dict[str, Any]:
    """The page's catalogue as the page reads it: ``{language, plural, messages: {English:
    translation or [forms]}, review: [English]}``. English has no messages: the page shows
    its texts as written."""
    language = catalogue_of(language)
    if language == DEFAULT:
        return {"language": DEFAULT, "messages": {}, "review": []}
    catalog = _catalog(language, PAGE)
    messages: dict[str, Any] = {}
    review: list[str] = []
    for m in catalog:
        if not m.id or not m.string:
            continue
        msgid = m.id[0] if isinstance(m.id, tuple) else m.id
        if isinstance(m.string, tuple):
            if not all(m.string):
                continue
            messages[msgid] = list(m.string)
        else:
            messages[msgid] = m.string
        if "review" in m.flags:
            review.append(msgid)
    return {"language": language, "messages": messages, "review": review}


# -- messages made from templates ---------------------------------------------------------

_FIELD = re.compile(r"\{([a-z_]+)\}")


def _pattern(template: str) -> re.Pattern[str]:
    parts = _FIELD.split(template)
    out = []
    for i, part in enumerate(parts):
        # Even parts are literal text, odd parts are field names.
        out.append(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)")
    return re.compile("^" + "".join(out) + r"\Z", re.DOTALL)


@functools.cache
def _templates(language: str) -> tuple[tuple[re.Pattern[str], str], ...]:
    found = []
    for m in _catalog(language, MESSAGES):
        if m.id and isinstance(m.id, str) and m.string and isinstance(m.string, str):
            found.append((_pattern(m.id), m.string))
    # The most specific first: a template with more literal text wins over a looser one.
    found.sort(key=lambda item: -len(_FIELD.sub("", item[0].pattern)))
    return tuple(found)


def localise(message: str, language: str) -> str:
    """``message`` (an English message of the node) in ``language``, by the catalogue
    entry it was made from; unchanged when there is none."""
    language = catalogue_of(language)
    if language == DEFAULT or not message:
        return message
    fields_field = message.split(": ", 1)
    for candidate, prefix in ((message, ""), *(((fields_field[1], fields_field[0] + ": "),) if len(fields_field) == 2 else ())):
        for pattern, translation in _templates(language):
            m = pattern.match(candidate)
            if m:
                # A value inside a message (an id, a number) may itself be an English
                # phrase of the catalogue: it is left as it came.
                return prefix + translation.format(**m.groupdict())
    return message


def msgids(domain: str, language: str) -> Iterable[str]:
    """The English texts a language's catalogue translates (for the tests)."""
    for m in _catalog(language, domain):
        if m.id:
            yield m.id[0] if isinstance(m.id, tuple) else m.id
