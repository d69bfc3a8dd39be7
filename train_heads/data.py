"""Feature splits and batches for head training: the whole split in RAM (or on the GPU), or
streamed from the store in blocks when it does not fit.

A split is read through the ``SplitReader`` protocol (clip/caption counts, the caption -> clip
index, and batch reads returning padded ``AudioFeatures`` / ``TextFeatures``). ``FeatureSplit``
is the in-memory reader; ``store_reader.StoreSplitReader`` reads the Zarr store directly.
Training batches are B captions with their clips: unique clips are embedded once and expanded
back to one audio row per caption (``TrainBatch.audio_of_caption``), which gives exactly the
baseline's B x B matrix (duplicate audio rows included).

Streaming (``StreamingBatches``): the captions are cut into blocks of consecutive rows (each
block read whole, in the order the rows lie on disk, by background threads into a fixed arena
of slots), the epoch order shuffles blocks and then captions within groups of ``window``
blocks (``shard_aware_order``), and each batch is gathered from the arena with the same
vectorised gather as the in-memory split. So a batch costs what an in-memory batch costs, the
reads overlap training, and memory stays below the budget whatever the split's size.
"""

from __future__ import annotations

import math
import queue
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterator, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset

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

    # ---- BlockReader (streaming an in-memory split: tests and benchmarks compare the two paths)
    def lengths(self, name: str) -> np.ndarray:
        """Rows per item of a field (clips for frames/windows, captions for tokens/first)."""
        if name == "first":
            return np.ones(self.num_captions, dtype=np.int64)
        return getattr(self, name).lengths.numpy()

    def field_spec(self, name: str) -> tuple[int, torch.dtype]:
        data = self.first if name == "first" else getattr(self, name).data
        return int(data.shape[-1]), data.dtype

    def read_rows(self, name: str, items: np.ndarray, out: np.ndarray) -> None:
        """Rows of ``items`` concatenated into ``out`` [sum of their lengths, D]."""
        if name == "first":
            out[:] = self.first[torch.from_numpy(items)].numpy()
            return
        r = getattr(self, name)
        pos = 0
        for i in items.tolist():
            a, n = int(r.starts[i]), int(r.lengths[i])
            out[pos:pos + n] = r.data[a:a + n].numpy()
            pos += n

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
        return TrainBatch(self.caption_clip.to(device, non_blocking=True), self.inverse.to(device, non_blocking=True),
                          self.audio.to(device, dtype),
                          self.text.to(device, dtype),
                          self.caption_index.to(device, non_blocking=True) if self.caption_index is not None
                          else None)


def pin_batch(batch: TrainBatch) -> TrainBatch:
    """The batch in page-locked memory, so that ``to(cuda)`` copies asynchronously."""
    def pin(x: Any) -> Any:
        if isinstance(x, Tensor):
            return x.pin_memory()
        if x is None:
            return None
        return replace(x, **{f.name: pin(getattr(x, f.name)) for f in fields(x)})

    return pin(batch)


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


# ---------------------------------------------------------------- streaming

AUDIO_FIELDS = ("frames", "windows")  # per clip
TEXT_FIELDS = ("tokens", "first")  # per caption
FIELDS = AUDIO_FIELDS + TEXT_FIELDS


class BlockReader(SplitReader, Protocol):
    """A split that can be read in blocks of items (``StoreSplitReader``, ``FeatureSplit``)."""

    def lengths(self, name: str) -> np.ndarray: ...  # [N items] rows per item of a field

    def field_spec(self, name: str) -> tuple[int, torch.dtype]: ...  # (width, dtype)

    def read_rows(self, name: str, items: np.ndarray, out: np.ndarray) -> None: ...


@dataclass
class BlockLayout:
    """Where every item of every block lands in its arena slot (fixed for a split and block size).

    Block b holds captions ``[b * block, (b + 1) * block)`` and the clips they name (a clip whose
    captions straddle two blocks is held by both). ``local[f][c]`` is the first row, inside its
    block's slot, of caption c's own rows (text fields) or of its clip's rows (audio fields).
    """

    block: int  # captions per block
    clips: list[np.ndarray]  # [num_blocks] sorted unique clip rows of each block
    local: dict[str, np.ndarray]  # field -> [N_captions] int64 first row inside the block's slot
    lengths: dict[str, np.ndarray]  # field -> [N items] rows per item
    slot_rows: dict[str, int]  # field -> rows of one slot (the largest block)
    widths: dict[str, tuple[int, torch.dtype]]

    @property
    def num_blocks(self) -> int:
        return len(self.clips)

    @property
    def slot_bytes(self) -> int:
        return sum(self.slot_rows[f] * w * torch.empty(0, dtype=dt).element_size()
                   for f, (w, dt) in self.widths.items())

    def items(self, b: int, name: str) -> np.ndarray:
        """Item rows of ``name`` that block b holds, in slot order (= on-disk order)."""
        if name in AUDIO_FIELDS:
            return self.clips[b]
        n = len(self.lengths["first"])
        return np.arange(b * self.block, min((b + 1) * self.block, n))


def block_layout(reader: BlockReader, block: int) -> BlockLayout:
    caption_clip = reader.caption_clip.cpu().numpy()
    n = len(caption_clip)
    lengths = {f: np.asarray(reader.lengths(f), dtype=np.int64) for f in FIELDS}
    local = {f: np.zeros(n, dtype=np.int64) for f in FIELDS}
    slot_rows = dict.fromkeys(FIELDS, 1)
    clips = []
    for start in range(0, n, block):
        caps = np.arange(start, min(start + block, n))
        own = np.unique(caption_clip[caps])  # sorted: the clips' on-disk order
        clips.append(own)
        for f in TEXT_FIELDS:
            ln = lengths[f][caps]
            local[f][caps] = np.cumsum(ln) - ln
            slot_rows[f] = max(slot_rows[f], int(ln.sum()))
        where = np.searchsorted(own, caption_clip[caps])  # caption -> its clip's place in the block
        for f in AUDIO_FIELDS:
            ln = lengths[f][own]
            local[f][caps] = (np.cumsum(ln) - ln)[where]
            slot_rows[f] = max(slot_rows[f], int(ln.sum()))
    return BlockLayout(block, clips, local, lengths, slot_rows, {f: reader.field_spec(f) for f in FIELDS})


def split_bytes(reader: BlockReader) -> int:
    """Bytes of a split's features (each clip counted once)."""
    total = 0
    for f in FIELDS:
        width, dtype = reader.field_spec(f)
        total += int(np.asarray(reader.lengths(f)).sum()) * width * torch.empty(0, dtype=dtype).element_size()
    return total


def choose_block(reader: BlockReader, memory_bytes: float, window: int) -> int:
    """Captions per block so that ``2 * window + 1`` slots (the current shuffle group, the next one
    being read, one spare) fit in ``memory_bytes``, and a split has at least two groups."""
    n = max(1, reader.num_captions)
    total = split_bytes(reader)
    slots = 2 * window + 1
    block = max(1, min(n, int(min(memory_bytes / slots, total / (2 * window)) / max(total / n, 1.0))))
    for _ in range(20):  # the largest block sets the slot size: shrink until the slots fit
        size = block_layout(reader, block).slot_bytes
        if block == 1 or slots * size <= memory_bytes:
            break
        block = max(1, int(block * memory_bytes / (slots * size) * 0.98))
    return block


def epoch_batches(order: np.ndarray, batch_size: int, rank: int = 0, world: int = 1) -> list[np.ndarray]:
    """Sorted caption rows of this rank's batches: whole batches of ``order`` (the incomplete last
    one dropped), each rank a contiguous run of the same length (locality: fewer blocks per rank)."""
    total = len(order) // batch_size
    per_rank = total // world
    return [np.sort(order[k * batch_size:(k + 1) * batch_size])
            for k in range(rank * per_rank, (rank + 1) * per_rank)]


def block_lifetimes(batches: list[np.ndarray], block: int, num_blocks: int) -> tuple[list[np.ndarray], np.ndarray,
                                                                                          np.ndarray, int]:
    """(blocks of each batch, first use [num_blocks], last use [num_blocks], most blocks live at once).
    Unused blocks have first = last = -1."""
    used = [np.unique(b // block) for b in batches]
    first = np.full(num_blocks, -1, dtype=np.int64)
    last = np.full(num_blocks, -1, dtype=np.int64)
    for k, bl in enumerate(used):
        fresh = bl[first[bl] < 0]
        first[fresh] = k
        last[bl] = k
    delta = np.zeros(len(batches) + 1, dtype=np.int64)
    ok = first >= 0
    np.add.at(delta, first[ok], 1)
    np.add.at(delta, last[ok] + 1, -1)
    live = int(np.cumsum(delta).max()) if len(batches) else 0
    return used, first, last, live


def _put(out: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put unless the consumer has gone (``stop``); False then."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class StreamingBatches(IterableDataset):
    """Training batches of a split larger than memory, read block by block (see the module docstring).

    Iterating gives exactly the batches ``CaptionBatches(reader, batch_size, shard_block=block,
    shuffle_window=window)`` gives (same captions, same values), in the same order; under DDP each
    rank takes its own contiguous run of them. ``threads`` read blocks ahead; at most
    ``memory_bytes`` of blocks are held. ``pin_memory`` (CUDA): batches come page-locked.
    Use with ``DataLoader(num_workers=0, batch_size=None)``: the reads run in this process's threads.
    """

    def __init__(self, reader: BlockReader, batch_size: int, *, seed: int = 0, memory_bytes: float = 8e9,
                 shuffle_window: int = 8, block: int = 0, threads: int = 2, pin_memory: bool = False,
                 prefetch_batches: int = 4):
        if reader.num_captions < batch_size:
            raise ValueError(f"split {reader.name!r} has {reader.num_captions} captions, fewer than "
                             f"batch_size {batch_size}: lower --batch-size")
        self.reader, self.batch_size, self.seed, self.window = reader, batch_size, seed, max(1, shuffle_window)
        self.memory_bytes, self.threads, self.pin = memory_bytes, max(1, threads), pin_memory
        self.build_ahead = pin_memory  # a builder thread gathers (and pins) ahead: CUDA only, see __iter__
        self.prefetch_batches = max(1, prefetch_batches)
        self.layout = block_layout(reader, block or choose_block(reader, memory_bytes, self.window))
        self.block = self.layout.block
        self.epoch = 0
        self._arena: dict[str, Tensor] | None = None
        self._slots = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int | None = None) -> np.ndarray:
        return shard_aware_order(self.reader.num_captions, self.block, self.window, self.seed,
                                 self.epoch if epoch is None else epoch)

    def __len__(self) -> int:
        return (self.reader.num_captions // self.batch_size) // _rank_world()[1]

    # ---- memory
    def _arena_for(self, live: int) -> tuple[dict[str, Tensor], int]:
        """One tensor per field holding ``slots`` block slots; kept across epochs."""
        lay = self.layout
        need = min(lay.num_blocks, live)
        fit = int(self.memory_bytes // max(1, lay.slot_bytes))
        if fit < need:
            raise ValueError(f"a shuffle group of {need} blocks ({need * lay.slot_bytes / 1e9:.2f} GB) does not fit "
                             f"in the streaming memory budget ({self.memory_bytes / 1e9:.2f} GB): raise "
                             "--memory-limit-gb or lower --shuffle-window")
        slots = min(lay.num_blocks, fit, live + max(1, live))  # room to read a whole group ahead
        if self._arena is None or self._slots < slots:
            # zeros, not empty: the gather reads (and masks) rows past an item's end, which must be finite
            self._arena = {f: torch.zeros(slots * lay.slot_rows[f], w, dtype=dt) for f, (w, dt) in lay.widths.items()}
            self._slots = slots
        return self._arena, self._slots

    def _read_block(self, b: int, slot: int, arena: dict[str, Tensor]) -> None:
        lay = self.layout
        for f in FIELDS:
            items = lay.items(b, f)
            rows = int(lay.lengths[f][items].sum())
            base = slot * lay.slot_rows[f]
            self.reader.read_rows(f, items, arena[f][base:base + rows].numpy())

    # ---- batches
    def _gather(self, caps: np.ndarray, slot_of: np.ndarray, arena: dict[str, Tensor]) -> TrainBatch:
        """The in-memory split's batch, gathered from the arena (``pad_ragged`` as ``FeatureSplit``)."""
        lay = self.layout
        index = torch.from_numpy(caps)
        clips = self.reader.caption_clip[index]
        unique, inverse = torch.unique(clips, return_inverse=True)
        # one caption per unique clip (its first in the batch): the clip is read from that caption's block
        first_of = torch.full((len(unique),), len(caps), dtype=torch.long).scatter_reduce(
            0, inverse, torch.arange(len(caps)), reduce="amin").numpy()
        base = slot_of[caps // self.block]  # [B] slot of each caption's block

        def rows(f: str, who: np.ndarray, items: np.ndarray, slots: np.ndarray) -> tuple[Tensor, Tensor]:
            starts = torch.from_numpy(slots * lay.slot_rows[f] + lay.local[f][who])
            lens = torch.from_numpy(lay.lengths[f][items])
            return pad_ragged(arena[f], starts, lens, torch.arange(len(who)))

        who, uclips = caps[first_of], unique.numpy()
        frames, fmask = rows("frames", who, uclips, base[first_of])
        windows, wmask = rows("windows", who, uclips, base[first_of])
        tokens, tmask = rows("tokens", caps, caps, base)
        first = arena["first"][torch.from_numpy(base * lay.slot_rows["first"] + lay.local["first"][caps])]
        return TrainBatch(clips, inverse, AudioFeatures(frames, fmask, windows, wmask),
                          TextFeatures(tokens, tmask, first), index)

    def _batches(self, batches: list[np.ndarray]) -> Iterator[TrainBatch]:
        """Schedule block reads (first-use order, as slots free up, on the read threads), gather
        the batches in order, free each block's slot after its last batch."""
        lay = self.layout
        used, first, last, live = block_lifetimes(batches, self.block, lay.num_blocks)
        arena, slots = self._arena_for(live)
        pending = [int(b) for b in np.argsort(first, kind="stable") if first[b] >= 0]
        free = list(range(slots))[::-1]
        slot_of = np.full(lay.num_blocks, -1, dtype=np.int64)
        reads: dict[int, Future] = {}
        with ThreadPoolExecutor(self.threads, thread_name_prefix="stream-read") as pool:
            try:
                nxt = 0
                for k, caps in enumerate(batches):
                    while nxt < len(pending) and free:
                        b = pending[nxt]
                        nxt += 1
                        slot_of[b] = free.pop()
                        reads[b] = pool.submit(self._read_block, b, int(slot_of[b]), arena)
                    for b in used[k].tolist():
                        reads[b].result()
                    batch = self._gather(caps, slot_of, arena)
                    yield pin_batch(batch) if self.pin else batch
                    for b in used[k][last[used[k]] == k].tolist():
                        free.append(int(slot_of[b]))
                        del reads[b]
            finally:  # stopped early or failed: queued reads are dropped, running ones finish
                for f in reads.values():
                    f.cancel()

    def _produce(self, batches: list[np.ndarray], out: queue.Queue, stop: threading.Event) -> None:
        """Builder thread (CUDA): gathers and pins ahead while the GPU trains."""
        try:
            for batch in self._batches(batches):
                if not _put(out, batch, stop):
                    return
            _put(out, None, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            _put(out, exc, stop)

    def __iter__(self) -> Iterator[TrainBatch]:
        rank, world = _rank_world()
        batches = epoch_batches(self.order(), self.batch_size, rank, world)
        if not self.build_ahead:
            # CPU training: gather here, as the in-memory split does. A builder thread would compete
            # with the training step's intra-op threads for the same cores (measured: stream/memory
            # 0.78 in wall time with it vs 0.87-0.96 per CPU second); the reads still run ahead.
            yield from self._batches(batches)
            return
        out: queue.Queue = queue.Queue(self.prefetch_batches)
        stop = threading.Event()
        worker = threading.Thread(target=self._produce, args=(batches, out, stop), daemon=True,
                                  name="stream-batches")
        worker.start()
        try:
            while True:
                item = out.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()


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


def train_loader(reader: SplitReader, batch_size: int, *, seed: int, shard_block: int, shuffle_window: int,
                 threads: int, memory_bytes: float, pin_memory: bool) -> torch.utils.data.DataLoader:
    """The training DataLoader: in memory, one gather per batch in this process (nothing to
    overlap); streamed (``shard_block`` > 0), ``StreamingBatches`` with ``threads`` reading ahead."""
    if shard_block:
        # Lightning warns about __len__ on any IterableDataset in case of several workers; there are none
        warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")
        ds: Dataset = StreamingBatches(reader, batch_size, seed=seed, memory_bytes=memory_bytes,  # type: ignore[arg-type]
                                       shuffle_window=shuffle_window, block=shard_block, threads=threads,
                                       pin_memory=pin_memory)
    else:
        ds = CaptionBatches(reader, batch_size, seed=seed)
    return torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, collate_fn=identity_collate, num_workers=0)


def identity_collate(x):
    """Items are already batches (DataLoader(batch_size=None))."""
    return x
