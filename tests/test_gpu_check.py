"""benchmarks/gpu_check.py runs end to end on CPU with tiny sizes (on a GPU node it runs full size)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_tiny_check_prints_every_figure_with_its_limit(capsys):
    mod = _gpu_check()
    lines: list[str] = []
    result = mod.run_check(mod.tiny_sizes(), torch.device("cpu"), compile_too=False, out=lines.append)
    text = "\n".join(lines)
    assert result["peak_bf16"] > 0 and result["peak_fp32"] > 0
    (ext,) = result["extraction"]
    # timing-derived figures: only that they exist and are positive (their size depends on the CPU:
    # without AMX the bf16 matmul peak is low and a tiny model's MFU against it can exceed 1)
    assert ext["mode"] == "eager" and ext["windows_per_s"] > 0 and math.isfinite(ext["mfu"]) and ext["mfu"] > 0
    assert ext["limit_windows_per_s"] > 0
    assert [r["data"] for r in result["heads"]] == ["memory (on device)", "stream (1/3 in RAM)"]
    assert all(r["captions_per_s"] > 0 and math.isfinite(r["mfu"]) for r in result["heads"])
    assert result["finetune"]["step_s"] > 0 and result["finetune"]["mfu"] > 0
    for word in ("matmul", "extraction eager", "windows/s", "train-heads epoch", "finetune step", "MFU", "limit"):
        assert word in text


def test_cli_parses_tiny_cpu_without_compile(monkeypatch):
    mod = _gpu_check()
    seen = {}
    monkeypatch.setattr(mod, "run_check", lambda sizes, device, compile_too, out=print: seen.update(
        sizes=sizes, device=device, compile_too=compile_too))
    assert mod.main(["--tiny", "--device", "cpu", "--no-compile", "--batches", "2", "3"]) == 0
    assert seen["device"].type == "cpu" and not seen["compile_too"] and seen["sizes"].batches == (2, 3)
    assert mod.Sizes().batches == (16, 32, 64, 128, 256) and mod.Sizes().clips == 3839


def test_compiled_rows_compile_as_extract_does(monkeypatch):
    """The compile rows go through the extractor's helper (AudioEncoder.compile_windows ->
    encoders/compiled.py): torch.compile is asked for one static graph, once per compiled batch size.
    torch.compile itself is replaced by the identity here (a real one costs tens of seconds on CPU)."""
    mod = _gpu_check()
    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: calls.append(kw) or fn)
    sizes = mod.tiny_sizes()
    rows = mod.extraction(sizes, torch.device("cpu"), 1e9, compile_too=True)
    assert [(r["mode"], r["batch"]) for r in rows] == [("eager", 2), ("compile", 2)]
    assert calls == [{"dynamic": False}] and all(r["windows_per_s"] > 0 for r in rows)
