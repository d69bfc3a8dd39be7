"""Readers for evaluation inputs: multi-match annotations and Clotho captions CSVs.

Read with the ``csv`` module, not pandas: captions such as ``"None"`` or ``"NA"`` must stay
strings, and a trailing space in a query is kept for exact matching (baseline.md 8.5, 14).
"""

from __future__ import annotations

import ast
import csv
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Annotation:
    """One multi-match row: the raw ``query`` caption and its relevant audio ``files``."""

    query: str
    files: tuple[str, ...]


def csv_text(path: str | Path, what: str) -> io.StringIO:
    """A CSV file's text for ``csv.reader``: UTF-8, a spreadsheet's BOM stripped; a file in another
    encoding is one ValueError line naming it and the first bad byte's offset in the file."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:  # decoded whole, so e.start is the offset in the file
        raise ValueError(f"{path}: {what} file is not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                         f"{e.start}); re-save it as UTF-8") from None
    return io.StringIO(text, newline="")


def _read_rows(path: Path, required: list[str], what: str) -> list[dict[str, str]]:
    """Rows of a UTF-8 CSV (a spreadsheet's BOM stripped) that has the ``required`` columns;
    every fault is one ValueError line naming the file (a short row, a bad byte, a lost column)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found")
    try:
        reader = csv.DictReader(csv_text(path, what))
        header = reader.fieldnames or []
        rows = list(reader)
    except csv.Error as e:
        raise ValueError(f"{path}: {what} file is not a readable CSV ({e}); re-save it as a "
                         "comma-separated UTF-8 CSV") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"{path}: {what} needs columns {required}, missing {missing} "
                         f"(found {header})")
    for i, r in enumerate(rows):
        if any(v is None for v in r.values()):
            raise ValueError(f"{path}: line {i + 2} has fewer fields than the header {header}; "
                             "fix or remove that line")
    return rows


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
    _refuse_duplicate_files(path, [r["file_name"] for r in rows])
    captions, fnames = [], []
    for r in rows:
        for c in cols:
            if r[c]:
                captions.append(r[c])
                fnames.append(r["file_name"])
    return CaptionTable(captions, fnames)


def _refuse_duplicate_files(path: Path, names: list[str], examples: int = 3) -> None:
    """A file listed twice would count its captions twice; the official files list each once."""
    counts = Counter(names)
    dups = [n for n in dict.fromkeys(names) if counts[n] > 1]
    if dups:
        raise ValueError(f"{path}: {len(dups)} file_name value(s) appear on more than one line, e.g. "
                         f"{dups[:examples]}; each file must be listed once (the official Clotho CSVs never "
                         "repeat one), so the file is damaged: keep one line per file")


__all__ = ["Annotation", "CaptionTable", "csv_text", "parse_file_list", "read_annotations", "read_clotho_captions"]
