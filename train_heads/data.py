"""Feature splits and batches for head training: the whole split in RAM (or on the GPU), or
streamed from the store with shard-aware shuffling when it does not fit.

A split is read through the ``SplitReader`` protocol (clip/caption counts, the caption -> clip
index, and batch reads returning padded ``AudioFeatures`` / ``TextFeatures``). ``FeatureSplit``
is the in-memory reader; ``store_reader.StoreSplitReader`` reads the Zarr store directly.
Training batches are B captions with their clips: unique clips are embedded once and expanded
back to one audio row per caption (``TrainBatch.audio_of_caption``), which gives exactly the
baseline's B x B matrix (duplicate audio rows included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from audioret.models import AudioFeatures, TextFeatures, pad_ragged


class SplitReader(Protocol):
    name: str
    caption_clip: Tensor  # [N_captions] long: caption -> clip row

    @property
    def num_clips(self) -> int: ...

    @property
    def num_captions(self) -> int: ...

    def audio(self, clip_index: Tensor) -> AudioFeatures: ...

    def text(self, caption_index: Tensor) -> TextFeatures: ...


@dataclass
class Ragged:
    """A ragged field: item i is ``data[starts[i] : starts[i] + lengths[i]]``."""

    data: Tensor  # [R, D]
    starts: Tensor  # [N] int64
    lengths: Tensor  # [N] int64

    @classmethod
    def from_list(cls, items: list[Tensor]) -> "Ragged":
        lengths = torch.tensor([len(x) for x in items], dtype=torch.long)
        starts = torch.cumsum(lengths, 0) - lengths
        return cls(torch.cat(items), starts, lengths)

    def gather(self, index: Tensor) -> tuple[Tensor, Tensor]:
        return pad_ragged(self.data, self.starts, self.lengths, index)

    def to(self, device: torch.device | str) -> "Ragged":
        return Ragged(self.data.to(device), self.starts.to(device), self.lengths.to(device))

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()


@dataclass
class FeatureSplit:
    """One split held in memory (CPU or GPU); satisfies ``SplitReader``."""

    name: str
    clip_ids: list[str]
    captions: list[str]
    caption_clip: Tensor  # [N_captions] long
    frames: Ragged  # audio frames [T_i, D_a]
    windows: Ragged  # per-window token means [W_i, D_a]
    tokens: Ragged  # caption token features [L_j, D_t]
    first: Tensor  # [N_captions, D_t]
    metadata: dict = field(default_factory=dict)  # the store's metadata (encoder identities)

    @property
    def num_clips(self) -> int:
        return len(self.clip_ids)

    @property
    def num_captions(self) -> int:
        return len(self.captions)

    @property
    def audio_dim(self) -> int:
        return int(self.frames.data.shape[-1])

    @property
    def text_dim(self) -> int:
        return int(self.tokens.data.shape[-1])

    @property
    def nbytes(self) -> int:
        return self.frames.nbytes + self.windows.nbytes + self.tokens.nbytes + self.first.numel() * self.first.element_size()

    def audio(self, clip_index: Tensor) -> AudioFeatures:
        frames, fmask = self.frames.gather(clip_index)
        windows, wmask = self.windows.gather(clip_index)
        return AudioFeatures(frames, fmask, windows, wmask)

    def text(self, caption_index: Tensor) -> TextFeatures:
        tokens, tmask = self.tokens.gather(caption_index)
        return TextFeatures(tokens, tmask, self.first[caption_index.to(self.first.device)])

    def to(self, device: torch.device | str) -> "FeatureSplit":
        return FeatureSplit(self.name, self.clip_ids, self.captions, self.caption_clip.to(device),
                            self.frames.to(device), self.windows.to(device), self.tokens.to(device),
                            self.first.to(device), self.metadata)


@dataclass
class TrainBatch:
    """B captions with their clips. ``audio`` holds the U unique clips; ``inverse`` [B] maps
    each caption to its row in ``audio``; ``caption_clip`` [B] are the clip ids (positives)."""

    caption_clip: Tensor  # [B] long
    inverse: Tensor  # [B] long, into audio rows
    audio: AudioFeatures  # U clips
    text: TextFeatures  # B captions
    caption_index: Tensor | None = None  # [B] long, caption rows in the split (teacher lookups)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "TrainBatch":
        return TrainBatch(self.caption_clip.to(device), self.inverse.to(device), self.audio.to(device, dtype),
                          self.text.to(device, dtype),
                          self.caption_index.to(device) if self.caption_index is not None else None)


@dataclass
class EvalChunk:
    """Chunk k of an evaluation pass: some clips and some captions (either may be empty)."""

    clip_index: Tensor  # [U] long
    audio: AudioFeatures | None
    caption_index: Tensor  # [C] long
    text: TextFeatures | None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "EvalChunk":
        return EvalChunk(self.clip_index.to(device), self.audio.to(device, dtype) if self.audio else None,
                         self.caption_index.to(device), self.text.to(device, dtype) if self.text else None)


def make_train_batch(reader: SplitReader, caption_index: Tensor) -> TrainBatch:
    clips = reader.caption_clip[caption_index.to(reader.caption_clip.device)]
    unique, inverse = torch.unique(clips, return_inverse=True)
    return TrainBatch(clips, inverse, reader.audio(unique), reader.text(caption_index), caption_index)


def global_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """A fresh permutation of all captions per epoch (in-memory data: random access is free)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def shard_aware_order(n: int, block: int, window: int, seed: int, epoch: int) -> np.ndarray:
    """Permutation for streaming: shuffle contiguous blocks of ``block`` captions (one store shard
    each), then shuffle captions inside groups of ``window`` consecutive blocks. Each batch then
    touches about ``window`` shards instead of B, while the order still changes every epoch."""
    rng = np.random.default_rng([seed, epoch])
    blocks = [np.arange(s, min(s + block, n)) for s in range(0, n, block)]
    order = rng.permutation(len(blocks))
    out = []
    for g in range(0, len(order), window):
        group = np.concatenate([blocks[b] for b in order[g:g + window]])
        out.append(rng.permutation(group))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


class CaptionBatches(Dataset):
    """Map-style dataset whose item k is training batch k of the current epoch (``set_epoch``).

    Under DDP Lightning's DistributedSampler deals whole batches to ranks. Incomplete last batch
    is dropped (``drop_last`` as the baseline).
    """

    def __init__(self, reader: SplitReader, batch_size: int, *, seed: int = 0, shard_block: int = 0,
                 shuffle_window: int = 8):
        if reader.num_captions < batch_size:
            raise ValueError(f"split {reader.name!r} has {reader.num_captions} captions, fewer than "
                             f"batch_size {batch_size}: lower --batch-size")
        self.reader, self.batch_size, self.seed = reader, batch_size, seed
        self.shard_block, self.shuffle_window = shard_block, shuffle_window
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        n = self.reader.num_captions
        self.order = (shard_aware_order(n, self.shard_block, self.shuffle_window, self.seed, epoch)
                      if self.shard_block else global_order(n, self.seed, epoch))

    def __len__(self) -> int:
        return self.reader.num_captions // self.batch_size

    def __getitem__(self, k: int) -> TrainBatch:
        idx = np.sort(self.order[k * self.batch_size:(k + 1) * self.batch_size])  # sorted: store reads in order
        return make_train_batch(self.reader, torch.from_numpy(idx))


class EvalChunks(Dataset):
    """Map-style dataset over a split for evaluation: K chunks, chunk k holding the k-th K-th of the
    clips and the k-th K-th of the captions (K sized so no chunk exceeds ``size`` of either)."""

    def __init__(self, reader: SplitReader, size: int):
        self.reader = reader
        self.num = max(1, math.ceil(reader.num_clips / size), math.ceil(reader.num_captions / size))

    def __len__(self) -> int:
        return self.num

    @staticmethod
    def _range(k: int, num: int, n: int) -> Tensor:
        return torch.arange(k * n // num, (k + 1) * n // num)

    def __getitem__(self, k: int) -> EvalChunk:
        clips = self._range(k, self.num, self.reader.num_clips)
        caps = self._range(k, self.num, self.reader.num_captions)
        return EvalChunk(clips, self.reader.audio(clips) if len(clips) else None,
                         caps, self.reader.text(caps) if len(caps) else None)


def identity_collate(x):
    """Items are already batches (DataLoader(batch_size=None))."""
    return x
