"""The one place that decides how an audio encoder's window forward is compiled: ``audioret extract
--compile`` and ``benchmarks/gpu_check.py`` both come here, so the GPU check measures what the flag does.

torch.compile specialises a graph on its input shapes: a new batch size is a new compilation
(tens of seconds for BEATs), and past ``torch._dynamo.config.recompile_limit`` shapes dynamo runs
eager again with only a log line. Extraction feeds fixed 10 s windows, so the one size that varies
is the number of windows in a chunk (a batch packs whole clips up to ``--batch-windows``; the last
one of a run is smaller). Every chunk is therefore padded with silent windows to the full batch and
compiled with ``dynamic=False``: one shape, one compilation per run, no dynamic-shape kernels. Windows
are encoded independently (no padding mask), so padding cannot change a real window's features; it
costs the padded windows' compute, a few percent when batches pack clips to the budget.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import warnings
from collections.abc import Callable, Iterator

import torch
from torch._dynamo.exc import TorchDynamoException

from audioret.errors import UserError

Chunk = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

# what torch.compile is given (extract and gpu_check alike); dynamic=False: see the module docstring
COMPILE_OPTIONS: dict = {"dynamic": False}

# compile-time notes that say nothing a user can act on: the fbank constants' lru_cache (traced
# through: its inputs are constants) and the FFT (complex ops stay eager kernels inside the graph)
_QUIET = (r".*functools\.lru_cache.*", r".*does not support code generation for complex operators.*")


class CompileError(UserError):
    """``--compile`` could not compile the encoder (no C++ compiler for inductor on CPU, no triton on
    CUDA, an unsupported torch): one line naming the flag and the fix, before any work is done."""


def compile_window_forward(forward: Chunk, batch_size: int) -> Chunk:
    """``forward(windows [w, S]) -> (frames [w, T, D], vectors [w, D])`` compiled for exactly
    ``batch_size`` windows, for inference: a chunk of ``w <= batch_size`` is copied into zero windows
    ``[batch_size, S]`` and the outputs cut back to ``w``. Compilation happens on the first call.

    The copy is always made, in inference mode: dynamo also guards on a tensor's dispatch keys, and
    an inference tensor (a chunk cut inside ``torch.inference_mode``) and a plain one (a full batch
    passed through) would otherwise be two graphs."""
    compiled = torch.compile(forward, **COMPILE_OPTIONS)

    def padded(windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = windows.shape[0]
        if n > batch_size:
            raise ValueError(f"compiled for chunks of at most {batch_size} windows, got {n}")
        with torch.inference_mode():
            x = windows.new_zeros(batch_size, windows.shape[1])  # [batch_size, S]
            x[:n] = windows
            frames, vectors = compiled(x)
        return frames[:n], vectors[:n]

    return padded


def warm_up(forward: Chunk, batch_size: int, window_samples: int, device: torch.device) -> float:
    """Call ``forward`` once on silent windows (as extraction calls it: inference mode), so the
    compilation runs now and a broken toolchain stops the run in its first minute with one line
    (CompileError), not mid-run with a long traceback; returns the seconds it took."""
    x = torch.zeros(batch_size, window_samples, device=device)
    started = time.perf_counter()
    try:
        with warnings.catch_warnings(), quiet_logging(), torch.inference_mode():
            for pattern in _QUIET:
                warnings.filterwarnings("ignore", message=pattern)
            forward(x)
    except torch.OutOfMemoryError:
        raise
    except TorchDynamoException as err:  # InductorError, BackendCompilerFailed, Unsupported
        raise CompileError(failure_message(err, device)) from None
    return time.perf_counter() - started


@contextlib.contextmanager
def quiet_logging() -> Iterator[None]:
    """No log records while compiling: a failing inductor logs the whole IR of the kernel it could
    not build (a CRITICAL record of 50+ lines) before raising; the raised error becomes our one
    line. The run has not started yet, so nothing else is logging."""
    before = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(before)


def failure_message(err: BaseException, device: torch.device) -> str:
    """One line: the flag, the compiler's own first line, and what to do."""
    first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
    if len(first) > 200:
        first = first[:197] + "..."
    if device.type != "cpu":
        need = "inductor on CUDA needs triton (the version your torch wheel names)"
    elif (cxx := cpu_compiler()) is None:
        need = "inductor on CPU needs a working C++ compiler: install g++ (or point $CXX at one)"
    else:
        need = f"the C++ compiler ({cxx}) is present, so this is inductor failing on this model: report it"
    return (f"--compile: torch.compile of the audio encoder failed on {device} ({type(err).__name__}: {first}); "
            f"{need}, or run without --compile (same features, eager speed)")


def cpu_compiler() -> str | None:
    """Path of the C++ compiler inductor would use on CPU (its ``cpp.cxx`` candidates), or None."""
    from torch._inductor import config as inductor

    found = (shutil.which(c) for c in inductor.cpp.cxx if c)
    return next((f for f in found if f), None)
