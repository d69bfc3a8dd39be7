"""The package installs under one namespace: never a top-level `extract`, `store`, ... module."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

FORBIDDEN = ("extract", "store", "evaluate", "finetune", "train_heads", "encoders", "corpora", "audio")
STAGES = ("extract", "store", "evaluate", "finetune", "train_heads", "encoders", "corpora", "audio")


def test_distribution_declares_only_the_audioret_top_level(tmp_path):
    # Read the installed metadata from an empty folder: in the checkout, the source tree's
    # own egg-info would shadow what pip installed.
    code = ("import importlib.metadata as md; d = md.distribution('audioret'); "
            "print((d.read_text('top_level.txt') or '').split()); "
            "print([str(f) for f in d.files or []])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    top_level_line, files_line = out.stdout.splitlines()[:2]
    assert eval(top_level_line) == ["audioret"]
    for name in FORBIDDEN:
        assert f"'{name}/" not in files_line and f"'{name}.py'" not in files_line, files_line


@pytest.mark.parametrize("stage", STAGES)
def test_stage_imports_under_namespace(stage):
    mod = importlib.import_module(f"audioret.{stage}")
    assert mod.__name__ == f"audioret.{stage}"


def test_no_top_level_stage_module_outside_the_checkout(tmp_path):
    # Run from an empty folder so the checkout's own folders are not on sys.path.
    code = ("import importlib.util, sys; "
            f"bad=[n for n in {FORBIDDEN!r} if importlib.util.find_spec(n) is not None "
            "and 'audioret' in str(importlib.util.find_spec(n).origin or importlib.util.find_spec(n).submodule_search_locations)]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
