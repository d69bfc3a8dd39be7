"""``extract --compile``: the compiled audio encoder gives the eager features (fp32 rounding apart),
compiles once for the whole run (batches padded to --batch-windows: one shape), does not change the
store's identity (a store half extracted eager is finished compiled), and a toolchain that cannot
compile stops the run at start with one line. torch.compile on CPU costs tens of seconds: one test
compiles, the other fails in the compiler check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audioret.extract import ExtractConfig, run
from audioret.extract.cli import main
from audioret.store import open_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPLIT = "val"
# float32 on disk: the comparison sees the encoder's own rounding, not fp16's (4e-3 at |x| = 4)
COMMON = dict(corpus="clotho", splits=(SPLIT,), passes=("audio",), audio_encoder="tiny-beats", device="cpu",
              items_per_part=2, batch_windows=4, num_workers=0, progress=False, dtype="float32")
# Compiled vs eager BEATs on CPU (inductor fuses the fbank's elementwise steps and reorders fp32
# reductions), max abs difference of the stored frames / window means, measured once on this
# project's 2-core Xeon (AVX-512), batch 8 of 10 s windows:
#   random-noise windows:           tiny-beats 4.2e-6 / 1.9e-6, full cpt2 shape (randomize_) 3.3e-6 / 2.6e-6
#   synthetic-corpus windows (tones, silence; what this test feeds):
#                                   tiny-beats 1.3e-4 / 6.1e-6, full cpt2 shape (randomize_) 7.4e-5 / 6.2e-6
# The tones dominate: log-mel bins near the FFT's fp32 noise floor move by up to 5e-3 in the fbank
# alone (log of a tiny energy), and the encoder carries part of that to the frames. The bound is
# 7x the worst of those, and half the spacing of the default fp16 store at |x| = 2-4 (2e-3):
# a compiled run stores what an eager run stores, to about one fp16 rounding.
ATOL = 1e-3


def _config(corpus: Path, store: Path, **kw) -> ExtractConfig:
    return ExtractConfig(data_path=corpus, store=store, **{**COMMON, **kw})


def _audio(store: Path):
    table = open_store(store).items(SPLIT, "audio")
    table.require_complete()
    return table


@pytest.mark.slow
def test_compiled_equals_eager_in_one_compilation_and_resumes_an_eager_store(synth_corpus, tmp_path):
    from torch._dynamo.utils import counters

    eager = tmp_path / "eager.zarr"
    run(_config(synth_corpus, eager))
    # half the store eager (shard 0 of 2), then the whole split with --compile: it resumes, not refuses
    mixed = tmp_path / "mixed.zarr"
    half = run(_config(synth_corpus, mixed, num_shards=2, shard_index=0))
    assert 0 < half.stats[0].processed < half.stats[0].items
    captured = counters["stats"]["unique_graphs"]
    rest = run(_config(synth_corpus, mixed, compile=True))
    (stats,) = rest.stats
    assert stats.skipped == half.stats[0].processed and stats.processed == stats.items - stats.skipped > 0
    # compiled for real, once: chunks of 1-4 windows all ran as one padded [4, S] graph (no recompile)
    assert counters["stats"]["unique_graphs"] - captured == 1
    assert open_store(mixed).metadata["extract_config"]["compile"] is False  # the creating run's; not compared
    a, b = _audio(eager), _audio(mixed)
    assert a.ids == b.ids
    multi = 0
    for field in ("frames", "windows"):
        fa, oa, la = a.load(field)
        fb, ob, lb = b.load(field)
        assert np.array_equal(oa, ob) and np.array_equal(la, lb)
        np.testing.assert_allclose(fb, fa, rtol=0, atol=ATOL)
        multi += int((la > 1).sum()) if field == "windows" else 0
    assert multi > 0, "the corpus should hold clips of several windows (chunks of several sizes)"


def test_a_toolchain_that_cannot_compile_stops_at_start_with_one_line(synth_corpus, tmp_path, monkeypatch, capsys):
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", ("no-such-c++-compiler",))
    monkeypatch.setattr(inductor, "fx_graph_cache", False)  # a kernel cached by an earlier run needs no compiler
    store = tmp_path / "never.zarr"
    argv = ["--data-path", str(synth_corpus), "--store", str(store), "--corpus", "clotho", "--splits", SPLIT,
            "--passes", "audio", "--audio-encoder", "tiny-beats", "--device", "cpu", "--num-workers", "0",
            "--no-progress", "--compile"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line.lower()]  # the log lines before are INFO
    assert len(lines) == 1 and lines[0].startswith("audioret extract: error: --compile: torch.compile"), err
    assert "C++ compiler" in lines[0] and "without --compile" in lines[0] and "Traceback" not in err
    assert not (store / "zarr.json").exists()  # stopped before the store was made


def test_the_failure_line_blames_the_compiler_only_when_none_is_found(monkeypatch):
    """A missing compiler says install one; with the compiler present the line says the compiler is
    there (an op inductor cannot build is not fixed by installing g++)."""
    import sys

    import torch
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor import config as inductor

    from audioret.encoders.compiled import failure_message

    err = TorchDynamoException("some kernel failed\nlong IR ...")
    monkeypatch.setattr(inductor.cpp, "cxx", (None, "no-such-c++-compiler"))
    missing = failure_message(err, torch.device("cpu"))
    monkeypatch.setattr(inductor.cpp, "cxx", (None, sys.executable))  # any executable on disk
    present = failure_message(err, torch.device("cpu"))
    assert "install g++" in missing and "install g++" not in present
    assert sys.executable in present and "some kernel failed" in present and "\n" not in present
    assert "--compile" in missing and "without --compile" in present
