"""Imports follow the data flow (corpus -> extract -> store -> train_heads / finetune -> distill; evaluate
reads models and stores): store/ imports nothing of ours, evaluate/ no training code, and no cycle between
packages, of any length, not even through imports inside functions. Within store/, no cycle between its
modules either. Read from the sources: every import statement at any depth (module level, functions,
``if TYPE_CHECKING:``), relative ones resolved."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# installed package -> source folder (pyproject's package-dir); audioret/ itself holds the shared
# helpers (config, errors, logs, resources) and the apps that wire every stage (cli, demo).
PACKAGE_DIRS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
PACKAGES = {name.split(".")[-1] if name != "audioret" else "audioret": folder for name, folder in PACKAGE_DIRS.items()}
APPS = {"audioret/cli.py", "audioret/demo.py", "audioret/__main__.py"}


def _module_files() -> dict[str, Path]:
    """Dotted module name (``audioret.store.core``; a package's ``__init__`` is the package) -> file."""
    out = {}
    for name, folder in PACKAGE_DIRS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            if "fixtures" in rel.parts or any(p.startswith(".") for p in rel.parts):
                continue
            parts = [p for p in rel.parts if p != "__init__"]
            if len(parts) > 1 and (name, parts[0]) in ((n, n.split(".")[-1]) for n in PACKAGE_DIRS):
                continue  # a sub-folder that is itself a listed package (none today)
            out[".".join([name, *parts])] = path
    return out


MODULES = _module_files()


def _resolve(module: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> list[str]:
    """Every dotted name this statement imports (``from .x import y`` in ``a.b.c`` -> a.b.x, or a.b.x.y when
    that is a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    # ``from pkg import sub`` imports the submodule; ``from pkg import name`` the package's own module
    return [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix for a in node.names]


def _target(name: str) -> str | None:
    """The module of ours a dotted name lands in (``audioret.store.core.open_store`` -> audioret.store.core)."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in MODULES:
            return ".".join(parts)
        parts.pop()
    return None


def _module_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= {t for n in _resolve(module, is_package, node) if (t := _target(n)) and t != module}
        graph[module] = edges
    return graph


MODULE_GRAPH = _module_graph()


def _package_of(module: str) -> str:
    best = max((n for n in PACKAGE_DIRS if module == n or module.startswith(n + ".")), key=len)
    return best.split(".")[-1] if best != "audioret" else "audioret"


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for module, edges in MODULE_GRAPH.items():
        if MODULES[module].relative_to(ROOT).as_posix() in APPS:
            continue
        pkg = _package_of(module)
        graph[pkg] |= {_package_of(t) for t in edges} - {pkg}
    return graph


GRAPH = _package_graph()


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _edges_within(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    return [f"{a} -> {b}" for a in comp for b in sorted(graph[a]) if b in comp]


def test_the_walker_sees_imports_inside_functions_and_relative_ones():
    """The graph is only as good as the walk: a function-level import and a TYPE_CHECKING one count."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "audioret.store.core" in MODULE_GRAPH["audioret.store.verify"]   # from .core import ...
    assert "audioret.store.verify" in MODULE_GRAPH["audioret.store"]        # inside verify_store()
    assert {"store", "models"} <= GRAPH["train_heads"] and "distill" not in GRAPH["train_heads"]
    assert {"train_heads", "finetune"} <= GRAPH["distill"]                  # distill sits on top


def test_store_imports_nothing_of_ours():
    assert GRAPH["store"] == set()


def test_evaluate_imports_no_training_code():
    assert GRAPH["evaluate"] & {"train_heads", "finetune", "distill", "extract"} == set()


def test_models_import_no_stage():
    """models/ (heads, checkpoints, the teachers artifact) sits below every stage that uses it."""
    assert GRAPH["models"] & {"extract", "train_heads", "finetune", "evaluate", "distill"} == set()


def test_no_cycle_between_packages():
    found = cycles(GRAPH)
    assert not found, "packages import each other: " + "; ".join(
        f"{' <-> '.join(c)} ({', '.join(_edges_within(GRAPH, c))})" for c in found)


@pytest.mark.parametrize("package", ["store"])
def test_no_cycle_between_modules_of(package):
    prefix = f"audioret.{package}"
    sub = {m: {t for t in e if t == prefix or t.startswith(prefix + ".")} for m, e in MODULE_GRAPH.items()
           if m == prefix or m.startswith(prefix + ".")}
    found = cycles(sub)
    assert not found, f"modules of {package}/ import each other: " + "; ".join(
        ", ".join(_edges_within(sub, c)) for c in found)
