"""Band-limited resampling with the sinc kernel cached per rate pair.

``torchaudio.functional.resample`` rebuilds its windowed-sinc kernel on every call; a
``torchaudio.transforms.Resample`` module holds it as a buffer, so one module per
(orig, new, dtype, device) is kept and reused. Same maths, same output.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torchaudio.transforms import Resample


@lru_cache(maxsize=32)
def _resampler(orig_sr: int, target_sr: int, dtype: torch.dtype, device: str) -> Resample:
    module = Resample(orig_freq=orig_sr, new_freq=target_sr, dtype=dtype)
    return module.to(device)


def resample(wave: torch.Tensor, orig_sr: int, target_sr: int) -> torch.Tensor:
    """Resample ``wave`` [..., S] from ``orig_sr`` to ``target_sr`` Hz along the last axis."""
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr:
        return wave
    if not wave.is_floating_point():
        wave = wave.float()
    module = _resampler(orig_sr, target_sr, wave.dtype, str(wave.device))
    with torch.no_grad():
        return module(wave)
