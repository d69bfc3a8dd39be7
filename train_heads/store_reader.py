"""Feature-store access for head training (the only module here that imports audioret.store).

- ``load_feature_split(store, split, device)``: the whole split in RAM (or on the GPU) as a
  ``FeatureSplit`` (one ``ItemTable.load`` per field: the fastest path when it fits).
- ``StoreSplitReader``: reads straight from the store, for splits that do not fit (WavCaps): padded
  batches (``audio``/``text``) and whole blocks of rows in on-disk order (``read_rows``, what
  ``data.StreamingBatches`` uses); picklable (reopens the store lazily in each process).
- ``write_feature_split(path, split)``: the inverse (for tests, benchmarks and demos without extract).
- ``load_splits(config)``: what ``run`` uses; chooses memory or streaming by size.
Captions whose own item or whose clip failed at extraction are left out (logged).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from audioret.models import AudioFeatures, TextFeatures

from .data import FeatureSplit, Ragged, choose_block

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # run.py imports this module
    from .config import TrainHeadsConfig
    from .run import Splits


def _tables(store: Any, split: str) -> tuple[Any, Any]:
    from audioret.store import open_store

    st = open_store(store) if isinstance(store, (str, Path)) else store
    if split not in st.splits():
        raise FileNotFoundError(f"store {store}: no split {split!r} (splits: {st.splits()}); pass one of them "
                                f"with --train/--val/--test or extract that split first")
    audio, text = st.audio(split), st.text(split)
    audio.require_complete()
    text.require_complete()
    return audio, text


def usable_captions(audio: Any, text: Any) -> np.ndarray:
    """Indices of captions that were written and whose clip was written (failures dropped, logged)."""
    clip = text.column("clip_index").astype(np.int64)
    ok = text.valid & audio.valid[clip]
    if not ok.all():
        log.warning("%s: %d of %d captions skipped (their caption or clip failed at extraction)",
                    text.split, int((~ok).sum()), len(ok))
    return np.flatnonzero(ok)


def split_nbytes(store: Any, split: str) -> int:
    """Bytes of the split's feature arrays (from the plan; nothing read)."""
    from audioret.store import open_store

    st = open_store(store) if isinstance(store, (str, Path)) else store
    total = 0
    for kind in ("audio", "text"):
        for f in st.plan_of(split, kind).fields.values():
            total += f.rows * f.dim * np.dtype(f.dtype).itemsize
    return total


def load_feature_split(store: Any, split: str, device: str | torch.device = "cpu") -> FeatureSplit:
    audio, text = _tables(store, split)
    caps = usable_captions(audio, text)

    def ragged(table: Any, field: str, keep: np.ndarray | None = None) -> Ragged:
        flat, off, lens = table.load(field)
        if keep is not None:
            off, lens = off[keep], lens[keep]
        return Ragged(torch.from_numpy(np.ascontiguousarray(flat)), torch.from_numpy(off.astype(np.int64)),
                      torch.from_numpy(lens.astype(np.int64)))

    first_flat, first_off, _ = text.load("first")
    split_ = FeatureSplit(
        name=split, clip_ids=list(audio.ids), captions=[text.captions[i] for i in caps],
        caption_clip=torch.from_numpy(text.column("clip_index").astype(np.int64)[caps]),
        frames=ragged(audio, "frames"), windows=ragged(audio, "windows"), tokens=ragged(text, "tokens", caps),
        first=torch.from_numpy(np.ascontiguousarray(first_flat[first_off[caps]])),
        metadata=dict(audio.store.metadata))
    return split_.to(device) if str(device) != "cpu" else split_


class StoreSplitReader:
    """``SplitReader`` that reads each batch from the store (chunk-cached ``ItemTable.batch``)."""

    def __init__(self, path: str | Path, split: str, cache_bytes: int = 256 << 20):
        self.path, self.name, self.cache_bytes = str(path), split, cache_bytes
        audio, text = _tables(self.path, split)
        self._caps = usable_captions(audio, text)
        self.caption_clip = torch.from_numpy(text.column("clip_index").astype(np.int64)[self._caps])
        self._num_clips = audio.num_items
        lens = text.lengths("tokens")[self._caps]
        shard_rows = text.plan.fields["tokens"].shard_rows
        self.captions_per_shard = max(1, int(shard_rows // max(1.0, float(lens.mean()) if len(lens) else 1.0)))
        self._fields = {**audio.plan.fields, **text.plan.fields}
        self._lens: dict[str, np.ndarray] = {}
        self._t: tuple[Any, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_t": None}  # each worker reopens the store

    @property
    def tables(self) -> tuple[Any, Any]:
        if self._t is None:
            from audioret.store import open_store

            st = open_store(self.path)
            self._t = (st.items(self.name, "audio", cache_bytes=self.cache_bytes),
                       st.items(self.name, "text", cache_bytes=self.cache_bytes))
        return self._t

    @property
    def clip_ids(self) -> list[str]:
        """Clip ids of the split's audio rows (what stage-2 teacher targets are keyed by)."""
        return list(self.tables[0].ids)

    @property
    def captions(self) -> list[str]:
        """Caption text of the rows this reader trains on (failed captions/clips left out)."""
        texts = self.tables[1].ids
        return [texts[i] for i in self._caps]

    @property
    def num_clips(self) -> int:
        return self._num_clips

    @property
    def num_captions(self) -> int:
        return len(self._caps)

    # ---- BlockReader (StreamingBatches)
    def lengths(self, name: str) -> np.ndarray:
        """Rows per item of a field: per clip (frames, windows) or per training caption (tokens, first)."""
        if name in ("frames", "windows"):
            return self._lengths(0, name)
        return self._lengths(1, name)[self._caps]

    def _lengths(self, kind: int, name: str) -> np.ndarray:
        if name not in self._lens:
            self._lens[name] = self.tables[kind].lengths(name).astype(np.int64)
        return self._lens[name]

    def field_spec(self, name: str) -> tuple[int, torch.dtype]:
        f = self._fields[name]
        return int(f.dim), getattr(torch, str(f.dtype))

    def read_rows(self, name: str, items: np.ndarray, out: np.ndarray) -> None:
        """Rows of ``items`` (ascending: the on-disk order) concatenated into ``out`` [sum len, D]."""
        audio = name in ("frames", "windows")
        table = self.tables[0 if audio else 1]
        table.rows_into(name, items if audio else self._caps[items], out)

    def audio(self, clip_index: Tensor) -> AudioFeatures:
        table = self.tables[0]
        f = table.batch("frames", clip_index.numpy())
        w = table.batch("windows", clip_index.numpy())
        return AudioFeatures(torch.from_numpy(f.values), torch.from_numpy(f.mask), torch.from_numpy(w.values),
                             torch.from_numpy(w.mask))

    def text(self, caption_index: Tensor) -> TextFeatures:
        table = self.tables[1]
        rows = self._caps[caption_index.numpy()]
        t = table.batch("tokens", rows)
        return TextFeatures(torch.from_numpy(t.values), torch.from_numpy(t.mask),
                            torch.from_numpy(table.batch("first", rows).values[:, 0]))


def write_feature_split(path: str | Path, split: FeatureSplit, *, metadata: dict | None = None,
                        overwrite: bool = False) -> None:
    """Write an in-memory split into a store (creating it if needed) with the extract field names."""
    from audioret.store import create_store, open_store

    p = Path(path)
    st = (open_store(p, mode="r+") if (p / "zarr.json").exists() and not overwrite
          else create_store(p, metadata or split.metadata, overwrite=overwrite))
    n_frames = split.frames.lengths.tolist()
    n_windows = split.windows.lengths.tolist()
    st.plan_audio(split.name, split.clip_ids, n_frames, n_windows, dim=split.audio_dim)
    st.plan_text(split.name, split.captions, split.caption_clip.tolist(), split.tokens.lengths.tolist(),
                 dim=split.text_dim)
    rows = lambda r, i: r.data[int(r.starts[i]):int(r.starts[i] + r.lengths[i])].numpy()  # noqa: E731
    for part in st.status(split.name, "audio").pending_parts:
        with st.writer(split.name, "audio", part) as w:
            for i in w.pending():
                w.put(i, frames=rows(split.frames, i), windows=rows(split.windows, i))
    for part in st.status(split.name, "text").pending_parts:
        with st.writer(split.name, "text", part) as w:
            for j in w.pending():
                w.put(j, tokens=rows(split.tokens, j), first=split.first[j:j + 1].numpy())


def load_splits(cfg: TrainHeadsConfig) -> Splits:
    """The run's data from ``cfg.store``: train in memory or streamed (``cfg.data``), evals in memory."""
    from audioret.store import open_store

    from .run import Splits

    st = open_store(cfg.store)
    cuda = torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda")
    nbytes = split_nbytes(st, cfg.train)
    stream = cfg.data == "stream" or (cfg.data == "auto" and nbytes > cfg.memory_limit_gb * 1e9)
    device = "cpu"
    if cuda and cfg.data_device != "cpu":
        # Lightning's ddp launcher re-runs this in every rank before the trainer picks the device.
        local = int(os.environ.get("LOCAL_RANK", "0"))
        free, _ = torch.cuda.mem_get_info(local)
        device = f"cuda:{local}" if nbytes < 0.5 * free else "cpu"
    log.info("train split %s: %.2f GB of features -> %s", cfg.train, nbytes / 1e9,
             "streamed from the store" if stream else f"held in memory ({device})")
    if stream:
        reader: Any = StoreSplitReader(cfg.store, cfg.train)
        block = choose_block(reader, cfg.memory_limit_gb * 1e9, cfg.shuffle_window)
        log.info("streaming %s in blocks of %d captions, %d blocks mixed per shuffle group, at most %.2f GB held",
                 cfg.train, block, cfg.shuffle_window, cfg.memory_limit_gb)
    else:
        reader, block = load_feature_split(st, cfg.train, device), 0
    evals = {prefix: load_feature_split(st, name, device)
             for prefix, name in (("val", cfg.val), ("test", cfg.test)) if name}
    return Splits(reader, evals, {"path": str(cfg.store), "metadata": st.metadata}, shard_block=block)
