"""The corpus interface every adapter returns: clips with captions, plus what was removed."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from audioret.errors import UserError

logger = logging.getLogger(__name__)


class CorpusError(UserError, RuntimeError):
    """A corpus is absent, incomplete or malformed; the message says what, where and the fix."""


@dataclass(frozen=True)
class Clip:
    clip_id: str  # file name exactly as aac-datasets reports ``fname`` (HTML entities kept)
    path: Path
    captions: tuple[str, ...]
    split: str
    dataset: str
    duration: float | None  # seconds; None when not known without decoding


@dataclass
class CorpusSplit:
    name: str  # corpus name as given to load_corpus
    split: str
    root: Path  # folder the audio paths live under
    clips: list[Clip]
    removed: dict[str, int] = field(default_factory=dict)  # reason -> clips dropped
    queries: list[str] = field(default_factory=list)  # unpaired queries (folder corpus), else empty

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def num_captions(self) -> int:
        return sum(len(c.captions) for c in self.clips)

    @property
    def total_duration(self) -> float | None:
        """Seconds of audio, None if any clip's duration is unknown."""
        if any(c.duration is None for c in self.clips):
            return None
        return float(sum(c.duration for c in self.clips))  # type: ignore[misc]


def missing_paths(paths: Iterable[Path]) -> list[Path]:
    """Paths that are not regular files, in input order (one directory listing per folder)."""
    listings: dict[Path, set[str]] = {}
    missing = []
    for p in paths:
        names = listings.get(p.parent)
        if names is None:
            names = set(_listdir(p.parent))
            listings[p.parent] = names
        if p.name not in names:
            missing.append(p)
    return missing


def _listdir(folder: Path) -> list[str]:
    try:
        return [e.name for e in folder.iterdir() if e.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def missing_report(what: str, missing: list[Path], total: int, fix: str, examples: int = 3) -> str:
    """One line (the CLIs print user errors as one line): how many files are missing, a few
    examples, the folders that do not exist, what to do."""
    shown = ", ".join(str(p) for p in missing[:examples])
    more = f" and {len(missing) - examples} more" if len(missing) > examples else ""
    folders = sorted({str(p.parent) for p in missing})
    absent = [f for f in folders if not Path(f).is_dir()]
    note = f"; folder(s) that do not exist: {', '.join(absent[:3])}" if absent else ""
    return f"{what}: {len(missing)} of {total} audio files are missing, e.g. {shown}{more}{note}; {fix}"


def log_removed(what: str, removed: dict[str, int], before: int) -> None:
    for reason, count in removed.items():
        logger.info("%s: removed %d of %d clips (%s)", what, count, before, reason)


def warn_empty_captions(what: str, clips: Iterable[Clip], examples: int = 3) -> int:
    """Log one warning naming the clips with an empty (or blank) caption; returns their number.

    An empty caption is still extracted (the text model sees only its special tokens) and can be
    trained on or scored as a query, so blank cells would move a metric without a word; the
    official captions have none.
    """
    empty = [c.clip_id for c in clips if any(not cap.strip() for cap in c.captions)]
    if empty:
        more = f" and {len(empty) - examples} more" if len(empty) > examples else ""
        logger.warning("%s: %d clip(s) have an empty caption, e.g. %s%s; kept as they are (an empty "
                       "caption is encoded as empty text): fill in those cells to avoid this",
                       what, len(empty), ", ".join(empty[:examples]), more)
    return len(empty)
