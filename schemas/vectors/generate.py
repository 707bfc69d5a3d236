"""Writes every family of test vectors: ``.venv/bin/python schemas/vectors/generate.py``.

Each folder here (``envelope/``, ``directory/``, ``feeds/``, ...) holds one family of
vectors and its own ``generate.py`` with a ``main()``; this runs them all, in name order.
Run it after any intended change to a format and commit the result.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    sys.path.insert(0, str(HERE.parent.parent))  # the checkout, for `bus`
    for script in sorted(HERE.glob("*/generate.py")):
        spec = importlib.util.spec_from_file_location(f"blo_vectors_{script.parent.name}", script)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.main()


if __name__ == "__main__":
    main()
