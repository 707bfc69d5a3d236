"""The texts of the officer's page, as the page looks them up in its catalogue: what
``_("...")``, ``N_("...")`` and ``_n("...", "...", n)`` mark in ``web/app.js``, and the
static text and translated attributes of ``web/index.html`` and ``web/login.html`` (as
``translateStatic`` in app.js reads them: trimmed, inner spaces collapsed)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

WEB = Path(__file__).resolve().parent.parent / "office_node" / "web"
_STRING = r'"((?:[^"\\]|\\.)*)"'
_MARKED = re.compile(r"(?<![\w$])N?_\(\s*" + _STRING)
_PLURAL = re.compile(r"(?<![\w$])_n\(\s*" + _STRING + r"\s*,\s*" + _STRING)
TRANSLATED_ATTRIBUTES = ("placeholder", "title", "aria-label", "alt")


def _unescape(text: str) -> str:
    return json.loads(f'"{text}"')


def script_texts(source: str) -> tuple[set[str], dict[str, str]]:
    """The marked texts of a script, and its plural texts (singular -> plural)."""
    plurals = {_unescape(a): _unescape(b) for a, b in _PLURAL.findall(source)}
    return {_unescape(m) for m in _MARKED.findall(source)}, plurals


class _Texts(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: set[str] = set()
        self._stack: list[tuple[str, bool]] = []  # (tag, not translated)
        self._in_title = False

    def _skipped(self) -> bool:
        return any(no for _, no in self._stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        no = values.get("translate") == "no" or tag in ("script", "style")
        if tag == "title":
            self._in_title = True
        if tag not in ("meta", "link", "input", "br", "img", "hr", "source"):
            self._stack.append((tag, no))
        if not (no or self._skipped()):
            for name in TRANSLATED_ATTRIBUTES:
                value = values.get(name)
                if value and any(c.isalpha() for c in value):
                    self.texts.add(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        words = " ".join(data.split())
        if words and any(c.isalpha() for c in words) and not self._skipped():
            self.texts.add(words)


def html_texts(source: str) -> set[str]:
    parser = _Texts()
    parser.feed(source)
    return parser.texts


def page_texts() -> tuple[set[str], dict[str, str]]:
    """Every text of the page, and its plural texts."""
    texts, plurals = script_texts((WEB / "app.js").read_text(encoding="utf-8"))
    for page in ("index.html", "login.html"):
        texts |= html_texts((WEB / page).read_text(encoding="utf-8"))
    return texts | set(plurals), plurals
