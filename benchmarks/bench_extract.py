"""Pipeline efficiency of ``audioret extract`` (audio pass), measured side by side in one run.

efficiency = extract clips/s / min(model-only clips/s on pre-decoded batches,
                                   decode+resample-only clips/s with the same workers)
Target >= 0.85 with the tiny encoder (decode-bound) and with full-size BEATs (model-bound,
random weights in the official checkpoint format; use few clips).

    python benchmarks/bench_extract.py --encoder tiny-beats --clips 120 --workers 1
    python benchmarks/bench_extract.py --encoder beats --clips 12 --workers 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from audioret.corpora import load_corpus, synthesize
from audioret.encoders.beats import BEATs, cpt2_config, randomize_, save_beats_checkpoint
from audioret.encoders.registry import build_audio_encoder
from audioret.extract import ExtractConfig
from audioret.extract.data import AudioItems, audio_loader, window_batches
from audioret.extract.pipeline import run
from audioret.extract.plan import audio_layout, probe_all


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", choices=["tiny-beats", "beats"], default="tiny-beats")
    ap.add_argument("--clips", type=int, default=120)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch-windows", type=int, default=16)
    ap.add_argument("--long-fraction", type=float, default=0.3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    corpus = synthesize(tmp / "corpus", n_dev=args.clips, n_val=1, n_eval=1, seed=1,
                        long_fraction=args.long_fraction)
    ckpt = None
    if args.encoder == "beats":  # full-size cpt2 architecture, random weights
        ckpt = tmp / "beats_random.pt"
        save_beats_checkpoint(randomize_(BEATs(cpt2_config()), 0), ckpt)
    enc = build_audio_encoder(args.encoder, ckpt, batch_size=args.batch_windows)
    clips = load_corpus("clotho", corpus, "dev").clips
    lay = audio_layout(probe_all([c.path for c in clips], 16000, 480000, 0), enc.window_samples,
                       enc.num_valid_frames)
    items = AudioItems([c.path for c in clips], lay.num_samples, lay.failures, target_sr=16000,
                       max_samples=480000, crop_mode="start")
    batches = window_batches(range(len(clips)), lay.num_windows, args.batch_windows)
    print(f"{len(clips)} clips, {int(lay.num_windows.sum())} windows, {lay.num_samples.sum() / 16000 / 60:.1f} min "
          f"of audio, encoder {args.encoder}, {args.workers} workers, torch threads {torch.get_num_threads()}")

    # (b) decode + resample + windowing only, same workers and batches
    t0 = time.perf_counter()
    decoded = list(audio_loader(items, batches, enc.window_samples, num_workers=args.workers,
                                prefetch_factor=4, pin_memory=False))
    decode_rate = len(clips) / (time.perf_counter() - t0)

    # (a) model only on the pre-decoded batches
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in decoded:
            enc.encode_windows(b.windows)
    model_s = time.perf_counter() - t0
    model_rate = len(clips) / model_s
    del decoded

    # the real thing
    cfg = ExtractConfig(corpus="clotho", data_path=corpus, store=tmp / "store.zarr", splits=("dev",),
                        passes=("audio",), audio_encoder=args.encoder, beats_ckpt=ckpt,
                        batch_windows=args.batch_windows, num_workers=args.workers, progress=False)
    stats = run(cfg).stats[0]
    extract_rate = stats.processed / stats.wall
    bound = min(model_rate, decode_rate)
    gflop = 98.5 * int(lay.num_windows.sum()) if args.encoder == "beats" else None
    print(f"decode-only  {decode_rate:8.2f} clips/s")
    print(f"model-only   {model_rate:8.2f} clips/s" + (f"  ({gflop / model_s:.0f} GFLOP/s)" if gflop else ""))
    print(f"extract      {extract_rate:8.2f} clips/s  (wall {stats.wall:.1f} s)")
    print(f"stages: decode {stats.decode:.1f} s (worker-summed), waiting for data {stats.wait_data:.1f} s, "
          f"model {stats.model:.1f} s, write {stats.write:.1f} s, waiting for writer {stats.write_blocked:.1f} s; "
          f"bound by {stats.bound()}")
    print(f"pipeline efficiency = extract / min(model, decode) = {extract_rate / bound:.2f} "
          f"({'model' if model_rate < decode_rate else 'decode'}-bound; target >= 0.85)")


if __name__ == "__main__":
    main()
