"""Readers for evaluation inputs: multi-match annotations and Clotho captions CSVs.

Read with the ``csv`` module, not pandas: captions such as ``"None"`` or ``"NA"`` must stay
strings, and a trailing space in a query is kept for exact matching (baseline.md 8.5, 14).
"""

from __future__ import annotations

import ast
import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Annotation:
    """One multi-match row: the raw ``query`` caption and its relevant audio ``files``."""

    query: str
    files: tuple[str, ...]


def _read_rows(path: Path, required: list[str], what: str) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path}: {what} needs columns {required}, missing {missing} "
                             f"(found {header})")
        return list(reader)


def parse_file_list(text: str, *, where: str = "") -> tuple[str, ...]:
    """``"['a.wav', 'b, c.wav']"`` -> ("a.wav", "b, c.wav"); a Python literal, not JSON."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"{where}: audio_filenames {text[:80]!r} is not a Python-literal list "
                         f"such as \"['a.wav', 'b.wav']\" ({e})") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: audio_filenames must be a list of file-name strings, got {text[:80]!r}")
    return tuple(value)


def read_annotations(path: str | Path) -> list[Annotation]:
    """Multi-match annotation CSV (columns ``query``, ``audio_filenames``), strings kept verbatim."""
    rows = _read_rows(Path(path), ["query", "audio_filenames"], "multi-match annotation")
    return [Annotation(r["query"], parse_file_list(r["audio_filenames"], where=f"{path}:{i + 2}"))
            for i, r in enumerate(rows)]


@dataclass(frozen=True)
class CaptionTable:
    """Single-match ground truth: ``captions[i]`` describes audio ``fnames[i]`` (caption order)."""

    captions: list[str]
    fnames: list[str]


def read_clotho_captions(path: str | Path) -> CaptionTable:
    """Clotho captions CSV (``file_name, caption_1..caption_5``) -> one row per caption.

    Order: file by file, captions 1..5 within a file (the order the baseline evaluates in).
    Any number of ``caption_N`` columns is accepted; empty cells are skipped.
    """
    path = Path(path)
    rows = _read_rows(path, ["file_name"], "Clotho captions")
    cols = sorted((c for c in rows[0] if c.startswith("caption_")), key=lambda c: int(c.split("_")[1])) \
        if rows else []
    if rows and not cols:
        raise ValueError(f"{path}: Clotho captions CSV needs caption_1..caption_5 columns, found {list(rows[0])}")
    captions, fnames = [], []
    for r in rows:
        for c in cols:
            if r[c]:
                captions.append(r[c])
                fnames.append(r["file_name"])
    return CaptionTable(captions, fnames)


__all__ = ["Annotation", "CaptionTable", "parse_file_list", "read_annotations", "read_clotho_captions"]
