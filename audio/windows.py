"""Length policies as small pure functions on 1-D waves (or [..., S] where noted)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

CropMode = Literal["start", "center", "end"]


def crop(wave: torch.Tensor, max_samples: int, mode: CropMode = "start") -> torch.Tensor:
    """Keep at most ``max_samples`` of ``wave`` [..., S]: the first, middle or last ones."""
    if max_samples <= 0:
        raise ValueError(f"max_samples must be positive, got {max_samples}")
    n = wave.shape[-1]
    if n <= max_samples:
        return wave
    if mode == "start":
        start = 0
    elif mode == "center":
        start = (n - max_samples) // 2
    elif mode == "end":
        start = n - max_samples
    else:
        raise ValueError(f"crop mode must be start, center or end, got {mode!r}")
    return wave[..., start:start + max_samples]


def pad_to(wave: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad ``wave`` [..., S] on the right to ``length`` samples (never shortens)."""
    n = wave.shape[-1]
    if n >= length:
        return wave
    return F.pad(wave, (0, length - n))


def num_windows(num_samples: int, window: int) -> int:
    """Windows ``split_windows`` makes: ceil(S / window), at least 1."""
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    return max(1, -(-int(num_samples) // window))


def split_windows(wave: torch.Tensor, window: int) -> torch.Tensor:
    """Cut ``wave`` [S] into [n_win, window]; the last window is zero-padded; empty -> 1 window."""
    if wave.dim() != 1:
        raise ValueError(f"split_windows expects a 1-D wave, got shape {tuple(wave.shape)}")
    n = num_windows(wave.shape[0], window)
    return pad_to(wave, n * window).reshape(n, window)


def valid_samples_per_window(num_samples: int, window: int) -> list[int]:
    """Real (unpadded) samples in each window of ``split_windows`` for a wave of ``num_samples``."""
    n = num_windows(num_samples, window)
    return [max(0, min(window, num_samples - i * window)) for i in range(n)]
