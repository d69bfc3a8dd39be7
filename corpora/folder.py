"""A plain folder of audio files plus a captions CSV (the baseline's ``predict`` input).

Audio: every file in ``data_path`` with an audio extension, sorted by name (the baseline takes
``os.listdir`` order, which is not reproducible). Captions CSV: a ``caption`` column, one query
per row; duplicates collapse (predictions are keyed by query string). If the CSV also has a
``file_name`` column, each caption is attached to that clip (a user's own paired data).
"""

from __future__ import annotations

import logging
from pathlib import Path

from audioret.audio import AUDIO_EXTENSIONS

from .base import Clip, CorpusError, CorpusSplit
from .csvfile import read_csv_rows
from .durations import probe_durations

logger = logging.getLogger(__name__)


def read_captions_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a captions CSV that must have a ``caption`` column."""
    if not path.is_file():
        raise CorpusError(f"{path}: captions CSV not found; pass --captions-csv "
                          f"pointing at a CSV with a 'caption' column")
    return read_csv_rows(path, ("caption",), "captions CSV")


def load_folder(data_path: Path, split: str = "predict", *, captions_csv: Path | None = None,
                durations: bool = True) -> CorpusSplit:
    """Clips = audio files of ``data_path`` (sorted); ``queries`` = distinct CSV captions."""
    data_path = Path(data_path)
    if not data_path.is_dir():
        raise CorpusError(f"{data_path}: audio folder not found; pass the folder of audio files to rank")
    entries = sorted(p for p in data_path.iterdir() if p.is_file())
    audio = [p for p in entries if p.suffix.lower() in AUDIO_EXTENSIONS]
    removed = {"not_audio": len(entries) - len(audio)} if len(audio) < len(entries) else {}
    if removed:
        logger.info("%s: skipped %d non-audio files (extensions %s)", data_path, removed["not_audio"],
                    sorted({p.suffix for p in entries} - set(AUDIO_EXTENSIONS)))
    if not audio:
        raise CorpusError(f"{data_path}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    rows = read_captions_csv(Path(captions_csv)) if captions_csv is not None else []
    queries = list(dict.fromkeys(r["caption"] for r in rows))
    per_file: dict[str, list[str]] = {}
    if rows and "file_name" in rows[0]:
        names = {p.name for p in audio}
        unknown = sorted({r["file_name"] for r in rows} - names)
        if unknown:
            raise CorpusError(f"{captions_csv}: {len(unknown)} file_name value(s) are not audio files in "
                              f"{data_path}, e.g. {unknown[:3]}")
        for r in rows:
            per_file.setdefault(r["file_name"], []).append(r["caption"])
    secs = probe_durations(audio) if durations else [None] * len(audio)
    clips = [Clip(clip_id=p.name, path=p, captions=tuple(per_file.get(p.name, ())), split=split,
                  dataset="folder", duration=d) for p, d in zip(audio, secs)]
    _warn_empty(captions_csv, rows)
    return CorpusSplit(name="folder", split=split, root=data_path, clips=clips, removed=removed,
                       queries=queries)


def _warn_empty(captions_csv: Path | None, rows: list[dict[str, str]], examples: int = 3) -> None:
    """One warning naming the lines whose caption is empty (kept: encoded as empty text)."""
    lines = [i + 2 for i, r in enumerate(rows) if not r["caption"].strip()]
    if lines:
        logger.warning("%s: %d row(s) have an empty caption (lines %s%s); kept as they are (encoded as "
                       "empty text): fill in or remove those rows to avoid this", captions_csv, len(lines),
                       ", ".join(map(str, lines[:examples])), " ..." if len(lines) > examples else "")
