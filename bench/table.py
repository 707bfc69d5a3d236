"""Plain-text tables and a steady timing loop shared by the benchmarks."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence


def paired_rates(fns: Sequence[Callable[[], object]], *, seconds: float = 0.4, repeats: int = 5) -> list[float]:
    """Calls per second of each of ``fns``: the best of ``repeats`` rounds, each round
    timing every function for about ``seconds`` in turn, so that the load of a shared
    machine weighs on all of them alike rather than on whichever ran last.

    Best-of, because on a shared 2-core machine noise only ever makes things slower.
    """
    batches = []
    for fn in fns:  # calibrate each batch to about a tenth of a run
        n = 1
        while True:
            t = time.perf_counter()
            for _ in range(n):
                fn()
            if time.perf_counter() - t > seconds / 10:
                break
            n *= 2
        batches.append(n)
    best = [0.0] * len(fns)
    gc.collect()
    for _ in range(repeats):
        for i, (fn, n) in enumerate(zip(fns, batches, strict=True)):
            t = time.perf_counter()
            done = 0
            while time.perf_counter() - t < seconds:
                for _ in range(n):
                    fn()
                done += n
            best[i] = max(best[i], done / (time.perf_counter() - t))
    return best


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for i, row in enumerate(cells):
        print("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)
