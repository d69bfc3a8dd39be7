"""torch Dataset over an item table, safe with DataLoader workers.

The store is opened lazily in each process (nothing zarr-related is pickled), and
``__getitems__`` lets the DataLoader fetch a whole batch with one ``ItemTable.batch`` call
per field (sorted chunk runs, cached) instead of one read per item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .core import StoreLike, open_store
from .reader import ItemTable


class FeatureDataset(torch.utils.data.Dataset):
    """Items of ``split``/``kind`` with the given fields.

    One item: ``{"index": int, "<field>": Tensor[len_i, D]}``; with the default collate
    (:func:`collate`), a batch: ``{"index": [B], "<field>": [B, Tmax, D], "<field>_lengths": [B],
    "<field>_mask": [B, Tmax] bool}``. ``indices`` defaults to the valid items (written, not
    failed). ``max_len`` crops each field to at most that many rows. ``dtype``: cast features
    (e.g. torch.float32), default keeps the store dtype.
    """

    def __init__(self, path: StoreLike, split: str, kind: str, fields: Sequence[str], *,
                 indices: Sequence[int] | np.ndarray | None = None, max_len: Mapping[str, int] | None = None,
                 expect: Mapping[str, Any] | None = None, cache_bytes: int = 256 << 20,
                 dtype: torch.dtype | None = None, storage_options: Mapping[str, Any] | None = None) -> None:
        self.path, self.split, self.kind, self.fields = path, split, kind, list(fields)
        self.max_len = dict(max_len or {})
        self.expect, self.cache_bytes, self.dtype = expect, cache_bytes, dtype
        self.storage_options = storage_options
        table = self._open()
        for f in self.fields:
            table._field(f)
        self.indices = np.flatnonzero(table.valid) if indices is None else np.asarray(indices, dtype=np.int64)
        self._table: ItemTable | None = None  # reopened per worker

    def _open(self) -> ItemTable:
        st = open_store(self.path, expect=self.expect, storage_options=self.storage_options)
        return st.items(self.split, self.kind, cache_bytes=self.cache_bytes)

    @property
    def table(self) -> ItemTable:
        if self._table is None:
            self._table = self._open()
        return self._table

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])[0]

    def __getitems__(self, positions: Sequence[int]) -> list[dict[str, Any]]:
        idx = self.indices[np.asarray(positions, dtype=np.int64)]
        out: list[dict[str, Any]] = [{"index": int(j)} for j in idx]
        for f in self.fields:
            b = self.table.batch(f, idx, max_len=self.max_len.get(f))
            vals = torch.from_numpy(b.values)
            if self.dtype is not None:
                vals = vals.to(self.dtype)
            for k, n in enumerate(b.lengths.tolist()):
                out[k][f] = vals[k, :n]
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_table"] = None
        return state


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Pad each field to the batch maximum; adds ``<field>_lengths`` and ``<field>_mask``."""
    out: dict[str, torch.Tensor] = {"index": torch.tensor([it["index"] for it in items], dtype=torch.long)}
    for key in items[0]:
        if key == "index":
            continue
        seqs = [it[key] for it in items]
        lens = torch.tensor([s.shape[0] for s in seqs], dtype=torch.long)
        tmax = int(lens.max()) if len(lens) else 0
        vals = seqs[0].new_zeros((len(seqs), tmax, seqs[0].shape[-1]))
        for k, s in enumerate(seqs):
            vals[k, : s.shape[0]] = s
        out[key] = vals
        out[f"{key}_lengths"] = lens
        out[f"{key}_mask"] = torch.arange(tmax)[None, :] < lens[:, None]
    return out
