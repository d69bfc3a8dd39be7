"""Data for finetune: (clip, caption) training pairs and per-clip evaluation items, from raw audio
or from a feature store's BEATs window means; a resumable, rank-sharded batch order.

Training items are the seed's flat captions: one item per (clip, caption), so a Clotho clip appears
five times per epoch. Audio comes from an :class:`AudioSource`:

- :class:`LiveAudio` decodes (16 kHz mono), crops to ``max_seconds`` (random start for training,
  like the baseline; the start for evaluation) and cuts 10 s windows -> ``[W, 160000]``.
- :class:`StoreAudio` returns the store's per-window all-token means ``[W, D]`` (``windows`` field),
  which is exactly what the seed's pooling averages, so a frozen encoder need not run.

A clip that fails to decode (or is missing/failed in the store) is logged and replaced by another
random training item (deterministic in the seed, the index and the attempt); evaluation drops it.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from audioret.audio import AudioDecodeError, load_audio, split_windows
from audioret.corpora import Clip
from audioret.encoders.features import load_clip_wave

log = logging.getLogger(__name__)


class ClipUnavailable(RuntimeError):
    """Audio of one clip could not be produced (decode error, missing or failed store item)."""


# --------------------------------------------------------------------------- audio sources

def random_crop(wave: Tensor, max_samples: int, gen: torch.Generator | None = None) -> Tensor:
    """Uniform random window of ``max_samples`` from a longer wave (the baseline's training crop)."""
    n = wave.shape[-1]
    if n <= max_samples:
        return wave
    start = int(torch.randint(0, n - max_samples + 1, (1,), generator=gen))
    return wave[..., start:start + max_samples]


@dataclass
class LiveAudio:
    """Decode -> crop -> 10 s windows [W, window_samples] (float32)."""

    sample_rate: int = 16000
    window_samples: int = 160000
    max_seconds: float = 30.0
    crop_mode: str = "start"  # "random" for training, like the baseline

    kind = "windows"

    @property
    def max_samples(self) -> int:
        return int(round(self.max_seconds * self.sample_rate))

    def __call__(self, clip: Clip) -> Tensor:
        try:
            if self.crop_mode == "random":
                wave = random_crop(load_audio(clip.path, self.sample_rate), self.max_samples)
            else:  # exactly what extract stores (same decode, cap and resampling context)
                wave = load_clip_wave(clip.path, self.sample_rate, self.max_samples, "start")
        except AudioDecodeError as e:
            raise ClipUnavailable(str(e)) from e
        return split_windows(wave, self.window_samples)


class StoreAudio:
    """Per-window token means of the clips of one store split, held in RAM ([W, D] float32 each)."""

    kind = "window_means"

    def __init__(self, table: Any, *, where: str = "store") -> None:
        flat, offsets, lengths = table.load("windows")
        self.flat = torch.from_numpy(flat)  # [R, D] store dtype (fp16 by default)
        self.offsets, self.lengths = offsets.tolist(), lengths.tolist()
        valid = table.valid
        self.row_of = {cid: i for i, cid in enumerate(table.ids) if bool(valid[i])}
        self.where = where
        self.split = table.split

    def __call__(self, clip: Clip) -> Tensor:
        row = self.row_of.get(clip.clip_id)
        if row is None:
            raise ClipUnavailable(f"{self.where}: clip {clip.clip_id!r} is not (validly) in split "
                                  f"{self.split!r} of the store")
        o, n = self.offsets[row], self.lengths[row]
        return self.flat[o:o + n].float()


# --------------------------------------------------------------------------- datasets

@dataclass(frozen=True)
class Pair:
    clip: int  # index into the dataset's clip list (global over all training corpora)
    caption: str


def flat_pairs(clips: Sequence[Clip]) -> list[Pair]:
    """One training item per (clip, caption), clip by clip (the seed's ``flat_captions``)."""
    return [Pair(i, cap) for i, c in enumerate(clips) for cap in c.captions]


class TrainPairs(Dataset):
    """(audio, caption) items; a failing clip is replaced by another random item (logged)."""

    def __init__(self, clips: Sequence[Clip], audio: Any, *, seed: int = 0, retries: int = 10) -> None:
        self.clips = list(clips)
        self.pairs = flat_pairs(self.clips)
        self.audio, self.seed, self.retries = audio, seed, retries

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = random.Random(f"{self.seed}:{i}")
        idx = i
        for attempt in range(self.retries + 1):
            pair = self.pairs[idx]
            clip = self.clips[pair.clip]
            try:
                audio = self.audio(clip)
                return {"audio": audio, "kind": self.audio.kind, "clip": pair.clip,
                        "caption": pair.caption, "index": idx, "fname": clip.clip_id}
            except ClipUnavailable as e:
                replacement = rng.randrange(len(self.pairs))
                log.warning("training clip %s skipped (%s); replaced by item %d (attempt %d/%d)",
                            clip.path, e, replacement, attempt + 1, self.retries)
                idx = replacement
        raise ClipUnavailable(f"{self.retries + 1} clips in a row failed to load (last: "
                              f"{self.clips[self.pairs[idx].clip].path}); check the corpus with "
                              "`audioret corpus list` and the decode errors logged above")


class EvalClips(Dataset):
    """One item per clip (audio once, all its captions): 5x less audio work than flat pairs and the
    same metrics (the baseline deduplicates audios anyway). A failing clip yields None (dropped)."""

    def __init__(self, clips: Sequence[Clip], audio: Any) -> None:
        self.clips, self.audio = list(clips), audio

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        clip = self.clips[i]
        try:
            audio = self.audio(clip)
        except ClipUnavailable as e:
            log.warning("evaluation clip %s dropped: %s", clip.path, e)
            return None
        return {"audio": audio, "kind": self.audio.kind, "clip": i, "captions": list(clip.captions),
                "fname": clip.clip_id}


# --------------------------------------------------------------------------- batches

@dataclass
class AudioBatch:
    """Audio of B clips as windows: raw ``[sum W_i, window_samples]`` or stored means ``[sum W_i, D]``."""

    kind: str  # "windows" | "window_means"
    values: Tensor
    counts: list[int]  # windows per clip

    def to(self, device: torch.device | str) -> "AudioBatch":
        return AudioBatch(self.kind, self.values.to(device, non_blocking=True), self.counts)


@dataclass
class TrainBatch:
    audio: AudioBatch
    clip: Tensor  # [B] long, global clip index (positives = equal ids)
    captions: list[str]
    index: Tensor  # [B] dataset item index actually used


@dataclass
class EvalBatch:
    audio: AudioBatch
    clip: Tensor  # [B] clip index within the split
    captions: list[str]  # all captions of the B clips, clip by clip
    caption_clip: Tensor  # [C] clip index of each caption
    fnames: list[str]  # [B]


def _audio_batch(kind: str, items: list[Tensor]) -> AudioBatch:
    return AudioBatch(kind, torch.cat(items), [int(x.shape[0]) for x in items])


def collate_train(items: list[dict[str, Any]]) -> TrainBatch:
    return TrainBatch(_audio_batch(items[0]["kind"], [it["audio"] for it in items]),
                      torch.tensor([it["clip"] for it in items], dtype=torch.long),
                      [it["caption"] for it in items],
                      torch.tensor([it["index"] for it in items], dtype=torch.long))


def collate_eval(items: list[dict[str, Any] | None]) -> EvalBatch | None:
    items = [it for it in items if it is not None]
    if not items:
        return None
    kind = items[0]["kind"]
    caps = [c for it in items for c in it["captions"]]
    owner = [it["clip"] for it in items for _ in it["captions"]]
    return EvalBatch(_audio_batch(kind, [it["audio"] for it in items]),
                     torch.tensor([it["clip"] for it in items], dtype=torch.long), caps,
                     torch.tensor(owner, dtype=torch.long), [it["fname"] for it in items])


# --------------------------------------------------------------------------- batch order

def epoch_permutation(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffle of epoch ``epoch``: a pure function of (seed, epoch), identical on every rank."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g).tolist()


class ResumableBatchSampler(Sampler[list[int]]):
    """Shuffled, rank-sharded, drop-last batches whose position survives a restart.

    Global batch b of an epoch is ``perm[b*B*world : (b+1)*B*world]``; rank r takes its r-th slice
    of B (so all ranks see disjoint items). ``consumed`` (batches finished this epoch) is set by
    the training module and saved through the loader's ``state_dict``; after ``load_state_dict`` the
    same epoch resumes at that batch.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int, world: int = 1, rank: int = 0) -> None:
        self.n, self.batch_size, self.seed, self.world, self.rank = n, batch_size, seed, world, rank
        self.epoch, self.consumed = 0, 0
        self._resume: tuple[int, int] | None = None
        if len(self) == 0:
            raise ValueError(f"{n} training items are fewer than one batch of {batch_size} x {world} "
                             "devices; lower --batch_size")

    def __len__(self) -> int:
        return self.n // (self.batch_size * self.world)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.consumed = 0
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        perm = epoch_permutation(self.n, self.seed, self.epoch)
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start = self._resume[1]
        self._resume = None
        self.consumed = start
        step = self.batch_size * self.world
        for b in range(start, len(self)):
            lo = b * step + self.rank * self.batch_size
            yield perm[lo:lo + self.batch_size]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.seed, "world": self.world}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("world", self.world) != self.world:
            log.warning("resuming on %s devices a run saved on %s: the epoch restarts from its first batch",
                        self.world, state.get("world"))
            return
        self.epoch = int(state["epoch"])
        self._resume = (self.epoch, int(state["consumed"]))


class ResumableLoader(DataLoader):
    """A DataLoader Lightning treats as stateful (``state_dict``/``load_state_dict``): mid-epoch
    checkpoints resume at the next unseen batch instead of replaying the epoch's start."""

    def state_dict(self) -> dict[str, int]:
        return self.batch_sampler.state_dict()  # type: ignore[union-attr]

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.load_state_dict(state)  # type: ignore[union-attr]


def shard_indices(n: int, world: int, rank: int) -> list[int]:
    """Evaluation items of this rank: rank, rank+world, ... (no padding, no duplicates)."""
    return list(range(rank, n, world))


__all__ = ["ClipUnavailable", "LiveAudio", "StoreAudio", "TrainPairs", "EvalClips", "AudioBatch",
           "TrainBatch", "EvalBatch", "collate_train", "collate_eval", "ResumableBatchSampler",
           "ResumableLoader", "epoch_permutation", "shard_indices", "random_crop", "flat_pairs"]
