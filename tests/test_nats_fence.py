"""The NATS boundary holds: only ``bus/transport/client.py`` and its two helpers
(``nats_errors.py``, ``nats_private.py``) import nats-py, and only ``nats_private.py``
touches its private attributes (bench/ keeps raw nats-py: it is the baseline)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOUNDARY = {"bus/transport/client.py", "bus/transport/nats_errors.py", "bus/transport/nats_private.py"}
#: nats-py's private names this project uses; each belongs to nats_private.py alone.
PRIVATE = {"_send_command", "_flush_pending", "_flush_queue", "_ackd", "_client", "_prefix"}


def _sources() -> list[tuple[str, ast.Module]]:
    files = sorted([*ROOT.joinpath("bus").rglob("*.py"), *ROOT.joinpath("office_node").rglob("*.py")])
    return [(str(p.relative_to(ROOT)), ast.parse(p.read_text(), str(p))) for p in files]


def _imports_nats(tree: ast.Module) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "nats" or a.name.startswith("nats.") for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "nats" or node.module.startswith("nats."):
                lines.append(node.lineno)
    return lines


def test_no_module_outside_the_nats_boundary_imports_nats_py() -> None:
    sources = _sources()
    assert len(sources) > 50  # the walk found the packages
    leaks = {path: lines for path, tree in sources if path not in BOUNDARY and (lines := _imports_nats(tree))}
    assert leaks == {}, f"import nats-py only in {sorted(BOUNDARY)}; route these through bus.transport.client"
    assert all(_imports_nats(tree) for path, tree in sources if path in BOUNDARY)


def test_nats_py_private_attributes_are_named_only_in_nats_private() -> None:
    named = {path: _private_uses(tree) for path, tree in _sources() if path != "bus/transport/nats_private.py"}
    assert {path: attrs for path, attrs in named.items() if attrs} == {}


def _private_uses(tree: ast.Module) -> list[str]:
    """nats-py's private names read on anything but ``self`` (a class's own ``self._client``
    is its own attribute)."""
    return sorted(
        {
            n.attr
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute)
            and n.attr in PRIVATE
            and not (isinstance(n.value, ast.Name) and n.value.id == "self")
        }
    )


def test_the_fence_check_sees_each_form_of_import_and_private_use() -> None:
    tree = ast.parse("import nats\nimport nats.errors as e\nfrom nats.js import api\nfrom . import nats\nimport natsort\n")
    assert _imports_nats(tree) == [1, 2, 3]
    assert _private_uses(ast.parse("js._prefix\nmsg._ackd = True\nself._client\nnc.publish")) == ["_ackd", "_prefix"]
