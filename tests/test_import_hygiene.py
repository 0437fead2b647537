"""Import hygiene of the holdca package, read from the source with :mod:`ast` (nothing imported).

* No module imports another module's private (single leading underscore) names: shared
  helpers are public names of a module that owns them (for the PKI profile rules,
  :mod:`holdca.pki.rules`).
* The runtime import graph of holdca's modules has no cycles (imports under
  ``if TYPE_CHECKING:`` are not executed and do not count; imports inside functions do:
  they are cycles deferred, not removed), and :mod:`holdca.pki.template` never imports
  :mod:`holdca.pki.issue`.

The oracle is the source tree itself, walked with :mod:`pathlib`; the module names are the
file paths.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "holdca"

# Existing cross-module imports of a private name, exempted explicitly.
EXEMPT_PRIVATE: frozenset[tuple[str, str, str]] = frozenset(
    {
        # holdca.keys._p11 is a private *submodule* (the python-pkcs11 binding) loaded lazily
        # by its one user, so that the optional dependency is imported only when needed.
        ("holdca.keys.pkcs11", "holdca.keys", "_p11"),
    }
)

# Existing import edges that close a cycle outside holdca.pki, exempted explicitly (each is
# a lazy import inside a function, so the cycle is deferred, not removed).
EXEMPT_EDGES: frozenset[tuple[str, str]] = frozenset(
    {
        # holdca.cli.trust imports its subcommand modules trustadd and trustedit inside its
        # handlers, and they import trust's helpers at module level.
        ("holdca.cli.trust", "holdca.cli.trustadd"),
        ("holdca.cli.trust", "holdca.cli.trustedit"),
    }
)


@dataclass(frozen=True)
class Module:
    """One source file: its dotted name, whether it is a package ``__init__``, its AST."""

    name: str
    is_package: bool
    tree: ast.Module


def _modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.with_suffix("").relative_to(PACKAGE.parent).parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        found[name] = Module(name, is_package, ast.parse(path.read_text("utf-8"), str(path)))
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST, *, runtime_only: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in ``node`` (optionally skipping ``if TYPE_CHECKING:`` bodies)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
        return
    if runtime_only and isinstance(node, ast.If) and _is_type_checking(node.test):
        children: list[ast.AST] = list(node.orelse)
    else:
        children = list(ast.iter_child_nodes(node))
    for child in children:
        yield from _imports(child, runtime_only=runtime_only)


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    """The absolute module name an ``ImportFrom`` reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.name.split(".")
    if not module.is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _targets(module: Module, *, runtime_only: bool) -> set[str]:
    """The holdca modules ``module`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    out: set[str] = set()
    for node in _imports(module.tree, runtime_only=runtime_only):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name in MODULES)
            continue
        source = _absolute(module, node)
        if source not in MODULES:
            continue
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            out.add(sub if sub in MODULES else source)
    out.discard(module.name)
    return out


def _private_imports() -> list[tuple[str, str, str]]:
    found = []
    for module in MODULES.values():
        for node in _imports(module.tree, runtime_only=False):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _absolute(module, node)
            if not (source == "holdca" or source.startswith("holdca.")) or source == module.name:
                continue
            for alias in node.names:
                name = alias.name
                if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                    found.append((module.name, source, name))
    return sorted(found)


def test_the_scan_sees_the_package() -> None:
    """The walk found the modules this test is about (a wrong root would pass vacuously)."""
    assert {"holdca.pki.issue", "holdca.pki.template", "holdca.pki.rules"} <= set(MODULES)
    assert "holdca.pki.issue" in _targets(MODULES["holdca.pki"], runtime_only=True)


def test_no_module_imports_another_modules_private_names() -> None:
    """``from holdca.x import _name`` across modules only where exempted above."""
    offending = [hit for hit in _private_imports() if hit not in EXEMPT_PRIVATE]
    assert offending == [], "\n".join(f"{m}: from {s} import {n}" for m, s, n in offending)


def test_the_exemptions_are_still_needed() -> None:
    """An exemption that no longer matches anything is removed, not left to hide a new one."""
    assert set(_private_imports()) >= EXEMPT_PRIVATE


def _graph(package: str) -> dict[str, set[str]]:
    """The runtime import graph among the non-package modules under ``package``."""
    leaves = {
        name: module
        for name, module in MODULES.items()
        if not module.is_package and (name == package or name.startswith(package + "."))
    }
    return {
        name: {t for t in _targets(module, runtime_only=True) if t in leaves}
        for name, module in leaves.items()
    }


def test_the_exempted_edges_still_exist() -> None:
    """An exempted import edge that is gone is removed from EXEMPT_EDGES too."""
    graph = _graph("holdca")
    assert {(a, b) for a, b in EXEMPT_EDGES if b in graph.get(a, set())} == EXEMPT_EDGES


def test_template_does_not_import_issue() -> None:
    """holdca.pki.template builds on holdca.pki.rules, never on holdca.pki.issue."""
    assert "holdca.pki.issue" not in _targets(MODULES["holdca.pki.template"], runtime_only=False)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or None (iterative DFS)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for start in sorted(graph):
        if start in state:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        state[start] = 1
        while stack:
            node, successors = stack[-1]
            for nxt in successors:
                if state.get(nxt) == 1:
                    names = [name for name, _ in stack]
                    return [*names[names.index(nxt) :], nxt]
                if nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
            else:
                state[node] = 2
                stack.pop()
    return None


def test_cycle_finder_finds_cycles() -> None:
    """The cycle finder itself: it reports a planted cycle and passes an acyclic graph."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("package", ["holdca.pki", "holdca"])
def test_no_import_cycles_between_modules(package: str) -> None:
    """No cycle among the (non-package) modules under ``package``, lazy imports included.

    Package ``__init__`` modules are left out: they re-export their submodules, and a
    submodule importing a sibling through the package is not a cycle between modules.
    """
    graph = {
        name: {t for t in targets if (name, t) not in EXEMPT_EDGES}
        for name, targets in _graph(package).items()
    }
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
