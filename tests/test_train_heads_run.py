"""train_heads: heads learn from a store, checkpoints load, sweeps write their table, streaming == memory."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from audioret.models import load_heads
from audioret.train_heads.cli import main
from audioret.train_heads.config import TrainHeadsConfig
from audioret.train_heads.data import CaptionBatches, shard_aware_order
from audioret.train_heads.run import Splits, choose_precision, expand_sweep, run
from audioret.train_heads.store_reader import StoreSplitReader, load_feature_split, write_feature_split
from audioret.train_heads.synthetic import chance_map_at_10, synthetic_split

SMALL = ["--embed-dim", "64", "--hidden-dim", "128", "--batch-size", "32", "--no-progress", "--logger", "none"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def splits():
    return {"dev": synthetic_split("dev", 240, seed=1), "val": synthetic_split("val", 80, seed=2),
            "eval": synthetic_split("eval", 80, seed=3)}


@pytest.fixture(scope="module")
def store(tmp_path_factory, splits):
    path = tmp_path_factory.mktemp("store") / "synth.zarr"
    for s in splits.values():
        write_feature_split(path, s)
    return path


def test_heads_learn_far_above_chance_and_beat_nothing_less_than_a_floor(splits, tmp_path):
    cfg = TrainHeadsConfig(out=tmp_path, max_epochs=4, warmup_epochs=1, rampdown_epochs=3, embed_dim=64,
                           hidden_dim=128, batch_size=32, progress=False, logger="none", floor="ridge")
    results = run(cfg, Splits(splits["dev"], {"val": splits["val"], "test": splits["eval"]}, {"path": "memory"}))
    heads, floor = results
    chance = chance_map_at_10(80)  # 0.037
    assert heads.metrics["test/mAP@10"] > 0.35 > 9 * chance  # measured about 0.6 on this data
    assert floor.metrics["test/mAP@10"] > 5 * chance  # the closed-form floor also learns
    assert (tmp_path / "heads.pt").is_file() and (tmp_path / "sweep.csv").is_file()


def test_cli_trains_from_store_to_loadable_checkpoints_and_sweep_table(store, tmp_path, splits):
    out = tmp_path / "sweep"
    rc = main(["--store", str(store), "--out", str(out), "--max-epochs", "2", "--rampdown-epochs", "1",
               "--seeds", "1", "2", "--floor", "none", *SMALL])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert [r["run"] for r in rows] == ["seed=1", "seed=2"]
    assert all(float(r["test/mAP@10"]) > 0 for r in rows)
    assert len(json.loads((out / "sweep.json").read_text())) == 2
    heads = load_heads(out / "seed=1" / "heads.pt")
    info = heads.checkpoint_info
    assert info["store"]["metadata"]["audio_encoder"]["name"] == "synthetic"  # store identity recorded
    assert info["train_config"]["seed"] == 1 and "val/mAP@10" in info["metrics"]
    # Lightning checkpoints load through the same loader
    last = load_heads(out / "seed=1" / "checkpoints" / "last.ckpt")
    batch = splits["val"].audio(torch.arange(5))
    assert last.embed_audio(batch).shape == (5, 64)
    assert torch.allclose(last.embed_audio(batch).norm(dim=-1), torch.ones(5), atol=1e-5)


def test_streaming_reader_gives_the_in_memory_batches(store):
    mem = load_feature_split(store, "dev")
    stream = StoreSplitReader(store, "dev")
    a, b = CaptionBatches(mem, 16, seed=3)[2], CaptionBatches(stream, 16, seed=3)[2]
    assert torch.equal(a.caption_clip, b.caption_clip) and torch.equal(a.inverse, b.inverse)
    assert torch.equal(a.audio.frames, b.audio.frames) and torch.equal(a.text.tokens, b.text.tokens)
    assert torch.equal(a.text.first, b.text.first) and torch.equal(a.audio.window_mask, b.audio.window_mask)


def test_shard_aware_order_is_a_permutation_that_keeps_batches_local():
    order = shard_aware_order(1000, block=50, window=2, seed=0, epoch=0)
    assert sorted(order.tolist()) == list(range(1000))
    assert not np.array_equal(order, shard_aware_order(1000, block=50, window=2, seed=0, epoch=1))
    blocks_per_batch = [len(set((order[i:i + 32] // 50).tolist())) for i in range(0, 96, 32)]
    assert max(blocks_per_batch) <= 2  # a batch touches at most `window` shards


def test_missing_split_names_the_store_and_the_fix(store):
    with pytest.raises(FileNotFoundError, match="no split 'train'"):
        load_feature_split(store, "train")


def test_precision_choice_and_sweep_expansion(tmp_path):
    assert choose_precision("auto", cuda=False, bf16_supported=False) == "32-true"
    assert choose_precision("auto", cuda=True, bf16_supported=True) == "bf16-mixed"
    assert choose_precision("auto", cuda=True, bf16_supported=False) == "16-mixed"  # Turing
    assert choose_precision("64-true", cuda=False, bf16_supported=False) == "64-true"
    cfg = TrainHeadsConfig(out=tmp_path, lrs=[1e-3, 3e-4], audio_poolings=["mean", "attention"])
    runs = expand_sweep(cfg)
    assert len(runs) == 4 and len({c.out for _, c in runs}) == 4
    assert {(c.max_lr, c.audio_pooling) for _, c in runs} == {(a, b) for a in (1e-3, 3e-4) for b in ("mean", "attention")}
    # a single run's row is named after its --out folder (runs/heads -> heads), not "run"
    assert expand_sweep(TrainHeadsConfig(out=tmp_path / "heads")) == [("heads", TrainHeadsConfig(out=tmp_path / "heads"))]


@pytest.mark.parametrize("size", [7, 50, 1000])
def test_eval_chunks_cover_every_clip_and_caption_once(splits, size):
    from audioret.train_heads.data import EvalChunks

    chunks = EvalChunks(splits["val"], size)
    clips = torch.cat([chunks[k].clip_index for k in range(len(chunks))])
    caps = torch.cat([chunks[k].caption_index for k in range(len(chunks))])
    assert clips.tolist() == list(range(80)) and caps.tolist() == list(range(400))
    assert all(len(chunks[k].caption_index) <= size for k in range(len(chunks)))


def test_missing_logger_package_gives_the_fix(tmp_path, monkeypatch):
    import importlib.util

    from audioret.train_heads.run import _logger

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith(("wandb", "tensorboard")) else real(name, *a))
    with pytest.raises(ValueError, match=r"pip install 'audioret\[wandb\]'"):  # a user error: one line, exit 2
        _logger(TrainHeadsConfig(out=tmp_path, logger="wandb"))
    assert _logger(TrainHeadsConfig(out=tmp_path, logger="none")) is False
