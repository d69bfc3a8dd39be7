"""Submission files: the baseline's full score matrix and a ranked top-K list; writers and readers.

Score matrix (baseline.md 9, what ``d25_t6.predict`` writes)::

    index,<audio file 1>,<audio file 2>,...
    <caption 1>,<score>,<score>,...

Rows are keyed by caption string: a caption repeated in the input is written once (first
occurrence), like the baseline. Scores are written with 9 significant digits (exact fp32 round trip).

Ranked list (2022-2024 format)::

    caption,fname_1,...,fname_K

ordered by the tie rule of :mod:`audioret.evaluate.metrics`. A ranked list only knows ranks up to K:
metrics with a cutoff above K (R@10 and mAP@10 need K >= 10, mAP@16_multi needs K >= 16) cannot be
computed from it. Both writers are atomic (temporary file in the same folder + ``os.replace``), so
an interrupted run never leaves a truncated submission behind.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from audioret.evaluate.io import csv_text
from audioret.evaluate.metrics import BlockFn, default_chunk_size, top_k_from_blocks

MATRIX_INDEX = "index"
RANKED_CAPTION = "caption"


def umask_mode() -> int:
    """The mode a plain ``open()`` would give a new file (0o666 less the process umask)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[csv.writer]:
    """A csv writer on a temp file next to ``path``; renamed over ``path`` only on success.
    The file gets the umask's mode like any other output (mkstemp alone would leave it 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            yield csv.writer(f)
            f.flush()
            os.fchmod(f.fileno(), umask_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _first_rows(captions: Sequence[str]) -> list[int]:
    seen: set[str] = set()
    rows = []
    for i, c in enumerate(captions):
        if c not in seen:
            seen.add(c)
            rows.append(i)
    return rows


def _check_names(captions: Sequence[str], fnames: Sequence[str], shape: tuple[int, int]) -> None:
    if (len(captions), len(fnames)) != shape:
        raise ValueError(f"{len(captions)} captions x {len(fnames)} audio names do not match scores {shape}")
    if len(set(fnames)) != len(fnames):
        raise ValueError("audio file names must be unique (score-matrix columns); deduplicate first")


def write_score_matrix_blocks(path: str | Path, captions: Sequence[str], fnames: Sequence[str],
                              block_fn: BlockFn, *, chunk_size: int | None = None) -> Path:
    """Write the score matrix whose rows [r0, r1) ``block_fn`` computes, block by block."""
    _check_names(captions, fnames, (len(captions), len(fnames)))
    keep = _first_rows(captions)
    keep_set = set(keep)
    chunk = chunk_size or default_chunk_size(len(fnames))
    with atomic_writer(path) as w:
        w.writerow([MATRIX_INDEX, *fnames])
        for r0 in range(0, len(captions), chunk):
            r1 = min(len(captions), r0 + chunk)
            rows = [r for r in range(r0, r1) if r in keep_set]
            if not rows:
                continue
            block = block_fn(r0, r1).float().cpu().numpy()
            for r in rows:
                w.writerow([captions[r], *np.char.mod("%.9g", block[r - r0]).tolist()])
    return Path(path)


def write_score_matrix(path: str | Path, captions: Sequence[str], fnames: Sequence[str],
                       scores: torch.Tensor) -> Path:
    """Write scores [Q, A] (rows: captions, columns: audio file names) in the baseline layout."""
    _check_names(captions, fnames, tuple(scores.shape))
    return write_score_matrix_blocks(path, captions, fnames, lambda r0, r1: scores[r0:r1])


def write_ranked(path: str | Path, captions: Sequence[str], fnames: Sequence[str],
                 top: torch.Tensor) -> Path:
    """Write ``caption,fname_1..fname_K`` from top-k audio indices [Q, K] (duplicates: first kept)."""
    if top.ndim != 2 or top.shape[0] != len(captions):
        raise ValueError(f"top-k indices {tuple(top.shape)} must be [len(captions)={len(captions)}, K]")
    K = top.shape[1]
    with atomic_writer(path) as w:
        w.writerow([RANKED_CAPTION, *(f"fname_{i}" for i in range(1, K + 1))])
        for r in _first_rows(captions):
            w.writerow([captions[r], *(fnames[j] for j in top[r].tolist())])
    return Path(path)


def write_ranked_blocks(path: str | Path, captions: Sequence[str], fnames: Sequence[str],
                        block_fn: BlockFn, k: int, *, chunk_size: int | None = None) -> Path:
    """Top-k ranked list straight from score blocks (deterministic tie rule)."""
    top = top_k_from_blocks(block_fn, len(captions), len(fnames), k, chunk_size=chunk_size)
    return write_ranked(path, captions, fnames, top)


@dataclass(frozen=True)
class ScoreMatrix:
    captions: list[str]
    fnames: list[str]
    scores: torch.Tensor  # [Q, A] float32


@dataclass(frozen=True)
class RankedLists:
    captions: list[str]
    ranked: list[list[str]]  # per caption, K audio file names, best first
    k: int


def submission_kind(path: str | Path) -> str:
    """``"matrix"`` or ``"ranked"`` from the first header cell."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predictions file not found")
    header = next(csv.reader(csv_text(path, "predictions")), [])
    if header[:1] == [MATRIX_INDEX]:
        return "matrix"
    if header[:1] == [RANKED_CAPTION]:
        return "ranked"
    raise ValueError(f"{path}: unknown predictions format; expected a score matrix (header "
                     f"'index,<audio file>,...') or a ranked list (header 'caption,fname_1,...'), "
                     f"got header starting {header[:3]}")


def _rows(path: Path) -> Iterable[tuple[int, list[str]]]:
    for n, row in enumerate(csv.reader(csv_text(path, "predictions")), start=1):
        yield n, row


def read_score_matrix(path: str | Path) -> ScoreMatrix:
    """Read a score matrix written by the baseline or :func:`write_score_matrix`."""
    path = Path(path)
    it = iter(_rows(path))
    _, header = next(it)
    fnames = header[1:]
    if len(set(fnames)) != len(fnames):
        raise ValueError(f"{path}: duplicate audio file names in the header")
    captions, data = [], []
    for n, row in it:
        if len(row) != len(header):
            raise ValueError(f"{path}:{n}: {len(row)} cells, expected {len(header)} (caption + one score "
                             "per audio); is a caption with a comma left unquoted?")
        captions.append(row[0])
        try:
            data.append(np.asarray(row[1:], dtype=np.float32))
        except ValueError:
            raise ValueError(f"{path}:{n}: scores must be numbers") from None
    scores = torch.from_numpy(np.stack(data)) if data else torch.empty(0, len(fnames))
    return ScoreMatrix(captions, fnames, scores)


def read_ranked(path: str | Path) -> RankedLists:
    """Read ``caption,fname_1..fname_K``; every row must list K distinct file names."""
    path = Path(path)
    it = iter(_rows(path))
    _, header = next(it)
    K = len(header) - 1
    captions, ranked = [], []
    for n, row in it:
        if len(row) != K + 1:
            raise ValueError(f"{path}:{n}: {len(row)} cells, expected {K + 1} (caption + {K} file names)")
        if len(set(row[1:])) != K:
            raise ValueError(f"{path}:{n}: a file name is listed twice for {row[0]!r}")
        captions.append(row[0])
        ranked.append(row[1:])
    return RankedLists(captions, ranked, K)


__all__ = ["atomic_writer", "write_score_matrix", "write_score_matrix_blocks", "write_ranked",
           "write_ranked_blocks", "ScoreMatrix", "RankedLists", "submission_kind",
           "read_score_matrix", "read_ranked"]
