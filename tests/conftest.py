"""Fixtures shared across stages: synthetic data made once per test session."""

from __future__ import annotations

import signal

import pytest

# A test run started in the background by a non-interactive shell (`python -m pytest &`, nohup)
# inherits SIGINT ignored, and so would every subprocess it starts: Ctrl-C could not be tested.
# Deliver it as a terminal does (subprocesses then start with the default, as a user's would).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory):
    """A small synthetic corpus in the Clotho v2.1 layout (some clips > 10 s for multi-window paths)."""
    from audioret.corpora import synthesize

    return synthesize(tmp_path_factory.mktemp("synth_corpus"), n_dev=24, n_val=8, n_eval=12,
                      seed=0, long_fraction=0.2)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny heads gain nothing from intra-op threads; on a shared 2-core box they thrash (25x slower
    backward). Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
