"""GPU check: one script, a few minutes on one GPU, printing what a GPU node gives each stage, every
figure next to the physical limit measured in the same run.

1. matmul peaks (bf16 and fp32, square matmuls): the limit every ratio below is taken against;
2. extraction: BEATs (cpt2 shape, random weights, 10 s windows, bf16 autocast, fbank included)
   windows/s at batch sizes 16-256, eager and compiled exactly as ``audioret extract --compile``
   compiles (``AudioEncoder.compile_windows``: one static graph per batch size, chunks padded to
   it; by default at batch 64 and 256 only, each compilation costs tens of seconds); MFU = achieved / peak;
3. train-heads: one epoch on a Clotho-size synthetic store (3839 clips x 5 captions, widths
   768/1024), split held on the device and streamed from the store; MFU of the heads' step;
4. finetune: one optimizer step of BEATs + a RoBERTa-large-shaped text encoder (random weights,
   bf16 autocast, AdamW) on a batch of 10 s clips and 32-token captions; step time and MFU.

Model FLOPs are counted by ``torch.utils.flop_counter`` (matmuls, convolutions, attention), so
MFU = counted FLOP/s over the bf16 matmul peak. ``--tiny`` shrinks everything (tiny encoders, a
small store, batch sizes 2-4) so the check runs on CPU in the tests in seconds.

    python benchmarks/gpu_check.py                 # on a GPU node (about 3-5 minutes)
    python benchmarks/gpu_check.py --no-compile    # skip torch.compile (its compile time is minutes)
    python benchmarks/gpu_check.py --tiny --device cpu --no-compile
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

WINDOW = 160_000  # 10 s at 16 kHz


@dataclass
class Sizes:
    """Everything the check sizes (full: a GPU node; tiny: the CPU test)."""

    matmul: int = 8192
    batches: tuple[int, ...] = (16, 32, 64, 128, 256)
    beats: str = "cpt2"  # or "tiny"
    clips: int = 3839  # Clotho v2.1 development
    frames: tuple[int, int] = (93, 186)  # 15-30 s clips, 62 frames per 10 s window
    tokens: tuple[int, int] = (8, 32)
    audio_dim: int = 768
    text_dim: int = 1024
    head_batch: int = 64
    finetune_batch: int = 32
    text: dict[str, int] = field(default_factory=lambda: dict(hidden_size=1024, num_hidden_layers=24,
                                                              num_attention_heads=16, intermediate_size=4096))
    text_tokens: int = 32
    vocab: int = 50265
    head_width: int = 1024  # embed and hidden width of the heads (train-heads defaults)
    window: int = WINDOW
    reps: int = 3
    compile_batches: tuple[int, ...] = (64, 256)  # one compilation each (what --batch-windows N compiles)


def tiny_sizes() -> Sizes:
    return Sizes(matmul=256, batches=(2,), beats="tiny", clips=48, frames=(10, 30), tokens=(4, 12), audio_dim=32,
                 text_dim=48, head_batch=16, finetune_batch=2,
                 text=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
                 text_tokens=8, vocab=1000, head_width=32, window=16_000, reps=1, compile_batches=(2,))


# ---------------------------------------------------------------- timing and FLOPs

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], Any], device: torch.device, reps: int, warmup: int = 1) -> float:
    """Best wall time of ``reps`` calls after ``warmup`` calls (device synchronised)."""
    for _ in range(warmup):
        fn()
    sync(device)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def counted_flops(fn: Callable[[], Any]) -> float:
    """FLOPs of one call as torch's flop counter sees them (matmul, conv, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def matmul_peak(size: int, dtype: torch.dtype, device: torch.device, reps: int = 10) -> float:
    """FLOP/s of a square ``size`` matmul in ``dtype`` (best of ``reps``)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    t = seconds(lambda: a @ b, device, reps, warmup=3)
    return 2 * size ** 3 / t


def autocast(device: torch.device) -> Any:
    return torch.autocast(device.type, dtype=torch.bfloat16)


# ---------------------------------------------------------------- stages

def beats_model(sizes: Sizes, device: torch.device) -> torch.nn.Module:
    from audioret.encoders.beats import BEATs, cpt2_config, randomize_, tiny_beats_config

    cfg = cpt2_config() if sizes.beats == "cpt2" else tiny_beats_config()
    return randomize_(BEATs(cfg), 0).to(device)


def extraction(sizes: Sizes, device: torch.device, peak: float, compile_too: bool) -> list[dict[str, Any]]:
    """Windows/s of the frozen BEATs forward (fbank included) per batch size, as extraction runs it:
    ``AudioEncoder.encode_windows`` in inference mode, eager, and compiled by ``compile_windows`` (the
    one helper ``audioret extract --compile`` uses) at ``sizes.compile_batches``."""
    from audioret.encoders.compiled import CompileError
    from audioret.encoders.registry import AudioEncoder

    model = beats_model(sizes, device).eval()
    modes = [("eager", b) for b in sizes.batches]
    if compile_too:
        modes += [("compile", b) for b in sizes.compile_batches]
    rows = []
    for name, b in modes:
        wave = torch.randn(b, sizes.window, device=device) * 0.1
        enc = AudioEncoder(model, name="gpu-check", dtype=torch.bfloat16, batch_size=b)
        enc.window_samples = sizes.window  # the windows this check feeds (tiny sizes: 1 s)

        def step() -> Any:
            with torch.inference_mode():
                return enc.encode_windows(wave)

        try:
            t0 = time.perf_counter()
            if name == "compile":
                enc.compile_windows()  # compiles now (a warm-up call on silent windows)
            step()  # warm (and, compiled, check that the real batch reuses the warm-up's graph)
            first = time.perf_counter() - t0
            t = seconds(step, device, sizes.reps)
        except torch.OutOfMemoryError:
            rows.append({"mode": name, "batch": b, "error": "out of memory"})
            torch.cuda.empty_cache()
            continue
        except CompileError as err:
            rows.append({"mode": name, "batch": b, "error": str(err)})
            continue
        with torch.no_grad(), autocast(device):
            flops = counted_flops(lambda: model.extract_features(wave))
        rows.append({"mode": name, "batch": b, "windows_per_s": b / t, "mfu": flops / t / peak,
                     "limit_windows_per_s": peak / (flops / b), "first_call_s": first})
    return rows


def synthetic_store(path: Path, sizes: Sizes, seed: int = 0) -> Path:
    """A Clotho-shaped store of random fp16 features (dev, and a small val for completeness)."""
    from audioret.train_heads.data import FeatureSplit, Ragged
    from audioret.train_heads.store_reader import write_feature_split

    rng = np.random.default_rng(seed)

    def ragged(counts: np.ndarray, dim: int) -> Ragged:
        data = torch.from_numpy(rng.standard_normal((int(counts.sum()), dim), dtype=np.float32).astype(np.float16))
        lengths = torch.from_numpy(counts.astype(np.int64))
        return Ragged(data, torch.cumsum(lengths, 0) - lengths, lengths)

    n, caps = sizes.clips, sizes.clips * 5
    frames = rng.integers(sizes.frames[0], sizes.frames[1] + 1, n)
    split = FeatureSplit(
        name="dev", clip_ids=[f"clip_{i:05d}.wav" for i in range(n)], captions=[f"caption {j}" for j in range(caps)],
        caption_clip=torch.arange(caps) // 5, frames=ragged(frames, sizes.audio_dim),
        windows=ragged(-(-frames // 62), sizes.audio_dim), tokens=ragged(
            rng.integers(sizes.tokens[0], sizes.tokens[1] + 1, caps), sizes.text_dim),
        first=ragged(np.ones(caps, dtype=np.int64), sizes.text_dim).data,
        metadata={"audio_encoder": {"name": "synthetic"}, "text_encoder": {"name": "synthetic"}})
    write_feature_split(path, split)
    return path


def head_epochs(sizes: Sizes, device: torch.device, peak: float, store: Path) -> list[dict[str, Any]]:
    """One training epoch of the default heads: the split on the device, and streamed from the store."""
    from audioret.models import RetrievalHeads, contrastive_loss
    from audioret.train_heads.config import TrainHeadsConfig
    from audioret.train_heads.data import choose_block, split_bytes, train_loader
    from audioret.train_heads.run import head_config
    from audioret.train_heads.store_reader import StoreSplitReader, load_feature_split

    cfg = TrainHeadsConfig(embed_dim=sizes.head_width, hidden_dim=sizes.head_width)
    mem = load_feature_split(store, "dev", device)
    stream = StoreSplitReader(store, "dev")
    budget = split_bytes(stream) / 3  # a store 3x larger than the memory it may use
    pin = device.type == "cuda"
    loaders = {
        "memory (on device)": train_loader(mem, sizes.head_batch, seed=0, shard_block=0, shuffle_window=8, threads=2,
                                           memory_bytes=budget, pin_memory=False),
        "stream (1/3 in RAM)": train_loader(stream, sizes.head_batch, seed=0,
                                            shard_block=choose_block(stream, budget, cfg.shuffle_window),
                                            shuffle_window=cfg.shuffle_window, threads=4, memory_bytes=budget,
                                            pin_memory=pin)}
    heads = RetrievalHeads(head_config(cfg, sizes.audio_dim, sizes.text_dim)).to(device).train()
    opt = torch.optim.AdamW(heads.parameters(), lr=1e-4)

    def step(b: Any) -> None:
        with autocast(device):
            a = heads.embed_audio(b.audio)[b.inverse]
            loss = contrastive_loss(a, heads.embed_text(b.text), b.caption_clip, b.caption_clip, heads.tau)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    rows = []
    for name, loader in loaders.items():
        loader.dataset.set_epoch(0)
        first = next(iter(loader)).to(device)
        flops = counted_flops(lambda: step(first))  # one step, as the epoch's average
        sync(device)
        t0, steps, caps = time.perf_counter(), 0, 0
        for b in loader:
            step(b.to(device))
            steps, caps = steps + 1, caps + len(b.caption_clip)
        sync(device)
        t = time.perf_counter() - t0
        rows.append({"data": name, "epoch_s": t, "captions_per_s": caps / t, "mfu": flops * steps / t / peak})
    return rows


def finetune_step(sizes: Sizes, device: torch.device, peak: float) -> dict[str, Any]:
    """One AdamW step of BEATs + a RoBERTa-shaped encoder on a batch (bf16 autocast, contrastive loss)."""
    from transformers import RobertaConfig, RobertaModel

    audio = beats_model(sizes, device).train()
    text = RobertaModel(RobertaConfig(vocab_size=sizes.vocab, max_position_embeddings=514, **sizes.text),
                        add_pooling_layer=False).to(device).train()
    proj_a = torch.nn.Linear(audio.cfg.encoder_embed_dim, 1024).to(device)
    proj_t = torch.nn.Linear(sizes.text["hidden_size"], 1024).to(device)
    params = [*audio.parameters(), *text.parameters(), *proj_a.parameters(), *proj_t.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-5)
    b = sizes.finetune_batch
    wave = torch.randn(b, sizes.window, device=device) * 0.1
    ids = torch.randint(3, sizes.vocab, (b, sizes.text_tokens), device=device)

    def step() -> None:
        with autocast(device):
            a = proj_a(audio.extract_features(wave)[0].mean(1))
            t = proj_t(text(input_ids=ids).last_hidden_state.mean(1))
            sim = F.normalize(a, dim=-1) @ F.normalize(t, dim=-1).T / 0.05
            target = torch.arange(b, device=device)
            loss = (F.cross_entropy(sim, target) + F.cross_entropy(sim.T, target)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    try:
        flops = counted_flops(step)
        t = seconds(step, device, sizes.reps)
    except torch.OutOfMemoryError:
        return {"batch": b, "error": "out of memory"}
    return {"batch": b, "step_s": t, "mfu": flops / t / peak, "limit_step_s": flops / peak}


# ---------------------------------------------------------------- report

def run_check(sizes: Sizes, device: torch.device, compile_too: bool, out: Callable[[str], None] = print
              ) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    out(f"device: {name}; torch {torch.__version__}; load average {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    peak = matmul_peak(sizes.matmul, torch.bfloat16, device)
    peak32 = matmul_peak(sizes.matmul, torch.float32, device)
    out(f"matmul {sizes.matmul}^2 peak: bf16 {peak / 1e9:.0f} GFLOP/s, fp32 {peak32 / 1e9:.0f} GFLOP/s "
        "(every MFU below is against the bf16 peak)")
    result: dict[str, Any] = {"device": name, "peak_bf16": peak, "peak_fp32": peak32}
    result["extraction"] = extraction(sizes, device, peak, compile_too)
    for r in result["extraction"]:
        if "error" in r:
            out(f"extraction {r['mode']:7s} batch {r['batch']:3d}: {r['error']}")
            continue
        out(f"extraction {r['mode']:7s} batch {r['batch']:3d}: {r['windows_per_s']:8.1f} windows/s, MFU "
            f"{r['mfu']:.2f} (limit {r['limit_windows_per_s']:.0f} windows/s; first call {r['first_call_s']:.1f} s)")
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        t = time.perf_counter()
        store = synthetic_store(Path(tmp) / "synth.zarr", sizes)
        out(f"synthetic store: {sizes.clips} clips, {sizes.clips * 5} captions, written in {time.perf_counter() - t:.1f} s")
        result["heads"] = head_epochs(sizes, device, peak, store)
    for r in result["heads"]:
        out(f"train-heads epoch, {r['data']:20s}: {r['epoch_s']:6.2f} s, {r['captions_per_s']:8.0f} captions/s, "
            f"MFU {r['mfu']:.3f}")
    result["finetune"] = ft = finetune_step(sizes, device, peak)
    if "error" in ft:
        out(f"finetune step, batch {ft['batch']}: {ft['error']}")
    else:
        out(f"finetune step, batch {ft['batch']} ({sizes.window / 16000:.0f} s clips, {sizes.text_tokens} tokens): {ft['step_s'] * 1e3:.0f} ms, "
            f"MFU {ft['mfu']:.2f} (limit {ft['limit_step_s'] * 1e3:.0f} ms)")
    result["wall_s"] = time.perf_counter() - t0
    out(f"gpu_check done in {result['wall_s']:.0f} s")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (the CPU test)")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile rows")
    ap.add_argument("--batches", type=int, nargs="+", default=None, help="extraction batch sizes")
    ap.add_argument("--compile-batches", type=int, nargs="+", default=None,
                    help="batch sizes of the compiled rows (default 64 256; each compiles once, tens of seconds)")
    ap.add_argument("--clips", type=int, default=None, help="clips of the synthetic store (Clotho: 3839)")
    args = ap.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sizes = tiny_sizes() if args.tiny else Sizes()
    if args.batches:
        sizes.batches = tuple(args.batches)
    if args.compile_batches:
        sizes.compile_batches = tuple(args.compile_batches)
    if args.clips:
        sizes.clips = args.clips
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 peak line shows TF32, as training would use
    run_check(sizes, device, args.compile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
