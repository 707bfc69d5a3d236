"""MISP and STIX 2.1: export bulletins, import events as drafts, bridge to a MISP server.

One module, one idea::

    mapping.py   the shared vocabulary: TLP, Admiralty, precedence, ids, times (pure)
    source.py    what an imported MISP event or STIX report says, before any rule (pure)
    handling.py  the handling rules of exchange: who an export may reach, and the TLP and
                 releasability a draft gets from its source (pure)
    misp.py      bulletin -> MISP event, MISP JSON -> sources (PyMISP)
    stix.py      bulletin -> STIX 2.1 bundle, STIX bundle -> sources (stix2)
    export.py    one or many bulletins -> a MISP or STIX document, the rules applied
    importer.py  a file's bytes -> draft proposals (format detected, rules applied)
    bridge.py    the centre's live link to a MISP server (PyMISP's REST client)

``schemas/MAPPING.md`` is the mapping in prose. PyMISP and stix2 come with the optional
``exchange`` extra; ``mapping``, ``source`` and ``handling`` need neither, and the
modules that do raise ``ExchangeError`` (reason ``exchange_missing``) naming the extra
when it is missing, so the rest of the node never needs them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from office_node.errors import ExchangeError

FORMATS = ("misp", "stix")
EXTRA_HINT = "pip install 'blo-bus[exchange]' (make run and make test install it)"


def require(module: str) -> ModuleType:
    """Import a library of the ``exchange`` extra, or say which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExchangeError(
            f"MISP/STIX exchange needs {module.split('.')[0]}, which is not installed: {EXTRA_HINT}",
            "exchange_missing",
        ) from None
