"""DCASE 2025 exclusions, as pure functions on file names (baseline.md section 7).

WavCaps-FreeSound drops every file whose stem is in the shipped list of Freesound ids
(overlap with Clotho eval); WavCaps-AudioSet drops six broken files. Stems are compared as
strings: the shipped list holds one non-numeric ``Not found`` row, which simply matches nothing
real (parsing as int would fail or silently drop it).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence, TypeVar

from .csvfile import read_csv_rows

T = TypeVar("T")

BROKEN_AUDIOSET_STEMS: frozenset[str] = frozenset({
    "YVcu0pVF1npM", "Y06-g5jz-OGc", "Y3sSblRfEG2o", "YWudGD6ZHRoY", "YFli8wjBFV2M", "YmW3S0u8bj58",
})


def file_stem(name: str) -> str:
    """Last path component up to its first '.': ``a/354184.flac`` -> ``354184``."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base.split(".", 1)[0]


def read_id_list(path: str | Path, column: str = "sound_id") -> frozenset[str]:
    """Ids in ``column`` of a CSV, as stripped strings (``Not found`` kept as text)."""
    rows = read_csv_rows(path, (column,), "id list")
    return frozenset(row[column].strip() for row in rows)


@lru_cache(maxsize=1)
def excluded_freesound_ids() -> frozenset[str]:
    """The shipped DCASE 2025 Freesound exclusion list (3080 entries incl. ``Not found``)."""
    from audioret.resources import EXCLUDED_FREESOUND_IDS, resource_path

    return read_id_list(resource_path(EXCLUDED_FREESOUND_IDS))


def exclude_by_stem(items: Sequence[T], names: Iterable[str], stems: frozenset[str]) -> tuple[list[T], int]:
    """(items whose file-name stem is not in ``stems``, number removed). ``names`` aligns with items."""
    kept = [item for item, name in zip(items, names, strict=True) if file_stem(name) not in stems]
    return kept, len(items) - len(kept)
