"""Run the benchmarks: ``python -m bench [name ...]`` (default: all, in a fixed order)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path

ORDER = ["envelope", "directory", "bus", "node", "lookout", "feed", "attachments", "links", "scale"]


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    found = [m.name.removeprefix("bench_") for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_")]
    names = argv or sorted(found, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    for name in names:
        if name not in found:
            print(f"no benchmark named {name!r}; have: {', '.join(sorted(found))}", file=sys.stderr)
            return 2
    for name in names:
        print(f"\n== {name} ==", flush=True)
        started = time.perf_counter()
        importlib.import_module(f"bench.bench_{name}").main()
        print(f"({name}: {time.perf_counter() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
