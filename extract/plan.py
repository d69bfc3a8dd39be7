"""Lay out a split before any model runs: header probes -> planned samples -> rows per item.

The store needs every item's row counts up front (it places each part on shard boundaries so
writers never share a file). Audio rows follow from the number of 16 kHz samples kept, which
the file header gives without decoding; that planned count is then the authority: the decoded
wave is cut or zero-extended to it (lossy headers are estimates), so the store never disagrees
with its plan. Files whose header cannot be read get zero rows and are failed with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from audioret.audio import AudioDecodeError, num_windows, probe, resampled_length, valid_samples_per_window


def planned_samples(num_frames: int, sample_rate: int, target_sr: int, max_samples: int | None) -> int:
    """Samples kept at ``target_sr``: the resampled length (librosa's ceil rule), capped."""
    n = resampled_length(int(num_frames), int(sample_rate), int(target_sr))
    return n if max_samples is None else min(n, int(max_samples))


def audio_rows(num_samples: int, window: int, valid_frames: Callable[[int], int]) -> tuple[int, int]:
    """(time frames kept, windows) for a clip of ``num_samples``: valid frames of each window
    (the last one zero-padded) and one window-mean row per window."""
    per_window = valid_samples_per_window(num_samples, window)
    return sum(valid_frames(v) for v in per_window), num_windows(num_samples, window)


@dataclass(frozen=True)
class ProbeResult:
    samples: int        # planned samples at the target rate (0 when failed)
    duration: float     # seconds of the source file (nan when failed)
    error: str | None   # reason when the header could not be read


class _ProbeItems(Dataset):
    def __init__(self, paths: Sequence[Path], target_sr: int, max_samples: int | None) -> None:
        self.paths, self.target_sr, self.max_samples = list(paths), target_sr, max_samples

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> ProbeResult:
        try:
            info = probe(self.paths[i])
        except AudioDecodeError as err:
            return ProbeResult(0, float("nan"), err.reason)
        n = planned_samples(info.num_frames, info.sample_rate, self.target_sr, self.max_samples)
        return ProbeResult(n, info.duration, None)


def probe_all(paths: Sequence[Path], target_sr: int, max_samples: int | None,
              num_workers: int) -> list[ProbeResult]:
    """Header probes of every file, in DataLoader workers (network file systems are slow)."""
    if not paths:
        return []
    loader = DataLoader(_ProbeItems(paths, target_sr, max_samples), batch_size=256, collate_fn=list,
                        num_workers=min(num_workers, max(1, len(paths) // 256)))
    return [r for batch in loader for r in batch]


@dataclass(frozen=True)
class AudioLayout:
    """Rows per item of an audio table (input of ``FeatureStore.plan``)."""

    num_samples: np.ndarray   # int64 [N] planned samples at 16 kHz (after the cap)
    num_frames: np.ndarray    # int64 [N] valid time frames
    num_windows: np.ndarray   # int64 [N] 10 s windows (0 for failed probes)
    source_duration: np.ndarray  # float32 [N] seconds of the file (nan when unreadable)
    failures: dict[int, str]  # item -> reason (header unreadable)


def audio_layout(probes: Sequence[ProbeResult], window: int,
                 valid_frames: Callable[[int], int]) -> AudioLayout:
    n = len(probes)
    samples = np.zeros(n, np.int64)
    frames = np.zeros(n, np.int64)
    wins = np.zeros(n, np.int64)
    failures: dict[int, str] = {}
    for i, p in enumerate(probes):
        if p.error is not None:
            failures[i] = p.error
            continue
        samples[i] = p.samples
        frames[i], wins[i] = audio_rows(p.samples, window, valid_frames)
    durs = np.array([p.duration for p in probes], np.float32)
    return AudioLayout(samples, frames, wins, durs, failures)


def text_items(captions_per_clip: Sequence[Sequence[str]]) -> tuple[list[str], np.ndarray]:
    """Flatten captions: (captions [M], clip_index [M] int32 -> audio row)."""
    caps = [c for cs in captions_per_clip for c in cs]
    idx = np.repeat(np.arange(len(captions_per_clip), dtype=np.int32),
                    [len(cs) for cs in captions_per_clip])
    return caps, idx


def count_tokens(captions: Sequence[str], num_tokens: Callable[[list[str]], list[int]],
                 chunk: int = 4096) -> np.ndarray:
    """Valid token counts per caption (tokenizer only, no model), int64 [M]."""
    out = [num_tokens(list(captions[i:i + chunk])) for i in range(0, len(captions), chunk)]
    return np.asarray([n for part in out for n in part], dtype=np.int64)


def num_parts_for(num_items: int, items_per_part: int) -> int:
    """Parts of a table: fixed by the item count (never by the shard count), so a resumed or
    re-sharded run plans the same layout."""
    return max(1, -(-num_items // max(1, items_per_part)))
