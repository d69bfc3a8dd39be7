"""Ragged round-trips, batches, pooling, whole loads, in-memory stores, torch Dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from audioret.store import StoreError, create_store, masked_mean, open_store
from audioret.store.dataset import FeatureDataset, collate

D = 16


def _audio(n: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    T = rng.integers(0, 60, n)
    T[1] = 0  # an item with no frames
    W = rng.integers(1, 4, n)
    data = {i: (rng.standard_normal((T[i], D)).astype(np.float16),
                rng.standard_normal((W[i], D)).astype(np.float16)) for i in range(n)}
    return [f"clip_{i:03d}.wav" for i in range(n)], T, W, data


def _write_audio(st, ids, T, W, data, parts: int = 3, fail: tuple[int, ...] = ()) -> None:
    plan = st.plan_audio("dev", ids, T, W, dim=D, durations=np.arange(len(ids)) * 0.5, num_parts=parts,
                         chunk_rows=8, shard_chunks=2)
    for p in range(plan.num_parts):
        with st.writer("dev", "audio", p, flush_bytes=700) as w:
            for i in w.pending():
                if i in fail:
                    w.fail(i, f"undecodable {ids[i]}")
                else:
                    w.put(i, frames=data[i][0], windows=data[i][1])


@pytest.mark.parametrize("where", ["local", "memory-url", "memory-store"])
def test_ragged_round_trip(tmp_path, where):
    ids, T, W, data = _audio(40)
    path = {"local": tmp_path / "s.zarr", "memory-url": f"memory://rt-{tmp_path.name}",
            "memory-store": zarr.storage.MemoryStore()}[where]
    st = create_store(path, {"audio_encoder": {"name": "tiny-beats"}})
    _write_audio(st, ids, T, W, data, fail=(5,))
    t = open_store(path).audio("dev")
    assert t.ids == ids and t.status.complete
    assert t.failures == {5: "undecodable clip_005.wav"} and t.failed.sum() == 1
    np.testing.assert_array_equal(t.lengths("frames"), T)
    np.testing.assert_allclose(t.column("duration"), np.arange(40) * 0.5)
    for i in range(40):
        want = np.zeros_like(data[i][0]) if i == 5 else data[i][0]
        np.testing.assert_array_equal(t.get("frames", i), want)
        np.testing.assert_array_equal(t.get("windows", i), np.zeros_like(data[i][1]) if i == 5 else data[i][1])
    assert not t.valid[5] and t.valid.sum() == 39


def test_batch_padding_mask_and_pooling(tmp_path):
    ids, T, W, data = _audio(30, seed=1)
    st = create_store(tmp_path / "s", {"x": 1})
    _write_audio(st, ids, T, W, data)
    t = st.audio("dev")
    idx = [17, 1, 3, 17, 29]
    b = t.batch("frames", idx)
    assert b.values.shape == (5, max(T[idx]), D) and b.values.dtype == np.float16
    np.testing.assert_array_equal(b.lengths, T[idx])
    for k, i in enumerate(idx):
        np.testing.assert_array_equal(b.values[k, :T[i]], data[i][0])
        assert not b.values[k, T[i]:].any() and b.mask[k].sum() == T[i]
    # seed recipe: mean over windows of each window's token mean; masked mean over valid frames
    seed = t.pooled("windows")
    np.testing.assert_allclose(seed[4], data[4][1].astype(np.float32).mean(0), rtol=1e-6)
    frame_mean = t.pooled("frames", [0, 1])
    np.testing.assert_allclose(frame_mean[0], data[0][0].astype(np.float32).mean(0), rtol=1e-6)
    assert not frame_mean[1].any()  # no frames -> zeros, not NaN
    np.testing.assert_allclose(masked_mean(b.values, b.mask)[0], data[17][0].astype(np.float32).mean(0), rtol=1e-6)
    crop = t.batch("frames", idx, max_len=5)
    assert crop.values.shape[1] == min(5, max(T[idx]))


def test_whole_load_matches_batches(tmp_path):
    ids, T, W, data = _audio(25, seed=2)
    st = create_store(tmp_path / "s", {"x": 1})
    _write_audio(st, ids, T, W, data, parts=2)
    t = open_store(tmp_path / "s").audio("dev")
    flat, off, ln = t.load("frames")
    for i in range(25):
        np.testing.assert_array_equal(flat[off[i]:off[i] + ln[i]], data[i][0])
    tensor, _, _ = t.load("frames", device="cpu")
    assert isinstance(tensor, torch.Tensor) and tensor.shape == flat.shape
    b = t.batch("frames", [3, 4])
    np.testing.assert_array_equal(b.values[0, :T[3]], data[3][0])


def test_text_items(tmp_path):
    rng = np.random.default_rng(3)
    caps = [f"a dog barks number {i}" for i in range(12)]
    L = rng.integers(3, 33, 12)
    toks = {j: rng.standard_normal((L[j], 24)).astype(np.float32) for j in range(12)}
    first = {j: rng.standard_normal(24).astype(np.float32) for j in range(12)}
    st = create_store(tmp_path / "s", {"text_encoder": {"name": "tiny-roberta"}})
    st.plan_text("dev", caps, np.arange(12) // 5, L, dim=24, dtype="float32", num_parts=2, chunk_rows=4,
                 shard_chunks=2)
    for p in range(2):
        with st.writer("dev", "text", p) as w:
            for j in w.pending():
                w.put(j, tokens=toks[j], first=first[j])
    t = open_store(tmp_path / "s").text("dev")
    assert t.captions == caps and list(t.column("clip_index")) == list(np.arange(12) // 5)
    np.testing.assert_array_equal(t.vectors("first"), np.stack([first[j] for j in range(12)]))
    np.testing.assert_array_equal(t.vectors("first", [4, 2]), np.stack([first[4], first[2]]))
    np.testing.assert_array_equal(t.get("tokens", 7), toks[7])


def test_put_rejects_bad_input_without_writing(tmp_path):
    ids, T, W, data = _audio(6, seed=4)
    st = create_store(tmp_path / "s", {"x": 1})
    st.plan_audio("dev", ids, T, W, dim=D, num_parts=1, chunk_rows=8, shard_chunks=2)
    w = st.writer("dev", "audio", 0)
    with pytest.raises(StoreError, match="shape"):
        w.put(0, frames=np.zeros((T[0] + 1, D)), windows=data[0][1])
    bad = data[0][0].astype(np.float32).copy()
    bad.flat[0] = np.nan
    with pytest.raises(StoreError, match="non-finite"):
        w.put(0, frames=bad, windows=data[0][1])
    with pytest.raises(StoreError, match="in order"):
        w.put(2, frames=data[2][0], windows=data[2][1])
    with pytest.raises(StoreError, match="fields"):
        w.put(0, frames=data[0][0])
    assert w.pending() == list(range(6))


def test_dataset_with_workers(tmp_path):
    ids, T, W, data = _audio(20, seed=5)
    st = create_store(tmp_path / "s", {"x": 1})
    _write_audio(st, ids, T, W, data, fail=(2,))
    ds = FeatureDataset(tmp_path / "s", "dev", "audio", ["frames", "windows"], dtype=torch.float32)
    assert len(ds) == 19 and 2 not in ds.indices  # failed item left out by default
    loader = torch.utils.data.DataLoader(ds, batch_size=6, shuffle=True, num_workers=2, collate_fn=collate)
    seen = set()
    for batch in loader:
        for k, i in enumerate(batch["index"].tolist()):
            seen.add(i)
            n = int(batch["frames_lengths"][k])
            assert n == T[i] and int(batch["frames_mask"][k].sum()) == n
            np.testing.assert_array_equal(batch["frames"][k, :n].numpy(), data[i][0].astype(np.float32))
    assert seen == set(range(20)) - {2}
