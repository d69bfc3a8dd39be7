"""Audio input cost on ONE CPU core: decode (soundfile) and resample (soxr HQ, as the seed) measured
apart, for 44.1 kHz wav, flac and mp3, and the cores an extraction needs to keep a GPU fed.

Clips are Clotho-like (44.1 kHz, 15-30 s, speech-like noise bursts), written here. Each format runs
the loader's own steps on the kept 30 s: ``_decode`` (header, read, channel mean, checks) and
``resample`` (44.1 -> 16 kHz). Prints clips/s and audio-hours/s per core for decode, resample and the
whole ``load_audio``, the resampling cost per hour of audio, and the cores needed for a GPU that
encodes 1,000 10-s windows/s (98.5 TFLOP/s of BEATs at 98.5 GFLOP per window: a fraction of a current
GPU's bf16 peak, so the input path, not the model, sets the pace unless enough cores decode).
torchaudio's cached sinc kernel (the resampler before soxr) is timed for comparison. Run it alone:
numbers from a machine shared with other jobs are pessimistic.

    python benchmarks/bench_decode.py [--clips 24] [--repeats 3] [--gpu-windows-per-s 1000]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audioret.audio import load_audio, resample
from audioret.audio.io import _decode, _frames_needed

SR, TARGET, CAP = 44100, 16000, 30 * 16000
FORMATS = {"wav": dict(format="WAV", subtype="PCM_16"), "flac": dict(format="FLAC", subtype="PCM_16"),
           "mp3": dict(format="MP3", subtype="MPEG_LAYER_III")}


def clips(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = int(rng.uniform(15, 30) * SR)
        env = np.repeat(rng.uniform(0.05, 0.5, s // 2205 + 1), 2205)[:s]
        out.append((env * rng.standard_normal(s) * 0.5).clip(-1, 1).astype(np.float32))
    return out


def write(folder: Path, waves: list[np.ndarray], fmt: str) -> list[Path]:
    paths = []
    for i, w in enumerate(waves):
        p = folder / f"clip{i:03d}.{fmt}"
        sf.write(p, w, SR, **FORMATS[fmt])
        paths.append(p)
    return paths


def best_of(repeats: int, fn) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gpu-windows-per-s", type=float, default=1000.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    waves = clips(args.clips)
    seconds = sum(len(w) for w in waves) / SR
    windows = sum(math.ceil(min(len(w) / SR, 30) / 10) for w in waves)
    print(f"{args.clips} clips, {seconds / 60:.1f} min of 44.1 kHz mono audio, {windows} windows of 10 s; "
          f"one core, best of {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for fmt in FORMATS:
            paths = write(Path(tmp), waves, fmt)
            decoded = [_decode(p, lambda r: _frames_needed(r, TARGET, CAP))[0] for p in paths]
            t_dec = best_of(args.repeats, lambda: [_decode(p, lambda r: _frames_needed(r, TARGET, CAP))
                                                   for p in paths])
            tensors = [torch.from_numpy(d) for d in decoded]
            t_res = best_of(args.repeats, lambda: [resample(t, SR, TARGET) for t in tensors])
            t_all = best_of(args.repeats, lambda: [load_audio(p, TARGET, max_samples=CAP) for p in paths])
            rows.append((fmt, t_dec, t_res, t_all))
        from torchaudio.transforms import Resample

        sinc = Resample(SR, TARGET)
        t_sinc = best_of(args.repeats, lambda: [sinc(t) for t in tensors])
    hours = seconds / 3600
    print(f"{'':6} {'decode clips/s':>15} {'audio-h/s':>10} {'resample clips/s':>17} {'audio-h/s':>10} "
          f"{'load_audio clips/s':>19} {'audio-h/s':>10} {'windows/s':>10} {'cores @GPU':>11}")
    for fmt, t_dec, t_res, t_all in rows:
        wps = windows / t_all
        print(f"{fmt:6} {args.clips / t_dec:15.1f} {hours / t_dec:10.3f} {args.clips / t_res:17.1f} "
              f"{hours / t_res:10.3f} {args.clips / t_all:19.1f} {hours / t_all:10.3f} {wps:10.1f} "
              f"{args.gpu_windows_per_s / wps:11.1f}")
    t_res = rows[0][2]
    print(f"resampling 44.1 -> 16 kHz (soxr HQ): {t_res / hours:.1f} s of one core per hour of audio "
          f"(torchaudio sinc kernel, cached: {t_sinc / hours:.1f} s)")
    print(f"cores @GPU: CPU cores (DataLoader workers) needed to decode + resample {args.gpu_windows_per_s:g} "
          "10-s windows/s for the encoder; a 30 s clip is 3 windows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
