"""The audio input path: decode + resample + crop in DataLoader workers, window-level batches.

Every window is exactly 10 s, so batches are cut by a window budget over consecutive clips
(in store order, which the part writers need) and windows of many clips share one model
batch with no padding beyond each clip's own last window (the seed recipe's zero padding).
Workers return ``DecodedBatch`` objects (pinnable), timing their own decode work.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from audioret.audio import AudioDecodeError, pad_to, split_windows
from audioret.encoders.features import load_clip_wave


def fit_length(wave: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Cut or zero-extend ``wave`` [S] to the planned ``num_samples`` (header counts of lossy
    files are estimates; the plan is the authority)."""
    return pad_to(wave[:num_samples], num_samples)


def load_clip(path: Path, num_samples: int, target_sr: int, max_samples: int | None,
              crop_mode: str) -> torch.Tensor:
    """Mono float32 [num_samples] at ``target_sr`` with the cap applied by ``crop_mode``.

    "start" reads only the first ``max_samples`` (cheap for long files); "center"/"end" decode
    the whole file, resample, then crop.
    """
    return fit_length(load_clip_wave(path, target_sr, max_samples, crop_mode), num_samples)


@dataclass
class DecodedBatch:
    """Consecutive items of one table, decoded and cut into windows (built in a worker)."""

    indices: list[int]                 # global item indices, in store order
    windows: torch.Tensor              # [W, window] float32, windows of the decoded items, in order
    num_windows: list[int]             # per item (0 when failed)
    num_samples: list[int]             # planned samples per item
    errors: dict[int, str] = field(default_factory=dict)   # item -> reason
    sources: list[list[int] | None] = field(default_factory=list)  # per item: source [size, mtime_ns] before decoding
    decode_seconds: float = 0.0        # worker time spent decoding + resampling + windowing

    def pin_memory(self) -> DecodedBatch:
        """Called by the DataLoader's pinning thread (pin_memory=True) when CUDA is used."""
        self.windows = self.windows.pin_memory()
        return self


def source_stat(path: Path) -> list[int] | None:
    """[size, mtime_ns] of a source file (None when it is gone): what a rerun compares to tell a changed file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [int(st.st_size), int(st.st_mtime_ns)]


class AudioItems(Dataset):
    """Item i (global index) -> (i, wave [num_samples_i] or None, reason or None, source stat).

    The source's size and mtime are taken before decoding: a file changed while it is read
    then looks changed to the next rerun, never the other way round."""

    def __init__(self, paths: Sequence[Path], num_samples: np.ndarray, preset_failures: dict[int, str], *,
                 target_sr: int, max_samples: int | None, crop_mode: str) -> None:
        self.paths = list(paths)
        self.num_samples = np.asarray(num_samples, dtype=np.int64)
        self.preset_failures = dict(preset_failures)
        self.target_sr, self.max_samples, self.crop_mode = target_sr, max_samples, crop_mode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None, list[int] | None]:
        stat = source_stat(self.paths[i])
        if i in self.preset_failures:
            return i, None, self.preset_failures[i], stat
        try:
            wave = load_clip(self.paths[i], int(self.num_samples[i]), self.target_sr, self.max_samples,
                             self.crop_mode)
        except AudioDecodeError as err:
            return i, None, err.reason, stat
        return i, wave, None, stat


class WindowCollate:
    """Picklable collate: items -> ``DecodedBatch`` of 10 s windows (runs in the worker)."""

    def __init__(self, window: int, num_samples: np.ndarray) -> None:
        self.window = window
        self.num_samples = np.asarray(num_samples, dtype=np.int64)

    def __call__(self, items: list[tuple]) -> DecodedBatch:
        """Items are (i, wave, reason) or (i, wave, reason, source stat)."""
        parts, counts, errors = [], [], {}
        for i, wave, reason, *_ in items:
            if wave is None:
                errors[i] = reason or "unknown decode failure"
                counts.append(0)
                continue
            w = split_windows(wave, self.window)       # [n_win, window]
            parts.append(w)
            counts.append(w.shape[0])
        windows = torch.cat(parts) if parts else torch.zeros(0, self.window)
        idx = [it[0] for it in items]
        return DecodedBatch(idx, windows, counts, [int(self.num_samples[i]) for i in idx], errors,
                            [it[3] if len(it) > 3 else None for it in items])


class _TimedItems(Dataset):
    """Adds the worker-side time of each ``__getitem__`` (decode) to the batch it ends in."""

    def __init__(self, inner: AudioItems) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int):  # noqa: ANN204
        t0 = time.perf_counter()
        out = self.inner[i]
        return out + (time.perf_counter() - t0,)


class _TimedCollate:
    def __init__(self, inner: WindowCollate) -> None:
        self.inner = inner

    def __call__(self, items: list) -> DecodedBatch:  # noqa: ANN001
        t0 = time.perf_counter()
        batch = self.inner([it[:-1] for it in items])
        batch.decode_seconds = sum(it[-1] for it in items) + (time.perf_counter() - t0)
        return batch


def window_batches(items: Sequence[int], windows: np.ndarray, budget: int) -> list[list[int]]:
    """Group consecutive ``items`` so each group holds at most ``budget`` windows (a clip with
    more windows than the budget gets a group of its own). Order is kept: the store's part
    writers take items in order."""
    out: list[list[int]] = []
    cur: list[int] = []
    used = 0
    for i in items:
        w = int(windows[i])
        if cur and used + w > budget:
            out.append(cur)
            cur, used = [], 0
        cur.append(int(i))
        used += w
    if cur:
        out.append(cur)
    return out


def audio_loader(dataset: AudioItems, batches: list[list[int]], window: int, *, num_workers: int,
                 prefetch_factor: int, pin_memory: bool) -> DataLoader:
    """Ordered DataLoader over precomputed batches (workers decode; results arrive in order)."""
    kw = {"prefetch_factor": prefetch_factor, "persistent_workers": False} if num_workers > 0 else {}
    return DataLoader(_TimedItems(dataset), batch_sampler=batches,
                      collate_fn=_TimedCollate(WindowCollate(window, dataset.num_samples)),
                      num_workers=num_workers, pin_memory=pin_memory, **kw)
