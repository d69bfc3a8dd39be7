"""ItemTable: read one item table (split x kind) by item index.

Two read paths for batches, chosen automatically per field (same arrays either way):

* fast path (local file-system store, uncompressed codec ``none``, the default): each item's
  rows are read with ``os.preadv`` straight from the shard files into the output batch
  (see ``_fastread.py``); no zarr call, no overread. The OS page cache is the cache, so
  ``cache_bytes`` is not used.
* zarr path (compressed codecs, fsspec/remote or in-memory stores): per item contiguous row
  slices, grouped into runs of whole chunks, decoded chunks kept in an LRU cache
  (``cache_bytes``), so random batches never use zarr's fancy selection (measured 10x slower)
  and repeated epochs hit RAM.

``load(field)`` reads a whole field into one array (fastest when it fits).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

import numpy as np

from ._fastread import _LIVE, ShardRowReader, fast_layout
from .errors import StoreError, StoreIncompleteError
from .plan import SplitPlan, SplitStatus, TableHost


@dataclass
class Batch:
    """A padded batch: values [B, Tmax, D], lengths [B] int64, mask [B, Tmax] bool (True = valid row)."""

    values: np.ndarray
    lengths: np.ndarray
    mask: np.ndarray

    def mean(self) -> np.ndarray:
        """Masked mean over valid rows -> [B, D] float32 (zeros for empty items)."""
        return masked_mean(self.values, self.mask)


def masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """values [B, T, D], mask [B, T] -> [B, D] float32 mean of the valid rows (0 if none)."""
    m = mask.astype(np.float32)[..., None]
    total = (values.astype(np.float32) * m).sum(axis=1)
    return total / np.maximum(m.sum(axis=1), 1.0)


class _ChunkCache:
    """LRU of decoded row chunks of one flat [R, D] zarr array, bounded in bytes."""

    def __init__(self, array: Any, chunk_rows: int, budget: int) -> None:
        self.array, self.chunk_rows, self.budget = array, chunk_rows, budget
        self.rows = array.shape[0]
        self.chunks: OrderedDict[int, np.ndarray] = OrderedDict()
        self.used = 0
        self._pid = os.getpid()
        self._lock = threading.Lock()  # ensure .. rows_of .. trim as one step: streaming reads from threads
        _LIVE.add(self)  # reset in a forked child at the fork (_fastread.reset_after_fork)

    def _reset_after_fork(self) -> None:
        """(Forked child, one thread.) A new lock and an empty cache: the copied lock may be held,
        and the cache half-updated, by a parent thread caught mid-read."""
        self._pid, self._lock = os.getpid(), threading.Lock()
        self.chunks, self.used = OrderedDict(), 0

    @property
    def lock(self) -> threading.Lock:
        """The cache's lock (a new one in a forked child, see ``_reset_after_fork``)."""
        if self._pid != os.getpid():  # a fork that skipped the at-fork handlers
            self._reset_after_fork()
        return self._lock

    def ensure(self, chunk_ids: np.ndarray) -> None:
        """Decode the missing chunks, one zarr read per run of consecutive chunk ids."""
        missing = np.array(sorted(int(c) for c in set(chunk_ids.tolist()) if c not in self.chunks), dtype=np.int64)
        if not len(missing):
            return
        breaks = np.flatnonzero(np.diff(missing) != 1) + 1
        for run in np.split(missing, breaks):
            a, b = int(run[0]) * self.chunk_rows, min(self.rows, (int(run[-1]) + 1) * self.chunk_rows)
            block = np.asarray(self.array[a:b])
            for c in run.tolist():
                part = block[(c - int(run[0])) * self.chunk_rows:(c - int(run[0]) + 1) * self.chunk_rows]
                self.chunks[c] = part
                self.used += part.nbytes

    def rows_of(self, start: int, length: int, out: np.ndarray) -> None:
        """Copy rows [start, start+length) into ``out`` (chunks must be ensured)."""
        cr = self.chunk_rows
        pos = 0
        while pos < length:
            r = start + pos
            c, o = divmod(r, cr)
            chunk = self.chunks[c]
            self.chunks.move_to_end(c)
            n = min(length - pos, cr - o)
            out[pos:pos + n] = chunk[o:o + n]
            pos += n

    def trim(self) -> None:
        while self.used > self.budget and len(self.chunks) > 1:
            _, a = self.chunks.popitem(last=False)
            self.used -= a.nbytes


class ItemTable:
    """Reader for one item table. Cheap to create; arrays open lazily (DataLoader-worker safe).

    ``fast_reads`` (default True): use the pread path where the field's array allows it;
    set False to force the zarr path (debugging, comparisons).
    """

    fast_reads: bool = True

    def __init__(self, store: TableHost, plan: SplitPlan, *, cache_bytes: int = 512 << 20) -> None:
        self.store, self.plan, self.cache_bytes = store, plan, cache_bytes
        self.split, self.kind = plan.split, plan.kind
        self._caches: dict[str, _ChunkCache] = {}
        self._loaded: dict[str, np.ndarray] = {}
        self._fast: dict[str, ShardRowReader | None] = {}

    # ---- per-item metadata ------------------------------------------------------------------
    @property
    def num_items(self) -> int:
        return self.plan.num_items

    def __len__(self) -> int:
        return self.plan.num_items

    @property
    def fields(self) -> list[str]:
        return list(self.plan.fields)

    @cached_property
    def _group(self) -> Any:
        return self.store.group[f"{self.split}/{self.kind}"]

    @cached_property
    def ids(self) -> list[str]:
        """Clip file names (audio) or caption texts (text), one per item."""
        return [str(x) for x in np.asarray(self._group["ids"][:])] if self.num_items else []

    @property
    def captions(self) -> list[str]:
        return self.ids

    def column(self, name: str) -> np.ndarray:
        """A per-item column: ``duration`` (audio, s), ``clip_index`` (text -> audio row)."""
        if name not in self.plan.columns:
            raise StoreError(f"{self.split}/{self.kind} has no column {name!r}; columns: {list(self.plan.columns)}")
        return np.asarray(self._group[f"col/{name}"][:]) if self.num_items else np.zeros(0)

    @cached_property
    def _offsets(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(self._group[f"{k}/offsets"][:]) for k in self.plan.fields} if self.num_items \
            else {k: np.zeros(0, np.int64) for k in self.plan.fields}

    @cached_property
    def _lengths(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(self._group[f"{k}/lengths"][:]).astype(np.int64) for k in self.plan.fields} \
            if self.num_items else {k: np.zeros(0, np.int64) for k in self.plan.fields}

    def lengths(self, field: str) -> np.ndarray:
        """Rows per item of ``field`` (int64 [N])."""
        return self._lengths[self._field(field)]

    def offsets(self, field: str) -> np.ndarray:
        """First row of each item in the flat ``field`` array (int64 [N])."""
        return self._offsets[self._field(field)]

    @cached_property
    def status(self) -> SplitStatus:
        return self.store.status(self.split, self.kind)

    @property
    def failures(self) -> dict[int, str]:
        return self.status.failures

    @property
    def failed(self) -> np.ndarray:
        """bool [N]: True for items recorded as failed (their rows are zeros)."""
        mask = np.zeros(self.num_items, dtype=bool)
        mask[list(self.failures)] = True
        return mask

    @property
    def done(self) -> np.ndarray:
        """bool [N]: True for items whose rows are durably written."""
        return self.status.done_mask()

    @property
    def valid(self) -> np.ndarray:
        """bool [N]: written and not failed (what training should use)."""
        return self.done & ~self.failed

    def require_complete(self) -> None:
        """Raise StoreIncompleteError unless every part of this table is complete."""
        st = self.status
        if not st.complete:
            raise StoreIncompleteError(
                f"store {self.store.where}: {self.split}/{self.kind} is incomplete ({st.items_done}/"
                f"{st.num_items} items written, parts pending {st.pending_parts}); resume extraction")

    # ---- features ---------------------------------------------------------------------------
    def _field(self, field: str) -> str:
        if field not in self.plan.fields:
            raise StoreError(f"{self.split}/{self.kind} has no field {field!r}; fields: {list(self.plan.fields)}")
        return field

    def _cache(self, field: str) -> _ChunkCache:
        if field not in self._caches:
            fl = self.plan.fields[field]
            self._caches[field] = _ChunkCache(self._group[f"{field}/data"], fl.chunk_rows, self.cache_bytes)
        return self._caches[field]

    def _fast_reader(self, field: str) -> ShardRowReader | None:
        """The pread reader of ``field``, or None when its array needs zarr (decided once)."""
        if not self.fast_reads:
            return None
        if field not in self._fast:
            lay = fast_layout(self._group[f"{field}/data"])
            fl = self.plan.fields[field]
            ok = lay is not None and (lay.chunk_rows, lay.dim) == (fl.chunk_rows, fl.dim) \
                and lay.dtype == np.dtype(fl.dtype)
            self._fast[field] = ShardRowReader(lay) if ok else None
        return self._fast[field]

    def get(self, field: str, index: int) -> np.ndarray:
        """Rows of one item: [len_i, D] in the store dtype."""
        b = self.batch(field, [index])
        return b.values[0, : int(b.lengths[0])]

    def batch(self, field: str, indices: Sequence[int] | np.ndarray, *, max_len: int | None = None) -> Batch:
        """Padded batch of ``field`` for the items ``indices`` (padded to the batch max, or
        cropped to ``max_len`` rows from the start)."""
        field = self._field(field)
        fl = self.plan.fields[field]
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.num_items):
            raise StoreError(f"item index out of range [0, {self.num_items}) for {self.split}/{self.kind}")
        lens = self._lengths[field][idx]
        if max_len is not None:
            lens = np.minimum(lens, max_len)
        offs = self._offsets[field][idx]
        tmax = int(lens.max()) if len(lens) else 0
        out = np.zeros((len(idx), tmax, fl.dim), dtype=fl.dtype)
        if field in self._loaded:
            flat = self._loaded[field]
            for b, (o, n) in enumerate(zip(offs.tolist(), lens.tolist())):
                out[b, :n] = flat[o:o + n]
        elif (fast := self._fast_reader(field)) is not None:
            fast.read_into(out, offs, lens)
        else:
            cache = self._cache(field)
            cr = fl.chunk_rows
            need = [np.arange(o // cr, (o + n - 1) // cr + 1) for o, n in zip(offs.tolist(), lens.tolist()) if n]
            with cache.lock:
                if need:
                    cache.ensure(np.concatenate(need))
                for b, (o, n) in enumerate(zip(offs.tolist(), lens.tolist())):
                    cache.rows_of(o, n, out[b])
                cache.trim()
        mask = np.arange(tmax)[None, :] < lens[:, None]
        return Batch(out, lens, mask)

    def rows_into(self, field: str, indices: Sequence[int] | np.ndarray, out: np.ndarray) -> None:
        """The rows of ``indices`` concatenated into ``out`` [sum of their lengths, D] (store dtype,
        C-contiguous), no padding. Why: streaming reads whole blocks of consecutive items; read
        flat, a block is one pread per file-contiguous run straight into the caller's buffer,
        where ``batch`` pads, masks and copies (3 passes over the bytes)."""
        field = self._field(field)
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.num_items):
            raise StoreError(f"item index out of range [0, {self.num_items}) for {self.split}/{self.kind}")
        lens, offs = self._lengths[field][idx], self._offsets[field][idx]
        total = int(lens.sum())
        dim = self.plan.fields[field].dim
        if out.ndim != 2 or out.shape[0] != total or out.shape[1] != dim:
            raise StoreError(f"rows_into {self.split}/{self.kind}/{field}: output has shape {tuple(out.shape)}, "
                             f"the items hold [{total}, {dim}]")
        if field in self._loaded:
            flat, pos = self._loaded[field], 0
            for o, n in zip(offs.tolist(), lens.tolist()):
                out[pos:pos + n] = flat[o:o + n]
                pos += n
        elif (fast := self._fast_reader(field)) is not None:
            fast.read_flat(out, offs, lens)
        else:
            cache, cr, pos = self._cache(field), self.plan.fields[field].chunk_rows, 0
            for o, n in zip(offs.tolist(), lens.tolist()):
                if n:  # per item: a block may span more chunks than the cache budget holds
                    with cache.lock:
                        cache.ensure(np.arange(o // cr, (o + n - 1) // cr + 1))
                        cache.rows_of(o, n, out[pos:pos + n])
                        cache.trim()
                    pos += n

    def vectors(self, field: str, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """One-row field (e.g. text ``first``) as [B, D] (all items when ``indices`` is None)."""
        if not self.plan.fields[self._field(field)].fixed:
            raise StoreError(f"field {field!r} is ragged: use batch() or pooled()")
        if indices is None:
            flat, off, _ = self.load(field)
            return flat[off]
        return self.batch(field, indices).values[:, 0]

    def load(self, field: str, *, device: Any = None) -> tuple[Any, np.ndarray, np.ndarray]:
        """Whole field in RAM: (flat [R, D], offsets [N], lengths [N]); item i = flat[off[i]:off[i]+len[i]].

        The flat array keeps only the planned rows (parts' padding gaps included, unwritten, zero).
        With ``device`` (e.g. "cuda"), the flat array is returned as a torch tensor on it.
        """
        field = self._field(field)
        if field not in self._loaded:
            self._loaded[field] = np.asarray(self._group[f"{field}/data"][:])
            self._caches.pop(field, None)
        flat = self._loaded[field]
        if device is not None:
            import torch

            flat = torch.from_numpy(flat).to(device)
        return flat, self._offsets[field], self._lengths[field]

    def pooled(self, field: str, indices: Sequence[int] | np.ndarray | None = None,
               batch_size: int = 1024) -> np.ndarray:
        """Mean of each item's rows -> [B, D] float32 (0 for items with no rows).

        ``pooled("windows")`` reproduces the seed recipe's pooled BEATs embedding (mean over
        segments of each zero-padded segment's all-token mean); ``pooled("frames")`` is the
        masked mean over valid frames only.
        """
        idx = np.arange(self.num_items) if indices is None else np.asarray(indices, dtype=np.int64)
        parts = [self.batch(field, idx[i:i + batch_size]).mean() for i in range(0, len(idx), batch_size)]
        dim = self.plan.fields[self._field(field)].dim
        return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)

    def __getstate__(self) -> dict[str, Any]:
        # picklable for DataLoader workers: drop caches and loaded arrays
        state = {k: v for k, v in self.__dict__.items() if k not in ("_caches", "_loaded", "_group", "_fast")}
        state["_caches"], state["_loaded"], state["_fast"] = {}, {}, {}
        return state
