"""Every public module declares __all__, and every name in it resolves and is documented."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import holdca

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(holdca.__path__, "holdca.")
    if not any(part.startswith("_") for part in m.name.split("."))
)


@pytest.mark.parametrize("name", MODULES)
def test_module_declares_documented_all(name: str) -> None:
    """Each public module has a docstring and an __all__ of documented, resolvable names."""
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no module docstring"
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    for attr in module.__all__:
        obj = getattr(module, attr)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"{name}.{attr} has no docstring"
