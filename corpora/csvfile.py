"""The one CSV reader of the corpus adapters: UTF-8 (a BOM is stripped), required columns checked.

Why one reader: spreadsheet programs save CSVs with a UTF-8 byte-order mark (which made the first
column read as ``\\ufefffile_name``) or in a legacy encoding, and a renamed or missing column used
to surface as a ``KeyError`` traceback. Every fault here is a ``CorpusError``: one line naming the
CSV, what is wrong and what to do.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import Sequence

from .base import CorpusError

Row = dict[str, str]


class Rows(list):
    """The rows of a CSV, with ``lines[i]``: the file line on which row ``i`` ends (blank lines and
    captions spanning several lines counted, as an editor shows them)."""

    lines: list[int]


def read_csv_rows(path: str | Path, required: Sequence[str], what: str) -> Rows:
    """Rows of ``path`` (header first) that has every column in ``required``; values are strings."""
    path = Path(path)
    text = _decode(path, what)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = list(reader.fieldnames or [])
        rows, rows.lines = Rows(), []
        for row in reader:
            rows.append(row)
            rows.lines.append(reader.line_num)
    except csv.Error as err:
        raise CorpusError(f"{path}: {what} is not a readable CSV ({err}); re-save it as a "
                          f"comma-separated UTF-8 CSV") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise CorpusError(f"{path}: {what} has no column {', '.join(map(repr, missing))} "
                          f"(columns found: {header or 'none, the file is empty'}); fix the "
                          f"header row to name the columns {list(required)}")
    _check_complete(path, rows, header, what)
    return rows


def _decode(path: Path, what: str) -> str:
    """The file as text; decoded whole so that a bad byte's offset is its offset in the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(f"{path}: {what} not found; check the path") from None
    except (IsADirectoryError, PermissionError) as err:
        raise CorpusError(f"{path}: {what} cannot be read ({err.strerror}); pass a readable CSV file") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # a BOM from spreadsheet programs
    except UnicodeDecodeError as err:
        raise CorpusError(f"{path}: {what} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
                          f"{err.start}); re-save the CSV as UTF-8") from None


def _check_complete(path: Path, rows: Rows, header: list[str], what: str) -> None:
    """A row with fewer fields than the header reads as None values (a later TypeError)."""
    for i, row in enumerate(rows):
        if any(v is None for v in row.values()):
            raise CorpusError(f"{path}: line {rows.lines[i]} of the {what} has {sum(v is not None for v in row.values())} "
                              f"fields, the header has {len(header)}; fix or remove that line")


def duplicated(values: Sequence[str]) -> list[str]:
    """Values that occur more than once, in order of first occurrence."""
    counts = Counter(values)
    return [v for v in dict.fromkeys(values) if counts[v] > 1]


def refuse_duplicates(path: Path, names: Sequence[str], column: str, what: str, examples: int = 3,
                      lines: Sequence[int] | None = None) -> None:
    """One clip per name: a duplicated name would become two items with one id (a wrong metric).
    ``lines``: the file line of each name (``Rows.lines``); default: one line per row after a header."""
    dups = duplicated(names)
    if not dups:
        return
    at = list(lines) if lines is not None else [i + 2 for i in range(len(names))]
    lines = {n: [at[i] for i, m in enumerate(names) if m == n] for n in dups[:examples]}
    shown = "; ".join(f"{n!r} on lines {', '.join(map(str, ls))}" for n, ls in lines.items())
    more = f" and {len(dups) - examples} more" if len(dups) > examples else ""
    raise CorpusError(f"{path}: {len(dups)} {column} value(s) of the {what} appear on more than one "
                      f"line: {shown}{more}; each clip must be listed once (the official files never repeat "
                      f"one), so the file is damaged: keep one line per clip (merge its captions into it)")
