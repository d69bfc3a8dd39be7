"""Pure pieces of extract/: shard resolution, planning arithmetic, batching."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from audioret.audio import load_audio
from audioret.extract.data import fit_length, window_batches
from audioret.extract.pipeline import audio_batches, sorted_batches, text_pools, todo_mask
from audioret.extract.plan import audio_rows, num_parts_for, planned_samples
from audioret.extract.shard import Shard, parts_of_shard, resolve_shard


def test_shard_sources_and_priority():
    assert resolve_shard(None, None, {}) == Shard(0, 1, "single")
    assert resolve_shard(None, None, {"RANK": "3", "WORLD_SIZE": "4"}) == Shard(3, 4, "torchrun")
    slurm = {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_COUNT": "5"}
    assert resolve_shard(None, None, slurm) == Shard(2, 5, "slurm-array")
    assert resolve_shard(4, 1, {"RANK": "0", "WORLD_SIZE": "2"}) == Shard(1, 4, "flags")
    with pytest.raises(ValueError, match="not in"):
        resolve_shard(2, 2, {})
    with pytest.raises(ValueError, match="SLURM array"):
        resolve_shard(None, None, {**slurm, "SLURM_ARRAY_TASK_ID": "20"})


def test_parts_round_robin_cover_every_part_once():
    owned = [parts_of_shard(7, Shard(i, 3, "flags")) for i in range(3)]
    assert sorted(p for o in owned for p in o) == list(range(7))
    assert owned[0] == [0, 3, 6]


@pytest.mark.parametrize("rate", [44100, 22050, 48000, 16000, 8000])
@pytest.mark.parametrize("seconds", [0.37, 3.0, 10.0, 12.345])
def test_planned_samples_equal_decoded_length(tmp_path, rate, seconds):
    path = tmp_path / "x.wav"
    n = int(seconds * rate)
    sf.write(str(path), np.random.default_rng(0).uniform(-0.5, 0.5, n).astype(np.float32), rate)
    assert planned_samples(n, rate, 16000, None) == load_audio(path, 16000).shape[0]
    cap = 5 * 16000
    assert planned_samples(n, rate, 16000, cap) == load_audio(path, 16000, max_samples=cap).shape[0]


def test_audio_rows_and_fit_length():
    frames_of = lambda v: -(-v // 2580)  # any monotone rule; the real one comes from the encoder
    assert audio_rows(160000, 160000, frames_of) == (frames_of(160000), 1)
    assert audio_rows(160001, 160000, frames_of) == (frames_of(160000) + frames_of(1), 2)
    assert audio_rows(0, 160000, frames_of) == (0, 1)
    import torch
    assert fit_length(torch.ones(5), 3).tolist() == [1, 1, 1]
    assert fit_length(torch.ones(2), 4).tolist() == [1, 1, 0, 0]


def test_window_batches_keep_order_and_budget():
    windows = np.array([1, 3, 2, 5, 1, 1, 0])
    batches = window_batches(range(7), windows, 4)
    assert [i for b in batches for i in b] == list(range(7))
    assert all(windows[b].sum() <= 4 or len(b) == 1 for b in batches)
    assert [3] in batches  # a clip above the budget is alone


def test_resumed_batches_equal_uninterrupted_ones():
    windows = np.array([2, 1, 3, 1, 2, 2, 1, 1])
    full = audio_batches([(0, 0, 0, 4), (1, 4, 4, 8)], windows, 3)
    resumed = audio_batches([(0, 0, 3, 4), (1, 4, 4, 8)], windows, 3)  # part 0 had 3 items durable
    assert all(b in full for b in resumed) and resumed[-1] == full[-1]
    assert any(3 in b for b in resumed) and todo_mask(8, [(0, 0, 3, 4)]).tolist() == [0, 0, 0, 1, 0, 0, 0, 0]
    pools = text_pools([(0, 0, 5, 10)], batch=2, pool_batches=2)
    assert pools == [[4, 5, 6, 7], [8, 9]]


def test_sorted_batches_bucket_by_length():
    lengths = np.array([9, 3, 7, 3, 12, 5])
    batches = sorted_batches(range(6), lengths, 2)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert [lengths[b].max() for b in batches] == sorted(lengths[b].max() for b in batches)
    assert num_parts_for(10, 4) == 3 and num_parts_for(0, 4) == 1
