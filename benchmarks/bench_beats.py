"""BEATs forward throughput: our batched preprocessing vs the reference's per-clip fbank loop.

Full-size cpt2 architecture with random weights, 10 s clips, batch 8, fp32, CPU, eval mode,
preprocessing included. Prints clips/s of both paths measured in the same run and their ratio,
the preprocessing alone, peak memory, and model FLOP utilisation against a 2048 x 2048 fp32
matmul measured in the same run.

    python benchmarks/bench_beats.py [--batch 8] [--reps 1] [--threads N] [--bf16]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from audioret.encoders.beats import BEATs, BEATsConfig, cpt2_config, randomize_
from audioret.encoders.fbank import beats_fbank, reference_fbank_loop

CLIP_SAMPLES = 160_000


def beats_gflop(cfg: BEATsConfig, n_tokens: int) -> float:
    """Forward GFLOP of one clip (multiply-add = 2 FLOP): projections + FFN, attention scores
    and values, positional conv, patch embedding and input projection."""
    d, f, n, L = cfg.encoder_embed_dim, cfg.encoder_ffn_embed_dim, n_tokens, cfg.encoder_layers
    layers = L * (2 * n * (4 * d * d + 2 * d * f) + 2 * 2 * n * n * d)
    pos = 2 * n * d * (d // cfg.conv_pos_groups) * cfg.conv_pos
    front = 2 * n * cfg.embed_dim * cfg.input_patch_size ** 2 + 2 * n * cfg.embed_dim * d
    return (layers + pos + front) / 1e9


def matmul_gflops(size: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * size ** 3 * reps / (time.perf_counter() - t) / 1e9


def time_path(fn, wave: torch.Tensor, reps: int, warmup: bool = True) -> float:
    """Seconds per batch (best of ``reps``, after one warm-up call if ``warmup``)."""
    if warmup:
        fn(wave)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn(wave)
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8, help="clips per batch")
    ap.add_argument("--reps", type=int, default=1, help="timed repetitions per path (best kept)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--bf16", action="store_true", help="also time CPU bf16 autocast")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = randomize_(BEATs(cpt2_config()), 0).eval()
    wave = torch.randn(args.batch, CLIP_SAMPLES) * 0.1
    n_tokens = model.token_count(CLIP_SAMPLES)
    gflop = beats_gflop(model.cfg, n_tokens)

    def ours(w):
        with torch.no_grad():
            return model.extract_features(w)

    def encoder_only(fb):
        x = model.patch_embedding(fb.unsqueeze(1)).flatten(2).transpose(1, 2)
        x = model.post_extract_proj(model.layer_norm(x))
        return model.encoder(x, None)

    def reference_style(w):           # the reference's per-clip kaldi.fbank loop, same model
        with torch.no_grad():
            return encoder_only(reference_fbank_loop(w))

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = matmul_gflops()
    t_ours = time_path(ours, wave, args.reps)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t_ref = time_path(reference_style, wave, args.reps, warmup=False)  # model already warm
    t_fb = time_path(beats_fbank, wave, args.reps)
    t_fb_ref = time_path(reference_fbank_loop, wave, args.reps)
    peak2 = matmul_gflops()
    peak = max(peak, peak2)

    b = args.batch
    print(f"BEATs cpt2 shape (12 x 768, random weights), {b} x 10 s clips, fp32 CPU, "
          f"{torch.get_num_threads()} threads, {n_tokens} tokens/clip, {gflop:.1f} GFLOP/clip")
    print(f"fp32 matmul 2048^2 peak (same run): {peak:.0f} GFLOP/s")
    print(f"ours (batched fbank)          : {b / t_ours:6.2f} clips/s  ({t_ours / b * 1e3:.0f} ms/clip)"
          f"  MFU {gflop * b / t_ours / peak:.2f}")
    print(f"reference-style per-clip fbank: {b / t_ref:6.2f} clips/s  ({t_ref / b * 1e3:.0f} ms/clip)"
          f"  MFU {gflop * b / t_ref / peak:.2f}")
    print(f"ratio ours / reference-style  : {t_ref / t_ours:.2f}x")
    print(f"preprocessing alone           : batched {t_fb / b * 1e3:.1f} ms/clip vs loop "
          f"{t_fb_ref / b * 1e3:.1f} ms/clip = {t_fb_ref / t_fb:.2f}x")
    print(f"peak RSS: {rss1 / 1024:.0f} MiB after our forward (+{(rss1 - rss0) / 1024:.0f} MiB over "
          f"model + batch), process peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.bf16:
        def ours_bf16(w):
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                return model.extract_features(w)
        t16 = time_path(ours_bf16, wave, args.reps)
        print(f"ours bf16 autocast            : {b / t16:6.2f} clips/s = {t_ours / t16:.2f}x fp32")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
