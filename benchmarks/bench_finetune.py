"""Side-by-side epoch times on one synthetic corpus with the tiny encoders (CPU is fine):

1. finetune on raw audio (frozen audio encoder) / train-heads from the store: what end-to-end costs
   against iterating on cached features;
2. finetune with --audio-store / finetune on live audio: what the store saves when only the text
   side (and projections) trains.

Epoch time = (wall of a 1+E-epoch run - wall of a 1-epoch run) / E, so start-up (corpus loading, model
building, store opening) cancels. The store is written by ``audioret extract``.

    python benchmarks/bench_finetune.py [--clips 32] [--epochs 1] [--batch 16]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from audioret.corpora import synthesize

TINY = dict(audio_encoder="tiny-beats", text_model="tiny-roberta")


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def per_epoch(make_run, epochs: int) -> float:
    """(wall(1 + epochs) - wall(1)) / epochs."""
    one = timed(lambda: make_run(1))
    more = timed(lambda: make_run(1 + epochs))
    return max(more - one, 1e-9) / epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=32, help="dev clips (5 captions each)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from audioret.extract import ExtractConfig, run as extract
    from audioret.finetune.config import FinetuneConfig
    from audioret.finetune.run import run as finetune
    from audioret.train_heads.config import TrainHeadsConfig
    from audioret.train_heads.run import run as train_heads

    root = Path(tempfile.mkdtemp(prefix="bench_finetune-"))
    corpus = synthesize(root / "corpus", n_dev=args.clips, n_val=4, n_eval=4, seed=0, long_fraction=0.2)
    store = root / "store.zarr"
    t_extract = timed(lambda: extract(ExtractConfig(data_path=corpus, splits=("dev",), store=store,
                                                    text_model="tiny-roberta", audio_encoder="tiny-beats",
                                                    num_workers=args.workers, progress=False)))

    def ft(epochs: int, **kw) -> None:
        finetune(FinetuneConfig(data_path=corpus, out=root / f"ft{time.time_ns()}", batch_size=args.batch,
                                max_epochs=epochs, limit_val_batches=0, test=False, n_workers=args.workers,
                                precision="32-true", logging=False, train_crop="start", **TINY, **kw))

    def th(epochs: int) -> None:
        train_heads(TrainHeadsConfig(store=store, out=root / f"th{time.time_ns()}", val=None, test=None,
                                     max_epochs=epochs, batch_size=args.batch, audio_pooling="segment-mean",
                                     text_pooling="first", projection="linear", floor="none",
                                     logger="none", progress=False))

    e_live = per_epoch(lambda e: ft(e), args.epochs)
    cheap = max(4, 4 * args.epochs)  # cached-feature epochs are short: more of them beat start-up noise
    e_store = per_epoch(lambda e: ft(e, audio_store=store), cheap)
    e_heads = per_epoch(th, cheap)
    n = args.clips * 5
    print(f"corpus: {args.clips} dev clips, {n} captions, batch {args.batch}; extract (audio+text) {t_extract:.1f} s")
    print(f"epoch seconds: finetune live audio {e_live:.2f} | finetune --audio-store {e_store:.2f} | "
          f"train-heads from store {e_heads:.2f}")
    print(f"ratio finetune(raw audio, frozen) / train-heads(store): {e_live / e_heads:.1f}x")
    print(f"ratio finetune(--audio-store) / finetune(live audio):   {e_store / e_live:.3f}")


if __name__ == "__main__":
    main()
