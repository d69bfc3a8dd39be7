"""Streaming head training (StreamingBatches): the in-memory batches, every caption once per epoch,
deterministic for a seed, memory within the budget, a new order every epoch of a real run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audioret.models import RetrievalHeads, contrastive_loss
from audioret.train_heads.config import TrainHeadsConfig
from audioret.train_heads.data import (CaptionBatches, StreamingBatches, block_layout, choose_block, epoch_batches,
                                       split_bytes, train_loader)
from audioret.train_heads.module import HeadsModule
from audioret.train_heads.run import head_config, run
from audioret.train_heads.store_reader import StoreSplitReader, load_feature_split, write_feature_split
from audioret.train_heads.synthetic import synthetic_split


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "synth.zarr"
    for name, n, seed in (("dev", 203, 1), ("val", 40, 2), ("eval", 40, 3)):
        write_feature_split(path, synthetic_split(name, n, seed=seed))
    return path


def _same(a, b) -> bool:
    """Equal values and shapes (== , so the sign of a masked zero does not count)."""
    pairs = [(a.caption_index, b.caption_index), (a.caption_clip, b.caption_clip), (a.inverse, b.inverse),
             (a.audio.frames, b.audio.frames), (a.audio.frame_mask, b.audio.frame_mask),
             (a.audio.window_means, b.audio.window_means), (a.audio.window_mask, b.audio.window_mask),
             (a.text.tokens, b.text.tokens), (a.text.token_mask, b.text.token_mask), (a.text.first, b.text.first)]
    return all(x.shape == y.shape and bool((x == y).all()) for x, y in pairs)


@pytest.mark.parametrize("block,window,threads", [(37, 2, 2), (7, 3, 2), (1000, 1, 1)])
def test_streamed_batches_are_the_in_memory_batches_with_the_same_loss(store, block, window, threads):
    mem, stream = load_feature_split(store, "dev"), StoreSplitReader(store, "dev")
    ours = StreamingBatches(stream, 16, seed=5, block=block, shuffle_window=window, threads=threads)
    ref = CaptionBatches(mem, 16, seed=5, shard_block=block, shuffle_window=window)
    ours.set_epoch(3)
    ref.set_epoch(3)
    heads = RetrievalHeads(head_config(TrainHeadsConfig(embed_dim=32, hidden_dim=32), 32, 48)).eval()
    got = list(ours)
    assert len(got) == len(ref) == len(ours) == mem.num_captions // 16
    for k, b in enumerate(got):
        a = ref[k]
        assert _same(a, b), k
        with torch.no_grad():
            la = contrastive_loss(heads.embed_audio(a.audio)[a.inverse], heads.embed_text(a.text), a.caption_clip,
                                  a.caption_clip, heads.tau)
            lb = contrastive_loss(heads.embed_audio(b.audio)[b.inverse], heads.embed_text(b.text), b.caption_clip,
                                  b.caption_clip, heads.tau)
        assert torch.equal(la, lb)


def test_every_caption_once_per_epoch_new_order_each_epoch_same_for_a_seed():
    split = synthetic_split("dev", 64, seed=1)  # 320 captions = 20 batches of 16: nothing dropped
    ds = StreamingBatches(split, 16, seed=1, block=23, shuffle_window=2)
    epochs = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        caps = torch.cat([b.caption_index for b in ds]).tolist()
        assert sorted(caps) == list(range(320))
        epochs.append(caps)
    assert epochs[0] != epochs[1]
    again = StreamingBatches(split, 16, seed=1, block=23, shuffle_window=2)
    again.set_epoch(1)
    assert torch.cat([b.caption_index for b in again]).tolist() == epochs[1]
    other = StreamingBatches(split, 16, seed=2, block=23, shuffle_window=2)
    assert torch.cat([b.caption_index for b in other]).tolist() != epochs[0]


def test_ranks_get_disjoint_equal_runs_of_whole_batches():
    order = np.random.default_rng(0).permutation(1000)
    parts = [epoch_batches(order, 32, rank, 3) for rank in range(3)]
    assert [len(p) for p in parts] == [10, 10, 10]  # 31 batches: one dropped so ranks stay in step
    seen = np.concatenate([np.concatenate(p) for p in parts])
    assert len(np.unique(seen)) == len(seen) == 960


def test_memory_stays_within_the_budget_for_a_split_three_times_larger(store):
    stream = StoreSplitReader(store, "dev")
    budget = split_bytes(stream) / 3
    block = choose_block(stream, budget, 2)
    ds = StreamingBatches(stream, 16, seed=0, block=block, shuffle_window=2, memory_bytes=budget)
    caps = torch.cat([b.caption_index for b in ds])
    assert len(caps) == len(torch.unique(caps)) == (stream.num_captions // 16) * 16
    held = sum(t.numel() * t.element_size() for t in ds._arena.values())
    assert 0 < held <= budget
    assert block_layout(stream, block).num_blocks >= 6  # really streamed: several groups of blocks


def test_a_budget_too_small_for_the_shuffle_group_names_the_flags(store):
    stream = StoreSplitReader(store, "dev")
    ds = StreamingBatches(stream, 16, seed=0, block=50, shuffle_window=4, memory_bytes=1e5)
    with pytest.raises(ValueError, match="--memory-limit-gb or lower --shuffle-window"):
        next(iter(ds))


def test_stopping_early_leaves_no_reader_thread(store):
    import threading

    ds = StreamingBatches(StoreSplitReader(store, "dev"), 16, seed=0, block=20, shuffle_window=2)
    it = iter(ds)
    next(it)
    it.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("stream-")]


def test_a_streamed_run_sees_a_new_order_every_epoch(store, tmp_path, monkeypatch):
    """Regression: streaming used persistent DataLoader workers whose copy of the dataset never saw
    ``set_epoch``, so every epoch repeated epoch 0's order."""
    seen: list[list[int]] = []
    step = HeadsModule.training_step

    def record(self, batch, batch_idx):
        if batch_idx == 0:
            seen.append([])
        seen[-1].extend(batch.caption_index.tolist())
        return step(self, batch, batch_idx)

    monkeypatch.setattr(HeadsModule, "training_step", record)
    cfg = TrainHeadsConfig(store=store, out=tmp_path / "run", data="stream", max_epochs=3, embed_dim=32,
                           hidden_dim=32, batch_size=16, progress=False, logger="none", floor="none",
                           memory_limit_gb=split_bytes(StoreSplitReader(store, "dev")) / 3 / 1e9, shuffle_window=2)
    run(cfg)
    assert len(seen) == 3 and len({tuple(e) for e in seen}) == 3
    n = StoreSplitReader(store, "dev").num_captions
    for epoch, caps in enumerate(seen):
        loader = train_loader(StoreSplitReader(store, "dev"), 16, seed=cfg.seed,
                              shard_block=choose_block(StoreSplitReader(store, "dev"), cfg.memory_limit_gb * 1e9, 2),
                              shuffle_window=2, threads=1, memory_bytes=cfg.memory_limit_gb * 1e9, pin_memory=False)
        loader.dataset.set_epoch(epoch)
        assert caps == torch.cat([b.caption_index for b in loader]).tolist()  # the planned order of that epoch
        assert len(set(caps)) == len(caps) == (n // 16) * 16


def test_builder_thread_path_gives_the_same_batches_and_stops_cleanly(store):
    """On CUDA a builder thread gathers (and pins) ahead; on CPU the consumer gathers (a builder
    thread competed with the training step for the cores). Both give the same batches."""
    import threading

    stream = StoreSplitReader(store, "dev")
    here = StreamingBatches(stream, 16, seed=5, block=7, shuffle_window=3, threads=2)
    ahead = StreamingBatches(stream, 16, seed=5, block=7, shuffle_window=3, threads=2)
    ahead.build_ahead = True  # pinning itself needs CUDA
    assert not here.build_ahead
    a, b = list(here), list(ahead)
    assert len(a) == len(b) == len(here)
    assert all(_same(x, y) for x, y in zip(a, b))
    it = iter(ahead)
    next(it)
    it.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("stream-")]
