"""Imports around audioret.search: it sits on top (evaluate, store, encoders, models, audio, corpora
and the shared helpers), and no package imports it; only the apps (cli, demo) call it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ["audio", "audioret", "corpora", "distill", "encoders", "evaluate", "extract", "finetune", "models",
           "report", "store", "train_heads"]
APPS = {"audioret/cli.py", "audioret/demo.py", "audioret/__main__.py"}
PACKAGES = set(FOLDERS) - {"audioret"} | {"search"}
ALLOWED = {"audioret", "evaluate", "store", "encoders", "models", "audio", "corpora", "search"}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
        for n in names:
            parts = n.split(".")
            if parts[0] == "audioret":
                out.add(parts[1] if len(parts) > 1 and parts[1] in PACKAGES else "audioret")
    return out


def test_nothing_imports_search():
    users = sorted(p.relative_to(ROOT).as_posix() for f in FOLDERS if (ROOT / f).is_dir()
                   for p in (ROOT / f).rglob("*.py")
                   if p.relative_to(ROOT).as_posix() not in APPS and "search" in _imports(p))
    assert users == []


def test_search_imports_only_what_it_sits_on():
    used = set().union(*(_imports(p) for p in (ROOT / "search").rglob("*.py")))
    assert used <= ALLOWED, sorted(used - ALLOWED)
