"""BEATs forward throughput on CPU: model FLOP utilisation (MFU) in fp32 and under bf16 autocast
against matmul peaks measured in the same run, and our batched preprocessing vs the reference's
per-clip fbank loop.

Full-size cpt2 architecture with random weights, 10 s clips, batch 8, CPU, eval mode,
preprocessing included. Each of ``--reps`` rounds times one fp32 forward between two bursts of a
2048 x 2048 fp32 matmul, then one bf16 forward between bf16 and fp32 bursts; MFU is per round (the
forward against the mean of its two bursts), and so is the bf16 speed-up (each forward's time
scaled by the fp32 bursts around it: the host's speed at that moment), printed as the median and
range over rounds, beside the older best-of-any-round figures (which compare different moments of
a host whose speed drifts). Targets: fp32 MFU >= 0.8 of the fp32 matmul peak; bf16 >= 2.5x fp32.

    python benchmarks/bench_beats.py [--batch 8] [--reps 5] [--threads N] [--no-bf16] [--no-reference]
    python benchmarks/bench_beats.py --threads 1 --cpu-time     # on a shared, loaded machine
    python benchmarks/bench_beats.py --no-bf16 --breakdown      # where the fp32 time goes
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import torch

from audioret.encoders.beats import BEATs, BEATsConfig, cpt2_config, randomize_
from audioret.encoders.fbank import beats_fbank, reference_fbank_loop

CLIP_SAMPLES = 160_000
CLOCK = time.perf_counter  # --cpu-time: time.process_time (this process's CPU seconds)


def beats_gflop(cfg: BEATsConfig, n_tokens: int) -> float:
    """Forward GFLOP of one clip (multiply-add = 2 FLOP): projections + FFN, attention scores
    and values, positional conv, patch embedding and input projection."""
    d, f, n, L = cfg.encoder_embed_dim, cfg.encoder_ffn_embed_dim, n_tokens, cfg.encoder_layers
    layers = L * (2 * n * (4 * d * d + 2 * d * f) + 2 * 2 * n * n * d)
    pos = 2 * n * d * (d // cfg.conv_pos_groups) * cfg.conv_pos
    front = 2 * n * cfg.embed_dim * cfg.input_patch_size ** 2 + 2 * n * cfg.embed_dim * d
    return (layers + pos + front) / 1e9


def matmul_gflops(size: int = 2048, reps: int = 5, dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    t = CLOCK()
    for _ in range(reps):
        a @ b
    return 2 * size ** 3 * reps / (CLOCK() - t) / 1e9


def paired_round(fn, wave: torch.Tensor, dtype: torch.dtype) -> tuple[float, float, float]:
    """(seconds for one forward, matmul GFLOP/s in ``dtype`` as the mean of a burst right before and
    right after, the same in fp32: the host's speed at that moment).

    Why paired: this host's speed shifts by +-15% within seconds (other tenants, clock), so the
    best burst of one moment over the best forward of another measures the host, not the model."""
    bursts = [torch.float32] if dtype == torch.float32 else [torch.float32, dtype]
    reps = {torch.float32: 5}                    # bursts of about half a second either way
    before = {d: matmul_gflops(reps=reps.get(d, 25), dtype=d) for d in bursts}
    t = CLOCK()
    fn(wave)
    seconds = CLOCK() - t
    after = {d: matmul_gflops(reps=reps.get(d, 25), dtype=d) for d in reversed(bursts)}
    mean = {d: (before[d] + after[d]) / 2 for d in bursts}
    return seconds, mean[dtype], mean[torch.float32]


def spread(values: list[float]) -> str:
    """'median (min-max)' of per-round figures."""
    v = sorted(values)
    return f"{statistics.median(v):.2f} ({v[0]:.2f}-{v[-1]:.2f})"


# op name -> part of the forward; what matches none is element-wise work and preprocessing
PARTS = {"aten::addmm": "linear layers", "aten::mm": "linear layers",
         "aten::_scaled_dot_product_flash_attention_for_cpu": "attention",
         "aten::mkldnn_convolution": "convolutions"}


def part_gflop(cfg: BEATsConfig, n_tokens: int) -> dict[str, float]:
    """Model GFLOP of one clip per part of ``PARTS`` (they add up to ``beats_gflop``)."""
    d, f, n, L = cfg.encoder_embed_dim, cfg.encoder_ffn_embed_dim, n_tokens, cfg.encoder_layers
    return {"linear layers": (L * 2 * n * (4 * d * d + 2 * d * f) + 2 * n * cfg.embed_dim * d) / 1e9,
            "attention": L * 2 * 2 * n * n * d / 1e9,
            "convolutions": (2 * n * d * (d // cfg.conv_pos_groups) * cfg.conv_pos
                             + 2 * n * cfg.embed_dim * cfg.input_patch_size ** 2) / 1e9}


def breakdown(fn, wave: torch.Tensor, cfg: BEATsConfig, n_tokens: int) -> list[tuple[str, float, float]]:
    """(part, share of the forward's time, GFLOP/s) from one profiled forward between two matmul
    bursts; GFLOP/s is returned as the fraction of the bursts' mean. Why: it shows which part keeps
    MFU from the peak (per-op times from the profiler, on the calling thread)."""
    from torch.profiler import ProfilerActivity, profile

    before = matmul_gflops()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn(wave)
    peak = (before + matmul_gflops()) / 2
    secs: dict[str, float] = {}
    for ev in prof.key_averages():
        part = PARTS.get(ev.key, "other (element-wise, fbank)")
        secs[part] = secs.get(part, 0.0) + ev.self_cpu_time_total / 1e6
    total, flop = sum(secs.values()), part_gflop(cfg, n_tokens)
    return [(part, t / total, flop.get(part, 0.0) * wave.shape[0] / t / peak if part in flop else float("nan"))
            for part, t in sorted(secs.items(), key=lambda kv: -kv[1])]


def time_path(fn, wave: torch.Tensor, reps: int, warmup: bool = True) -> float:
    """Seconds per batch (best of ``reps``, after one warm-up call if ``warmup``)."""
    if warmup:
        fn(wave)
    best = float("inf")
    for _ in range(reps):
        t = CLOCK()
        fn(wave)
        best = min(best, CLOCK() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8, help="clips per batch")
    ap.add_argument("--reps", type=int, default=5,
                    help="interleaved rounds: each a forward between two matmul bursts (median per round)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip CPU bf16 autocast")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time in this process's CPU seconds (use with --threads 1): robust to other load on a "
                         "shared machine, where wall-clock MFU mostly measures the share of the cores we got")
    ap.add_argument("--breakdown", action="store_true",
                    help="also profile one fp32 forward: each part's share of the time and fraction of the peak")
    ap.add_argument("--no-reference", dest="reference", action="store_false",
                    help="skip the reference-style per-clip fbank comparison")
    args = ap.parse_args(argv)
    global CLOCK
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        CLOCK = time.process_time
    torch.manual_seed(0)
    model = randomize_(BEATs(cpt2_config()), 0).eval()
    wave = torch.randn(args.batch, CLIP_SAMPLES) * 0.1
    n_tokens = model.token_count(CLIP_SAMPLES)
    gflop = beats_gflop(model.cfg, n_tokens)
    b = args.batch

    def ours(w):
        with torch.no_grad():
            return model.extract_features(w)

    def ours_bf16(w):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model.extract_features(w)

    def encoder_only(fb):
        x = model.patch_embedding(fb.unsqueeze(1)).flatten(2).transpose(1, 2)
        x = model.post_extract_proj(model.layer_norm(x))
        return model.encoder(x, None)

    def reference_style(w):           # the reference's per-clip kaldi.fbank loop, same model
        with torch.no_grad():
            return encoder_only(reference_fbank_loop(w))

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ours(wave)  # warm-up
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.bf16:
        ours_bf16(wave)
    rounds: dict[str, list[tuple[float, float, float]]] = {"fp32": [], "bf16": []}
    for _ in range(args.reps):
        rounds["fp32"].append(paired_round(ours, wave, torch.float32))
        if args.bf16:
            rounds["bf16"].append(paired_round(ours_bf16, wave, torch.bfloat16))
    best = {k: min((r[0] for r in v), default=float("inf")) for k, v in rounds.items()}
    peak = {k: max((r[1] for r in v), default=0.0) for k, v in rounds.items()}
    t_ours = best["fp32"]
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    ours(wave)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    load = os.getloadavg()[0]
    print(f"BEATs cpt2 shape (12 x 768, random weights), {b} x 10 s clips, CPU, {torch.get_num_threads()} threads, "
          f"{n_tokens} tokens/clip, {gflop:.1f} GFLOP/clip; load average {load:.1f}; "
          f"{'CPU' if args.cpu_time else 'wall'} time")
    print(f"matmul 2048^2 peaks (same run, best burst): fp32 {peak['fp32']:.0f} GFLOP/s" +
          (f", bf16 {peak['bf16']:.0f} GFLOP/s" if args.bf16 else ""))
    mfu = [gflop * b / t / p for t, p, _ in rounds["fp32"]]
    print(f"ours fp32 (batched fbank)     : {b / t_ours:6.2f} clips/s  ({t_ours / b * 1e3:.0f} ms/clip)"
          f"  MFU {spread(mfu)} paired per round (target >= 0.8), {gflop * b / t_ours / peak['fp32']:.2f} "
          f"best forward / best burst; {faults / 1000:.0f}k page faults per batch")
    if args.bf16:
        t16 = best["bf16"]
        # each forward's time scaled by the host's fp32 speed around it: t32 * h32 / (t16 * h16)
        speedup = [t32 * h32 / (t16_ * h16) for (t32, _, h32), (t16_, _, h16) in zip(rounds["fp32"], rounds["bf16"])]
        mfu16 = [gflop * b / t / p for t, p, _ in rounds["bf16"]]
        print(f"ours bf16 autocast            : {b / t16:6.2f} clips/s  ({t16 / b * 1e3:.0f} ms/clip)"
              f"  = {spread(speedup)}x fp32 per round, host speed paired (target >= 2.5), {t_ours / t16:.2f}x "
              f"best / best; MFU {spread(mfu16)} of the bf16 peak")
    if args.reference:
        t_ref = time_path(reference_style, wave, 1, warmup=False)  # model already warm
        t_fb = time_path(beats_fbank, wave, args.reps)
        t_fb_ref = time_path(reference_fbank_loop, wave, args.reps)
        print(f"reference-style per-clip fbank: {b / t_ref:6.2f} clips/s  ({t_ref / b * 1e3:.0f} ms/clip)"
              f"  MFU {gflop * b / t_ref / peak['fp32']:.2f}; ours / reference-style {t_ref / t_ours:.2f}x")
        print(f"preprocessing alone           : batched {t_fb / b * 1e3:.1f} ms/clip vs loop "
              f"{t_fb_ref / b * 1e3:.1f} ms/clip = {t_fb_ref / t_fb:.2f}x")
    if args.breakdown:
        for part, share, frac in breakdown(ours, wave, model.cfg, n_tokens):
            eff = "" if frac != frac else f", {frac:.2f} of the matmul peak"
            print(f"  fp32 {part:<28}: {share:5.1%} of the time{eff}")
    print(f"peak RSS: {rss1 / 1024:.0f} MiB after our forward (+{(rss1 - rss0) / 1024:.0f} MiB over "
          f"model + batch), process peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
