"""The project's own import graph: no cycles, and the layers point one way.

Every ``.py`` under ``zoo/``, ``converters/`` and ``bench/`` is parsed (never imported);
an edge is any ``import X`` / ``from X import Y`` naming another project module, at module
level, inside ``if TYPE_CHECKING:`` or inside a function. Importing ``a.b`` also runs
``a/__init__.py``; that implicit edge is left out, as every package with an ``__init__``
that imports its submodules would otherwise be a cycle.

Layers: ``zoo`` (the catalog) <- ``converters`` <- ``bench``.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("zoo", "converters", "bench")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    module_level: bool  # False: inside a function body (imported when it runs)
    in_main: bool = False  # inside a function named ``main``: a ``python -m`` entry point


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` refers to (``a.b.func`` -> ``a.b``), or None."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imported_names(node: ast.AST, module: str, is_package: bool,
                    modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        package = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    # `from pkg import sub` names the submodule when there is one
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def _walk(node: ast.AST, function: str = ""):
    """Every node, with the name of the outermost function it is in ("" at module level)."""
    for child in ast.iter_child_nodes(node):
        yield child, function
        inner = function
        if not function and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inner = child.name
        elif not function and isinstance(child, ast.Lambda):
            inner = "<lambda>"
        yield from _walk(child, inner)


def import_edges() -> list[Edge]:
    modules = project_modules()
    edges = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, function in _walk(tree):
            for name in _imported_names(node, module, path.name == "__init__.py", modules):
                target = _resolve(name, modules)
                if target and target != module:
                    edges.append(Edge(module, target, node.lineno, not function,
                                      function == "main"))
    return edges


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _describe(component: list[str], edges: list[Edge]) -> str:
    inside = [e for e in edges if e.source in component and e.target in component]
    return "; ".join(f"{e.source}:{e.line} -> {e.target}"
                     f"{'' if e.module_level else ' (in a function)'}" for e in inside)


def test_the_parser_sees_the_imports_it_should():
    edges = {(e.source, e.target) for e in import_edges()}
    assert ("zoo.catalog", "zoo.registry") in edges  # module level
    assert ("bench.latency.report", "bench.latency.markdown") in edges
    assert ("zoo.__main__", "zoo.weights") in edges  # inside a function
    assert len(project_modules()) > 50


def test_no_module_level_import_cycles():
    edges = [e for e in import_edges() if e.module_level]
    assert not (found := cycles(edges)), [_describe(c, edges) for c in found]


def test_no_import_cycles_counting_imports_inside_functions():
    """A function-level import hides a cycle from Python, not from the design: the two
    modules still cannot be understood (or moved) one without the other.

    Left out: imports inside ``main()``. A module's ``main`` is its ``python -m`` entry
    point, handing over to its package's command table (``bench.cli``), which lists every
    command by nature; the module's own code does not depend on that table.
    """
    edges = [e for e in import_edges() if not e.in_main]
    assert not (found := cycles(edges)), [_describe(c, edges) for c in found]


def test_layers_point_one_way():
    """The catalog needs neither the converters nor the benchmarks; converters never
    need the benchmarks (module level and inside functions both)."""
    forbidden = {"zoo": ("converters", "bench"), "converters": ("bench",)}
    wrong = [f"{e.source}:{e.line} imports {e.target}" for e in import_edges()
             for layer, above in forbidden.items()
             if e.source.split(".")[0] == layer and e.target.split(".")[0] in above]
    assert not wrong, wrong
