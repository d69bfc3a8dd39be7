"""Clip -> stored audio features: the one definition extract writes and evaluate/predict recompute.

A clip (16 kHz mono wave, already capped to ``max_samples``) is cut into 10 s windows (last one
zero-padded, at least one), each window runs through the encoder without a padding mask
(``AudioEncoder.encode_windows``), and the clip keeps:

- ``frames [T, D]``: each window's valid time frames (``AudioEncoder.num_valid_frames`` of the
  window's real samples), concatenated in time order;
- ``windows [W, D]``: each window's mean over ALL its tokens, padding included (seed recipe).

Windows of several clips share encoder batches (:func:`audio_clips_features`); the split back
into clips is :func:`split_window_outputs`, which extract's writer also calls, so the store and a
raw-audio evaluation can never disagree on the rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from audioret.audio import crop, load_audio, split_windows, valid_samples_per_window


@dataclass
class ClipFeatures:
    frames: Tensor   # [T, D] valid time frames of every window, in time order
    windows: Tensor  # [W, D] mean of all tokens of each 10 s window


def load_clip_wave(path: str | Path, sample_rate: int, max_samples: int | None,
                   crop_mode: str = "start") -> Tensor:
    """Decode ``path`` as extract does: mono float32 [S] at ``sample_rate``, capped.

    "start" decodes only the first ``max_samples`` (cheap for long files; the resampler sees the
    same context as extract); "center"/"end" decode everything, resample, then crop.
    Raises ``AudioDecodeError`` naming the file.
    """
    if max_samples is None or crop_mode == "start":
        return load_audio(path, sample_rate, max_samples=max_samples)
    return crop(load_audio(path, sample_rate), max_samples, crop_mode)  # type: ignore[arg-type]


def clip_windows(wave: Tensor, window_samples: int, max_samples: int | None = None,
                 crop_mode: str = "start") -> Tensor:
    """1-D wave [S] -> windows [W, window_samples] after the cap (last window zero-padded)."""
    if wave.dim() != 1:
        raise ValueError(f"expected a 1-D 16 kHz wave, got shape {tuple(wave.shape)}")
    if max_samples is not None:
        wave = crop(wave, max_samples, crop_mode)  # type: ignore[arg-type]
    return split_windows(wave.float(), window_samples)


def split_window_outputs(frames: Tensor, means: Tensor, num_samples: Sequence[int], window_samples: int,
                         valid_frames: Callable[[int], int]) -> list[ClipFeatures]:
    """Encoder outputs of consecutive clips' windows -> per-clip features.

    frames [sum W_i, F, D], means [sum W_i, D]; clip i has ``num_samples[i]`` real samples (after
    the cap) and ceil(n / window) windows (>= 1); ``valid_frames(v)`` = frames kept of a window
    holding ``v`` real samples (the encoder's ``num_valid_frames``).
    """
    out, pos = [], 0
    for n in num_samples:
        per_window = valid_samples_per_window(int(n), window_samples)
        w = len(per_window)
        fr = torch.cat([frames[pos + k, :valid_frames(v)] for k, v in enumerate(per_window)])
        out.append(ClipFeatures(fr, means[pos:pos + w]))
        pos += w
    if pos != frames.shape[0]:
        raise ValueError(f"{frames.shape[0]} encoded windows, the clips' lengths need {pos}")
    return out


def audio_clips_features(enc, waves: Sequence[Tensor], max_samples: int | None = None,
                         crop_mode: str = "start") -> list[ClipFeatures]:
    """Several clips at once (their windows batched by the encoder's ``batch_size``), fp32 on CPU.

    ``enc``: an ``AudioEncoder`` (encode_windows, num_valid_frames, window_samples).
    """
    wins = [clip_windows(w, enc.window_samples, max_samples, crop_mode) for w in waves]
    lengths = [min(int(w.shape[0]), max_samples) if max_samples is not None else int(w.shape[0])
               for w in waves]
    if not wins:
        return []
    with torch.inference_mode():
        frames, means = enc.encode_windows(torch.cat(wins).to(enc.device))
    return split_window_outputs(frames.float().cpu(), means.float().cpu(), lengths, enc.window_samples,
                                enc.num_valid_frames)


def audio_clip_features(enc, wave: Tensor, max_samples: int | None = None,
                        crop_mode: str = "start") -> ClipFeatures:
    """One clip: ``frames [T, D]`` and ``windows [W, D]`` exactly as extract stores them (fp32)."""
    return audio_clips_features(enc, [wave], max_samples, crop_mode)[0]


__all__ = ["ClipFeatures", "audio_clip_features", "audio_clips_features", "clip_windows",
           "load_clip_wave", "split_window_outputs"]
