"""Pure layout maths: parts, shard-aligned offsets, chunk sizes, plan digest.

Every process that plans the same split with the same inputs gets the same layout, so
writers on different GPUs/nodes agree on where each item's rows go without talking.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_CHUNK_BYTES = 1 << 20      # ~1 MiB chunks: decode unit of a random read
DEFAULT_SHARD_CHUNKS = 32          # 32 chunks per shard file (24 MiB at D=768 fp16)


@dataclass(frozen=True)
class FieldSpec:
    """One feature field of an item table.

    lengths: rows per item (ragged, e.g. T_i frames), or None for exactly one row per item
    (a pooled vector, stored [N, D]); dim: feature width D; dtype: "float16" (default) or "float32".
    """

    lengths: Sequence[int] | np.ndarray | None
    dim: int
    dtype: str = "float16"


def auto_chunk_rows(dim: int, itemsize: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Largest power of two of rows with at most ``chunk_bytes`` per chunk (>= 1)."""
    rows = max(1, chunk_bytes // max(1, dim * itemsize))
    return 1 << (rows.bit_length() - 1)


def split_parts(num_items: int, num_parts: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) item ranges of near-equal size (empty parts dropped, >= 1 part)."""
    num_parts = max(1, min(num_parts, max(num_items, 1)))
    edges = np.linspace(0, num_items, num_parts + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a] or [(0, 0)]


def auto_num_parts(total_bytes: int, num_items: int, part_bytes: int = 1 << 29) -> int:
    """About one part per 512 MiB of features: enough parts to share out, few padding gaps."""
    return max(1, min(num_items, -(-total_bytes // part_bytes)))


def ragged_offsets(lengths: np.ndarray, parts: Sequence[tuple[int, int]],
                   shard_rows: int) -> tuple[np.ndarray, int]:
    """Offsets [N] (int64) and total rows: contiguous within a part, each part shard-aligned."""
    lengths = np.asarray(lengths, dtype=np.int64)
    offsets = np.zeros(len(lengths), dtype=np.int64)
    row = 0
    for start, end in parts:
        row = -(-row // shard_rows) * shard_rows  # round up to the next shard boundary
        seg = lengths[start:end]
        offsets[start:end] = row + np.concatenate(([0], np.cumsum(seg)[:-1])) if len(seg) else []
        row += int(seg.sum())
    return offsets, max(row, 1)


def digest(ids: Sequence[str], columns: Mapping[str, np.ndarray],
           fields: Mapping[str, tuple[np.ndarray, np.ndarray]], parts: Sequence[tuple[int, int]]) -> str:
    """sha256 over everything the plan fixes: ids, columns, (offsets, lengths) per field, parts."""
    h = hashlib.sha256()
    h.update("\x00".join(ids).encode())
    for name in sorted(columns):
        h.update(name.encode())
        h.update(np.ascontiguousarray(columns[name]).tobytes())
    for name in sorted(fields):
        off, ln = fields[name]
        h.update(name.encode())
        h.update(np.asarray(off, dtype=np.int64).tobytes())
        h.update(np.asarray(ln, dtype=np.int32).tobytes())
    h.update(repr([tuple(p) for p in parts]).encode())
    return h.hexdigest()
