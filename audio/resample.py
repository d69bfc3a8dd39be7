"""Resampling as the seed does it: soxr at "HQ" quality, librosa's length rule.

The seed loads audio with ``librosa.load(path, sr=16000)``; librosa 0.11 mixes to mono first
(channel mean), then calls ``soxr.resample(y, orig, target, quality="soxr_hq")`` on the float32
samples and cuts or zero-pads the result to ``ceil(len(y) * target / orig)`` (``fix_length``).
This module repeats exactly that, so audioret's 16 kHz waves equal librosa's (measured: bit for
bit on 44.1/48 kHz mono and stereo files, tests/test_resample_fidelity.py). A sinc kernel of our
own (torchaudio's) differed from it at 23.6-70 dB SNR, enough to reorder retrieval rankings.

soxr is a C library working on CPU arrays (about 6 ms per 30 s clip at 44.1 kHz on one core);
tensors on another device are resampled on the CPU and moved back.
"""

from __future__ import annotations

import math

import numpy as np
import soxr
import torch

# What the store records as its resampler (preprocessing identity): a store made with another
# resampler is refused on reopen instead of mixing two kinds of waves.
RESAMPLER = "soxr-HQ"
_QUALITY = "soxr_hq"  # the string librosa passes (same enum as "HQ")

# Input frames read beyond the last needed one when only the start of a file is kept, so the
# kept samples equal those of resampling the whole file. soxr is exact with 2048 frames of
# context at 44.1/48 kHz and 8192 at 96 kHz (measured); half a second covers every rate.
CONTEXT_SECONDS = 0.5
MIN_CONTEXT_FRAMES = 8192


def resampled_length(num_samples: int, orig_sr: int, target_sr: int) -> int:
    """Samples after resampling ``num_samples``: librosa's ``ceil(n * (target / orig))``."""
    if orig_sr == target_sr:
        return int(num_samples)
    return int(math.ceil(int(num_samples) * (float(target_sr) / int(orig_sr))))


def context_frames(orig_sr: int) -> int:
    """Extra source frames to decode past a cut (see ``CONTEXT_SECONDS``)."""
    return max(MIN_CONTEXT_FRAMES, int(math.ceil(CONTEXT_SECONDS * int(orig_sr))))


def resample_numpy(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """``wave`` [S] or [C, S] (float32/float64) -> same layout at ``target_sr``, librosa's result."""
    n_out = resampled_length(wave.shape[-1], orig_sr, target_sr)
    if wave.ndim == 1:
        y = soxr.resample(wave, orig_sr, target_sr, quality=_QUALITY)
    elif wave.ndim == 2:  # soxr wants [frames, channels]; each channel is resampled on its own
        y = soxr.resample(np.ascontiguousarray(wave.T), orig_sr, target_sr, quality=_QUALITY).T
    else:
        raise ValueError(f"expected [S] or [C, S], got shape {wave.shape}")
    if y.shape[-1] > n_out:
        y = y[..., :n_out]
    elif y.shape[-1] < n_out:
        y = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, n_out - y.shape[-1])])
    return np.ascontiguousarray(y, dtype=wave.dtype)


def resample(wave: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """Resample ``wave`` [..., S] from ``orig_sr`` to ``target_sr`` Hz along the last axis.

    float32 unless the input is float64 (integers are converted to float32 as they are); the
    result lives on the input's device. Same rate: the input itself.
    """
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return wave
    dtype = torch.float64 if wave.dtype == torch.float64 else torch.float32
    x = wave.detach().to("cpu", dtype).numpy()
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1]) if x.ndim != 1 else x  # [B, S] or [S]
    if flat.shape[-1] == 0:
        y = np.zeros(flat.shape[:-1] + (0,), flat.dtype)
    else:
        y = resample_numpy(flat, orig_sr, target_sr)
    out = torch.from_numpy(y.reshape(*lead, y.shape[-1]))
    return out.to(wave.device) if wave.device.type != "cpu" else out
