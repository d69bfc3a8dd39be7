"""Fixtures shared across stages: synthetic data made once per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory):
    """A small synthetic corpus in the Clotho v2.1 layout (some clips > 10 s for multi-window paths)."""
    from audioret.corpora import synthesize

    return synthesize(tmp_path_factory.mktemp("synth_corpus"), n_dev=24, n_val=8, n_eval=12,
                      seed=0, long_fraction=0.2)
