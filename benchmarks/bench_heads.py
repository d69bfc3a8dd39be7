"""Head training throughput: streaming from the store vs the split held in memory, side by side,
plus the wall time of one full default ``train-heads`` run.

    python benchmarks/bench_heads.py                       # synthesises a Clotho-width store
    python benchmarks/bench_heads.py --store S.zarr        # an extracted store (split dev/val/eval)
    python benchmarks/bench_heads.py --full-store T.zarr   # full run on another store (e.g. tiny encoders
                                                           # over the synthetic corpus: `audioret extract`)

Throughput = captions/s of the real training step (default heads, baseline loss, AdamW) fed by
a DataLoader over ``CaptionBatches``: in memory (one gather per batch, no workers) versus
streamed (``StoreSplitReader``, shard-aware shuffle, DataLoader workers). The two are measured
interleaved (A B A B) so load drift on a shared machine hits both. Target: stream/memory >= 0.5.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from audioret.models import RetrievalHeads, contrastive_loss
from audioret.train_heads.config import TrainHeadsConfig
from audioret.train_heads.data import CaptionBatches, identity_collate
from audioret.train_heads.run import head_config, run
from audioret.train_heads.store_reader import StoreSplitReader, load_feature_split, write_feature_split
from audioret.train_heads.synthetic import chance_map_at_10, synthetic_split


def make_store(path: Path, clips: int, audio_dim: int, text_dim: int) -> None:
    for name, n, seed in (("dev", clips, 1), ("val", clips // 5, 2), ("eval", clips // 5, 3)):
        write_feature_split(path, synthetic_split(name, n, audio_dim=audio_dim, text_dim=text_dim,
                                                  frames=(60, 180), tokens=(8, 24), seed=seed))


def data_captions_per_s(reader, shard_block: int, workers: int, steps: int, batch: int) -> float:
    """The data path alone (batches built and delivered, no model): what streaming really costs."""
    ds = CaptionBatches(reader, batch, seed=1, shard_block=shard_block)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, collate_fn=identity_collate,
                                         num_workers=workers, prefetch_factor=4 if workers else None)
    it, done, t0 = iter(loader), 0, 0.0
    for step in range(min(steps + 2, len(ds))):
        if step == 2:
            t0, done = time.perf_counter(), 0
        done += len(next(it).caption_clip)
    return done / (time.perf_counter() - t0)


def captions_per_s(reader, shard_block: int, workers: int, steps: int, batch: int) -> float:
    cfg = TrainHeadsConfig()
    split_dims = reader.audio(torch.tensor([0])).frames.shape[-1], reader.text(torch.tensor([0])).tokens.shape[-1]
    heads = RetrievalHeads(head_config(cfg, *split_dims)).train()
    opt = torch.optim.AdamW(heads.parameters(), lr=1e-3)
    ds = CaptionBatches(reader, batch, seed=0, shard_block=shard_block, shuffle_window=cfg.shuffle_window)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, collate_fn=identity_collate,
                                         num_workers=workers, prefetch_factor=4 if workers else None)
    it = iter(loader)
    done, t0 = 0, None
    for step in range(steps + 2):
        if step == 2:  # skip worker start-up and first-batch costs
            t0, done = time.perf_counter(), 0
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            b = next(it)
        a = heads.embed_audio(b.audio)[b.inverse]
        loss = contrastive_loss(a, heads.embed_text(b.text), b.caption_clip, b.caption_clip, heads.tau)
        opt.zero_grad()
        loss.backward()
        opt.step()
        done += len(b.caption_clip)
    return done / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=None, help="extracted store (default: synthesise one)")
    ap.add_argument("--clips", type=int, default=1500, help="synthetic dev clips (5 captions each)")
    ap.add_argument("--steps", type=int, default=30, help="timed training steps per measurement")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers when streaming")
    ap.add_argument("--full-epochs", type=int, default=20, help="epochs of the full default run (0: skip it)")
    ap.add_argument("--full-store", type=Path, default=None, help="store of the full run (default: --store)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_heads_"))
    store = args.store
    if store is None:
        store = tmp / "synth.zarr"
        t = time.perf_counter()
        make_store(store, args.clips, 768, 1024)
        print(f"synthesised store (Clotho widths 768/1024, {args.clips} dev clips) in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    mem = load_feature_split(store, "dev")
    load_s = time.perf_counter() - t
    stream = StoreSplitReader(store, "dev")
    print(f"dev: {mem.num_clips} clips, {mem.num_captions} captions, {mem.nbytes / 1e6:.0f} MB in memory "
          f"(loaded in {load_s:.2f} s); streaming shuffle block {stream.captions_per_shard} captions")
    rates: dict[str, list[float]] = {"memory": [], "stream": []}
    for _ in range(2):  # interleaved A B A B
        rates["memory"].append(captions_per_s(mem, 0, 0, args.steps, 64))
        rates["stream"].append(captions_per_s(stream, stream.captions_per_shard, args.workers, args.steps, 64))
    data = {"memory": data_captions_per_s(mem, 0, 0, args.steps, 64),
            "stream": data_captions_per_s(stream, stream.captions_per_shard, args.workers, args.steps, 64)}
    print(f"data path alone, batch 64: memory {data['memory']:.0f} captions/s, stream {data['stream']:.0f} "
          f"captions/s -> {data['stream'] / data['memory']:.2f}")
    m, s = max(rates["memory"]), max(rates["stream"])
    print(f"head training, batch 64: memory {m:.0f} captions/s, stream ({args.workers} workers) {s:.0f} captions/s "
          f"-> stream/memory = {s / m:.2f} (target >= 0.5); runs: {rates}")
    if args.full_epochs <= 0:
        return
    store = args.full_store or store
    t = time.perf_counter()
    cfg = TrainHeadsConfig(store=store, out=tmp / "run", max_epochs=args.full_epochs, progress=False, logger="none",
                           floor="none")
    (result,) = run(cfg)
    wall = time.perf_counter() - t
    n_eval = len(load_feature_split(store, "eval").clip_ids)
    print(f"full default run ({args.full_epochs} epochs, store {store.name}): {wall:.1f} s wall; "
          f"test mAP@10 {result.metrics.get('test/mAP@10', float('nan')):.3f} vs chance {chance_map_at_10(n_eval):.3f}")


if __name__ == "__main__":
    main()
