"""The fonts the page ships, so Thai, Lao, Khmer and Burmese render on any office PC: a
PC without them shows a bulletin's title as empty boxes ("tofu"), and the page works
offline, so nothing can be fetched when it is opened.

They are Noto Sans Thai, Lao, Khmer and Myanmar (SIL Open Font License 1.1), regular and
bold, taken at build time from Debian's ``fonts-noto-core`` (the Makefile installs it, as
it installs chromium), cut down to their script's letters with every shaping feature kept
(``fontTools.subset``), and written as WOFF2 into ``office_node/web/fonts/``, with the
license. ``web/app.css`` declares them with the same ``unicode-range``, so a browser only
loads a script's font when a text has a letter of it.

    python -m office_node.fonts [SOURCE_DIR] [OUT_DIR]

Build only: the node serves the files; fontTools and brotli are in the ``fonts`` extra.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

#: Where Debian's fonts-noto-core puts them.
DEBIAN_NOTO = Path("/usr/share/fonts/truetype/noto")
WEB_FONTS = Path(__file__).parent / "web" / "fonts"
#: The license travels with the fonts (Debian ships it as the package's copyright file).
LICENSE_SOURCES = (Path("/usr/share/doc/fonts-noto-core/copyright"),)
#: Beside every script: the joiners and the dotted circle that a mark alone is drawn on.
_SHARED = "U+200B-200D, U+25CC"


@dataclass(frozen=True, slots=True)
class Face:
    family: str  # the family name app.css uses
    file: str  # the Debian file name, without -Regular/-Bold.ttf
    unicode_range: str  # as in CSS

    def ranges(self) -> list[tuple[int, int]]:
        out = []
        for part in self.unicode_range.split(","):
            lo, _, hi = part.strip().removeprefix("U+").partition("-")
            out.append((int(lo, 16), int(hi or lo, 16)))
        return out


FACES = (
    Face("BLO Noto Sans Thai", "NotoSansThai", f"U+0E01-0E5B, {_SHARED}"),
    Face("BLO Noto Sans Lao", "NotoSansLao", f"U+0E81-0EDF, {_SHARED}"),
    Face("BLO Noto Sans Khmer", "NotoSansKhmer", f"U+1780-17FF, U+19E0-19FF, {_SHARED}"),
    Face("BLO Noto Sans Myanmar", "NotoSansMyanmar", f"U+1000-109F, U+A9E0-A9FF, U+AA60-AA7F, {_SHARED}"),
)
WEIGHTS = ("Regular", "Bold")


def output_name(face: Face, weight: str) -> str:
    return f"{face.file}-{weight}.woff2"


def build(source: Path = DEBIAN_NOTO, out: Path = WEB_FONTS) -> list[Path]:
    """Write every face's subset WOFF2 into ``out``; the paths written."""
    from fontTools import subset  # build-time only (the ``fonts`` extra)

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for face in FACES:
        codepoints = [c for lo, hi in face.ranges() for c in range(lo, hi + 1)]
        for weight in WEIGHTS:
            src = source / f"{face.file}-{weight}.ttf"
            if not src.exists():
                raise SystemExit(f"{src}: missing; install Debian's fonts-noto-core (apt-get install fonts-noto-core)")
            options = subset.Options()
            options.flavor = "woff2"
            options.layout_features = ["*"]  # every shaping feature: marks stack, clusters reorder
            options.name_IDs = ["*"]
            options.name_languages = ["*"]
            options.notdef_outline = True
            font = subset.load_font(str(src), options)
            subsetter = subset.Subsetter(options)
            subsetter.populate(unicodes=codepoints)
            subsetter.subset(font)
            target = out / output_name(face, weight)
            subset.save_font(font, str(target), options)
            written.append(target)
    for license_file in LICENSE_SOURCES:
        if license_file.exists():
            shutil.copyfile(license_file, out / "LICENSE-fonts-noto-core.txt")
            break
    return written


def main(argv: list[str]) -> None:
    source = Path(argv[0]) if argv else DEBIAN_NOTO
    out = Path(argv[1]) if len(argv) > 1 else WEB_FONTS
    for path in build(source, out):
        print(f"{path} ({path.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main(sys.argv[1:])
