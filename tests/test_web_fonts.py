"""The page's own fonts: every sample bulletin title renders in its script, not as empty
boxes ("tofu"), in a Chromium that has no font for Thai, Lao, Khmer or Burmese, as on an
office PC without them. Fonts are built by ``make`` (office_node/fonts.py). The sample
titles are the region's five scripts (Thai, Lao, Khmer, Burmese, and Vietnamese in Latin
letters with stacked accents) and an English one; every letter, mark and digit of each is
checked: ``document.fonts.check`` with the font it is drawn in, and its rendered width and
pixels against the box the browser draws for a missing glyph.

The browser's fontconfig is limited to DejaVu (Latin, Greek, Cyrillic, Lao), whatever this
machine has installed, so only the fonts the page ships can draw Thai, Khmer and Burmese.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser

from office_node.fonts import FACES, WEB_FONTS, WEIGHTS, output_name
from tests.browser import launch_chromium, open_page, page_log
from tests.test_web_static import StubNode, login, serve, summary

module_loop = pytest.mark.asyncio(loop_scope="module")

SAMPLES = json.loads((Path(__file__).resolve().parent.parent / "office_node" / "data" / "sample-bulletins.json")
                     .read_text(encoding="utf-8"))["bulletins"]
TITLES = [s["title"] for s in SAMPLES]
LATIN_ONLY = Path("/usr/share/fonts/truetype/dejavu")
#: Thai, Khmer and Myanmar blocks: DejaVu has none of them (it has Lao).
NOT_IN_DEJAVU = (("\u0e00", "\u0e7f"), ("\u1780", "\u17ff"), ("\u1000", "\u109f"))


def test_the_fonts_are_built_into_the_package_with_their_license():
    for face in FACES:
        for weight in WEIGHTS:
            path = WEB_FONTS / output_name(face, weight)
            assert path.exists(), f"{path}: run `make` (office_node/fonts.py builds it)"
            assert path.read_bytes()[:4] == b"wOF2"
            assert path.stat().st_size < 80_000  # subset to its script
    assert "Open Font License" in (WEB_FONTS / "LICENSE-fonts-noto-core.txt").read_text(encoding="utf-8")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bare_chromium(tmp_path_factory) -> AsyncIterator[Browser]:
    """Chromium seeing only DejaVu: no system font for the region's scripts."""
    assert LATIN_ONLY.is_dir(), "DejaVu fonts (fonts-dejavu-core, a dependency of chromium) are missing"
    root = tmp_path_factory.mktemp("fontconfig")
    config = root / "fonts.conf"
    config.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">\n'
        f"<fontconfig><dir>{LATIN_ONLY}</dir><cachedir>{root / 'cache'}</cachedir></fontconfig>\n",
        encoding="utf-8",
    )
    async with launch_chromium(env={**os.environ, "FONTCONFIG_FILE": str(config)}) as browser:
        yield browser


@pytest_asyncio.fixture(loop_scope="module")
async def feed_of_samples() -> AsyncIterator[str]:
    node = StubNode()
    # Read titles are drawn in the regular weight, unread ones in bold: both are shipped.
    node.items = [summary(f"sample{i}", i * 1000, title=title, read=i % 2 == 0) for i, title in enumerate(TITLES)]
    async with serve(node) as base:
        yield base


# Each letter, mark and digit of a title drawn alone in a canvas, with the page's fonts and with the
# browser's plain sans-serif: its width and its pixels; and the same for a character no
# font has (U+E000): the box ("tofu") the browser draws for a missing glyph. A letter is
# tofu when it has the box's width and the box's pixels (a real glyph may share the box's
# width: Noto's Thai letters are 0.6 em wide, as DejaVu's box is).
MEASURE = r"""([titles, pageFont]) => {
  const plainFont = pageFont.replace(/16px .*/, "16px sans-serif");
  const canvas = document.createElement("canvas");
  canvas.width = 48; canvas.height = 32;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const draw = (font, text) => {
    ctx.font = font;
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, 48, 32);
    ctx.fillStyle = "#000"; ctx.fillText(text, 12, 24);
    const pixels = ctx.getImageData(0, 0, 48, 32).data;
    let ink = "";
    for (let i = 0; i < pixels.length; i += 4) ink += pixels[i] < 128 ? "#" : ".";
    return { width: ctx.measureText(text).width, ink };
  };
  const isTofu = (font, c) => {
    const box = draw(font, "\uE000"), glyph = draw(font, c);
    return glyph.width === box.width && glyph.ink === box.ink;
  };
  return titles.map((title) => ({
    title,
    page: draw(pageFont, title).width,
    plain: draw(plainFont, title).width,
    letters: [...title].filter((c) => /[\p{L}\p{M}\p{N}]/u.test(c)).map((c) => ({
      c, pageWidth: draw(pageFont, c).width, pageTofu: isTofu(pageFont, c), plainTofu: isTofu(plainFont, c),
    })),
  }));
}"""


def script_of(title: str) -> str:
    """The script a sample title is written in: the face that draws it, or the system's Latin."""
    for face in FACES:
        if any(lo <= ord(c) <= hi for c in title for lo, hi in face.ranges()[:-2]):  # not the shared joiners
            return face.family
    return "Vietnamese" if any(ord(c) > 0x24F for c in title) else "Latin"


@module_loop
async def test_no_sample_title_renders_as_tofu_with_the_fonts_the_page_ships(bare_chromium, feed_of_samples):
    base = feed_of_samples
    # The samples are the region's five scripts (and an English one): each is measured below.
    scripts = {script_of(t): t for t in TITLES}
    assert set(scripts) == {*(f.family for f in FACES), "Vietnamese", "Latin"}
    page = await open_page(bare_chromium)
    await login(page, base)
    assert sorted(await page.locator("#feed-list .item-title").all_text_contents()) == sorted(TITLES)
    await page.evaluate("document.fonts.ready")
    # Each title with the font it is drawn in (family stack and weight).
    fonts = dict(await page.evaluate("""[...document.querySelectorAll('#feed-list .item-title')].map((el) => {
      const cs = getComputedStyle(el);
      return [el.textContent, `${cs.fontWeight} 16px ${cs.fontFamily}`];
    })"""))
    assert set(fonts) == set(TITLES)

    # Every face a title needs was loaded from the node, and document.fonts.check agrees
    # that each title can be drawn with the page's fonts.
    loaded = await page.evaluate("[...document.fonts].filter((f) => f.status === 'loaded').map((f) => f.family)")
    for face in FACES:
        assert f'"{face.family}"' in loaded or face.family in loaded, f"{face.family} was not loaded"
    for title, font in fonts.items():
        assert await page.evaluate("([f, t]) => document.fonts.check(f, t)", [font, title]), title
    # check() is not true whatever the text: in the weight no title is drawn in, its face is
    # declared but never loaded, and check() says that title cannot be drawn yet.
    for title, font in fonts.items():
        if script_of(title) in ("Latin", "Vietnamese"):
            continue
        weight, _, rest = font.partition(" ")
        other = ("400" if weight == "700" else "700") + " " + rest
        assert not await page.evaluate("([f, t]) => document.fonts.check(f, t)", [other, title]), title

    measured = {title: (await page.evaluate(MEASURE, [[title], font]))[0] for title, font in fonts.items()}
    boxes_without_the_page_fonts = set()
    for script, title in scripts.items():
        m = measured[title]
        letters = m["letters"]
        assert len(letters) >= 10, f"{title!r}: {letters}"
        # With the page's fonts no letter, mark or digit of any title is drawn as the box.
        tofu = [x["c"] for x in letters if x["pageTofu"]]
        assert not tofu, f"{script}: {title!r}: {tofu} render as tofu"
        beyond_latin = [x for x in letters if ord(x["c"]) > 0x24F and unicodedata.category(x["c"]).startswith("L")]
        if beyond_latin and all(x["plainTofu"] for x in beyond_latin):
            boxes_without_the_page_fonts.add(title)
        if script in ("Latin", "Vietnamese"):
            # The system's Latin font draws these (Vietnamese's stacked accents too): the
            # letters beyond Latin-1 have glyphs of their own, not one box width.
            assert (script == "Latin") == (not beyond_latin)
            assert len({round(x["pageWidth"], 2) for x in letters}) > 1
            continue
        # A shipped script: the title is laid out in the page's glyphs, not the browser's
        # fallback, and its letters have varied widths (the boxes would all be one).
        assert m["page"] != m["plain"], title
        assert len({round(x["pageWidth"], 2) for x in letters}) > 1, f"{title!r}: every letter has one width"
    # Without them, this browser draws the Thai, Khmer and Burmese titles as boxes (DejaVu
    # has Lao, as the Lao office's page showed): what the test would catch.
    thai_khmer_burmese = {t for t in TITLES if any(lo <= c <= hi for c in t for lo, hi in NOT_IN_DEJAVU)}
    assert len(thai_khmer_burmese) == 3 and boxes_without_the_page_fonts == thai_khmer_burmese
    page_log(page).assert_clean(base)
    await page.context.close()


@module_loop
async def test_the_page_asks_only_its_own_node_for_fonts(bare_chromium, feed_of_samples):
    base = feed_of_samples
    page = await open_page(bare_chromium)
    fonts: list[str] = []
    page.on("request", lambda r: fonts.append(r.url) if r.resource_type == "font" else None)
    await login(page, base)
    await page.evaluate("document.fonts.ready")
    assert fonts and all(url.startswith(base + "/static/fonts/") for url in fonts)
    # Only what is on screen is fetched: each script's face in the weight its title is drawn in
    # (titles alternate read, regular, and unread, bold: Thai, Lao, Khmer, Burmese).
    weights = dict(zip(["NotoSansThai", "NotoSansLao", "NotoSansKhmer", "NotoSansMyanmar"], ["Regular", "Bold"] * 2, strict=True))
    assert {url.rsplit("/", 1)[1] for url in fonts} == {output_name(f, weights[f.file]) for f in FACES}
    await page.context.close()
