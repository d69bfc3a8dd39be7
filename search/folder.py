"""The self-describing index folder (``audioret index --out INDEX``).

Layout::

    manifest.json          format, kind, factory, dim, count, nprobe, rerank, recall@10, the
                           checkpoint (path, sha256, kind) and encoder identity, the parts
    config.json            the resolved config of the last index command
    parts/part-NNNNN.npy   float32 [n, D] unit vectors of one chunk of clips (the truth:
                           index.faiss is derived from them and can be rebuilt)
    parts/part-NNNNN.jsonl one row per vector: id, path, duration (s), key, source
    trained.faiss          IVF-PQ only: the trained, empty index (appends add to a copy)
    index.faiss            the searchable index (opened memory-mapped)
    COMPLETE               written last; removed while a command changes the folder

Parts are written one by one (file, then the manifest that lists it), so an interrupted
command keeps its finished parts and a rerun continues from them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audioret.config import atomic_write_text
from audioret.errors import UserError

FORMAT, VERSION = "audioret-search-index", 1
MANIFEST, MARKER, CONFIG = "manifest.json", "COMPLETE", "config.json"
INDEX_FILE, TRAINED_FILE = "index.faiss", "trained.faiss"


class IndexFolderError(UserError):
    """A folder that is not a (complete) index, or one that does not fit the command."""


@dataclass
class Row:
    """One indexed clip (row number = position in the index = clip number in URLs)."""

    id: str
    path: str | None
    duration: float | None
    key: str  # what a rerun compares to skip clips already in
    source: int  # index into manifest["sources"]


def _atomic_bytes(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_manifest(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise IndexFolderError(f"{path}: unreadable index manifest ({err}); build the index again "
                               "into a new --out folder") from err
    if data.get("format") != FORMAT:
        raise IndexFolderError(f"{folder}: {MANIFEST} is not an audioret search index (format "
                               f"{data.get('format')!r}); choose another --out folder")
    return data


def open_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of a complete index, or a one-line error saying what the folder is."""
    folder = Path(folder)
    if not folder.is_dir():
        raise IndexFolderError(f"{folder}: no such index folder; build one with audioret index "
                               "--checkpoint CKPT --store STORE --split SPLIT --out FOLDER (or --audio-dir DIR)")
    data = read_manifest(folder)
    if data is None:
        raise IndexFolderError(f"{folder}: not an audioret index folder (no {MANIFEST}); build one with "
                               "audioret index ... --out FOLDER")
    if not (folder / MARKER).is_file():
        raise IndexFolderError(f"{folder}: the index is incomplete (an audioret index command was stopped "
                               "or is still running); rerun that command to finish it")
    return data


def part_stem(i: int) -> str:
    return f"part-{i:05d}"


def write_part(folder: Path, i: int, vectors: np.ndarray, rows: list[Row]) -> dict[str, Any]:
    """Write one part (vectors + rows) atomically; returns its manifest entry."""
    assert len(vectors) == len(rows), (len(vectors), len(rows))
    parts = folder / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    stem = part_stem(i)
    _atomic_bytes(parts / f"{stem}.npy", lambda p: _save_npy(p, vectors))
    text = "".join(json.dumps(r.__dict__, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_text(parts / f"{stem}.jsonl", text)
    return {"name": stem, "count": len(rows)}


def _save_npy(path: Path, vectors: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(vectors, dtype=np.float32))


def part_vectors(folder: Path, part: dict[str, Any]) -> np.ndarray:
    """[n, D] float32, memory-mapped."""
    return np.load(Path(folder) / "parts" / f"{part['name']}.npy", mmap_mode="r")


def part_rows(folder: Path, part: dict[str, Any]) -> list[Row]:
    path = Path(folder) / "parts" / f"{part['name']}.jsonl"
    return [Row(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]


def all_rows(folder: Path, manifest: dict[str, Any]) -> list[Row]:
    return [r for p in manifest["parts"] for r in part_rows(folder, p)]


def vector_blocks(folder: Path, manifest: dict[str, Any]) -> list[np.ndarray]:
    return [part_vectors(folder, p) for p in manifest["parts"]]


class Vectors:
    """Row ids -> stored vectors across parts (memory-mapped; for exact re-scoring)."""

    def __init__(self, blocks: list[np.ndarray]) -> None:
        self.blocks = blocks
        self.starts = np.cumsum([0] + [len(b) for b in blocks])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        which = np.searchsorted(self.starts, ids, side="right") - 1
        out = np.empty((len(ids), self.blocks[0].shape[1]), dtype=np.float32)
        for b in np.unique(which):
            sel = which == b
            out[sel] = self.blocks[b][ids[sel] - self.starts[b]]
        return out


def write_index_file(folder: Path, index, name: str = INDEX_FILE) -> None:
    from audioret.search.deps import faiss

    _atomic_bytes(Path(folder) / name, lambda p: faiss().write_index(index, str(p)))


def read_index_file(folder: Path, name: str = INDEX_FILE, *, mmap: bool = False):
    from audioret.search.deps import faiss

    f = faiss()
    path = Path(folder) / name
    if not path.is_file():
        raise IndexFolderError(f"{path}: missing; rerun the audioret index command that built {folder}")
    return f.read_index(str(path), f.IO_FLAG_MMAP) if mmap else f.read_index(str(path))


def mark_incomplete(folder: Path) -> None:
    (Path(folder) / MARKER).unlink(missing_ok=True)


def mark_complete(folder: Path, manifest: dict[str, Any]) -> None:
    write_json(Path(folder) / MARKER, {"count": manifest["count"], "parts": len(manifest["parts"])})
