"""Imports follow the data flow (corpus -> extract -> store -> train_heads / finetune -> evaluate):
store/ imports nothing of ours, evaluate/ no training code, and no two packages import each other,
not even inside functions. Read from the sources (every import statement, at any depth)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# installed package -> source folder (pyproject's package-dir); audioret/ itself holds the shared
# helpers (config, errors, logs, resources) and the apps that wire every stage (cli, demo).
PACKAGES = {"audio": "audio", "corpora": "corpora", "encoders": "encoders", "extract": "extract",
            "store": "store", "train_heads": "train_heads", "finetune": "finetune", "evaluate": "evaluate",
            "models": "models", "distill": "distill", "audioret": "audioret"}
APPS = {"audioret/cli.py", "audioret/demo.py", "audioret/__main__.py"}
# Known, filed as issue 20 (distillation sits on top of training instead of beside it).
KNOWN_CYCLES = {frozenset({"finetune", "distill"}), frozenset({"train_heads", "distill"})}


def _imported_packages(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] != "audioret":
                continue
            out.add(parts[1] if len(parts) > 1 and parts[1] in PACKAGES else "audioret")
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for pkg, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if rel in APPS or "fixtures" in path.parts:
                continue
            graph[pkg] |= _imported_packages(path) - {pkg}
    return graph


GRAPH = _graph()


def test_store_imports_nothing_of_ours():
    assert GRAPH["store"] == set()


def test_evaluate_imports_no_training_code():
    assert GRAPH["evaluate"] & {"train_heads", "finetune", "distill", "extract"} == set()


@pytest.mark.parametrize("a", sorted(PACKAGES))
def test_no_two_packages_import_each_other(a):
    cycles = {b for b in GRAPH[a] if a in GRAPH[b] and frozenset({a, b}) not in KNOWN_CYCLES}
    assert not cycles, f"{a} and {sorted(cycles)} import each other"
