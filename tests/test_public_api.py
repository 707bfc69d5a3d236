"""The public API of ``bus`` is what ``bus/__init__.py`` exports, and nothing slips in or out
unnoticed (httpx's tests/test_exported_members.py does the same)."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import bus
from bus import errors
from office_node import errors as node_errors


def test_every_exported_name_exists_and_the_list_is_exactly_the_module_names() -> None:
    exported = set(bus.__all__)
    assert len(exported) == len(bus.__all__), "a name is listed twice"
    # submodules are reachable as attributes once imported; they are not members
    public = {n for n in dir(bus) if not n.startswith("_") and not isinstance(getattr(bus, n), types.ModuleType)}
    assert exported == public


def test_every_error_the_bus_raises_on_purpose_is_a_blo_error_with_a_reason() -> None:
    classes = [getattr(errors, n) for n in dir(errors) if isinstance(getattr(errors, n), type)]
    for cls in classes:
        if issubclass(cls, Exception) and cls.__module__ == "bus.errors":
            assert issubclass(cls, errors.BloError), cls
            assert isinstance(cls.reason, str) and cls.reason, cls


def test_the_error_tree_drawing_names_every_error_class() -> None:
    drawing = errors.__doc__ or ""
    for name in dir(errors):
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, errors.BloError) and cls.__module__ == "bus.errors":
            assert name in drawing, f"{name} is missing from the tree in bus/errors.py's docstring"


def test_the_office_nodes_errors_are_one_branch_of_the_same_tree_and_drawn() -> None:
    drawing = node_errors.__doc__ or ""
    own = [c for c in vars(node_errors).values() if isinstance(c, type) and c.__module__ == "office_node.errors"]
    assert own, "office_node/errors.py defines no error"
    for cls in own:
        assert issubclass(cls, errors.BloError) and cls.reason, cls
        assert cls.__name__ in drawing, f"{cls.__name__} is missing from the tree in office_node/errors.py"


def test_bus_knows_nothing_of_http_or_the_office_node() -> None:
    """The HTTP status is the API's choice: no bus error carries one, and bus never imports
    office_node (its errors included)."""
    for name in dir(errors):
        cls = getattr(errors, name)
        if isinstance(cls, type) and issubclass(cls, errors.BloError):
            assert not hasattr(cls, "status"), cls
    for path in Path(bus.__file__).parent.rglob("*.py"):
        assert "office_node" not in {
            (node.module or "").split(".")[0]
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom)
        } | {
            a.name.split(".")[0]
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Import)
            for a in node.names
        }, path


def test_every_refusal_gets_the_status_that_says_who_must_act() -> None:
    assert node_errors.http_status(node_errors.RateLimited("m", 5)) == 429
    assert node_errors.http_status(node_errors.Forbidden("m")) == 403
    assert node_errors.http_status(node_errors.NotAuthenticated("m")) == 401
    assert node_errors.http_status(errors.ValidationError("f", "p")) == 400
    assert node_errors.http_status(errors.NotFound("m")) == 404
    assert node_errors.http_status(errors.FromFuture("m")) == 422
    assert node_errors.http_status(errors.AttachmentTooLarge("m")) == 413
    assert node_errors.http_status(errors.UnknownMediaType("m")) == 415
    assert node_errors.http_status(errors.AttachmentCorrupt("m")) == 422
    assert node_errors.http_status(node_errors.ExchangeError("m")) == 503
    assert node_errors.http_status(errors.NotConnected("m")) == 503
    assert node_errors.http_status(errors.StoreError("m")) == 500


def test_the_transport_exports_exactly_what_it_lists() -> None:
    import bus.transport as transport

    exported = set(transport.__all__)
    assert len(exported) == len(transport.__all__), "a name is listed twice"
    public = {
        n for n in dir(transport) if not n.startswith("_") and not isinstance(getattr(transport, n), types.ModuleType)
    }
    assert exported == public


def test_the_office_node_uses_bus_only_through_its_public_surface() -> None:
    """office_node imports from ``bus`` (the pure core), ``bus.transport`` (the NATS shell)
    and ``bus.errors`` (the error tree), and only names they export: a module of bus can be
    split, renamed or sped up without touching the node."""
    import bus.transport as transport

    surface = {"bus": set(bus.__all__) | {"errors"}, "bus.transport": set(transport.__all__), "bus.errors": None}
    root = Path(__file__).parent.parent / "office_node"
    wrong = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                wrong += [f"{path.name}: import {a.name}" for a in node.names if a.name.startswith("bus.")]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "bus":
                allowed = surface.get(node.module or "", set())
                if allowed is None:
                    continue
                wrong += [
                    f"{path.name}: from {node.module} import {a.name}" for a in node.names if a.name not in allowed
                ]
    assert not wrong, "\n".join(wrong)


def test_the_pure_core_loads_no_network_library() -> None:
    code = "import sys, bus; sys.exit(sorted(m for m in sys.modules if m.split('.')[0] in ('nats', 'aiohttp')) != [])"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent, timeout=60).returncode == 0
