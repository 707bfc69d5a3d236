"""The public API of ``bus`` is what ``bus/__init__.py`` exports, and nothing slips in or out
unnoticed (httpx's tests/test_exported_members.py does the same)."""

from __future__ import annotations

import types

import bus
from bus import errors


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
