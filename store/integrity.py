"""What a table holds on disk: the files each part and each plan wrote, with size and checksum.

A completed part records every shard file it owns (its record's "files", records.py), the planner
records the per-item arrays' chunk files and every array's ``zarr.json`` (the plan's "files"). A file that zarr never wrote because all its values are the fill value is recorded
as ``None`` (absent); it must stay absent. Checks come in two strengths:

* quick (reruns of ``extract``): size, and on a local disk the modification time; a file whose
  time changed but whose size did not is hashed to decide. Costs one ``stat`` per file.
* full (``store verify``): size and crc32c of every byte (google-crc32c, which zarr already
  needs: ~2.4 GB/s on one core here).

Stores written before checksums existed have no "files": they are checked by structure only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

HASH = "crc32c"
PARTIAL = ".partial"   # zarr's LocalStore writes <name>.<uuid>.partial, then renames it


def checksum(data: bytes) -> str:
    """crc32c of ``data`` as 8 hex digits (google-crc32c's C code; zlib's crc32 as a fallback)."""
    try:
        import google_crc32c

        return f"{google_crc32c.value(data):08x}"
    except ImportError:  # pragma: no cover - zarr 3.1 depends on google-crc32c
        import zlib

        return f"z{zlib.crc32(data):08x}"


def local_path(store: Store, key: str) -> Path | None:
    """The file behind ``key`` when the store is a local folder (None for memory/object stores)."""
    root = getattr(store, "root", None)
    return Path(root) / key if isinstance(root, Path) else None


def read_bytes(store: Store, key: str) -> bytes | None:
    path = local_path(store, key)
    if path is not None:  # one copy instead of zarr's buffer + to_bytes (measured 2x faster)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
    buf = sync(store.get(key, default_buffer_prototype()))
    return None if buf is None else buf.to_bytes()


def _stat(store: Store, key: str) -> tuple[int, int | None] | None:
    """(size, mtime_ns or None) of ``key``, None when absent."""
    path = local_path(store, key)
    if path is not None:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st.st_size, st.st_mtime_ns
    try:
        return int(sync(store.getsize(key))), None
    except (FileNotFoundError, KeyError):
        return None


def describe(store: Store, key: str) -> dict[str, Any] | None:
    """The record of one file: {size, crc32c[, mtime_ns]}, or None when it does not exist."""
    before = _stat(store, key)
    data = read_bytes(store, key)
    if data is None:
        return None
    rec: dict[str, Any] = {"size": len(data), HASH: checksum(data)}
    if before is not None and before[1] is not None and before[0] == len(data):
        rec["mtime_ns"] = before[1]
    return rec


def describe_all(store: Store, prefix: str, keys: Iterable[str]) -> dict[str, dict[str, Any] | None]:
    """Records of ``prefix/key`` for every key (keys relative to the table)."""
    return {k: describe(store, f"{prefix}/{k}") for k in keys}


def check_file(store: Store, prefix: str, key: str, want: Mapping[str, Any] | None, *, quick: bool) -> str | None:
    """None when ``prefix/key`` matches its record, else why not (one short phrase)."""
    full = f"{prefix}/{key}"
    now = _stat(store, full)
    if want is None:
        return None if now is None else "exists, but the part wrote no such file (all fill values)"
    if now is None:
        return "missing (deleted?)"
    if now[0] != want["size"]:
        return f"size {now[0]} bytes, {want['size']} when written (truncated or overwritten)"
    if quick and (now[1] is None or now[1] == want.get("mtime_ns")):
        return None
    data = read_bytes(store, full)
    if data is None:
        return "missing (deleted?)"
    if HASH in want and checksum(data) != want[HASH]:
        return "checksum differs from when it was written (overwritten or corrupted)"
    return None


def check_files(store: Store, prefix: str, files: Mapping[str, Any], *, quick: bool,
                on_file: Any = None) -> list[str]:
    """``<table-relative key>: <problem>`` for every recorded file that does not match."""
    out = []
    for key, want in files.items():
        why = check_file(store, prefix, key, want, quick=quick)
        if why is not None:
            out.append(f"{key}: {why}")
        if on_file is not None:
            on_file(want["size"] if want else 0)
    return out


def shard_keys(arr: Any, field: str, row0: int, row1: int, shard_rows: int) -> list[str]:
    """Table-relative keys of the shard files holding rows [row0, row1) of ``field``'s data."""
    if row1 <= row0:
        return []
    return [f"{field}/data/{arr.metadata.encode_chunk_key((s, 0))}"
            for s in range(row0 // shard_rows, (row1 - 1) // shard_rows + 1)]


def part_rows(offsets: np.ndarray, lengths: np.ndarray) -> tuple[int, int]:
    """[first row, end row) of a part given its items' offsets and lengths."""
    if not len(offsets):
        return 0, 0
    return int(offsets[0]), int(offsets[-1] + lengths[-1])


def array_files(arr: Any, name: str) -> list[str]:
    """Table-relative keys of a small array's metadata and every chunk of it."""
    keys = [f"{name}/zarr.json"]
    nchunks = -(-arr.shape[0] // arr.chunks[0]) if arr.shape[0] else 0
    keys += [f"{name}/{arr.metadata.encode_chunk_key((c,))}" for c in range(nchunks)]
    return keys


def list_keys(store: Store, prefix: str) -> list[str]:
    """Every key under ``prefix`` (full keys)."""
    async def _collect() -> list[str]:
        return [k async for k in store.list_prefix(prefix)]

    try:
        return sync(_collect())
    except FileNotFoundError:
        return []


def is_partial(key: str) -> bool:
    return key.endswith(PARTIAL)
